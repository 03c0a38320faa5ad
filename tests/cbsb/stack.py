"""A whole CBSB system as separate processes for the system tests, the benchmark and manual runs:
the reference cloud, the three gateway services on an emulated radio (node 1), the user's app and
things on their own emulated radios (nodes 2..33), all on one simulated air (port offset K).

Ports: air 9000 + 34 K (OpenThread's simulation), cloud 30000 + K (TCP), apps 40000 + 10 K + i.
"""

from __future__ import annotations

import contextlib
import json
import os
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
SERVICES = {
    "radio": "gateway.radio",
    "border-router": "gateway.border_router",
    "group-owner": "gateway.group_owner",
}
PASSWORD = "correct horse battery"


def wait_until(pred: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def control_call(path: Path, method: str, timeout: float = 5.0, **params: Any) -> Any:
    """One JSON-lines request on a control socket (docs/sockets.md)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(
            json.dumps({"v": 1, "id": 1, "method": method, "params": params}).encode() + b"\n"
        )
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("control socket closed")
            buf += chunk
    for line in buf.splitlines():
        msg = json.loads(line)
        if msg.get("id") == 1:
            if "error" in msg:
                raise RuntimeError(msg["error"])
            return msg["result"]
    raise RuntimeError("no answer")


@dataclass
class Device:
    dev_id: str
    qr: str
    claim_code: str
    k_file: Path


@dataclass
class Stack:
    root: Path
    offset: int
    airtime: bool = True
    radio_extra: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    apps: int = 0
    # in network namespaces: every process starts behind cmd_prefix (``ip netns exec NS``), the
    # user's app behind app_prefix, reaching the cloud at app_cloud_url
    cmd_prefix: list[str] = field(default_factory=list)
    app_prefix: list[str] | None = None
    app_cloud_url: str | None = None
    cloud_listen: str | None = None
    cloud_hostnames: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)

    # --- paths and environment ---------------------------------------------------------------

    @property
    def cloud_port(self) -> int:
        return 30000 + self.offset

    @property
    def cloud_url(self) -> str:
        return f"coaps+tcp://127.0.0.1:{self.cloud_port}"

    @property
    def cloud_state(self) -> Path:
        return self.root / "cloud"

    @property
    def state_dir(self) -> Path:
        return self.root / "gw" / "state"

    @property
    def factory_dir(self) -> Path:
        return self.root / "gw" / "factory"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "gw" / "run"

    def control_socket(self, service: str) -> Path:
        return self.runtime_dir / service / "control.sock"

    def radio_url(self, node: int, extra: str = "") -> str:
        params = f"node={node}&port_offset={self.offset}&airtime={int(self.airtime)}"
        if self.radio_extra:
            params += f"&{self.radio_extra}"
        if extra:
            params += f"&{extra}"
        return f"emulated:?{params}"

    @property
    def gateway_radio_url(self) -> str:
        """Node 1: the emulated AT86RF233, or the simulated RCP (tests/radio_backend.py)."""
        params = f"airtime={int(self.airtime)}" + (
            f"&{self.radio_extra}" if self.radio_extra else ""
        )
        return gateway_radio_url(1, self.offset, params)

    def env(self, **extra: str) -> dict[str, str]:
        drop = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
                "INVOCATION_ID", "GATEWAY_RADIO_URL", "GATEWAY_CLOUD_URL",
                "GATEWAY_FACTORY_DIR")  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(
            GATEWAY_CONFIG=str(self.root / "gw" / "gateway.toml"),
            GATEWAY_STATE_DIR=str(self.state_dir),
            GATEWAY_RUNTIME_DIR=str(self.runtime_dir),
            GATEWAY_FACTORY_DIR=str(self.factory_dir),
            GATEWAY_RADIO_URL=self.gateway_radio_url,
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
        )
        env.update(gateway_radio_env(self.offset))
        env.update(extra)
        return env

    # --- processes ---------------------------------------------------------------------------

    def spawn(
        self, name: str, args: list[str], prefix: list[str] | None = None, **popen: Any
    ) -> subprocess.Popen[bytes]:
        log = self.root / "logs" / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "ab")  # noqa: SIM115  (the child keeps it)
        cmd = [*(self.cmd_prefix if prefix is None else prefix), sys.executable, *args]
        proc = subprocess.Popen(cmd, env=self.env(), stdout=fh, stderr=subprocess.STDOUT,
                                cwd=self.root, **popen)  # fmt: skip
        fh.close()
        self.procs[name] = proc
        return proc

    def run(
        self, args: list[str], timeout: float = 60.0, prefix: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*(self.cmd_prefix if prefix is None else prefix), sys.executable, *args]
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)  # fmt: skip

    def log(self, name: str) -> str:
        p = self.logs.get(name)
        return p.read_text(errors="replace") if p is not None and p.exists() else ""

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # --- the cloud ---------------------------------------------------------------------------

    def cloud(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(["-m", "gateway.peers.cloud", *args[:1], "--state", str(self.cloud_state),
                         *args[1:]])  # fmt: skip

    def start_cloud(self) -> None:
        before = len(self.log("cloud"))
        names = [a for h in self.cloud_hostnames for a in ("--hostname", h)]
        self.spawn("cloud", ["-m", "gateway.peers.cloud", "serve", "--state", str(self.cloud_state),
                             "--listen", self.cloud_listen or f"127.0.0.1:{self.cloud_port}",
                             *names])  # fmt: skip
        wait_until(lambda: "cloud listening" in self.log("cloud")[before:] or self._dead("cloud"),
                   30, "the cloud to listen")  # fmt: skip
        assert not self._dead("cloud"), self.log("cloud")

    def _dead(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is not None

    def enrol_gateway(self) -> dict[str, Any]:
        self.factory_dir.mkdir(parents=True, exist_ok=True)
        r = self.cloud("enrol-gateway", "--out", str(self.factory_dir / "cbsb-factory.json"),
                       "--cloud-url", self.cloud_url, "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def add_user(self, name: str) -> None:
        pw = self.root / f"{name}.password"
        pw.write_text(PASSWORD)
        r = self.cloud("add-user", "--user", name, "--password-file", str(pw))
        assert r.returncode == 0, r.stderr

    def enrol_device(self, name: str, dev_id: str | None = None) -> Device:
        k = self.root / f"{name}.kdev"
        extra = ["--dev-id", dev_id] if dev_id else []
        r = self.cloud("enrol-device", "--k-dev-file", str(k), "--json", *extra)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        return Device(doc["dev_id"], doc["qr"], doc["claim_code"], k)

    # --- the gateway -------------------------------------------------------------------------

    def start_services(self, names: tuple[str, ...] = tuple(SERVICES)) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            self.spawn(name, ["-m", SERVICES[name]])
            wait_until(lambda n=name: self._ready(n), 60, f"the {name} service")

    def _ready(self, name: str) -> bool:
        if self._dead(name):
            raise AssertionError(f"{name} exited:\n{self.log(name)}")
        try:
            return bool(control_call(self.control_socket(name), "status", 2)["phase"] != "starting")
        except (OSError, RuntimeError, ValueError):
            return False

    def go(self, method: str = "bootstrap", **params: Any) -> Any:
        return control_call(self.control_socket("group-owner"), method, 5.0, **params)

    def wait_cloud_link(self, timeout: float = 30) -> dict[str, Any]:
        def linked() -> Any:
            st = self.go()
            return st if (st.get("cloud") or {}).get("state") == "connected" else None

        return dict(wait_until(linked, timeout, "the group owner's cloud link"))

    # --- the app and things ------------------------------------------------------------------

    def app_args(self, user: str, *args: str) -> list[str]:
        return ["-m", "gateway.peers.app", "--state", str(self.root / f"app-{user}"), "--json",
                *args]  # fmt: skip

    def app_port(self, i: int) -> int:
        return 40000 + 10 * self.offset + i

    def login(self, user: str) -> None:
        r = self.run(self.app_args(user, "login", "--user", user, "--password-file",
                                   str(self.root / f"{user}.password"), "--cloud",
                                   self.app_cloud_url or self.cloud_url, "--ca",
                                   str(self.cloud_state / "ca.pem")), prefix=self.app_prefix)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr

    def app(self, user: str, *args: str, timeout: float = 60) -> tuple[int, list[dict[str, Any]]]:
        r = self.run(self.app_args(user, *args), timeout=timeout, prefix=self.app_prefix)
        return r.returncode, parse_lines(r.stdout)

    def app_bg(self, user: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, self.app_args(user, *args), prefix=self.app_prefix)

    def thing_args(self, dev: Device, node: int, out: Path, *extra: str) -> list[str]:
        return ["-m", "gateway.peers.thing", "cbsb", "--radio", self.radio_url(node), "--dev-id",
                dev.dev_id, "--k-dev-file", str(dev.k_file), "--out", str(out), "--json",
                *extra]  # fmt: skip

    def thing_bg(
        self, name: str, dev: Device, node: int, out: Path, *extra: str
    ) -> subprocess.Popen[bytes]:
        return self.spawn(name, self.thing_args(dev, node, out, *extra))

    def events(self, name: str) -> list[dict[str, Any]]:
        return parse_lines(self.log(name))

    def wait_exit(self, name: str, timeout: float) -> int:
        proc = self.procs[name]
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{name} still running after {timeout} s:\n{self.log(name)[-3000:]}"
            ) from None


def parse_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


@contextlib.contextmanager
def running_stack(root: Path, offset: int, **kw: Any) -> Iterator[Stack]:
    stack = Stack(root, offset, **kw)
    try:
        yield stack
    finally:
        stack.close()
