"""CoAP over TLS 1.3 (RFC 8323, ``coaps+tcp://``) with JSON bodies: the TLS contexts of each
cloud link and the client that the group owner's cloud link and the reference app use.

Transport (docs/cbsb-system.md §3): aiocoap's ``tlsclient``/``tlsserver`` transports and
Python's :mod:`ssl`. The gateway presents the client certificate the cloud issued at registration
(mutual authentication); the app authenticates the cloud by its CA certificate and itself with a
login token. What travels is :mod:`gateway.wire.cloudapi`'s codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

from gateway.wire.cloudapi import (
    CONTENT_FORMAT_JSON,
    CloudUnreachable,
    api_path,
    decode_body,
    encode_body,
    error_of_response,
)

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
            connections = _pooled_connections(ctx)
            with contextlib.suppress(Exception):
                await ctx.shutdown()
            await _close_connections(connections)

    async def call(
        self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        import aiocoap
        from aiocoap import error as coap_error

        ctx = await self._context()
        uri = f"{self.base_url}/{'/'.join(api_path(path))}"
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
        if not resp.code.is_successful():
            raise error_of_response(str(resp.code.name), str(resp.code), resp.payload)
        try:
            return decode_body(resp.payload)
        except ValueError:
            return {}

    async def close(self) -> None:
        await self.reset()


CONNECTION_CLOSE_TIMEOUT_S = 2.0


def _pooled_connections(ctx: Any) -> dict[asyncio.Future[None], Any]:
    """The TCP/TLS connections an aiocoap client context holds open, each with a future that
    its connection_lost resolves.

    aiocoap 0.4's client shutdown only sends a CoAP Release and leaves closing the socket to the
    peer, so a closed client could leave a TLS transport behind; we close them ourselves."""
    loop = asyncio.get_running_loop()
    found: dict[asyncio.Future[None], Any] = {}
    for manager in getattr(ctx, "request_interfaces", ()):
        pool = getattr(getattr(manager, "token_interface", None), "_pool", None)
        if not isinstance(pool, dict):
            continue
        for conn in pool.values():
            transport = getattr(conn, "_transport", None)
            if transport is None:
                continue
            lost: asyncio.Future[None] = loop.create_future()
            original = conn.connection_lost

            def connection_lost(exc: BaseException | None, _orig: Any = original,
                                _lost: asyncio.Future[None] = lost) -> None:  # fmt: skip
                if not _lost.done():
                    _lost.set_result(None)
                with contextlib.suppress(Exception):
                    _orig(exc)

            conn.connection_lost = connection_lost
            found[lost] = transport
    return found


async def _close_connections(connections: dict[asyncio.Future[None], Any]) -> None:
    if not connections:
        return
    for transport in connections.values():
        if not transport.is_closing():
            transport.close()
    _done, pending = await asyncio.wait(connections, timeout=CONNECTION_CLOSE_TIMEOUT_S)
    for lost in pending:
        connections[lost].abort()  # the peer never finished the TLS close: drop the socket


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        text += f" ({cause})"
    return text[:200]
