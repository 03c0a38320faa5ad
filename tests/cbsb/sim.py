"""A discrete-event 802.15.4 air for the pure CBSB state machines (tests and benchmark).

Models what matters for timing: airtime at 250 kbit/s (32 µs per byte of PHY header + PSDU), one
shared medium per channel (a transmission waits until the channel is free, no collisions), a
per-node processing delay before anything it sends reaches the air, unicast MAC acknowledgement
time and retries, and independent frame loss. Frames only reach nodes tuned to the channel when
the transmission ends.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.wire.cbsb_session import Output, Send, SetChannel

BYTE_S = 32e-6  # 250 kbit/s O-QPSK
PHY_OVERHEAD = 6  # preamble, SFD, PHR
MHR_BROADCAST = 15  # FCF, seq, dst PAN, dst short, src ext (PAN ID compression)
MHR_UNICAST = 21  # FCF, seq, dst PAN, dst ext, src ext (PAN ID compression)
FCS = 2
ACK_S = 0.000192 + (PHY_OVERHEAD + 5) * BYTE_S  # turnaround + 5-byte imm-ack PSDU


class Node(Protocol):
    def handle_frame(self, now: float, src: bytes | None, payload: bytes) -> list[Output]: ...

    def poll(self, now: float) -> list[Output]: ...

    def next_deadline(self) -> float | None: ...


@dataclass
class _Station:
    name: str
    node: Node
    address: bytes
    channel: int | None
    poll_at: float | None = None
    events: list[tuple[float, object]] = field(default_factory=list)


@dataclass(frozen=True)
class _Rx:
    channel: int
    src: bytes
    dst: bytes | None
    payload: bytes


@dataclass(frozen=True)
class _Call:
    station: _Station
    fn: Callable[[float], list[Output]]


def airtime(payload_len: int, unicast: bool) -> float:
    mhr = MHR_UNICAST if unicast else MHR_BROADCAST
    return (PHY_OVERHEAD + mhr + payload_len + FCS) * BYTE_S


class Air:
    def __init__(
        self,
        *,
        loss: float = 0.0,
        seed: int = 0,
        proc_delay: float = 0.002,
        mac_retries: int = 3,
        on_frame: Callable[[float, int, bytes | None, bytes | None, bytes], None] | None = None,
        drop: Callable[[bytes, bytes | None], bool] | None = None,
    ) -> None:
        self.loss = loss
        self.rand = random.Random(seed)
        self.proc_delay = proc_delay
        self.mac_retries = mac_retries
        self.now = 0.0
        self._queue: list[tuple[float, int, str, object]] = []
        self._seq = itertools.count()
        self._busy: dict[int, float] = {}
        self.stations: dict[bytes, _Station] = {}
        self.frames_sent = 0
        self.on_frame = on_frame
        self.drop = drop

    def add(self, name: str, node: Node, address: bytes, channel: int | None) -> _Station:
        st = _Station(name, node, address, channel)
        self.stations[address] = st
        return st

    def _push(self, t: float, kind: str, item: object) -> None:
        heapq.heappush(self._queue, (t, next(self._seq), kind, item))

    def apply(self, st: _Station, t: float, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, SetChannel):
                st.channel = o.channel
            elif isinstance(o, Send):
                self._transmit(st, t, o)
            else:
                st.events.append((t, o))
        self._schedule_poll(st)

    def _schedule_poll(self, st: _Station) -> None:
        d = st.node.next_deadline()
        if d is not None and d != st.poll_at:
            st.poll_at = d
            self._push(max(d, self.now), "poll", st)

    def _transmit(self, st: _Station, t: float, send: Send) -> None:
        ch = st.channel
        if ch is None:
            return
        unicast = send.dst is not None
        start = max(t + self.proc_delay, self._busy.get(ch, 0.0))
        one = airtime(len(send.payload), unicast)
        attempts = 1 + (self.mac_retries if unicast else 0)
        end = start
        delivered = False
        for _ in range(attempts):
            end += one
            self.frames_sent += 1
            if self.on_frame is not None:
                self.on_frame(end, ch, st.address, send.dst, send.payload)
            if not unicast:
                break
            if self.rand.random() >= self.loss:
                end += ACK_S
                delivered = True
                break
            end += ACK_S  # ACK wait timeout before the retry
        self._busy[ch] = end
        if unicast:
            if delivered:
                self._push(end, "rx", _Rx(ch, st.address, send.dst, send.payload))
        else:
            self._push(end, "rx", _Rx(ch, st.address, None, send.payload))

    def _deliver(self, t: float, rx: _Rx) -> None:
        if rx.dst is not None:
            st = self.stations.get(rx.dst)
            targets = [st] if st is not None else []
        else:
            targets = [s for s in self.stations.values() if s.address != rx.src]
        if self.drop is not None and self.drop(rx.payload, rx.dst):
            return
        for st in targets:
            if st.channel != rx.channel:
                continue
            if rx.dst is None and self.rand.random() < self.loss:
                continue
            self.apply(st, t, st.node.handle_frame(t, rx.src, rx.payload))

    def start(self, st: _Station, outputs: list[Output]) -> None:
        self.apply(st, self.now, outputs)

    def call_at(self, t: float, st: _Station, fn: Callable[[float], list[Output]]) -> None:
        """Run ``fn(t)`` (for example ``thing.start``) at simulated time ``t``."""
        self._push(t, "call", _Call(st, fn))

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        while self._queue:
            t, _, kind, item = self._queue[0]
            if t > until:
                break
            heapq.heappop(self._queue)
            self.now = t
            if kind == "call":
                assert isinstance(item, _Call)
                self.apply(item.station, t, item.fn(t))
            elif kind == "poll":
                assert isinstance(item, _Station)
                if item.poll_at != t:
                    continue
                item.poll_at = None
                self.apply(item, t, item.node.poll(t))
            else:
                assert isinstance(item, _Rx)
                self._deliver(t, item)
            if stop is not None and stop():
                break
