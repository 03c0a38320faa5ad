"""CCM* (IEEE 802.15.4-2006 Annex B / 802.15.4-2015 Annex B) on top of ``cryptography``'s AES.

CCM* is CCM with two extras: a MIC length of 0 (encryption only) and authentication without
encryption. Here:

* MIC > 0 with encryption: plain CCM (``AESCCM``).
* MIC > 0 without encryption: CCM over an empty message (the whole frame is additional data).
* MIC = 0 with encryption: CTR with the CCM* counter blocks ``A_i = 0x01 | nonce | i`` from
  ``i = 1``, which is what CCM would produce for its ciphertext (security level 4).
* MIC = 0 without encryption: identity (security level 0).

Only the 13-byte nonce of 802.15.4 (L = 2) is supported. Keys are never logged or put in
exception messages.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from drivers.errors import InvalidArgument
from gateway.errors import CryptoError

__all__ = [
    "MIC_LENGTHS",
    "NONCE_LENGTH",
    "ccm_star_decrypt",
    "ccm_star_encrypt",
    "level_encrypts",
    "level_mic_length",
    "make_nonce",
]

NONCE_LENGTH = 13
MIC_LENGTHS = (0, 4, 8, 16)
_MAX_MESSAGE = 0xFFFF  # L = 2 octets of length field


def level_mic_length(level: int) -> int:
    """MIC length in bytes of security level 0..7 (0, 4, 8, 16, 0, 4, 8, 16)."""
    if not 0 <= level <= 7:
        raise InvalidArgument(f"security level must be 0..7, not {level}")
    return MIC_LENGTHS[level & 3]


def level_encrypts(level: int) -> bool:
    """True for the ENC levels 4..7."""
    if not 0 <= level <= 7:
        raise InvalidArgument(f"security level must be 0..7, not {level}")
    return bool(level & 4)


def make_nonce(ext_source: bytes, frame_counter: int, level: int) -> bytes:
    """The 802.15.4 / Thread CCM* nonce: source extended address (8 bytes, canonical big-endian
    order) | frame counter (4 bytes big-endian) | security level (1 byte)."""
    if len(ext_source) != 8:
        raise InvalidArgument("the nonce needs an 8-byte extended source address")
    if not 0 <= frame_counter <= 0xFFFFFFFF:
        raise InvalidArgument("frame counter out of range")
    if not 0 <= level <= 7:
        raise InvalidArgument("security level out of range")
    return bytes(ext_source) + frame_counter.to_bytes(4, "big") + bytes((level,))


def _check(key: bytes, nonce: bytes, mic_length: int) -> None:
    if len(key) != 16:
        raise InvalidArgument("CCM* needs a 16-byte AES-128 key")
    if len(nonce) != NONCE_LENGTH:
        raise InvalidArgument("CCM* nonce must be 13 bytes")
    if mic_length not in MIC_LENGTHS:
        raise InvalidArgument(f"MIC length must be one of {MIC_LENGTHS}")


def _ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    if len(data) > _MAX_MESSAGE:
        raise InvalidArgument("CCM* message too long")
    # A_1 = flags (L' = L - 1 = 1) | nonce | counter 1 (2 bytes big-endian)
    initial = b"\x01" + nonce + b"\x00\x01"
    enc = Cipher(algorithms.AES(key), modes.CTR(initial)).encryptor()
    return enc.update(data) + enc.finalize()


def ccm_star_encrypt(
    key: bytes, nonce: bytes, a_data: bytes, m_data: bytes, mic_length: int, encrypt: bool
) -> tuple[bytes, bytes]:
    """Protect ``m_data`` (ciphertext when ``encrypt``, else returned as is) and authenticate
    ``a_data`` + ``m_data``. Returns ``(output, mic)``."""
    _check(key, nonce, mic_length)
    if mic_length == 0:
        return (_ctr(key, nonce, m_data) if encrypt else bytes(m_data)), b""
    ccm = AESCCM(key, tag_length=mic_length)
    if encrypt:
        sealed = ccm.encrypt(nonce, bytes(m_data), bytes(a_data))
        return sealed[:-mic_length], sealed[-mic_length:]
    return bytes(m_data), ccm.encrypt(nonce, b"", bytes(a_data) + bytes(m_data))


def ccm_star_decrypt(
    key: bytes, nonce: bytes, a_data: bytes, c_data: bytes, mic: bytes, encrypt: bool
) -> bytes:
    """Inverse of :func:`ccm_star_encrypt`; raises :class:`CryptoError` when the MIC fails."""
    _check(key, nonce, len(mic))
    if not mic:
        return _ctr(key, nonce, c_data) if encrypt else bytes(c_data)
    ccm = AESCCM(key, tag_length=len(mic))
    try:
        if encrypt:
            return ccm.decrypt(nonce, bytes(c_data) + bytes(mic), bytes(a_data))
        ccm.decrypt(nonce, bytes(mic), bytes(a_data) + bytes(c_data))
    except InvalidTag:
        raise CryptoError("802.15.4 frame MIC check failed") from None
    return bytes(c_data)
