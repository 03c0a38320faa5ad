"""CBSB-1 message-level negative cases (cloud-bootstrap.md §10.13) and the pure state machines:
active discovery, many things per session, limits and lockouts, chunked delivery, commit only on
M4. Timing runs on the discrete-event air of tests/cbsb/sim.py with simulated time."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto import cbsb_keys as k
from gateway.errors import CryptoError, InvalidArgument, ParseError
from gateway.wire.cbsb import (
    Beacon,
    BeaconFlags,
    BeaconRequest,
    Delivery,
    DeliveryAck,
    DeliveryChunk,
    JoinConfirm,
    JoinDone,
    JoinRequest,
    JoinResponse,
    MsgType,
    Status,
    parse_frame,
    peek_type,
)
from gateway.wire.cbsb_gateway import (
    GatewayConfig,
    GatewayLimits,
    GatewaySession,
    JoinGrant,
    SessionState,
)
from gateway.wire.cbsb_session import (
    Committed,
    EnrolleeFound,
    JoinCompleted,
    Progress,
    Report,
    Send,
    SessionEnded,
    ThingFailed,
    build_ack,
    build_beacon,
    build_confirm,
    build_done,
    build_join_request,
    build_response_ok,
    open_ack,
    open_chunk,
    open_confirm,
    open_done,
    open_response,
    verify_join_request,
)
from gateway.wire.cbsb_thing import ThingIdentity, ThingJoin, ThingState, ThingTimers
from tests.cbsb.sim import Air

ESP_DATASET = bytes.fromhex(  # espressif/esp-matter "Light + OTBR" README, `dataset active -x`
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c3901546"
    "0510874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a"
    "0f60ca6dd3af116bdefd2a21270c0402a0f7f8"
)
DELIVERY = Delivery(thread_dataset=ESP_DATASET, key_sequence=0).to_bytes()
GW_ID = bytes.fromhex("0011223344556677")
EXP = 1_700_000_000
CHANNEL = 26  # the last channel a sweep from 11 reaches: the slowest discovery


def rng_from(seed: int) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return r.randbytes


def identity(n: int) -> ThingIdentity:
    return ThingIdentity(
        dev_id=bytes([0xA0, 0, 0, 0, 0, 0, n >> 8, n & 0xFF]),
        k_dev=hashlib.sha256(b"test k_dev %d" % n).digest(),
    )


def psk_for(t: ThingIdentity, sid: bytes, mode: BeaconFlags, gw_id: bytes = GW_ID) -> bytes:
    return k.derive_psk_t(t.k_dev, sid, gw_id, t.dev_id, EXP, int(mode))


def session(
    things: list[ThingIdentity],
    *,
    mode: BeaconFlags = BeaconFlags.TARGETED,
    sid: bytes = bytes(range(16)),
    window_s: float = 180.0,
    limits: GatewayLimits | None = None,
    now: float = 0.0,
    seed: int = 1,
) -> GatewaySession:
    psks = {t.dev_id: psk_for(t, sid, mode) for t in things}
    config = GatewayConfig(GW_ID, CHANNEL, 0x8A63, DELIVERY, limits or GatewayLimits())
    grant = JoinGrant(sid, EXP, mode, window_s, psks)
    return GatewaySession(config, grant, now, rng=rng_from(seed), jitter=random.Random(seed))


def thing_address(n: int) -> bytes:
    return bytes([0xEE, 0, 0, 0, 0, 0, n >> 8, n & 0xFF])


@dataclass
class World:
    air: Air
    gw: GatewaySession
    things: list[ThingJoin]

    def gw_events(self) -> list[Any]:
        return [e for _, e in self.air.stations[GW_ID].events]

    def thing_events(self, i: int) -> list[tuple[float, Any]]:
        return self.air.stations[thing_address(i)].events

    def committed_at(self, i: int) -> float | None:
        return next((t for t, e in self.thing_events(i) if isinstance(e, Committed)), None)

    def run(self, until: float) -> None:
        done = {ThingState.COMMITTED, ThingState.FAILED}
        self.air.run(until, stop=lambda: all(t.state in done for t in self.things))


def world(
    n: int,
    *,
    gw: GatewaySession | None = None,
    starts: list[float] | None = None,
    loss: float = 0.0,
    proc_delay: float = 0.005,
    timers: ThingTimers | None = None,
    pfs: bool = False,
    drop: Callable[[bytes, bytes | None], bool] | None = None,
    identities: list[ThingIdentity] | None = None,
) -> World:
    ids = identities or [identity(i) for i in range(n)]
    gw = gw or session(ids)
    air = Air(loss=loss, seed=7, proc_delay=proc_delay, drop=drop)
    g = air.add("gw", gw, GW_ID, CHANNEL)
    air.start(g, gw.poll(0.0))
    things = []
    for i, ident in enumerate(ids):
        tj = ThingJoin(
            ident, timers=timers, pfs=pfs, rng=rng_from(100 + i), jitter=random.Random(i)
        )
        stn = air.add(f"t{i}", tj, thing_address(i), None)
        air.call_at(starts[i] if starts else 0.0, stn, tj.start)
        things.append(tj)
    return World(air, gw, things)


# =============================================================================================
# Message level (cloud-bootstrap.md §10.13)
# =============================================================================================


@dataclass
class Exchange:
    thing: ThingIdentity
    sid: bytes
    mode: BeaconFlags
    psk_t: bytes
    k_bcn: bytes
    m0: bytes
    beacon: Beacon
    m1: JoinRequest
    m1_raw: bytes
    flight: Any
    m3: bytes
    th3: bytes
    m4: bytes


def exchange(
    thing: ThingIdentity | None = None,
    *,
    sid: bytes = bytes(range(16)),
    epoch: int = 2,
    n_t: bytes = bytes(range(0x80, 0x90)),
    r_g: bytes = bytes(range(0x60, 0x70)),
    gw_psk: bytes | None = None,
) -> Exchange:
    """A full exchange built with the message functions (no state machine)."""
    thing = thing or identity(1)
    mode = BeaconFlags.TARGETED
    psk_t = psk_for(thing, sid, mode)
    k_bcn = bytes(range(0xC0, 0xD0))
    beacon = build_beacon(
        flags=mode,
        gw_id=GW_ID,
        sid=sid,
        epoch=epoch,
        r_g=r_g,
        exp=EXP,
        window_left_s=100,
        channel=CHANNEL,
        pan_id=0x8A63,
        k_bcn=k_bcn,
        steering=k.steering_build([thing.dev_id], 8),
    )
    m0 = beacon.to_bytes()
    m1 = build_join_request(m0, epoch, thing.dev_id, psk_t, n_t)
    m1_raw = m1.to_bytes()
    flight = build_response_ok(
        m0=m0, m1_raw=m1_raw, m1=m1, psk_t=gw_psk or psk_t, r_g=r_g, k_bcn=k_bcn, delivery=DELIVERY
    )
    k_bind = k.derive_k_bind(thing.k_dev, sid, thing.dev_id)
    bp = k.bind_proof(k_bind, sid, GW_ID, thing.dev_id, n_t, r_g, epoch)
    m3 = build_confirm(flight.keys, flight.th2, thing.dev_id, bp, 0)
    th3 = k.transcript_th3(flight.th2, m3)
    m4 = build_done(flight.keys, th3, thing.dev_id)
    return Exchange(thing, sid, mode, psk_t, k_bcn, m0, beacon, m1, m1_raw, flight, m3, th3, m4)


def tampered(raw: bytes) -> Iterator[bytes]:
    """Every byte changed, two ways (lowest and highest bit)."""
    for i in range(len(raw)):
        for mask in (0x01, 0x80):
            b = bytearray(raw)
            b[i] ^= mask
            yield bytes(b)


def thing_accepts_m2(x: Exchange, m2_raw: bytes) -> bool:
    try:
        m2 = JoinResponse.from_bytes(m2_raw)
        if m2.dev_id != x.thing.dev_id or not m2.authenticated:
            return False
        opened = open_response(
            m0=x.m0, m1_raw=x.m1_raw, m1=x.m1, psk_t=x.psk_t, r_g=x.beacon.r_g, m2=m2
        )
    except (ParseError, CryptoError):
        return False
    return opened.status == Status.OK


def test_untampered_exchange_is_accepted() -> None:
    x = exchange()
    assert verify_join_request(x.m0, x.m1, x.psk_t)
    assert thing_accepts_m2(x, x.flight.m2)
    assert open_confirm(x.flight.keys, x.flight.th2, JoinConfirm.from_bytes(x.m3)).caps == 0
    open_done(x.flight.keys, x.th3, JoinDone.from_bytes(x.m4))


def test_every_byte_of_m0_tampered_is_rejected_by_the_gateway() -> None:
    """A forged or damaged beacon: the thing proves over what it heard, the gateway over what it
    sent, so the proof fails (or the frame does not even parse)."""
    x = exchange()
    for bad in tampered(x.m0):
        try:
            b = Beacon.from_bytes(bad)
        except ParseError:
            continue
        # The thing derives its PSK_T from the (tampered) beacon fields it heard.
        psk_seen = k.derive_psk_t(
            x.thing.k_dev, b.sid, b.gw_id, x.thing.dev_id, b.exp, int(b.flags)
        )
        m1 = build_join_request(bad, b.epoch, x.thing.dev_id, psk_seen, x.m1.n_t)
        assert not verify_join_request(x.m0, m1, x.psk_t)


def test_every_byte_of_m1_tampered_is_rejected() -> None:
    x = exchange()
    for bad in tampered(x.m1_raw):
        try:
            m1 = JoinRequest.from_bytes(bad)
        except ParseError:
            continue
        assert not verify_join_request(x.m0, m1, x.psk_t)


def test_every_byte_of_m2_tampered_is_rejected_by_the_thing() -> None:
    x = exchange()
    for bad in tampered(x.flight.m2):
        assert not thing_accepts_m2(x, bad)


def test_every_byte_of_every_delivery_chunk_tampered_is_rejected() -> None:
    x = exchange()
    assert x.flight.chunks, "the 114-byte delivery needs a second frame"
    for chunk in x.flight.chunks:
        assert open_chunk(x.flight.keys, x.flight.th1, DeliveryChunk.from_bytes(chunk))
        for bad in tampered(chunk):
            with pytest.raises((ParseError, CryptoError)):
                c = DeliveryChunk.from_bytes(bad)
                if c.dev_id != x.thing.dev_id:
                    raise CryptoError("not for this thing")
                open_chunk(x.flight.keys, x.flight.th1, c)


def test_every_byte_of_m3_m4_ack_and_aborts_tampered_is_rejected() -> None:
    x = exchange()
    keys, th1, th2 = x.flight.keys, x.flight.th1, x.flight.th2
    ack = build_ack(keys, th1, x.thing.dev_id, 1, 0b01)
    cases: list[tuple[bytes, Callable[[bytes], object]]] = [
        (x.m3, lambda raw: open_confirm(keys, th2, JoinConfirm.from_bytes(raw))),
        (x.m4, lambda raw: open_done(keys, x.th3, JoinDone.from_bytes(raw))),
        (ack, lambda raw: open_ack(keys, th1, DeliveryAck.from_bytes(raw))),
    ]
    for good, check in cases:
        check(good)
        for bad in tampered(good):
            with pytest.raises((ParseError, CryptoError)):
                check(bad)


def test_old_m2_replayed_to_a_thing_with_a_new_nonce_is_rejected() -> None:
    old = exchange(n_t=bytes(16))
    new = exchange(n_t=bytes(range(16)))
    assert not thing_accepts_m2(new, old.flight.m2)
    # Even with the echoed nonce prefix rewritten, the AAD and the keys differ.
    forged = bytearray(old.flight.m2)
    forged[11:15] = new.m1.n_t[:4]
    assert not thing_accepts_m2(new, bytes(forged))


def test_m2_from_a_gateway_holding_another_sessions_key_is_rejected() -> None:
    x = exchange()
    for other in [
        psk_for(x.thing, bytes(16), x.mode),  # another session
        psk_for(x.thing, x.sid, x.mode, gw_id=bytes(8)),  # issued for another gateway
        psk_for(x.thing, x.sid, BeaconFlags.NONE),  # another mode
        psk_for(identity(2), x.sid, x.mode),  # another device's key
    ]:
        evil = exchange(x.thing, gw_psk=other)
        assert not thing_accepts_m2(x, evil.flight.m2)


def test_wrong_device() -> None:
    x = exchange()
    impostor = ThingIdentity(x.thing.dev_id, hashlib.sha256(b"counterfeit").digest())
    psk_guess = psk_for(impostor, x.sid, x.mode)
    m1 = build_join_request(x.m0, x.beacon.epoch, x.thing.dev_id, psk_guess, bytes(16))
    assert not verify_join_request(x.m0, m1, x.psk_t)
    # A response meant for another thing is not accepted either.
    y = exchange(identity(2))
    assert not thing_accepts_m2(x, y.flight.m2)


def test_m3_of_one_join_is_useless_in_another() -> None:
    a = exchange(n_t=bytes(16))
    b = exchange(n_t=b"\x01" * 16)
    with pytest.raises(CryptoError):
        open_confirm(b.flight.keys, b.flight.th2, JoinConfirm.from_bytes(a.m3))


def test_reflection_between_directions_fails() -> None:
    x = exchange()
    # An M4-shaped frame sealed by the thing's key (as if reflected) must not verify.
    h = JoinDone(x.thing.dev_id, bytes(8)).header()
    reflected = h + k.seal(x.flight.keys.k_t2g, k.DIR_T2G, k.CTR_DONE, b"", h + x.th3)
    with pytest.raises(CryptoError):
        open_done(x.flight.keys, x.th3, JoinDone.from_bytes(reflected))


# =============================================================================================
# State machines on the simulated air
# =============================================================================================


def test_one_thing_bootstraps_in_under_two_seconds_including_discovery() -> None:
    w = world(1)
    w.run(5.0)
    t = w.committed_at(0)
    assert t is not None and t < 2.0, t
    committed = next(e for _, e in w.thing_events(0) if isinstance(e, Committed))
    assert committed.delivery.thread_dataset == ESP_DATASET
    assert committed.gw_id == GW_ID and committed.sid == bytes(range(16))
    done = [e for e in w.gw_events() if isinstance(e, JoinCompleted)]
    assert len(done) == 1
    # The cloud can verify the bind proof with K_bind; the gateway could not have made it.
    ident = identity(0)
    k_bind = k.derive_k_bind(ident.k_dev, bytes(range(16)), ident.dev_id)
    beacon = Beacon.from_bytes(w.gw.beacon_bytes(w.air.now))
    assert done[0].bind_proof == k.bind_proof(
        k_bind, beacon.sid, GW_ID, ident.dev_id, done[0].n_t, beacon.r_g, done[0].epoch
    )
    assert w.gw.counters["beacon_requests"] >= 1
    # The delivery spanned M2 plus one Delivery frame; the keys for the link are shared.
    assert committed.k_link != b""


def test_listen_only_thing_uses_the_periodic_beacon() -> None:
    ids = [identity(0)]
    gw = session(ids)
    air = Air(seed=1)
    g = air.add("gw", gw, GW_ID, CHANNEL)
    air.start(g, gw.poll(0.0))
    tj = ThingJoin(ids[0], channels=(CHANNEL,), active=False, rng=rng_from(5))
    stn = air.add("t", tj, thing_address(0), None)
    air.call_at(0.3, stn, tj.start)
    air.run(10.0, stop=lambda: tj.state == ThingState.COMMITTED)
    assert tj.state == ThingState.COMMITTED
    assert gw.counters["beacon_requests"] == 0


def test_twenty_things_at_once() -> None:
    starts = [random.Random(3).uniform(0.0, 0.3) for _ in range(20)]
    w = world(20, starts=starts)
    w.run(10.0)
    for i in range(20):
        t = w.committed_at(i)
        assert t is not None and t - starts[i] < 2.0, (i, t)
    assert w.gw.counters["joins_completed"] == 20
    assert len({e.dev_id for e in w.gw_events() if isinstance(e, JoinCompleted)}) == 20


def test_twenty_things_with_ten_percent_loss() -> None:
    w = world(20, loss=0.1)
    w.run(20.0)
    assert all(t.state == ThingState.COMMITTED for t in w.things)
    assert w.gw.counters["joins_completed"] == 20


def test_pfs_profile_end_to_end() -> None:
    ids = [identity(0), identity(1)]
    mode = BeaconFlags.TARGETED | BeaconFlags.PFS_REQUIRED
    w = world(2, gw=session(ids, mode=mode), identities=ids)
    w.run(5.0)
    assert all(t.state == ThingState.COMMITTED for t in w.things)


def test_pfs_required_refuses_a_request_without_x25519() -> None:
    ids = [identity(0)]
    mode = BeaconFlags.TARGETED | BeaconFlags.PFS_REQUIRED
    gw = session(ids, mode=mode)
    m0 = parse_frame(gw.poll(0.0)[0].payload)  # type: ignore[union-attr]
    assert isinstance(m0, Beacon)
    m1 = build_join_request(
        m0.to_bytes(), m0.epoch, ids[0].dev_id, psk_for(ids[0], m0.sid, mode), bytes(16)
    )
    assert gw.handle_frame(0.1, thing_address(0), m1.to_bytes()) == []
    assert gw.counters["m1_pfs_missing"] == 1


def test_discover_mode_waits_for_the_user_then_answers_at_once() -> None:
    ids = [identity(0)]
    mode = BeaconFlags.CLOUD_VERIFY | BeaconFlags.USER_CONFIRM
    gw = session([], mode=mode)
    w = world(1, gw=gw, identities=ids)
    w.run(1.5)
    found = [e for e in w.gw_events() if isinstance(e, EnrolleeFound)]
    assert len(found) == 1 and found[0].dev_id == ids[0].dev_id
    assert w.things[0].last_status == Status.PENDING_USER_CONFIRM
    # The cloud verifies proof_T from M0 and M1 itself before bothering the user.
    m1 = JoinRequest.from_bytes(found[0].m1)
    psk = psk_for(ids[0], gw.sid, mode)
    assert verify_join_request(found[0].m0, m1, psk)
    # The user confirms: the gateway answers the stashed request without waiting for a retry.
    g = w.air.stations[GW_ID]
    w.air.call_at(2.0, g, lambda now: gw.provide_psk(now, ids[0].dev_id, psk))
    w.run(3.0)
    t = w.committed_at(0)
    assert t is not None and t < 2.2


def test_authenticated_denial() -> None:
    ids = [identity(0)]
    mode = BeaconFlags.CLOUD_VERIFY
    gw = session([], mode=mode)
    w = world(1, gw=gw, identities=ids)
    w.run(1.5)
    g = w.air.stations[GW_ID]
    psk = psk_for(ids[0], gw.sid, mode)
    w.air.call_at(2.0, g, lambda now: gw.deny_device(now, ids[0].dev_id, psk))
    w.run(3.0)
    assert w.things[0].last_status == Status.CLOUD_DENIED
    assert w.things[0].state == ThingState.SCANNING  # looks for another gateway, never this session
    assert w.things[0].counters["denied"] == 1
    assert any(isinstance(e, Report) and e.status == Status.CLOUD_DENIED for e in w.gw_events())


def _beacon_now(gw: GatewaySession, now: float) -> tuple[bytes, Beacon]:
    sends = [o for o in gw.poll(now) if isinstance(o, Send)]
    raw = sends[0].payload if sends else gw.beacon_bytes(now)
    b = Beacon.from_bytes(raw)
    return raw, b


def test_bad_proofs_never_lock_the_genuine_device_out() -> None:
    """Forged M1s for a device (its ID is in clear on the air) are refused in silence and
    reported, but the device's own proof is still answered, at once. Fails on the code before
    issue 16, which locked the ID out for the session after 3 bad proofs."""
    ids = [identity(0)]
    gw = session(ids)
    m0, b = _beacon_now(gw, 0.0)
    impostor = ThingIdentity(ids[0].dev_id, bytes(32))
    reports: list[Report] = []
    now = 0.0
    for n in range(50):
        now += 0.05  # faster than any per-device interval
        m1 = build_join_request(
            m0, b.epoch, impostor.dev_id, psk_for(impostor, b.sid, b.flags), bytes([n]) * 16
        )
        out = gw.handle_frame(now, thing_address(0), m1.to_bytes())
        assert not any(isinstance(o, Send) for o in out)  # silence: no oracle
        reports += [o for o in out if isinstance(o, Report)]
    assert gw.counters["m1_bad_proof"] == 50
    # Reported to the user, but bounded: the first at once, then one per 10 s per device.
    assert [r.status for r in reports] == [Status.AUTH_FAILED]
    assert gw.snapshot(now)["bad_proofs"] == {ids[0].dev_id.hex(): 50}
    good = build_join_request(
        m0, b.epoch, ids[0].dev_id, psk_for(ids[0], b.sid, b.flags), b"\x77" * 16
    )
    out = gw.handle_frame(now + 0.01, thing_address(0), good.to_bytes())
    m2 = [o for o in out if isinstance(o, Send)]
    assert m2 and peek_type(m2[0].payload) == MsgType.JOIN_RESPONSE
    assert gw.state == SessionState.OPEN


def test_forged_floods_neither_close_the_window_nor_starve_a_valid_request() -> None:
    """Bad proofs for every allowed device, and garbage M1s from one source beyond every bucket,
    leave the window open, and a valid M1 from that same source address is answered. Fails on
    the code before issue 16: 20 bad proofs closed the window for everyone, and a valid M1
    waited behind forged ones in the per-source and global buckets."""
    ids = [identity(i) for i in range(10)]
    gw = session(ids)
    m0, b = _beacon_now(gw, 0.0)
    events: list[Any] = []
    now = 0.0
    for rnd in range(10):
        for i, ident in enumerate(ids):
            now += 0.001
            fake = build_join_request(m0, b.epoch, ident.dev_id, bytes(32), bytes([rnd, i]) * 8)
            events += gw.handle_frame(now, thing_address(1), fake.to_bytes())
    assert gw.counters["m1_bad_proof"] == 100
    assert not any(isinstance(e, SessionEnded) for e in events)
    assert gw.state == SessionState.OPEN
    # Ten devices, one report each; the rest suppressed and counted.
    assert sum(isinstance(e, Report) and e.status == Status.AUTH_FAILED for e in events) == 10
    assert gw.counters["bad_proof_reports_suppressed"] == 90
    good = build_join_request(
        m0, b.epoch, ids[3].dev_id, psk_for(ids[3], b.sid, b.flags), b"\x55" * 16
    )
    out = gw.handle_frame(now + 0.001, thing_address(1), good.to_bytes())
    assert any(isinstance(o, Send) and peek_type(o.payload) == MsgType.JOIN_RESPONSE for o in out)


def test_expired_window() -> None:
    ids = [identity(0), identity(1)]
    gw = session(ids, window_s=10.0)
    m0, b = _beacon_now(gw, 0.0)
    out = gw.poll(10.0)
    assert Report(Status.WINDOW_EXPIRED, None, 0) in out
    assert Report(Status.NO_JOIN_ATTEMPT, None, None) in out
    assert SessionEnded(Status.WINDOW_EXPIRED) in out
    assert gw.state == SessionState.CLOSED
    assert gw.next_deadline() is None and gw.poll(11.0) == []
    m1 = build_join_request(m0, b.epoch, ids[0].dev_id, psk_for(ids[0], b.sid, b.flags), bytes(16))
    assert gw.handle_frame(10.5, thing_address(0), m1.to_bytes()) == []


def test_expired_window_hint_while_joins_finish() -> None:
    ids = [identity(0), identity(1)]
    gw = session(ids, window_s=10.0)
    m0, b = _beacon_now(gw, 0.0)
    m1a = build_join_request(m0, b.epoch, ids[0].dev_id, psk_for(ids[0], b.sid, b.flags), bytes(16))
    assert any(isinstance(o, Send) for o in gw.handle_frame(9.9, thing_address(0), m1a.to_bytes()))
    out = gw.poll(10.0)
    assert gw.state == SessionState.CLOSING  # a join is still delivering
    m1b = build_join_request(m0, b.epoch, ids[1].dev_id, psk_for(ids[1], b.sid, b.flags), bytes(16))
    hint = gw.handle_frame(10.1, thing_address(1), m1b.to_bytes())
    assert len(hint) == 1 and isinstance(hint[0], Send)
    assert JoinResponse.from_bytes(hint[0].payload).status == Status.WINDOW_EXPIRED
    out = gw.poll(20.0)  # the unfinished join gives up; the session ends
    assert any(isinstance(o, Report) and o.status == Status.THING_NO_CONFIRM for o in out)
    assert SessionEnded(Status.WINDOW_EXPIRED) in out


def test_m1_replayed_in_a_later_epoch_or_session_is_dropped() -> None:
    ids = [identity(0)]
    w = world(1, gw=session(ids))
    captured: list[bytes] = []
    w.air.on_frame = lambda t, ch, src, dst, p: (
        captured.append(p) if p[1] & 0xF == MsgType.JOIN_REQUEST else None
    )
    w.run(5.0)
    assert w.things[0].state == ThingState.COMMITTED and captured
    m1 = captured[0]
    gw = w.gw
    # Same session, the next epoch after the 10 s grace (the finished join is forgotten).
    gw.poll(45.0)
    assert gw.epoch_at(45.0) == 1
    assert gw.handle_frame(45.0, thing_address(0), m1) == []
    assert gw.counters["m1_stale_epoch"] == 1
    # Two epochs later.
    gw.poll(70.0)
    assert gw.handle_frame(70.0, thing_address(0), m1) == []
    assert gw.counters["m1_stale_epoch"] == 2
    # A new session whose epoch number happens to match: the proof fails, nothing is sent.
    gw2 = session(ids, sid=b"\x99" * 16)
    gw2.poll(0.0)
    out = gw2.handle_frame(0.1, thing_address(0), m1)
    assert not any(isinstance(o, Send) for o in out)
    assert gw2.counters["m1_bad_proof"] == 1


def test_duplicate_m1_gets_the_byte_identical_m2_and_resends_are_bounded() -> None:
    ids = [identity(0)]
    gw = session(ids)
    m0, b = _beacon_now(gw, 0.0)
    m1 = build_join_request(
        m0, b.epoch, ids[0].dev_id, psk_for(ids[0], b.sid, b.flags), bytes(16)
    ).to_bytes()
    first = [o.payload for o in gw.handle_frame(0.1, thing_address(0), m1) if isinstance(o, Send)]
    assert len(first) == 2  # M2 and one Delivery chunk
    again = [o.payload for o in gw.handle_frame(0.3, thing_address(0), m1) if isinstance(o, Send)]
    assert again == [first[0]]
    total = 1
    for n in range(40):
        total += len(gw.handle_frame(0.5 + n * 0.2, thing_address(0), m1))
    assert total <= GatewayLimits().resend_max


def test_a_tampered_m1_of_a_running_join_costs_no_resend() -> None:
    ids = [identity(0)]
    gw = session(ids)
    m0, b = _beacon_now(gw, 0.0)
    m1 = build_join_request(
        m0, b.epoch, ids[0].dev_id, psk_for(ids[0], b.sid, b.flags), bytes(16)
    ).to_bytes()
    gw.handle_frame(0.1, thing_address(0), m1)
    bad = bytearray(m1)
    bad[-1] ^= 1
    assert gw.handle_frame(0.3, thing_address(0), bytes(bad)) == []
    assert gw.counters["m1_nonce_reuse"] == 1


def _drop_type(t: MsgType, times: int | None = None) -> Callable[[bytes, bytes | None], bool]:
    left = [times]

    def drop(payload: bytes, dst: bytes | None) -> bool:
        if len(payload) > 1 and payload[1] & 0x0F == t:
            if left[0] is None:
                return True
            if left[0] > 0:
                left[0] -= 1
                return True
        return False

    return drop


def test_lost_chunk_is_acknowledged_selectively_and_resent() -> None:
    w = world(1, drop=_drop_type(MsgType.DELIVERY, times=1))
    w.run(5.0)
    assert w.things[0].state == ThingState.COMMITTED
    assert w.things[0].counters["acks_sent"] >= 1
    t = w.committed_at(0)
    assert t is not None and t < 2.0


def test_lost_m2_is_recovered_by_the_m1_retry() -> None:
    w = world(1, drop=_drop_type(MsgType.JOIN_RESPONSE, times=1))
    w.run(5.0)
    assert w.things[0].state == ThingState.COMMITTED
    assert w.gw.counters["m2_sent"] == 1  # the same M2 was resent, not a second join


def test_no_commit_without_m4_and_the_fail_safe_discards() -> None:
    timers = ThingTimers(deadline_s=40.0)
    w = world(1, drop=_drop_type(MsgType.JOIN_DONE), timers=timers)
    w.run(45.0)
    events = [e for _, e in w.thing_events(0)]
    assert not any(isinstance(e, Committed) for e in events)
    assert Progress("fail-safe expired; credentials discarded") in events
    assert ThingFailed(Status.THING_NO_CONFIRM) in events
    # The gateway believed M3 (the cloud evicts a thing that never binds, §10.7).
    assert any(isinstance(e, JoinCompleted) for e in w.gw_events())


def test_session_close_mid_delivery_aborts_the_thing() -> None:
    # M3 never arrives, so the join is still delivering when the cloud closes the session.
    w = world(1, drop=_drop_type(MsgType.JOIN_CONFIRM), timers=ThingTimers(deadline_s=8.0))
    g = w.air.stations[GW_ID]
    w.air.call_at(1.5, g, lambda now: w.gw.close(now))
    w.run(10.0)
    events = [e for _, e in w.thing_events(0)]
    assert Progress("gateway aborted: SESSION_CLOSED") in events
    assert not any(isinstance(e, Committed) for e in events)
    assert SessionEnded(Status.SESSION_CLOSED) in w.gw_events()


def test_join_table_bound_does_not_starve_things() -> None:
    limits = GatewayLimits(max_joins=4, linger_s=1.0)
    ids = [identity(i) for i in range(8)]
    w = world(8, gw=session(ids, limits=limits), identities=ids)
    w.run(30.0)
    assert all(t.state == ThingState.COMMITTED for t in w.things)
    assert len(w.gw._joins) <= 4


def test_beacon_requests_cannot_turn_the_gateway_into_an_amplifier() -> None:
    gw = session([identity(0)])
    gw.poll(0.0)  # the first periodic beacon
    sent = 0
    req = BeaconRequest().to_bytes()
    for n in range(2000):  # 2000 requests from 500 spoofed sources within one second
        now = n / 2000
        out = gw.handle_frame(now, bytes([0xF0, 0, 0, 0, 0, 0, n % 500 >> 8, n % 500 & 0xFF]), req)
        out += gw.poll(now)
        sent += sum(isinstance(o, Send) for o in out)
    lim = GatewayLimits()
    assert sent <= lim.solicited_burst + lim.solicited_rate * 1.0 + 2
    assert len(gw._sources) <= lim.max_sources


def test_m1_flood_in_discover_mode_is_bounded() -> None:
    gw = session([], mode=BeaconFlags.CLOUD_VERIFY)
    m0, b = _beacon_now(gw, 0.0)
    found = sends = 0
    for n in range(3000):
        now = n / 1000
        dev = n.to_bytes(8, "big")
        m1 = JoinRequest(dev, b.epoch, bytes(16), bytes(16)).to_bytes()
        out = gw.handle_frame(now, (n % 300).to_bytes(8, "big"), m1)
        found += sum(isinstance(o, EnrolleeFound) for o in out)
        sends += sum(isinstance(o, Send) for o in out)
    lim = GatewayLimits()
    assert len(gw._pending) <= lim.max_pending
    assert found <= 5 + lim.enrollee_found_per_min / 60 * 3 + 1
    assert sends <= lim.m1_global_burst + lim.m1_global_rate * 3 + 1


def test_unsupported_version_and_garbage_are_counted_not_fatal() -> None:
    gw = session([identity(0)])
    assert gw.handle_frame(0.0, None, b"\x3c\x21" + bytes(40)) == []
    assert gw.handle_frame(0.0, None, b"\x41\x60") == []
    assert gw.counters["unsupported_version"] == 1 and gw.counters["parse_error"] == 1


@given(st.lists(st.binary(max_size=110), max_size=20))
@settings(max_examples=300, deadline=None)
def test_fuzz_state_machines_never_raise(frames: list[bytes]) -> None:
    ids = [identity(0)]
    gw = session(ids, mode=BeaconFlags.TARGETED)
    tj = ThingJoin(ids[0], rng=rng_from(1), jitter=random.Random(1))
    tj.start(0.0)
    gw.poll(0.0)
    for n, raw in enumerate(frames):
        # Aim part of the garbage behind a valid CBSB header so deeper paths are reached.
        data = bytes((0x3C, 0x10 | (raw[0] % 10))) + raw[1:] if raw and n % 2 else raw
        gw.handle_frame(n * 0.01, None, data)
        tj.handle_frame(n * 0.01, GW_ID, data)
        gw.poll(n * 0.01)
        tj.poll(n * 0.01)


def test_secrets_stay_out_of_repr() -> None:
    ids = [identity(0)]
    gw = session(ids)
    grant = JoinGrant(bytes(16), EXP, BeaconFlags.TARGETED, 60.0, {ids[0].dev_id: b"\xab" * 32})
    config = GatewayConfig(GW_ID, CHANNEL, 1, DELIVERY)
    x = exchange()
    texts = [
        repr(gw),
        repr(grant),
        repr(config),
        repr(ids[0]),
        repr(x.flight),
        repr(ThingJoin(ids[0])),
    ]
    committed = Committed(GW_ID, bytes(16), Delivery.from_bytes(DELIVERY), b"\xcd" * 16)
    texts.append(repr(committed))
    for text in texts:
        assert ids[0].k_dev.hex() not in text
        assert "abab" not in text and "cdcd" not in text
        assert "874e399792fcb276" not in text  # the dataset's network key
        assert x.flight.keys.k_g2t.hex() not in text


def test_grant_bounds() -> None:
    ids = [identity(i) for i in range(65)]
    with pytest.raises(ValueError):
        session(ids)  # more than max_allowed devices
    with pytest.raises(ValueError):
        session([])  # targeted without devices
    with pytest.raises(ParseError):
        GatewayConfig(GW_ID, CHANNEL, 1, b"\x01\x02")
    with pytest.raises(InvalidArgument):  # the delivery would need more than 16 chunks
        GatewayConfig(GW_ID, CHANNEL, 1, DELIVERY, GatewayLimits(max_payload=24))
    with pytest.raises(InvalidArgument):
        ThingIdentity(bytes(7), bytes(32))
    assert replace(GatewayLimits(), max_joins=20).max_joins == 20
