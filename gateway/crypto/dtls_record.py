"""DTLS 1.2 record layer: record framing, the anti-replay window and AES-128-CCM-8 protection.

Sans-IO building blocks for :mod:`gateway.crypto.dtls`:

* :class:`DtlsRecord` — one record (RFC 6347 §4.1): ``type(1) version(2) epoch(2) seq(6)
  length(2) fragment``. :func:`parse_datagram` splits a datagram into its records.
* :class:`ReplayWindow` — the 64-entry sliding window of RFC 6347 §4.1.2.6.
* :class:`CcmRecordCipher` — AEAD record protection for ``*_WITH_AES_128_CCM_8`` suites
  (RFC 6655 §3, RFC 7251 §2): the 12-byte nonce is the 4-byte implicit ``*_write_IV`` from the key
  block followed by the 8-byte explicit nonce, which DTLS sets to ``epoch || sequence_number`` and
  sends in front of the ciphertext; the additional data is ``seq_num(8) || type(1) || version(2)
  || length(2)`` of the plaintext (RFC 5246 §6.2.3.3, where DTLS's ``seq_num`` is the epoch
  followed by the 48-bit sequence number, RFC 6347 §4.1.2.1). The tag is 8 bytes.

AES-CCM itself is ``cryptography``'s ``AESCCM(tag_length=8)``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.errors import CryptoError, ParseError

__all__ = [
    "CCM8_EXPLICIT_NONCE_LEN",
    "CCM8_OVERHEAD",
    "CCM8_TAG_LEN",
    "CONTENT_ALERT",
    "CONTENT_APPLICATION_DATA",
    "CONTENT_CHANGE_CIPHER_SPEC",
    "CONTENT_HANDSHAKE",
    "CONTENT_TYPES",
    "DTLS_1_0",
    "DTLS_1_2",
    "MAX_CIPHERTEXT_LEN",
    "MAX_PLAINTEXT_LEN",
    "MAX_SEQUENCE_NUMBER",
    "RECORD_HEADER_LEN",
    "BadRecordMac",
    "CcmRecordCipher",
    "DtlsRecord",
    "ReplayWindow",
    "parse_datagram",
    "parse_datagram_prefix",
]

CONTENT_CHANGE_CIPHER_SPEC: Final[int] = 20
CONTENT_ALERT: Final[int] = 21
CONTENT_HANDSHAKE: Final[int] = 22
CONTENT_APPLICATION_DATA: Final[int] = 23
CONTENT_TYPES: Final[frozenset[int]] = frozenset({20, 21, 22, 23})

#: ProtocolVersion values on the wire (DTLS counts down: 1.0 is {254,255}, 1.2 is {254,253}).
DTLS_1_0: Final[int] = 0xFEFF
DTLS_1_2: Final[int] = 0xFEFD

RECORD_HEADER_LEN: Final[int] = 13
MAX_SEQUENCE_NUMBER: Final[int] = (1 << 48) - 1
#: RFC 5246 §6.2.1 / §6.2.3: plaintext at most 2^14, protected fragment at most 2^14 + 2048.
MAX_PLAINTEXT_LEN: Final[int] = 1 << 14
MAX_CIPHERTEXT_LEN: Final[int] = (1 << 14) + 2048

CCM8_EXPLICIT_NONCE_LEN: Final[int] = 8
CCM8_TAG_LEN: Final[int] = 8
#: Bytes a CCM-8 record adds to its plaintext (explicit nonce + tag).
CCM8_OVERHEAD: Final[int] = CCM8_EXPLICIT_NONCE_LEN + CCM8_TAG_LEN

_HEADER = struct.Struct(">BHH6sH")
_AAD = struct.Struct(">H6sBHH")


class BadRecordMac(CryptoError):
    """A protected record failed authentication (DTLS drops it silently, RFC 6347 §4.1.2.7)."""

    code = "DTL010"
    default_hint = "A record failed its integrity check; it was dropped."


@dataclass(frozen=True)
class DtlsRecord:
    """One DTLS record as it is on the wire (the fragment still protected if epoch > 0)."""

    content_type: int
    version: int
    epoch: int
    sequence_number: int
    fragment: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.content_type not in CONTENT_TYPES:
            raise ValueError(f"unknown content type {self.content_type}")
        if not 0 <= self.epoch <= 0xFFFF:
            raise ValueError("epoch out of range")
        if not 0 <= self.sequence_number <= MAX_SEQUENCE_NUMBER:
            raise ValueError("sequence number out of range")
        if not 0 <= self.version <= 0xFFFF:
            raise ValueError("version out of range")
        if len(self.fragment) > MAX_CIPHERTEXT_LEN:
            raise ValueError("record fragment too long")

    @property
    def seq_num(self) -> bytes:
        """The 8-byte ``epoch || sequence_number`` used as TLS ``seq_num`` in MAC/AEAD input."""
        return self.epoch.to_bytes(2, "big") + self.sequence_number.to_bytes(6, "big")

    def header(self) -> bytes:
        return _HEADER.pack(
            self.content_type,
            self.version,
            self.epoch,
            self.sequence_number.to_bytes(6, "big"),
            len(self.fragment),
        )

    def to_bytes(self) -> bytes:
        return self.header() + self.fragment

    @classmethod
    def from_bytes(cls, data: bytes) -> DtlsRecord:
        """Exactly one record; anything before or after it is an error."""
        record, end = _parse_one(data, 0)
        if end != len(data):
            raise ParseError("trailing bytes after DTLS record")
        return record


def _parse_one(data: bytes, offset: int) -> tuple[DtlsRecord, int]:
    if len(data) - offset < RECORD_HEADER_LEN:
        raise ParseError("truncated DTLS record header")
    ctype, version, epoch, seq, length = _HEADER.unpack_from(data, offset)
    if ctype not in CONTENT_TYPES:
        raise ParseError(f"unknown DTLS content type {ctype}")
    if version >> 8 != 0xFE:
        raise ParseError(f"not a DTLS record version: {version:#06x}")
    if length > MAX_CIPHERTEXT_LEN:
        raise ParseError("DTLS record too long")
    start = offset + RECORD_HEADER_LEN
    end = start + length
    if end > len(data):
        raise ParseError("DTLS record longer than the datagram")
    return (
        DtlsRecord(ctype, version, epoch, int.from_bytes(seq, "big"), bytes(data[start:end])),
        end,
    )


def parse_datagram_prefix(data: bytes) -> tuple[list[DtlsRecord], ParseError | None]:
    """The well-formed records at the start of a datagram, and the error that ended parsing.

    A receiver processes the records before a malformed one and drops the rest of the datagram
    (RFC 6347 §4.1.2.7 lets it discard invalid records silently).
    """
    records: list[DtlsRecord] = []
    offset = 0
    while offset < len(data):
        try:
            record, offset = _parse_one(data, offset)
        except ParseError as exc:
            return records, exc
        records.append(record)
    return records, None


def parse_datagram(data: bytes) -> list[DtlsRecord]:
    """Every record of a datagram; :class:`ParseError` if any part of it is malformed."""
    records, error = parse_datagram_prefix(data)
    if error is not None:
        raise error
    if not records:
        raise ParseError("empty DTLS datagram")
    return records


class ReplayWindow:
    """Sliding anti-replay window over 48-bit sequence numbers (RFC 6347 §4.1.2.6).

    ``is_fresh`` is asked before authenticating a record, ``mark`` only after the record was
    authenticated, so forged records cannot move the window.
    """

    __slots__ = ("_bits", "_size", "_top")

    def __init__(self, size: int = 64) -> None:
        if size < 1:
            raise ValueError("window size must be positive")
        self._size = size
        self._top = -1  # highest sequence number marked so far; -1: none yet
        self._bits = 0  # bit i set <=> (top - i) was seen

    @property
    def top(self) -> int:
        return self._top

    def is_fresh(self, seq: int) -> bool:
        if seq > self._top:
            return True
        offset = self._top - seq
        if offset >= self._size:
            return False  # too old: left of the window
        return not (self._bits >> offset) & 1

    def mark(self, seq: int) -> None:
        if seq > self._top:
            shift = seq - self._top
            # shift can be up to 2**48: never build an integer that wide
            kept = (self._bits << shift) & ((1 << self._size) - 1) if shift < self._size else 0
            self._bits = kept | 1
            self._top = seq
        else:
            offset = self._top - seq
            if offset < self._size:
                self._bits |= 1 << offset

    def reset(self) -> None:
        self._top = -1
        self._bits = 0


class CcmRecordCipher:
    """One direction of AES-128-CCM-8 record protection (a write key and its implicit IV)."""

    __slots__ = ("_aead", "_fixed_iv")

    def __init__(self, key: bytes, fixed_iv: bytes) -> None:
        if len(key) != 16 or len(fixed_iv) != 4:
            raise ValueError("AES-128-CCM-8 needs a 16-byte key and a 4-byte implicit IV")
        self._aead = AESCCM(key, tag_length=CCM8_TAG_LEN)
        self._fixed_iv = bytes(fixed_iv)

    def __repr__(self) -> str:
        return "CcmRecordCipher(<secret>)"

    @staticmethod
    def additional_data(
        content_type: int, version: int, epoch: int, seq: int, plaintext_len: int
    ) -> bytes:
        # RFC 5246 §6.2.3.3: seq_num || type || version || length (not the record header order).
        return _AAD.pack(epoch, seq.to_bytes(6, "big"), content_type, version, plaintext_len)

    def encrypt(
        self, content_type: int, version: int, epoch: int, seq: int, plaintext: bytes
    ) -> bytes:
        """The protected fragment: ``explicit_nonce(8) || ciphertext || tag(8)``."""
        explicit = epoch.to_bytes(2, "big") + seq.to_bytes(6, "big")
        aad = self.additional_data(content_type, version, epoch, seq, len(plaintext))
        return explicit + self._aead.encrypt(self._fixed_iv + explicit, plaintext, aad)

    def decrypt(self, record: DtlsRecord) -> bytes:
        """The plaintext of a protected record; :class:`BadRecordMac` if it does not verify."""
        frag = record.fragment
        if len(frag) < CCM8_OVERHEAD:
            raise BadRecordMac("protected record too short")
        explicit = frag[:CCM8_EXPLICIT_NONCE_LEN]
        plaintext_len = len(frag) - CCM8_OVERHEAD
        if plaintext_len > MAX_PLAINTEXT_LEN:
            raise BadRecordMac("protected record too long")
        aad = self.additional_data(
            record.content_type, record.version, record.epoch, record.sequence_number, plaintext_len
        )
        try:
            return self._aead.decrypt(
                self._fixed_iv + explicit, frag[CCM8_EXPLICIT_NONCE_LEN:], aad
            )
        except InvalidTag:
            raise BadRecordMac("record authentication failed") from None
