"""EC-JPAKE on P-256 with SHA-256, framed exactly as Mbed TLS frames it for Thread.

This is the password-authenticated key exchange behind the DTLS 1.2 cipher suite
TLS_ECJPAKE_WITH_AES_128_CCM_8 (0xC0FF) that Thread uses between a commissioner and a border
agent (password = PSKc) and between a commissioner and a joiner (password = PSKd, ASCII).
Sans-IO: bytes in, bytes out; the DTLS layer places the messages:

* round one (:meth:`EcJpake.write_round_one`) is the content of the ClientHello / ServerHello
  extension 256 (``ecjpake_key_kp_pair``): two ``ECJPAKEKeyKP`` back to back;
* the server's round two is the ServerKeyExchange body: ``03 00 17`` (ECParameters: named_curve
  secp256r1) followed by one ``ECJPAKEKeyKP``;
* the client's round two is the ClientKeyExchange body: one ``ECJPAKEKeyKP``;
* :meth:`EcJpake.derive_secret` gives the 32-byte premaster secret ``SHA-256(K.x)``.

Wire structures (TLS presentation language, as in Mbed TLS ``library/ecjpake.c``)::

    ECPoint       = opaque point<1..2^8-1>      (here always 41 04 || X(32) || Y(32))
    ECSchnorrZKP  = ECPoint V; opaque r<1..2^8-1>   (r big-endian, minimal length)
    ECJPAKEKeyKP  = ECPoint X; ECSchnorrZKP zkp

The Schnorr proof hash is SHA-256 over ``len32(G) G || len32(V) V || len32(X) X || len32(id) id``
with 65-byte uncompressed points and the user ID ``b"client"`` or ``b"server"`` (the DTLS role),
reduced mod n; the proof is ``r = v - x*h mod n`` and is checked as ``r*G + h*X == V``.

Errors. Every received message is first parsed completely; only then are its proofs checked:

* :class:`~gateway.errors.ParseError` -- the bytes are not a valid message for P-256: truncated,
  trailing bytes, a length field other than 65 for a point, a point that is not uncompressed
  (including the 1-byte point at infinity ``00`` and compressed forms), a coordinate >= p, a point
  not on the curve, an empty ``r`` or ``r >= n``, or (server round two) ECParameters other than
  ``03 00 17``;
* :class:`~gateway.errors.CryptoError` -- a well-formed message that fails: a Schnorr proof that
  does not verify (a wrong role's user ID or a reflected message included), or a degenerate group
  element in the computation (generator or shared point at infinity);
* :class:`EcJpakeStateError` (a :class:`~gateway.errors.CryptoError`) -- a step taken out of order,
  or a peer message replaced by a different one.

A failed read leaves the object unchanged. Reading the *same* bytes again is a no-op (DTLS
retransmissions), writing again returns the same bytes (the ClientHello after a
HelloVerifyRequest must carry an identical round-one extension).

Constant time: Python integers are not constant-time; see ``docs/crypto.md`` for what runs in
OpenSSL (constant-time) and what does not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes

from gateway.crypto.ec import (
    COORD_LEN,
    GENERATOR,
    POINT_LEN,
    N,
    Point,
    decode_point,
    encode_point,
    is_infinity,
    mul,
    mul_base,
    mul_x,
)
from gateway.errors import CryptoError, InvalidArgument, ParseError

__all__ = ["ECPARAMETERS_SECP256R1", "EcJpake", "EcJpakeStateError", "Role"]

Role = Literal["client", "server"]

#: ECParameters of the server's round two: curve_type named_curve (3), NamedCurve secp256r1 (23).
ECPARAMETERS_SECP256R1: Final[bytes] = b"\x03\x00\x17"

_USER_ID: Final[dict[str, bytes]] = {"client": b"client", "server": b"server"}
_SCALAR_LEN: Final[int] = 32
_MAX_SCALAR_TRIES: Final[int] = 64  # each try fails with probability ~2**-32 for P-256
_HASH_POINT_PREFIX: Final[bytes] = POINT_LEN.to_bytes(4, "big")


class EcJpakeStateError(CryptoError):
    """An EC-JPAKE step was taken out of order, or a peer message changed between copies."""

    default_hint = "The handshake messages arrived out of order; the handshake must restart."


class _Reader:
    """Bounds-checked cursor over a received message; every short read is a ParseError."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise ParseError(f"EC-JPAKE message truncated in {what}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def opaque8(self, what: str) -> bytes:
        return self.take(self.take(1, what)[0], what)

    def end(self, what: str) -> None:
        if self._pos != len(self._data):
            raise ParseError(f"{len(self._data) - self._pos} trailing bytes after {what}")


class _KeyKP:
    """A parsed, not yet verified ECJPAKEKeyKP."""

    __slots__ = ("big_v", "r", "x_pub")

    def __init__(self, x_pub: Point, big_v: Point, r: int) -> None:
        self.x_pub = x_pub
        self.big_v = big_v
        self.r = r


def _read_point(reader: _Reader, what: str) -> Point:
    raw = reader.opaque8(what)
    if len(raw) == 1 and raw[0] == 0:
        raise ParseError(f"{what} is the point at infinity")
    return decode_point(raw)


def _read_keykp(reader: _Reader, what: str) -> _KeyKP:
    x_pub = _read_point(reader, f"{what} public key")
    big_v = _read_point(reader, f"{what} proof commitment")
    r_raw = reader.opaque8(f"{what} proof response")
    if not r_raw:
        raise ParseError(f"{what} proof response is empty")
    r = int.from_bytes(r_raw, "big")
    if r >= N:
        raise ParseError(f"{what} proof response is not below the group order")
    return _KeyKP(x_pub, big_v, r)


def _ecpoint(point: Point) -> bytes:
    return bytes([POINT_LEN]) + encode_point(point)


def _zkp_hash(gen: Point, big_v: Point, x_pub: Point, user_id: bytes) -> int:
    digest = hashes.Hash(hashes.SHA256())
    for point in (gen, big_v, x_pub):
        digest.update(_HASH_POINT_PREFIX)
        digest.update(encode_point(point))
    digest.update(len(user_id).to_bytes(4, "big"))
    digest.update(user_id)
    return int.from_bytes(digest.finalize(), "big") % N


def _add3(a: Point, b: Point, c: Point) -> Point:
    return a + b + c


class EcJpake:
    """One side of an EC-JPAKE exchange (see the module documentation for the framing).

    ``rng(n)`` must return ``n`` uniformly random bytes (default :func:`os.urandom`); private
    keys and proof nonces are drawn as 32-byte big-endian integers, rejecting values outside
    ``1..n-1``, in this order: x1, x2 (at construction), the two round-one nonces (at the first
    :meth:`write_round_one`), the round-two nonce (at the first :meth:`write_round_two`).
    """

    __slots__ = (
        "_peer_round_one",
        "_peer_round_two",
        "_peer_x",
        "_peer_x1",
        "_peer_x2",
        "_rng",
        "_role",
        "_round_one",
        "_round_two",
        "_s",
        "_x1",
        "_x1_pub",
        "_x2",
        "_x2_pub",
    )

    def __init__(
        self,
        role: Literal["client", "server"],
        password: bytes,
        *,
        rng: Callable[[int], bytes] | None = None,
    ) -> None:
        self._setup(role, password, rng)
        self._set_private_keys(self._random_scalar(), self._random_scalar())

    @classmethod
    def _from_private_keys(
        cls,
        role: Literal["client", "server"],
        password: bytes,
        x1: int,
        x2: int,
        *,
        rng: Callable[[int], bytes] | None = None,
    ) -> EcJpake:
        """TEST ONLY: a side with fixed private keys x1, x2 (Mbed TLS's reference handshake).

        ``rng`` then supplies only the proof nonces. Never use this outside tests: reusing
        private keys across handshakes breaks the protocol's security.
        """
        for x in (x1, x2):
            if not 0 < x < N:
                raise InvalidArgument("EC-JPAKE private key out of range")
        obj = cls.__new__(cls)
        obj._setup(role, password, rng)
        obj._set_private_keys(x1, x2)
        return obj

    def _setup(self, role: str, password: bytes, rng: Callable[[int], bytes] | None) -> None:
        if role not in _USER_ID:
            raise InvalidArgument("EC-JPAKE role must be 'client' or 'server'")
        raw: object = password
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise InvalidArgument("EC-JPAKE password must be bytes")
        secret = int.from_bytes(bytes(raw), "big") % N
        if secret == 0:
            raise InvalidArgument(
                "EC-JPAKE password is empty or degenerate",
                hint="Use the PSKc (16 bytes) or the PSKd/ephemeral key as ASCII bytes.",
            )
        self._role: Role = "client" if role == "client" else "server"
        self._s = secret
        self._rng: Callable[[int], bytes] = rng if rng is not None else os.urandom
        self._round_one: bytes | None = None
        self._round_two: bytes | None = None
        self._peer_round_one: bytes | None = None
        self._peer_round_two: bytes | None = None
        self._peer_x1: Point | None = None
        self._peer_x2: Point | None = None
        self._peer_x: Point | None = None

    def _set_private_keys(self, x1: int, x2: int) -> None:
        self._x1 = x1
        self._x2 = x2
        self._x1_pub = mul_base(x1)
        self._x2_pub = mul_base(x2)

    # -- helpers --------------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        """``"client"`` or ``"server"`` (the DTLS role, which is also the ZKP user ID)."""
        return self._role

    @property
    def _my_id(self) -> bytes:
        return _USER_ID[self._role]

    @property
    def _peer_id(self) -> bytes:
        return _USER_ID["server" if self._role == "client" else "client"]

    def __repr__(self) -> str:
        steps = [
            name
            for name, done in (
                ("round_one_written", self._round_one is not None),
                ("peer_round_one_read", self._peer_round_one is not None),
                ("round_two_written", self._round_two is not None),
                ("peer_round_two_read", self._peer_round_two is not None),
            )
            if done
        ]
        return f"EcJpake(role={self._role!r}, steps={steps!r})"

    def _random_scalar(self) -> int:
        for _ in range(_MAX_SCALAR_TRIES):
            raw = self._rng(_SCALAR_LEN)
            if len(raw) != _SCALAR_LEN:
                raise CryptoError("random generator returned the wrong number of bytes")
            k = int.from_bytes(raw, "big")
            if 0 < k < N:
                return k
        raise CryptoError("random generator keeps returning out-of-range scalars")

    def _write_keykp(self, gen: Point, on_base: bool, x: int, x_pub: Point) -> bytes:
        """ECJPAKEKeyKP for the public key ``x_pub = x*gen`` with a fresh Schnorr proof."""
        while True:
            v = self._random_scalar()
            big_v = mul_base(v) if on_base else mul(v, gen)
            h = _zkp_hash(gen, big_v, x_pub, self._my_id)
            r = (v - x * h) % N
            if r != 0:  # an empty r field would be rejected by Mbed TLS (probability 2**-256)
                break
        r_raw = r.to_bytes((r.bit_length() + 7) // 8, "big")
        return _ecpoint(x_pub) + _ecpoint(big_v) + bytes([len(r_raw)]) + r_raw

    def _verify(self, gen: Point, on_base: bool, kp: _KeyKP, what: str) -> None:
        h = _zkp_hash(gen, kp.big_v, kp.x_pub, self._peer_id)
        r_gen = mul_base(kp.r) if on_base else mul(kp.r, gen)
        if not bool(r_gen + mul(h, kp.x_pub) == kp.big_v):
            raise CryptoError(f"EC-JPAKE {what}: zero-knowledge proof does not verify")

    # -- round one ------------------------------------------------------------------------------

    def write_round_one(self) -> bytes:
        """Our two ECJPAKEKeyKP on the base point (the hello extension 256 content)."""
        if self._round_one is None:
            self._round_one = self._write_keykp(
                GENERATOR, True, self._x1, self._x1_pub
            ) + self._write_keykp(GENERATOR, True, self._x2, self._x2_pub)
        return self._round_one

    def read_round_one(self, data: bytes) -> None:
        """Parse and verify the peer's round one (its hello extension 256 content)."""
        data = bytes(data)
        if self._peer_round_one is not None:
            if data == self._peer_round_one:
                return
            raise EcJpakeStateError("EC-JPAKE: the peer sent a different round-one message")
        reader = _Reader(data)
        kp1 = _read_keykp(reader, "round one, first key")
        kp2 = _read_keykp(reader, "round one, second key")
        reader.end("round one")
        self._verify(GENERATOR, True, kp1, "round one, first key")
        self._verify(GENERATOR, True, kp2, "round one, second key")
        self._peer_x1 = kp1.x_pub
        self._peer_x2 = kp2.x_pub
        self._peer_round_one = data

    # -- round two ------------------------------------------------------------------------------

    def _peer_keys(self, step: str) -> tuple[Point, Point]:
        if self._peer_x1 is None or self._peer_x2 is None:
            raise EcJpakeStateError(f"EC-JPAKE: {step} before the peer's round one was read")
        return self._peer_x1, self._peer_x2

    def _secret_scalar(self) -> int:
        """x2 * s mod n (nonzero: x2 in 1..n-1, s not 0 mod n, n prime)."""
        return (self._x2 * self._s) % N

    def write_round_two(self) -> bytes:
        """Server: ``03 00 17`` + ECJPAKEKeyKP (ServerKeyExchange); client: ECJPAKEKeyKP."""
        if self._round_two is None:
            peer_x1, peer_x2 = self._peer_keys("round two written")
            gen = _add3(self._x1_pub, peer_x1, peer_x2)
            if is_infinity(gen):
                raise CryptoError("EC-JPAKE round two: degenerate generator")
            xm = self._secret_scalar()
            body = self._write_keykp(gen, False, xm, mul(xm, gen))
            self._round_two = ECPARAMETERS_SECP256R1 + body if self._role == "server" else body
        return self._round_two

    def read_round_two(self, data: bytes) -> None:
        """Parse and verify the peer's round two (the client reads the ServerKeyExchange form)."""
        data = bytes(data)
        if self._peer_round_two is not None:
            if data == self._peer_round_two:
                return
            raise EcJpakeStateError("EC-JPAKE: the peer sent a different round-two message")
        peer_x1, _ = self._peer_keys("round two read")
        reader = _Reader(data)
        if self._role == "client":
            params = reader.take(len(ECPARAMETERS_SECP256R1), "ECParameters")
            if params[0] != ECPARAMETERS_SECP256R1[0]:
                raise ParseError("EC-JPAKE round two: ECParameters curve type is not named_curve")
            if params != ECPARAMETERS_SECP256R1:
                raise ParseError("EC-JPAKE round two: the curve is not secp256r1")
        kp = _read_keykp(reader, "round two")
        reader.end("round two")
        gen = _add3(self._x1_pub, self._x2_pub, peer_x1)
        if is_infinity(gen):
            raise CryptoError("EC-JPAKE round two: degenerate generator")
        self._verify(gen, False, kp, "round two")
        self._peer_x = kp.x_pub
        self._peer_round_two = data

    # -- result ---------------------------------------------------------------------------------

    def _pre_k(self) -> Point:
        """``T = Xpeer - X_peer2 * (x2*s)``, so that ``K = x2 * T``."""
        if self._peer_x is None or self._peer_x2 is None:
            raise EcJpakeStateError("EC-JPAKE: secret derived before the peer's round two was read")
        t = self._peer_x + mul(N - self._secret_scalar(), self._peer_x2)
        if is_infinity(t):
            raise CryptoError("EC-JPAKE: degenerate shared point")
        return t

    def derive_secret(self) -> bytes:
        """The premaster secret ``SHA-256(K.x)`` (32 bytes), equal on both sides iff the
        passwords match."""
        k_x = mul_x(self._x2, self._pre_k())
        digest = hashes.Hash(hashes.SHA256())
        digest.update(k_x.to_bytes(COORD_LEN, "big"))
        return digest.finalize()

    def _shared_point(self) -> bytes:
        """TEST ONLY: K as an uncompressed point (Mbed TLS's ``write_shared_key``)."""
        return encode_point(mul(self._x2, self._pre_k()))
