"""The gateway's CBSB-1 join state machine (docs/cbsb.md §6): :class:`GatewaySession`, one
bootstrapping window on the Group Owner serving many things at once. Sans-IO: every entry point
takes ``now`` and returns outputs (:mod:`gateway.wire.cbsb_session`) for the asyncio shell
(:mod:`gateway.group_owner.bootstrap`)."""

from __future__ import annotations

import os
import random
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gateway.crypto.cbsb_keys import (
    DIR_G2T,
    DIR_T2G,
    ct_equal,
    steering_build,
    transcript_th3,
    x25519_keypair,
)
from gateway.errors import CryptoError, ParseError
from gateway.ratelimit import TokenBucket
from gateway.wire.cbsb import (
    MAX_UNICAST_PAYLOAD,
    SUPPORTED_VERSIONS,
    Abort,
    BeaconFlags,
    BeaconRequest,
    CbsbInvalidArgument,
    CbsbUnsupportedVersion,
    Delivery,
    DeliveryAck,
    JoinConfirm,
    JoinRequest,
    MsgType,
    Status,
    delivery_chunk_capacity,
    m2_first_chunk_capacity,
    parse_frame,
    peek_type,
    split_delivery,
)
from gateway.wire.cbsb_session import (
    EnrolleeFound,
    JoinCompleted,
    Output,
    Report,
    ResponseFlight,
    Rng,
    Send,
    SessionEnded,
    build_abort,
    build_beacon,
    build_denied,
    build_done,
    build_hint,
    build_response_ok,
    open_abort,
    open_ack,
    open_confirm,
    verify_join_request,
)

_GATEWAY_IGNORES = frozenset(
    {MsgType.BEACON, MsgType.JOIN_RESPONSE, MsgType.JOIN_DONE, MsgType.DELIVERY}
)
_PENDING_HINTS = frozenset(
    {Status.PENDING_USER_CONFIRM, Status.CLOUD_UNREACHABLE, Status.RATE_LIMITED}
)

__all__ = [
    "GatewayConfig",
    "GatewayLimits",
    "GatewaySession",
    "JoinGrant",
    "SessionState",
]


# =============================================================================================
# Gateway
# =============================================================================================


@dataclass(frozen=True)
class GatewayLimits:
    """Timers and limits of the gateway side (docs/cbsb.md §6.3). Every table is bounded."""

    epoch_s: float = 30.0
    epoch_grace_s: float = 10.0
    beacon_period_s: float = 1.0
    beacon_jitter: float = 0.1
    solicited_min_spacing_s: float = 0.02
    solicited_rate: float = 20.0
    solicited_burst: int = 8
    source_request_interval_s: float = 0.02
    m1_global_rate: float = 16.0
    m1_global_burst: int = 32
    m1_source_rate: float = 4.0
    m1_source_burst: int = 4
    m1_device_interval_s: float = 1.0
    hint_interval_s: float = 0.5
    max_sources: int = 128
    max_allowed: int = 64
    max_joins: int = 32
    max_pending: int = 24
    bad_proof_report_interval_s: float = 10.0
    bad_proof_reports_per_min: int = 30
    max_joins_per_device: int = 3
    delivery_timeout_s: float = 0.4
    delivery_max_retx: int = 4
    confirm_wait_s: float = 10.0
    resend_min_interval_s: float = 0.1
    resend_max: int = 8
    linger_s: float = 30.0
    enrollee_found_per_min: int = 30
    max_payload: int = MAX_UNICAST_PAYLOAD


@dataclass(frozen=True)
class GatewayConfig:
    gw_id: bytes
    channel: int
    pan_id: int
    delivery: bytes = field(repr=False)
    limits: GatewayLimits = GatewayLimits()

    def __post_init__(self) -> None:
        if len(self.gw_id) != 8:
            raise CbsbInvalidArgument("gw_id must be the 8-byte EUI-64")
        Delivery.from_bytes(self.delivery)  # raises ParseError on a bad delivery payload
        # It must fit the chunk budget at this frame size, with the PFS profile's smaller M2.
        split_delivery(
            self.delivery,
            m2_first_chunk_capacity(self.limits.max_payload, pfs=True),
            delivery_chunk_capacity(self.limits.max_payload),
        )


@dataclass(frozen=True)
class JoinGrant:
    """The cloud's ``JoinGrant`` (§10.3): session scope, and PSK_T per allowed device."""

    sid: bytes
    exp: int
    mode: BeaconFlags
    window_s: float
    psks: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"JoinGrant(sid={self.sid.hex()}, exp={self.exp}, mode={self.mode!r}, "
            f"window_s={self.window_s}, devices={len(self.psks)})"
        )


class SessionState(Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _JoinState(Enum):
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _GwJoin:
    dev_id: bytes
    src: bytes | None
    epoch: int
    n_t: bytes
    r_g: bytes
    m0: bytes
    m1: bytes
    flight: ResponseFlight = field(repr=False)
    n_chunks: int
    confirm_deadline: float
    retx_at: float | None
    retx_interval: float
    state: _JoinState = _JoinState.DELIVERING
    retx_count: int = 0
    chunk_retx: int = 0
    held: int = 1
    last_ack_seq: int = 0
    resends: int = 0
    last_resend: float = float("-inf")
    m3: bytes | None = None
    m4: bytes | None = None
    linger_until: float = float("inf")


@dataclass
class _Pending:
    m1: bytes
    epoch: int
    src: bytes | None
    last_hint: float = float("-inf")


@dataclass
class _Source:
    bucket: TokenBucket
    last_request: float = float("-inf")
    last_hint: float = float("-inf")


class GatewaySession:
    """One bootstrapping window on the gateway (the Group Owner), serving many things at once."""

    def __init__(
        self,
        config: GatewayConfig,
        grant: JoinGrant,
        now: float,
        *,
        rng: Rng = os.urandom,
        jitter: random.Random | None = None,
    ) -> None:
        lim = config.limits
        if len(grant.sid) != 16:
            raise CbsbInvalidArgument("sid must be 16 bytes")
        if not 0 < grant.window_s <= lim.epoch_s * 0xFFFF:
            raise CbsbInvalidArgument("window out of range")
        if len(grant.psks) > lim.max_allowed:
            raise CbsbInvalidArgument("allow-list larger than the configured bound")
        targeted = bool(grant.mode & BeaconFlags.TARGETED)
        if targeted and not grant.psks:
            raise CbsbInvalidArgument("a targeted session needs at least one device")
        self.config = config
        self.limits = lim
        self.sid = grant.sid
        self.exp = grant.exp
        self.mode = grant.mode
        self.targeted = targeted
        self.state = SessionState.OPEN
        self.counters: Counter[str] = Counter()
        self._rng = rng
        self._jitter = jitter or random.Random(int.from_bytes(os.urandom(8), "big"))
        self._t0 = now
        self._window_end = now + grant.window_s
        self._k_bcn = rng(16)
        self._psks: dict[bytes, bytes] = dict(grant.psks)
        self._allowed: frozenset[bytes] = frozenset(grant.psks)
        self._steering = b""
        if targeted:
            length = 8 if len(self._allowed) <= 8 else 16
            self._steering = steering_build(sorted(self._allowed), length)
        self._r_g: dict[int, bytes] = {}
        self._m0: dict[int, bytes] = {}
        self._m0_sent: set[int] = set()
        self._next_beacon = now
        self._last_beacon = float("-inf")
        self._solicited_due: float | None = None
        self._beacon_bucket = TokenBucket(lim.solicited_rate, lim.solicited_burst, now)
        self._m1_bucket = TokenBucket(lim.m1_global_rate, lim.m1_global_burst, now)
        self._found_bucket = TokenBucket(lim.enrollee_found_per_min / 60.0, 5, now)
        self._bad_report_bucket = TokenBucket(lim.bad_proof_reports_per_min / 60.0, 5, now)
        self._sources: OrderedDict[bytes, _Source] = OrderedDict()
        self._joins: dict[bytes, _GwJoin] = {}
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._found_reported: set[tuple[bytes, int]] = set()
        self._denied: set[bytes] = set()
        self._dev_fail: Counter[bytes] = Counter()  # only allowed devices: bounded by the grant
        self._dev_fail_reported: dict[bytes, float] = {}
        self._session_fail = 0
        self._dev_last_attempt: dict[bytes, float] = {}
        self._dev_joins: Counter[bytes] = Counter()
        self._seen: set[bytes] = set()
        self._not_allowed_reported: set[bytes] = set()

    def __repr__(self) -> str:
        return (
            f"GatewaySession(sid={self.sid.hex()}, state={self.state.value}, "
            f"joins={len(self._joins)}, pending={len(self._pending)})"
        )

    # --- epochs and beacons ---------------------------------------------------------------

    def epoch_at(self, now: float) -> int:
        return int(max(0.0, now - self._t0) // self.limits.epoch_s)

    def _epoch_start(self, epoch: int) -> float:
        return self._t0 + epoch * self.limits.epoch_s

    def _rg_for(self, epoch: int, now: float) -> bytes | None:
        current = self.epoch_at(now)
        if epoch == current and epoch not in self._r_g:
            self._r_g[epoch] = self._rng(16)
            for old in [e for e in self._r_g if e < current - 1]:
                del self._r_g[old]
                self._m0.pop(old, None)
                self._m0_sent.discard(old)
        return self._r_g.get(epoch)

    def beacon_bytes(self, now: float) -> bytes:
        """The current epoch's beacon (M0). Constant for the epoch."""
        if self.state == SessionState.CLOSED:
            raise CbsbInvalidArgument("the session is closed")
        epoch = self.epoch_at(now)
        m0 = self._m0.get(epoch)
        if m0 is None:
            r_g = self._rg_for(epoch, now)
            assert r_g is not None
            left = int(max(0.0, self._window_end - self._epoch_start(epoch)))
            m0 = build_beacon(
                flags=self.mode,
                gw_id=self.config.gw_id,
                sid=self.sid,
                epoch=epoch,
                r_g=r_g,
                exp=self.exp,
                window_left_s=min(left, 0xFFFF),
                channel=self.config.channel,
                pan_id=self.config.pan_id,
                k_bcn=self._k_bcn,
                steering=self._steering,
            ).to_bytes()
            self._m0[epoch] = m0
        return m0

    def _send_beacon(self, now: float) -> Send:
        m0 = self.beacon_bytes(now)
        self._m0_sent.add(self.epoch_at(now))
        self._last_beacon = now
        self.counters["beacons_sent"] += 1
        return Send(m0, None)

    def _accepted_epoch(self, epoch: int, now: float) -> bool:
        current = self.epoch_at(now)
        if epoch == current:
            return epoch in self._m0_sent
        if epoch == current - 1 and now - self._epoch_start(current) <= self.limits.epoch_grace_s:
            return epoch in self._m0_sent
        return False

    # --- public entry points --------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if self.state == SessionState.CLOSED:
            return None
        times: list[float] = []
        if self.state == SessionState.OPEN:
            times += [self._next_beacon, self._window_end]
            if self._solicited_due is not None:
                times.append(self._solicited_due)
        for j in self._joins.values():
            if j.state == _JoinState.DELIVERING:
                times.append(j.confirm_deadline)
                if j.retx_at is not None:
                    times.append(j.retx_at)
            else:
                times.append(j.linger_until)
        return min(times) if times else None

    def poll(self, now: float) -> list[Output]:
        out: list[Output] = []
        if self.state == SessionState.CLOSED:
            return out
        if self.state == SessionState.OPEN and now >= self._window_end:
            self._start_closing(now, out)
        if self.state == SessionState.OPEN:
            if self._solicited_due is not None and now >= self._solicited_due:
                self._solicited_due = None
                out.append(self._send_beacon(now))
            elif now >= self._next_beacon:
                out.append(self._send_beacon(now))
            if now >= self._next_beacon:
                lim = self.limits
                spread = lim.beacon_period_s * lim.beacon_jitter
                self._next_beacon = (
                    now + lim.beacon_period_s + self._jitter.uniform(-spread, spread)
                )
        for dev_id in list(self._joins):
            self._poll_join(self._joins[dev_id], now, out)
        if self.state == SessionState.CLOSING and not any(
            j.state == _JoinState.DELIVERING for j in self._joins.values()
        ):
            self._finish(Status.WINDOW_EXPIRED, out)
        return out

    def handle_frame(self, now: float, src: bytes | None, payload: bytes) -> list[Output]:
        """A received MAC payload from MAC source ``src``.

        ``src`` is the source address as the shell will use it for ``Send.dst`` (the extended
        address in the same big-endian EUI-64 byte order as ``gw_id``), or None when the frame had
        none; answers to a None source go out as broadcasts (they are sealed anyway).
        """
        out: list[Output] = []
        if self.state == SessionState.CLOSED:
            return out
        if peek_type(payload) in _GATEWAY_IGNORES:
            self.counters["ignored"] += 1
            return out
        try:
            frame = parse_frame(payload)
        except CbsbUnsupportedVersion:
            self.counters["unsupported_version"] += 1
            return out
        except ParseError:
            self.counters["parse_error"] += 1
            return out
        if isinstance(frame, BeaconRequest):
            self._on_beacon_request(now, src, frame, out)
        elif isinstance(frame, JoinRequest):
            self._on_join_request(now, src, frame, payload, out)
        elif isinstance(frame, DeliveryAck):
            self._on_ack(now, src, frame, out)
        elif isinstance(frame, JoinConfirm):
            self._on_confirm(now, src, frame, payload, out)
        elif isinstance(frame, Abort):
            self._on_abort(now, frame, out)
        else:
            self.counters["ignored_" + type(frame).__name__] += 1
        return out

    def provide_psk(self, now: float, dev_id: bytes, psk_t: bytes) -> list[Output]:
        """Discover mode: the cloud verified the device and the user confirmed it."""
        out: list[Output] = []
        if self.state != SessionState.OPEN or len(psk_t) != 32:
            return out
        if dev_id not in self._psks and len(self._psks) >= self.limits.max_allowed:
            return out
        self._psks[dev_id] = psk_t
        pend = self._pending.pop(dev_id, None)
        if pend is not None:
            try:
                m1 = JoinRequest.from_bytes(pend.m1)
            except ParseError:  # pragma: no cover - it parsed when stashed
                return out
            if self._accepted_epoch(m1.epoch, now):
                self._answer(now, pend.src, m1, pend.m1, out, count_rate=False)
        return out

    def deny_device(self, now: float, dev_id: bytes, psk_t: bytes | None = None) -> list[Output]:
        """The cloud or the user refused the device; answer with an authenticated denial if the
        cloud handed over PSK_T for that purpose."""
        out: list[Output] = []
        self._denied.add(dev_id)
        if psk_t is not None and len(psk_t) == 32:
            self._psks[dev_id] = psk_t
        pend = self._pending.pop(dev_id, None)
        out.append(Report(Status.CLOUD_DENIED, dev_id, None))
        if pend is not None and psk_t is not None and self.state == SessionState.OPEN:
            m1 = JoinRequest.from_bytes(pend.m1)
            if self._accepted_epoch(m1.epoch, now):
                self._answer(now, pend.src, m1, pend.m1, out, count_rate=False)
        return out

    def close(self, now: float, status: Status = Status.SESSION_CLOSED) -> list[Output]:
        """The cloud closed the session (``SessionClose``) or the gateway shuts down."""
        out: list[Output] = []
        if self.state == SessionState.CLOSED:
            return out
        for j in self._joins.values():
            if j.state == _JoinState.DELIVERING:
                ab = build_abort(
                    j.flight.keys, j.flight.th1, j.dev_id, Status.SESSION_CLOSED, DIR_G2T
                )
                out.append(Send(ab, j.src))
        self._finish(status, out)
        return out

    def hint_pending(self, now: float, dev_id: bytes, status: Status) -> list[Output]:
        """Tell a thing waiting in the discover-mode pending table why it waits (for example
        ``CLOUD_UNREACHABLE`` when the shell cannot reach the cloud): an unauthenticated hint,
        at most one per ``hint_interval_s`` for that thing."""
        out: list[Output] = []
        pend = self._pending.get(dev_id)
        if pend is None or self.state != SessionState.OPEN or status not in _PENDING_HINTS:
            return out
        if now - pend.last_hint < self.limits.hint_interval_s:
            return out
        try:
            m1 = JoinRequest.from_bytes(pend.m1)
        except ParseError:  # pragma: no cover - it parsed when stashed
            return out
        pend.last_hint = now
        out.append(Send(build_hint(status, dev_id, m1.n_t), pend.src))
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """What the session is doing, for status pages: no key, PSK or nonce, only identifiers,
        states and counters."""
        joins = [
            {
                "dev_id": j.dev_id.hex(),
                "state": j.state.value,
                "epoch": j.epoch,
                "chunks": j.n_chunks,
                "retransmissions": j.retx_count + j.chunk_retx,
            }
            for j in self._joins.values()
        ]
        return {
            "sid": self.sid.hex(),
            "state": self.state.value,
            "mode": [f.name for f in BeaconFlags if f and f in self.mode],
            "epoch": self.epoch_at(now),
            "window_left_s": round(max(0.0, self._window_end - now), 1),
            "allowed": sorted(d.hex() for d in self._allowed),
            "joins": joins,
            "pending": [d.hex() for d in self._pending],
            "bad_proofs": {d.hex(): n for d, n in sorted(self._dev_fail.items())},
            "denied": sorted(d.hex() for d in self._denied),
            "failed_proofs": self._session_fail,
            "counters": dict(self.counters),
        }

    # --- internals ------------------------------------------------------------------------

    def _start_closing(self, now: float, out: list[Output]) -> None:
        self.state = SessionState.CLOSING
        self._solicited_due = None
        out.append(Report(Status.WINDOW_EXPIRED, None, self.epoch_at(now)))
        if not self._seen:
            out.append(Report(Status.NO_JOIN_ATTEMPT, None, None))
        if self.targeted:
            # docs/cbsb.md §7: one report per allowed device that was never heard, so the app
            # can name the thing (also when nothing at all was heard).
            for dev_id in sorted(self._allowed - self._seen):
                out.append(Report(Status.NO_JOIN_ATTEMPT, dev_id, None))

    def _finish(self, status: Status, out: list[Output]) -> None:
        self.state = SessionState.CLOSED
        # Drop every secret this session held (Python cannot zeroise, but nothing keeps a ref).
        self._psks.clear()
        self._joins.clear()
        self._pending.clear()
        self._r_g.clear()
        self._m0.clear()
        self._k_bcn = b""
        out.append(SessionEnded(status))

    def _source(self, src: bytes | None, now: float) -> _Source:
        key = src or b""
        s = self._sources.get(key)
        if s is None:
            lim = self.limits
            s = _Source(TokenBucket(lim.m1_source_rate, lim.m1_source_burst, now))
            self._sources[key] = s
            while len(self._sources) > lim.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(key)
        return s

    def _on_beacon_request(
        self, now: float, src: bytes | None, req: BeaconRequest, out: list[Output]
    ) -> None:
        self.counters["beacon_requests"] += 1
        if self.state != SessionState.OPEN or not req.versions & SUPPORTED_VERSIONS:
            return
        s = self._source(src, now)
        if now - s.last_request < self.limits.source_request_interval_s:
            self.counters["beacon_request_source_limited"] += 1
            return
        s.last_request = now
        if self._solicited_due is not None:
            self.counters["beacon_request_coalesced"] += 1
            return
        if not self._beacon_bucket.take(now):
            self.counters["beacon_request_limited"] += 1
            return
        due = max(now, self._last_beacon + self.limits.solicited_min_spacing_s)
        if due <= now:
            out.append(self._send_beacon(now))
        else:
            self._solicited_due = due

    def _hint(
        self, now: float, src: bytes | None, status: Status, m1: JoinRequest, out: list[Output]
    ) -> None:
        s = self._source(src, now)
        if now - s.last_hint < self.limits.hint_interval_s or not self._m1_bucket.take(now):
            return
        s.last_hint = now
        out.append(Send(build_hint(status, m1.dev_id, m1.n_t), src))

    def _resend(self, j: _GwJoin, now: float, frames: list[bytes], out: list[Output]) -> None:
        lim = self.limits
        if j.resends >= lim.resend_max or now - j.last_resend < lim.resend_min_interval_s:
            self.counters["resend_limited"] += 1
            return
        j.resends += 1
        j.last_resend = now
        out.extend(Send(f, j.src) for f in frames)

    def _on_join_request(
        self, now: float, src: bytes | None, m1: JoinRequest, raw: bytes, out: list[Output]
    ) -> None:
        self.counters["m1_received"] += 1
        dev_id = m1.dev_id
        j = self._joins.get(dev_id)
        if j is not None and j.m1 == raw:
            # A retransmitted M1: the thing missed our M2. Resend the cached bytes (bounded).
            if j.state == _JoinState.DELIVERING:
                self._resend(j, now, [j.flight.m2], out)
            return
        if self.state != SessionState.OPEN:
            self._hint(now, src, Status.WINDOW_EXPIRED, m1, out)
            return
        if not self._accepted_epoch(m1.epoch, now):
            self.counters["m1_stale_epoch"] += 1
            return
        if j is not None and ct_equal(j.n_t, m1.n_t):
            self.counters["m1_nonce_reuse"] += 1
            return
        if self.mode & BeaconFlags.PFS_REQUIRED and not m1.pfs:
            self.counters["m1_pfs_missing"] += 1
            return
        if self.targeted and dev_id not in self._allowed:
            self.counters["m1_not_allowed"] += 1
            if dev_id not in self._not_allowed_reported and len(self._not_allowed_reported) < 32:
                self._not_allowed_reported.add(dev_id)
                out.append(Report(Status.DEVICE_NOT_ALLOWED, dev_id, m1.epoch))
            return
        if len(self._seen) < 4 * self.limits.max_allowed:
            self._seen.add(dev_id)
        psk_t = self._psks.get(dev_id)
        if psk_t is not None:
            # A device whose PSK_T we hold proves itself before it may use any shared budget:
            # the proof costs one MAC (about 7 µs), so it is checked first, and a valid M1 never
            # waits behind a flood of forged ones in the per-source or global buckets. Valid M1s
            # are bounded by the per-device interval and joins-per-device limits below, which
            # only the key holder can use up.
            if not verify_join_request(self._m0[m1.epoch], m1, psk_t):
                self._proof_failed(now, dev_id, m1.epoch, out)
                return
            self._answer(now, src, m1, raw, out, count_rate=True)
            return
        if not self._source(src, now).bucket.take(now) or not self._m1_bucket.take(now):
            self.counters["m1_rate_limited"] += 1
            return
        self._discover(now, src, m1, raw, out)

    def _discover(
        self, now: float, src: bytes | None, m1: JoinRequest, raw: bytes, out: list[Output]
    ) -> None:
        dev_id = m1.dev_id
        if dev_id in self._denied:
            return
        pend = self._pending.get(dev_id)
        if pend is None:
            if len(self._pending) >= self.limits.max_pending:
                self.counters["pending_full"] += 1
                self._hint(now, src, Status.RATE_LIMITED, m1, out)
                return
            pend = _Pending(m1=raw, epoch=m1.epoch, src=src)
            self._pending[dev_id] = pend
        pend.m1, pend.epoch, pend.src = raw, m1.epoch, src
        key = (dev_id, m1.epoch)
        if key not in self._found_reported and self._found_bucket.take(now):
            self._found_reported.add(key)
            out.append(EnrolleeFound(dev_id, m1.epoch, self._m0[m1.epoch], raw))
        if now - pend.last_hint >= self.limits.hint_interval_s:
            pend.last_hint = now
            out.append(Send(build_hint(Status.PENDING_USER_CONFIRM, dev_id, m1.n_t), src))

    def _room_for(self, dev_id: bytes) -> bool:
        if dev_id in self._joins or len(self._joins) < self.limits.max_joins:
            return True
        finished = [
            (j.linger_until, d) for d, j in self._joins.items() if j.state != _JoinState.DELIVERING
        ]
        if not finished:
            return False
        del self._joins[min(finished)[1]]
        return True

    def _answer(
        self,
        now: float,
        src: bytes | None,
        m1: JoinRequest,
        raw: bytes,
        out: list[Output],
        *,
        count_rate: bool,
    ) -> None:
        dev_id = m1.dev_id
        lim = self.limits
        if count_rate:
            last = self._dev_last_attempt.get(dev_id, float("-inf"))
            if now - last < lim.m1_device_interval_s:
                self.counters["m1_device_limited"] += 1
                return
        if self._dev_joins[dev_id] >= lim.max_joins_per_device:
            self.counters["m1_device_join_limit"] += 1
            return
        if not self._room_for(dev_id):
            self.counters["joins_full"] += 1
            self._hint(now, src, Status.RATE_LIMITED, m1, out)
            return
        psk_t = self._psks[dev_id]
        m0 = self._m0[m1.epoch]
        r_g = self._r_g[m1.epoch]
        if not count_rate and not verify_join_request(m0, m1, psk_t):
            self._proof_failed(now, dev_id, m1.epoch, out)
            return
        self._dev_last_attempt[dev_id] = now
        x_g = x25519_keypair(self._rng(32)) if m1.pfs else None
        if dev_id in self._denied:
            try:
                m2 = build_denied(m0=m0, m1_raw=raw, m1=m1, psk_t=psk_t, r_g=r_g, x_g=x_g)
            except CryptoError:
                self.counters["m1_bad_x25519"] += 1
                return
            out.append(Send(m2, src))
            return
        try:
            flight = build_response_ok(
                m0=m0,
                m1_raw=raw,
                m1=m1,
                psk_t=psk_t,
                r_g=r_g,
                k_bcn=self._k_bcn,
                delivery=self.config.delivery,
                x_g=x_g,
                max_payload=lim.max_payload,
            )
        except CryptoError:
            self.counters["m1_bad_x25519"] += 1
            return
        self._joins[dev_id] = _GwJoin(
            dev_id=dev_id,
            src=src,
            epoch=m1.epoch,
            n_t=m1.n_t,
            r_g=r_g,
            m0=m0,
            m1=raw,
            flight=flight,
            n_chunks=1 + len(flight.chunks),
            confirm_deadline=now + lim.confirm_wait_s,
            retx_at=now + lim.delivery_timeout_s,
            retx_interval=lim.delivery_timeout_s,
        )
        self.counters["m2_sent"] += 1
        out.append(Send(flight.m2, src))
        out.extend(Send(c, src) for c in flight.chunks)

    def _proof_failed(self, now: float, dev_id: bytes, epoch: int, out: list[Output]) -> None:
        """A bad ``proof_T``: counted and reported, never a lockout (docs/cbsb.md §8, N8).

        ``dev_id`` travels in clear in M1, so anyone in radio range can send a bad proof for any
        device. ``PSK_T`` is a 256-bit key, so refusing a device after a few bad proofs would
        protect nothing against guessing and would hand that attacker a lever to lock the real
        device out (3 forged M1) or close the window for everyone (20). The gateway stays silent
        (no oracle), keeps admitting the device with a right proof, and tells the user: the first
        bad proof of each allowed device at once (the allow-list bounds them), then at most one
        report per device per ``bad_proof_report_interval_s`` and ``bad_proof_reports_per_min``
        in all."""
        self.counters["m1_bad_proof"] += 1
        self._dev_fail[dev_id] += 1
        self._session_fail += 1
        last = self._dev_fail_reported.get(dev_id)
        if last is not None and (
            now - last < self.limits.bad_proof_report_interval_s
            or not self._bad_report_bucket.take(now)
        ):
            self.counters["bad_proof_reports_suppressed"] += 1
            return
        self._dev_fail_reported[dev_id] = now
        out.append(Report(Status.AUTH_FAILED, dev_id, epoch))

    def _missing_frames(self, j: _GwJoin, include_m2: bool) -> list[bytes]:
        frames = [j.flight.m2] if include_m2 else []
        frames += [c for i, c in enumerate(j.flight.chunks, 1) if not j.held >> i & 1]
        return frames

    def _on_ack(self, now: float, src: bytes | None, ack: DeliveryAck, out: list[Output]) -> None:
        j = self._joins.get(ack.dev_id)
        if j is None or j.state != _JoinState.DELIVERING or ack.seq <= j.last_ack_seq:
            self.counters["ack_ignored"] += 1
            return
        try:
            body = open_ack(j.flight.keys, j.flight.th1, ack)
        except CryptoError:
            self.counters["ack_bad"] += 1
            return
        j.last_ack_seq = ack.seq
        j.held |= body.bitmap & ((1 << j.n_chunks) - 1)
        j.src = src if src is not None else j.src
        missing = self._missing_frames(j, include_m2=False)
        budget = 4 * j.n_chunks - j.chunk_retx
        if missing and budget > 0:
            missing = missing[:budget]
            j.chunk_retx += len(missing)
            out.extend(Send(f, j.src) for f in missing)
        j.retx_at = now + j.retx_interval

    def _on_confirm(
        self, now: float, src: bytes | None, m3: JoinConfirm, raw: bytes, out: list[Output]
    ) -> None:
        j = self._joins.get(m3.dev_id)
        if j is None:
            self.counters["m3_unknown"] += 1
            return
        if j.state == _JoinState.DONE:
            if j.m3 == raw and j.m4 is not None:
                self._resend(j, now, [j.m4], out)
            return
        if j.state != _JoinState.DELIVERING:
            return
        try:
            body = open_confirm(j.flight.keys, j.flight.th2, m3)
        except CryptoError:
            self.counters["m3_bad"] += 1
            return
        th3 = transcript_th3(j.flight.th2, raw)
        j.m3 = raw
        j.m4 = build_done(j.flight.keys, th3, j.dev_id)
        j.state = _JoinState.DONE
        j.retx_at = None
        j.resends = 0
        j.linger_until = now + self.limits.linger_s
        j.src = src if src is not None else j.src
        self._dev_joins[j.dev_id] += 1
        self.counters["joins_completed"] += 1
        out.append(Send(j.m4, j.src))
        out.append(JoinCompleted(j.dev_id, j.epoch, j.n_t, body.bind_proof, body.caps, j.m0))

    def _on_abort(self, now: float, ab: Abort, out: list[Output]) -> None:
        j = self._joins.get(ab.dev_id)
        if j is None or j.state != _JoinState.DELIVERING or ab.tag is None:
            self.counters["abort_ignored"] += 1
            return
        try:
            open_abort(j.flight.keys, j.flight.th1, ab, DIR_T2G)
        except CryptoError:
            self.counters["abort_bad"] += 1
            return
        j.state = _JoinState.FAILED
        j.retx_at = None
        j.linger_until = now + self.limits.linger_s
        out.append(Report(ab.code, j.dev_id, j.epoch))

    def _poll_join(self, j: _GwJoin, now: float, out: list[Output]) -> None:
        if j.state != _JoinState.DELIVERING:
            if now >= j.linger_until:
                del self._joins[j.dev_id]
            return
        if now >= j.confirm_deadline:
            j.state = _JoinState.FAILED
            j.retx_at = None
            j.linger_until = now + self.limits.linger_s
            ab = build_abort(
                j.flight.keys, j.flight.th1, j.dev_id, Status.THING_NO_CONFIRM, DIR_G2T
            )
            out.append(Send(ab, j.src))
            out.append(Report(Status.THING_NO_CONFIRM, j.dev_id, j.epoch))
            return
        if j.retx_at is not None and now >= j.retx_at:
            if j.retx_count >= self.limits.delivery_max_retx:
                j.retx_at = None
                return
            j.retx_count += 1
            j.retx_interval *= 2
            j.retx_at = now + j.retx_interval
            # Nothing heard: resend M2 (the thing may have lost it) and every chunk not acked.
            out.extend(Send(f, j.src) for f in self._missing_frames(j, include_m2=True))
