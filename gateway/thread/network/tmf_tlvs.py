"""Thread TLVs of the TMF address-resolution messages (``a/aq``, ``a/an``, ``a/ae``), which use
the Thread TLV namespace, not MeshCoP's (OpenThread ``thread_tlvs.hpp``): Target EID (0, 16),
Extended MAC Address (1, 8), RLOC16 (2, 2), ML-EID (3, 8), Status (4, 1), Last Transaction Time
(6, 4), Router Mask (7), Thread Network Data (10).

:func:`parse_thread_tlvs` takes a TMF payload (hostile bytes) and returns
:class:`AddressTlvs` with the values it found; it raises :class:`~gateway.errors.ParseError`
only. :func:`encode_thread_tlvs` builds a payload as raw :class:`~gateway.wire.tlv.Tlv` items
for :func:`gateway.wire.coap.tmf_request`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

from gateway.errors import ParseError
from gateway.wire.tlv import Tlv, decode_tlvs

__all__ = ["AddressTlvs", "ThreadTlvType", "encode_thread_tlvs", "parse_thread_tlvs"]


class ThreadTlvType(IntEnum):
    TARGET_EID = 0
    EXT_MAC_ADDRESS = 1
    RLOC16 = 2
    ML_EID = 3
    STATUS = 4
    LAST_TRANSACTION_TIME = 6
    ROUTER_MASK = 7
    ND_OPTION = 8
    ND_DATA = 9
    THREAD_NETWORK_DATA = 10


@dataclass(frozen=True, slots=True)
class AddressTlvs:
    """The address-resolution fields of one TMF payload (``None`` = absent)."""

    target: ipaddress.IPv6Address | None = None
    ext_mac: bytes | None = None
    rloc16: int | None = None
    ml_eid_iid: bytes | None = None
    status: int | None = None
    last_transaction_time: int | None = None
    router_mask: bytes | None = None  # ID sequence + 8-byte router ID bitmap (a/as response)

    def to_tlvs(self) -> list[Tlv]:
        return encode_thread_tlvs(self)


_SIZES = {
    ThreadTlvType.TARGET_EID: 16,
    ThreadTlvType.EXT_MAC_ADDRESS: 8,
    ThreadTlvType.RLOC16: 2,
    ThreadTlvType.ML_EID: 8,
    ThreadTlvType.STATUS: 1,
    ThreadTlvType.LAST_TRANSACTION_TIME: 4,
    ThreadTlvType.ROUTER_MASK: 9,
}


def parse_thread_tlvs(payload: bytes | bytearray | memoryview) -> AddressTlvs:
    """The first of each address-resolution TLV (OpenThread's find-by-type rule). A known TLV
    shorter than its value is a :class:`ParseError`; longer ones are read up to their size, as
    OpenThread's ``Tlv::Read`` does. Other TLVs are skipped."""
    found: dict[int, bytes] = {}
    for t in decode_tlvs(payload):
        if t.type in _SIZES and t.type not in found:
            size = _SIZES[ThreadTlvType(t.type)]
            if len(t.value) < size:
                raise ParseError(f"Thread TLV {t.type}: {len(t.value)} bytes, needs {size}")
            found[t.type] = t.value[:size]

    def get(tt: ThreadTlvType) -> bytes | None:
        return found.get(tt)

    target = get(ThreadTlvType.TARGET_EID)
    rloc = get(ThreadTlvType.RLOC16)
    status = get(ThreadTlvType.STATUS)
    ltt = get(ThreadTlvType.LAST_TRANSACTION_TIME)
    return AddressTlvs(
        ipaddress.IPv6Address(target) if target is not None else None,
        get(ThreadTlvType.EXT_MAC_ADDRESS),
        int.from_bytes(rloc, "big") if rloc is not None else None,
        get(ThreadTlvType.ML_EID),
        status[0] if status is not None else None,
        int.from_bytes(ltt, "big") if ltt is not None else None,
        get(ThreadTlvType.ROUTER_MASK),
    )


def encode_thread_tlvs(fields: AddressTlvs) -> list[Tlv]:
    """Raw TLVs in OpenThread's order for ``a/an``: Target EID, ML-EID, RLOC16, Last
    Transaction Time (then Ext MAC and Status, which the address messages do not combine)."""
    out: list[Tlv] = []
    if fields.target is not None:
        out.append(Tlv(ThreadTlvType.TARGET_EID, fields.target.packed))
    if fields.ml_eid_iid is not None:
        out.append(Tlv(ThreadTlvType.ML_EID, bytes(fields.ml_eid_iid[:8])))
    if fields.rloc16 is not None:
        out.append(Tlv(ThreadTlvType.RLOC16, (fields.rloc16 & 0xFFFF).to_bytes(2, "big")))
    if fields.last_transaction_time is not None:
        out.append(
            Tlv(
                ThreadTlvType.LAST_TRANSACTION_TIME,
                (fields.last_transaction_time & 0xFFFFFFFF).to_bytes(4, "big"),
            )
        )
    if fields.ext_mac is not None:
        out.append(Tlv(ThreadTlvType.EXT_MAC_ADDRESS, bytes(fields.ext_mac[:8])))
    if fields.status is not None:
        out.append(Tlv(ThreadTlvType.STATUS, bytes((fields.status & 0xFF,))))
    if fields.router_mask is not None:
        out.append(Tlv(ThreadTlvType.ROUTER_MASK, bytes(fields.router_mask[:9])))
    return out
