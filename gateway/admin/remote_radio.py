"""The running radio service, seen through its radio socket with the subset of the
:class:`drivers.radio.Radio` surface that ``gwctl radio`` uses.

While the services run they own the radio; ``gwctl radio`` then goes through the radio service
instead of opening the chip a second time. What differs from a directly opened radio:

* the channel belongs to the gateway's network: moving it is refused while the radio service
  has other clients (the border router, the group owner);
* a sniffer sees what the service's radio hears (its address filter applies: the chip's
  promiscuous mode would switch off auto-ACK for the whole gateway) plus everything the
  service transmits, for every client;
* frames are sent as given (``auto_seq`` off: the sequence number in ``--hex`` is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.errors import GatewayError, RadioNotResponding, ServiceUnavailable
from gateway.admin.errors import ChannelInUse
from gateway.radio.client import RxEvent
from gateway.runtime.jsonline import JsonLineClient

CLIENT_NAME = "gwctl"


class RemoteSubscription:
    """Received (and, with ``include_tx``, transmitted) frames of one subscription."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[RxEvent] = asyncio.Queue(maxsize)
        self.sub_id: int | None = None
        self.dropped = 0

    def put(self, ev: RxEvent) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(ev)


class RemoteRadio:
    """``async with await RemoteRadio.connect(path) as r: ...``"""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._client = JsonLineClient(self.path, on_event=self._on_event)
        self._subs: dict[int, RemoteSubscription] = {}
        self.hello: dict[str, Any] = {}
        self.channel = 0
        self.connect_ms = 0.0
        self._restore_channel: int | None = None

    @classmethod
    async def connect_if_running(cls, path: Path, timeout: float = 5.0) -> RemoteRadio | None:
        """The running radio service, or None when nothing listens on its socket. A service that
        accepts but does not answer is an error (never open the chip under a live service)."""
        if not Path(path).exists():  # noqa: ASYNC240 - one stat of a local socket file
            return None
        remote = cls(path)
        t0 = time.monotonic()
        try:
            await remote._client.connect(timeout=1.0)
        except ServiceUnavailable:
            await remote._client.close()
            return None  # a stale socket file: the service is not running
        try:
            remote.hello = await remote._client.call("hello", timeout=timeout, client=CLIENT_NAME)
        except TimeoutError:
            await remote.close()
            raise ServiceUnavailable(
                f"the radio service accepted a connection on {path} but did not answer",
                hint="It may be hung: 'gwctl logs --service radio', 'systemctl restart gateway-radio'.",
            ) from None
        except BaseException:
            await remote.close()
            raise
        remote.channel = int(remote.hello.get("channel", 0))
        remote.connect_ms = round((time.monotonic() - t0) * 1000, 1)
        return remote

    # ---- the Radio-like surface

    @property
    def info(self) -> dict[str, Any]:
        radio = self.hello.get("radio")
        return dict(radio) if isinstance(radio, dict) else {}

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> Any:
        return await self._client.call(method, timeout=timeout, **params)

    async def status(self) -> dict[str, Any]:
        st = await self.call("status", timeout=10.0)
        if not isinstance(st, dict):
            raise ServiceUnavailable("the radio service sent a malformed status")
        return st

    async def set_channel(self, channel: int) -> None:
        """Move the service's radio, only when nobody else uses it; restored on close."""
        if channel == self.channel:
            return
        st = await self.status()
        others = int(st.get("clients", 1)) - 1
        if others > 0:
            raise ChannelInUse(
                f"the radio service is on channel {self.channel} for {others} other client(s); "
                f"refusing to move it to channel {channel}"
            )
        await self.call("set_channel", channel=channel)
        if self._restore_channel is None:
            self._restore_channel = self.channel
        self.channel = channel

    async def energy_scan(
        self,
        channels: list[int],
        duration: float,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> dict[int, int]:
        """One request per channel, so that the service returns to its own channel in between
        (its clients lose less) and progress can be shown."""
        out: dict[int, int] = {}
        for i, ch in enumerate(channels):
            res = await self.call("energy_scan", channels=[ch], duration=duration,
                                  timeout=duration + 10.0)  # fmt: skip
            rows = res.get("channels") if isinstance(res, dict) else None
            if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
                raise RadioNotResponding("the radio service sent a malformed scan result")
            out[ch] = int(rows[0]["ed_dbm"])
            if progress is not None:
                progress(ch, i + 1, len(channels))
        return out

    async def transmit(
        self, frame: bytes, csma: bool = True, retries: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"frame": frame.hex(), "csma": csma, "auto_seq": False}
        if retries is not None:
            params["retries"] = retries
        res = await self.call("transmit", **params)
        if not isinstance(res, dict) or not isinstance(res.get("status"), str):
            raise RadioNotResponding("the radio service sent a malformed transmit result")
        return res

    async def subscribe(self, include_tx: bool = True, maxsize: int = 4096) -> RemoteSubscription:
        sub = RemoteSubscription(maxsize)
        res = await self.call("subscribe", include_tx=include_tx)
        sub.sub_id = int(res["sub"])
        self._subs[sub.sub_id] = sub
        return sub

    async def next_frame(self, sub: RemoteSubscription, timeout: float | None) -> RxEvent | None:
        """The next frame, or None on timeout or when the service went away (see ``closed``)."""
        if not sub.queue.empty():
            return sub.queue.get_nowait()
        get = asyncio.ensure_future(sub.queue.get())
        gone = asyncio.ensure_future(self._client.closed.wait())
        try:
            done, _ = await asyncio.wait({get, gone}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            for t in (get, gone):
                t.cancel()
            await asyncio.gather(get, gone, return_exceptions=True)
        if get in done and not get.cancelled():
            return get.result()
        return None

    @property
    def closed(self) -> bool:
        return self._client.closed.is_set()

    def _on_event(self, msg: dict[str, Any]) -> None:
        if msg.get("event") != "rx":
            return
        sub = self._subs.get(msg.get("sub"))  # type: ignore[arg-type]
        if sub is None:
            return
        try:
            ev = RxEvent.from_event(msg)
        except (ValueError, TypeError):
            return
        sub.put(ev)

    async def close(self) -> None:
        if self._restore_channel is not None and not self.closed:
            with contextlib.suppress(GatewayError, TimeoutError, OSError):
                await self.call("set_channel", channel=self._restore_channel, timeout=5.0)
        await self._client.close()

    async def __aenter__(self) -> RemoteRadio:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
