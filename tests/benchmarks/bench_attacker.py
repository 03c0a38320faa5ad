"""Issue 16 figures: an attacker's effective PSKc and PSKd guess rates (virtual time, the
gateway's own cores), and a legitimate joiner's join time on the emulated air with and without
an attacker flooding the channel (the real services; port offsets 1617-1619).

    .venv/bin/python tests/benchmarks/bench_attacker.py [--no-air]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.crypto.thread_keys import joiner_id  # noqa: E402
from tests.thread.sim import World  # noqa: E402
from tests.thread.test_border_agent_guard import Lan, _attack  # noqa: E402

OFFSET = 1617


def pskc_rate(hosts: int, attempts: int, every: float) -> tuple[float, int, float]:
    w = World()
    assert w.ds.pskc is not None
    lan = Lan(w.core)
    t0 = lan.now
    _attack(lan, w.ds.pskc, [f"198.51.100.{i + 1}" for i in range(hosts)], attempts, every)
    minutes = (lan.now - t0) / 60
    return minutes, len(lan.verdicts()), len(lan.verdicts()) / minutes


def pskd_rate(minutes: float) -> float:
    """Wrong-PSKd verdicts a minute when an attacker retries one joiner entry as fast as it
    is allowed (the commissioner's limits: 3 per 10 min, then back-off doubling)."""
    from gateway.thread.commissioning.commissioner import Commissioner

    c = Commissioner(rng=random.Random(1))
    entry = c.add_joiner("J01NME", eui64=bytes(8), now=0.0)
    now, verdicts = 0.0, 0
    while now < minutes * 60:
        if now >= max(entry.blocked_until, c._global_blocked_until):
            c._record_failure(entry, now)
            verdicts += 1
        now += 1.0  # one attempt a second
    return verdicts / minutes


def join_times(rate: float | None, runs: int) -> tuple[list[float], int]:
    """``runs`` joins one after another (each its own joiner), with no attacker (``rate`` None),
    an attacker sending ``rate`` rounds a second, or one as fast as the air takes (0). Returns
    the times of the joins that succeeded and how many failed."""
    from tests.thread.stack import run_joiner, thread_stack

    offset = OFFSET + (0 if rate is None else 1 if rate > 0 else 2)
    times: list[float] = []
    failed = 0
    with tempfile.TemporaryDirectory() as d, thread_stack(Path(d), offset) as stack:
        stack.result("commissioner_start")
        for run in range(runs):
            eui = bytes.fromhex(f"18b43000000001{0x71 + run:02x}")
            stack.result("joiner_add", eui64=eui.hex(), pskd="J01NME", timeout_s=120)
            attacker = None
            if rate is not None:
                from tests.thread.test_attacker_fullstack import start_attacker, stop_attacker

                log = Path(d) / f"attacker{run}.log"
                attacker = start_attacker(stack, 5, joiner_id(eui).hex(), log, rate=rate)
            t0 = time.monotonic()
            proc = run_joiner(stack, 2, "J01NME", "--eui64", eui.hex(), timeout=120)
            took = time.monotonic() - t0
            if attacker is not None:
                stop_attacker(attacker)
            if proc.returncode == 0:
                times.append(took)
            else:
                failed += 1
                last = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
                print(f"  run {run + 1}: join failed after {took:.2f} s: {last[0][-120:]}")
        stack.result("commissioner_stop")
    return times, failed


def _line(label: str, times: list[float], failed: int) -> str:
    runs = len(times) + failed
    med = f"median {statistics.median(times):.2f} s, max {max(times):.2f} s" if times else "-"
    return f"join time {label}: {len(times)}/{runs} joined, {med}"


def main() -> int:
    for hosts, attempts, every in ((1, 1000, 0.1), (50, 1000, 0.1)):
        minutes, verdicts, rate = pskc_rate(hosts, attempts, every)
        print(f"PSKc: {attempts} wrong guesses from {hosts} address(es) in {minutes:.1f} min: "
              f"{verdicts} verdicts, {rate:.1f} a minute (limit 5 + 10/min)")  # fmt: skip
    for minutes in (10.0, 60.0):
        print(f"PSKd: one entry, an attempt a second for {minutes:.0f} min: "
              f"{pskd_rate(minutes):.2f} verdicts a minute")  # fmt: skip
    if "--no-air" not in sys.argv:
        runs = 5
        print(_line("without an attacker", *join_times(None, runs)))
        print(_line("with an attacker at 50 rounds/s (Discovery + Parent Request + forged "
                    "DTLS, about a quarter of the air)", *join_times(50.0, runs)))  # fmt: skip
        print(_line("with an attacker as fast as the air takes (a jammer: nothing is "
                    "promised)", *join_times(0.0, runs)))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
