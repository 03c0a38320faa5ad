"""What an OpenThread RCP's property values mean, sans-IO: the raw-stream frames it sends and
takes, the transmit result, and the start-up compatibility checks of OpenThread's host
(``RadioSpinel::Init``, ``CheckRcpApiVersion``, ``CheckRadioCapabilities``), with errors that
name what the RCP reported, what this gateway supports and what to do.

Formats (``spinel.h``, ``ncp_base_radio.cpp``):

- received frame, ``PROP_STREAM_RAW``: ``d`` PSDU (with its FCS), ``c`` RSSI, ``c`` noise floor,
  ``S`` flags, ``t(CCX)`` channel, LQI, timestamp (µs), ``t(i)`` receive error, and with
  tx-security ``t(CL)`` the ACK's key index and frame counter;
- transmit request, ``PROP_VALUE_SET PROP_STREAM_RAW``: ``d`` PSDU, ``C`` channel, ``C`` CSMA
  back-offs, ``C`` frame retries, ``b`` CSMA on, ``b`` header updated, ``b`` retransmission, ``b``
  security processed, ``L`` tx delay, ``L`` delay base time, ``C`` channel after the transmission,
  ``c`` tx power;
- transmit result, ``PROP_VALUE_IS PROP_LAST_STATUS`` with the request's TID: ``i`` status,
  ``b`` frame pending (in the ACK), ``b`` header updated, then the ACK frame as a received frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.errors import RcpIncompatible
from drivers.spinel.codec import SpinelParseError, pack, unpack, unpack_prefix
from drivers.spinel.consts import (
    HOST_RCP_API_VERSION,
    MD_FLAG_BAD_FCS,
    PROTOCOL_VERSION,
    RCP_API_MAX,
    RCP_API_MIN,
    Cap,
    RadioCaps,
    Status,
    cap_name,
    radio_cap_names,
)

RX_FORMAT = "dccSt(CCX)t(i)t(CL)"
TX_FORMAT = "dCCCbbbbLLCc"
TX_DONE_FORMAT = "ibb"
MAX_PSDU = 127
TX_POWER_DEFAULT = 127  # OT_RADIO_POWER_INVALID: the RCP's configured power
RSSI_INVALID = 127  # OT_RADIO_RSSI_INVALID
# What the radio service relies on: the RCP waits for ACKs, retries, backs off and scans itself
# (every OpenThread RCP reports these; its sub-MAC does them in software where the chip cannot).
REQUIRED_RADIO_CAPS = (
    RadioCaps.ACK_TIMEOUT
    | RadioCaps.TRANSMIT_RETRIES
    | RadioCaps.CSMA_BACKOFF
    | RadioCaps.ENERGY_SCAN
)


@dataclass(frozen=True)
class RawFrame:
    """A frame the RCP received (or the ACK of a transmission)."""

    psdu: bytes
    rssi: int = -128
    noise_floor: int = -128
    flags: int = 0
    channel: int = 0
    lqi: int = 0
    timestamp_us: int = 0
    rx_error: int = 0

    @property
    def bad_fcs(self) -> bool:
        return bool(self.flags & MD_FLAG_BAD_FCS)


def parse_raw_frame(value: bytes) -> RawFrame:
    """A ``PROP_STREAM_RAW`` value from the RCP; metadata may be partial (defaults then)."""
    fields = unpack(RX_FORMAT, value, partial=True)
    if not fields:
        raise SpinelParseError("a raw frame without data")
    psdu: bytes = fields[0]
    if len(psdu) > MAX_PSDU:
        raise SpinelParseError(f"a received PSDU of {len(psdu)} bytes (at most {MAX_PSDU})")
    rssi = fields[1] if len(fields) > 1 else -128
    noise = fields[2] if len(fields) > 2 else -128
    flags = fields[3] if len(fields) > 3 else 0
    channel, lqi, ts = fields[4] if len(fields) > 4 else (0, 0, 0)
    (rx_error,) = fields[5] if len(fields) > 5 else (0,)
    return RawFrame(psdu, rssi, noise, flags, channel, lqi, ts, rx_error)


def encode_raw_frame(frame: RawFrame) -> bytes:
    """The RCP's side of :func:`parse_raw_frame` (for test peers and the fuzz seeds)."""
    return pack(RX_FORMAT, frame.psdu, frame.rssi, frame.noise_floor, frame.flags,
                (frame.channel, frame.lqi, frame.timestamp_us), (frame.rx_error,), (0, 0))  # fmt: skip


@dataclass(frozen=True)
class TxRequest:
    psdu: bytes  # with two FCS bytes, which the RCP computes
    channel: int
    max_csma_backoffs: int = 4
    max_frame_retries: int = 3
    csma: bool = True
    # The radio service secures frames itself: the RCP must neither assign frame counters nor
    # encrypt (its tx-security offload would otherwise re-secure the frame with its own keys).
    header_updated: bool = True
    retransmission: bool = False
    security_processed: bool = True
    tx_delay: int = 0
    tx_delay_base: int = 0
    rx_channel_after: int | None = None
    tx_power: int = TX_POWER_DEFAULT


def encode_tx_request(req: TxRequest) -> bytes:
    if not 5 <= len(req.psdu) <= MAX_PSDU:
        raise ValueError(f"a PSDU has 5..{MAX_PSDU} bytes with its FCS, not {len(req.psdu)}")
    after = req.channel if req.rx_channel_after is None else req.rx_channel_after
    return pack(TX_FORMAT, req.psdu, req.channel, req.max_csma_backoffs, req.max_frame_retries,
                req.csma, req.header_updated, req.retransmission, req.security_processed,
                req.tx_delay, req.tx_delay_base, after, req.tx_power)  # fmt: skip


def parse_tx_request(value: bytes) -> TxRequest:
    """The RCP's side of :func:`encode_tx_request`: everything after the channel is optional."""
    f = unpack(TX_FORMAT, value, partial=True)
    if len(f) < 2:
        raise SpinelParseError("a transmit request needs the frame and its channel")
    if not 2 <= len(f[0]) <= MAX_PSDU:
        raise SpinelParseError(f"a transmit request of {len(f[0])} bytes")
    defaults: list[Any] = [4, 3, True, False, False, False, 0, 0, f[1], TX_POWER_DEFAULT]
    rest = list(f[2:]) + defaults[len(f) - 2 :]
    return TxRequest(f[0], f[1], *rest)


@dataclass(frozen=True)
class TxDone:
    status: int
    frame_pending: bool
    header_updated: bool
    ack: RawFrame | None


def parse_tx_done(value: bytes) -> TxDone:
    (status, pending, updated), end = unpack_prefix(TX_DONE_FORMAT, value)
    ack: RawFrame | None = None
    if status == Status.OK and end < len(value):
        ack = parse_raw_frame(value[end:])
    return TxDone(status, pending, updated, ack)


def encode_tx_done(done: TxDone) -> bytes:
    out = pack(TX_DONE_FORMAT, done.status, done.frame_pending, done.header_updated)
    if done.status == Status.OK:
        out += encode_raw_frame(done.ack or RawFrame(b""))
    return out


def parse_last_status(value: bytes) -> int:
    (status,) = unpack("i", value)
    return int(status)


# --- identity and compatibility ---------------------------------------------------------------


@dataclass(frozen=True)
class RcpIdentity:
    protocol_version: tuple[int, int]
    ncp_version: str
    eui64: bytes
    caps: tuple[int, ...]
    rcp_api_version: int | None = None
    min_host_api_version: int | None = None
    radio_caps: int = 0
    rx_sensitivity: int | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def firmware(self) -> str:
        """The firmware name and version (``OPENTHREAD/<version>``)."""
        return self.ncp_version.split(";", 1)[0].strip()

    @property
    def platform(self) -> str:
        parts = [p.strip() for p in self.ncp_version.split(";")]
        return parts[1] if len(parts) > 1 and parts[1] else "unknown platform"

    def as_dict(self) -> dict[str, Any]:
        return {
            "firmware": self.ncp_version,
            "platform": self.platform,
            "protocol_version": f"{self.protocol_version[0]}.{self.protocol_version[1]}",
            "rcp_api_version": self.rcp_api_version,
            "min_host_api_version": self.min_host_api_version,
            "host_api_version": HOST_RCP_API_VERSION,
            "supported_rcp_api": f"{RCP_API_MIN}..{RCP_API_MAX}",
            "caps": [cap_name(c) for c in self.caps],
            "radio_caps": radio_cap_names(self.radio_caps),
            "rx_sensitivity_dbm": self.rx_sensitivity,
        }


_FLASH = (
    "Flash an OpenThread RCP firmware (ot-rcp) with RCP API {lo}..{hi} and Spinel protocol "
    "{major}.{minor} (docs/radio-rcp.md)."
)


def _hint() -> str:
    return _FLASH.format(lo=RCP_API_MIN, hi=RCP_API_MAX, major=PROTOCOL_VERSION[0],
                         minor=PROTOCOL_VERSION[1])  # fmt: skip


def check_protocol_version(version: tuple[int, int], ncp_version: str = "") -> None:
    if tuple(version) != PROTOCOL_VERSION:
        fw = f" (firmware {ncp_version!r})" if ncp_version else ""
        raise RcpIncompatible(
            f"the RCP speaks Spinel protocol {version[0]}.{version[1]}{fw}; this gateway "
            f"needs exactly {PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}, as OpenThread hosts do",
            hint=_hint(),
        )


def check_caps(caps: tuple[int, ...], ncp_version: str) -> None:
    if Cap.CONFIG_RADIO not in caps:
        kind = (
            "an NCP (it runs the Thread stack itself)"
            if Cap.CONFIG_FTD in caps or Cap.CONFIG_MTD in caps
            else "not a radio co-processor"
        )
        raise RcpIncompatible(
            f"the device is {kind}: its firmware {ncp_version!r} lacks the RCP capability "
            "CAP_CONFIG_RADIO", hint=_hint(),
        )  # fmt: skip
    if Cap.MAC_RAW not in caps:
        raise RcpIncompatible(
            f"the RCP firmware {ncp_version!r} lacks raw MAC access (CAP_MAC_RAW)", hint=_hint()
        )


def check_api_versions(api: int | None, min_host: int | None, ncp_version: str) -> list[str]:
    """Raise when out of range; the warnings to log otherwise."""
    warnings: list[str] = []
    if api is not None and api < RCP_API_MIN:
        raise RcpIncompatible(
            f"RCP API version {api} (firmware {ncp_version!r}) is older than this gateway "
            f"supports: RCP API {RCP_API_MIN}..{RCP_API_MAX}", hint=_hint(),
        )  # fmt: skip
    if min_host is not None and min_host > HOST_RCP_API_VERSION:
        raise RcpIncompatible(
            f"the RCP firmware {ncp_version!r} (RCP API {api}) needs a host at RCP API "
            f"{min_host} or newer; this gateway is at {HOST_RCP_API_VERSION} and supports RCP "
            f"API {RCP_API_MIN}..{RCP_API_MAX}",
            hint=_hint() + " Or update the gateway software.",
        )
    if api is not None and api > RCP_API_MAX:
        # OpenThread's rule: a newer RCP stays compatible with older hosts unless its minimum
        # host version says otherwise (checked above).
        warnings.append(
            f"RCP API version {api} is newer than {RCP_API_MAX}, the newest this gateway was "
            f"tested with; the RCP accepts hosts from RCP API {min_host}"
        )
    if api is None:
        warnings.append("the RCP does not report its RCP API version (very old firmware)")
    return warnings


def check_radio_caps(radio_caps: int, ncp_version: str) -> None:
    missing = REQUIRED_RADIO_CAPS & ~radio_caps
    if missing:
        raise RcpIncompatible(
            f"the RCP firmware {ncp_version!r} lacks radio capabilities this gateway needs: "
            f"{', '.join(radio_cap_names(missing))}", hint=_hint(),
        )  # fmt: skip
