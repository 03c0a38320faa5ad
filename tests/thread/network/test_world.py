"""The virtual-time must-show of issue 11: 32 children, sleepy and rx-on mixed, attach to the
gateway's parent core and stay attached through 10 minutes of keep-alives; one that goes away
is timed out and its RLOC16 freed. Plus restarts of either side."""

from __future__ import annotations

import random
import time

from gateway.thread.network.addressing import router_id_of
from gateway.thread.network.child import ChildRole
from gateway.thread.network.events import ChildAdded, ChildRemoved, PingReply, RoleChanged
from gateway.thread.network.router import RouterConfig
from gateway.thread.network.snapshot import ChildNodeSnapshot
from gateway.wire.dataset import new_active_dataset
from gateway.wire.meshcop import SecurityPolicy
from tests.thread.network.world import NetWorld

TIMEOUTS = (30, 60, 120, 240)


def build_32(world: NetWorld) -> None:
    for i in range(32):
        sleepy = i % 2 == 1
        timeout = TIMEOUTS[i % 4]
        world.add_child(rx_on=not sleepy, timeout=timeout, start=False)
    for n in world.nodes:
        n.core.start(world.now)


def test_32_children_attach_and_stay_attached_for_10_minutes_then_one_times_out() -> None:
    world = NetWorld(seed=11, config=RouterConfig(max_children=32))
    build_32(world)
    wall = time.monotonic()
    world.run_until(lambda: len(world.attached()) == 32, timeout=60)
    table = world.parent.children_table
    assert len(table.valid()) == 32
    rlocs = {n.core.rloc16 for n in world.nodes}
    assert len(rlocs) == 32 and all(
        r is not None and router_id_of(r) == world.parent.router_id for r in rlocs
    )
    for n in world.nodes:
        c = table.get(n.ext)
        assert c is not None and c.rloc16 == n.core.rloc16
    # 10 minutes of keep-alives: nobody detaches, nobody is removed
    polls0 = world.parent.counters["data_polls"]
    updates0 = world.parent.counters["child_update_requests"]
    world.run(600)
    assert len(world.attached()) == 32
    assert len(table.valid()) == 32
    assert not [e for e in world.parent_events if isinstance(e, ChildRemoved)]
    assert all(n.core.counters["attached"] == 1 for n in world.nodes)  # no re-attach
    # the keep-alives really happened: rx-on children's Child Update Requests, sleepy polls
    assert world.parent.counters["child_update_requests"] - updates0 >= 16 * 2
    assert world.parent.counters["data_polls"] - polls0 >= 16 * 2
    for n in world.nodes:
        c = table.get(n.ext)
        assert c is not None and world.now - c.last_heard < c.timeout
    # one rx-on child with a 30 s timeout goes away
    gone = world.nodes[0]
    assert gone.core.config.timeout == 30 and gone.core.config.rx_on
    gone_rloc = gone.core.rloc16
    assert gone_rloc is not None
    gone.alive = False
    world.run(31)
    assert table.get(gone.ext) is None and table.by_rloc16(gone_rloc) is None
    removed = [e for e in world.parent_events if isinstance(e, ChildRemoved)]
    assert [(e.ext, e.rloc16, e.reason) for e in removed] == [(gone.ext, gone_rloc, "timed out")]
    assert len(table.valid()) == 31
    assert world.parent.status(world.now)["children"]["attached"] == 31
    assert time.monotonic() - wall < 60  # a few seconds of real time in CI


def test_a_sleepy_child_that_goes_away_is_timed_out_and_its_queue_dropped_with_a_count() -> None:
    world = NetWorld(seed=12)
    sed = world.add_child(rx_on=False, timeout=20)
    world.run_until(lambda: sed.core.attached, 10)
    rloc = sed.core.rloc16
    assert rloc is not None
    sed.alive = False  # never polls again
    assert world.parent.ping(sed.core.ml_eid, world.now) == "sent"
    world.parent.ping(sed.core.ml_eid, world.now, sequence=2)
    c = world.parent.children_table.get(sed.ext)
    assert c is not None and len(c.queue) == 2
    world._pump()
    assert world.source_match.get(sed.ext) is True  # radio seam: frame pending for its polls
    world.run(21)
    assert world.parent.children_table.by_rloc16(rloc) is None
    assert world.parent.counters["indirect_dropped_child_removed"] == 2
    assert world.source_match.get(sed.ext) is False


def test_children_stay_attached_across_a_restart_of_the_gateway() -> None:
    world = NetWorld(seed=13)
    meds = [world.add_child(rx_on=True, timeout=60) for _ in range(3)]
    seds = [world.add_child(rx_on=False, timeout=60, poll_period=5) for _ in range(3)]
    world.run_until(lambda: len(world.attached()) == 6, 20)
    before = {n.ext: n.core.rloc16 for n in world.nodes}
    old_partition = world.parent.partition_id
    old_id_seq = world.parent.id_sequence
    world.run(30)
    snap = world.restart_parent()
    assert len(snap.children) == 6
    p = world.parent
    assert p.partition_id == old_partition and p.router_id == snap.router_id
    assert p.leader_router_id == snap.leader_router_id and p.weighting == snap.weighting
    assert ((p.id_sequence - old_id_seq) & 0xFF) < 0x80  # newer than anything sent before
    assert all(c.state.restoring for c in p.children_table)
    world.run_until(lambda: all(c.valid for c in p.children_table), 30)
    assert {n.ext: n.core.rloc16 for n in world.nodes} == before
    assert all(n.core.counters["attached"] == 1 for n in world.nodes)  # never re-attached
    restored = [e for e in world.parent_events if isinstance(e, ChildAdded) and e.restored]
    assert len(restored) == 6
    world.run(120)
    assert len(world.attached()) == 6 and len(p.children_table.valid()) == 6
    assert meds and seds


def test_a_child_reboots_into_its_network_without_attaching_again() -> None:
    world = NetWorld(seed=14)
    for rx_on in (True, False):
        n = world.add_child(rx_on=rx_on, timeout=60, poll_period=3)
        world.run_until(lambda n=n: bool(n.core.attached), 10)  # type: ignore[misc]
        snap = n.core.snapshot()
        assert snap is not None
        saved = ChildNodeSnapshot.from_dict(snap.to_dict())
        n.alive = False
        world.run(2)
        again = world.add_child(
            rx_on=rx_on,
            timeout=60,
            poll_period=3,
            ext=n.ext,
            saved=saved,
            mle_frame_counter=saved.mle_frame_counter + 1000,
            mac_frame_counter=saved.mac_frame_counter + 1000,
        )
        assert again.core.role is ChildRole.RESTORING
        world.run_until(lambda again=again: bool(again.core.attached), 20)  # type: ignore[misc]
        assert again.core.rloc16 == saved.rloc16
        assert again.core.counters["parent_requests"] == 0
        assert [e for e in again.events if isinstance(e, RoleChanged) and e.role == "child"]


def test_children_reattach_when_the_gateway_comes_back_without_its_state() -> None:
    world = NetWorld(seed=15)
    med = world.add_child(rx_on=True, timeout=30)
    sed = world.add_child(rx_on=False, timeout=30, poll_period=2)
    world.run_until(lambda: len(world.attached()) == 2, 10)
    old = world.parent
    world.parent_alive = False
    world.run(40)  # keep-alives fail: both go looking for a parent
    assert med.core.role is ChildRole.ATTACHING and sed.core.role is ChildRole.ATTACHING
    world.parent_alive = True
    world.parent = type(old)(world.ds, old.ext_addr, config=old.config)
    world.parent.start(world.now)
    world.run_until(lambda: len(world.attached()) == 2, 120)
    assert len(world.parent.children_table.valid()) == 2


def test_key_rotation_per_the_security_policy_and_children_follow() -> None:
    ds = new_active_dataset(
        random.Random(3),
        channel=15,
        network_name="KeyNet",
        security_policy=SecurityPolicy(rotation_hours=2),
    )
    world = NetWorld(ds, seed=16)
    med = world.add_child(rx_on=True, timeout=120)
    sed = world.add_child(rx_on=False, timeout=120, poll_period=30)
    world.run_until(lambda: len(world.attached()) == 2, 10)
    world.run(2 * 3600 + 60)
    assert world.parent.keys.key_sequence == 1
    assert med.core.keys.key_sequence == 1 and sed.core.keys.key_sequence == 1
    assert len(world.attached()) == 2 and all(n.core.counters["attached"] == 1 for n in world.nodes)
    assert len(world.parent.children_table.valid()) == 2
    world.parent.ping(sed.core.ml_eid, world.now, sequence=3)
    world.run(31)
    assert [e for e in world.parent_events if isinstance(e, PingReply) and e.sequence == 3]


def test_no_key_in_reprs_views_events_or_snapshots() -> None:
    import json

    world = NetWorld(seed=17)
    med = world.add_child(rx_on=True, timeout=60)
    sed = world.add_child(rx_on=False, timeout=60, poll_period=2)
    world.run_until(lambda: len(world.attached()) == 2, 10)
    key = world.ds.network_key
    assert key is not None
    mle_key, mac_key = world.parent.keys.keys_for(0)
    secrets_hex = [k.hex() for k in (key, mle_key, mac_key)]
    texts = [
        repr(world.parent),
        repr(med.core),
        repr(sed.core),
        repr(world.parent.keys),
        repr(med.core.keys),
        repr(list(world.parent.children_table)),
        json.dumps(world.parent.status(world.now)),
        json.dumps(world.parent.children(world.now)),
        json.dumps(world.parent.netdata_view()),
        json.dumps(med.core.status(world.now)),
        json.dumps(world.parent.snapshot().to_dict()),
        json.dumps(sed.core.snapshot().to_dict()),  # type: ignore[union-attr]
        *(repr(e) + e.text for e in world.parent_events),
        *(repr(e) + e.text for e in med.events),
    ]
    for text in texts:
        for s in secrets_hex:
            assert s not in text and s[:16] not in text
