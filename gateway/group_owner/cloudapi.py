"""What the group owner, the reference cloud and the reference app share about the cloud API:
paths, the JSON-over-CoAP call with typed errors, the TLS contexts of each link, claim codes
and the QR format of a thing.

Transport (docs/cbsb-system.md §3): CoAP over TLS 1.3 (RFC 8323, ``coaps+tcp://``) through
aiocoap's ``tlsclient``/``tlsserver`` transports and Python's :mod:`ssl`. The gateway presents the
client certificate the cloud issued at registration (mutual authentication); the app authenticates
the cloud by its CA certificate and itself with a login token. Bodies are JSON (content format 50);
binary values travel as lowercase hex.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import ssl
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

LOG = logging.getLogger(__name__)

CONTENT_FORMAT_JSON = 50
API_PREFIX = ("v1",)
MAX_BODY = 16 * 1024


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


# ----------------------------------------------------------------------------- TLS contexts


def client_tls_context(
    ca_pem: str, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """TLS 1.3 client context that trusts only the cloud's CA; with ``cert_file``/``key_file``
    it also presents the gateway's certificate (mutual authentication)."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def server_tls_context(cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    """TLS 1.3 server context: gateways present a certificate issued by ``ca_file`` (checked by
    the handshake), apps present none and log in instead."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["coap"])
    return ctx


def peer_certificate(remote: object) -> bytes | None:
    """The DER certificate the TLS peer of an aiocoap request presented (None without one).

    aiocoap's TCP transport keeps the asyncio transport of a connection on the remote object;
    the certificate was verified against the CA during the handshake."""
    transport = getattr(remote, "_transport", None)
    if transport is None:
        return None
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None
    der = obj.getpeercert(binary_form=True)
    return bytes(der) if der else None


# ----------------------------------------------------------------------------- client


class CoapJsonClient:
    """Calls ``POST <base>/v1/<path>`` with a JSON body over CoAP-over-TLS.

    A connection failure drops the aiocoap context, so the next call reconnects from scratch
    (a restarted cloud, a new network)."""

    def __init__(self, base_url: str, tls: ssl.SSLContext, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.tls = tls
        self.timeout = timeout
        self._ctx: Any = None
        self._lock = asyncio.Lock()

    async def _context(self) -> Any:
        async with self._lock:
            if self._ctx is None:
                from aiocoap import Context

                ctx = await Context.create_client_context(transports=["tlsclient"])
                # aiocoap's credential map only knows a CA file for TLS; hand it our context
                # (which may carry the gateway's client certificate) for every origin.
                ctx.client_credentials.ssl_client_context = lambda _scheme, _host: self.tls
                self._ctx = ctx
            return self._ctx

    async def reset(self) -> None:
        async with self._lock:
            ctx, self._ctx = self._ctx, None
        if ctx is not None:
            with contextlib.suppress(Exception):
                await ctx.shutdown()

    async def call(
        self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        import aiocoap
        from aiocoap import error as coap_error

        ctx = await self._context()
        uri = f"{self.base_url}/{'/'.join(API_PREFIX)}/{path}"
        msg = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=encode_body(body or {}))
        msg.opt.content_format = CONTENT_FORMAT_JSON
        try:
            async with asyncio.timeout(timeout or self.timeout):
                resp = await ctx.request(msg).response
        except (TimeoutError, coap_error.NetworkError, coap_error.ResolutionError, OSError,
                ssl.SSLError) as exc:  # fmt: skip
            await self.reset()
            raise CloudUnreachable(
                f"cannot reach the cloud at {self.base_url}: {_why(exc)}"
            ) from None
        except coap_error.Error as exc:
            await self.reset()
            raise CloudUnreachable(f"the cloud connection failed: {_why(exc)}") from None
        try:
            doc = decode_body(resp.payload)
        except ValueError:
            doc = {}
        if not resp.code.is_successful():
            raise CloudApiError(
                str(doc.get("error", resp.code.name)),
                str(doc.get("message", f"the cloud answered {resp.code}")),
                hint=doc.get("hint") if isinstance(doc.get("hint"), str) else None,
            )
        return doc

    async def close(self) -> None:
        await self.reset()


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        text += f" ({cause})"
    return text[:200]
