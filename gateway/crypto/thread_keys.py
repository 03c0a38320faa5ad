"""Thread key derivations as OpenThread implements them (pure functions, sans-IO).

* :func:`pskc` -- the commissioner credential: PBKDF2 with AES-CMAC-PRF-128 (RFC 4615),
  salt ``"Thread" || Extended PAN ID || Network Name``, 16384 iterations, 16 bytes
  (OT ``src/core/meshcop/meshcop.cpp`` ``GeneratePskc``).
* :func:`joiner_id`, :func:`joiner_id_from_discerner`, :func:`discerner_steering_id`,
  :func:`discerner_matches` -- joiner identifiers (OT ``ComputeJoinerId``, ``JoinerDiscerner``).
* :class:`SteeringData` -- the commissioner's bloom filter of joiner IDs
  (OT ``src/core/meshcop/steering_data.cpp``).
* :func:`network_key_derivation`, :func:`mac_key_index` -- MLE and MAC keys from the network key
  and key sequence (OT ``src/core/thread/key_manager.cpp``, ``src/core/mac/mac_types.cpp``).
* :func:`kek_from_key_block` -- the Joiner Router KEK from the DTLS key block
  (OT ``src/core/meshcop/secure_transport.cpp``).
* :func:`validate_pskd`, :func:`validate_passphrase` -- credential syntax checks whose errors never
  contain the credential.

Errors for bad arguments are :class:`~gateway.errors.InvalidArgument` (or its subclasses
:class:`InvalidPskd` / :class:`InvalidPassphrase`); :meth:`SteeringData.from_bytes` raises
:class:`~gateway.errors.ParseError` on bad received bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import cmac, hashes, hmac
from cryptography.hazmat.primitives.ciphers import algorithms

from gateway.errors import InvalidArgument, ParseError

__all__ = [
    "DISCERNER_MAX_BITS",
    "EXT_PAN_ID_LEN",
    "JOINER_ID_LEN",
    "KEK_LEN",
    "KEY_BLOCK_LEN",
    "NETWORK_KEY_LEN",
    "NETWORK_NAME_MAX_LEN",
    "PASSPHRASE_MAX_LEN",
    "PASSPHRASE_MIN_LEN",
    "PSKC_ITERATIONS",
    "PSKC_LEN",
    "PSKD_MAX_LEN",
    "PSKD_MIN_LEN",
    "STEERING_DATA_MAX_LEN",
    "STEERING_DATA_MIN_LEN",
    "InvalidPassphrase",
    "InvalidPskd",
    "SteeringData",
    "aes_cmac_prf_128",
    "crc16_ansi",
    "crc16_ccitt",
    "discerner_matches",
    "discerner_steering_id",
    "joiner_id",
    "joiner_id_from_discerner",
    "kek_from_key_block",
    "mac_key_index",
    "network_key_derivation",
    "pbkdf2_aes_cmac_prf_128",
    "pskc",
    "validate_passphrase",
    "validate_pskd",
]

PSKC_LEN: Final[int] = 16
PSKC_ITERATIONS: Final[int] = 16384
PASSPHRASE_MIN_LEN: Final[int] = 6
PASSPHRASE_MAX_LEN: Final[int] = 255
NETWORK_NAME_MAX_LEN: Final[int] = 16
EXT_PAN_ID_LEN: Final[int] = 8
EUI64_LEN: Final[int] = 8
JOINER_ID_LEN: Final[int] = 8
DISCERNER_MAX_BITS: Final[int] = 64
STEERING_DATA_MIN_LEN: Final[int] = 1
STEERING_DATA_MAX_LEN: Final[int] = 16
NETWORK_KEY_LEN: Final[int] = 16
KEY_BLOCK_LEN: Final[int] = 40
KEK_LEN: Final[int] = 16
PSKD_MIN_LEN: Final[int] = 6
PSKD_MAX_LEN: Final[int] = 32

_AES_BLOCK: Final[int] = 16
_PSKC_SALT_PREFIX: Final[bytes] = b"Thread"
_KEY_DERIVATION_LABEL: Final[bytes] = b"Thread"
_LOCAL_BIT: Final[int] = 0x02  # IEEE "locally administered" bit of the first byte
_PSKD_ALPHABET: Final[frozenset[str]] = frozenset("0123456789ABCDEFGHJKLMNPRSTUVWXY")
_CRC16_CCITT_POLY: Final[int] = 0x1021
_CRC16_ANSI_POLY: Final[int] = 0x8005
_PERMIT_ALL: Final[int] = 0xFF


class InvalidPskd(InvalidArgument):
    """A joining device credential (PSKd) with the wrong syntax; the message never contains it."""

    default_hint = (
        "A PSKd has 6 to 32 characters: digits and upper-case letters except I, O, Q and Z."
    )


class InvalidPassphrase(InvalidArgument):
    """A commissioning passphrase with the wrong length or encoding (never quoted)."""

    default_hint = "The commissioning passphrase must be 6 to 255 bytes of UTF-8 text."


# --- credentials ------------------------------------------------------------------------------


def validate_pskd(pskd: str | bytes) -> str:
    """Check a PSKd (OT ``JoinerPskd::IsPskdValid``) and return it as ``str``.

    6..32 characters, each a digit or an upper-case letter A-Z other than I, O, Q, Z. The PSKd is
    used as the EC-JPAKE password as its ASCII bytes. It is not upper-cased for you: OpenThread
    rejects lower case too.
    """
    if isinstance(pskd, bytes | bytearray):
        try:
            text = bytes(pskd).decode("ascii")
        except UnicodeDecodeError:
            raise InvalidPskd("PSKd contains non-ASCII bytes") from None
    else:
        text = pskd
    if not PSKD_MIN_LEN <= len(text) <= PSKD_MAX_LEN:
        raise InvalidPskd(f"PSKd must have {PSKD_MIN_LEN} to {PSKD_MAX_LEN} characters")
    if not set(text) <= _PSKD_ALPHABET:
        raise InvalidPskd("PSKd contains a character outside 0-9 and A-Z (without I, O, Q, Z)")
    return text


def validate_passphrase(passphrase: str | bytes) -> bytes:
    """Check a commissioning passphrase and return its UTF-8 bytes (6..255 bytes, no NUL)."""
    if isinstance(passphrase, str):
        try:
            raw = passphrase.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            raise InvalidPassphrase("passphrase is not valid Unicode text") from None
    else:
        raw = bytes(passphrase)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPassphrase("passphrase is not valid UTF-8") from None
    if not PASSPHRASE_MIN_LEN <= len(raw) <= PASSPHRASE_MAX_LEN:
        raise InvalidPassphrase(
            f"passphrase must be {PASSPHRASE_MIN_LEN} to {PASSPHRASE_MAX_LEN} bytes of UTF-8"
        )
    if b"\x00" in raw:
        raise InvalidPassphrase("passphrase contains a NUL character")
    return raw


# --- PSKc -------------------------------------------------------------------------------------


def _cmac(key: bytes, message: bytes) -> bytes:
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def aes_cmac_prf_128(key: bytes, message: bytes) -> bytes:
    """AES-CMAC-PRF-128 (RFC 4615 §3): a key of any length, 16-byte output."""
    prf_key = bytes(key) if len(key) == _AES_BLOCK else _cmac(bytes(_AES_BLOCK), bytes(key))
    return _cmac(prf_key, bytes(message))


def pbkdf2_aes_cmac_prf_128(
    password: bytes, salt: bytes, iterations: int, length: int = _AES_BLOCK
) -> bytes:
    """PBKDF2 (RFC 8018 §5.2) with AES-CMAC-PRF-128 as the PRF (RFC 4615 §1)."""
    if iterations < 1:
        raise InvalidArgument("PBKDF2 needs at least one iteration")
    if not 1 <= length <= 255 * _AES_BLOCK:
        raise InvalidArgument("PBKDF2 output length out of range")
    password = bytes(password)
    prf_key = password if len(password) == _AES_BLOCK else _cmac(bytes(_AES_BLOCK), password)
    base = cmac.CMAC(algorithms.AES(prf_key))  # the key schedule is done once, then copied
    out = bytearray()
    block_index = 1
    while len(out) < length:
        mac = base.copy()
        mac.update(bytes(salt) + block_index.to_bytes(4, "big"))
        u = mac.finalize()
        acc = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            mac = base.copy()
            mac.update(u)
            u = mac.finalize()
            acc ^= int.from_bytes(u, "big")
        out += acc.to_bytes(_AES_BLOCK, "big")
        block_index += 1
    return bytes(out[:length])


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def pskc(passphrase: str | bytes, network_name: str | bytes, ext_pan_id: bytes) -> bytes:
    """The 16-byte PSKc for a commissioning passphrase (OT ``GeneratePskc``).

    ``network_name`` is the raw Network Name (UTF-8, at most 16 bytes), ``ext_pan_id`` the 8-byte
    Extended PAN ID.
    """
    password = validate_passphrase(passphrase)
    name = _as_bytes(network_name)
    if len(name) > NETWORK_NAME_MAX_LEN:
        raise InvalidArgument(f"network name is longer than {NETWORK_NAME_MAX_LEN} bytes")
    if len(ext_pan_id) != EXT_PAN_ID_LEN:
        raise InvalidArgument(f"extended PAN ID must be {EXT_PAN_ID_LEN} bytes")
    salt = _PSKC_SALT_PREFIX + bytes(ext_pan_id) + name
    return pbkdf2_aes_cmac_prf_128(password, salt, PSKC_ITERATIONS, PSKC_LEN)


# --- joiner IDs and discerners ----------------------------------------------------------------


def joiner_id(eui64: bytes) -> bytes:
    """Joiner ID = first 8 bytes of SHA-256(EUI-64), with the local bit (0x02 of byte 0) set."""
    if len(eui64) != EUI64_LEN:
        raise InvalidArgument(f"EUI-64 must be {EUI64_LEN} bytes")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(bytes(eui64))
    jid = bytearray(digest.finalize()[:JOINER_ID_LEN])
    jid[0] |= _LOCAL_BIT
    return bytes(jid)


def _discerner_mask(value: int, length: int) -> int:
    if not 1 <= length <= DISCERNER_MAX_BITS:
        raise InvalidArgument(f"discerner length must be 1 to {DISCERNER_MAX_BITS} bits")
    mask = (1 << length) - 1
    if not 0 <= value <= mask:
        raise InvalidArgument("discerner value does not fit in its bit length")
    return mask


def discerner_steering_id(value: int, length: int) -> bytes:
    """The 8 bytes a commissioner hashes into the steering data for a discerner joiner.

    OT ``SteeringData::CalculateHashBitIndexes(JoinerDiscerner)``: an all-zero buffer with the
    discerner's ``length`` low bits written big-endian at its end (no local bit).
    """
    _discerner_mask(value, length)
    return value.to_bytes(JOINER_ID_LEN, "big")


def joiner_id_from_discerner(
    value: int, length: int, *, rng: Callable[[int], bytes] | None = None
) -> bytes:
    """The Joiner ID a joiner uses when it has a discerner (OT ``GenerateJoinerId``).

    Random 8 bytes whose ``length`` low bits are replaced by the discerner value, then the local
    bit (0x02 of byte 0) is set. ``rng(n)`` returns n random bytes (default :func:`os.urandom`).
    """
    mask = _discerner_mask(value, length)
    raw = (rng if rng is not None else os.urandom)(JOINER_ID_LEN)
    if len(raw) != JOINER_ID_LEN:
        raise InvalidArgument("random generator returned the wrong number of bytes")
    jid = (int.from_bytes(raw, "big") & ~mask) | value
    out = bytearray(jid.to_bytes(JOINER_ID_LEN, "big"))
    out[0] |= _LOCAL_BIT
    return bytes(out)


def discerner_matches(joiner_id_bytes: bytes, value: int, length: int) -> bool:
    """Whether a received Joiner ID carries a discerner (OT ``JoinerDiscerner::Matches``)."""
    mask = _discerner_mask(value, length)
    if len(joiner_id_bytes) != JOINER_ID_LEN:
        raise InvalidArgument(f"joiner ID must be {JOINER_ID_LEN} bytes")
    return (int.from_bytes(joiner_id_bytes, "big") & mask) == value


# --- steering data ----------------------------------------------------------------------------


def _crc16(poly: int, data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc16_ccitt(data: bytes) -> int:
    """CRC-16 poly 0x1021, init 0, MSB first, no final XOR (CRC-16/XMODEM)."""
    return _crc16(_CRC16_CCITT_POLY, data)


def crc16_ansi(data: bytes) -> int:
    """CRC-16 poly 0x8005, init 0, MSB first, no final XOR (CRC-16/UMTS, a.k.a. BUYPASS)."""
    return _crc16(_CRC16_ANSI_POLY, data)


def _check_joiner_id(jid: bytes) -> bytes:
    if len(jid) != JOINER_ID_LEN:
        raise InvalidArgument(f"joiner ID must be {JOINER_ID_LEN} bytes")
    return bytes(jid)


@dataclass(frozen=True)
class SteeringData:
    """The Steering Data bloom filter (1..16 bytes), immutable: ``with_*`` return a new filter.

    Bit ``b`` of an ``L``-byte filter is ``1 << (b % 8)`` in byte ``L - 1 - b // 8``; a joiner
    ID sets bits ``crc16_ccitt(id) % 8L`` and ``crc16_ansi(id) % 8L``. All bytes ``FF`` permit
    every joiner; all zero permit none.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not STEERING_DATA_MIN_LEN <= len(self.data) <= STEERING_DATA_MAX_LEN:
            raise InvalidArgument(
                f"steering data must be {STEERING_DATA_MIN_LEN} to {STEERING_DATA_MAX_LEN} bytes"
            )
        object.__setattr__(self, "data", bytes(self.data))

    # constructors

    @classmethod
    def empty(cls, length: int = STEERING_DATA_MAX_LEN) -> SteeringData:
        """A filter that admits no joiner (OT commissioners use 16 bytes)."""
        if not STEERING_DATA_MIN_LEN <= length <= STEERING_DATA_MAX_LEN:
            raise InvalidArgument(
                f"steering data must be {STEERING_DATA_MIN_LEN} to {STEERING_DATA_MAX_LEN} bytes"
            )
        return cls(bytes(length))

    @classmethod
    def permit_all(cls) -> SteeringData:
        """The 1-byte ``FF`` filter that admits every joiner."""
        return cls(bytes([_PERMIT_ALL]))

    @classmethod
    def for_joiner_ids(
        cls, joiner_ids: Iterable[bytes], length: int = STEERING_DATA_MAX_LEN
    ) -> SteeringData:
        sd = cls.empty(length)
        for jid in joiner_ids:
            sd = sd.with_joiner_id(jid)
        return sd

    @classmethod
    def from_bytes(cls, data: bytes) -> SteeringData:
        """Parse a received Steering Data TLV value; ParseError unless 1..16 bytes."""
        if not STEERING_DATA_MIN_LEN <= len(data) <= STEERING_DATA_MAX_LEN:
            raise ParseError(
                f"steering data must be {STEERING_DATA_MIN_LEN} to {STEERING_DATA_MAX_LEN} "
                f"bytes, got {len(data)}"
            )
        return cls(bytes(data))

    def to_bytes(self) -> bytes:
        return self.data

    # queries

    @property
    def length(self) -> int:
        return len(self.data)

    @property
    def permits_all(self) -> bool:
        return all(b == _PERMIT_ALL for b in self.data)

    @property
    def is_empty(self) -> bool:
        return not any(self.data)

    def _bits(self, jid: bytes) -> tuple[int, int]:
        nbits = 8 * len(self.data)
        return crc16_ccitt(jid) % nbits, crc16_ansi(jid) % nbits

    def _has_bit(self, bit: int) -> bool:
        return bool(self.data[len(self.data) - 1 - bit // 8] & (1 << (bit % 8)))

    def contains_joiner_id(self, joiner_id_bytes: bytes) -> bool:
        """Whether the filter admits this Joiner ID (both bloom bits set)."""
        a, b = self._bits(_check_joiner_id(joiner_id_bytes))
        return self._has_bit(a) and self._has_bit(b)

    def contains_eui64(self, eui64: bytes) -> bool:
        return self.contains_joiner_id(joiner_id(eui64))

    def contains_discerner(self, value: int, length: int) -> bool:
        return self.contains_joiner_id(discerner_steering_id(value, length))

    # updates (new instances)

    def with_joiner_id(self, joiner_id_bytes: bytes) -> SteeringData:
        """A copy with the two bloom bits of ``joiner_id_bytes`` set."""
        out = bytearray(self.data)
        for bit in self._bits(_check_joiner_id(joiner_id_bytes)):
            out[len(out) - 1 - bit // 8] |= 1 << (bit % 8)
        return SteeringData(bytes(out))

    def with_eui64(self, eui64: bytes) -> SteeringData:
        return self.with_joiner_id(joiner_id(eui64))

    def with_discerner(self, value: int, length: int) -> SteeringData:
        return self.with_joiner_id(discerner_steering_id(value, length))

    def merged(self, other: SteeringData) -> SteeringData:
        """OR ``other`` into a copy; its length must divide ours (OT ``MergeBloomFilterWith``)."""
        if len(self.data) % len(other.data):
            raise InvalidArgument("steering data lengths cannot be merged")
        n = len(other.data)
        return SteeringData(bytes(b | other.data[i % n] for i, b in enumerate(self.data)))


# --- network keys and KEK ---------------------------------------------------------------------


def network_key_derivation(network_key: bytes, key_sequence: int) -> tuple[bytes, bytes]:
    """``(mle_key, mac_key)`` = HMAC-SHA256(network key, BE32(key sequence) || "Thread") halves."""
    if len(network_key) != NETWORK_KEY_LEN:
        raise InvalidArgument(f"network key must be {NETWORK_KEY_LEN} bytes")
    if not 0 <= key_sequence <= 0xFFFFFFFF:
        raise InvalidArgument("key sequence must fit in 32 bits")
    mac = hmac.HMAC(bytes(network_key), hashes.SHA256())
    mac.update(key_sequence.to_bytes(4, "big") + _KEY_DERIVATION_LABEL)
    digest = mac.finalize()
    return digest[:16], digest[16:32]


def mac_key_index(key_sequence: int) -> int:
    """The MAC Key ID Mode 1 key index for a key sequence: ``(seq & 0x7F) + 1`` (1..128)."""
    if not 0 <= key_sequence <= 0xFFFFFFFF:
        raise InvalidArgument("key sequence must fit in 32 bits")
    return (key_sequence & 0x7F) + 1


def kek_from_key_block(key_block: bytes) -> bytes:
    """The Joiner Router KEK: first 16 bytes of SHA-256 over the 40-byte DTLS key block.

    ``key_block`` = client_write_key || server_write_key || client_IV || server_IV of
    TLS_ECJPAKE_WITH_AES_128_CCM_8 (PRF(master, "key expansion", server_random || client_random)).
    """
    if len(key_block) != KEY_BLOCK_LEN:
        raise InvalidArgument(f"key block must be {KEY_BLOCK_LEN} bytes")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(bytes(key_block))
    return digest.finalize()[:KEK_LEN]
