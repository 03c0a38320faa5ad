"""`gwctl doctor`'s cloud check tries every address the cloud's name resolves to.

On a standard Debian ``/etc/hosts`` ``localhost`` resolves to ``::1`` first, while a cloud (the
test's, or a real one behind a dual-stack name) may listen on one family only. The resolver is
replaced here so that the order does not depend on this machine's ``/etc/hosts``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.admin.doctor import FAIL, PASS, check_cloud


def _free_port(family: int, kind: int) -> int:
    """A port nothing listens on (bound, read, closed)."""
    with socket.socket(family, kind) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def resolve_v6_first(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """getaddrinfo answers ``::1`` before ``127.0.0.1`` for "localhost", as Debian's hosts does."""
    if not _ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")

    async def fake(self: Any, host: str, port: int, **kw: Any) -> list[Any]:
        assert host == "localhost"
        kind = kw.get("type", socket.SOCK_STREAM)
        return [
            (socket.AF_INET6, kind, 0, "", ("::1", port, 0, 0)),
            (socket.AF_INET, kind, 0, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake)
    yield


async def test_tcp_cloud_on_ipv4_only_passes_when_ipv6_comes_first(resolve_v6_first: None) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        # ::1 refuses this port (nothing listens there): the check must go on to 127.0.0.1
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            assert probe.connect_ex(("::1", port)) != 0
        check = await check_cloud(f"coaps+tcp://localhost:{port}", timeout=3.0)
    finally:
        srv.close()
    assert check.status == PASS, check
    assert "127.0.0.1" in check.detail


async def test_tcp_cloud_down_names_every_address_tried(resolve_v6_first: None) -> None:
    port = _free_port(socket.AF_INET, socket.SOCK_STREAM)
    check = await check_cloud(f"coaps+tcp://localhost:{port}", timeout=3.0)
    assert check.status == FAIL
    assert "::1" in check.detail and "127.0.0.1" in check.detail
    assert check.hint


async def test_udp_cloud_on_ipv4_only_passes_when_ipv6_comes_first(resolve_v6_first: None) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    try:
        check = await check_cloud(f"coaps://localhost:{port}", timeout=3.0)
    finally:
        srv.close()
    assert check.status == PASS, check
    assert "127.0.0.1" in check.detail
