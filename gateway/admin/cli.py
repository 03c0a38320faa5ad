"""gwctl: the technician's command line.

Exit codes (DESIGN §8): 0 success; 1 failure not listed here; 2 usage; 3 no such device;
4 permission denied; 5 wrong chip; 6 radio not responding; 7 transmission not acknowledged or
channel busy; 8 service not running or unreachable; 9 bad configuration or state.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from drivers.errors import GatewayError, InvalidArgument, TxChannelBusy, TxNoAck
from gateway.admin import output

T = TypeVar("T")

EXIT_CODES_HELP = """\b
Exit codes:
  0 success            5 wrong chip
  1 other failure      6 radio not responding
  2 usage              7 not acknowledged / channel busy
  3 no such device     8 service not running or unreachable
  4 permission denied  9 bad configuration or state"""


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
    )(f)


def radio_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--radio",
        "radio_url",
        metavar="URL",
        help="Open this radio directly (at86rf233:///dev/spidev0.0?... or emulated:?node=N...).",
    )(f)


def run(as_json: bool, coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; turn typed errors into a message and their exit code."""
    try:
        return asyncio.run(_with_signals(coro_fn))
    except GatewayError as exc:
        fail(exc, as_json)
    except KeyboardInterrupt:
        sys.exit(130)
    raise AssertionError("unreachable")


async def _with_signals(coro_fn: Callable[[], Awaitable[T]]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    return await coro_fn()


def fail(exc: GatewayError, as_json: bool) -> NoReturn:
    if as_json:
        output.emit_json({"ok": False, "error": exc.to_dict()})
    msg = output.style("error:", "31;1", sys.stderr) + f" {exc.message}"
    output.info(msg)
    if exc.hint:
        output.info(output.style("hint:", "33", sys.stderr) + f" {exc.hint}")
    sys.exit(exc.exit_code)


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(package_name="thing-gateway", prog_name="gwctl")
def main() -> None:
    """Administer the thing-bootstrapping gateway."""


# ------------------------------------------------------------------------------------ radio


@main.group(epilog=EXIT_CODES_HELP)
def radio() -> None:
    """Probe, scan, sniff and transmit on an 802.15.4 radio."""


def _open(radio_url: str | None) -> Any:
    from drivers.radio import open_radio
    from gateway.admin.radio_url import configured_radio_url

    return open_radio(radio_url or configured_radio_url())


@radio.command("probe", epilog=EXIT_CODES_HELP)
@radio_option
@json_option
def radio_probe(radio_url: str | None, as_json: bool) -> None:
    """Identify the chip and check that it answers and transmits."""

    async def go() -> dict[str, Any]:
        t0 = time.monotonic()
        async with _open(radio_url) as r:
            ident = r.info.as_dict()
            scan = await r.energy_scan([r.channel], 0.005)
            return {
                "ok": True,
                "radio": ident,
                "channel": r.channel,
                "tx_power_dbm": r.tx_power_dbm,
                "ed_dbm": scan[r.channel],
                "open_ms": round((time.monotonic() - t0) * 1000, 1),
                "counters": r.counters.as_dict(),
            }

    doc = run(as_json, go)
    if as_json:
        output.emit_json(doc)
        return
    rid = doc["radio"]
    print(f"radio     {rid['part']} rev {rid['version_num']} ({rid['backend']})")
    print(f"url       {rid['url']}")
    print(f"eui64     {rid['eui64']}")
    print(f"channel   {doc['channel']}  tx power {doc['tx_power_dbm']:+.1f} dBm")
    print(f"energy    {doc['ed_dbm']} dBm on channel {doc['channel']}")
    print(f"health    {output.style('ok', '32')} (opened in {doc['open_ms']} ms)")


def _parse_channels(spec: str) -> list[int]:
    out: list[int] = []
    try:
        for part in spec.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise click.BadParameter(f"{spec!r}: use e.g. 11-26 or 11,15,20") from None
    bad = [c for c in out if not 11 <= c <= 26]
    if bad or not out:
        raise click.BadParameter(f"channels must be within 11..26 (got {spec!r})")
    return out


@radio.command("scan", epilog=EXIT_CODES_HELP)
@radio_option
@click.option(
    "--channels", default="11-26", show_default=True, help="Channels, e.g. 11-26 or 15,20."
)
@click.option(
    "--duration",
    type=click.FloatRange(0.001, 10.0),
    default=0.1,
    show_default=True,
    help="Seconds of measurement per channel.",
)
@json_option
def radio_scan(radio_url: str | None, channels: str, duration: float, as_json: bool) -> None:
    """Measure the peak energy on each channel (energy-detect scan)."""
    chans = _parse_channels(channels)
    progress = output.Progress("scanning", len(chans), enabled=True)

    async def go() -> dict[int, int]:
        async with _open(radio_url) as r:
            result: dict[int, int] = await r.energy_scan(
                chans,
                duration,
                progress=lambda ch, done, total: progress.update(done, f"channel {ch}"),
            )
            return result

    res = run(as_json, go)
    if as_json:
        output.emit_json({"channels": [{"channel": c, "ed_dbm": res[c]} for c in chans]})
        return
    quietest = min(chans, key=lambda c: res[c])
    for c in chans:
        bar = "#" * max(0, (res[c] + 94) // 3)
        print(f"channel {c:2d}  {res[c]:4d} dBm  {bar}")
    print(f"quietest channel: {quietest}")


@radio.command("sniff", epilog=EXIT_CODES_HELP)
@radio_option
@click.option("--channel", type=click.IntRange(11, 26), required=True)
@click.option(
    "--pcap", "pcap_path", type=click.Path(dir_okay=False), help="Write a pcap (LINKTYPE 195)."
)
@click.option("--duration", type=click.FloatRange(0.0), help="Stop after this many seconds.")
@click.option("--count", type=click.IntRange(1), help="Stop after this many frames.")
@json_option
def radio_sniff(
    radio_url: str | None,
    channel: int,
    pcap_path: str | None,
    duration: float | None,
    count: int | None,
    as_json: bool,
) -> None:
    """Capture every frame on a channel (promiscuous), to the terminal and/or a pcap file."""

    frames: list[dict[str, Any]] = []

    async def go() -> int:
        from drivers.mac_header import describe
        from drivers.pcap import PcapWriter

        pcap = PcapWriter(pcap_path) if pcap_path else None
        n = 0
        try:
            async with _open(radio_url) as r:
                await r.set_channel(channel)
                await r.set_promiscuous(True)
                with r.subscribe(maxsize=4096) as sub:
                    output.info(
                        f"capturing on channel {channel}" + (f" to {pcap_path}" if pcap else "")
                    )
                    t_end = None if duration is None else time.monotonic() + duration
                    with contextlib.suppress(asyncio.CancelledError):
                        while count is None or n < count:
                            left = None if t_end is None else t_end - time.monotonic()
                            if left is not None and left <= 0:
                                break
                            f = await sub.get(left)
                            if f is None:
                                if t_end is None:
                                    break  # radio closed
                                continue
                            n += 1
                            if pcap is not None:
                                pcap.write(f.psdu, f.wall_time)
                            if as_json:
                                frames.append(
                                    {
                                        "time": f.wall_time,
                                        "psdu": f.psdu.hex(),
                                        "rssi_dbm": f.rssi_dbm,
                                        "lqi": f.lqi,
                                        "crc_ok": f.crc_ok,
                                    }  # fmt: skip
                                )
                            else:
                                ts = time.strftime("%H:%M:%S", time.localtime(f.wall_time))
                                ms = int((f.wall_time % 1) * 1000)
                                crc = "" if f.crc_ok else " BAD-FCS"
                                print(
                                    f"{ts}.{ms:03d} ch{channel} {f.rssi_dbm:4d}dBm lqi{f.lqi:3d} "
                                    f"{describe(f.psdu[:-2])}{crc}",
                                    flush=True,
                                )
        finally:
            if pcap is not None:
                pcap.close()
        return n

    n = run(as_json, go)
    if as_json:
        output.emit_json({"channel": channel, "count": n, "pcap": pcap_path, "frames": frames})
    else:
        output.info(f"captured {n} frame(s)")


@radio.command("send", epilog=EXIT_CODES_HELP)
@radio_option
@click.option("--channel", type=click.IntRange(11, 26), help="Channel (default: the radio's).")
@click.option("--hex", "hex_frame", required=True, help="MAC header + payload, without the FCS.")
@click.option("--ack", is_flag=True, help="Request an acknowledgement and wait for it.")
@click.option("--no-csma", is_flag=True, help="Transmit without CSMA-CA.")
@click.option("--retries", type=click.IntRange(0, 15), help="Frame retries (default 3).")
@json_option
def radio_send(
    radio_url: str | None,
    channel: int | None,
    hex_frame: str,
    ack: bool,
    no_csma: bool,
    retries: int | None,
    as_json: bool,
) -> None:
    """Transmit one frame and report the result (exit 7 when not acknowledged or channel busy)."""
    try:
        frame = bytearray(bytes.fromhex(hex_frame.replace(":", "").replace(" ", "")))
    except ValueError:
        fail(InvalidArgument("--hex is not a hexadecimal string"), as_json)
    if not 3 <= len(frame) <= 125:
        fail(InvalidArgument(f"a frame has 3..125 bytes before the FCS, not {len(frame)}"), as_json)
    if ack:
        frame[0] |= 0x20  # Acknowledgment Request

    async def go() -> dict[str, Any]:
        async with _open(radio_url) as r:
            if channel is not None:
                await r.set_channel(channel)
            t0 = time.monotonic()
            res = await r.transmit(bytes(frame), csma=not no_csma, retries=retries)
            return {
                "ok": res.ok,
                "status": res.status.value,
                "channel": r.channel,
                "frame_retries": res.frame_retries,
                "csma_retries": res.csma_retries,
                "ack_requested": bool(frame[0] & 0x20),
                "elapsed_ms": round((time.monotonic() - t0) * 1000, 2),
            }

    doc = run(as_json, go)
    err: GatewayError | None = None
    if doc["status"] == "no_ack":
        err = TxNoAck(f"frame not acknowledged after {doc['frame_retries']} retries")
    elif doc["status"] == "channel_access_failure":
        err = TxChannelBusy("channel busy: CSMA-CA found no clear channel")
    if as_json:
        if err is not None:
            doc["error"] = err.to_dict()
        output.emit_json(doc)
    else:
        print(
            f"{doc['status']} on channel {doc['channel']} "
            f"(retries {doc['frame_retries']}, {doc['elapsed_ms']} ms)"
        )
    if err is not None:
        if not as_json:
            output.info(f"error: {err.message}")
            output.info(f"hint: {err.hint}")
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
