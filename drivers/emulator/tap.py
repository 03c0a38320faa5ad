"""A passive tap on the simulated air: every frame of a port group, on every channel, into a
pcap (LINKTYPE 195) and/or one line per frame. It takes no node id and never transmits, so it
sees OpenThread nodes and emulated radios alike.

    python -m drivers.emulator.tap --port-offset 0 --pcap air.pcap [--channel 15] [--duration 10]
"""

from __future__ import annotations

import argparse
import select
import sys
import time

from drivers.emulator.air import group_port, open_rx_socket
from drivers.mac_header import describe
from drivers.pcap import PcapWriter


class AirTap:
    """Blocking capture loop (run it in a thread or its own process)."""

    def __init__(self, port_offset: int, pcap: str | None = None, channel: int | None = None):
        self.port_offset = port_offset
        self.channel = channel
        self._sock = open_rx_socket(port_offset)
        self._pcap = PcapWriter(pcap) if pcap else None
        self.frames = 0

    def poll(self, timeout: float) -> list[tuple[int, int, bytes]]:
        """Frames seen within ``timeout`` as (sender node id, channel, PSDU)."""
        out: list[tuple[int, int, bytes]] = []
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return out
        while True:
            try:
                data, (_h, port) = self._sock.recvfrom(256)
            except BlockingIOError:
                return out
            if len(data) < 2:
                continue
            ch, psdu = data[0], data[1:]
            if self.channel is not None and ch != self.channel:
                continue
            self.frames += 1
            if self._pcap is not None:
                self._pcap.write(psdu)
            out.append((port - group_port(self.port_offset), ch, psdu))

    def close(self) -> None:
        self._sock.close()
        if self._pcap is not None:
            self._pcap.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m drivers.emulator.tap", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--port-offset", type=int, default=0)
    ap.add_argument("--pcap", help="write the capture to this file")
    ap.add_argument("--channel", type=int, help="only this channel")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    ap.add_argument("--quiet", action="store_true", help="no line per frame")
    args = ap.parse_args(argv)
    tap = AirTap(args.port_offset, args.pcap, args.channel)
    end = None if args.duration is None else time.monotonic() + args.duration
    print(f"tapping the air at port offset {args.port_offset}", file=sys.stderr, flush=True)
    try:
        while end is None or time.monotonic() < end:
            for node, ch, psdu in tap.poll(
                0.2 if end is None else max(0.0, min(0.2, end - time.monotonic()))
            ):
                if not args.quiet:
                    print(
                        f"{time.strftime('%H:%M:%S')} node{node:02d} ch{ch} {describe(psdu[:-2])}",
                        flush=True,
                    )
    except KeyboardInterrupt:
        pass
    finally:
        tap.close()
    print(f"{tap.frames} frame(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
