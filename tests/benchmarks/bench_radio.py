"""Radio foundation benchmark (not a test): driver CPU and SPI cost per frame, sustained frame
rates on the emulated AT86RF233, and back-to-back 127-byte frames against the physical ceiling.

    python tests/benchmarks/bench_radio.py [--frames N]

The emulator's SPI decoding runs inline on the event-loop thread; its time is measured inside
the emulated bus and subtracted, so "driver CPU" is the driver's own cost on that thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from drivers.at86rf233 import regs  # noqa: E402
from drivers.at86rf233.driver import At86rf233Radio  # noqa: E402
from drivers.radio import open_radio  # noqa: E402

OFFSET = 1500 + os.getpid() % 50


def frame(seq: int, dst: int, size: int, ack: bool) -> bytes:
    """A data frame of ``size`` bytes before the FCS (short addresses, PAN ID compression)."""
    fcf = 0x0001 | (0x20 if ack else 0) | 0x40 | (2 << 10) | (1 << 12) | (2 << 14)
    hdr = (
        fcf.to_bytes(2, "little")
        + bytes((seq & 0xFF,))
        + b"\x34\x12"
        + dst.to_bytes(2, "little")
        + b"\x01\x00"
    )
    return hdr + bytes((0x01,)) + bytes(size - len(hdr) - 1)


def emu(node: int, airtime: int, extra: str = "") -> str:
    return f"emulated:?node={node}&port_offset={OFFSET}&airtime={airtime}{extra}"


class Meter:
    def __init__(self, radio: At86rf233Radio) -> None:
        self.radio = radio

    def __enter__(self) -> Meter:
        s = self.radio.spi_stats
        self.cpu0, self.spi_ns0, self.xfers0 = time.thread_time_ns(), s["busy_ns"], s["transfers"]
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        s = self.radio.spi_stats
        self.wall = time.perf_counter() - self.t0
        self.cpu_ns = time.thread_time_ns() - self.cpu0
        self.spi_ns = s["busy_ns"] - self.spi_ns0
        self.xfers = s["transfers"] - self.xfers0


async def start_peer(node: int, airtime: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.drivers.peer_responder", emu(node, airtime), "0x1234", "0x0002", "120"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
    assert json.loads(line)["ready"]
    return proc


async def tx_cost(n: int) -> None:
    peer = await start_peer(2, 0)
    try:
        async with open_radio(emu(1, 0)) as r:
            assert isinstance(r, At86rf233Radio)
            await r.set_addresses(pan_id=0x1234, short_addr=0x0001)
            for i in range(20):  # warm-up
                await r.transmit(frame(i, 0x0002, 40, True))
            with Meter(r) as m:
                for i in range(n):
                    res = await r.transmit(frame(i, 0x0002, 40, True))
                    assert res.ok, res
            print(f"TX acked 40-byte frames, no airtime:   {n / m.wall:8.0f} frames/s")
            print(f"  driver CPU per transmitted frame:    {(m.cpu_ns - m.spi_ns) / n / 1000:8.1f} us"
                  f"  (+ {m.spi_ns / n / 1000:.1f} us inside the emulated SPI)")  # fmt: skip
            print(f"  SPI transactions per transmitted frame: {m.xfers / n:5.1f}")
            with Meter(r) as m:
                for i in range(n):
                    await r.transmit(frame(i, 0xFFFF, 40, False), basic=True)
            print(f"TX basic broadcast, no airtime:        {n / m.wall:8.0f} frames/s"
                  f"  ({(m.cpu_ns - m.spi_ns) / n / 1000:.1f} us driver CPU, {m.xfers / n:.1f} SPI transactions)")  # fmt: skip
    finally:
        peer.terminate()
        peer.communicate()


async def rx_cost(n: int) -> None:
    # this process receives; a separate process transmits as fast as it can
    async with open_radio(emu(2, 0)) as r:
        assert isinstance(r, At86rf233Radio)
        await r.set_addresses(pan_id=0x1234, short_addr=0x0002)
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, emu(1, 0), str(n + 50)],
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        got = 0
        with r.subscribe(maxsize=10000) as sub:
            while got < 50:  # warm-up
                if await sub.get(10) is None:
                    break
                got += 1
            got = 0
            with Meter(r) as m:
                while got < n:
                    if await sub.get(5) is None:
                        break
                    got += 1
        sender.wait(60)
        print(f"RX acked 40-byte frames, no airtime:   {got / m.wall:8.0f} frames/s received")
        print(f"  driver CPU per received frame:       {(m.cpu_ns - m.spi_ns) / max(got, 1) / 1000:8.1f} us"
              f"  (+ {m.spi_ns / max(got, 1) / 1000:.1f} us inside the emulated SPI)")  # fmt: skip
        print(f"  SPI transactions per received frame: {m.xfers / max(got, 1):5.1f}")


SENDER = """
import asyncio, sys
from drivers.radio import open_radio
from tests.benchmarks.bench_radio import frame
async def main():
    async with open_radio(sys.argv[1]) as r:
        await r.set_addresses(pan_id=0x1234, short_addr=0x0001)
        await asyncio.sleep(0.3)
        for i in range(int(sys.argv[2])):
            await r.transmit(frame(i, 0x0002, 40, True), retries=7)
asyncio.run(main())
"""


async def back_to_back(n: int) -> None:
    ceiling_us = regs.airtime_us(127) + regs.T_TX_START_US + regs.T_TX_END_TO_PLL_US
    ceiling = 1e6 / ceiling_us
    async with open_radio(emu(1, 1)) as r:
        assert isinstance(r, At86rf233Radio)
        big = frame(0, 0xFFFF, 125, False)
        for _ in range(10):
            await r.transmit(big, basic=True)
        with Meter(r) as m:  # a queue of frames, as the radio service feeds the driver
            await asyncio.gather(
                *(r.transmit(frame(i, 0xFFFF, 125, False), basic=True) for i in range(n))
            )
        rate = n / m.wall
        print(
            f"Back-to-back 127-byte frames, basic mode, airtime on: {rate:6.1f} frames/s = "
            f"{100 * rate / ceiling:5.1f} % of the ceiling {ceiling:.1f}/s "
            f"({ceiling_us} us = 4256 us on air + {ceiling_us - 4256} us turnaround)"
        )
        with Meter(r) as m:
            results = await asyncio.gather(
                *(r.transmit(frame(i, 0xFFFF, 125, False)) for i in range(n))
            )
            assert all(res.ok for res in results)
        rate = n / m.wall
        print(
            f"Back-to-back 127-byte frames, TX_ARET with CSMA-CA:    {rate:6.1f} frames/s = "
            f"{100 * rate / ceiling:5.1f} % of the same ceiling (random back-off 0..7 x 320 us + CCA)"
        )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=400)
    args = ap.parse_args()
    print(f"== radio benchmark ({os.cpu_count()} CPUs, emulated AT86RF233, port offset {OFFSET})")
    await tx_cost(args.frames)
    await rx_cost(args.frames)
    await back_to_back(max(100, args.frames // 2))


if __name__ == "__main__":
    asyncio.run(main())
