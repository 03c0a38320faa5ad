"""An uplink change makes the cloud link reconnect at once instead of waiting for a dead
connection to time out; a cancellation from outside still stops it."""

from __future__ import annotations

import asyncio

import pytest

from gateway.group_owner import cloudlink
from gateway.group_owner.cloudlink import CloudLink


async def _noop(_ev):
    return None


@pytest.fixture
def link(tmp_path, monkeypatch):
    monkeypatch.setattr(cloudlink, "load_factory", lambda _path: object())
    link = CloudLink(tmp_path, bytes(8), _noop)
    sessions: list[int] = []

    async def session(_factory):
        sessions.append(len(sessions))
        await asyncio.sleep(3600)  # a long poll on a connection that may be dead

    monkeypatch.setattr(link, "_session", session)
    link.sessions = sessions  # type: ignore[attr-defined]
    return link


async def test_reconnect_starts_a_new_session_at_once(link):
    runner = asyncio.ensure_future(link._run())
    try:
        for _ in range(100):
            if link.sessions:
                break
            await asyncio.sleep(0.01)
        link.reconnect("the uplink changed")
        for _ in range(100):
            if len(link.sessions) >= 2:
                break
            await asyncio.sleep(0.01)
        assert len(link.sessions) == 2
        assert link.state == "reconnecting" and link.last_error == "the uplink changed"
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_outside_cancellation_still_stops_the_link(link):
    runner = asyncio.ensure_future(link._run())
    await asyncio.sleep(0.05)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert len(link.sessions) == 1
