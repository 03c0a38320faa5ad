"""The cloud API that the group owner, the reference cloud and the reference app share (sans-IO):
paths, the JSON body codec and its field checks, the typed errors of a call, claim codes, the QR
format of a thing, the factory record's format and the registration proof.

The transport (docs/cbsb-system.md §3, CoAP over TLS 1.3) is :mod:`gateway.runtime.coap_tls`;
this module only turns values into bytes and back. Bodies are JSON (content format 50); binary
values travel as lowercase hex.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from gateway.errors import GatewayError

CONTENT_FORMAT_JSON = 50
API_PREFIX = ("v1",)
MAX_BODY = 16 * 1024
# The ``format`` of the factory record the cloud writes at manufacturing (enrol-gateway) and the
# group owner reads at first start.
FACTORY_FORMAT = "cbsb-gateway-factory"


# ----------------------------------------------------------------------------- errors


class CloudApiError(GatewayError):
    """The cloud answered with an error: ``reason`` is the stable name it gave (for example
    ``BIND_REJECTED``, ``UNAUTHORIZED``, ``OWNED_ELSEWHERE``)."""

    code = "GO001"
    default_hint = "See the message; the cloud refused the request."

    def __init__(self, reason: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "reason": self.reason}


class CloudUnreachable(GatewayError):
    """No answer from the cloud (connection refused, TLS failure, timeout)."""

    code = "GO002"
    exit_code = 8
    default_hint = "Check the Internet connection and the cloud address; it retries by itself."


class BadClaimCode(GatewayError):
    code = "GO003"
    exit_code = 2
    default_hint = (
        "A claim code has 10 letters and digits (for example 4F7QK-2M9XC); check for typos."
    )


# ----------------------------------------------------------------------------- claim codes

# Crockford's base32: no I, L, O or U, so a code read off a label is hard to misread.
CLAIM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INDEX = {c: i for i, c in enumerate(CLAIM_ALPHABET)}
_READ_AS = {"O": "0", "I": "1", "L": "1"}
CLAIM_SYMBOLS = 10  # nine random symbols (45 bits) and one Damm check symbol

# Damm's check over a totally anti-symmetric quasigroup of order 32: x * y = 2x + y in GF(32)
# (GF(2)[t] / (t^5 + t^2 + 1), "2" being t). For a != 0, 1 in a field, x * y = a x + y is a
# quasigroup (each row and column a permutation) and totally anti-symmetric: (c*x)*y = (c*y)*x
# gives (a - 1)(x - y) = 0, so x = y. Damm (2004) shows that such a check catches every
# single-symbol error and every transposition of two adjacent symbols; Luhn mod 32, used before,
# misses some adjacent transpositions.
_GF32_POLY = 0b100101


def _times_two(x: int) -> int:
    x <<= 1
    return x ^ _GF32_POLY if x & 0x20 else x


def damm_op(interim: int, symbol: int) -> int:
    """The quasigroup operation (both 0..31)."""
    return _times_two(interim) ^ symbol


def damm_interim(symbols: list[int]) -> int:
    interim = 0
    for v in symbols:
        interim = damm_op(interim, v)
    return interim


def damm_check_symbol(symbols: list[int]) -> int:
    """The symbol c that makes ``damm_interim(symbols + [c]) == 0``."""
    return _times_two(damm_interim(symbols))  # 2i + c = 0 in GF(32), characteristic 2


def new_claim_code() -> str:
    vals = [secrets.randbelow(len(CLAIM_ALPHABET)) for _ in range(CLAIM_SYMBOLS - 1)]
    vals.append(damm_check_symbol(vals))
    return "".join(CLAIM_ALPHABET[v] for v in vals)


def format_claim_code(code: str) -> str:
    """``XXXXX-XXXXX`` as printed on a label."""
    return f"{code[:5]}-{code[5:]}"


def normalize_claim_code(text: str) -> str:
    """Accept a code as a person types it (any case, spaces or dashes, O for 0, I or L for 1);
    raise :class:`BadClaimCode` saying what is wrong."""
    raw = "".join(ch for ch in text.upper() if ch not in " -_\t")
    raw = "".join(_READ_AS.get(ch, ch) for ch in raw)
    if len(raw) != CLAIM_SYMBOLS:
        raise BadClaimCode(f"a claim code has {CLAIM_SYMBOLS} letters and digits, not {len(raw)}")
    bad = sorted({ch for ch in raw if ch not in _INDEX})
    if bad:
        raise BadClaimCode(f"a claim code cannot contain {', '.join(repr(c) for c in bad)}")
    vals = [_INDEX[ch] for ch in raw]
    if damm_interim(vals) != 0:
        raise BadClaimCode("this claim code has a typo (its check symbol does not match)")
    return raw


def claim_digest(code: str) -> str:
    """What the cloud stores instead of a claim code."""
    return hashlib.sha256(b"cbsb claim " + normalize_claim_code(code).encode()).hexdigest()


def claim_matches(code: str, digest: str) -> bool:
    try:
        mine = claim_digest(code)
    except BadClaimCode:
        return False
    return hmac.compare_digest(mine, digest)


QR_PREFIX = "CBSB1"


def thing_qr(dev_id: bytes, claim_code: str) -> str:
    """The text of a thing's QR code: ``CBSB1:<dev_id hex>:<claim code>``."""
    return f"{QR_PREFIX}:{dev_id.hex()}:{normalize_claim_code(claim_code)}"


def parse_thing_qr(text: str) -> tuple[bytes, str]:
    parts = text.strip().split(":")
    if len(parts) != 3 or parts[0].upper() != QR_PREFIX:
        raise BadClaimCode(
            "this is not a thing's setup code", hint="It looks like CBSB1:<16 hex digits>:<code>."
        )
    try:
        dev_id = bytes.fromhex(parts[1])
    except ValueError:
        dev_id = b""
    if len(dev_id) != 8:
        raise BadClaimCode("the device number in the setup code must be 16 hex digits")
    return dev_id, normalize_claim_code(parts[2])


def registration_mac(secret: bytes, serial: str, eui64: bytes, csr_pem: bytes) -> bytes:
    """The gateway's proof of its factory identity at registration: HMAC-SHA256 under the factory
    secret over its serial, its radio address and the hash of its certificate request (whose own
    signature proves possession of the new private key)."""
    msg = b"cbsb-gw-register\0" + serial.encode() + b"\0" + eui64 + hashlib.sha256(csr_pem).digest()
    return hmac.new(secret, msg, hashlib.sha256).digest()


# ----------------------------------------------------------------------------- hex helpers


def hex_field(body: dict[str, Any], name: str, length: int | None = None) -> bytes:
    """A hex field of a request body, checked (raises ValueError with the field name)."""
    raw = body.get(name)
    if not isinstance(raw, str) or len(raw) > 4096:
        raise ValueError(f"'{name}' must be a hex string")
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        raise ValueError(f"'{name}' is not hex") from None
    if length is not None and len(data) != length:
        raise ValueError(f"'{name}' must be {length} bytes")
    return data


def str_field(body: dict[str, Any], name: str, max_len: int = 256) -> str:
    raw = body.get(name)
    if not isinstance(raw, str) or not 0 < len(raw) <= max_len:
        raise ValueError(f"'{name}' must be a string of 1..{max_len} characters")
    return raw


def int_field(body: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    raw = body.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise ValueError(f"'{name}' must be an integer within {lo}..{hi}")
    return raw


def decode_body(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_BODY:
        raise ValueError("body too large")
    try:
        doc = json.loads(payload.decode("utf-8")) if payload else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("body must be a JSON object")
    return doc


def encode_body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def api_path(path: str) -> tuple[str, ...]:
    """The URI path segments of an API call (``gw/poll`` -> ``("v1", "gw", "poll")``)."""
    return (*API_PREFIX, *path.split("/"))


def error_of_response(code_name: str, code_text: str, payload: bytes) -> CloudApiError:
    """The typed error an unsuccessful answer stands for: its body's reason, message and hint,
    else the response code (``code_name`` as the reason, ``code_text`` in the message)."""
    try:
        doc = decode_body(payload)
    except ValueError:
        doc = {}
    hint = doc.get("hint")
    return CloudApiError(
        str(doc.get("error", code_name)),
        str(doc.get("message", f"the cloud answered {code_text}")),
        hint=hint if isinstance(hint, str) else None,
    )
