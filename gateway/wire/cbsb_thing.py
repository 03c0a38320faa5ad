"""The thing's CBSB-1 join state machine (docs/cbsb.md §7): :class:`ThingJoin`, one thing
looking for a gateway and joining it. Sans-IO: every entry point takes ``now`` and returns outputs
(:mod:`gateway.wire.cbsb_session`) for the asyncio shell (:mod:`gateway.peers.thing.cbsb`)."""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from gateway.crypto.cbsb_keys import (
    DIR_G2T,
    DIR_T2G,
    JoinKeys,
    bind_proof,
    ct_equal,
    delivery_digest,
    derive_k_bind,
    derive_psk_t,
    steering_contains,
    transcript_th2,
    transcript_th3,
    x25519_keypair,
)
from gateway.errors import CryptoError, ParseError
from gateway.wire.cbsb import (
    Abort,
    Beacon,
    BeaconFlags,
    BeaconRequest,
    CbsbInvalidArgument,
    Delivery,
    DeliveryChunk,
    JoinDone,
    JoinRequest,
    JoinResponse,
    MsgType,
    ResponseBody,
    Status,
    parse_frame,
    peek_type,
)
from gateway.wire.cbsb_session import (
    Committed,
    Output,
    Progress,
    Rng,
    Send,
    SetChannel,
    ThingFailed,
    build_abort,
    build_ack,
    build_confirm,
    build_join_request,
    open_abort,
    open_chunk,
    open_done,
    open_response,
    verify_beacon_tag,
)

_THING_IGNORES = frozenset(
    {MsgType.BEACON_REQUEST, MsgType.JOIN_REQUEST, MsgType.JOIN_CONFIRM, MsgType.DELIVERY_ACK}
)

__all__ = [
    "ThingIdentity",
    "ThingJoin",
    "ThingState",
    "ThingTimers",
]


# =============================================================================================
# Thing
# =============================================================================================


@dataclass(frozen=True)
class ThingIdentity:
    """Factory data of a thing: its EUI-64 and its 32-byte device key."""

    dev_id: bytes
    k_dev: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.dev_id) != 8 or len(self.k_dev) != 32:
            raise CbsbInvalidArgument("dev_id must be 8 bytes and K_dev 32 bytes")


@dataclass(frozen=True)
class ThingTimers:
    """Timers of the thing side (docs/cbsb.md §6.4)."""

    dwell_s: float = 0.05
    passive_dwell_s: float = 2.2
    m1_timeout_s: tuple[float, float] = (0.5, 0.75)
    m1_retries: int = 4
    pending_retry_s: tuple[float, float] = (10.0, 15.0)
    busy_retry_s: tuple[float, float] = (1.0, 2.0)
    gap_s: float = 0.1
    max_acks: int = 8
    m3_timeout_s: tuple[float, float] = (0.5, 0.75)
    m3_retries: int = 3
    failsafe_s: float = 30.0
    blacklist_s: float = 600.0
    deadline_s: float = 180.0
    m2_fail_limit: int = 5
    denied_limit: int = 3


class ThingState(Enum):
    IDLE = "idle"
    SCANNING = "scanning"
    JOINING = "joining"
    DELIVERING = "delivering"
    CONFIRMING = "confirming"
    COMMITTED = "committed"
    FAILED = "failed"


@dataclass
class _Attempt:
    beacon: Beacon
    m0: bytes
    psk_t: bytes = field(repr=False)
    m1: JoinRequest
    m1_raw: bytes
    x_private: bytes | None = field(default=None, repr=False)
    keys: JoinKeys | None = field(default=None, repr=False)
    th1: bytes = b""
    m2_raw: bytes = b""
    body: ResponseBody | None = field(default=None, repr=False)
    chunks: dict[int, bytes] = field(default_factory=dict, repr=False)
    early: list[DeliveryChunk] = field(default_factory=list)
    ack_seq: int = 0
    last_ack: float = float("-inf")
    m3: bytes = b""
    th3: bytes = b""
    delivery: Delivery | None = field(default=None, repr=False)
    tries: int = 0
    timer: float | None = None
    timer_interval: float = 0.0
    failsafe_at: float | None = None
    last_m3_resend: float = float("-inf")


class ThingJoin:
    """The thing side: scan (active Beacon Requests, or listen only), then M1..M4 with chunked
    delivery; commits only on a verified M4 (the fail-safe discards staged credentials)."""

    def __init__(
        self,
        identity: ThingIdentity,
        *,
        timers: ThingTimers | None = None,
        channels: tuple[int, ...] = tuple(range(11, 27)),
        active: bool = True,
        pfs: bool = False,
        caps: int = 0,
        rng: Rng = os.urandom,
        jitter: random.Random | None = None,
    ) -> None:
        if not channels or any(not 11 <= c <= 26 for c in channels):
            raise CbsbInvalidArgument("channels must be 2.4 GHz channels 11..26")
        self.identity = identity
        self.timers = timers or ThingTimers()
        self.channels = channels
        self.active = active
        self.pfs = pfs
        self.caps = caps
        self.state = ThingState.IDLE
        self.counters: Counter[str] = Counter()
        self.last_status: Status | None = None
        self._rng = rng
        self._jitter = jitter or random.Random(int.from_bytes(os.urandom(8), "big"))
        self._deadline = float("inf")
        self._scan_pos = 0
        self._channel: int | None = None
        self._dwell_until = 0.0
        self._rerequest_at: float | None = None
        self._attempt: _Attempt | None = None
        self._latest: tuple[Beacon, bytes] | None = None
        self._blacklist: dict[bytes, float] = {}
        self._denied_sessions: set[tuple[bytes, bytes]] = set()
        self._m2_failures: Counter[bytes] = Counter()
        self._denials: Counter[bytes] = Counter()

    def __repr__(self) -> str:
        return f"ThingJoin(dev_id={self.identity.dev_id.hex()}, state={self.state.value})"

    @property
    def dev_id(self) -> bytes:
        return self.identity.dev_id

    # --- entry points ---------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        out: list[Output] = []
        self._deadline = now + self.timers.deadline_s
        self._scan(now, out, first=True)
        return out

    def next_deadline(self) -> float | None:
        if self.state in (ThingState.IDLE, ThingState.COMMITTED, ThingState.FAILED):
            return None
        times = [self._deadline]
        if self.state == ThingState.SCANNING:
            times.append(self._dwell_until)
            if self._rerequest_at is not None:
                times.append(self._rerequest_at)
        a = self._attempt
        if a is not None:
            if a.timer is not None:
                times.append(a.timer)
            if a.failsafe_at is not None:
                times.append(a.failsafe_at)
        return min(times)

    def poll(self, now: float) -> list[Output]:
        out: list[Output] = []
        if self.state in (ThingState.IDLE, ThingState.COMMITTED, ThingState.FAILED):
            return out
        if now >= self._deadline:
            self._fail(out)
            return out
        if self.state == ThingState.SCANNING:
            if now >= self._dwell_until:
                self._scan_pos = (self._scan_pos + 1) % len(self.channels)
                self._scan(now, out)
            elif self._rerequest_at is not None and now >= self._rerequest_at:
                # One more request half-way through the dwell, in case either frame was lost.
                self._rerequest_at = None
                out.append(Send(BeaconRequest().to_bytes(), None))
            return out
        a = self._attempt
        assert a is not None
        if a.failsafe_at is not None and now >= a.failsafe_at:
            # Matter-style fail-safe: no M4 in time, so nothing staged is kept.
            self.counters["failsafe_expired"] += 1
            self.last_status = Status.THING_NO_CONFIRM
            out.append(Progress("fail-safe expired; credentials discarded"))
            self._restart_scan(now, out, blacklist=True)
            return out
        if a.timer is None or now < a.timer:
            return out
        if self.state == ThingState.JOINING:
            self._m1_timer(now, a, out)
        elif self.state == ThingState.DELIVERING:
            self._send_ack(now, a, out)
        elif self.state == ThingState.CONFIRMING:
            if a.tries < self.timers.m3_retries:
                a.tries += 1
                a.timer_interval *= 2
                a.timer = now + a.timer_interval
                out.append(Send(a.m3, a.beacon.gw_id))
            else:
                a.timer = None  # wait for M4 until the fail-safe fires
        return out

    def handle_frame(self, now: float, src: bytes | None, payload: bytes) -> list[Output]:
        """A received MAC payload; ``src`` as for :meth:`GatewaySession.handle_frame` (a beacon
        whose MAC source differs from its ``gw_id`` is ignored)."""
        out: list[Output] = []
        if self.state in (ThingState.IDLE, ThingState.COMMITTED, ThingState.FAILED):
            return out
        if peek_type(payload) in _THING_IGNORES:
            return out  # other things' traffic: not worth a parse
        try:
            frame = parse_frame(payload)
        except ParseError:
            self.counters["parse_error"] += 1
            return out
        if isinstance(frame, Beacon):
            self._on_beacon(now, src, frame, payload, out)
            return out
        a = self._attempt
        dev_id = getattr(frame, "dev_id", None)
        if a is None or dev_id != self.dev_id:
            self.counters["ignored"] += 1
            return out
        if isinstance(frame, JoinResponse):
            self._on_response(now, a, frame, payload, out)
        elif isinstance(frame, DeliveryChunk):
            self._on_chunk(now, a, frame, out)
        elif isinstance(frame, JoinDone):
            self._on_done(now, a, frame, out)
        elif isinstance(frame, Abort):
            self._on_abort(now, a, frame, out)
        else:
            self.counters["ignored"] += 1
        return out

    # --- scanning -------------------------------------------------------------------------

    def _scan(self, now: float, out: list[Output], first: bool = False) -> None:
        self.state = ThingState.SCANNING
        if first:
            out.append(Progress("scanning for a gateway"))
        ch = self.channels[self._scan_pos]
        if ch != self._channel:
            self._channel = ch
            out.append(SetChannel(ch))
        if self.active:
            out.append(Send(BeaconRequest().to_bytes(), None))
            self._dwell_until = now + self.timers.dwell_s
            self._rerequest_at = now + self.timers.dwell_s / 2
        else:
            self._dwell_until = now + self.timers.passive_dwell_s
            self._rerequest_at = None

    def _restart_scan(self, now: float, out: list[Output], *, blacklist: bool) -> None:
        a = self._attempt
        if a is not None and blacklist:
            self._blacklist[a.beacon.gw_id] = now + self.timers.blacklist_s
        self._attempt = None
        self._latest = None
        self._scan(now, out)

    def _fail(self, out: list[Output]) -> None:
        self.state = ThingState.FAILED
        self._attempt = None
        out.append(ThingFailed(self.last_status or Status.NO_JOIN_ATTEMPT))

    def _acceptable(self, now: float, b: Beacon) -> bool:
        if self._blacklist.get(b.gw_id, float("-inf")) > now:
            return False
        if (b.gw_id, b.sid) in self._denied_sessions:
            return False
        targeted = bool(b.flags & BeaconFlags.TARGETED)
        return not targeted or steering_contains(b.steering, self.dev_id)

    def _on_beacon(
        self, now: float, src: bytes | None, b: Beacon, raw: bytes, out: list[Output]
    ) -> None:
        if src is not None and src != b.gw_id:
            self.counters["beacon_src_mismatch"] += 1
            return
        a = self._attempt
        if a is not None:
            if b.gw_id == a.beacon.gw_id and b.sid == a.beacon.sid:
                self._latest = (b, raw)
            return
        if self.state != ThingState.SCANNING or not self._acceptable(now, b):
            return
        out.append(Progress(f"gateway {b.gw_id.hex()} found on channel {self._channel}"))
        self._new_attempt(now, b, raw, out)

    def _new_attempt(self, now: float, b: Beacon, raw: bytes, out: list[Output]) -> None:
        psk_t = derive_psk_t(self.identity.k_dev, b.sid, b.gw_id, self.dev_id, b.exp, int(b.flags))
        x_private: bytes | None = None
        x_t: bytes | None = None
        if self.pfs or b.flags & BeaconFlags.PFS_REQUIRED:
            pair = x25519_keypair(self._rng(32))
            x_private, x_t = pair.private, pair.public
        m1 = build_join_request(raw, b.epoch, self.dev_id, psk_t, self._rng(16), x_t)
        m1_raw = m1.to_bytes()
        interval = self._jitter.uniform(*self.timers.m1_timeout_s)
        self._attempt = _Attempt(
            beacon=b,
            m0=raw,
            psk_t=psk_t,
            m1=m1,
            m1_raw=m1_raw,
            x_private=x_private,
            timer=now + interval,
            timer_interval=interval,
        )
        self._latest = None
        self.state = ThingState.JOINING
        if b.channel != self._channel:
            self._channel = b.channel
            out.append(SetChannel(b.channel))
        out.append(Send(m1_raw, b.gw_id))

    def _m1_timer(self, now: float, a: _Attempt, out: list[Output]) -> None:
        if a.tries >= self.timers.m1_retries:
            self.counters["m1_timeout"] += 1
            out.append(Progress("no answer from the gateway; trying others"))
            self._restart_scan(now, out, blacklist=True)
            return
        a.tries += 1
        a.timer_interval *= 2
        a.timer = now + a.timer_interval
        latest = self._latest
        if latest is not None and latest[0].epoch != a.beacon.epoch:
            # The gateway moved to a new epoch: a fresh request from the newest beacon.
            tries, interval, timer = a.tries, a.timer_interval, a.timer
            self._new_attempt(now, latest[0], latest[1], out)
            na = self._attempt
            assert na is not None
            na.tries, na.timer_interval, na.timer = tries, interval, timer
            return
        out.append(Send(a.m1_raw, a.beacon.gw_id))

    # --- join -----------------------------------------------------------------------------

    def _on_response(
        self, now: float, a: _Attempt, m2: JoinResponse, raw: bytes, out: list[Output]
    ) -> None:
        if not ct_equal(m2.nt4, a.m1.n_t[:4]):
            self.counters["m2_other_attempt"] += 1
            return
        if self.state in (ThingState.DELIVERING, ThingState.CONFIRMING):
            if raw == a.m2_raw:
                # The gateway resent M2: it has not heard our ack or M3 yet.
                if self.state == ThingState.DELIVERING:
                    self._send_ack(now, a, out)
                else:
                    self._resend_m3(now, a, out)
            return
        if not m2.authenticated:
            self.counters["m2_hint"] += 1
            self.last_status = m2.status
            if m2.status in (Status.PENDING_USER_CONFIRM, Status.CLOUD_UNREACHABLE):
                out.append(Progress(f"gateway says {m2.status.name}"))
                a.timer_interval = self._jitter.uniform(*self.timers.pending_retry_s)
                a.timer = now + a.timer_interval
            elif m2.status == Status.RATE_LIMITED:
                a.timer_interval = self._jitter.uniform(*self.timers.busy_retry_s)
                a.timer = now + a.timer_interval
            return
        try:
            opened = open_response(
                m0=a.m0,
                m1_raw=a.m1_raw,
                m1=a.m1,
                psk_t=a.psk_t,
                r_g=a.beacon.r_g,
                m2=m2,
                x_t_private=a.x_private,
            )
        except CryptoError:
            self._m2_failed(now, a, out)
            return
        if opened.status == Status.CLOUD_DENIED:
            self.counters["denied"] += 1
            self.last_status = Status.CLOUD_DENIED
            self._denied_sessions.add((a.beacon.gw_id, a.beacon.sid))
            self._denials[a.beacon.gw_id] += 1
            out.append(Progress("gateway denied the join"))
            self._restart_scan(
                now, out, blacklist=self._denials[a.beacon.gw_id] >= self.timers.denied_limit
            )
            return
        body = opened.body
        assert body is not None
        if not verify_beacon_tag(a.m0, body.k_bcn):
            self._m2_failed(now, a, out)
            return
        a.keys, a.th1, a.body, a.m2_raw = opened.keys, opened.th1, body, raw
        a.chunks = {0: body.first_chunk}
        a.failsafe_at = now + self.timers.failsafe_s
        a.tries = 0
        self.state = ThingState.DELIVERING
        out.append(Progress("gateway authenticated; receiving credentials"))
        early, a.early = a.early, []
        for chunk in early:
            self._store_chunk(a, chunk)
        self._after_chunk(now, a, out)

    def _m2_failed(self, now: float, a: _Attempt, out: list[Output]) -> None:
        self.counters["m2_bad"] += 1
        self._m2_failures[a.beacon.gw_id] += 1
        if self._m2_failures[a.beacon.gw_id] >= self.timers.m2_fail_limit:
            out.append(Progress("responses from this gateway keep failing; trying others"))
            self._restart_scan(now, out, blacklist=True)

    def _store_chunk(self, a: _Attempt, chunk: DeliveryChunk) -> None:
        body = a.body
        if body is None or a.keys is None or chunk.index >= body.n_chunks:
            return
        if chunk.index in a.chunks:
            return
        try:
            a.chunks[chunk.index] = open_chunk(a.keys, a.th1, chunk)
        except CryptoError:
            self.counters["chunk_bad"] += 1

    def _on_chunk(self, now: float, a: _Attempt, chunk: DeliveryChunk, out: list[Output]) -> None:
        if self.state == ThingState.JOINING:
            if len(a.early) < 15:
                a.early.append(chunk)
            return
        if self.state == ThingState.CONFIRMING:
            self._resend_m3(now, a, out)
            return
        if self.state != ThingState.DELIVERING:
            return
        self._store_chunk(a, chunk)
        self._after_chunk(now, a, out)

    def _after_chunk(self, now: float, a: _Attempt, out: list[Output]) -> None:
        body = a.body
        assert body is not None and a.keys is not None
        if len(a.chunks) < body.n_chunks:
            a.timer = now + self.timers.gap_s
            return
        payload = b"".join(a.chunks[i] for i in range(body.n_chunks))
        try:
            if len(payload) != body.total_len:
                raise ParseError("reassembled length differs")
            delivery = Delivery.from_bytes(payload)
        except ParseError:
            self.counters["delivery_rejected"] += 1
            self.last_status = Status.DELIVERY_REJECTED
            ab = build_abort(a.keys, a.th1, self.dev_id, Status.DELIVERY_REJECTED, DIR_T2G)
            out.append(Send(ab, a.beacon.gw_id))
            out.append(Progress("credentials unusable; rejected"))
            self._restart_scan(now, out, blacklist=True)
            return
        b = a.beacon
        k_bind = derive_k_bind(self.identity.k_dev, b.sid, self.dev_id)
        bp = bind_proof(k_bind, b.sid, b.gw_id, self.dev_id, a.m1.n_t, b.r_g, b.epoch)
        th2 = transcript_th2(a.th1, a.m2_raw, delivery_digest(payload))
        a.m3 = build_confirm(a.keys, th2, self.dev_id, bp, self.caps)
        a.th3 = transcript_th3(th2, a.m3)
        a.delivery = delivery  # staged, not committed
        a.tries = 0
        a.timer_interval = self._jitter.uniform(*self.timers.m3_timeout_s)
        a.timer = now + a.timer_interval
        a.last_m3_resend = now
        self.state = ThingState.CONFIRMING
        out.append(Progress("credentials complete; confirming"))
        out.append(Send(a.m3, b.gw_id))

    def _send_ack(self, now: float, a: _Attempt, out: list[Output]) -> None:
        body = a.body
        if body is None or a.keys is None:
            return
        if a.ack_seq >= self.timers.max_acks or now - a.last_ack < self.timers.gap_s / 2:
            a.timer = now + self.timers.gap_s if a.ack_seq < self.timers.max_acks else None
            return
        a.ack_seq += 1
        a.last_ack = now
        bitmap = 0
        for i in a.chunks:
            bitmap |= 1 << i
        out.append(Send(build_ack(a.keys, a.th1, self.dev_id, a.ack_seq, bitmap), a.beacon.gw_id))
        a.timer = now + self.timers.gap_s * 2
        self.counters["acks_sent"] += 1

    def _resend_m3(self, now: float, a: _Attempt, out: list[Output]) -> None:
        if now - a.last_m3_resend < self.timers.gap_s:
            return
        a.last_m3_resend = now
        out.append(Send(a.m3, a.beacon.gw_id))

    def _on_done(self, now: float, a: _Attempt, m4: JoinDone, out: list[Output]) -> None:
        if self.state != ThingState.CONFIRMING or a.keys is None or a.delivery is None:
            return
        try:
            open_done(a.keys, a.th3, m4)
        except CryptoError:
            self.counters["m4_bad"] += 1
            return
        self.state = ThingState.COMMITTED
        self.last_status = Status.OK
        out.append(Progress("joined; credentials committed"))
        out.append(Committed(a.beacon.gw_id, a.beacon.sid, a.delivery, a.keys.k_link))
        self._attempt = None

    def _on_abort(self, now: float, a: _Attempt, ab: Abort, out: list[Output]) -> None:
        if a.keys is None or ab.tag is None:
            self.counters["abort_hint"] += 1
            return
        try:
            open_abort(a.keys, a.th1, ab, DIR_G2T)
        except CryptoError:
            self.counters["abort_bad"] += 1
            return
        self.last_status = ab.code
        out.append(Progress(f"gateway aborted: {ab.code.name}"))
        self._restart_scan(now, out, blacklist=ab.code != Status.SESSION_CLOSED)
