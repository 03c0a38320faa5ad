"""Test helpers: a hand-driven peer that crafts MLE and MAC frames (good or hostile) for the
network cores, and readers for what the cores send."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from gateway.thread.link import LinkReceiver, LinkSecurity, TagAllocator, TxFrame
from gateway.thread.network.events import NetFrame, Transmit
from gateway.thread.network.frames import data_request_frame, mle_frames, protect
from gateway.thread.network.security import Drop, KeyManager, ReceivedMle, open_mle, seal_mle
from gateway.wire.dataset import ActiveDataset
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import BROADCAST, ExtAddress, MacFrame, ShortAddress
from gateway.wire.mle import (
    AddressRegistrationEntry,
    AddressRegistrationTlv,
    ChallengeTlv,
    LinkFrameCounterTlv,
    MleCommand,
    MleFrameCounterTlv,
    MleMessage,
    MleTlvType,
    ModeTlv,
    ResponseTlv,
    ScanMaskTlv,
    TimeoutTlv,
    TlvRequestTlv,
    VersionTlv,
)

Addr = ipaddress.IPv6Address
ALL_ROUTERS = Addr("ff02::2")


def ll(ext: ExtAddress) -> Addr:
    return Addr(b"\xfe\x80" + bytes(6) + ext.iid())


@dataclass
class Peer:
    """A fake neighbour holding (or not) the network key."""

    ds: ActiveDataset
    ext: ExtAddress
    network_key: bytes | None = None
    key_sequence: int = 0
    mle_fc: int = 0
    mac_fc: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(5))
    keys: KeyManager = field(init=False)
    tags: TagAllocator = field(default_factory=lambda: TagAllocator(7))
    mac_seq: int = 0

    def __post_init__(self) -> None:
        key = self.network_key or self.ds.network_key
        assert key is not None
        self.keys = KeyManager(key, self.key_sequence, self.mle_fc, self.mac_fc)

    @property
    def pan(self) -> int:
        assert self.ds.pan_id is not None
        return self.ds.pan_id

    def mle(
        self,
        msg: MleMessage,
        dst: Addr = ALL_ROUTERS,
        *,
        mac_dst: ExtAddress | ShortAddress | None = None,
        frame_counter: int | None = None,
        hop_limit: int = 255,
    ) -> list[MacFrame]:
        """The frames of an MLE message from this peer (MAC-secured if fragmented)."""
        pkt = seal_mle(msg, self.keys, ll(self.ext), dst, frame_counter=frame_counter)
        if hop_limit != 255:
            pkt = Ipv6Packet(pkt.src, pkt.dst, pkt.next_header, pkt.payload, hop_limit)
        if mac_dst is None:
            mac_dst = BROADCAST if dst.is_multicast else ExtAddress.from_iid(dst.packed[8:])
        txs = mle_frames(
            pkt,
            src=self.ext,
            dst=mac_dst,
            pan_id=self.pan,
            tags=self.tags,
            key_index=self.keys.mac_key_index,
        )
        return [self.protect(t) for t in txs]

    def protect(self, tx: TxFrame) -> MacFrame:
        f = protect(tx, self.keys, self.ext, self.mac_seq)
        self.mac_seq += 1
        return f

    def poll(
        self, dst: ExtAddress | ShortAddress, src: ExtAddress | ShortAddress | None = None
    ) -> MacFrame:
        return self.protect(data_request_frame(src=src or self.ext, dst=dst, pan_id=self.pan))

    # -- messages -------------------------------------------------------------------------------

    def parent_request(
        self, challenge: bytes | None = None, *, scan: int = 0x80, mode: int = 0x0C
    ) -> MleMessage:
        ch = challenge if challenge is not None else self.rng.randbytes(8)
        self.challenge = ch
        return MleMessage(
            MleCommand.PARENT_REQUEST,
            (ModeTlv(mode), ChallengeTlv(ch), ScanMaskTlv(scan), VersionTlv(5)),
        )

    def child_id_request(
        self,
        response: bytes,
        *,
        mode: int = 0x0C,
        timeout: int = 240,
        link_fc: int | None = None,
        mle_fc: int | None = None,
        registration: bool = True,
        requests: tuple[int, ...] = (MleTlvType.ADDRESS16, MleTlvType.NETWORK_DATA),
    ) -> MleMessage:
        tlvs: list[object] = [
            ResponseTlv(response),
            LinkFrameCounterTlv(self.keys.mac_frame_counter if link_fc is None else link_fc),
            MleFrameCounterTlv(self.keys.mle_frame_counter if mle_fc is None else mle_fc),
            ModeTlv(mode),
            TimeoutTlv(timeout),
            VersionTlv(5),
        ]
        if registration:
            tlvs.append(AddressRegistrationTlv((AddressRegistrationEntry(self.ml_iid, 0),)))
        tlvs.append(TlvRequestTlv(requests))
        return MleMessage(MleCommand.CHILD_ID_REQUEST, tuple(tlvs))  # type: ignore[arg-type]

    ml_iid: bytes = bytes.fromhex("1122334455667788")
    challenge: bytes = b""


def read_mle(frames: list[NetFrame] | list[MacFrame], keys: KeyManager) -> list[ReceivedMle]:
    """Decode the MLE messages among frames a core sent (NetFrames are plaintext; MAC frames
    must be unprotected ones)."""
    rx = LinkReceiver()
    out: list[ReceivedMle] = []
    for f in frames:
        frame = f.tx.frame if isinstance(f, NetFrame) else f
        sec = f.tx.security if isinstance(f, NetFrame) else LinkSecurity.NONE
        if not frame.payload:
            continue
        dg = rx.receive(frame, sec, 0.0)
        if dg is None or dg.udp() is None or dg.udp().dst_port != 19788:  # type: ignore[union-attr]
            continue
        try:
            out.append(open_mle(dg, keys))
        except Drop:
            continue
    return out


def tlv_types(rm: ReceivedMle) -> list[int]:
    return [t.TYPE if hasattr(t, "TYPE") else t.type for t in rm.message.tlvs]


def transmits_to_frames(ts: list[Transmit]) -> list[MacFrame]:
    return [MacFrame.from_bytes(t.psdu) for t in ts]
