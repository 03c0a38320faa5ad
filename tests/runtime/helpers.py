"""Shared helpers for the runtime tests: the three services as real subprocesses in a temporary
directory, on an emulated radio on this test's own simulated air.

- :class:`Install` is one gateway "installation" (config, state and runtime directories).
- :class:`NotifySocket` plays systemd's notify socket (a bound AF_UNIX datagram socket).
- :class:`ServiceProcess` starts ``python -m gateway.<service>``, waits for READY and its control
  socket, and stops it with SIGTERM (checking exit 0 and no traceback).
- :class:`LineClient` is a tiny blocking JSON-lines client written from docs/sockets.md (not the
  project's own client), so the tests check the wire protocol rather than the client code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.radio_backend import gateway_radio_env, gateway_radio_url

REPO = Path(__file__).resolve().parents[2]
MODULES = {
    "radio": "gateway.radio",
    "border-router": "gateway.border_router",
    "group-owner": "gateway.group_owner",
}


def wait_until(pred: Any, timeout: float, what: str, step: float = 0.02) -> Any:
    """Poll ``pred()`` until it returns a truthy value (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


@dataclass
class Install:
    """A gateway installation in a temporary directory (DESIGN §5 environment overrides)."""

    root: Path
    port_offset: int
    node: int = 1
    radio_params: str = "airtime=0"

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def config(self) -> Path:
        return self.root / "gateway.toml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "run"

    def control_socket(self, service: str) -> Path:
        return self.runtime_dir / service / "control.sock"

    @property
    def radio_socket(self) -> Path:
        return self.runtime_dir / "radio" / "radio.sock"

    @property
    def radio_url(self) -> str:
        return gateway_radio_url(self.node, self.port_offset, self.radio_params)

    def environ(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")
            and k not in ("INVOCATION_ID", "GATEWAY_RADIO_URL")
        }
        env.update(
            GATEWAY_CONFIG=str(self.config),
            GATEWAY_STATE_DIR=str(self.state_dir),
            GATEWAY_RUNTIME_DIR=str(self.runtime_dir),
            GATEWAY_RADIO_URL=self.radio_url,
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
        )
        env.update(gateway_radio_env(self.port_offset))
        env.update(extra)
        return env


class NotifySocket:
    """A fake systemd notify socket: collects the datagrams a service sends to NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode())

    def assignments(self) -> list[str]:
        """Every ``KEY=value`` line received, in order."""
        return [line for m in self.drain() for line in m.splitlines() if line]

    def wait_for(self, line: str, timeout: float = 10.0) -> None:
        wait_until(lambda: line in self.assignments(), timeout, f"{line} on the notify socket")

    def close(self) -> None:
        self.sock.close()


def own_netns_possible() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


@dataclass
class ServiceProcess:
    """One service process. The border router and group owner run in a network namespace of
    their own when possible (root): they listen on fixed ports (the border agent's UDP 49191,
    mDNS) that other tests, or a gateway running on the same machine, may hold. They reach the
    radio service through its Unix socket, which a network namespace does not separate."""

    install: Install
    service: str
    env: dict[str, str] = field(default_factory=dict)
    notify: bool = True
    netns: bool | None = None
    proc: subprocess.Popen[bytes] | None = None
    notify_socket: NotifySocket | None = None
    started_at: float = 0.0
    ready_at: float = 0.0

    def __post_init__(self) -> None:
        self.logs = self.install.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.stderr_path = self.logs / f"{self.service}.{id(self)}.stderr"

    def start(self) -> ServiceProcess:
        extra = dict(self.env)
        if self.notify and self.notify_socket is None:
            nsock = self.install.root / f"notify-{self.service}-{id(self)}"
            self.notify_socket = NotifySocket(nsock)
        if self.notify_socket is not None:
            extra["NOTIFY_SOCKET"] = str(self.notify_socket.path)
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in wait()
        self.started_at = time.monotonic()
        cmd = [sys.executable, "-m", MODULES[self.service]]
        netns = self.netns if self.netns is not None else self.service != "radio"
        if netns and own_netns_possible():
            # unshare and sh exec in place: the pid stays the service's own
            cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up; exec "$0" "$@"', *cmd]
        self.proc = subprocess.Popen(
            cmd,
            env=self.install.environ(**extra),
            cwd=self.install.root,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> ServiceProcess:
        """READY=1 on the notify socket (or, without one, a control socket that answers)."""

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.service} exited early:\n{self.stderr()}")
            if self.notify_socket is not None:
                return "READY=1" in self.notify_socket.assignments()
            try:
                with LineClient(self.install.control_socket(self.service), timeout=1) as c:
                    return bool(c.call("status")["result"]["phase"] == "ready")
            except OSError:
                return False

        wait_until(ready, timeout, f"{self.service} to be ready")
        self.ready_at = time.monotonic()
        return self

    def status(self) -> dict[str, Any]:
        with LineClient(self.install.control_socket(self.service)) as c:
            reply = c.call("status")
        assert "result" in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        finally:
            with contextlib.suppress(Exception):
                self._stderr.close()
        return rc

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the service must exit 0 without a traceback."""
        rc = self.terminate(timeout)
        err = self.stderr()
        assert rc == 0, f"{self.service} exited {rc} on SIGTERM:\n{err}"
        assert "Traceback" not in err, f"{self.service} logged a traceback:\n{err}"

    def kill(self) -> None:
        """SIGKILL (no chance to clean up), and reap it."""
        assert self.proc is not None
        self.proc.kill()
        self.wait()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                self.wait()
        if self.notify_socket is not None:
            self.notify_socket.close()


class Services:
    """Starts services of one installation and always cleans them up (use as a context)."""

    def __init__(self, install: Install) -> None:
        self.install = install
        self.procs: list[ServiceProcess] = []

    def start(self, service: str, wait: bool = True, **kw: Any) -> ServiceProcess:
        sp = ServiceProcess(self.install, service, **kw)
        self.procs.append(sp)
        sp.start()
        if wait:
            sp.wait_ready()
        return sp

    def start_all(self) -> dict[str, ServiceProcess]:
        radio = self.start("radio")
        out = {"radio": radio}
        for name in ("border-router", "group-owner"):
            out[name] = self.start(name, wait=False)
        for name in ("border-router", "group-owner"):
            out[name].wait_ready()
        return out

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        for sp in reversed(self.procs):
            sp.cleanup()


@contextlib.contextmanager
def running(install: Install, *names: str) -> Iterator[dict[str, ServiceProcess]]:
    """The named services, started in order and ready; stopped cleanly (exit 0) at the end."""
    with Services(install) as svc:
        procs = {n: svc.start(n) for n in names}
        yield procs
        for n in reversed(names):
            if procs[n].alive():
                procs[n].stop()


class LineClient:
    """A blocking JSON-lines client: one request per line, replies matched by id, pushed events
    kept aside."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except BaseException:
            self.sock.close()
            raise
        self.timeout = timeout
        self.buf = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 1

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self, timeout: float | None = None) -> bytes | None:
        """The next line (without the newline); None on timeout; b"" when the peer closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return b""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def read_message(self, timeout: float | None = None) -> dict[str, Any] | None:
        line = self.read_line(timeout)
        if not line:
            return None
        msg: dict[str, Any] = json.loads(line)
        return msg

    def reply(self, req_id: Any, timeout: float | None = None) -> dict[str, Any]:
        """The reply with this id (events that arrive meanwhile are kept in ``events``)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self.read_message(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"no reply to request {req_id!r}")
            if "event" in msg:
                self.events.append(msg)
                continue
            assert msg.get("id") == req_id, f"reply {msg} for request {req_id!r}"
            return msg

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        req_id = self.next_id
        self.next_id += 1
        msg = {"v": 1, "id": req_id, "method": method, "params": params or {}}
        self.send_raw(json.dumps(msg).encode() + b"\n")
        return req_id

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """The whole reply object (``result`` or ``error``)."""
        return self.reply(self.request(method, params))

    def result(self, method: str, **params: Any) -> Any:
        reply = self.call(method, **params)
        assert "result" in reply, f"{method} failed: {reply}"
        return reply["result"]

    def event(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next pushed event, or None after ``timeout``."""
        if self.events:
            return self.events.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read_message(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return None
            if "event" in msg:
                return msg

    def drain_events(self, quiet: float = 0.2) -> list[dict[str, Any]]:
        out = list(self.events)
        self.events.clear()
        while (ev := self.event(quiet)) is not None:
            out.append(ev)
        return out


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def temp_install(port_offset: int, **kw: Any) -> Iterator[Install]:
    """An installation in a short directory under /tmp (Unix socket paths are limited to 107
    bytes, and pytest's own temporary paths can be long), removed afterwards."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="gw-rt-", dir="/tmp"))
    try:
        yield Install(root, port_offset, **kw)
    finally:
        shutil.rmtree(root, ignore_errors=True)
