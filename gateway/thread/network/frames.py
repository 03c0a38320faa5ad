"""MAC framing shared by the parent and the child cores (fact sheet §3, §6, §10).

* MLE goes from the extended source to an extended destination (or 0xFFFF), frame version 2006,
  without MAC security -- unless the datagram needs 6LoWPAN fragments, which then travel
  MAC-secured (key id mode 1), as OpenThread's ``PrepareFrame`` does.
* Every other datagram, the empty frame a poll may be answered with, supervision frames and
  Data Request polls are MAC-secured with key id mode 1.

Frames come back as :class:`~gateway.thread.link.TxFrame` (unprotected, with the security to
apply): the parent hands them to the radio service, the child secures them itself with
:func:`protect`.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.errors import CryptoError
from gateway.thread.link import SECURITY_LEVEL, LinkSecurity, TagAllocator, TxFrame, encode_datagram
from gateway.thread.network.security import Drop, KeyManager
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.lowpan import Contexts
from gateway.wire.mac802154 import (
    AuxSecurityHeader,
    ExtAddress,
    FrameType,
    MacCommand,
    MacFrame,
    ShortAddress,
    secure,
    unsecure,
)

__all__ = [
    "data_frames",
    "data_request_frame",
    "empty_data_frame",
    "mle_frames",
    "open_mac",
    "protect",
]


def mle_frames(
    packet: Ipv6Packet,
    *,
    src: ExtAddress,
    dst: ExtAddress | ShortAddress,
    pan_id: int,
    tags: TagAllocator,
    key_index: int,
) -> list[TxFrame]:
    """An MLE datagram: one unsecured frame when it fits, MAC-secured fragments otherwise."""
    frames = encode_datagram(packet, src=src, dst=dst, dst_pan=pan_id, tags=tags)
    if len(frames) == 1:
        return frames
    return encode_datagram(
        packet,
        src=src,
        dst=dst,
        dst_pan=pan_id,
        tags=tags,
        security=LinkSecurity.MAC,
        mac_key_index=key_index,
    )


def data_frames(
    packet: Ipv6Packet,
    *,
    src: ExtAddress | ShortAddress,
    dst: ExtAddress | ShortAddress,
    pan_id: int,
    tags: TagAllocator,
    key_index: int,
    contexts: Contexts | None,
) -> list[TxFrame]:
    return encode_datagram(
        packet,
        src=src,
        dst=dst,
        dst_pan=pan_id,
        tags=tags,
        security=LinkSecurity.MAC,
        mac_key_index=key_index,
        contexts=contexts,
    )


def empty_data_frame(
    *, src: ExtAddress | ShortAddress, dst: ExtAddress | ShortAddress, pan_id: int
) -> TxFrame:
    """An empty MAC-secured data frame (answer to a poll with nothing queued; supervision)."""
    frame = MacFrame.create(
        FrameType.DATA, dst=dst, dst_pan=pan_id, src=src, src_pan=pan_id, ack_request=True
    )
    return TxFrame(frame, LinkSecurity.MAC)


def data_request_frame(
    *, src: ExtAddress | ShortAddress, dst: ExtAddress | ShortAddress, pan_id: int
) -> TxFrame:
    """A MAC Data Request (poll) command, to be secured with key id mode 1."""
    frame = MacFrame.create(
        FrameType.COMMAND,
        dst=dst,
        dst_pan=pan_id,
        src=src,
        src_pan=pan_id,
        ack_request=True,
        payload=bytes((MacCommand.DATA_REQUEST,)),
    )
    return TxFrame(frame, LinkSecurity.MAC)


def protect(tx: TxFrame, keys: KeyManager, ext_src: ExtAddress, seq: int) -> MacFrame:
    """Secure a frame with this node's MAC key, key index and next MAC frame counter (a node
    that owns its radio: the reference child). ``seq`` is the MAC sequence number."""
    frame = replace(tx.frame, seq=seq & 0xFF)
    if tx.security is LinkSecurity.NONE:
        return frame
    aux = AuxSecurityHeader(SECURITY_LEVEL, 1, 0, b"", keys.mac_key_index)
    return secure(
        replace(frame, security=aux),
        keys.mac_key,
        ext_src=ext_src,
        frame_counter=keys.next_mac_counter(),
    )


def open_mac(frame: MacFrame, keys: KeyManager, ext_src: ExtAddress) -> tuple[MacFrame, int]:
    """Check and remove key id mode 1 security: ``(plaintext frame, key sequence)``. Raises
    :class:`Drop` (``mac_bad_key_index``, ``mac_auth_failed``)."""
    sec = frame.security
    if sec is None or sec.key_index is None:
        raise Drop("mac_bad_key_index")
    seq = keys.resolve_mac_key_index(sec.key_index)
    if seq is None:
        raise Drop("mac_bad_key_index")
    try:
        return unsecure(frame, keys.keys_for(seq)[1], ext_src=ext_src), seq
    except CryptoError:
        raise Drop("mac_auth_failed") from None
