"""CBSB-1 message protection and the pure join state machines (docs/cbsb.md §5-§7).

Two layers, both sans-IO:

* message functions (``build_*`` / ``open_*`` / ``verify_*``) that apply the key schedule of
  :mod:`gateway.crypto.cbsb_keys` to the frames of :mod:`gateway.wire.cbsb`;
* :class:`GatewaySession` (one bootstrapping window on the gateway, many things at once) and
  :class:`ThingJoin` (one thing looking for a gateway and joining it).

The state machines never read a clock or touch a socket: every entry point takes ``now`` (seconds
on any monotonic clock) and returns a list of outputs (:class:`Send`, :class:`SetChannel` and
events) for the asyncio shell to carry out. Randomness comes from an injected ``rng(n) -> bytes``
(``os.urandom`` by default) so tests can be deterministic; timer jitter from an injected
:class:`random.Random`.
"""

from __future__ import annotations

import os
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeAlias

from gateway.crypto.cbsb_keys import (
    CTR_ABORT_G2T,
    CTR_ABORT_T2G,
    CTR_DONE,
    CTR_JOIN_CONFIRM,
    CTR_JOIN_RESPONSE,
    DIR_G2T,
    DIR_T2G,
    JoinKeys,
    X25519KeyPair,
    beacon_tag,
    bind_proof,
    ct_equal,
    delivery_digest,
    derive_join_keys,
    derive_k_bind,
    derive_psk_t,
    join_proof,
    open_sealed,
    seal,
    steering_build,
    steering_contains,
    transcript_th1,
    transcript_th2,
    transcript_th3,
    x25519_keypair,
    x25519_shared,
)
from gateway.errors import CryptoError, ParseError
from gateway.ratelimit import TokenBucket
from gateway.wire.cbsb import (
    MAX_UNICAST_PAYLOAD,
    SUPPORTED_VERSIONS,
    Abort,
    AckBody,
    Beacon,
    BeaconFlags,
    BeaconRequest,
    CbsbInvalidArgument,
    CbsbUnsupportedVersion,
    ConfirmBody,
    Delivery,
    DeliveryAck,
    DeliveryChunk,
    JoinConfirm,
    JoinDone,
    JoinRequest,
    JoinResponse,
    MsgType,
    ResponseBody,
    Status,
    delivery_chunk_capacity,
    join_header,
    m2_first_chunk_capacity,
    parse_frame,
    peek_type,
    split_delivery,
)

_THING_IGNORES = frozenset(
    {MsgType.BEACON_REQUEST, MsgType.JOIN_REQUEST, MsgType.JOIN_CONFIRM, MsgType.DELIVERY_ACK}
)
_GATEWAY_IGNORES = frozenset(
    {MsgType.BEACON, MsgType.JOIN_RESPONSE, MsgType.JOIN_DONE, MsgType.DELIVERY}
)
_PENDING_HINTS = frozenset(
    {Status.PENDING_USER_CONFIRM, Status.CLOUD_UNREACHABLE, Status.RATE_LIMITED}
)

__all__ = [
    "Committed",
    "EnrolleeFound",
    "GatewayConfig",
    "GatewayLimits",
    "GatewaySession",
    "JoinCompleted",
    "JoinGrant",
    "OpenedResponse",
    "Output",
    "Progress",
    "Report",
    "ResponseFlight",
    "Send",
    "SessionEnded",
    "SessionState",
    "SetChannel",
    "ThingFailed",
    "ThingIdentity",
    "ThingJoin",
    "ThingState",
    "ThingTimers",
    "build_abort",
    "build_ack",
    "build_beacon",
    "build_confirm",
    "build_denied",
    "build_done",
    "build_hint",
    "build_join_request",
    "build_response_ok",
    "open_abort",
    "open_ack",
    "open_chunk",
    "open_confirm",
    "open_done",
    "open_response",
    "verify_beacon_tag",
    "verify_join_request",
]

Rng: TypeAlias = Callable[[int], bytes]


# =============================================================================================
# Message functions
# =============================================================================================


def build_beacon(
    *,
    flags: BeaconFlags,
    gw_id: bytes,
    sid: bytes,
    epoch: int,
    r_g: bytes,
    exp: int,
    window_left_s: int,
    channel: int,
    pan_id: int,
    k_bcn: bytes,
    steering: bytes = b"",
) -> Beacon:
    """The beacon (M0) with its ``btag`` computed under ``K_bcn``."""
    unsigned = Beacon(
        flags=flags,
        gw_id=gw_id,
        sid=sid,
        epoch=epoch,
        r_g=r_g,
        exp=exp,
        window_left_s=window_left_s,
        channel=channel,
        pan_id=pan_id,
        steering=steering,
    )
    tag = beacon_tag(k_bcn, unsigned.body())
    return Beacon(**{**unsigned.__dict__, "btag": tag})


def verify_beacon_tag(m0: bytes, k_bcn: bytes) -> bool:
    """Check the last 8 bytes of a beacon against ``K_bcn`` (constant time)."""
    if len(m0) < Beacon.BASE_LEN:
        return False
    return ct_equal(beacon_tag(k_bcn, m0[:-8]), m0[-8:])


def build_join_request(
    m0: bytes, epoch: int, dev_id: bytes, psk_t: bytes, n_t: bytes, x_t: bytes | None = None
) -> JoinRequest:
    """M1 with ``proof_T = Func(PSK_T, M0)`` over the exact beacon bytes the thing heard."""
    unsigned = JoinRequest(dev_id=dev_id, epoch=epoch, n_t=n_t, proof=bytes(16), x_t=x_t)
    proof = join_proof(psk_t, m0, unsigned.body())
    return JoinRequest(dev_id=dev_id, epoch=epoch, n_t=n_t, proof=proof, x_t=x_t)


def verify_join_request(m0: bytes, m1: JoinRequest, psk_t: bytes) -> bool:
    """Recompute proof_T and compare in constant time."""
    return ct_equal(join_proof(psk_t, m0, m1.body()), m1.proof)


@dataclass(frozen=True)
class ResponseFlight:
    """What the gateway sends after a valid M1, and the state it keeps for the rest of the join."""

    m2: bytes
    chunks: tuple[bytes, ...]
    keys: JoinKeys = field(repr=False)
    th1: bytes
    th2: bytes


def _dh_gateway(m1: JoinRequest, x_g: X25519KeyPair | None) -> tuple[bytes | None, bytes | None]:
    if m1.x_t is None:
        return None, None
    if x_g is None:
        raise CryptoError("the thing asked for the PFS profile but no gateway key pair was given")
    return x25519_shared(x_g.private, m1.x_t), x_g.public


def build_response_ok(
    *,
    m0: bytes,
    m1_raw: bytes,
    m1: JoinRequest,
    psk_t: bytes,
    r_g: bytes,
    k_bcn: bytes,
    delivery: bytes,
    x_g: X25519KeyPair | None = None,
    max_payload: int = MAX_UNICAST_PAYLOAD,
) -> ResponseFlight:
    """M2 (status OK, chunk 0 inside) and the Delivery frames for chunks 1..n-1."""
    th1 = transcript_th1(m0, m1_raw)
    dh, x_pub = _dh_gateway(m1, x_g)
    keys = derive_join_keys(psk_t, r_g, m1.n_t, th1, dh)
    pieces = split_delivery(
        delivery,
        m2_first_chunk_capacity(max_payload, pfs=x_pub is not None),
        delivery_chunk_capacity(max_payload),
    )
    body = ResponseBody(
        k_bcn=k_bcn, total_len=len(delivery), n_chunks=len(pieces), first_chunk=pieces[0]
    )
    header = JoinResponse.build_header(Status.OK, m1.dev_id, m1.n_t[:4], x_pub)
    m2 = header + seal(keys.k_g2t, DIR_G2T, CTR_JOIN_RESPONSE, body.to_bytes(), header + th1)
    chunks = []
    for i, piece in enumerate(pieces[1:], start=1):
        h = join_header(MsgType.DELIVERY, i, m1.dev_id)
        chunks.append(h + seal(keys.k_g2t, DIR_G2T, i, piece, h + th1))
    th2 = transcript_th2(th1, m2, delivery_digest(delivery))
    return ResponseFlight(m2=m2, chunks=tuple(chunks), keys=keys, th1=th1, th2=th2)


def build_denied(
    *,
    m0: bytes,
    m1_raw: bytes,
    m1: JoinRequest,
    psk_t: bytes,
    r_g: bytes,
    x_g: X25519KeyPair | None = None,
) -> bytes:
    """An authenticated denial (M2 CLOUD_DENIED, empty sealed plaintext)."""
    th1 = transcript_th1(m0, m1_raw)
    dh, x_pub = _dh_gateway(m1, x_g)
    keys = derive_join_keys(psk_t, r_g, m1.n_t, th1, dh)
    header = JoinResponse.build_header(Status.CLOUD_DENIED, m1.dev_id, m1.n_t[:4], x_pub)
    return header + seal(keys.k_g2t, DIR_G2T, CTR_JOIN_RESPONSE, b"", header + th1)


def build_hint(status: Status, dev_id: bytes, n_t: bytes) -> bytes:
    """An unauthenticated M2 hint (PENDING_USER_CONFIRM, WINDOW_EXPIRED, ...)."""
    return JoinResponse(status=status, dev_id=dev_id, nt4=n_t[:4]).to_bytes()


@dataclass(frozen=True)
class OpenedResponse:
    """The thing's view of an authenticated M2."""

    status: Status
    keys: JoinKeys = field(repr=False)
    th1: bytes
    body: ResponseBody | None


def open_response(
    *,
    m0: bytes,
    m1_raw: bytes,
    m1: JoinRequest,
    psk_t: bytes,
    r_g: bytes,
    m2: JoinResponse,
    x_t_private: bytes | None = None,
) -> OpenedResponse:
    """Verify an authenticated M2 against the thing's own M0/M1 (the gateway's key confirmation).

    Raises :class:`CryptoError` for anything but a genuine response to exactly this M1.
    """
    if not m2.authenticated:
        raise CryptoError("an unauthenticated hint cannot be opened")
    if m2.dev_id != m1.dev_id or not ct_equal(m2.nt4, m1.n_t[:4]):
        raise CryptoError("response is for another request")
    if (m1.x_t is None) != (m2.x_g is None):
        raise CryptoError("PFS profile mismatch")
    dh = None
    if m1.x_t is not None and m2.x_g is not None:
        if x_t_private is None:
            raise CryptoError("missing the thing's X25519 private key")
        dh = x25519_shared(x_t_private, m2.x_g)
    th1 = transcript_th1(m0, m1_raw)
    keys = derive_join_keys(psk_t, r_g, m1.n_t, th1, dh)
    pt = open_sealed(keys.k_g2t, DIR_G2T, CTR_JOIN_RESPONSE, m2.sealed, m2.header() + th1)
    if m2.status == Status.CLOUD_DENIED:
        if pt:
            raise CryptoError("malformed denial")
        return OpenedResponse(status=m2.status, keys=keys, th1=th1, body=None)
    try:
        body = ResponseBody.from_bytes(pt)
    except ParseError:
        raise CryptoError("malformed response body") from None
    return OpenedResponse(status=m2.status, keys=keys, th1=th1, body=body)


def open_chunk(keys: JoinKeys, th1: bytes, chunk: DeliveryChunk) -> bytes:
    return open_sealed(keys.k_g2t, DIR_G2T, chunk.index, chunk.sealed, chunk.header() + th1)


def build_ack(keys: JoinKeys, th1: bytes, dev_id: bytes, seq: int, bitmap: int) -> bytes:
    h = join_header(MsgType.DELIVERY_ACK, seq, dev_id)
    return DeliveryAck(
        dev_id=dev_id,
        seq=seq,
        sealed=seal(keys.k_t2g, DIR_T2G, seq, AckBody(bitmap).to_bytes(), h + th1),
    ).to_bytes()


def open_ack(keys: JoinKeys, th1: bytes, ack: DeliveryAck) -> AckBody:
    pt = open_sealed(keys.k_t2g, DIR_T2G, ack.seq, ack.sealed, ack.header() + th1)
    try:
        return AckBody.from_bytes(pt)
    except ParseError:
        raise CryptoError("malformed ack body") from None


def build_confirm(keys: JoinKeys, th2: bytes, dev_id: bytes, bp: bytes, caps: int = 0) -> bytes:
    h = join_header(MsgType.JOIN_CONFIRM, 0, dev_id)
    body = ConfirmBody(bind_proof=bp, caps=caps).to_bytes()
    return h + seal(keys.k_t2g, DIR_T2G, CTR_JOIN_CONFIRM, body, h + th2)


def open_confirm(keys: JoinKeys, th2: bytes, m3: JoinConfirm) -> ConfirmBody:
    pt = open_sealed(keys.k_t2g, DIR_T2G, CTR_JOIN_CONFIRM, m3.sealed, m3.header() + th2)
    try:
        return ConfirmBody.from_bytes(pt)
    except ParseError:
        raise CryptoError("malformed confirm body") from None


def build_done(keys: JoinKeys, th3: bytes, dev_id: bytes) -> bytes:
    h = join_header(MsgType.JOIN_DONE, 0, dev_id)
    return h + seal(keys.k_g2t, DIR_G2T, CTR_DONE, b"", h + th3)


def open_done(keys: JoinKeys, th3: bytes, m4: JoinDone) -> None:
    if open_sealed(keys.k_g2t, DIR_G2T, CTR_DONE, m4.tag, m4.header() + th3):
        raise CryptoError("malformed done")


def build_abort(
    keys: JoinKeys | None, th1: bytes, dev_id: bytes, code: Status, sender: int
) -> bytes:
    """An Abort; authenticated (tag) when ``keys`` is given. ``sender`` is DIR_G2T or DIR_T2G."""
    unsigned = Abort(dev_id=dev_id, code=code)
    if keys is None:
        return unsigned.to_bytes()
    h = unsigned.header()
    if sender == DIR_G2T:
        tag = seal(keys.k_g2t, DIR_G2T, CTR_ABORT_G2T, b"", h + th1)
    else:
        tag = seal(keys.k_t2g, DIR_T2G, CTR_ABORT_T2G, b"", h + th1)
    return h + tag


def open_abort(keys: JoinKeys, th1: bytes, abort: Abort, sender: int) -> None:
    if abort.tag is None:
        raise CryptoError("unauthenticated abort")
    if sender == DIR_G2T:
        pt = open_sealed(keys.k_g2t, DIR_G2T, CTR_ABORT_G2T, abort.tag, abort.header() + th1)
    else:
        pt = open_sealed(keys.k_t2g, DIR_T2G, CTR_ABORT_T2G, abort.tag, abort.header() + th1)
    if pt:
        raise CryptoError("malformed abort")


# =============================================================================================
# Outputs of the state machines
# =============================================================================================


@dataclass(frozen=True)
class Send:
    """Transmit ``payload`` as the MAC payload of a data frame; ``dst`` None means broadcast."""

    payload: bytes
    dst: bytes | None = None


@dataclass(frozen=True)
class SetChannel:
    channel: int


@dataclass(frozen=True)
class EnrolleeFound:
    """Discover mode: ask the cloud to verify and the user to confirm this device (§10.6)."""

    dev_id: bytes
    epoch: int
    m0: bytes
    m1: bytes


@dataclass(frozen=True)
class JoinCompleted:
    """M3 verified: report ``JoinComplete`` to the cloud (it verifies ``bind_proof``).

    ``m0`` is the beacon of the join's epoch: BP covers ``R_G`` and the epoch, which the cloud
    never saw, so it takes them from this beacon (after checking that the beacon names its
    session, gateway, expiry and mode)."""

    dev_id: bytes
    epoch: int
    n_t: bytes
    bind_proof: bytes
    caps: int
    m0: bytes = b""


@dataclass(frozen=True)
class Report:
    """A result or failure the gateway reports to the app and the cloud (§10.9)."""

    status: Status
    dev_id: bytes | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class SessionEnded:
    status: Status


@dataclass(frozen=True)
class Committed:
    """The thing received M4 and installs the credentials."""

    gw_id: bytes
    sid: bytes
    delivery: Delivery = field(repr=False)
    k_link: bytes = field(repr=False)


@dataclass(frozen=True)
class ThingFailed:
    status: Status


@dataclass(frozen=True)
class Progress:
    """A human-readable step of the thing's bootstrap (for LEDs, logs and the demo)."""

    stage: str


Output: TypeAlias = (
    Send
    | SetChannel
    | EnrolleeFound
    | JoinCompleted
    | Report
    | SessionEnded
    | Committed
    | ThingFailed
    | Progress
)


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
    device_fail_limit: int = 3
    session_fail_limit: int = 20
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
        self._sources: OrderedDict[bytes, _Source] = OrderedDict()
        self._joins: dict[bytes, _GwJoin] = {}
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._found_reported: set[tuple[bytes, int]] = set()
        self._denied: set[bytes] = set()
        self._dev_fail: Counter[bytes] = Counter()
        self._locked: set[bytes] = set()
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
            "locked_out": sorted(d.hex() for d in self._locked),
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
        if dev_id in self._locked:
            self.counters["m1_locked_out"] += 1
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
        if not self._source(src, now).bucket.take(now) or not self._m1_bucket.take(now):
            self.counters["m1_rate_limited"] += 1
            return
        if dev_id not in self._psks:
            self._discover(now, src, m1, raw, out)
            return
        self._answer(now, src, m1, raw, out, count_rate=True)

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
        if not verify_join_request(m0, m1, psk_t):
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
        self.counters["m1_bad_proof"] += 1
        self._dev_fail[dev_id] += 1
        self._session_fail += 1
        out.append(Report(Status.AUTH_FAILED, dev_id, epoch))
        if self._dev_fail[dev_id] >= self.limits.device_fail_limit and dev_id not in self._locked:
            self._locked.add(dev_id)
            out.append(Report(Status.LOCKED_OUT, dev_id, epoch))
        if self._session_fail >= self.limits.session_fail_limit:
            # Matter's rule: too many failed attempts close the window and alert the user.
            out.extend(self.close(now, Status.AUTH_FAILED))

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
