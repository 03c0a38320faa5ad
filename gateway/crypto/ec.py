"""NIST P-256 (secp256r1) point arithmetic for EC-JPAKE: a thin, typed wrapper.

Two libraries do the work, chosen by measurement (see ``docs/crypto.md``):

* ``cryptography`` (OpenSSL) for everything it can do: ``k*G`` with a secret ``k`` (key pairs and
  ZKP commitments on the base point) and the x-coordinate of ``k*P`` (ECDH), both constant-time
  in OpenSSL and about ten times faster than the alternatives.
* ``fastecdsa`` (Rust) for what OpenSSL does not expose to Python: point addition, negation and
  ``k*P`` with the full result on an arbitrary point (EC-JPAKE round two uses the generator
  ``X1 + X3 + X4``). Its scalar multiplication is a fixed-length (256-step) Montgomery ladder with
  complete addition formulas, so no early exit and no special cases, but it branches on the key
  bit in each step and was not audited for constant time.

Points are ``fastecdsa`` points; the point at infinity is a valid value here (``INFINITY``), but it
never has a wire encoding: :func:`decode_point` rejects it and :func:`encode_point` refuses it.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec as _ec
from fastecdsa.curve import P256 as _CURVE
from fastecdsa.rust import Point

from gateway.errors import ParseError

__all__ = [
    "COORD_LEN",
    "GENERATOR",
    "INFINITY",
    "N",
    "P",
    "POINT_LEN",
    "Point",
    "decode_point",
    "encode_point",
    "is_infinity",
    "mul",
    "mul_base",
    "mul_x",
]

#: Field prime p of P-256.
P: Final[int] = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
#: Group order n of P-256 (prime; the cofactor is 1).
N: Final[int] = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_B: Final[int] = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B

#: Bytes of one coordinate and of an uncompressed point (``04 || X || Y``).
COORD_LEN: Final[int] = 32
POINT_LEN: Final[int] = 1 + 2 * COORD_LEN

GENERATOR: Final[Point] = _CURVE.G
INFINITY: Final[Point] = _CURVE.G * 0

_SECP256R1: Final = _ec.SECP256R1()

if _CURVE.p != P or _CURVE.q != N or _CURVE.b != _B:  # pragma: no cover - guards a library change
    raise ImportError("fastecdsa's P256 parameters differ from secp256r1")


def is_infinity(point: Point) -> bool:
    """True for the point at infinity (the group's neutral element)."""
    return bool(point == INFINITY)


def mul_base(k: int) -> Point:
    """``k*G`` for any integer ``k`` (reduced mod n); constant-time in OpenSSL for 0 < k < n."""
    k %= N
    if k == 0:
        return INFINITY
    numbers = _ec.derive_private_key(k, _SECP256R1).public_key().public_numbers()
    return Point(numbers.x, numbers.y, _CURVE)


def mul(k: int, point: Point) -> Point:
    """``k*P`` with the full result (fastecdsa's ladder); ``k`` is reduced mod n first."""
    return point * (k % N)


def mul_x(k: int, point: Point) -> int:
    """The x-coordinate of ``k*P`` through OpenSSL's constant-time ECDH.

    ``k`` must be in ``1..n-1`` and ``point`` a finite curve point; then ``k*P`` is never the point
    at infinity because the group has prime order.
    """
    if not 0 < k < N:
        raise ValueError("scalar out of range")
    if is_infinity(point):
        raise ValueError("the point at infinity has no ECDH form")
    public = _ec.EllipticCurvePublicNumbers(point.x, point.y, _SECP256R1).public_key()
    shared = _ec.derive_private_key(k, _SECP256R1).exchange(_ec.ECDH(), public)
    return int.from_bytes(shared, "big")


def encode_point(point: Point) -> bytes:
    """The 65-byte uncompressed SEC1 encoding ``04 || X || Y`` of a finite point."""
    if is_infinity(point):
        raise ValueError("the point at infinity has no uncompressed encoding")
    return b"\x04" + point.x.to_bytes(COORD_LEN, "big") + point.y.to_bytes(COORD_LEN, "big")


def decode_point(data: bytes) -> Point:
    """Parse an uncompressed SEC1 point and check that it lies on P-256.

    Raises :class:`~gateway.errors.ParseError` for a wrong length, a format byte other than
    ``04`` (compressed points and the 1-byte infinity encoding ``00`` are not accepted),
    a coordinate not below p, or a point that is not on the curve. The result is therefore
    always a finite point of the (prime-order) group.
    """
    if len(data) != POINT_LEN:
        raise ParseError(f"EC point must be {POINT_LEN} bytes, got {len(data)}")
    if data[0] != 0x04:
        raise ParseError("EC point is not in uncompressed form")
    x = int.from_bytes(data[1 : 1 + COORD_LEN], "big")
    y = int.from_bytes(data[1 + COORD_LEN :], "big")
    if x >= P or y >= P:
        raise ParseError("EC point coordinate out of range")
    # Checked here rather than left to fastecdsa so that the rule does not depend on the library.
    if (y * y - (x * x * x - 3 * x + _B)) % P != 0:
        raise ParseError("EC point is not on the P-256 curve")
    try:
        return Point(x, y, _CURVE)
    except ValueError as exc:  # pragma: no cover - unreachable after the check above
        raise ParseError("EC point is not on the P-256 curve") from exc
