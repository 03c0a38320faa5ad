"""What the three services share: settings, logging, state directory, the control socket, systemd
readiness and watchdog, and a clean shutdown on SIGTERM.

A service subclasses :class:`Service` and is run by :func:`run_service` from its ``__main__``:

    python -m gateway.radio [--help]

Startup order: settings (a bad file exits 9 with the reason), logging, runtime and state
directories, the control socket (so `gwctl status` sees "starting"), the service's own start,
then READY=1. Fatal errors exit non-zero with a one-line reason so systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import click

from gateway import __version__
from gateway.errors import GatewayError
from gateway.runtime.jsonline import Connection, Handler, JsonLineServer
from gateway.runtime.logs import setup_logging
from gateway.runtime.notify import Notifier, watchdog_interval, watchdog_loop
from gateway.runtime.settings import Settings, load_settings

LOG = logging.getLogger(__name__)


class Service:
    """Base class of the gateway's services."""

    name: ClassVar[str] = "service"
    description: ClassVar[str] = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.runtime_dir = self.paths.service_runtime(self.name)
        self.state_dir = self.paths.state_dir
        self.notifier = Notifier()
        self.started_at = time.time()
        self.phase = "starting"
        self._tasks: set[asyncio.Task[Any]] = set()
        self.control: JsonLineServer | None = None

    # ---- to override

    async def start(self) -> None:
        """Open what the service owns; return when it is ready to serve."""

    async def stop(self) -> None:
        """Close everything opened in start (must not raise)."""

    async def healthy(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {}

    def methods(self) -> dict[str, Handler]:
        return {}

    # ---- helpers

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            LOG.error("task %s failed: %s", task.get_name(), exc, exc_info=exc)
            self.fail(f"internal task {task.get_name()} failed: {exc}")

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.notifier.set_status(phase)
        LOG.info("%s", phase)

    _fatal: str | None = None
    _fatal_hint: str = ""
    _exit_code: int = 1
    _stop_event: asyncio.Event | None = None

    def fail(self, reason: str) -> None:
        """Stop the service with an error exit (systemd restarts it)."""
        if self._fatal is None:
            self._fatal = reason
        if self._stop_event is not None:
            self._stop_event.set()

    async def _cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def base_status(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "version": __version__,
            "pid": os.getpid(),
            "phase": self.phase,
            "uptime_s": round(time.time() - self.started_at, 1),
            **self.status(),
        }

    def _all_methods(self) -> dict[str, Handler]:
        async def status(_c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
            return self.base_status()

        async def ping(_c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
            return {"pong": True}

        return {"status": status, "ping": ping, **self.methods()}

    # ---- lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_event.set)
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.control = JsonLineServer(self.paths.control_socket(self.name), self._all_methods())
        code = 0
        try:
            await self.control.start()
            self.set_phase("starting")
            # not spawn(): a failed start is reported below, as a reason rather than a traceback
            start = asyncio.ensure_future(self.start())
            start.set_name(f"{self.name}-start")
            self._tasks.add(start)
            stop_wait = asyncio.ensure_future(self._stop_event.wait())
            await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if start.done() and not start.cancelled() and start.exception() is None:
                self.phase = "ready"
                self.notifier.ready(f"ready ({self.description or self.name})")
                LOG.info("ready")
                interval = watchdog_interval()
                if interval is not None:
                    self.spawn(watchdog_loop(self.notifier, self.healthy, interval), "watchdog")
                await self._stop_event.wait()
            elif start.done() and not start.cancelled():
                exc = start.exception()
                if isinstance(exc, GatewayError):
                    # an expected failure (corrupt state, no radio): its reason, hint and exit
                    # code (DESIGN §8: 9 for bad configuration or state)
                    self._fatal = self._fatal or exc.message
                    self._fatal_hint = exc.hint
                    self._exit_code = exc.exit_code
                else:
                    LOG.error("start failed: %s", exc, exc_info=exc)
                    self._fatal = self._fatal or f"start failed: {exc}"
        finally:
            self.notifier.stopping()
            self.phase = "stopping"
            await self._cancel_tasks()
            with contextlib.suppress(Exception):
                await self.stop()
            await self.control.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if self._fatal is not None:
            LOG.error("stopped: %s", self._fatal)
            if self._fatal_hint:
                LOG.error("hint: %s", self._fatal_hint)
            code = self._exit_code
        return code


def run_service(cls: type[Service], argv: list[str] | None = None) -> None:
    """The ``python -m gateway.<service>`` entry point: ``--help`` and ``--version`` answer
    without touching anything; otherwise load the settings and run the service until it stops."""
    prog = f"python -m gateway.{cls.name.replace('-', '_')}"

    @click.command(
        help=cls.description,
        epilog=(
            "Configuration: $GATEWAY_CONFIG (default /etc/gateway/gateway.toml); state: "
            "$GATEWAY_STATE_DIR (/var/lib/gateway); sockets: $GATEWAY_RUNTIME_DIR "
            "(/run/gateway); radio: $GATEWAY_RADIO_URL overrides [radio] url."
        ),
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.version_option(__version__, prog_name=prog, message="%(prog)s %(version)s")
    def command() -> None:
        _run(cls)

    command.main(args=argv, prog_name=prog)


def _run(cls: type[Service]) -> None:
    try:
        settings = load_settings()
    except GatewayError as exc:
        sys.stderr.write(f"{cls.name}: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        sys.exit(exc.exit_code)
    setup_logging(cls.name, settings.logging.level)
    try:
        code = asyncio.run(cls(settings).run())
    except GatewayError as exc:
        LOG.error("%s (%s)", exc.message, exc.code)
        sys.exit(exc.exit_code)
    sys.exit(code)


def state_path(settings: Settings, name: str) -> Path:
    return settings.paths.state_dir / name


AsyncFn = Callable[[], Awaitable[None]]
