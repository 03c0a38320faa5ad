"""CBSB-1 message protection and what both join state machines output (docs/cbsb.md §5-§7).

Two layers, both sans-IO, one module per party above this one:

* message functions (``build_*`` / ``open_*`` / ``verify_*``) that apply the key schedule of
  :mod:`gateway.crypto.cbsb_keys` to the frames of :mod:`gateway.wire.cbsb` (here);
* the outputs of the state machines (here), :class:`~gateway.wire.cbsb_gateway.GatewaySession`
  (one bootstrapping window on the gateway, many things at once) and
  :class:`~gateway.wire.cbsb_thing.ThingJoin` (one thing looking for a gateway and joining it).

The state machines never read a clock or touch a socket: every entry point takes ``now`` (seconds
on any monotonic clock) and returns a list of outputs (:class:`Send`, :class:`SetChannel` and
events) for the asyncio shell to carry out. Randomness comes from an injected ``rng(n) -> bytes``
(``os.urandom`` by default) so tests can be deterministic; timer jitter from an injected
:class:`random.Random`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

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
    ct_equal,
    delivery_digest,
    derive_join_keys,
    join_proof,
    open_sealed,
    seal,
    transcript_th1,
    transcript_th2,
    x25519_shared,
)
from gateway.errors import CryptoError, ParseError
from gateway.wire.cbsb import (
    MAX_UNICAST_PAYLOAD,
    Abort,
    AckBody,
    Beacon,
    BeaconFlags,
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
    split_delivery,
)

__all__ = [
    "Committed",
    "EnrolleeFound",
    "JoinCompleted",
    "OpenedResponse",
    "Output",
    "Progress",
    "Report",
    "ResponseFlight",
    "Send",
    "SessionEnded",
    "SetChannel",
    "ThingFailed",
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
