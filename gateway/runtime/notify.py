"""systemd integration: READY/STATUS/WATCHDOG/STOPPING through systemd-python's sd_notify.

A no-op without NOTIFY_SOCKET (a service run by hand or in tests), and never fatal: a notify socket
that vanished is logged once and ignored. The watchdog is fed from a task that first asks the
service whether it is healthy (radio answering, event loop not lagging); an unhealthy service stops
feeding it and systemd restarts it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import Awaitable, Callable

LOG = logging.getLogger(__name__)


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._warned = False
        self.sent: list[str] = []  # for tests and `gwctl status`
        self.status = ""

    def _send(self, msg: str) -> None:
        self.sent.append(msg)
        del self.sent[:-50]
        if not self.enabled:
            return
        try:
            daemon = importlib.import_module("systemd.daemon")
            daemon.notify(msg)
        except (OSError, ImportError) as exc:
            if not self._warned:
                LOG.warning("cannot notify systemd: %s", exc)
                self._warned = True

    def ready(self, status: str) -> None:
        self.status = status
        self._send(f"READY=1\nSTATUS={status}")

    def set_status(self, status: str) -> None:
        self.status = status
        self._send(f"STATUS={status}")

    def stopping(self) -> None:
        self.status = "stopping"
        self._send("STOPPING=1\nSTATUS=stopping")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC when the watchdog is meant for this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        return max(0.05, int(usec) / 2e6)
    except ValueError:
        return None


async def watchdog_loop(
    notifier: Notifier,
    healthy: Callable[[], Awaitable[bool]],
    interval: float,
    max_lag: float = 2.0,
) -> None:
    """Feed the watchdog while ``healthy()`` says so and the loop is not lagging."""
    loop = asyncio.get_running_loop()
    expected = loop.time() + interval
    while True:
        await asyncio.sleep(interval)
        lag = loop.time() - expected
        expected = loop.time() + interval
        if lag > max_lag:
            LOG.warning("event loop lagged %.1f s; not feeding the watchdog", lag)
            continue
        try:
            async with asyncio.timeout(max(interval, 1.0)):
                ok = await healthy()
        except TimeoutError:
            ok = False
        if ok:
            notifier.watchdog()
        else:
            LOG.warning("health check failed; not feeding the watchdog")


def monotonic() -> float:
    return time.monotonic()
