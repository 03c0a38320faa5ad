"""CBSB-1 frames on IEEE 802.15.4 (docs/cbsb.md §3.1), shared by the group owner and the thing:
a CBSB payload in an unsecured data frame, broadcast to PAN/short 0xFFFF or unicast between
extended addresses on the join PAN. Sans-IO.
"""

from __future__ import annotations

from gateway.errors import GatewayError, ParseError
from gateway.wire.cbsb import DISPATCH
from gateway.wire.mac802154 import ExtAddress, FrameType, MacFrame, ShortAddress

__all__ = ["BROADCAST_PAN", "cbsb_mac_frame", "parse_cbsb_mac"]

BROADCAST_PAN = 0xFFFF


def cbsb_mac_frame(payload: bytes, src: bytes, dst: bytes | None, pan_id: int) -> bytes:
    """An IEEE 802.15.4-2006 data frame carrying a CBSB payload (docs/cbsb.md §3.1): broadcast
    to PAN/short 0xFFFF, or unicast to an extended address on the join PAN with an ACK
    requested; source extended, PAN ID compression. No FCS (the radio appends it)."""
    if dst is None:
        frame = MacFrame.create(
            FrameType.DATA, dst=ShortAddress(0xFFFF), dst_pan=BROADCAST_PAN,
            src=ExtAddress(src), src_pan=BROADCAST_PAN, payload=payload,
        )  # fmt: skip
    else:
        frame = MacFrame.create(
            FrameType.DATA, dst=ExtAddress(dst), dst_pan=pan_id, src=ExtAddress(src),
            src_pan=pan_id, payload=payload, ack_request=True,
        )  # fmt: skip
    return frame.to_bytes()


def parse_cbsb_mac(psdu: bytes) -> tuple[bytes | None, bytes] | None:
    """(source EUI-64 in written order or None, CBSB payload) of a received PSDU with its FCS;
    None for anything that is not an unsecured data frame with the CBSB dispatch."""
    try:
        frame = MacFrame.from_bytes(psdu, fcs=True)
    except (ParseError, GatewayError):
        return None
    if frame.frame_type != FrameType.DATA or frame.security is not None:
        return None
    if not frame.payload or frame.payload[0] != DISPATCH:
        return None
    src = frame.src.octets if isinstance(frame.src, ExtAddress) else None
    return src, frame.payload
