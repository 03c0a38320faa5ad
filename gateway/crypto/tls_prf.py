"""The TLS 1.2 pseudo-random function with SHA-256 and the key schedule built on it.

RFC 5246 §5 defines ``PRF(secret, label, seed) = P_SHA256(secret, label || seed)`` where
``P_hash`` chains HMAC: ``A(0) = seed``, ``A(i) = HMAC(secret, A(i-1))`` and the output is
``HMAC(secret, A(1) || seed) || HMAC(secret, A(2) || seed) || ...`` truncated to the length asked
for. On top of it this module computes what a DTLS 1.2 session needs (RFC 5246 §8.1, §6.3, §7.4.9):
the master secret, the key block and the Finished ``verify_data``.

HMAC-SHA256 comes from ``cryptography``; nothing here is hand-rolled below HMAC.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes, hmac

__all__ = [
    "MASTER_SECRET_LEN",
    "VERIFY_DATA_LEN",
    "finished_verify_data",
    "key_block",
    "master_secret",
    "prf_sha256",
]

#: Length of the TLS master secret (RFC 5246 §8.1).
MASTER_SECRET_LEN: Final[int] = 48
#: Length of Finished.verify_data for every TLS 1.2 cipher suite that does not say otherwise.
VERIFY_DATA_LEN: Final[int] = 12
#: Upper bound on one PRF call; the protocol never needs more than a key block (a few dozen bytes).
_MAX_OUTPUT: Final[int] = 255 * 32


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def prf_sha256(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """``PRF(secret, label, seed)`` of RFC 5246 §5 with SHA-256, ``length`` bytes long."""
    if not 0 <= length <= _MAX_OUTPUT:
        raise ValueError(f"PRF output length {length} out of range")
    full_seed = label + seed
    out = bytearray()
    a = full_seed
    while len(out) < length:
        a = _hmac_sha256(secret, a)
        out += _hmac_sha256(secret, a + full_seed)
    return bytes(out[:length])


def master_secret(pre_master_secret: bytes, client_random: bytes, server_random: bytes) -> bytes:
    """RFC 5246 §8.1: ``PRF(pms, "master secret", client_random || server_random)[0..47]``."""
    return prf_sha256(
        pre_master_secret, b"master secret", client_random + server_random, MASTER_SECRET_LEN
    )


def key_block(master: bytes, client_random: bytes, server_random: bytes, length: int) -> bytes:
    """RFC 5246 §6.3: ``PRF(master, "key expansion", server_random || client_random)``.

    Note the order of the randoms: server first here, client first for the master secret.
    """
    return prf_sha256(master, b"key expansion", server_random + client_random, length)


def finished_verify_data(master: bytes, *, from_client: bool, handshake_hash: bytes) -> bytes:
    """RFC 5246 §7.4.9: 12 bytes of ``PRF(master, finished_label, Hash(handshake_messages))``."""
    label = b"client finished" if from_client else b"server finished"
    return prf_sha256(master, label, handshake_hash, VERIFY_DATA_LEN)
