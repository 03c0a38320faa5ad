"""Sleepy children on the parent side (§6): bounded indirect queues, what a poll gets, the
frame-pending bit, the source-match seam, failed deliveries, supervision."""

from __future__ import annotations

from gateway.thread.link import LinkSecurity
from gateway.thread.network.events import NetFrame, SetSourceMatch
from gateway.thread.network.router import RouterConfig
from gateway.wire.mac802154 import ExtAddress, FrameType, ShortAddress
from tests.thread.network.helpers import Peer
from tests.thread.network.test_messages import NOW, attach, leader
from tests.thread.network.world import GATEWAY_EXT, NetWorld


def sleepy_child(**kw: object):
    core = leader(**kw)  # type: ignore[arg-type]
    peer = Peer(core.dataset, ExtAddress.from_hex("5e5e000000000001"))
    attach(core, peer, mode=0x04, sup=0)
    c = core.children_table.get(peer.ext)
    assert c is not None and c.valid
    return core, peer, c


def drain(core, peer, c, *, ack: bool = True, now: float = NOW + 2) -> list[NetFrame]:
    got: list[NetFrame] = []
    for _ in range(20):
        core.frame_received(peer.poll(GATEWAY_EXT), now)
        out = core.frames_to_send()
        for f in out:
            if f.handle is not None:
                core.tx_done(f.handle, ack, now)
        got += out
        if not c.queue.pending:
            break
    return got


def test_queue_is_bounded_and_the_oldest_message_gives_way() -> None:
    core, peer, c = sleepy_child(indirect_queue_messages=4)
    drain(core, peer, c)
    ml = c.ml_eid(core.ml_prefix)
    assert ml is not None
    for seq in range(10):
        assert core.ping(ml, NOW + 2, sequence=seq) == "sent"
    assert len(c.queue) == 4
    assert core.counters["indirect_dropped_queue_full"] == 6
    frames = drain(core, peer, c)
    assert [f.what for f in frames] == ["unicast"] * 4
    assert core.counters["indirect_delivered"] >= 4


def test_source_match_follows_the_queue() -> None:
    core, peer, c = sleepy_child()
    drain(core, peer, c)
    core.radio_actions()
    core.ping(c.ml_eid(core.ml_prefix), NOW + 2)
    acts = core.radio_actions()
    assert SetSourceMatch(peer.ext, True) in acts
    assert SetSourceMatch(ShortAddress(c.rloc16), True) in acts
    assert core.frame_pending_for(peer.ext) and core.frame_pending_for(ShortAddress(c.rloc16))
    drain(core, peer, c)
    acts = core.radio_actions()
    assert SetSourceMatch(peer.ext, False) in acts
    assert not core.frame_pending_for(peer.ext)


def test_a_poll_with_nothing_queued() -> None:
    core, peer, c = sleepy_child()
    drain(core, peer, c)
    # source match said "nothing pending": no frame
    core.frame_received(peer.poll(GATEWAY_EXT), NOW + 3, ack_frame_pending=None)
    assert core.frames_to_send() == []
    # a radio that sets frame pending on every ACK (AT86RF233 AACK_SET_PD): an empty frame
    core.frame_received(peer.poll(GATEWAY_EXT), NOW + 3, ack_frame_pending=True)
    (empty,) = core.frames_to_send()
    assert empty.tx.security is LinkSecurity.MAC and empty.tx.frame.payload == b""
    assert empty.tx.frame.frame_type == FrameType.DATA and not empty.tx.frame.frame_pending
    assert core.counters["empty_frames"] == 1
    assert c.last_heard == NOW + 3  # a poll refreshes the child


def test_four_failed_deliveries_drop_the_message() -> None:
    core, peer, c = sleepy_child()
    drain(core, peer, c)
    core.ping(c.ml_eid(core.ml_prefix), NOW + 2)
    for _ in range(4):
        core.frame_received(peer.poll(GATEWAY_EXT), NOW + 3)
        (f,) = core.frames_to_send()
        assert f.handle is not None
        core.tx_done(f.handle, False, NOW + 3)
    assert len(c.queue) == 0
    assert core.counters["indirect_dropped_tx_failed"] == 1


def test_more_messages_queued_set_frame_pending_and_the_first_frame_uses_the_ext_address() -> None:
    core, peer, c = sleepy_child()
    drain(core, peer, c)
    ml = c.ml_eid(core.ml_prefix)
    core.ping(ml, NOW + 2, sequence=1)
    core.ping(ml, NOW + 2, sequence=2)
    frames = drain(core, peer, c)
    assert [f.tx.frame.frame_pending for f in frames] == [True, False]
    assert frames[0].tx.frame.dst == peer.ext  # the first indirect frame after attach
    core.ping(ml, NOW + 3, sequence=3)
    (later,) = drain(core, peer, c)
    assert later.tx.frame.dst == ShortAddress(c.rloc16)


def test_supervision_frames_for_a_child_that_asked() -> None:
    world = NetWorld(seed=31, config=RouterConfig())
    sed = world.add_child(rx_on=False, timeout=300, poll_period=200)
    world.run_until(lambda: sed.core.attached, 10)
    c = world.parent.children_table.get(sed.ext)
    assert c is not None and c.supervision_interval == 129
    world.run(400)
    assert world.parent.counters["supervision_frames"] >= 1
    assert sed.core.counters["rx_empty_frames"] >= 1
    assert sed.core.attached and sed.core.counters["supervision_timeouts"] == 0


def test_a_sleepy_child_behind_an_always_frame_pending_radio_stays_attached() -> None:
    world = NetWorld(seed=32, always_frame_pending=True)
    sed = world.add_child(rx_on=False, timeout=30, poll_period=2)
    world.run_until(lambda: sed.core.attached, 10)
    world.run(120)
    assert sed.core.attached and sed.core.counters["attached"] == 1
    assert world.parent.counters["empty_frames"] >= 50  # every poll is answered
    assert sed.core.counters["rx_empty_frames"] >= 50
