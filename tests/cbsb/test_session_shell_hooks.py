"""What the group owner's shell needs from the gateway state machine: the beacon of a completed
join's epoch (the cloud verifies the bind proof with its R_G), a CLOUD_UNREACHABLE hint to a thing
waiting in discover mode, and a status snapshot without secrets."""

from __future__ import annotations

import json

from gateway.crypto import cbsb_keys as k
from gateway.wire.cbsb import Beacon, BeaconFlags, JoinResponse, Status
from gateway.wire.cbsb_session import EnrolleeFound, JoinCompleted, Send
from gateway.wire.cbsb_thing import ThingState
from tests.cbsb.test_cbsb_session import GW_ID, identity, psk_for, session, world


def test_join_completed_carries_the_beacon_the_bind_proof_covers() -> None:
    ids = [identity(i) for i in range(3)]
    w = world(3, identities=ids, gw=session(ids, window_s=120))
    w.run(40.0)  # joins straddle an epoch rollover at 30 s only if slow; any epoch must work
    done = [e for e in w.gw_events() if isinstance(e, JoinCompleted)]
    assert len(done) == 3
    for ev in done:
        m0 = Beacon.from_bytes(ev.m0)
        assert m0.epoch == ev.epoch and m0.gw_id == GW_ID and m0.sid == w.gw.sid
        t = next(i for i in ids if i.dev_id == ev.dev_id)
        # The cloud's check (§10.7): BP = MAC16(K_bind, "cbsb1 bp" || sid || gw_id || dev_id ||
        # N_T || R_G || epoch) with K_bind from K_dev, R_G from the reported beacon.
        k_bind = k.derive_k_bind(t.k_dev, m0.sid, t.dev_id)
        assert ev.bind_proof == k.bind_proof(k_bind, m0.sid, GW_ID, t.dev_id, ev.n_t, m0.r_g,
                                             m0.epoch)  # fmt: skip


def test_cloud_unreachable_hint_reaches_a_pending_thing_and_never_commits() -> None:
    ids = [identity(7)]
    mode = BeaconFlags.CLOUD_VERIFY | BeaconFlags.USER_CONFIRM
    gw = session([], mode=mode, window_s=60)
    w = world(1, identities=ids, gw=gw)
    w.run(1.5)
    found = [e for e in w.gw_events() if isinstance(e, EnrolleeFound)]
    assert found and found[0].dev_id == ids[0].dev_id
    out = gw.hint_pending(w.air.now, ids[0].dev_id, Status.CLOUD_UNREACHABLE)
    sends = [o for o in out if isinstance(o, Send)]
    assert len(sends) == 1
    hint = JoinResponse.from_bytes(sends[0].payload)
    assert hint.status == Status.CLOUD_UNREACHABLE and not hint.authenticated
    # rate-limited like every hint; only hint statuses; unknown devices get nothing
    assert gw.hint_pending(w.air.now, ids[0].dev_id, Status.CLOUD_UNREACHABLE) == []
    assert gw.hint_pending(w.air.now + 1, ids[0].dev_id, Status.OK) == []
    assert gw.hint_pending(w.air.now + 1, bytes(8), Status.CLOUD_UNREACHABLE) == []
    st = w.air.stations[b"\xee" + bytes(5) + b"\x00\x00"]
    w.air.apply(st, w.air.now, w.things[0].handle_frame(w.air.now, GW_ID, sends[0].payload))
    assert w.things[0].last_status == Status.CLOUD_UNREACHABLE
    assert w.things[0].state == ThingState.JOINING  # a hint is never final


def test_snapshot_names_states_and_counters_but_no_secret() -> None:
    ids = [identity(i) for i in range(2)]
    w = world(2, identities=ids, gw=session(ids))
    w.run(5.0)
    snap = w.gw.snapshot(w.air.now)
    assert snap["state"] == "open" and sorted(snap["allowed"]) == sorted(
        i.dev_id.hex() for i in ids
    )
    assert {j["state"] for j in snap["joins"]} == {"done"}
    text = json.dumps(snap)
    for t in ids:
        psk = psk_for(t, w.gw.sid, BeaconFlags.TARGETED)
        assert psk.hex() not in text and t.k_dev.hex() not in text
    assert "TARGETED" in text
