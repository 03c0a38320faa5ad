"""Eight reference children on the emulated air, in real time, for two minutes.

The radio and border router services run as subprocesses with a child table of 8; eight
reference things (``python -m gateway.peers.thing join`` with a state file that already holds
the network, as after a join) attach with short child timeouts, four rx-on and four sleepy.
A ninth is refused while the table is full, and the gateway says so in ``gwctl thread status``
and once in its journal however many Parent Requests it refuses. The eight stay attached, on
the same RLOC16s, without a single detach, through two minutes of keep-alives and polls; then
one is killed, the gateway times it out and frees its RLOC16, and a newcomer takes the
freed place.

Port offset 1652 belongs to this module."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.peers.thing.attach import ChildState, ChildStateStore
from tests.runtime.helpers import wait_until
from tests.thread.stack import Thing, ThreadStack, thread_stack

pytestmark = pytest.mark.timeout(420)
OFFSET = 1652
TABLE = 8
TIMEOUT_S = 10  # child timeout asked by every thing: keep-alives every ~6 s, polls every 1 s
STAY_S = 120.0
FULL_TEXT = "child table full"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadStack]:
    with thread_stack(tmp_path_factory.mktemp("children"), OFFSET, max_children=TABLE) as s:
        yield s


def _valid(stack: ThreadStack) -> dict[str, dict[str, Any]]:
    """The gateway's valid children by extended address."""
    kids = stack.result("thread_children")["children"]
    return {c["ext_addr"]: c for c in kids if c["state"] == "valid"}


def _thing(stack: ThreadStack, root: Path, node: int, sleepy: bool) -> Thing:
    """A thing on emulated node ``node`` whose state file holds the gateway's network."""
    state = root / f"thing{node}.json"
    key_sequence = int(stack.result("thread_status")["key_sequence"])
    asyncio.run(ChildStateStore(state).save(ChildState(stack.dataset(), key_sequence)))
    cmd = [sys.executable, "-m", "gateway.peers.thing", "join", "--radio", stack.radio_url(node),
           "--state", str(state), "--json", "--quiet", "--child-timeout", str(TIMEOUT_S)]  # fmt: skip
    if sleepy:
        cmd += ["--sleepy", "--poll-period", "1"]
    return Thing(cmd, stack, root / f"thing{node}.log")


def _is_child(doc: dict[str, Any]) -> bool:
    return doc.get("event") == "role" and doc["role"] == "child"


def _journal_full_lines(stack: ThreadStack) -> int:
    log = stack.root / "border-router.log"
    return sum(FULL_TEXT in line for line in log.read_text(errors="replace").splitlines())


def test_eight_children_stay_attached_for_two_minutes_and_a_lost_one_is_timed_out(
    stack: ThreadStack, tmp_path: Path
) -> None:
    things: dict[int, Thing] = {}
    started: list[Thing] = []
    try:
        for node in range(2, 2 + TABLE):
            things[node] = _thing(stack, tmp_path, node, sleepy=node % 2 == 1)
            started.append(things[node])
        first: dict[int, dict[str, Any]] = {}
        for node, thing in things.items():
            first[node] = thing.wait_event(_is_child, 90, f"thing {node} attached")
        rloc = {first[n]["ext_addr"]: first[n]["rloc16"] for n in things}
        wait_until(lambda: set(_valid(stack)) == set(rloc), 30, "the gateway lists all eight")
        kids = _valid(stack)
        assert {k: c["rloc16"] for k, c in kids.items()} == rloc
        assert sorted(c["mode"] for c in kids.values()) == ["-"] * 4 + ["r"] * 4
        assert all(c["timeout_s"] == TIMEOUT_S for c in kids.values())
        st = stack.result("thread_status")
        assert st["children"]["attached"] == TABLE and st["children"]["sleepy"] == 4
        assert st["children"]["table_full"] is True

        # a ninth is refused while the table is full, and the gateway says so, once
        ninth = _thing(stack, tmp_path, 2 + TABLE, sleepy=False)
        started.append(ninth)
        refused0 = st["counters"].get("parent_request_table_full", 0)
        wait_until(
            lambda: stack.result("thread_status")["counters"].get("parent_request_table_full", 0)
            >= refused0 + 4,
            60, "Parent Requests refused for a full table",
        )  # fmt: skip
        human = subprocess.run(
            [sys.executable, "-m", "gateway.admin", "thread", "status"], env=stack.env(),
            capture_output=True, text=True, timeout=60, cwd=stack.root,
        )  # fmt: skip
        assert human.returncode == 0, human.stderr
        assert "FULL" in human.stdout, human.stdout
        wait_until(lambda: _journal_full_lines(stack) >= 1, 10, "the journal line")
        assert _journal_full_lines(stack) == 1  # rate-limited: one line for all of them
        assert all(not _is_child(d) for d in list(ninth.lines.queue))
        assert ninth.stop() == 0

        # two minutes of keep-alives (rx-on) and polls (sleepy): nobody detaches or moves
        polls0 = stack.result("thread_status")["counters"].get("data_polls", 0)
        end = time.monotonic() + STAY_S
        while time.monotonic() < end:
            kids = _valid(stack)
            assert {k: c["rloc16"] for k, c in kids.items()} == rloc, kids
            assert all(c["age_s"] < TIMEOUT_S for c in kids.values()), kids
            for node, thing in things.items():
                assert thing.proc.poll() is None, thing.log.read_text()
                # wait_event took the lines up to 'child': any role line since is a change
                events = [d for d in list(thing.lines.queue) if d.get("event") == "role"]
                assert events == [], (node, events)
            time.sleep(2.0)  # sampling the table, not waiting for an event
        polls = stack.result("thread_status")["counters"].get("data_polls", 0) - polls0
        assert polls >= 4 * STAY_S * 0.5, polls  # four sleepy children polling about every 1 s

        # one goes away without a word: timed out, its RLOC16 freed, the ninth takes the place
        gone = things.pop(2)
        gone_ext = first[2]["ext_addr"]
        age = _valid(stack)[gone_ext]["age_s"]
        gone.proc.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        wait_until(lambda: gone_ext not in _valid(stack), 4 * TIMEOUT_S, "the lost child timed out")
        took = time.monotonic() - t_kill
        assert age + took >= TIMEOUT_S - 0.5, (age, took)  # not before its timeout ran out
        assert rloc[gone_ext] not in [
            c["rloc16"] for c in stack.result("thread_children")["children"]
        ]
        st = stack.result("thread_status")
        assert st["children"]["attached"] == TABLE - 1
        newcomer = _thing(stack, tmp_path, 3 + TABLE, sleepy=False)
        started.append(newcomer)
        late = newcomer.wait_event(_is_child, 60, "a newcomer attached into the freed place")
        wait_until(lambda: late["ext_addr"] in _valid(stack), 10, "the gateway lists it")
        assert len(_valid(stack)) == TABLE
        assert set(_valid(stack)) - {late["ext_addr"]} == set(rloc) - {gone_ext}
    finally:
        codes = [(t.log.name, t.stop()) for t in started]  # stop() again returns the code
    # every thing still in the network left cleanly on SIGTERM (the killed one was -9)
    assert [c for c in codes if c[1] != 0] == [("thing2.log", -signal.SIGKILL)], codes
