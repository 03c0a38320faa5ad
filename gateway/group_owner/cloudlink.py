"""The group owner's link to the cloud (CoAP over TLS 1.3 with its client certificate).

It registers the gateway at first start (factory secret -> certificate for its own key), says
hello (a fresh boot id per process, so the cloud re-grants sessions a restart lost), long-polls
for commands, and carries reports in a bounded, ordered outbox that survives cloud outages: when
the cloud is unreachable the outbox waits and the link reconnects with back-off, without a
restart of the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.group_owner.identity import Factory, Identity, factory_path, load_factory
from gateway.runtime.coap_tls import CoapJsonClient, client_tls_context
from gateway.wire.cloudapi import CloudApiError, CloudUnreachable, registration_mac

LOG = logging.getLogger(__name__)

POLL_WAIT_S = 20
OUTBOX_MAX = 512


class CloudLink:
    def __init__(
        self,
        state_dir: Path,
        eui64: bytes,
        on_event: Callable[[dict[str, Any]], Awaitable[None]],
        fallback_url: str = "",
        factory_dir: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.factory_dir = Path(factory_dir) if factory_dir is not None else self.state_dir
        self.eui64 = eui64
        self.on_event = on_event
        self.fallback_url = fallback_url
        self.identity = Identity(self.state_dir)
        self._session_task: asyncio.Future[None] | None = None
        self._kicked = False
        self._kick_reason = ""
        self.factory: Factory | None = None
        self.boot_id = secrets.token_hex(8)
        self.state = "starting"
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.reconnects = 0
        self.claimed: bool | None = None
        self.outbox: deque[tuple[str, dict[str, Any]]] = deque()
        self.outbox_dropped = 0
        self._client: CoapJsonClient | None = None
        self._connected = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._after = 0
        self._was_connected = False

    @property
    def url(self) -> str:
        env = os.environ.get("GATEWAY_CLOUD_URL")
        if env:
            return env
        if self.factory is not None and self.factory.cloud_url:
            return self.factory.cloud_url
        return self.fallback_url

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.url,
            "serial": self.factory.serial if self.factory else None,
            "connected_since": self.connected_since,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "outbox": len(self.outbox),
            "outbox_dropped": self.outbox_dropped,
        }

    # --- calls -------------------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """A call now (raises CloudUnreachable when the link is down)."""
        client = self._client
        if client is None or not self.connected:
            raise CloudUnreachable("the gateway is not connected to the cloud")
        return await client.call(path, body, timeout=timeout)

    def post(self, path: str, body: dict[str, Any]) -> None:
        """Queue a report for delivery in order, whenever the cloud is reachable."""
        if len(self.outbox) >= OUTBOX_MAX:
            self.outbox.popleft()
            self.outbox_dropped += 1
        self.outbox.append((path, body))
        self._outbox_ready.set()

    # --- the link ----------------------------------------------------------------------------

    async def run(self) -> None:
        sender = asyncio.ensure_future(self._send_outbox())
        try:
            await self._run()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self._connected.clear()
            if self._client is not None:
                await self._client.close()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            factory = load_factory(factory_path(self.factory_dir, self.state_dir))
            if factory is None:
                self.state = "not provisioned (no factory file yet)"
                await asyncio.sleep(1.0)
                continue
            self.factory = factory
            try:
                self._session_task = asyncio.ensure_future(self._session(factory))
                await self._session_task
            except asyncio.CancelledError:
                if not self._kicked:
                    raise
                self._kicked = False
                self._down("reconnecting", self._kick_reason)
                backoff = 0.5
                continue
            except CloudUnreachable as exc:
                self._down("unreachable", exc.message)
            except CloudApiError as exc:
                self._down("refused", f"{exc.reason}: {exc.message}")
                if exc.reason == "UNKNOWN_GATEWAY":
                    # The cloud no longer knows our certificate: register again (factory proof).
                    with contextlib.suppress(FileNotFoundError):
                        self.identity.cert_file.unlink()
            if self._was_connected:
                self._was_connected = False
                backoff = 0.5
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 8.0)

    def reconnect(self, why: str) -> None:
        """Drop the current connection and connect again now (the uplink changed: the TCP
        connection may be dead without either side having noticed yet)."""
        task = self._session_task
        if task is not None and not task.done():
            self._kicked = True
            self._kick_reason = why
            task.cancel()

    def _down(self, state: str, why: str) -> None:
        if self._connected.is_set():
            LOG.warning("cloud link lost: %s", why)
            self.reconnects += 1
        elif self.last_error != why:
            LOG.warning("cloud %s: %s", state, why)
        self._connected.clear()
        self.connected_since = None
        self.state = state
        self.last_error = why

    async def _session(self, factory: Factory) -> None:
        url = self.url
        if not self.identity.registered_for(factory.serial, self.eui64, url):
            self.state = "registering"
            await self._register(factory, url)
        tls = client_tls_context(factory.cloud_ca, self.identity.cert_file, self.identity.key_file)
        if self._client is not None:
            await self._client.close()
        client = CoapJsonClient(url, tls, timeout=10.0)
        self._client = client
        hello = await client.call("gw/hello", {"boot_id": self.boot_id})
        self.claimed = bool(hello.get("claimed"))
        self.state = "connected"
        self.connected_since = time.time()
        self.last_error = None
        self._connected.set()
        self._was_connected = True
        self._outbox_ready.set()
        LOG.info("connected to the cloud at %s as %s", url, factory.serial)
        while True:
            res = await client.call(
                "gw/poll", {"after": self._after, "wait_s": POLL_WAIT_S}, timeout=POLL_WAIT_S + 10
            )
            events = res.get("events")
            for ev in events if isinstance(events, list) else []:
                if isinstance(ev, dict):
                    try:
                        await self.on_event(ev)
                    except Exception:  # a bad command must not end the link  # noqa: BLE001
                        LOG.exception("cloud command %s failed", ev.get("kind"))
            last = res.get("last")
            if isinstance(last, int) and last > self._after:
                self._after = last

    async def _register(self, factory: Factory, url: str) -> None:
        csr = await asyncio.to_thread(self.identity.csr_pem, factory.serial)  # key made, fsynced
        client = CoapJsonClient(url, client_tls_context(factory.cloud_ca), timeout=10.0)
        try:
            res = await client.call(
                "gw/register",
                {
                    "serial": factory.serial,
                    "eui64": self.eui64.hex(),
                    "csr": csr.decode(),
                    "mac": registration_mac(
                        factory.factory_secret, factory.serial, self.eui64, csr
                    ).hex(),
                },
            )
        finally:
            await client.close()
        cert = res.get("cert")
        if not isinstance(cert, str):
            raise CloudApiError("BAD_ANSWER", "the cloud sent no certificate")
        await asyncio.to_thread(self.identity.save_certificate, factory.serial, self.eui64, url,
                                cert)  # fmt: skip
        LOG.info("registered with the cloud as %s", factory.serial)

    async def _send_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            await self._connected.wait()
            if not self.outbox:
                self._outbox_ready.clear()
                continue
            path, body = self.outbox[0]
            try:
                await self.call(path, body, timeout=10.0)
            except CloudUnreachable:
                await asyncio.sleep(0.5)  # the link loop reconnects; keep the report
                continue
            except CloudApiError as exc:
                LOG.warning("cloud refused a report (%s): %s", exc.reason, exc.message)
            if self.outbox and self.outbox[0] == (path, body):
                self.outbox.popleft()
