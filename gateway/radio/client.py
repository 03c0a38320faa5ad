"""A client of the radio service's socket, used by the border router, the group owner and gwctl.

It survives a restart of the radio service (``kill -9`` included): it reconnects with back-off and
restores its keys, addresses and subscriptions. Frames received while the radio service was away
are lost, as they would be on a radio that is switched off; a transmit requested during the gap
waits for the service to come back (up to its timeout) and is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, ServiceUnavailable
from gateway.runtime.jsonline import JsonLineClient

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RxEvent:
    psdu: bytes
    channel: int
    rssi: int
    lqi: int
    crc_ok: bool
    wall_time: float
    tx: bool
    secured: bool
    decrypted: bool
    plain: bytes | None  # header + plaintext payload when the service removed the security
    key_id: str | None
    frame_counter: int | None

    @classmethod
    def from_event(cls, e: dict[str, Any]) -> RxEvent:
        plain = e.get("plain")
        return cls(
            psdu=bytes.fromhex(e.get("psdu", "")),
            channel=int(e.get("channel", 0) or 0),
            rssi=int(e.get("rssi", 0) or 0),
            lqi=int(e.get("lqi", 0) or 0),
            crc_ok=bool(e.get("crc_ok", True)),
            wall_time=float(e.get("t", 0.0)),
            tx=bool(e.get("tx", False)),
            secured=bool(e.get("secured", False)),
            decrypted=bool(e.get("decrypted", False)),
            plain=bytes.fromhex(plain) if isinstance(plain, str) else None,
            key_id=e.get("key_id"),
            frame_counter=e.get("frame_counter"),
        )


@dataclass
class _Sub:
    params: dict[str, Any]
    queue: asyncio.Queue[RxEvent]
    server_id: int | None = None
    dropped: int = 0


@dataclass
class _Restore:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    addresses: dict[str, Any] = field(default_factory=dict)
    channel: int | None = None
    frame_pending: bool | None = None


class RadioClient:
    def __init__(self, path: Path, name: str, reconnect: bool = True) -> None:
        self.path = Path(path)
        self.name = name
        self.reconnect = reconnect
        self._client: JsonLineClient | None = None
        self._subs: list[_Sub] = []
        self._restore = _Restore()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.info: dict[str, Any] = {}
        self.reconnects = 0
        self.on_reconnect: Callable[[], None] | None = None

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect (waiting up to ``timeout`` for the radio service to appear)."""
        await self._connect_once(timeout)
        if self.reconnect:
            self._task = asyncio.ensure_future(self._supervise())

    async def _connect_once(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            client = JsonLineClient(self.path, on_event=self._on_event)
            try:
                await client.connect(timeout=max(0.1, deadline - loop.time()))
                self.info = await client.call(
                    "hello", timeout=max(5.0, deadline - loop.time()), client=self.name
                )
                self._client = client
                await self._restore_state()
                self._connected.set()
                return
            except (ServiceUnavailable, OSError) as exc:
                # OSError: a socket that vanished or reset between connect and hello, a full
                # listen backlog while the service starts (EAGAIN)
                await client.close()
                if loop.time() + delay > deadline:
                    if isinstance(exc, ServiceUnavailable):
                        raise
                    raise ServiceUnavailable(
                        f"the radio service at {self.path} does not answer: {exc}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except BaseException:
                await client.close()
                raise

    async def _restore_state(self) -> None:
        c = self._client
        assert c is not None
        r = self._restore
        if r.channel is not None:
            await c.call("set_channel", channel=r.channel)
        if r.addresses:
            await c.call("set_addresses", **r.addresses)
        if r.frame_pending is not None:
            await c.call("set_frame_pending", on=r.frame_pending)
        for params in r.keys.values():
            await c.call("register_key", **params)
        for sub in self._subs:
            res = await c.call("subscribe", **sub.params)
            sub.server_id = int(res["sub"])

    async def _supervise(self) -> None:
        while not self._closing:
            assert self._client is not None
            await self._client.closed.wait()
            self._connected.clear()
            if self.closing:
                return
            LOG.warning("radio service connection lost; reconnecting")
            await self._client.close()
            self._client = None
            while not self._closing:
                try:
                    await self._connect_once(timeout=5.0)
                    self.reconnects += 1
                    LOG.info("reconnected to the radio service")
                    if self.on_reconnect is not None:
                        self.on_reconnect()
                    break
                except GatewayError as exc:
                    LOG.debug("radio service not back yet: %s", exc)
                    await asyncio.sleep(0.5)
                except Exception as exc:  # noqa: BLE001 - the supervisor must outlive any failure
                    LOG.warning("reconnecting to the radio service failed (%s: %s); trying again",
                                type(exc).__name__, exc)  # fmt: skip
                    await asyncio.sleep(0.5)

    def _on_event(self, msg: dict[str, Any]) -> None:
        if msg.get("event") != "rx":
            return
        sid = msg.get("sub")
        try:
            ev = RxEvent.from_event(msg)
        except (ValueError, TypeError):
            return
        for sub in self._subs:
            if sub.server_id == sid:
                if sub.queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        sub.queue.get_nowait()
                    sub.dropped += 1
                sub.queue.put_nowait(ev)

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> Any:
        """Call a radio-socket method, waiting for a reconnection if the service restarts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self._connected.is_set():
                if not self.reconnect:
                    raise ServiceUnavailable("not connected to the radio service")
                try:
                    async with asyncio.timeout(max(0.01, deadline - loop.time())):
                        await self._connected.wait()
                except TimeoutError:
                    raise ServiceUnavailable(
                        "the radio service did not come back in time"
                    ) from None
            client = self._client
            assert client is not None
            try:
                return await client.call(
                    method, timeout=max(0.01, deadline - loop.time()), **params
                )
            except ServiceUnavailable:
                if not self.reconnect or method == "transmit":
                    # never risk sending a frame twice: the caller decides whether to retry
                    raise
                self._connected.clear()

    # ---- convenience wrappers

    async def transmit(self, frame: bytes, **kw: Any) -> dict[str, Any]:
        res: dict[str, Any] = await self.call("transmit", frame=frame.hex(), **kw)
        return res

    async def register_key(self, key_id: str, key: bytes, **kw: Any) -> None:
        params = {"key_id": key_id, "key": key.hex(), **kw}
        self._restore.keys[key_id] = params
        await self.call("register_key", **params)

    async def set_addresses(self, **kw: Any) -> None:
        if "ext_addr" in kw and isinstance(kw["ext_addr"], bytes):
            kw["ext_addr"] = kw["ext_addr"].hex()
        self._restore.addresses.update(kw)
        await self.call("set_addresses", **kw)

    async def energy_scan(self, channels: list[int], duration: float) -> dict[int, int]:
        """Peak energy (dBm) per channel, measured for ``duration`` seconds each."""
        res = await self.call("energy_scan", timeout=30.0 + len(channels) * duration,
                              channels=channels, duration=duration)  # fmt: skip
        return {int(c["channel"]): int(c["ed_dbm"]) for c in res["channels"]}

    async def set_channel(self, channel: int) -> None:
        self._restore.channel = channel
        await self.call("set_channel", channel=channel)

    async def set_frame_pending(self, on: bool) -> None:
        """The Frame Pending bit in ACKs of Data Requests (chip-wide; restored on reconnect)."""
        self._restore.frame_pending = on
        await self.call("set_frame_pending", on=on)

    async def subscribe(self, maxsize: int = 512, **flt: Any) -> asyncio.Queue[RxEvent]:
        sub = _Sub(flt, asyncio.Queue(maxsize))
        self._subs.append(sub)
        res = await self.call("subscribe", **flt)
        sub.server_id = int(res["sub"])
        return sub.queue

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.close()
        self._connected.clear()
