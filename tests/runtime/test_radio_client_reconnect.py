"""The radio client's supervisor outlives whatever a restarting radio service does to it: a
service that accepts and never answers, one that resets connections, then one that works. (A
``hello`` that timed out used to end the supervisor for good: the service stayed disconnected.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.radio.client import RadioClient

pytestmark = pytest.mark.timeout(120)


class FakeRadioService:
    """A JSON-lines radio socket whose behaviour the test switches: "good", "silent" (reads,
    never answers) or "reset" (closes each connection at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mode = "good"
        self.hellos = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if self.mode == "reset":
            writer.transport.abort()
            return
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if self.mode == "silent":
                    continue
                if msg.get("method") == "hello":
                    self.hellos += 1
                writer.write(json.dumps({"v": 1, "id": msg["id"], "result": {}}).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass

    async def drop_everyone(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        await self.drop_everyone()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _until(pred: Callable[[], bool], timeout: float) -> None:
    """Waits for state of the client under test that it exposes as no event."""
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_supervisor_survives_a_silent_then_resetting_service(tmp_path: Path) -> None:
    service = FakeRadioService(tmp_path / "radio.sock")
    await service.start()
    client = RadioClient(service.path, "test")
    try:
        await client.start(timeout=10)
        assert service.hellos == 1 and client.reconnects == 0
        # The restarted service accepts connections but answers nothing for a while, then
        # resets them: every reconnection attempt fails, in both ways.
        service.mode = "silent"
        await service.drop_everyone()
        await _until(lambda: not client.connected, 10)
        await _until(lambda: len(service.writers) >= 1, 30)  # a hello is waiting, unanswered
        service.mode = "reset"
        await _until(lambda: len(service.writers) >= 3, 60)
        assert not client.connected and client.reconnects == 0
        service.mode = "good"
        await _until(lambda: client.connected, 60)
        assert client.reconnects == 1 and service.hellos == 2
        assert client._task is not None and not client._task.done()
    finally:
        await client.close()
        await service.close()
