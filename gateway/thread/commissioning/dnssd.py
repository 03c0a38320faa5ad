"""The ``_meshcop._udp`` DNS-SD record of a Border Agent: TXT keys and the state bitmap (fact
sheet §8; OpenThread ``src/core/meshcop/border_agent.cpp`` ``PrepareServiceTxtData``,
``DetermineStateBitmap``; ot-br-posix ``src/border_agent/border_agent.cpp``). Sans-IO: values
in, TXT properties out, and the reverse for a commissioner that browses.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.errors import InvalidArgument, ParseError
from gateway.wire.mac802154 import ExtAddress
from gateway.wire.meshcop import Timestamp

__all__ = [
    "SERVICE_TYPE",
    "BorderAgentRecord",
    "ConnectionMode",
    "InterfaceStatus",
    "ThreadRole",
    "instance_name",
    "meshcop_txt",
    "parse_meshcop_txt",
    "state_bitmap",
]

SERVICE_TYPE: Final = "_meshcop._udp.local."
TXT_VERSION: Final = b"1"


class ConnectionMode(enum.IntEnum):
    DISABLED = 0
    PSKC = 1
    PSKD = 2
    VENDOR = 3
    X509 = 4


class InterfaceStatus(enum.IntEnum):
    NOT_INITIALIZED = 0
    INITIALIZED = 1
    ACTIVE = 2


class ThreadRole(enum.IntEnum):
    DISABLED_OR_DETACHED = 0
    CHILD = 1
    ROUTER = 2
    LEADER = 3


def state_bitmap(
    *,
    connection_mode: ConnectionMode = ConnectionMode.PSKC,
    interface_status: InterfaceStatus = InterfaceStatus.ACTIVE,
    high_availability: bool = True,
    bbr_active: bool = False,
    bbr_primary: bool = False,
    role: ThreadRole = ThreadRole.LEADER,
    epskc_supported: bool = False,
) -> int:
    """Bits 0-2 connection mode, 3-4 interface status, 5-6 availability, 7 BBR active,
    8 BBR primary, 9-10 role, 11 ePSKc supported."""
    return (
        int(connection_mode)
        | int(interface_status) << 3
        | (1 if high_availability else 0) << 5
        | (1 if bbr_active else 0) << 7
        | (1 if bbr_primary else 0) << 8
        | int(role) << 9
        | (1 if epskc_supported else 0) << 11
    )


def instance_name(vendor: str, product: str, ext_addr: ExtAddress) -> str:
    """ot-br-posix's form: ``"<vendor> <product> #XXXX"``, XXXX the last two bytes of the
    extended address in upper-case hex."""
    return f"{vendor} {product} #{ext_addr.octets[-2:].hex().upper()}"


def meshcop_txt(
    *,
    ext_addr: ExtAddress,
    network_name: str,
    ext_pan_id: bytes,
    state: int,
    thread_version: str = "1.4.0",
    active_timestamp: Timestamp | None = None,
    partition_id: int | None = None,
    border_agent_id: bytes | None = None,
    vendor_name: str | None = None,
    model_name: str | None = None,
) -> dict[bytes, bytes]:
    """The TXT properties (binary values raw, as OpenThread publishes them)."""
    if len(ext_pan_id) != 8:
        raise InvalidArgument("the extended PAN ID is 8 bytes")
    if border_agent_id is not None and len(border_agent_id) != 16:
        raise InvalidArgument("a border agent ID is 16 bytes")
    txt: dict[bytes, bytes] = {}
    if border_agent_id is not None:
        txt[b"id"] = border_agent_id
    txt[b"rv"] = TXT_VERSION
    txt[b"tv"] = thread_version.encode()
    txt[b"sb"] = state.to_bytes(4, "big")
    txt[b"nn"] = network_name.encode()
    txt[b"xp"] = bytes(ext_pan_id)
    txt[b"xa"] = ext_addr.octets
    if partition_id is not None:
        txt[b"pt"] = (partition_id & 0xFFFFFFFF).to_bytes(4, "big")
    if active_timestamp is not None:
        txt[b"at"] = active_timestamp.to_bytes()
    if vendor_name:
        txt[b"vn"] = vendor_name.encode()
    if model_name:
        txt[b"mn"] = model_name.encode()
    return txt


@dataclass(frozen=True)
class BorderAgentRecord:
    """What a commissioner learns from one ``_meshcop._udp`` instance."""

    instance: str
    addresses: tuple[str, ...]
    port: int
    network_name: str | None
    ext_pan_id: bytes | None
    ext_addr: bytes | None
    state: int | None
    thread_version: str | None

    @property
    def connection_mode(self) -> int | None:
        return None if self.state is None else self.state & 7


def _text(props: Mapping[bytes, bytes | None], key: bytes) -> str | None:
    v = props.get(key)
    if v is None:
        return None
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"TXT key {key.decode()} is not UTF-8") from None


def parse_meshcop_txt(
    instance: str, addresses: tuple[str, ...], port: int, props: Mapping[bytes, bytes | None]
) -> BorderAgentRecord:
    """Read the keys a commissioner uses; malformed binary keys raise :class:`ParseError`."""
    xp = props.get(b"xp")
    xa = props.get(b"xa")
    sb = props.get(b"sb")
    if xp is not None and len(xp) != 8:
        raise ParseError("TXT xp is not 8 bytes")
    if xa is not None and len(xa) != 8:
        raise ParseError("TXT xa is not 8 bytes")
    if sb is not None and len(sb) != 4:
        raise ParseError("TXT sb is not 4 bytes")
    return BorderAgentRecord(
        instance,
        addresses,
        port,
        _text(props, b"nn"),
        xp,
        xa,
        int.from_bytes(sb, "big") if sb is not None else None,
        _text(props, b"tv"),
    )
