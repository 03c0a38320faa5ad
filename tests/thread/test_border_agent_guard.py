"""What an attacker on the LAN can do to the border agent (issue 16), in virtual time: no
sockets, no sleeping. Each test says how it fails on the code before the fix.

The LAN-level half-open flood (real sockets, two source addresses) is in
``test_attacker_fullstack.py``; the figures (effective guess rates) in
``tests/benchmarks/bench_attacker.py``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.crypto.dtls import (
    ApplicationData,
    ConnectionFailed,
    DtlsAuthenticationError,
    DtlsClient,
    DtlsConfig,
    HandshakeComplete,
)
from gateway.crypto.dtls_handshake import HS_CLIENT_HELLO, ClientHello, Extension, full_message
from gateway.crypto.dtls_record import CONTENT_HANDSHAKE, DtlsRecord, parse_datagram
from gateway.thread.commissioning.core import BorderRouterCore
from gateway.wire.coap import CoapCode, TmfMessage, TmfUri, tmf_request
from gateway.wire.meshcop import CommissionerIdTlv, MeshcopTlvType
from tests.thread.sim import World

# The attacker's DTLS client gives up quickly so that many attempts fit in virtual time.
FAST = DtlsConfig(retransmit_initial=1.0, retransmit_max=2.0)


def tid(peer: tuple[str, int]) -> bytes:
    return bytes(map(int, peer[0].split("."))) + peer[1].to_bytes(2, "big")


@dataclass
class Lan:
    """DTLS clients on "the LAN" and the gateway core, in virtual time."""

    core: BorderRouterCore
    now: float = 1000.0
    clients: dict[tuple[str, int], DtlsClient] = field(default_factory=dict)
    events: list[tuple[float, tuple[str, int], object]] = field(default_factory=list)
    # When a client heard a plaintext fatal alert during its handshake: an attacker's client
    # learns its guess was wrong from that alert at once (ours holds it for a grace).
    alerts: list[tuple[float, tuple[str, int]]] = field(default_factory=list)

    def connect(self, peer: tuple[str, int], pskc: bytes, config: DtlsConfig | None = None) -> None:
        c = DtlsClient(pskc, config=config, rng=random.Random(hash(peer) ^ int(self.now)).randbytes)
        self.clients[peer] = c
        c.start(self.now)
        self.pump()

    def pump(self) -> None:
        for _ in range(50):
            moved = False
            for peer, c in list(self.clients.items()):
                for d in c.datagrams_to_send():
                    moved = True
                    self.core.ba_datagram_received(peer, tid(peer), d, self.now)
                for ev in c.events():
                    self.events.append((self.now, peer, ev))
            for peer, d in self.core.ba_datagrams():
                moved = True
                dst = self.clients.get(peer)
                if dst is not None:
                    before = dst.unauthenticated_alerts
                    dst.receive_datagram(d, self.now)
                    if dst.unauthenticated_alerts > before:
                        self.alerts.append((self.now, peer))
            if not moved:
                return

    def advance(self, dt: float) -> None:
        end = self.now + dt
        while True:
            times = [t for t in (self.core.next_timeout(),) if t is not None]
            times += [t for c in self.clients.values() if (t := c.next_timeout()) is not None]
            nxt = min((t for t in times if t <= end), default=None)
            self.now = max(self.now, nxt if nxt is not None else end)
            self.core.poll(self.now)
            for c in self.clients.values():
                c.handle_timeout(self.now)
            self.pump()
            if nxt is None:
                return

    def verdicts(self, peer_host: str | None = None) -> list[float]:
        """When an attacker's client learnt that its PSKc guess was wrong: the server's alert
        after its Finished (each also ends in an authentication failure after the grace)."""
        failed = {
            p
            for _, p, ev in self.events
            if isinstance(ev, ConnectionFailed) and isinstance(ev.error, DtlsAuthenticationError)
        }
        return [
            t
            for t, p in self.alerts
            if (p in failed or p in self.clients) and (peer_host is None or p[0] == peer_host)
        ]

    def connected(self, peer: tuple[str, int]) -> bool:
        return any(p == peer and isinstance(ev, HandshakeComplete) for _, p, ev in self.events)


def wrong_pskc(pskc: bytes) -> bytes:
    return bytes([pskc[0] ^ 0xFF]) + pskc[1:]


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


# -- MGMT_ACTIVE_GET before and after a petition ------------------------------------------------


def _app(lan: Lan, peer: tuple[str, int]) -> list[TmfMessage]:
    return [
        TmfMessage.from_bytes(ev.data)
        for _, p, ev in lan.events
        if p == peer and isinstance(ev, ApplicationData)
    ]


def test_active_get_is_refused_before_a_petition_and_answered_after() -> None:
    """Fails on the code before the fix: a connected session that never petitioned got the
    whole active dataset, Network Key included, with 2.04."""
    w = World()
    assert w.ds.pskc is not None and w.ds.network_key is not None
    lan = Lan(w.core)
    peer = ("192.0.2.10", 5000)
    lan.connect(peer, w.ds.pskc)
    assert lan.connected(peer)
    client = lan.clients[peer]
    client.send(tmf_request(TmfUri.MGMT_ACTIVE_GET, [], mid=1, token=b"\x00\x01").to_bytes())
    lan.pump()
    (refused,) = _app(lan, peer)
    assert refused.code == CoapCode.UNAUTHORIZED
    assert w.ds.network_key not in refused.payload
    assert w.core.border_agent.counters["requests_refused"] == 1
    # the same session petitions, then asks again
    pet = tmf_request(TmfUri.COMM_PET, [CommissionerIdTlv("tester")], mid=2, token=b"\x00\x02")
    client.send(pet.to_bytes())
    lan.pump()
    assert w.core.leader.active is not None
    client.send(tmf_request(TmfUri.MGMT_ACTIVE_GET, [], mid=3, token=b"\x00\x03").to_bytes())
    lan.pump()
    answer = [m for m in _app(lan, peer) if m.token == b"\x00\x03"]
    assert answer and answer[-1].code == CoapCode.CHANGED
    assert bytes([MeshcopTlvType.NETWORK_KEY, 16]) + w.ds.network_key in answer[-1].payload


def test_commissioner_get_is_refused_before_a_petition_too() -> None:
    """Fails on the code before the fix (answered with 2.04 for any connected session)."""
    w = World()
    assert w.ds.pskc is not None
    lan = Lan(w.core)
    peer = ("192.0.2.11", 5000)
    lan.connect(peer, w.ds.pskc)
    get = tmf_request(TmfUri.MGMT_COMMISSIONER_GET, [], mid=1, token=b"\x00\x09")
    lan.clients[peer].send(get.to_bytes())
    lan.pump()
    (refused,) = _app(lan, peer)
    assert refused.code == CoapCode.UNAUTHORIZED


def test_the_external_commissioner_still_gets_the_dataset_after_its_petition() -> None:
    """ot-commissioner's flow (petition, then MGMT_ACTIVE_GET for the mesh-local prefix) is the
    reference commissioner's: it still becomes active and learns the prefix."""
    w = World()
    ext = w.add_external()
    w.run_until(lambda: ext.commissioner.mesh_local_prefix is not None, 5)
    assert ext.commissioner.mesh_local_prefix == w.ds.mesh_local_prefix


# -- PSKc guessing ---------------------------------------------------------------------------------


def _attack(lan: Lan, pskc: bytes, hosts: list[str], attempts: int, every: float) -> None:
    """``attempts`` wrong-PSKc handshakes, one every ``every`` s, round robin over ``hosts``,
    each from a new port (as fast as a script would go)."""
    for i in range(attempts):
        host = hosts[i % len(hosts)]
        lan.connect((host, 20000 + i), wrong_pskc(pskc), FAST)
        lan.advance(every)
        # forget finished clients (their events are kept)
        for peer in [p for p, c in lan.clients.items() if c.state.value in ("failed", "closed")]:
            del lan.clients[peer]


def test_1000_wrong_pskc_attempts_from_one_address_get_5_then_10_a_minute() -> None:
    """Fails on the code before the fix: every wrong guess got its verdict (hundreds within the
    run, far more than 5 + 10/min). The right PSKc still gets in afterwards: within 30 s from
    the attacker's address, at once from another."""
    w = World()
    pskc = w.ds.pskc
    assert pskc is not None
    lan = Lan(w.core)
    start = lan.now
    _attack(lan, pskc, ["192.0.2.66"], 1000, 0.1)
    duration = lan.now - start
    verdicts = lan.verdicts()
    allowed = 5 + duration * 10 / 60 + 1
    print(f"1000 wrong PSKc in {duration:.0f} s: {len(verdicts)} verdicts (limit {allowed:.0f})")
    assert len(verdicts) <= allowed
    for window in (1.0, 10.0, 60.0, 120.0):
        assert max_in_window(verdicts, window) <= 5 + window * 10 / 60 + 1, window
    counters = w.core.border_agent.counters
    assert counters["pskc_wrong"] == len(verdicts)
    # at once from another address
    other = ("192.0.2.77", 6000)
    lan.connect(other, pskc)
    assert lan.connected(other)
    # within 30 s from the attacker's address
    same = ("192.0.2.66", 7000)
    lan.connect(same, pskc)
    t0 = lan.now
    while not lan.connected(same) and lan.now - t0 < 30:
        lan.advance(0.5)
    assert lan.connected(same), f"not in within 30 s ({counters})"


def test_wrong_pskc_verdicts_in_all_are_bounded_across_many_addresses() -> None:
    """An attacker with 50 addresses: the verdicts in all stay within 5 + 10/min. Fails on the
    code before the fix (every guess answered)."""
    w = World()
    pskc = w.ds.pskc
    assert pskc is not None
    lan = Lan(w.core)
    start = lan.now
    _attack(lan, pskc, [f"198.51.100.{i}" for i in range(1, 51)], 300, 0.2)
    duration = lan.now - start
    verdicts = lan.verdicts()
    assert len(verdicts) <= 5 + duration * 10 / 60 + 1
    assert w.core.border_agent.counters["pskc_verdicts_withheld"] > 0
    # a right PSKc is let in at once while the budget in all is spent
    lan.connect(("203.0.113.5", 6000), pskc)
    assert lan.connected(("203.0.113.5", 6000))


# -- handshakes in progress ---------------------------------------------------------------------


def test_half_open_handshakes_from_one_address_do_not_fill_the_table() -> None:
    """Fails on the code before the fix: eight half-open sessions from one host filled the
    table for two minutes and the real commissioner was refused."""
    w = World()
    pskc = w.ds.pskc
    assert pskc is not None
    lan = Lan(w.core)
    for i in range(100):
        c = DtlsClient(pskc, rng=random.Random(i).randbytes)
        peer = ("192.0.2.66", 30000 + i)
        c.start(lan.now)
        lan.clients[peer] = c
        lan.pump()  # CH -> HVR -> CH with cookie -> server flight: the session is half open
        c.datagrams_to_send()
        lan.clients.pop(peer)  # the attacker never sends its final flight
        lan.now += 0.01
    ba = w.core.border_agent
    assert sum(1 for s in ba.sessions() if not s["connected"]) <= 2  # per-source cap
    ext = w.add_external()
    took = w.run_until(lambda: ext.commissioner.session_id is not None, 5)
    assert took < 5


# -- the journal ----------------------------------------------------------------------------------


def _failing_hello(jar_peer: tuple[str, int], core: BorderRouterCore, now: float) -> None:
    """A ClientHello that passes the cookie check and fails at once (no EC-JPAKE suite)."""
    hello = ClientHello(0xFEFD, bytes(32), b"", b"", (0xC0A8,), b"\x00", (Extension(256, b"x"),))
    rec = DtlsRecord(
        CONTENT_HANDSHAKE, 0xFEFD, 0, 0, full_message(HS_CLIENT_HELLO, 0, hello.to_bytes())
    )
    core.ba_datagram_received(jar_peer, tid(jar_peer), rec.to_bytes(), now)
    (hvr,) = core.ba_datagrams()
    (hvr_rec,) = parse_datagram(hvr[1])
    cookie = hvr_rec.fragment[12 + 3 :]  # handshake header, server_version, cookie length
    hello2 = ClientHello(
        0xFEFD, bytes(32), b"", cookie, (0xC0A8,), b"\x00", (Extension(256, b"x"),)
    )
    rec2 = DtlsRecord(
        CONTENT_HANDSHAKE, 0xFEFD, 0, 1, full_message(HS_CLIENT_HELLO, 1, hello2.to_bytes())
    )
    core.ba_datagram_received(jar_peer, tid(jar_peer), rec2.to_bytes(), now)
    core.ba_datagrams()


def test_10000_failed_handshakes_make_a_bounded_number_of_journal_lines() -> None:
    """Fails on the code before the fix: one WARNING line per failed handshake (10,000)."""
    w = World()
    core = w.core
    now = 1000.0
    lines = []
    for i in range(10_000):
        peer = (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 40000 + i % 1000)
        _failing_hello(peer, core, now)
        now += 0.25  # 4 handshakes a second, within the global handshake budget
        core.poll(now)
        lines += core.log_lines()
    core.poll(now + 120)
    lines += core.log_lines()
    failures = core.border_agent.counters["dtls_failures"]
    print(f"{failures} failed handshakes -> {len(lines)} journal lines")
    assert failures == 10_000
    # a burst of 5, then one a ten seconds, plus a summary a minute
    bound = 5 + (now - 1000) / 10 + (now - 1000) / 60 + 2
    assert len(lines) <= bound
    assert any("suppressed" in ln.text for ln in lines)
    assert core.status(now)["warnings_suppressed"]["border agent: failed"] > 9000
