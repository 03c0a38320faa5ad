"""A small driver for one OpenThread simulation CLI process (``ot-cli-ftd``) used as an
interoperability peer on the simulated air.

Each node runs in its own session (so a stray Ctrl-C byte the CLI turns into ``kill(0, SIGINT)``
cannot reach pytest), in a fresh temporary working directory (OpenThread keeps its settings in
``./tmp/<offset>_<id>.flash``, so no dataset survives from an earlier run) and with ``PORT_OFFSET``
set, which puts it on the air group ``224.0.0.116:(9000 + 34 * offset)``.

The CLI echoes each command, prints its output, then ``Done`` or ``Error <n>: <text>``. Log lines
(``hh:mm:ss.mmm [x] ...``) and asynchronous output are interleaved with that; a reader thread
collects every line, and :meth:`OtNode.cmd` returns only the lines between the echo and the
result. Everything is blocking and thread-safe; async tests call it through
``asyncio.to_thread`` so the event loop (and the emulated radio's driver on it) keeps running.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

LOG_LINE = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} \[[A-Z-]\] ")
RESULT_LINE = re.compile(r"^(Done|Error (\d+): (.*))$")
COUNTER_LINE = re.compile(r"^\s*([A-Za-z0-9]+): (\d+)$")
PING_REPLY = re.compile(r"^\d+ bytes from \S+: icmp_seq=(\d+) hlim=\d+ time=(\d+)ms$")
PING_STATS = re.compile(r"^(\d+) packets transmitted, (\d+) packets received\.")


class OtCliError(Exception):
    """The CLI answered ``Error <n>: <text>``."""

    def __init__(self, command: str, code: int, text: str) -> None:
        super().__init__(f"{command!r} failed: Error {code}: {text}")
        self.command = command
        self.code = code
        self.text = text


class OtNode:
    """One ``ot-cli-ftd <node_id>`` (or ``ot-cli-mtd``) process on air group ``port_offset``."""

    def __init__(
        self, binary: str, node_id: int, port_offset: int, *, prefix: Sequence[str] = ()
    ) -> None:
        """``prefix`` goes before the command line, e.g. ``["ip", "netns", "exec", ns]`` to run
        the node inside a network namespace (whose loopback then carries its air); it must exec
        the binary in place, so that :attr:`proc` is the node itself."""
        if not 1 <= node_id <= 33:
            raise ValueError("OpenThread simulation node ids are 1..33")
        self.binary = binary
        self.node_id = node_id
        self.port_offset = port_offset
        self.lines: list[tuple[float, str]] = []  # (time.monotonic(), line), the full transcript
        self._cond = threading.Condition()
        self._cmd_lock = threading.Lock()
        self._eof = False
        self._cwd = tempfile.mkdtemp(prefix=f"otnode{node_id}-")
        env = dict(os.environ, PORT_OFFSET=str(port_offset))
        self.proc = subprocess.Popen(
            [*prefix, binary, str(node_id)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._cwd,
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, name=f"otnode{node_id}-reader", daemon=True
        )
        self._reader.start()
        try:
            self.version = self.cmd("version", timeout=10.0)
        except BaseException:
            self.close()
            raise

    # -- process I/O -------------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            while text.startswith("> "):  # the prompt precedes echoes and asynchronous output
                text = text[2:]
            with self._cond:
                self.lines.append((time.monotonic(), text))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def mark(self) -> int:
        """A position in :attr:`lines`, for :meth:`wait_for` ``since=``."""
        with self._cond:
            return len(self.lines)

    def cmd(self, command: str, timeout: float = 10.0) -> list[str]:
        """Run one CLI command; its output lines (echo, log lines and ``Done`` removed).
        Raises :class:`OtCliError` on ``Error``, :class:`TimeoutError` without an answer."""
        if "\n" in command or "\x03" in command or "\x04" in command:
            raise ValueError("one command per call, no control characters")
        with self._cmd_lock:
            start = self.mark()
            assert self.proc.stdin is not None
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
            deadline = time.monotonic() + timeout
            pos = start
            out: list[str] = []
            echoed = False
            with self._cond:
                while True:
                    while pos < len(self.lines):
                        line = self.lines[pos][1]
                        pos += 1
                        if LOG_LINE.match(line):
                            continue
                        if not echoed and line.strip() == command:
                            echoed = True
                            continue
                        m = RESULT_LINE.match(line)
                        if m:
                            if m.group(2) is not None:
                                raise OtCliError(command, int(m.group(2)), m.group(3))
                            return out
                        if echoed:
                            out.append(line)
                    if self._eof:
                        raise RuntimeError(f"node {self.node_id} exited during {command!r}")
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"node {self.node_id}: no answer to {command!r}")
                    self._cond.wait(left)

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str]:
        """The first transcript line from ``since`` on that matches ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        pos = since
        with self._cond:
            while True:
                while pos < len(self.lines):
                    m = rx.search(self.lines[pos][1])
                    pos += 1
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise TimeoutError(f"node {self.node_id}: no line matching {pattern!r}")
                self._cond.wait(left)

    # -- helpers -----------------------------------------------------------------------------

    def value(self, command: str) -> str:
        """The single output line of a query such as ``channel`` or ``extaddr``."""
        out = self.cmd(command)
        if len(out) != 1:
            raise RuntimeError(f"{command!r} printed {out!r}")
        return out[0].strip()

    def address_in(self, prefix: ipaddress.IPv6Network) -> str | None:
        """The node's first address (``ipaddr``) in ``prefix``, e.g. its OMR address."""
        for line in self.cmd("ipaddr"):
            try:
                a = ipaddress.IPv6Address(line.strip())
            except ValueError:
                continue
            if a in prefix:
                return str(a)
        return None

    def wait_state(self, wanted: str, timeout: float, step: float = 0.1) -> float:
        """Poll ``state`` every ``step`` s until it prints ``wanted``; the seconds it took."""
        t0 = time.monotonic()
        while True:
            if self.value("state") == wanted:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"node {self.node_id} did not become {wanted}")
            time.sleep(step)

    def counters_mac(self) -> dict[str, int]:
        """``counters mac`` as a dict (TxTotal, TxAcked, RxUnicast, ...)."""
        out: dict[str, int] = {}
        for line in self.cmd("counters mac"):
            m = COUNTER_LINE.match(line)
            if m:
                out[m.group(1)] = int(m.group(2))
        if "TxTotal" not in out or "RxTotal" not in out:
            raise RuntimeError("unexpected 'counters mac' output")
        return out

    def ping(
        self, address: str, size: int = 8, count: int = 1, interval: float = 1.0,
        timeout: float = 10.0,
    ) -> PingResult:  # fmt: skip
        """``ping <address> <size> <count> <interval> 64 <timeout>``: OpenThread sends ``count``
        echoes ``interval`` s apart and stops at the last reply, or ``timeout`` s after the
        last echo."""
        out = self.cmd(
            f"ping {address} {size} {count} {interval:g} 64 {timeout:g}",
            timeout=count * interval + timeout + 10.0,
        )
        rtts = [int(m.group(2)) for m in map(PING_REPLY.match, out) if m]
        for line in out:
            m = PING_STATS.match(line)
            if m:
                return PingResult(int(m.group(1)), int(m.group(2)), rtts)
        raise RuntimeError(f"no ping statistics in {out!r}")

    def transcript(self) -> str:
        with self._cond:
            return "\n".join(line for _t, line in self.lines)

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Terminate the process (SIGTERM to its own session, then SIGKILL) and remove its
        working directory."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=3)
        self._reader.join(timeout=3)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        shutil.rmtree(self._cwd, ignore_errors=True)


@dataclass(frozen=True)
class PingResult:
    """What ``ping`` printed: echoes sent, replies counted, each reply's round trip (ms)."""

    transmitted: int
    received: int
    rtts_ms: list[int]


@contextmanager
def ot_node(binary: str, node_id: int, port_offset: int) -> Iterator[OtNode]:
    node = OtNode(binary, node_id, port_offset)
    try:
        yield node
    finally:
        node.close()


def form_leader(node: OtNode, timeout: float = 20.0) -> float:
    """Make ``node`` the leader of a new random network; seconds from ``thread start``.

    ``state leader`` (otThreadBecomeLeader) skips the ~7 s of Parent Requests a lone node
    otherwise sends before it promotes itself; the role OpenThread reports is the same.
    """
    node.cmd("dataset init new")
    node.cmd("dataset commit active")
    node.cmd("ifconfig up")
    node.cmd("thread start")
    t0 = time.monotonic()
    node.cmd("state leader")
    node.wait_state("leader", timeout)
    return time.monotonic() - t0


def attach_child(
    node: OtNode, dataset_hex: str, *, mode: str | None = None, poll_period_ms: int | None = None,
    timeout: float = 30.0, step: float = 0.1,
) -> float:  # fmt: skip
    """Give ``node`` an Active Dataset (``dataset set active``), optionally its ``mode`` and
    ``pollperiod``, then ``ifconfig up`` and ``thread start``; seconds from ``thread start``
    until ``state`` prints ``child``."""
    node.cmd(f"dataset set active {dataset_hex}")
    if mode is not None:
        node.cmd(f"mode {mode}")
    if poll_period_ms is not None:
        node.cmd(f"pollperiod {poll_period_ms}")
    node.cmd("ifconfig up")
    t0 = time.monotonic()
    node.cmd("thread start")
    node.wait_state("child", timeout, step)
    return time.monotonic() - t0


# -- opting in ---------------------------------------------------------------------------------

ENV_BINARY = "OT_CLI_FTD"
ENV_MTD_BINARY = "OT_CLI_MTD"
ENV_PORT_OFFSET = "OT_INTEROP_PORT_OFFSET"
# The main suite's ``port_offset`` fixture hands out 10..1609; OpenThread's 16-bit port arithmetic
# allows offsets up to 1661 (9000 + 34 * 1661 + 33 < 65536), so the interop tests default to
# 1620 and 1621, which the main suite never uses and which lie above the kernel's ephemeral range.
DEFAULT_PORT_OFFSET = 1620


def ot_cli_ftd() -> tuple[str | None, str]:
    """(path of the ot-cli-ftd simulation binary, or None; the reason to skip when None)."""
    path = os.environ.get(ENV_BINARY)
    if not path:
        return None, (
            f"interop tests need {ENV_BINARY}=<path to an OpenThread ot-cli-ftd simulation "
            "binary> (see docs/interop.md); CI does not build OpenThread"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"{ENV_BINARY}={path!r} is not an executable file"
    return path, ""


def ot_cli_mtd() -> tuple[str | None, str]:
    """(path of the ot-cli-mtd simulation binary, or None; the reason to skip when None).

    ``OT_CLI_MTD`` names it; without that variable, the ``ot-cli-mtd`` next to ``OT_CLI_FTD``
    (one OpenThread simulation build makes both) if there is one."""
    path = os.environ.get(ENV_MTD_BINARY)
    if not path:
        ftd = os.environ.get(ENV_BINARY)
        beside = os.path.join(os.path.dirname(ftd), "ot-cli-mtd") if ftd else None
        if beside is None or not os.path.isfile(beside):
            return None, (
                f"these tests need {ENV_MTD_BINARY}=<path to an OpenThread ot-cli-mtd simulation "
                f"binary>, or one named ot-cli-mtd next to {ENV_BINARY} (see docs/interop.md)"
            )
        path = beside
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"{ENV_MTD_BINARY}={path!r} is not an executable file"
    return path, ""


def interop_port_offset() -> int:
    raw = os.environ.get(ENV_PORT_OFFSET)
    return DEFAULT_PORT_OFFSET if not raw else int(raw, 0)
