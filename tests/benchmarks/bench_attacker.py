"""Issue 16 figures: an attacker's effective PSKc and PSKd guess rates (virtual time, the
gateway's own cores), and a legitimate joiner's join time on the emulated air with and without
an attacker flooding the channel (the real services; port offset 1617).

    .venv/bin/python tests/benchmarks/bench_attacker.py [--no-air]
"""

from __future__ import annotations

import random
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


def join_time(flood: bool) -> float:
    from tests.thread.stack import run_joiner, thread_stack

    eui = bytes.fromhex("18b4300000000171")
    with tempfile.TemporaryDirectory() as d, thread_stack(Path(d), OFFSET + int(flood)) as stack:
        stack.result("commissioner_start")
        stack.result("joiner_add", eui64=eui.hex(), pskd="J01NME", timeout_s=120)
        attacker = None
        if flood:
            from tests.thread.test_attacker_fullstack import start_attacker, stop_attacker

            attacker = start_attacker(stack, 5, joiner_id(eui).hex(), Path(d) / "attacker.log")
        t0 = time.monotonic()
        proc = run_joiner(stack, 2, "J01NME", "--eui64", eui.hex(), timeout=120)
        took = time.monotonic() - t0
        if attacker is not None:
            print(f"  attacker sent {stop_attacker(attacker)}")
        if proc.returncode != 0:
            print(f"  join failed: {proc.stdout[-300:]}")
        stack.result("commissioner_stop")
        return took


def main() -> int:
    for hosts, attempts, every in ((1, 1000, 0.1), (50, 1000, 0.1)):
        minutes, verdicts, rate = pskc_rate(hosts, attempts, every)
        print(f"PSKc: {attempts} wrong guesses from {hosts} address(es) in {minutes:.1f} min: "
              f"{verdicts} verdicts, {rate:.1f} a minute (limit 5 + 10/min)")  # fmt: skip
    for minutes in (10.0, 60.0):
        print(f"PSKd: one entry, an attempt a second for {minutes:.0f} min: "
              f"{pskd_rate(minutes):.2f} verdicts a minute")  # fmt: skip
    if "--no-air" not in sys.argv:
        quiet = join_time(False)
        flooded = join_time(True)
        print(f"join time: {quiet:.2f} s without an attacker, {flooded:.2f} s while one floods "
              f"the channel (Discovery + Parent Requests at full rate, forged DTLS 10/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
