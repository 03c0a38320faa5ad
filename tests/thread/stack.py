"""The gateway's radio and border router services as subprocesses in a temporary directory, on
an emulated radio on this test's own simulated air, with the border agent on loopback (its port
and the DNS-SD instance are unique per port offset, so tests can run side by side).

Peers (the reference joiner, the external commissioner) run in this process or as their own
subprocesses, on the same air and the same loopback."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.wire.dataset import ActiveDataset
from tests.runtime.helpers import Install, LineClient, wait_until

REPO = Path(__file__).resolve().parents[2]
MODULES = {"radio": "gateway.radio", "border-router": "gateway.border_router"}


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class ThreadStack:
    root: Path
    port_offset: int
    channel: int = 15
    mdns: bool = False
    max_children: int | None = None
    border_extra: str = ""  # more [border_router] lines (e.g. infra_interface = "...")
    cmd_prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", "ns"]
    radio_params: str = ""  # extra emulated-radio URL parameters, for every radio of the stack
    env_extra: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.install = Install(self.root, self.port_offset, node=1, radio_params=self.radio_params)
        self.ba_port = 20000 + self.port_offset * 7 % 20000  # away from 49191 and other tests
        self.install.config.write_text(
            '[network]\nuplink = "lo"\n'
            f"[thread]\nchannel = {self.channel}\n"
            f"[border_router]\nborder_agent_port = {self.ba_port}\n"
            f"advertise_mdns = {'true' if self.mdns else 'false'}\n"
            + (f"max_children = {self.max_children}\n" if self.max_children is not None else "")
            + self.border_extra
        )

    # -- processes ------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = self.install.environ(**self.env_extra, **extra)
        env.pop("NOTIFY_SOCKET", None)
        return env

    def peer_env(self) -> dict[str, str]:
        env = self.env()
        env.pop("GATEWAY_RADIO_URL", None)
        return env

    def start(self, name: str) -> Proc:
        log = self.root / f"{name}.log"
        fh = open(log, "ab")  # noqa: SIM115 - the child keeps it
        p = subprocess.Popen(
            [*self.cmd_prefix, sys.executable, "-m", MODULES[name]],
            env=self.env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
        )
        fh.close()
        proc = Proc(name, p, log)
        self.procs[name] = proc

        def ready() -> bool:
            if not proc.alive():
                raise AssertionError(f"{name} exited early:\n{proc.stderr()}")
            try:
                with LineClient(self.install.control_socket(name), timeout=2) as c:
                    return bool(c.call("status")["result"]["phase"] == "ready")
            except (OSError, KeyError, AssertionError):
                return False

        wait_until(ready, 30, f"{name} to be ready", step=0.05)
        return proc

    def start_all(self) -> ThreadStack:
        self.start("radio")
        self.start("border-router")
        return self

    def stop(self) -> None:
        for name in ("border-router", "radio"):
            p = self.procs.get(name)
            if p is None or not p.alive():
                continue
            p.proc.send_signal(signal.SIGTERM)
            try:
                rc = p.proc.wait(15)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(5)
                raise AssertionError(f"{name} did not stop on SIGTERM:\n{p.stderr()}") from None
            err = p.stderr()
            assert rc == 0, f"{name} exited {rc}:\n{err}"
            assert "Traceback" not in err, f"{name} logged a traceback:\n{err}"

    def cleanup(self) -> None:
        for p in self.procs.values():
            if p.alive():
                p.proc.kill()
                with contextlib.suppress(Exception):
                    p.proc.wait(5)

    # -- the border router ----------------------------------------------------------------------

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """The reply object (``result`` or ``error``) of a border-router control method."""
        with LineClient(self.install.control_socket("border-router"), timeout=timeout) as c:
            return c.call(method, timeout=timeout, **params)

    def result(self, method: str, timeout: float = 30.0, **params: Any) -> Any:
        reply = self.call(method, timeout=timeout, **params)
        assert "result" in reply, f"{method} failed: {reply}"
        return reply["result"]

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = self.result("status")
        return st

    def dataset(self) -> ActiveDataset:
        raw = json.loads((self.install.state_dir / "thread-network.json").read_text())
        body = raw.get("body", raw)
        return ActiveDataset.from_hex(body["active_dataset"])

    def radio_url(self, node: int) -> str:
        extra = f"&{self.radio_params}" if self.radio_params else ""
        return f"emulated:?node={node}&port_offset={self.port_offset}{extra}"

    def secret_file(self, value: str) -> Path:
        """A new file holding ``value``, for a peer's ``--...-file`` option (secrets never go
        on a command line); the file's name does not carry the secret."""
        d = self.root / "secrets"
        d.mkdir(exist_ok=True)
        f = d / f"secret-{uuid.uuid4().hex[:12]}"
        f.write_text(value + "\n")
        f.chmod(0o600)
        return f

    def joiner_cmd(self, node: int, pskd: str, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "gateway.peers.thing", "join", "--radio", self.radio_url(node),
            "--pskd-file", str(self.secret_file(pskd)), "--channels", str(self.channel), *extra,
        ]  # fmt: skip


@contextlib.contextmanager
def thread_stack(root: Path, port_offset: int, **kw: Any) -> Iterator[ThreadStack]:
    stack = ThreadStack(root, port_offset, **kw)
    try:
        stack.start_all()
        yield stack
        stack.stop()
    finally:
        stack.cleanup()


def run_joiner(stack: ThreadStack, node: int, pskd: str, *extra: str,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        stack.joiner_cmd(node, pskd, *extra),
        env=stack.peer_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=stack.root,
    )


class Thing:
    """A reference thing subprocess whose JSON lines (stdout) are read in a thread."""

    def __init__(self, cmd: list[str], stack: ThreadStack, log: Path) -> None:
        self.log = log
        self._err = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=stack.peer_env(), cwd=stack.root, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._err, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue

    def wait_event(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and self.lines.empty():
                raise AssertionError(f"{what}: not seen\n{self.log.read_text(errors='replace')}")
            try:
                doc = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if pred(doc):
                return doc

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        finally:
            self._reader.join(5)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self._err.close()
        return rc
