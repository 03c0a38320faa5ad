"""RCP backend benchmark (not a test): transmit round trip, frames per second and host CPU per
frame through the Spinel RCP backend, and the same through the emulated AT86RF233, in one run,
against one emulated AT86RF233 receiver (its own process) on the simulated air.

    OT_RCP=/path/to/ot-rcp python tests/benchmarks/bench_rcp.py [--frames N]

Without ``OT_RCP`` (CI does not build OpenThread) the RCP is the test suite's fake RCP process,
which answers at once without a radio: the figures are then the host side of Spinel alone
(framing, codec, the pty round trip) and are labelled so.

"Host CPU" is this process's CPU time (the backend, its event loop and, for the emulated
AT86RF233, the chip model it runs inline, whose share is shown apart); the RCP process's own CPU
(OpenThread's simulated radio and sub-MAC) is read from /proc and shown apart too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from drivers.at86rf233.driver import At86rf233Radio  # noqa: E402
from drivers.radio import Radio, open_radio  # noqa: E402
from drivers.spinel.backend import SpinelRadio  # noqa: E402
from drivers.spinel.link import ForkPtyLink  # noqa: E402
from tests.benchmarks.bench_radio import frame  # noqa: E402

OFFSET = 1634  # the RCP tests' range (1630..1640)
PAN, SRC, DST = 0x1234, 0x0001, 0x0002
CLK = os.sysconf("SC_CLK_TCK")


def child_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


async def start_receiver() -> subprocess.Popen[str]:
    url = f"emulated:?node=3&port_offset={OFFSET}&airtime=0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.drivers.peer_responder", url, hex(PAN), hex(DST), "600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
    assert json.loads(line)["ready"]
    # drain its per-frame lines so its pipe never fills
    asyncio.get_running_loop().run_in_executor(None, proc.stdout.read)
    return proc


def pid_of(radio: Radio) -> int | None:
    link = getattr(radio, "link", None)
    return link.pid if isinstance(link, ForkPtyLink) else None


async def measure(name: str, radio: Radio, n: int, ack: bool, size: int) -> dict[str, float]:
    dst = DST if ack else 0xFFFF
    for i in range(20):  # warm-up
        await radio.transmit(frame(i, dst, size, ack))
    spi0 = radio.spi_stats["busy_ns"] if isinstance(radio, At86rf233Radio) else 0
    child0 = child_cpu_s(pid_of(radio))
    rtts: list[float] = []
    failed = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        res = await radio.transmit(frame(i, dst, size, ack))
        rtts.append(time.perf_counter() - s)
        failed += not res.ok
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    chip = ((radio.spi_stats["busy_ns"] - spi0) / 1e9) if isinstance(radio, At86rf233Radio) else 0
    child = child_cpu_s(pid_of(radio)) - child0
    rtts.sort()
    row = {
        "fps": n / wall,
        "median_ms": statistics.median(rtts) * 1000,
        "p95_ms": rtts[int(0.95 * (n - 1))] * 1000,
        "cpu_us": cpu / n * 1e6,
        "chip_us": chip / n * 1e6,
        "rcp_us": child / n * 1e6,
        "failed": failed,
    }
    kind = f"{size}-byte {'acked' if ack else 'broadcast'}"
    extra = ""
    if row["chip_us"]:
        extra = f" (of which {row['chip_us']:.0f} us in the chip emulator)"
    if pid_of(radio) is not None:
        extra = f" (+ {row['rcp_us']:.0f} us in the RCP process)"
    print(f"{name:26} {kind:18} {row['fps']:7.0f} frames/s  round trip median "
          f"{row['median_ms']:6.2f} ms, p95 {row['p95_ms']:6.2f} ms  host CPU "
          f"{row['cpu_us']:6.0f} us/frame{extra}" + (f"  {failed} failed" if failed else ""))  # fmt: skip
    return row


async def run(n: int) -> None:
    rcp_bin = os.environ.get("OT_RCP")
    os.environ["PORT_OFFSET"] = str(OFFSET)
    if rcp_bin:
        rcp_url = f"spinel+hdlc+forkpty://{rcp_bin}?forkpty-arg=1"
        label = "RCP (OpenThread ot-rcp)"
    else:
        args = "&".join(f"forkpty-arg={a}" for a in ("-m", "tests.drivers.spinel.fake_rcp", "1"))
        rcp_url = f"spinel+hdlc+forkpty://{sys.executable}?{args}"
        label = "RCP (fake, no radio)"
        print("OT_RCP is not set: the RCP is the tests' fake RCP (answers at once, no air); "
              "the figures are the host side of Spinel only")  # fmt: skip
    receiver = await start_receiver()
    cases = ((True, 20), (True, 100), (False, 100))
    try:
        # one radio open at a time: an emulated chip in this process would otherwise spend CPU
        # on every datagram of the air while the RCP is measured
        rcp = open_radio(rcp_url)
        t0 = time.perf_counter()
        await rcp.open()
        print(f"{label}: open (reset, version checks, configuration) took "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")  # fmt: skip
        try:
            await rcp.set_channel(11)
            await rcp.set_addresses(pan_id=PAN, short_addr=SRC)
            for ack, size in cases:
                await measure(label, rcp, n, ack, size)
            if isinstance(rcp, SpinelRadio):
                c = rcp.counters.as_dict()
                print(f"RCP counters: {c['hdlc_frames']} HDLC frames in, "
                      f"{c['rcp_timeouts']} timeouts, {c['recoveries']} recoveries")  # fmt: skip
        finally:
            await rcp.close()
        async with open_radio(f"emulated:?node=4&port_offset={OFFSET}&airtime=0") as emu:
            await emu.set_channel(11)
            await emu.set_addresses(pan_id=PAN, short_addr=SRC)
            for ack, size in cases:
                await measure("emulated AT86RF233", emu, n, ack, size)
    finally:
        receiver.terminate()
        receiver.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    print(f"== RCP benchmark ({os.cpu_count()} CPUs, port offset {OFFSET}, no airtime on the "
          "emulated radios; OpenThread's simulated radio has none either)")  # fmt: skip
    asyncio.run(run(args.frames))


if __name__ == "__main__":
    main()
