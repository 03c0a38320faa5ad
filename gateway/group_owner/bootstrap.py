"""The group owner's radio side: drives one :class:`GatewaySession` (the CBSB-1 gateway state
machine) with the radio service.

One driver task feeds the session everything in order (received frames, cloud commands, timer
ticks at ``next_deadline()``); a transmit task sends what it outputs through the radio socket as
IEEE 802.15.4 data frames (beacons broadcast, join frames unicast with ACK request, the gateway's
EUI-64 as source); everything else it outputs (reports, enrollees, completed joins, the end of the
window) goes to :class:`Hooks`, which the service turns into cloud reports, LAN notifications,
journal entries and its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.radio.client import RadioClient, RxEvent
from gateway.wire.cbsb import BeaconFlags, MsgType, Status, peek_type
from gateway.wire.cbsb_gateway import GatewayConfig, GatewaySession, JoinGrant, SessionState
from gateway.wire.cbsb_mac import cbsb_mac_frame, parse_cbsb_mac
from gateway.wire.cbsb_session import (
    EnrolleeFound,
    JoinCompleted,
    Output,
    Report,
    Send,
    SessionEnded,
)

LOG = logging.getLogger(__name__)
_SHED_COUNTERS = ("m1_rate_limited", "joins_full", "pending_full", "beacon_request_limited")


class Hooks(Protocol):
    def window_open(self, sid: bytes, channel: int) -> None: ...

    def report(self, sid: bytes, status: Status, dev_id: bytes | None, epoch: int | None,
               link: dict[str, int]) -> None: ...  # fmt: skip

    def enrollee(self, sid: bytes, found: EnrolleeFound) -> None: ...

    def joined(self, sid: bytes, done: JoinCompleted, link: dict[str, int]) -> None: ...

    def ended(self, sid: bytes, status: Status) -> None: ...


@dataclass(frozen=True)
class RadioParams:
    gw_id: bytes
    channel: int
    pan_id: int
    delivery: bytes


class Bootstrapper:
    """One bootstrapping window at a time on the gateway's radio."""

    def __init__(self, radio: RadioClient, params: RadioParams, hooks: Hooks) -> None:
        self.radio = radio
        self.params = params
        self.hooks = hooks
        self.session: GatewaySession | None = None
        self.counters: Counter[str] = Counter()
        self.last_session: dict[str, Any] | None = None
        self._inbox: asyncio.Queue[Callable[[float], list[Output]]] = asyncio.Queue(1024)
        # Beacons go first: a beacon answering a Beacon Request is useless once the thing has
        # moved on to the next channel (50 ms), while join frames are retransmitted anyway.
        self._txq: asyncio.PriorityQueue[tuple[int, int, Send]] = asyncio.PriorityQueue(1024)
        self._tx_seq = 0
        self._links: dict[bytes, tuple[int, int]] = {}  # MAC source -> (rssi, lqi)
        self._dev_src: dict[bytes, bytes] = {}  # dev_id -> MAC source of its last M1
        self._radio_error_at = float("-inf")
        self._tx_latency: deque[float] = deque(maxlen=200)
        self._shed_seen = 0
        self._shed_reported_at = float("-inf")

    # --- inputs ------------------------------------------------------------------------------

    def _submit(self, fn: Callable[[float], list[Output]]) -> None:
        try:
            self._inbox.put_nowait(fn)
        except asyncio.QueueFull:
            self.counters["inbox_full"] += 1

    def on_rx(self, ev: RxEvent) -> None:
        if ev.tx or not ev.crc_ok:
            return
        parsed = parse_cbsb_mac(ev.psdu)
        if parsed is None:
            self.counters["rx_not_cbsb"] += 1
            return
        src, payload = parsed
        self.counters["rx_frames"] += 1
        if self.session is None:
            self.counters["rx_no_session"] += 1
            return
        if src is not None:
            if len(self._links) > 256:
                self._links.clear()
            self._links[src] = (ev.rssi, ev.lqi)
            if peek_type(payload) == MsgType.JOIN_REQUEST and len(payload) >= 11:
                if len(self._dev_src) > 256:
                    self._dev_src.clear()
                self._dev_src[payload[3:11]] = src

        def fn(now: float) -> list[Output]:
            s = self.session
            return s.handle_frame(now, src, payload) if s is not None else []

        self._submit(fn)

    def open(self, grant: JoinGrant, delivery: bytes | None = None) -> None:
        """Open the window of ``grant``; its things receive ``delivery`` (default: the
        gateway's, ``params.delivery``)."""

        def fn(now: float) -> list[Output]:
            out: list[Output] = []
            s = self.session
            if s is not None and s.sid == grant.sid and s.state == SessionState.OPEN:
                for dev_id, psk in grant.psks.items():  # a repeated grant: add what is new
                    out += s.provide_psk(now, dev_id, psk)
                return out
            if s is not None:
                out += s.close(now, Status.SESSION_CLOSED)
                self._dispatch(s, out)
                out = []
            p = self.params
            cfg = GatewayConfig(gw_id=p.gw_id, channel=p.channel, pan_id=p.pan_id,
                                delivery=delivery or p.delivery)  # fmt: skip
            self.session = GatewaySession(cfg, grant, now)
            self._shed_seen = 0
            self.counters["sessions"] += 1
            LOG.info(
                "bootstrapping window open: session %s, %s, %d device(s), %.0f s, channel %d",
                grant.sid.hex()[:8], _mode_words(grant.mode), len(grant.psks), grant.window_s,
                p.channel,
            )  # fmt: skip
            self.hooks.window_open(grant.sid, p.channel)
            return self.session.poll(now)  # first beacon at once

        self._submit(fn)

    def provide_psk(self, sid: bytes, dev_id: bytes, psk: bytes) -> None:
        self._submit(lambda now: self._on(sid, lambda s: s.provide_psk(now, dev_id, psk)))

    def deny(self, sid: bytes, dev_id: bytes, psk: bytes | None) -> None:
        self._submit(lambda now: self._on(sid, lambda s: s.deny_device(now, dev_id, psk)))

    def hint_pending(self, sid: bytes, dev_id: bytes, status: Status) -> None:
        self._submit(lambda now: self._on(sid, lambda s: s.hint_pending(now, dev_id, status)))

    def close(self, sid: bytes | None, status: Status = Status.SESSION_CLOSED) -> None:
        def fn(now: float) -> list[Output]:
            s = self.session
            if s is None or (sid is not None and s.sid != sid):
                return []
            return s.close(now, status)

        self._submit(fn)

    def _on(self, sid: bytes, fn: Callable[[GatewaySession], list[Output]]) -> list[Output]:
        s = self.session
        if s is None or s.sid != sid:
            return []
        return fn(s)

    # --- the driver --------------------------------------------------------------------------

    async def run(self) -> None:
        tx = asyncio.ensure_future(self._tx_loop())
        try:
            await self._drive()
        finally:
            tx.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tx

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            s = self.session
            deadline = s.next_deadline() if s is not None else None
            item: Callable[[float], list[Output]] | None = None
            if deadline is None:
                item = await self._inbox.get()
            else:
                delay = deadline - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            item = await self._inbox.get()
            now = loop.time()
            s = self.session
            if item is not None:
                out = item(now)
                self._dispatch(self.session or s, out)
            s = self.session
            if s is not None:
                d = s.next_deadline()
                if d is not None and d <= now:
                    self._dispatch(s, s.poll(now))
            self._check_shedding(now)

    def _dispatch(self, s: GatewaySession | None, outputs: list[Output]) -> None:
        sid = s.sid if s is not None else b""
        ended = False
        for o in outputs:
            if isinstance(o, Send):
                self._tx_seq += 1
                try:
                    self._txq.put_nowait((0 if o.dst is None else 1, self._tx_seq, o))
                except asyncio.QueueFull:
                    self.counters["tx_queue_full"] += 1
            elif isinstance(o, Report):
                self.hooks.report(sid, o.status, o.dev_id, o.epoch, self._link(o.dev_id))
            elif isinstance(o, EnrolleeFound):
                self.hooks.enrollee(sid, o)
            elif isinstance(o, JoinCompleted):
                self.counters["joins_completed"] += 1
                self.hooks.joined(sid, o, self._link(o.dev_id))
            elif isinstance(o, SessionEnded):
                ended = True
                self.hooks.ended(sid, o.status)
        if ended and s is not None and self.session is s:
            self.last_session = s.snapshot(time.monotonic())
            self.session = None

    def _check_shedding(self, now: float) -> None:
        """RATE_LIMITED is the shell's to report (docs/cbsb.md §7): when the session drops join
        requests for its rate limits or full tables, say so at most every 10 s."""
        s = self.session
        if s is None:
            return
        shed = sum(s.counters[k] for k in _SHED_COUNTERS)
        if shed > self._shed_seen and now - self._shed_reported_at >= 10.0:
            self._shed_reported_at = now
            self.hooks.report(s.sid, Status.RATE_LIMITED, None, s.epoch_at(now), {})
        self._shed_seen = shed

    def _link(self, dev_id: bytes | None) -> dict[str, int]:
        src = self._dev_src.get(dev_id) if dev_id is not None else None
        link = self._links.get(src) if src is not None else None
        return {"rssi": link[0], "lqi": link[1]} if link else {}

    async def _tx_loop(self) -> None:
        p = self.params
        while True:
            _prio, _seq, send = await self._txq.get()
            frame = cbsb_mac_frame(send.payload, p.gw_id, send.dst, p.pan_id)
            t0 = time.monotonic()
            try:
                res = await self.radio.transmit(frame, timeout=3.0)
            except GatewayError as exc:
                self.counters["tx_errors"] += 1
                self._radio_error(exc)
                continue
            self._tx_latency.append(time.monotonic() - t0)
            if res.get("ok"):
                self.counters["tx_ok"] += 1
            elif send.dst is not None:
                self.counters["tx_no_ack"] += 1
            else:
                self.counters["tx_failed"] += 1

    def _radio_error(self, exc: GatewayError) -> None:
        now = time.monotonic()
        if now - self._radio_error_at < 10.0:
            return
        self._radio_error_at = now
        LOG.error("radio error while bootstrapping: %s", exc.message)
        s = self.session
        if s is not None:
            self.hooks.report(s.sid, Status.RADIO_ERROR, None, None, {})

    # --- status ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        s = self.session
        lat = sorted(self._tx_latency)
        return {
            "session": s.snapshot(asyncio.get_running_loop().time()) if s is not None else None,
            "last_session": self.last_session,
            "counters": dict(self.counters),
            "tx_latency_ms_p50": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        }


def _mode_words(mode: BeaconFlags) -> str:
    words = ["targeted" if mode & BeaconFlags.TARGETED else "discover"]
    if mode & BeaconFlags.PFS_REQUIRED:
        words.append("forward secrecy")
    return "+".join(words)
