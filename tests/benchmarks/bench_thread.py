"""Thread commissioning benchmark: join time through the gateway, next to OpenThread.

    python tests/benchmarks/bench_thread.py [--runs N] [--joiners 10]

Measured like openthread-sim-air.md measured OpenThread: from "joiner start" to the joiner
holding the network credentials (OpenThread: ``joiner start`` to ``Join success``). The gateway
side is the real services (radio + border router) on the emulated AT86RF233, with the native
commissioner; the joiner is the reference thing on its own emulated radio, scanning channels
11-26 at 300 ms each like OpenThread. With ``OT_CLI_FTD`` set it also measures an OpenThread
joiner through the gateway and an OpenThread-to-OpenThread join on the same air.

Last, N joiners are admitted at once (one EUI-64 entry each; OpenThread's commissioner keeps
only 2 entries by default) and started together: the time until all of them hold the
credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.thread.stack import ThreadStack, thread_stack  # noqa: E402

PSKD = "J01NME"
BASE_OFFSET = 140


def eui(n: int) -> str:
    return f"18b43000000002{n:02x}"


def joiner_proc(
    stack: ThreadStack, node: int, channels: str, eui64: str, start_at: float | None = None
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "gateway.peers.thing", "join", "--radio", stack.radio_url(node),
        "--pskd-file", str(stack.secret_file(PSKD)), "--eui64", eui64, "--channels", channels,
        "--json", "--quiet",
        "--timeout", "90",
    ]  # fmt: skip
    if start_at is not None:
        cmd += ["--start-at", f"{start_at:.3f}"]
    return subprocess.Popen(cmd, env=stack.peer_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def result_of(p: subprocess.Popen[str], strict: bool = True) -> dict[str, object]:
    out, err = p.communicate(timeout=120)
    if p.returncode != 0:
        if strict:
            raise RuntimeError(f"joiner failed ({p.returncode}): {err.strip()[-300:]}")
        return {"failed": err.strip().splitlines()[-2:] if err.strip() else p.returncode}
    doc: dict[str, object] = json.loads(out.splitlines()[-1])
    return doc


def summary(label: str, values: list[float]) -> str:
    if len(values) == 1:
        return f"{label:<58} {values[0]:6.2f} s"
    return (
        f"{label:<58} {statistics.mean(values):6.2f} s  (min {min(values):.2f}, "
        f"max {max(values):.2f}, n={len(values)})"
    )


def bench_gateway(root: Path, runs: int, joiners: int) -> list[str]:
    lines: list[str] = []
    with thread_stack(root / "gw", BASE_OFFSET) as stack:
        stack.result("commissioner_start")
        full, disc, single = [], [], []
        for i in range(runs):
            stack.result("joiner_add", eui64=eui(i), pskd=PSKD, timeout_s=300)
            doc = result_of(joiner_proc(stack, 2, "11-26", eui(i)))
            full.append(float(doc["seconds"]))  # type: ignore[arg-type]
            disc.append(float(doc["discovery_seconds"]))  # type: ignore[arg-type]
            doc = result_of(joiner_proc(stack, 2, str(stack.channel), eui(i)))
            single.append(float(doc["seconds"]))  # type: ignore[arg-type]
        lines.append(summary("reference joiner -> gateway, channels 11-26", full))
        lines.append(summary("  of which discovery (16 channels x 300 ms)", disc))
        lines.append(
            summary(
                "  after discovery: DTLS + JOIN_FIN + JOIN_ENT",
                [f - d for f, d in zip(full, disc, strict=True)],
            )
        )
        lines.append(summary("reference joiner -> gateway, its channel only", single))
        # N joiners admitted at once, started at the same instant, then spread over 2 s (a
        # technician switching things on); a device that fails tries again (at most 3
        # attempts), as a user would repeat `joiner start`
        for label, spread, first in (
            ("started together", 0.0, 0x40),
            ("started over 2 s", 2.0, 0x60),
        ):
            lines += many_joiners(stack, joiners, label, spread, first)
        st = stack.status()["commissioning"]
        drops = {k: v for k, v in st["policer"].items() if k.startswith("dropped") and v}
        lines.append(
            f"  border router: {st['joiner_router']['entrusted']} entrusted, policer drops "
            f"{drops or 'none'}, {st['tx']['failed']} unacknowledged transmission(s), "
            f"unsecured reassembly {st['link']['reassembly_unsecured']}"
        )
        if os.environ.get("OT_CLI_FTD"):
            lines += bench_ot_through_gateway(stack, runs)
        stack.result("commissioner_stop")
    return lines


def many_joiners(
    stack: ThreadStack, joiners: int, label: str, spread: float, first: int
) -> list[str]:
    for n in range(joiners):
        stack.result("joiner_add", eui64=eui(first + n), pskd=PSKD, timeout_s=300)
    start = time.time() + 3.0  # every process has opened its radio by then
    at = {n: start + spread * n / max(1, joiners - 1) for n in range(joiners)}
    procs = {n: joiner_proc(stack, 3 + n, "11-26", eui(first + n), at[n]) for n in range(joiners)}
    attempts = dict.fromkeys(procs, 1)
    done: dict[int, float] = {}
    failures: list[str] = []
    while procs:
        for n, p in list(procs.items()):
            if p.poll() is None:
                continue
            del procs[n]
            doc = result_of(p, strict=False)
            if "seconds" in doc:
                done[n] = time.time() - at[n]
                continue
            why = doc["failed"]
            failures.append(str(why[0] if isinstance(why, list) else why))
            if attempts[n] < 3:
                attempts[n] += 1
                procs[n] = joiner_proc(stack, 3 + n, "11-26", eui(first + n))
        time.sleep(0.05)
    each = sorted(done.values())
    out = [summary(f"{len(each)}/{joiners} admitted at once, {label}: each joined after", each)]
    if each:
        last = max(done[n] + at[n] for n in done) - start
        out.append(summary(f"{joiners} admitted at once, {label}: last joined after", [last]))
    retries = sum(attempts.values()) - joiners
    reasons = sorted({f.removeprefix("join failed: ") for f in failures})
    out.append(f"  {retries} retried join(s)" + (": " + "; ".join(reasons) if reasons else ""))
    return out


def bench_ot_through_gateway(stack: ThreadStack, runs: int) -> list[str]:
    from tests.interop.otnode import OtNode

    binary = os.environ["OT_CLI_FTD"]
    times = []
    for i in range(runs):
        node = OtNode(binary, 20 + i, stack.port_offset)
        try:
            stack.result("joiner_add", eui64=node.value("eui64"), pskd=PSKD, timeout_s=300)
            node.cmd("ifconfig up")
            mark = node.mark()
            t0 = time.monotonic()
            node.cmd(f"joiner start {PSKD}")
            m = node.wait_for(r"Join (success|failed.*)", 30, since=mark)
            if m.group(0) != "Join success":
                raise RuntimeError(m.group(0))
            times.append(time.monotonic() - t0)
        finally:
            node.close()
    return [summary("OpenThread joiner -> gateway (native commissioner)", times)]


def bench_ot_to_ot(runs: int) -> list[str]:
    from tests.interop.otnode import OtNode, form_leader

    binary = os.environ["OT_CLI_FTD"]
    offset = BASE_OFFSET + 1
    leader = OtNode(binary, 1, offset)
    times = []
    try:
        form_leader(leader)
        mark = leader.mark()
        leader.cmd("commissioner start")
        leader.wait_for("Commissioner: active", 10, since=mark)
        leader.cmd(f"commissioner joiner add * {PSKD}")
        for i in range(runs):
            node = OtNode(binary, 2 + i, offset)
            try:
                node.cmd("ifconfig up")
                mark = node.mark()
                t0 = time.monotonic()
                node.cmd(f"joiner start {PSKD}")
                m = node.wait_for(r"Join (success|failed.*)", 30, since=mark)
                if m.group(0) != "Join success":
                    raise RuntimeError(m.group(0))
                times.append(time.monotonic() - t0)
            finally:
                node.close()
    finally:
        leader.close()
    return [summary("OpenThread joiner -> OpenThread leader + commissioner", times)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--joiners", type=int, default=10)
    args = ap.parse_args()
    print("Thread commissioning: joiner start -> credentials held (wall clock)")
    with tempfile.TemporaryDirectory(prefix="bench-thread-") as tmp:
        lines = bench_gateway(Path(tmp), args.runs, args.joiners)
    if os.environ.get("OT_CLI_FTD"):
        lines += bench_ot_to_ot(args.runs)
    else:
        lines.append("(set OT_CLI_FTD to an ot-cli-ftd simulation binary for the OpenThread rows)")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
