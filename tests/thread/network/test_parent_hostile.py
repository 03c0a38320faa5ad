"""Hostile and wrong input to the parent core: wrong keys, stale challenges, replayed frame
counters, malformed TLVs, a full child table and a flood of Parent Requests. Everything is
dropped and counted; nothing raises, nothing evicts an attached child."""

from __future__ import annotations

import random
import tracemalloc

from gateway.thread.network.child_table import ChildState
from gateway.thread.network.events import ChildRemoved, ChildTableFullEvent, KeySequenceChanged
from gateway.thread.network.router import RouterConfig, RouterCore
from gateway.wire.mac802154 import ExtAddress, FrameType, MacFrame, ShortAddress
from gateway.wire.mle import (
    ChallengeTlv,
    LeaderDataTlv,
    MleCommand,
    MleMessage,
    ModeTlv,
    SourceAddressTlv,
    StatusTlv,
    TimeoutTlv,
)
from gateway.wire.tlv import Tlv
from tests.thread.network.helpers import Peer, ll, read_mle
from tests.thread.network.test_messages import NOW, attach, exchange_parent_request, leader
from tests.thread.network.world import GATEWAY_EXT


def new_peer(core: RouterCore, n: int, **kw: object) -> Peer:
    return Peer(core.dataset, ExtAddress((0xA000_0000_0000_0000 + n).to_bytes(8, "big")), **kw)  # type: ignore[arg-type]


def feed(core: RouterCore, frames: list[MacFrame], now: float) -> None:
    for f in frames:
        core.frame_received(f, now)


def test_parent_request_with_a_wrong_key_is_dropped_and_counted() -> None:
    core = leader()
    bad = new_peer(core, 1, network_key=bytes(range(16)))
    feed(core, bad.mle(bad.parent_request()), NOW)
    core.poll(NOW + 2)
    assert core.counters["mle_auth_failed"] == 1
    assert len(core.children_table) == 0
    assert not read_mle(core.frames_to_send(), bad.keys)


def test_child_id_request_with_a_wrong_key_is_dropped() -> None:
    core = leader()
    peer = new_peer(core, 2)
    pr, _ = exchange_parent_request(core, peer)
    challenge = pr.message.get(ChallengeTlv).value
    thief = Peer(core.dataset, peer.ext, network_key=bytes(16))
    feed(core, thief.mle(thief.child_id_request(challenge), ll(GATEWAY_EXT)), NOW + 1.1)
    assert core.counters["mle_auth_failed"] == 1
    c = core.children_table.get(peer.ext)
    assert c is not None and c.state is ChildState.PARENT_REQUEST


def test_stale_or_wrong_challenges_are_dropped_and_counted() -> None:
    core = leader()
    peer = new_peer(core, 3)
    first, _ = exchange_parent_request(core, peer)
    old = first.message.get(ChallengeTlv).value
    peer.rng = random.Random(99)
    second, _ = exchange_parent_request(core, peer, now=NOW + 0.8)  # a new challenge
    new = second.message.get(ChallengeTlv).value
    assert old != new
    for response in (old, new[:4], new + b"\0", bytes(8)):
        feed(core, peer.mle(peer.child_id_request(response), ll(GATEWAY_EXT)), NOW + 1.9)
    assert core.counters["child_id_request_bad_response"] == 4
    c = core.children_table.get(peer.ext)
    assert c is not None and not c.valid
    # a challenge older than 5 s is stale even if it matches
    issued = c.challenge_time
    c.challenge_time = NOW - 10
    feed(core, peer.mle(peer.child_id_request(new), ll(GATEWAY_EXT)), NOW + 1.9)
    assert core.counters["child_id_request_bad_response"] == 5
    c.challenge_time = issued
    feed(core, peer.mle(peer.child_id_request(new), ll(GATEWAY_EXT)), NOW + 2.0)
    assert c.valid


def test_replayed_mle_and_mac_frame_counters_are_rejected() -> None:
    core = leader()
    peer = new_peer(core, 4)
    attach(core, peer)
    c = core.children_table.get(peer.ext)
    assert c is not None and c.valid
    cur = MleMessage(
        MleCommand.CHILD_UPDATE_REQUEST,
        (ModeTlv(0x0C), SourceAddressTlv(c.rloc16 or 0), LeaderDataTlv(core.partition_id)),
    )
    frames = peer.mle(cur, ll(GATEWAY_EXT))
    feed(core, frames, NOW + 2)
    assert len(read_mle(core.frames_to_send(), peer.keys)) == 1
    feed(core, frames, NOW + 3)  # the same frame again
    assert core.counters["mle_replay"] == 1
    assert not read_mle(core.frames_to_send(), peer.keys)
    old = peer.mle(cur, ll(GATEWAY_EXT), frame_counter=1)  # a counter from the past
    feed(core, old, NOW + 3)
    assert core.counters["mle_replay"] == 2
    # MAC: the same poll twice is a duplicate, an older counter a replay
    p1 = peer.poll(GATEWAY_EXT)
    p2 = peer.poll(GATEWAY_EXT)
    feed(core, [p1, p2, p2, p1], NOW + 4)
    assert core.counters["data_polls"] == 2
    assert core.counters["mac_duplicate"] == 1 and core.counters["mac_replay"] == 1


def test_malformed_and_foreign_input_never_raises() -> None:
    core = leader()
    peer = new_peer(core, 5)
    bad_mode = MleMessage(MleCommand.PARENT_REQUEST, (Tlv(1, b""), ChallengeTlv(b"x" * 8)))
    feed(core, peer.mle(bad_mode), NOW)
    assert core.counters["mle_malformed"] == 1
    feed(core, peer.mle(peer.parent_request(), hop_limit=64), NOW)
    assert core.counters["mle_bad_hop_limit"] == 1
    no_version = MleMessage(MleCommand.PARENT_REQUEST, (ModeTlv(0x0C), ChallengeTlv(b"y" * 8)))
    feed(core, peer.mle(no_version), NOW)
    assert core.counters["parent_request_malformed"] == 1
    rng = random.Random(1)
    for _ in range(300):
        raw = rng.randbytes(rng.randrange(3, 120))
        try:
            frame = MacFrame.from_bytes(raw)
        except Exception:
            continue
        core.frame_received(frame, NOW)
    # an unsecured non-MLE frame belongs to the commissioning core
    data = MacFrame.create(
        FrameType.DATA,
        dst=GATEWAY_EXT,
        dst_pan=core.pan_id,
        src=peer.ext,
        src_pan=core.pan_id,
        payload=b"\x41" + bytes(40),
    )
    assert core.frame_received(data, NOW) is False
    # MAC-secured from a neighbour we do not know
    assert core.frame_received(peer.poll(GATEWAY_EXT), NOW) is True
    assert core.counters["rx_unknown_neighbor"] >= 1
    core.poll(NOW + 10)


def test_a_full_child_table_answers_no_further_parent_requests_and_says_so() -> None:
    core = leader(max_children=3)
    kids = [new_peer(core, 10 + i) for i in range(3)]
    for k in kids:
        attach(core, k)
    assert len(core.children_table.valid()) == 3
    core.events()
    late = new_peer(core, 20)
    feed(core, late.mle(late.parent_request()), NOW + 2)
    core.poll(NOW + 3)
    assert not [m for m in read_mle(core.frames_to_send(), late.keys) if m.message.command == 10]
    assert core.counters["parent_request_table_full"] == 1
    ev = [e for e in core.events() if isinstance(e, ChildTableFullEvent)]
    assert len(ev) == 1 and "THR101" in ev[0].text and ev[0].level == "warning"
    feed(core, late.mle(late.parent_request()), NOW + 4)  # again: counted, not logged again
    assert core.counters["parent_request_table_full"] == 2
    assert not [e for e in core.events() if isinstance(e, ChildTableFullEvent)]
    assert core.status(NOW + 4)["children"]["table_full"] is True
    assert all(k.ext in [c.ext for c in core.children_table.valid()] for k in kids)


def test_a_flood_of_parent_requests_evicts_nobody_and_stays_within_bounds() -> None:
    core = leader(max_children=32)
    kids = [new_peer(core, 100 + i) for i in range(5)]
    for k in kids:
        attach(core, k)
    core.frames_to_send()
    flood = [new_peer(core, 10_000 + i) for i in range(1000)]
    requests = [p.mle(p.parent_request()) for p in flood]
    t = NOW + 5
    answered = 0
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i, frames in enumerate(requests):
        feed(core, frames, t + i * 0.001)
        assert len(core.children_table) <= 32
        if i % 50 == 0:
            core.poll(t + i * 0.001)
            answered += len([f for f in core.frames_to_send() if f.what == "parent response"])
    core.poll(t + 2)
    answered += len([f for f in core.frames_to_send() if f.what == "parent response"])
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 2_000_000, grown
    assert answered == 27  # the free entries only
    assert core.counters["parent_request_table_full"] == 1000 - 27
    valid = {c.ext for c in core.children_table.valid()}
    assert all(k.ext in valid for k in kids)
    # the invented entries expire after 5 s; a real child attaches again
    core.poll(t + 8)
    assert len(core.children_table) == 5
    newcomer = new_peer(core, 50_000)
    attach(core, newcomer)
    assert len(core.children_table.valid()) == 6


def test_child_update_request_from_unknown_children() -> None:
    core = leader()
    med, sed = new_peer(core, 30), new_peer(core, 31)
    for p, mode in ((med, 0x0C), (sed, 0x04)):
        msg = MleMessage(MleCommand.CHILD_UPDATE_REQUEST, (ModeTlv(mode), ChallengeTlv(b"c" * 8)))
        feed(core, p.mle(msg, ll(GATEWAY_EXT)), NOW)
    out = read_mle(core.frames_to_send(), med.keys)
    assert len(out) == 1 and out[0].dst == ll(med.ext)
    assert out[0].message.get(StatusTlv) == StatusTlv(1)
    assert core.counters["child_update_request_unknown_rejected"] == 1
    assert core.counters["child_update_request_unknown"] == 1


def test_timeout_zero_is_a_graceful_detach() -> None:
    core = leader()
    peer = new_peer(core, 40)
    attach(core, peer)
    c = core.children_table.get(peer.ext)
    assert c is not None and c.rloc16 is not None
    core.events()
    msg = MleMessage(
        MleCommand.CHILD_UPDATE_REQUEST,
        (
            ModeTlv(0x0C),
            SourceAddressTlv(c.rloc16),
            LeaderDataTlv(core.partition_id),
            TimeoutTlv(0),
        ),
    )
    feed(core, peer.mle(msg, ll(GATEWAY_EXT)), NOW + 2)
    assert core.children_table.get(peer.ext) is None
    assert [e for e in core.events() if isinstance(e, ChildRemoved)]


def test_a_child_on_the_next_key_sequence_switches_us_within_the_guard_rules() -> None:
    core = leader()
    peer = new_peer(core, 50)
    attach(core, peer)
    c = core.children_table.get(peer.ext)
    assert c is not None and c.rloc16 is not None
    core.events()
    peer.keys.set_key_sequence(1, NOW)
    feed(core, [peer.poll(ShortAddress(core.rloc16), ShortAddress(c.rloc16))], NOW + 2)
    assert core.keys.key_sequence == 1  # MAC: the +1 of a valid neighbour, no guard yet
    assert [e for e in core.events() if isinstance(e, KeySequenceChanged)]
    assert core.keys.guard_active(NOW + 2)
    peer.keys.set_key_sequence(2, NOW)
    cur = MleMessage(
        MleCommand.CHILD_UPDATE_REQUEST,
        (ModeTlv(0x0C), SourceAddressTlv(c.rloc16), LeaderDataTlv(core.partition_id)),
    )
    feed(core, peer.mle(cur, ll(GATEWAY_EXT)), NOW + 3)
    assert core.keys.key_sequence == 1  # a peer message inside the guard: not adopted
    assert read_mle(core.frames_to_send(), peer.keys)  # but answered


def test_an_authoritative_child_id_request_moves_the_key_sequence() -> None:
    core = RouterCore(
        leader().dataset, GATEWAY_EXT, rng=random.Random(4), config=RouterConfig(router_id=3)
    )
    core.start(NOW)
    peer = Peer(core.dataset, ExtAddress.from_hex("0102030405060708"))
    pr, _ = exchange_parent_request(core, peer)
    peer.keys.set_key_sequence(7, NOW)
    ch = pr.message.get(ChallengeTlv).value
    feed(core, peer.mle(peer.child_id_request(ch), ll(GATEWAY_EXT)), NOW + 1.1)
    assert core.keys.key_sequence == 7
    assert core.keys.mle_frame_counter == 1  # reset on the switch, then one message sent
