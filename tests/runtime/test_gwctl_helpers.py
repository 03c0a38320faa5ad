"""Helpers of the gwctl tests (no tests here): the three services in a temporary directory on an
emulated radio, gwctl run as a technician runs it (a subprocess), and a raw control-socket query
that does not go through gwctl."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GWCTL = [sys.executable, "-m", "gateway.admin"]
SERVICE_MODULES = {"radio": "gateway.radio", "border-router": "gateway.border_router",
                   "group-owner": "gateway.group_owner"}  # fmt: skip


def gateway_env(root: Path, offset: int, radio_extra: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "NOTIFY_"))}
    env.update(
        GATEWAY_STATE_DIR=str(root / "state"),
        GATEWAY_RUNTIME_DIR=str(root / "run"),
        GATEWAY_CONFIG=str(root / "gateway.toml"),
        GATEWAY_RADIO_URL=f"emulated:?node=1&port_offset={offset}{radio_extra}",
        NO_COLOR="1",
    )
    env.pop("JOURNAL_STREAM", None)
    env.pop("INVOCATION_ID", None)
    return env


def gwctl(
    env: dict[str, str], *args: str, timeout: float = 30, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GWCTL, *args], env=env, capture_output=True, text=True, timeout=timeout, input=input
    )


def control_status(runtime_dir: Path, service: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The service's `status` over its control socket (protocol v1), or None without an answer."""
    path = runtime_dir / service / "control.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(b'{"v": 1, "id": 1, "method": "status", "params": {}}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
    except OSError:
        return None
    msg = json.loads(buf)
    result = msg.get("result")
    return result if isinstance(result, dict) else None


class Services:
    """The three services as subprocesses (stderr to files under the root)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, names: tuple[str, ...] = tuple(SERVICE_MODULES), timeout: float = 20) -> None:
        for name in names:
            with open(self.root / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", SERVICE_MODULES[name]], env=self.env,
                    stdout=log, stderr=log,
                )  # fmt: skip
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                st = control_status(self.root / "run", name)
                if st is not None and st.get("phase") == "ready":
                    pending.discard(name)
                elif self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited: {(self.root / f'{name}.log').read_text()}")
            time.sleep(0.05)
        if pending:
            raise RuntimeError(f"not ready in {timeout} s: {sorted(pending)}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
