"""The Thread network on the emulated air, in real time: the radio and border router services as
subprocesses, the reference thing (``python -m gateway.peers.thing join --attach``) on its own
emulated radio. A joiner goes from bootstrapping to attached and the gateway lists it as a
child; the gateway pings it; after ``kill -9`` of the border router the child is attached again
(restored from the saved child table) within its timeout, and it stays attached through a
``kill -9`` of the radio service; the air capture shows no frame counter reused; and a thing restarted with its state
file attaches again without joining.

Port offsets 1640..1649 belong to this module."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.emulator.tap import AirTap
from drivers.fcs import append_fcs
from gateway.errors import GatewayError
from gateway.thread.link import peek_packet
from gateway.wire.mac802154 import MacFrame
from tests.runtime.helpers import wait_until
from tests.thread.stack import Thing, ThreadStack, thread_stack

pytestmark = pytest.mark.timeout(240)
BASE_OFFSET = 1640
PSKD = "ATTACH1"
CHILD_TIMEOUT = 30


class Tap:
    """Every frame on this module's air, from a thread, as (sender node, PSDU with FCS)."""

    def __init__(self, port_offset: int) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self._tap = AirTap(port_offset)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.frames.extend((node, psdu) for node, _ch, psdu in self._tap.poll(0.05))

    def stop(self) -> list[tuple[int, bytes]]:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(5)
            self._tap.close()
        return self.frames


def counter_reuse(frames: list[tuple[int, bytes]]) -> tuple[list[str], dict[str, int]]:
    """Frame counters that one sender used for two different frames with one key: MAC (key
    index of the auxiliary security header) and MLE (key sequence of its key source). A MAC
    retransmission repeats the very same PSDU, which is not a reuse."""
    seen: dict[tuple[int, str, int, int], set[bytes]] = {}
    for node, psdu in frames:
        try:
            f = MacFrame.from_bytes(psdu, fcs=True)
        except GatewayError:
            continue
        if f.security is not None and f.security.frame_counter is not None:
            key = (node, "mac", f.security.key_index or 0, f.security.frame_counter)
            seen.setdefault(key, set()).add(psdu)
            continue
        try:
            pkt = peek_packet(f.payload, f.src, f.dst) if f.payload else None
        except GatewayError:
            continue
        if pkt is None or pkt.next_header != 17 or len(pkt.payload) < 18:
            continue
        udp = pkt.payload
        if int.from_bytes(udp[2:4], "big") != 19788 or udp[8] != 0:
            continue  # not MLE, or MLE discovery (suite 255, unsecured)
        mle = udp[8:]
        counter = int.from_bytes(mle[2:6], "little")
        key_seq = int.from_bytes(mle[6:10], "big")
        seen.setdefault((node, "mle", key_seq, counter), set()).add(bytes(mle))
    kinds: dict[str, int] = {}
    for k in seen:
        kinds[f"{k[1]}{k[0]}"] = kinds.get(f"{k[1]}{k[0]}", 0) + 1
    return [f"{k}: {len(v)} frames" for k, v in seen.items() if len(v) > 1], kinds


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadStack]:
    with thread_stack(tmp_path_factory.mktemp("netstack"), BASE_OFFSET) as s:
        yield s


def _children(stack: ThreadStack) -> list[dict[str, Any]]:
    kids: list[dict[str, Any]] = stack.result("thread_children")["children"]
    return kids


def _valid_child(stack: ThreadStack, ext: str) -> dict[str, Any] | None:
    for c in _children(stack):
        if c["ext_addr"] == ext and c["state"] == "valid":
            return c
    return None


def _gwctl(stack: ThreadStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.admin", *args], env=stack.env(), capture_output=True,
        text=True, timeout=60, cwd=stack.root,
    )  # fmt: skip


def test_joiner_attaches_survives_a_border_router_kill_and_reboots_into_the_network(
    stack: ThreadStack, tmp_path: Path
) -> None:
    tap = Tap(stack.port_offset)
    st = stack.result("thread_status")
    assert st["role"] == "leader"
    assert stack.status()["network"]["role"] == "leader"
    gst = _gwctl(stack, "status", "--json")
    assert gst.returncode == 0, gst.stderr
    assert json.loads(gst.stdout)["thread"]["role"]["role"] == "leader"
    assert stack.result("commissioner_start")["state"] == "active"
    stack.result("joiner_add", eui64="*", pskd=PSKD, timeout_s=120)
    state = tmp_path / "thing-thread.json"
    cmd = [*stack.joiner_cmd(3, PSKD, "--attach", "--json", "--quiet", "--state", str(state),
                             "--child-timeout", str(CHILD_TIMEOUT))]  # fmt: skip
    thing = Thing(cmd, stack, tmp_path / "thing.log")
    try:
        joined = thing.wait_event(lambda d: "joined" in d, 60, "the join result")
        assert joined["joined"] is True
        child = thing.wait_event(
            lambda d: d.get("event") == "role" and d["role"] == "child", 60, "role child"
        )
        ext = child["ext_addr"]
        assert child["parent"]["ext_addr"] == st["ext_addr"]
        assert child["parent"]["rloc16"] == st["rloc16"]
        wait_until(lambda: _valid_child(stack, ext) is not None, 10, "the gateway lists the child")
        entry = _valid_child(stack, ext)
        assert entry is not None and entry["rloc16"] == child["rloc16"]
        assert entry["mode"] == "r" and entry["timeout_s"] == CHILD_TIMEOUT
        assert child["addresses"]["ml_eid"] in entry["addresses"]
        # gwctl, through the border router's control socket
        out = _gwctl(stack, "thread", "children", "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["schema_version"] == 1 and ext in [c["ext_addr"] for c in doc["children"]]
        ping = _gwctl(stack, "thread", "ping", child["addresses"]["ml_eid"], "--count", "3",
                      "--json")  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert json.loads(ping.stdout)["received"] == 3
        for sub, text in (("status", "role: leader"), ("children", child["rloc16"]),
                          ("neighbors", ext), ("netdata", "data_version")):  # fmt: skip
            human = _gwctl(stack, "thread", sub)
            assert human.returncode == 0 and text in human.stdout, human.stdout + human.stderr
        for sub in ("status", "neighbors", "netdata"):
            doc = json.loads(_gwctl(stack, "thread", sub, "--json").stdout)
            assert doc["ok"] is True and doc["schema_version"] == 1
        # nobody answers at this address: exit 7
        lost = _gwctl(stack, "thread", "ping", "fd00::1234", "--timeout", "0.5", "--json")
        assert lost.returncode == 7, lost.stdout + lost.stderr

        # kill -9 of the border router while the child is attached
        br = stack.procs["border-router"]
        br.proc.send_signal(signal.SIGKILL)
        br.proc.wait(10)
        t_kill = time.monotonic()
        stack.start("border-router")
        assert stack.result("thread_status")["partition_id"] == st["partition_id"]
        wait_until(lambda: _valid_child(stack, ext) is not None, CHILD_TIMEOUT,
                   "the child attached again after kill -9")  # fmt: skip
        assert time.monotonic() - t_kill < CHILD_TIMEOUT
        again = _valid_child(stack, ext)
        assert again is not None and again["rloc16"] == child["rloc16"]

        # kill -9 of the radio service: the border router reconnects, the child stays
        radio = stack.procs["radio"]
        radio.proc.send_signal(signal.SIGKILL)
        radio.proc.wait(10)
        stack.start("radio")
        wait_until(lambda: stack.status()["radio_reconnects"] >= 1, 30, "the radio back")
        ping = _gwctl(stack, "thread", "ping", child["addresses"]["ml_eid"], "--count", "3",
                      "--timeout", "5", "--json")  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert _valid_child(stack, ext) is not None
    finally:
        assert thing.stop() == 0, (tmp_path / "thing.log").read_text()

    # the thing reboots into its network: no PSKd, no join
    saved = json.loads(state.read_text())["body"]
    assert saved["child"]["rloc16"] == int(child["rloc16"], 16)
    cmd = [sys.executable, "-m", "gateway.peers.thing", "join", "--radio", stack.radio_url(3),
           "--json", "--state", str(state), "--child-timeout", str(CHILD_TIMEOUT)]  # fmt: skip
    reboot = Thing(cmd, stack, tmp_path / "thing2.log")
    try:
        back = reboot.wait_event(
            lambda d: d.get("event") == "role" and d["role"] == "child", 60, "child after reboot"
        )
        assert back["rloc16"] == child["rloc16"]
        assert reboot.lines.empty() or all("joined" not in d for d in list(reboot.lines.queue))
        wait_until(lambda: _valid_child(stack, ext) is not None, 10, "still listed")
    finally:
        assert reboot.stop() == 0, (tmp_path / "thing2.log").read_text()
        frames = tap.stop()
    stack.result("commissioner_stop")
    # the air shows no MAC or MLE frame counter used twice with one key, by the gateway (node 1)
    # across its kill -9, nor by the thing (node 3) across its reboot
    nodes = {n for n, _ in frames}
    assert {1, 3} <= nodes, nodes
    reused, kinds = counter_reuse(frames)
    assert reused == []
    # both kinds of counters were seen from both sides, before and after the restarts
    assert min(kinds.get(k, 0) for k in ("mac1", "mle1", "mac3", "mle3")) > 0, kinds
    # and the check does see a reuse: a second, different frame with a counter already used
    node, psdu = next((n, p) for n, p in frames if n == 1 and MacFrame.from_bytes(
        p, fcs=True).security is not None)  # fmt: skip
    forged = append_fcs(psdu[:-3] + bytes([psdu[-3] ^ 1]))
    assert counter_reuse([*frames, (node, forged)])[0] != []


def test_sleepy_joiner_attaches_polls_and_answers_pings(stack: ThreadStack, tmp_path: Path) -> None:
    assert stack.result("commissioner_start")["state"] == "active"
    stack.result("joiner_add", eui64="*", pskd=PSKD, timeout_s=120)
    cmd = [*stack.joiner_cmd(4, PSKD, "--attach", "--sleepy", "--poll-period", "0.5", "--json",
                             "--quiet", "--child-timeout", "20")]  # fmt: skip
    thing = Thing(cmd, stack, tmp_path / "sleepy.log")
    try:
        child = thing.wait_event(
            lambda d: d.get("event") == "role" and d["role"] == "child", 90, "role child"
        )
        assert child["mode"] == "-"
        ext = child["ext_addr"]
        wait_until(lambda: _valid_child(stack, ext) is not None, 10, "the gateway lists it")
        entry = _valid_child(stack, ext)
        assert entry is not None and entry["mode"] == "-"
        assert stack.result("thread_status")["children"]["sleepy"] >= 1
        # echoes wait in its indirect queue until it polls
        res = stack.result("thread_ping", address=child["addresses"]["ml_eid"], count=3,
                           timeout_s=5.0)  # fmt: skip
        assert res["received"] == 3, res
        assert stack.result("thread_status")["counters"].get("data_polls", 0) > 0
    finally:
        assert thing.stop() == 0, (tmp_path / "sleepy.log").read_text()
    stack.result("commissioner_stop")
