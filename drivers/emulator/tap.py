"""A passive tap on the simulated air: every frame of a port group, on every channel, into a
pcap (LINKTYPE 195) and/or one line per frame. It takes no node id and never transmits, so it
sees OpenThread nodes and emulated radios alike.

    python -m drivers.emulator.tap --port-offset 0 --pcap air.pcap [--channel 15] [--duration 10]
"""

from __future__ import annotations

import select
import sys
import time

import click

from drivers.emulator.air import MAX_OFFSET, group_port, open_rx_socket
from drivers.mac_header import describe
from drivers.pcap import PcapWriter


class AirTap:
    """Blocking capture loop (run it in a thread or its own process)."""

    def __init__(self, port_offset: int, pcap: str | None = None, channel: int | None = None):
        self.port_offset = port_offset
        self.channel = channel
        self._sock = open_rx_socket(port_offset)
        try:
            self._pcap = PcapWriter(pcap) if pcap else None
        except BaseException:
            self._sock.close()
            raise
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


@click.command(
    name="python -m drivers.emulator.tap",
    help=(__doc__ or "").split("\n\n")[0],
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--port-offset", type=click.IntRange(0, MAX_OFFSET), default=0, show_default=True)
@click.option("--pcap", type=click.Path(dir_okay=False), help="write the capture to this file")
@click.option("--channel", type=click.IntRange(11, 26), help="only this channel")
@click.option("--duration", type=click.FloatRange(min=0), help="stop after this many seconds")
@click.option("--quiet", is_flag=True, help="no line per frame")
def cli(
    port_offset: int, pcap: str | None, channel: int | None, duration: float | None, quiet: bool
) -> None:
    try:
        tap = AirTap(port_offset, pcap, channel)
    except OSError as e:
        raise click.ClickException(
            f"cannot open the air or the capture file: {e.strerror or e}"
        ) from None
    end = None if duration is None else time.monotonic() + duration
    print(f"tapping the air at port offset {port_offset}", file=sys.stderr, flush=True)
    try:
        while end is None or time.monotonic() < end:
            for node, ch, psdu in tap.poll(
                0.2 if end is None else max(0.0, min(0.2, end - time.monotonic()))
            ):
                if not quiet:
                    print(
                        f"{time.strftime('%H:%M:%S')} node{node:02d} ch{ch} {describe(psdu[:-2])}",
                        flush=True,
                    )
    except KeyboardInterrupt:
        pass
    finally:
        tap.close()
    print(f"{tap.frames} frame(s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the tap; the exit status of the command line."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
