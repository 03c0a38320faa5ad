"""Sends sealed LAN notifications (gateway.group_owner.notice) to the user's app: CoAP POST to
``coap://<target>/cbsb/v1/notify``, repeated with a growing interval (200 ms + 200 ms x i, at most
10 sends, cloud-bootstrap.md §10.7) until the app answers with a sealed acknowledgement."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from gateway.errors import CryptoError, ParseError
from gateway.wire import cbsb_notice as notice

LOG = logging.getLogger(__name__)
MAX_SENDS = 10


class LanNotifier:
    def __init__(self) -> None:
        self._ctx: Any = None
        self._lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(8)
        self.sent = 0
        self.acked = 0
        self.unacked = 0

    async def _context(self) -> Any:
        async with self._lock:
            if self._ctx is None:
                from aiocoap import Context

                self._ctx = await Context.create_client_context(transports=["udp6"])
            return self._ctx

    async def notify(self, target: str, k_appgw: bytes, sid: bytes, body: dict[str, Any]) -> bool:
        """True when the app acknowledged."""
        import aiocoap

        nid = secrets.token_hex(6)
        doc = {**body, "id": nid}
        async with self._sem:
            ctx = await self._context()
            for i in range(MAX_SENDS):
                payload = notice.seal(k_appgw, sid, doc)
                msg = aiocoap.Message(
                    mtype=aiocoap.NON, code=aiocoap.POST,
                    uri=f"coap://{target}/{'/'.join(notice.NOTIFY_PATH)}", payload=payload,
                )  # fmt: skip
                self.sent += 1
                interval = 0.2 + 0.2 * i
                try:
                    async with asyncio.timeout(interval):
                        resp = await ctx.request(msg).response
                except (TimeoutError, aiocoap.error.Error, OSError):
                    await asyncio.sleep(0)
                    continue
                try:
                    kind, ack = notice.open_sealed(k_appgw, sid, resp.payload)
                except (ParseError, CryptoError):
                    continue  # not our app: keep repeating
                if kind == notice.KIND_ACK and ack.get("id") == nid:
                    self.acked += 1
                    return True
            self.unacked += 1
            LOG.info("the app did not acknowledge notification %s (%s)", nid, body.get("event"))
            return False

    async def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            with contextlib.suppress(Exception):
                await ctx.shutdown()
