"""Policing of unsecured 802.15.4 traffic at the joiner router (gateway.thread.policy): the seed
draft's §3 "lock down" and "carefully police" rules."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ratelimit import TokenBucket
from gateway.thread.commissioning.discovery import discovery_request_packet
from gateway.thread.link import TagAllocator, encode_datagram, link_local
from gateway.thread.policy import PolicerConfig, UnsecuredPolicer, Verdict
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import BROADCAST, ExtAddress, FrameType, MacFrame, ShortAddress
from gateway.wire.mle import MLE_PORT, MleCommand, MleMessage

ROUTER = ExtAddress.from_hex("12b4300000000001")
PAN = 0x1234
JOINER_PORT = 1000


def joiner(n: int) -> ExtAddress:
    return ExtAddress((0x0200000000000000 + n).to_bytes(8, "big"))


def frames_to_router(src: ExtAddress, dport: int, size: int, tag: int = 1) -> list[MacFrame]:
    packet = Ipv6Packet.udp(link_local(src), link_local(ROUTER), 1000, dport, bytes(size))
    return [
        f.frame
        for f in encode_datagram(packet, src=src, dst=ROUTER, dst_pan=PAN, tags=TagAllocator(tag))
    ]


def discovery(src: ExtAddress) -> MacFrame:
    (tx,) = encode_datagram(
        discovery_request_packet(src),
        src=src,
        dst=BROADCAST,
        dst_pan=0xFFFF,
        src_pan=0x4321,
        tags=TagAllocator(0),
    )
    return tx.frame


def check(p: UnsecuredPolicer, frame: MacFrame, now: float = 0.0, allowed: bool = True) -> Verdict:
    return p.check(frame, joining_allowed=allowed, joiner_port=JOINER_PORT, now=now)


def test_locked_network_ignores_everything_unsecured() -> None:
    p = UnsecuredPolicer()
    assert check(p, discovery(joiner(1)), allowed=False) is Verdict.LOCKED
    assert (
        check(p, frames_to_router(joiner(1), JOINER_PORT, 20)[0], allowed=False) is Verdict.LOCKED
    )
    assert p.counters["ignored_locked"] == 2 and p.dropped == 0


def test_cbsb_frames_belong_to_the_group_owner() -> None:
    # CBSB-1 frames start their MAC payload with the NALP dispatch 0x3C (docs/cbsb.md)
    cbsb = MacFrame.create(
        FrameType.DATA, dst=BROADCAST, dst_pan=PAN, src=joiner(1), src_pan=PAN, payload=b"\x3c\x01"
    )
    p = UnsecuredPolicer()
    assert check(p, cbsb, allowed=False) is Verdict.NOT_OURS
    assert check(p, cbsb) is Verdict.NOT_OURS
    assert p.dropped == 0 and p.counters["not_ours"] == 2


def test_only_discovery_and_the_joiner_port_get_through() -> None:
    p = UnsecuredPolicer()
    assert check(p, discovery(joiner(1))) is Verdict.ACCEPT
    assert check(p, frames_to_router(joiner(2), JOINER_PORT, 40)[0]) is Verdict.ACCEPT
    assert check(p, frames_to_router(joiner(3), 5683, 40)[0]) is Verdict.PORT  # CoAP: no
    assert check(p, frames_to_router(joiner(3), 61631, 40)[0]) is Verdict.PORT  # TMF: no
    # MLE other than a Discovery Request (e.g. a Parent Request), and a bad hop limit
    other = MleMessage(MleCommand.PARENT_REQUEST).to_unsecured_bytes()
    pkt = Ipv6Packet.udp(link_local(joiner(4)), "ff02::2", MLE_PORT, MLE_PORT, other, hop_limit=255)
    (tx,) = encode_datagram(pkt, src=joiner(4), dst=BROADCAST, dst_pan=PAN, tags=TagAllocator(0))
    assert check(p, tx.frame) is Verdict.PORT
    req = discovery_request_packet(joiner(5))
    low = dataclasses.replace(req, hop_limit=64)
    (tx,) = encode_datagram(low, src=joiner(5), dst=BROADCAST, dst_pan=0xFFFF, src_pan=1,
                            tags=TagAllocator(0))  # fmt: skip
    assert check(p, tx.frame) is Verdict.PORT
    # a short source address is not a joiner
    short = dataclasses.replace(discovery(joiner(6)), src=ShortAddress(0x0400))
    assert check(p, short) is Verdict.NOT_EXTENDED
    assert p.dropped == 5


def test_fragments_only_follow_an_admitted_first_fragment() -> None:
    p = UnsecuredPolicer()
    frags = frames_to_router(joiner(1), JOINER_PORT, 400)
    assert len(frags) > 2
    assert check(p, frags[1]) is Verdict.FRAGMENT  # no FRAG1 seen
    assert [check(p, f) for f in frags] == [Verdict.ACCEPT] * len(frags)
    assert p.stats()["datagrams_in_flight"] == 0  # complete: its slot is free again
    # a FRAG1 to another port opens nothing, so its FRAGNs are dropped too
    bad = frames_to_router(joiner(2), 8080, 400)
    assert [check(p, f) for f in bad][:2] == [Verdict.PORT, Verdict.FRAGMENT]


def test_reassembly_slots_are_bounded_per_joiner_and_globally() -> None:
    cfg = PolicerConfig(max_datagrams_in_flight=3, max_datagrams_per_joiner=2)
    p = UnsecuredPolicer(cfg)
    first = [frames_to_router(joiner(1), JOINER_PORT, 400, tag=t)[0] for t in range(3)]
    assert [check(p, f) for f in first] == [Verdict.ACCEPT, Verdict.ACCEPT, Verdict.FRAGMENT]
    other = [frames_to_router(joiner(2), JOINER_PORT, 400, tag=t)[0] for t in range(2)]
    assert [check(p, f) for f in other] == [Verdict.ACCEPT, Verdict.FRAGMENT]
    assert check(p, first[2], now=cfg.fragment_timeout + 1) is Verdict.ACCEPT  # expired slots


def test_rate_limits_per_joiner_and_global() -> None:
    cfg = PolicerConfig(joiner_rate=10, joiner_burst=5, global_rate=100, global_burst=8)
    p = UnsecuredPolicer(cfg)
    f1 = discovery(joiner(1))
    assert [check(p, f1) for _ in range(6)][-2:] == [Verdict.ACCEPT, Verdict.RATE_JOINER]
    assert check(p, discovery(joiner(2))) is Verdict.ACCEPT
    assert check(p, discovery(joiner(3))) is Verdict.ACCEPT
    # joiner 1's refused frame took nothing from the shared budget (issue 16; before, it did
    # and joiner 4 was refused here)
    assert check(p, discovery(joiner(4))) is Verdict.ACCEPT
    assert check(p, discovery(joiner(5))) is Verdict.RATE_GLOBAL
    assert check(p, f1, now=1.0) is Verdict.ACCEPT  # the buckets refill with time


def test_token_bucket() -> None:
    b = TokenBucket(rate=2.0, burst=3.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)


def test_token_bucket_clock() -> None:
    b = TokenBucket(rate=1.0, burst=2.0, now=10.0)  # the clock starts here, not at the first take
    assert b.take(12.0) and b.take(12.0) and not b.take(12.0)
    # a clock that steps back neither refills nor moves the bucket's clock
    assert not b.take(5.0)
    assert not b.take(12.5) and b.take(13.0) and not b.take(13.0)
    assert b.tokens == 0.0


def test_joiner_table_is_bounded() -> None:
    p = UnsecuredPolicer(PolicerConfig(max_joiners_tracked=4))
    for n in range(20):
        check(p, discovery(joiner(n)))
    assert p.stats()["joiners_tracked"] == 4
    p.forget(joiner(19))
    assert p.stats()["joiners_tracked"] == 3


@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=116), allowed=st.booleans())
def test_hostile_frames_get_a_verdict_never_an_exception(payload: bytes, allowed: bool) -> None:
    p = UnsecuredPolicer()
    frame = MacFrame.create(
        FrameType.DATA, dst=ROUTER, dst_pan=PAN, src=joiner(1), src_pan=PAN, payload=payload
    )
    assert isinstance(check(p, frame, allowed=allowed), Verdict)


def test_one_flooding_source_does_not_starve_the_others() -> None:
    """Issue 16: a sender flooding Discovery Requests at full rate spends only its own bucket.
    Fails on the code before the fix (the global bucket was taken first, so the flood drained
    it and the real joiner was refused with RATE_GLOBAL)."""
    p = UnsecuredPolicer(PolicerConfig())
    flood = discovery(joiner(9))
    real = discovery(joiner(1))
    verdicts = []
    for i in range(2000):  # 2000 frames/s from the attacker for 1 s, a real frame every 50 ms
        now = i / 2000
        check(p, flood, now=now)
        if i % 100 == 0:
            verdicts.append(check(p, real, now=now))
    assert verdicts == [Verdict.ACCEPT] * len(verdicts)
