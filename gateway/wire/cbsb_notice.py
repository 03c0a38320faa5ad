"""LAN notifications from the gateway to the user's app (draft step 9; cloud-bootstrap.md §10.7).

A notification is a hint: the cloud stays authoritative. It is sealed so that nobody else on the
LAN can read or forge it (AES-128-GCM under ``K_note = HKDF(K_appgw, salt = sid, info =
"cbsb1 notify", 16)``, where ``K_appgw`` is the key the app and the gateway share since the app
claimed the gateway) and carried in a CoAP POST to ``/cbsb/v1/notify``; the app answers with a
sealed acknowledgement of the notification's id, which stops the repeats.

Sans-IO: bytes in, values out.

Wire format (all lengths in bytes)::

    kind(1) = 0x01 notice / 0x02 ack ‖ session tag(8) = SHA-256("cbsb1 sid" ‖ sid)[0:8]
    ‖ nonce(12, random) ‖ AES-GCM(K_note, nonce, JSON body, AAD = "cbsb1 notify" ‖ kind ‖ tag)

The random 96-bit nonce needs no counter state on either side (the gateway keeps sessions in RAM
only); a session sends a few hundred notifications at most, far below GCM's random-nonce limit.
Replays are harmless: the app treats a notification id it has seen as a duplicate, and a body
only says what the cloud can confirm.

The thing's own result report (draft step 9 over IP, docs/cbsb.md §4.11) has the same form with
kind 0x03, in a CoAP POST to ``/cbsb/v1/report`` that the thing sends through the border router
once it is attached, sealed under ``K_rep = HKDF(K_appgw, salt = sid, info = "cbsb1 report",
16)``: the gateway hands ``K_rep`` to the session's things inside their (encrypted) delivery,
the app derives it itself. It is a session key, never ``K_appgw``: a thing learns nothing that
opens the gateway's notices, and a thing of the same session that forges another's report
only makes the app show something the cloud will not confirm.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto.cbsb_keys import hkdf_sha256
from gateway.errors import CryptoError, ParseError

KIND_NOTICE = 0x01
KIND_ACK = 0x02
KIND_REPORT = 0x03
TAG_LEN = 8
NONCE_LEN = 12
HEADER_LEN = 1 + TAG_LEN + NONCE_LEN
MAX_NOTICE = 2048
NOTIFY_PATH = ("cbsb", "v1", "notify")
REPORT_PATH = ("cbsb", "v1", "report")
_AAD = b"cbsb1 notify"
_KINDS = (KIND_NOTICE, KIND_ACK, KIND_REPORT)


def session_tag(sid: bytes) -> bytes:
    return hashlib.sha256(b"cbsb1 sid" + sid).digest()[:TAG_LEN]


def notify_key(k_appgw: bytes, sid: bytes) -> bytes:
    if len(k_appgw) != 32 or len(sid) != 16:
        raise CryptoError("K_appgw must be 32 bytes and sid 16 bytes")
    return hkdf_sha256(k_appgw, sid, b"cbsb1 notify", 16)


def report_key(k_appgw: bytes, sid: bytes) -> bytes:
    """``K_rep``: the key of the things' own reports in session ``sid``."""
    if len(k_appgw) != 32 or len(sid) != 16:
        raise CryptoError("K_appgw must be 32 bytes and sid 16 bytes")
    return hkdf_sha256(k_appgw, sid, b"cbsb1 report", 16)


def seal(
    k_appgw: bytes, sid: bytes, body: dict[str, Any], kind: int = KIND_NOTICE,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:  # fmt: skip
    """A gateway notice (or the app's ack of one) under ``K_note``."""
    return seal_with(notify_key(k_appgw, sid), sid, body, kind, rng)


def seal_with(
    key: bytes, sid: bytes, body: dict[str, Any], kind: int,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:  # fmt: skip
    """Seal under a derived 16-byte key (``K_note`` or ``K_rep``)."""
    if kind not in _KINDS or len(key) != 16 or len(sid) != 16:
        raise CryptoError("a notification needs a known kind, a 16-byte key and a 16-byte sid")
    header = bytes((kind,)) + session_tag(sid)
    nonce = rng(NONCE_LEN)
    plain = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    ct = AESGCM(key).encrypt(nonce, plain, _AAD + header)
    return header + nonce + ct


def peek(data: bytes) -> tuple[int, bytes]:
    """(kind, session tag) of a sealed notice or ack, so the receiver can pick the key."""
    if not isinstance(data, bytes | bytearray) or not HEADER_LEN + 16 <= len(data) <= MAX_NOTICE:
        raise ParseError("a notification has a header, a nonce and a tag")
    kind = data[0]
    if kind not in _KINDS:
        raise ParseError("unknown notification kind")
    return kind, bytes(data[1 : 1 + TAG_LEN])


def open_sealed(k_appgw: bytes, sid: bytes, data: bytes) -> tuple[int, dict[str, Any]]:
    """(kind, body); ParseError for malformed bytes, CryptoError for anything not sealed under
    this session's key."""
    return open_with(notify_key(k_appgw, sid), sid, data)


def open_with(key: bytes, sid: bytes, data: bytes) -> tuple[int, dict[str, Any]]:
    """:func:`open_sealed` under a derived 16-byte key (``K_note`` or ``K_rep``)."""
    kind, tag = peek(data)
    if tag != session_tag(sid):
        raise CryptoError("the notification is for another session")
    header = bytes(data[: 1 + TAG_LEN])
    nonce = bytes(data[1 + TAG_LEN : HEADER_LEN])
    try:
        plain = AESGCM(key).decrypt(nonce, bytes(data[HEADER_LEN:]), _AAD + header)
    except InvalidTag:
        raise CryptoError("the notification does not authenticate") from None
    try:
        body = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ParseError("the notification body is not JSON") from None
    if not isinstance(body, dict):
        raise ParseError("the notification body must be an object")
    return kind, body


def report_target(target: str) -> tuple[ipaddress.IPv6Address, int] | None:
    """The app's LAN endpoint (``[address]:port``) when a thing on the Thread network can reach
    it through the border router: an IPv6 unicast address that is neither link-local, loopback,
    unspecified nor IPv4-mapped. None otherwise (an IPv4 or loopback app still gets the
    gateway's notices; only the thing's own report over IP needs a route)."""
    host, sep, port_s = target.rpartition(":")
    if not sep or not host.startswith("[") or not host.endswith("]"):
        return None
    try:
        addr = ipaddress.IPv6Address(host[1:-1])
        port = int(port_s)
    except ValueError:
        return None
    if not 1 <= port <= 65535 or addr.is_link_local or addr.is_loopback or addr.is_multicast:
        return None
    if addr.is_unspecified or addr.ipv4_mapped is not None or addr.scope_id:
        return None
    return addr, port
