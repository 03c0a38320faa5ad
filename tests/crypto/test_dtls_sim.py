"""DTLS over a seeded simulated network (loss, duplication, reordering), and the helpers the
other DTLS tests share: deterministic endpoints, a lossless shuttle and the simulator."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from gateway.crypto.dtls import (
    ApplicationData,
    ConnectionFailed,
    DtlsClient,
    DtlsConfig,
    DtlsEvent,
    DtlsServer,
    DtlsState,
    HandshakeComplete,
)
from tests.dtls_helpers import shuttle as shuttle_datagrams

PASSWORD = b"J01NME"
CLIENT_ADDR = bytes.fromhex("fe800000000000000000000000000001")
SERVER_ADDR = bytes.fromhex("fe800000000000000000000000000002")

Endpoint = DtlsClient | DtlsServer


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    gen = random.Random(seed)
    return gen.randbytes


def make_pair(
    *,
    seed: int = 1,
    config: DtlsConfig | None = None,
    client_password: bytes = PASSWORD,
    server_password: bytes = PASSWORD,
) -> tuple[DtlsClient, DtlsServer]:
    client = DtlsClient(client_password, config=config, rng=seeded_rng(seed))
    server = DtlsServer(
        server_password, transport_id=CLIENT_ADDR, config=config, rng=seeded_rng(seed + 1000)
    )
    return client, server


@dataclass
class Trace:
    """Every datagram that crossed the (lossless) wire, in order, with its direction."""

    datagrams: list[tuple[str, bytes]] = field(default_factory=list)
    client_events: list[DtlsEvent] = field(default_factory=list)
    server_events: list[DtlsEvent] = field(default_factory=list)


def run_lossless(client: DtlsClient, server: DtlsServer, now: float = 0.0) -> Trace:
    """Start the client and shuttle datagrams until both sides are quiet."""
    trace = Trace()
    if client.state is DtlsState.IDLE:
        client.start(now)
    shuttle(client, server, trace, now)
    return trace


def shuttle(client: DtlsClient, server: DtlsServer, trace: Trace, now: float) -> None:
    shuttle_datagrams(client, server, trace.datagrams, now)
    trace.client_events += client.events()
    trace.server_events += server.events()


@dataclass
class SimResult:
    client_events: list[DtlsEvent]
    server_events: list[DtlsEvent]
    sent: int
    delivered: int
    end_time: float
    client_got: list[bytes]
    server_got: list[bytes]


class SimNet:
    """A deterministic lossy network between one client and one server.

    Every datagram is lost with probability ``loss``, duplicated with probability ``dup`` and
    delayed by ``delay + uniform(0, jitter)`` seconds (jitter reorders datagrams sent close
    together). Time only moves when something is due: a delivery or an endpoint's timer.
    """

    def __init__(
        self,
        client: DtlsClient,
        server: DtlsServer,
        *,
        seed: int,
        loss: float = 0.0,
        dup: float = 0.0,
        delay: float = 0.01,
        jitter: float = 0.0,
    ) -> None:
        self.client = client
        self.server = server
        self.rng = random.Random(seed)
        self.loss = loss
        self.dup = dup
        self.delay = delay
        self.jitter = jitter
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._counter = 0
        self.sent = 0
        self.delivered = 0

    def _schedule(self, dst: str, datagram: bytes, now: float) -> None:
        self.sent += 1
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            t = now + self.delay + self.rng.uniform(0.0, self.jitter)
            self._counter += 1
            heapq.heappush(self._queue, (t, self._counter, dst, datagram))

    def run(
        self,
        *,
        until: float,
        app_messages: int = 0,
        app_interval: float = 0.5,
    ) -> SimResult:
        client, server = self.client, self.server
        now = 0.0
        client.start(now)
        c_events: list[DtlsEvent] = []
        s_events: list[DtlsEvent] = []
        client_got: list[bytes] = []
        server_got: list[bytes] = []
        next_app = 0.0
        while True:
            # application traffic: both sides repeat each message until the peer got it
            if app_messages and client.is_connected and server.is_connected and now >= next_app:
                for i in range(app_messages):
                    msg = f"c2s {i}".encode()
                    if msg not in server_got:
                        client.send(msg)
                    msg = f"s2c {i}".encode()
                    if msg not in client_got:
                        server.send(msg)
                next_app = now + app_interval
            for d in client.datagrams_to_send():
                self._schedule("s", d, now)
            for d in server.datagrams_to_send():
                self._schedule("c", d, now)
            for ev in client.events():
                c_events.append(ev)
                if isinstance(ev, ApplicationData):
                    client_got.append(ev.data)
            for ev in server.events():
                s_events.append(ev)
                if isinstance(ev, ApplicationData):
                    server_got.append(ev.data)
            done_app = all(
                f"c2s {i}".encode() in server_got and f"s2c {i}".encode() in client_got
                for i in range(app_messages)
            )
            if client.is_connected and server.is_connected and done_app and not self._queue:
                break
            candidates = [t for t in (client.next_timeout(), server.next_timeout()) if t]
            if self._queue:
                candidates.append(self._queue[0][0])
            if app_messages and client.is_connected and server.is_connected:
                candidates.append(next_app)
            if not candidates:
                break
            now = max(now, min(candidates))
            if now > until:
                break
            while self._queue and self._queue[0][0] <= now:
                _, _, dst, datagram = heapq.heappop(self._queue)
                self.delivered += 1
                (server if dst == "s" else client).receive_datagram(datagram, now)
            client.handle_timeout(now)
            server.handle_timeout(now)
        return SimResult(c_events, s_events, self.sent, self.delivered, now, client_got, server_got)


# -- tests ---------------------------------------------------------------------------------------

# Shorter timers than OpenThread's 8 s / 60 s so that a lossy run gets more retransmissions
# (1, 2, 4, ... 32 s: six retransmissions before giving up); simulated time costs nothing.
LOSSY = DtlsConfig(retransmit_initial=1.0, retransmit_max=32.0)


def _assert_success(client: DtlsClient, server: DtlsServer, result: SimResult, n_app: int) -> None:
    assert client.state is DtlsState.CONNECTED, result.client_events
    assert server.state is DtlsState.CONNECTED, result.server_events
    assert not [
        e for e in result.client_events + result.server_events if isinstance(e, ConnectionFailed)
    ]
    assert result.client_events.count(HandshakeComplete()) == 1
    assert result.server_events.count(HandshakeComplete()) == 1
    assert client.kek is not None and client.kek == server.kek
    assert client.key_block == server.key_block
    for i in range(n_app):
        assert f"c2s {i}".encode() in result.server_got
        assert f"s2c {i}".encode() in result.client_got


def test_clean_network() -> None:
    client, server = make_pair(seed=3)
    result = SimNet(client, server, seed=3).run(until=10.0, app_messages=2)
    _assert_success(client, server, result, 2)
    # ClientHello, HVR, ClientHello, server flight, client flight, server flight + app data
    assert result.sent == result.delivered
    assert result.end_time < 1.0  # no retransmission was needed


@pytest.mark.parametrize("seed", range(12))
def test_loss_duplication_and_reordering(seed: int) -> None:
    client, server = make_pair(seed=seed, config=LOSSY)
    net = SimNet(client, server, seed=seed, loss=0.25, dup=0.2, delay=0.02, jitter=0.3)
    result = net.run(until=600.0, app_messages=3)
    _assert_success(client, server, result, 3)


def test_lossy_runs_actually_retransmit() -> None:
    """Guards the test above against a simulator that loses nothing."""
    extra = 0
    for seed in range(6):
        client, server = make_pair(seed=seed, config=LOSSY)
        result = SimNet(client, server, seed=seed, loss=0.25, dup=0.2, jitter=0.3).run(until=600.0)
        _assert_success(client, server, result, 0)
        extra += result.sent - 6
    assert extra > 6


@pytest.mark.parametrize("seed", range(4))
def test_small_mtu_under_loss_and_reordering(seed: int) -> None:
    config = DtlsConfig(mtu=120, retransmit_initial=1.0, retransmit_max=32.0)
    client, server = make_pair(seed=seed, config=config)
    net = SimNet(client, server, seed=100 + seed, loss=0.1, dup=0.1, jitter=0.3)
    result = net.run(until=600.0, app_messages=1)
    _assert_success(client, server, result, 1)


def test_total_loss_times_out_on_both_sides() -> None:
    client, server = make_pair(seed=5, config=LOSSY)
    result = SimNet(client, server, seed=5, loss=1.0).run(until=1000.0)
    failures = [e for e in result.client_events if isinstance(e, ConnectionFailed)]
    assert len(failures) == 1 and failures[0].error.code == "DTL003"
    assert client.state is DtlsState.FAILED
    # the server never heard anything: it holds no timer and is still waiting
    assert server.state is DtlsState.HANDSHAKING and server.next_timeout() is None
    assert result.end_time == pytest.approx(1 + 2 + 4 + 8 + 16 + 32)
