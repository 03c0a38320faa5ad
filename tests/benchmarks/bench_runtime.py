"""Runtime benchmark (not a test): what the radio service costs on top of the driver, and what
the three services cost to run.

    python tests/benchmarks/bench_runtime.py [--frames N] [--starts N]

- radio socket added latency: ``transmit`` round trips through the radio service (the project's
  JsonLineClient over the Unix socket) against ``transmit`` on a driver opened in this process;
  both on emulated radios without airtime, broadcast frames (no ACK wait), one at a time;
- throughput through the socket: frames/s, one at a time and pipelined, unsecured and secured
  (CCM* and the frame-counter store in the path);
- resident memory (VmRSS) of each service once ready;
- time from process start to READY=1 on the notify socket, per service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from drivers.radio import open_radio  # noqa: E402
from gateway.runtime.jsonline import JsonLineClient  # noqa: E402
from tests.runtime.helpers import (  # noqa: E402
    Install,
    ServiceProcess,
    Services,
    temp_install,
    vm_rss_kib,
)

OFFSET = 1550 + os.getpid() % 50
KEY = "00112233445566778899aabbccddeeff"


def frame(seq: int, src_short: int, size: int = 40) -> bytes:
    """A broadcast 2006 data frame, short addresses, PAN ID compression (no FCS)."""
    fcf = 0x0001 | 0x0040 | (2 << 10) | (1 << 12) | (2 << 14)
    hdr = fcf.to_bytes(2, "little") + bytes((seq & 0xFF,)) + b"\x34\x12\xff\xff"
    hdr += src_short.to_bytes(2, "little")
    return hdr + b"\x41" + bytes(size - len(hdr) - 1)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def line(name: str, samples_s: list[float]) -> str:
    us = [s * 1e6 for s in samples_s]
    return (
        f"  {name:<34} median {statistics.median(us):7.0f} us   p99 {pct(us, 99):7.0f} us"
        f"   (n={len(us)})"
    )


async def direct_latency(n: int) -> list[float]:
    async with open_radio(f"emulated:?node=3&port_offset={OFFSET}&airtime=0") as radio:
        for i in range(20):
            await radio.transmit(frame(i, 3))
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            res = await radio.transmit(frame(i, 3))
            out.append(time.perf_counter() - t0)
            assert res.ok
        return out


async def socket_figures(inst: Install, n: int) -> None:
    async with JsonLineClient(inst.radio_socket) as c:
        await c.call("hello", client="bench")
        await c.call("register_key", key_id="k", key=KEY, key_id_mode=1, key_index=1)
        hexes = [frame(i, 1).hex() for i in range(n)]
        for h in hexes[:20]:
            await c.call("transmit", frame=h)
        via: list[float] = []
        for h in hexes:
            t0 = time.perf_counter()
            res = await c.call("transmit", frame=h)
            via.append(time.perf_counter() - t0)
            assert res["ok"]
        sec: list[float] = []
        for h in hexes:
            t0 = time.perf_counter()
            res = await c.call("transmit", frame=h, security={"key_id": "k", "level": 5})
            sec.append(time.perf_counter() - t0)
            assert res["ok"]
        direct = await direct_latency(n)
        print("Transmit round trip, 40-byte broadcast frames, emulated radio, no airtime:")
        print(line("driver in this process", direct))
        print(line("through the radio socket", via))
        print(line("through the socket, MAC-secured", sec))
        added = statistics.median(via) - statistics.median(direct)
        added99 = pct(via, 99) - pct(direct, 99)
        print(
            f"  added by the radio service:       median {added * 1e6:7.0f} us   p99 {added99 * 1e6:7.0f} us"
        )

        print("Throughput through the radio socket (40-byte broadcast frames):")
        print(f"  one request at a time              {n / sum(via):7.0f} frames/s")
        print(f"  one at a time, MAC-secured         {n / sum(sec):7.0f} frames/s")
        for depth, secured in ((16, False), (16, True)):
            sem = asyncio.Semaphore(depth)

            async def one(h: str, secured: bool = secured, sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    kw: dict[str, Any] = (
                        {"security": {"key_id": "k", "level": 5}} if secured else {}
                    )
                    res = await c.call("transmit", frame=h, **kw)
                    assert res["ok"]

            t0 = time.perf_counter()
            await asyncio.gather(*(one(h) for h in hexes))
            rate = n / (time.perf_counter() - t0)
            what = "MAC-secured" if secured else "unsecured"
            print(f"  {depth} in flight, {what:<12}          {rate:7.0f} frames/s")


def start_to_ready(sp: ServiceProcess, timeout: float = 30.0) -> float:
    """Seconds from spawning the process to READY=1 on its notify socket."""
    assert sp.notify_socket is not None
    sock = sp.notify_socket.sock
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([sock], [], [], 0.5)
        if "READY=1" in sp.notify_socket.assignments():
            return time.monotonic() - sp.started_at
        if not sp.alive():
            raise SystemExit(f"{sp.service} exited:\n{sp.stderr()}")
    raise SystemExit(f"{sp.service} not ready after {timeout} s")


def service_figures(starts: int) -> None:
    ready: dict[str, list[float]] = {"radio": [], "border-router": [], "group-owner": []}
    rss: dict[str, list[int]] = {k: [] for k in ready}
    for i in range(starts):
        with temp_install(OFFSET, radio_params="airtime=0") as inst, Services(inst) as svc:
            radio = svc.start("radio", wait=False)
            ready["radio"].append(start_to_ready(radio))
            for name in ("border-router", "group-owner"):
                sp = svc.start(name, wait=False)
                ready[name].append(start_to_ready(sp))
            time.sleep(0.5)  # let start-up garbage settle
            for sp in svc.procs:
                rss[sp.service].append(vm_rss_kib(sp.pid))
            for sp in reversed(svc.procs):
                sp.stop()
        print(f"  start {i + 1}/{starts} done", file=sys.stderr)
    print(f"Services ({starts} starts each; the radio service first, then the others on it):")
    for name in ready:
        r = [x * 1000 for x in ready[name]]
        m = [x / 1024 for x in rss[name]]
        print(
            f"  {name:<14} start to READY median {statistics.median(r):6.0f} ms "
            f"(min {min(r):5.0f}, max {max(r):5.0f})   VmRSS {statistics.median(m):5.1f} MiB"
        )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--starts", type=int, default=3)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(
        f"== runtime benchmark ({os.cpu_count()} CPUs, load average {load:.1f}, "
        f"emulated AT86RF233, port offset {OFFSET})"
    )
    with temp_install(OFFSET, radio_params="airtime=0") as inst, Services(inst) as svc:
        radio = svc.start("radio")
        await socket_figures(inst, args.frames)
        print(f"  radio service VmRSS after the runs: {vm_rss_kib(radio.pid) / 1024:.1f} MiB")
        radio.stop()
    service_figures(args.starts)


if __name__ == "__main__":
    asyncio.run(main())
