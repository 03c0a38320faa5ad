"""Attach benchmark: the gateway as a Thread parent, next to an OpenThread leader, in one run.

    OT_CLI_FTD=/path/to/ot-cli-ftd python tests/benchmarks/bench_attach.py [--runs 10]
        [--pings 20] [--window 30] [--children 32]

1. Attach time, from ``thread start`` to ``state`` = ``child`` (polled every 20 ms), of a fresh
   OpenThread MTD given the Active Dataset, to the gateway (radio + border router services on the
   emulated AT86RF233) and to an OpenThread leader (``ot-cli-ftd``, ``form_leader``): median and
   p90 of N runs each. OpenThread's own timers dominate it (a Parent Request after up to 750 ms,
   the parent's answer after up to 500 ms).
2. Ping round trip over one hop, 8-byte echoes: gateway <-> OpenThread child and OpenThread
   leader <-> OpenThread child, each direction (OpenThread prints whole milliseconds).
3. Memory per child entry in the border router's network core (sans-IO, as
   tests/thread/network/world.py runs it): tracemalloc of what the RouterCore keeps after 32 and
   64 children attached (the children themselves dropped), and the saved state's bytes per child.
4. Keep-alive load of 32 children: the radio and border router services' CPU seconds per minute
   (utime + stime from /proc/<pid>/stat) with no child, with 32 rx-on OpenThread MTDs
   (``childtimeout 10``: a Child Update Request every ~6 s each), and with 32 sleepy ones
   (``pollperiod 1000``: 32 data polls a second). The emulated chip runs inside the radio
   service, so its share is the chip model's too.

Without ``OT_CLI_FTD`` (and ``OT_CLI_MTD``, or an ``ot-cli-mtd`` next to it) only part 3 runs;
the others say why they were skipped. Port offsets 1657..1660 belong to this benchmark.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.thread.network.router import RouterConfig  # noqa: E402
from tests.interop.otnode import (  # noqa: E402
    OtNode,
    PingResult,
    attach_child,
    form_leader,
    ot_cli_ftd,
    ot_cli_mtd,
)
from tests.thread.network.world import NetWorld  # noqa: E402
from tests.thread.stack import ThreadStack, thread_stack  # noqa: E402

GW_OFFSET, OT_OFFSET, LOAD_OFFSET = 1657, 1658, 1660  # 1659 is kept free
CLK = os.sysconf("SC_CLK_TCK")
STEP = 0.02  # `state` poll period while attaching


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def line(label: str, values: list[float], unit: str, scale: float = 1.0) -> str:
    if not values:
        return f"{label:<52} no values"
    v = [x * scale for x in values]
    return (f"{label:<52} median {statistics.median(v):7.1f} {unit}, p90 {pct(v, 0.9):7.1f} "
            f"{unit}  (min {min(v):.1f}, max {max(v):.1f}, n={len(v)})")  # fmt: skip


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def wait(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)


# -- 1 and 2: attach time and round trip ---------------------------------------------------------


def attach_runs(mtd: str, offset: int, dataset_hex: str, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        node = OtNode(mtd, 2 + i, offset)  # a fresh node (random ext address, no saved state)
        try:
            times.append(attach_child(node, dataset_hex, timeout=60, step=STEP))
        finally:
            node.close()
    return times


def ot_rtts(label: str, res: PingResult) -> str:
    rtts = [float(x) for x in res.rtts_ms]
    return line(f"{label} ({res.received}/{res.transmitted})", rtts, "ms")


def gateway_rtts(stack: ThreadStack, address: str, count: int) -> list[float]:
    res = stack.result("thread_ping", timeout=count * 6 + 30, address=address, count=count,
                       interval_s=0.2, timeout_s=5.0)  # fmt: skip
    return [float(r["rtt_ms"]) for r in res["replies"] if r["ok"]]


def bench_attach_and_ping(mtd: str, ftd: str, root: Path, runs: int, pings: int) -> list[str]:
    out = []
    with thread_stack(root / "gw", GW_OFFSET) as stack:
        ds = stack.dataset().to_hex()
        gw_times = attach_runs(mtd, GW_OFFSET, ds, runs)
        child = OtNode(mtd, 20, GW_OFFSET)
        try:
            attach_child(child, ds, timeout=60)
            gw_ml_eid = stack.result("thread_status")["addresses"]["ml_eid"]
            up = child.ping(gw_ml_eid, 8, pings, 0.2, 5)
            down = gateway_rtts(stack, child.value("ipaddr mleid"), pings)
        finally:
            child.close()
    leader = OtNode(ftd, 1, OT_OFFSET)
    try:
        form_leader(leader)
        ds = "".join(leader.cmd("dataset active -x"))
        ot_times = attach_runs(mtd, OT_OFFSET, ds, runs)
        child = OtNode(mtd, 20, OT_OFFSET)
        try:
            attach_child(child, ds, timeout=60)
            ot_up = child.ping(leader.value("ipaddr mleid"), 8, pings, 0.2, 5)
            ot_down = leader.ping(child.value("ipaddr mleid"), 8, pings, 0.2, 5)
        finally:
            child.close()
    finally:
        leader.close()
    out.append(f"1. attach: thread start -> state child, OpenThread MTD, {runs} runs each")
    out.append(line("   to the gateway", gw_times, "ms", 1000))
    out.append(line("   to an OpenThread leader (ot-cli-ftd)", ot_times, "ms", 1000))
    out.append(f"2. ping round trip, one hop, {pings} echoes of 8 bytes each way (replies/sent)")
    out.append(ot_rtts("   OT child -> gateway", up))
    out.append(line(f"   gateway -> OT child ({len(down)}/{pings})", down, "ms"))
    out.append(ot_rtts("   OT child -> OT leader", ot_up))
    out.append(ot_rtts("   OT leader -> OT child", ot_down))
    return out


# -- 3: memory per child entry (sans-IO) ---------------------------------------------------------


def parent_bytes(n: int) -> tuple[int, int]:
    """(bytes the RouterCore keeps for ``n`` attached children, its snapshot's JSON size)."""
    world = NetWorld(config=RouterConfig(max_children=max(n, 1)), seed=3)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            world.add_child(rx_on=True, timeout=240)
        world.run_until(lambda: len(world.attached()) == n, 600)
        # drop what is not the parent's: the children, the world's radio model and records
        world.nodes.clear()
        world.parent_events.clear()
        world.air.clear()
        world.source_match.clear()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(world.parent.children(world.now)) == n
    return kept, len(json.dumps(world.parent.snapshot().to_dict()))


def bench_memory() -> list[str]:
    (m0, s0), (m32, _s32), (m64, s64) = parent_bytes(0), parent_bytes(32), parent_bytes(64)
    return [
        "3. memory per child entry, border router network core (tracemalloc, sans-IO)",
        f"   32 children: {m32 - m0:7d} B kept, {(m32 - m0) / 32:6.0f} B per child",
        f"   64 children: {m64 - m0:7d} B kept, {(m64 - m0) / 64:6.0f} B per child; "
        f"32 -> 64: {(m64 - m32) / 32:6.0f} B per added child",
        f"   saved state (thread-router.json body): {(s64 - s0) / 64:6.0f} B per child",
    ]


# -- 4: keep-alive load of 32 children ------------------------------------------------------------


def attached(stack: ThreadStack) -> int:
    n: int = stack.result("thread_status")["children"]["attached"]
    return n


def cpu_per_minute(stack: ThreadStack, window: float) -> tuple[float, float, float]:
    pids = [stack.procs[n].proc.pid for n in ("radio", "border-router")]
    c0, t0 = [cpu_s(p) for p in pids], time.monotonic()
    time.sleep(window)  # the measurement window itself
    c1, t1 = [cpu_s(p) for p in pids], time.monotonic()
    per_min = [(b - a) / (t1 - t0) * 60 for a, b in zip(c0, c1, strict=True)]
    return per_min[0], per_min[1], t1 - t0


def bench_load(mtd: str, root: Path, window: float, children: int) -> list[str]:
    out = [f"4. keep-alive load, {children} OpenThread children, CPU s per minute "
           f"(window {window:.0f} s; radio service | border router)"]  # fmt: skip
    with thread_stack(root / "load", LOAD_OFFSET) as stack:
        ds = stack.dataset().to_hex()
        r, b, _ = cpu_per_minute(stack, window)
        out.append(f"   no child                                        {r:6.2f} | {b:6.2f}")
        for label, mode, poll in (
            ("rx-on, childtimeout 10 (Child Update every ~6 s)", None, None),
            ("sleepy, pollperiod 1000 (a data poll a second)", "-", 1000),
        ):
            wait(lambda: attached(stack) == 0, 60, "the previous children to time out", 0.5)
            nodes: list[OtNode] = []
            try:
                for i in range(children):
                    node = OtNode(mtd, 2 + i, LOAD_OFFSET)
                    nodes.append(node)
                    node.cmd("childtimeout 10")
                    attach_child(node, ds, mode=mode, poll_period_ms=poll, timeout=60)
                wait(lambda: attached(stack) == children, 30, f"{children} children listed")
                ot0 = sum(cpu_s(n.proc.pid) for n in nodes)
                r, b, took = cpu_per_minute(stack, window)
                ot = (sum(cpu_s(n.proc.pid) for n in nodes) - ot0) / took * 60 / children
                still = attached(stack)
                out.append(f"   {label:<48}{r:6.2f} | {b:6.2f}   ({still}/{children} still "
                           f"attached; each OpenThread node {ot:.3f})")  # fmt: skip
            finally:
                for node in nodes:
                    node.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="attach runs per parent")
    ap.add_argument("--pings", type=int, default=20, help="echoes per direction")
    ap.add_argument("--window", type=float, default=30.0, help="CPU measurement window, s")
    ap.add_argument("--children", type=int, default=32, help="children for the load (<= 32)")
    args = ap.parse_args()
    if not 1 <= args.children <= 32:
        ap.error("--children must be 1..32 (node ids 2..33 of the simulated air)")
    ftd, why_ftd = ot_cli_ftd()
    mtd, why_mtd = ot_cli_mtd()
    print("Thread attach: the gateway as a parent of OpenThread nodes, next to OpenThread")
    with tempfile.TemporaryDirectory(prefix="bench-attach-") as tmp:
        parts: list[Callable[[], list[str]]] = [bench_memory]
        if ftd is None or mtd is None:
            print(f"(parts 1, 2 and 4 skipped: {why_ftd or why_mtd})")
        else:
            parts.insert(
                0, lambda: bench_attach_and_ping(mtd, ftd, Path(tmp), args.runs, args.pings)
            )
            parts.append(lambda: bench_load(mtd, Path(tmp), args.window, args.children))
        for part in parts:
            for text in part():
                print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
