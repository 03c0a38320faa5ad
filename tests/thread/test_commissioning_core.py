"""The commissioner, the border agent, the joiner and the gateway core (gateway.thread.*) in the
in-memory world of tests/thread/sim.py: virtual time, instant frames, no sockets.

Known answers: the steering data example of the fact sheet §5.4 (Joiner ID d65e64fa83f81cf7 ->
bits 1 and 4 of a 16-byte filter), the OpenThread CLI's ``joiner id`` for EUI-64
18b4300000000002 (fact sheet §5.3), OpenThread's timeouts (50 s keep-alive, 30 s joiner
session, 300 ms per scanned channel) and its joiner-side state names."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.thread_keys import joiner_id
from gateway.errors import InvalidArgument
from gateway.thread.commissioning.border_agent import BorderAgent
from gateway.thread.commissioning.commissioner import (
    Commissioner,
    CommissionerState,
    JoinerEntry,
    JoinerEvent,
    RateLimit,
    StateChanged,
)
from gateway.thread.commissioning.joiner import Joiner, JoinerState, Transmit, Tune
from gateway.thread.commissioning.leader import CommissioningLeader
from gateway.thread.errors import (
    AnotherCommissionerActive,
    JoinerNotFound,
    JoinerSecurityFailure,
    JoinerVanished,
    KeepAliveTimeout,
    PskdRateLimited,
    UnknownJoiner,
    WrongPskd,
)
from gateway.wire.coap import CoapCode, MessageType, TmfMessage, TmfUri
from tests.thread.sim import World, dataset

EUI = bytes.fromhex("18b4300000000002")
PSKD = "J01NME"


def events_of(ext, kind):
    return [e for e in ext.events() if isinstance(e, kind)]


# -- joiner table and steering data -----------------------------------------------------------


def test_steering_data_of_the_fact_sheet_example() -> None:
    c = Commissioner(rng=random.Random(0))
    c.add_joiner(PSKD, eui64=EUI, now=0.0)
    assert joiner_id(EUI).hex() == "d65e64fa83f81cf7"
    assert c.compute_steering_data().hex() == "00000000000000000000000000000012"
    c.add_joiner(PSKD, now=0.0)  # '*' makes it permit-all
    assert c.compute_steering_data() == b"\xff"


def test_best_matching_entry_wins() -> None:
    c = Commissioner(rng=random.Random(0))
    jid = joiner_id(EUI)
    wild = c.add_joiner("WYLDCARD1", now=0.0)
    disc = c.add_joiner("DYSCERN1", discerner=(int.from_bytes(jid, "big") & 0xFFF, 12), now=0.0)
    assert c._match(jid, 0.0) is disc
    exact = c.add_joiner("EXACT1", eui64=EUI, now=0.0)
    assert c._match(jid, 0.0) is exact
    assert c._match(bytes(8), 0.0) is wild
    assert c.remove_joiner(now=0.0) and c._match(bytes(8), 0.0) is None
    assert "EXACT1" not in repr(exact) and "DYSCERN1" not in repr(c.joiners)


def test_joiner_entries_validate_their_input() -> None:
    with pytest.raises(InvalidArgument):
        JoinerEntry("IOQZ00")  # not a PSKd alphabet
    with pytest.raises(InvalidArgument):
        JoinerEntry(PSKD, eui64=b"\x01")
    with pytest.raises(InvalidArgument):
        JoinerEntry(PSKD, discerner=(8, 3))


def test_rate_limit_backoff_doubles_and_global_limit_applies() -> None:
    c = Commissioner(rng=random.Random(0), rate_limit=RateLimit(max_failures=2, backoff=10,
                                                                 global_max_failures=5))  # fmt: skip
    e = c.add_joiner(PSKD, eui64=EUI, now=0.0)
    c._record_failure(e, 1.0)
    assert e.blocked_until == 0.0
    c._record_failure(e, 2.0)
    assert e.blocked_until == 12.0
    c._record_failure(e, 20.0)
    c._record_failure(e, 21.0)
    assert e.blocked_until == 41.0  # back-off doubled
    other = c.add_joiner(PSKD, eui64=bytes(8), now=0.0)
    c._record_failure(other, 22.0)
    assert c._global_blocked_until == 32.0  # five failures within the global window


# -- flows in the world -----------------------------------------------------------------------


def test_external_commissioner_admits_a_joiner_in_virtual_time() -> None:
    w = World()
    ext = w.add_external()
    w.run_until(lambda: ext.commissioner.state is CommissionerState.ACTIVE, 5)
    ext.commissioner.add_joiner(PSKD, eui64=EUI, now=w.now)
    w.run(0.5)
    assert w.core.joining_allowed
    jn = w.add_joiner(PSKD, EUI, channels=tuple(range(11, 27)))
    jn.joiner.start(w.now)
    took = w.run_until(lambda: jn.joiner.done, 30)
    assert jn.joiner.state is JoinerState.JOINED, jn.joiner.log
    assert 16 * 0.3 <= took < 16 * 0.3 + 1.0  # OpenThread's full scan, then the handshake
    creds = jn.joiner.credentials
    assert creds is not None and creds.dataset.network_key == w.ds.network_key
    assert creds.dataset.channel == w.channel and creds.router == w.core.ext_addr
    assert "network_key" in creds.redacted() and w.ds.network_key.hex() not in str(  # type: ignore[union-attr]
        creds.redacted()
    )
    kinds = [e.kind for e in events_of(ext, JoinerEvent)]
    assert kinds == ["start", "connect", "finalize", "end"]
    secrets_ = [w.ds.network_key, w.ds.pskc, jn.joiner.kek]
    for obj in (w.core, ext, jn.joiner, ext.commissioner, w.core.joiner_router, creds):
        text = repr(obj)
        assert PSKD not in text
        assert all(k is not None and k.hex() not in text and repr(k) not in text for k in secrets_)
    assert len(w.core.entrusted) == 1
    assert w.core.policer.dropped == 0


def test_native_commissioner_and_a_second_commissioner() -> None:
    w = World()
    c = w.core.commissioner_start(w.now)
    assert c.state is CommissionerState.ACTIVE
    c.add_joiner(PSKD, now=w.now)
    w.run(0.1)
    ext = w.add_external("other")
    w.run(1)
    errors = [e.error for e in events_of(ext, StateChanged) if e.error is not None]
    assert len(errors) == 1 and isinstance(errors[0], AnotherCommissionerActive)
    jn = w.add_joiner(PSKD, EUI)
    jn.joiner.start(w.now)
    w.run_until(lambda: jn.joiner.done, 10)
    assert jn.joiner.state is JoinerState.JOINED
    w.core.commissioner_stop(w.now)
    assert w.core.leader.active is None and not w.core.joining_allowed


def test_wrong_pskd_fails_on_both_sides() -> None:
    w = World()
    ext = w.add_external()
    w.run(0.1)
    ext.commissioner.add_joiner(PSKD, eui64=EUI, now=w.now)
    w.run(0.1)
    jn = w.add_joiner("WR0NG1", EUI)
    jn.joiner.start(w.now)
    w.run_until(lambda: jn.joiner.done, 10)
    assert isinstance(jn.joiner.error, JoinerSecurityFailure)
    failed = [e for e in events_of(ext, JoinerEvent) if e.kind == "failed"]
    assert len(failed) == 1 and isinstance(failed[0].error, WrongPskd)


def test_no_network_means_not_found() -> None:
    w = World()
    jn = w.add_joiner(PSKD, EUI, channels=(11, 12, 13))
    jn.joiner.start(w.now)
    took = w.run_until(lambda: jn.joiner.done, 10)
    assert isinstance(jn.joiner.error, JoinerNotFound)
    assert took == pytest.approx(0.9)  # 3 channels x 300 ms
    assert w.core.policer.counters["ignored_locked"] == 0  # other channels: never heard


def test_locked_network_ignores_the_joiner() -> None:
    w = World()
    jn = w.add_joiner(PSKD, EUI)
    jn.joiner.start(w.now)
    w.run_until(lambda: jn.joiner.done, 10)
    assert isinstance(jn.joiner.error, JoinerNotFound)
    assert w.core.policer.counters["ignored_locked"] == 1  # its discovery request


def test_keep_alive_timeout_without_keep_alives() -> None:
    w = World(keep_alive_timeout=5.0)
    ext = w.add_external(keep_alive_interval=2.0)
    w.run(20)  # keep-alives every 2 s keep it
    assert ext.commissioner.state is CommissionerState.ACTIVE
    w.externals[0].drop = True  # its link goes dead
    w.run(6)
    w.externals[0].drop = False
    w.run(60)  # its keep-alive goes unanswered: CoAP gives up after 4 retransmissions
    errors = [e.error for e in events_of(ext, StateChanged) if e.error is not None]
    assert errors and isinstance(errors[-1], KeepAliveTimeout)
    assert w.core.leader.active is None


def test_joiner_vanishing_mid_handshake() -> None:
    w = World()
    ext = w.add_external(joiner_session_timeout=3.0)
    w.run(0.1)
    ext.commissioner.add_joiner(PSKD, eui64=EUI, now=w.now)
    w.run(0.1)
    jn = w.add_joiner(PSKD, EUI)
    # it hears the discovery response and the HelloVerifyRequest, sends its second ClientHello
    # (the commissioner opens a session for it) and goes away
    jn.rx_budget = 2
    jn.joiner.start(w.now)
    w.run_until(lambda: ext.commissioner.joiner_sessions(w.now) != [], 5)
    w.run(5)
    failed = [e for e in events_of(ext, JoinerEvent) if e.kind == "failed"]
    assert failed and isinstance(failed[-1].error, JoinerVanished)
    assert ext.commissioner.joiner_sessions(w.now) == []


def test_unknown_joiner_and_rate_limit_in_the_commissioner() -> None:
    w = World()
    ext = w.add_external(rate_limit=RateLimit(max_failures=1, backoff=60))
    w.run(0.1)
    ext.commissioner.add_joiner(PSKD, now=w.now)  # everyone may try ...
    w.run(0.1)
    jn = w.add_joiner("WR0NG1", EUI)
    jn.joiner.start(w.now)
    w.run_until(lambda: jn.joiner.done, 10)
    jn2 = w.add_joiner(PSKD, EUI, connect_timeout=3.0)  # ... but now the entry is blocked
    jn2.joiner.start(w.now)
    w.run_until(lambda: jn2.joiner.done, 10)
    assert jn2.joiner.state is JoinerState.FAILED
    errs = [e.error for e in events_of(ext, JoinerEvent) if e.error is not None]
    assert isinstance(errs[0], WrongPskd) and isinstance(errs[1], PskdRateLimited)
    ext.commissioner.remove_joiner(now=w.now)
    ext.commissioner.add_joiner(PSKD, eui64=bytes(8), now=w.now)  # someone else
    w.run(0.5)
    # A joiner whose Joiner ID is not in the table (it ignores the steering data)
    c = ext.commissioner
    from gateway.wire.meshcop import (
        JoinerDtlsEncapsulationTlv,
        JoinerIidTlv,
        JoinerRouterLocatorTlv,
        JoinerUdpPortTlv,
    )

    c._relay_rx(
        (JoinerUdpPortTlv(1000), JoinerIidTlv(bytes(8)), JoinerRouterLocatorTlv(0),
         JoinerDtlsEncapsulationTlv(b"\x16")), w.now,
    )  # fmt: skip
    last = [e for e in events_of(ext, JoinerEvent) if e.error is not None]
    assert isinstance(last[-1].error, UnknownJoiner)


def test_joiner_scans_each_channel_for_300_ms() -> None:
    j = Joiner(PSKD, EUI, rng=random.Random(1), channels=(11, 12, 13))
    j.start(100.0)
    seen: list[tuple[float, int]] = []
    now = 100.0
    while not j.done:
        for a in j.actions():
            if isinstance(a, Tune):
                seen.append((round(now, 3), a.channel))
            else:
                assert isinstance(a, Transmit) and a.psdu[:2] == bytes.fromhex("01d8")
        t = j.next_timeout()
        assert t is not None
        now = t
        j.poll(now)
    assert seen == [(100.0, 11), (100.3, 12), (100.6, 13)]
    assert isinstance(j.error, JoinerNotFound)


# -- hostile input ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_border_agent_survives_hostile_datagrams(data: bytes) -> None:
    ds = dataset()
    assert ds.pskc is not None
    ba = BorderAgent(ds.pskc, CommissioningLeader(rng=random.Random(0)), lambda: ds,
                     rng=random.Random(0))  # fmt: skip
    ba.datagram_received(("127.0.0.1", 1), bytes(16), data, 0.0)
    ba.poll(1.0)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=200), uri=st.sampled_from(list(TmfUri)), code=st.integers(0, 255))
def test_commissioner_survives_hostile_management_messages(
    payload: bytes, uri: TmfUri, code: int
) -> None:
    c = Commissioner(rng=random.Random(0))
    c.start(0.0)
    c.add_joiner(PSKD, now=0.0)
    msg = TmfMessage(MessageType.NON, code, 1, b"\x00\x01", uri.path, payload)
    c.receive_management(msg, 0.1)
    c.state = CommissionerState.ACTIVE  # as if the petition had been accepted
    c.receive_management(msg, 0.2)
    c.poll(1.0)


@settings(max_examples=400, deadline=None)
@given(psdu=st.binary(max_size=127))
def test_joiner_survives_hostile_frames(psdu: bytes) -> None:
    j = Joiner(PSKD, EUI, rng=random.Random(0), channels=(15,))
    j.start(0.0)
    j.receive_frame(psdu, 0.1)
    j.poll(0.5)


def test_core_survives_hostile_frames_and_counts_them() -> None:
    w = World()
    c = w.core.commissioner_start(w.now)
    c.add_joiner(PSKD, now=w.now)
    w.run(0.1)
    rng = random.Random(5)
    from gateway.wire.mac802154 import ExtAddress, FrameType, MacFrame

    for _ in range(300):
        payload = bytes([rng.choice([0x41, 0x60, 0x7A, 0xC0, 0xE0, 0x3C])]) + rng.randbytes(
            rng.randrange(0, 100)
        )
        f = MacFrame.create(FrameType.DATA, dst=w.core.ext_addr, dst_pan=w.core.pan_id,
                            src=ExtAddress(rng.randbytes(8)), src_pan=w.core.pan_id,
                            payload=payload)  # fmt: skip
        w.core.frame_received(f, w.now)
        w.now += 0.01
        w.core.poll(w.now)
    st_ = w.core.status(w.now)
    assert st_["policer"]["not_ours"] > 0 and sum(st_["policer"].values()) > 0
    assert CoapCode.CHANGED  # the core is still alive and answers status


def test_a_joiner_that_starts_over_gets_a_fresh_session() -> None:
    w = World()
    ext = w.add_external()  # 30 s joiner sessions, like OpenThread
    w.run(0.1)
    ext.commissioner.add_joiner(PSKD, eui64=EUI, now=w.now)
    w.run(0.1)
    first = w.add_joiner(PSKD, EUI)
    first.rx_budget = 2  # dies after its second ClientHello: a session is left half-done
    first.joiner.start(w.now)
    w.run_until(lambda: ext.commissioner.joiner_sessions(w.now) != [], 5)
    w.run(1)
    again = w.add_joiner(PSKD, EUI)  # the same device, restarted
    again.joiner.start(w.now)
    took = w.run_until(lambda: again.joiner.done, 30)
    assert again.joiner.state is JoinerState.JOINED and took < 2.0


def test_direct_commissioner_set_is_served_for_the_active_commissioner() -> None:
    from gateway.wire.coap import tmf_request
    from gateway.wire.meshcop import CommissionerSessionIdTlv, SteeringDataTlv

    w = World()
    ext = w.add_external()
    w.run(0.1)
    sid = ext.commissioner.session_id
    assert sid is not None
    req = tmf_request(
        TmfUri.MGMT_COMMISSIONER_SET,
        [CommissionerSessionIdTlv(sid), SteeringDataTlv(b"\xff")],
        mid=7,
        token=b"\x01\x02",
    )
    assert ext._dtls is not None
    ext._dtls.send(req.to_bytes())
    w.run(0.1)
    assert w.core.leader.steering_data == b"\xff" and w.core.joining_allowed


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_client_hello_random_never_raises(data: bytes) -> None:
    from gateway.thread.commissioning.commissioner import client_hello_random

    assert client_hello_random(data) is None or len(client_hello_random(data) or b"") == 32


def test_no_deadline_stays_in_the_past() -> None:
    """After every poll, each component's next deadline lies in the future (a deadline left in
    the past would make the services' timer loops spin)."""
    w = World()
    ext = w.add_external()
    w.run(0.1)
    ext.commissioner.add_joiner(PSKD, now=w.now)  # a wildcard entry: it stays after the join
    w.run(0.1)
    jn = w.add_joiner(PSKD, EUI)
    jn.joiner.start(w.now)
    w.run_until(lambda: jn.joiner.done, 10)
    failed = w.add_joiner("WR0NG1", bytes(8))
    failed.joiner.start(w.now)
    w.run_until(lambda: failed.joiner.done, 40)
    for _ in range(30):
        w.step(w.now + 5.0)
        for t in (w.core.next_timeout(), ext.next_timeout(), jn.joiner.next_timeout(),
                  failed.joiner.next_timeout()):  # fmt: skip
            assert t is None or t > w.now


def test_joiner_scans_again_when_nobody_answered() -> None:
    """``scan_passes``: a lost Discovery Request (a busy air) costs one pass, not the join."""
    from gateway.thread.commissioning.joiner import JoinerState, Transmit

    for passes, requests in ((1, 1), (3, 3)):
        j = Joiner(PSKD, EUI, rng=random.Random(0), channels=(15,), scan_passes=passes)
        j.start(0.0)
        sent = 0
        now = 0.0
        while j.state is JoinerState.DISCOVER and now < 10:
            sent += sum(1 for a in j.actions() if isinstance(a, Transmit))
            now += 0.05
            j.poll(now)
        assert j.state is JoinerState.FAILED
        assert sent == requests
        assert now == pytest.approx(0.3 * passes, abs=0.06)
