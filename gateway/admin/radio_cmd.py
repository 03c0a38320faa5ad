"""``gwctl radio probe|scan|sniff|send``: on a radio opened directly (``--radio URL``, or when no
radio service runs), or through the running radio service."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from drivers.errors import GatewayError, InvalidArgument, RadioNotResponding, TxChannelBusy, TxNoAck
from gateway.admin.radio_url import open_target
from gateway.admin.remote_radio import RemoteRadio
from gateway.cli import output
from gateway.cli.common import EXIT_CODES_HELP, fail, json_option, run

VIA_SERVICE = "radio-service"
VIA_DIRECT = "direct"


def radio_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--radio",
        "radio_url",
        metavar="URL",
        help="Open this radio directly (at86rf233:///dev/spidev0.0?... or emulated:?node=N...). "
        "Default: the running radio service, else $GATEWAY_RADIO_URL, else the configured URL.",
    )(f)


@click.group(epilog=EXIT_CODES_HELP)
def radio() -> None:
    """Probe, scan, sniff and transmit on an 802.15.4 radio."""


# ------------------------------------------------------------------------------------ probe


@radio.command("probe", epilog=EXIT_CODES_HELP)
@radio_option
@json_option
def radio_probe(radio_url: str | None, as_json: bool) -> None:
    """Identify the chip and check that it answers (through the radio service when it runs)."""

    async def go() -> dict[str, Any]:
        t0 = time.monotonic()
        target = await open_target(radio_url)
        if isinstance(target, RemoteRadio):
            async with target as rr:
                return await _probe_remote(rr)
        async with target as r:
            ident = r.info.as_dict()
            scan = await r.energy_scan([r.channel], 0.005)
            return {
                "ok": True,
                "via": VIA_DIRECT,
                "radio": ident,
                "channel": r.channel,
                "tx_power_dbm": getattr(r, "tx_power_dbm", None),
                "ed_dbm": scan[r.channel],
                "open_ms": round((time.monotonic() - t0) * 1000, 1),
                "counters": r.counters.as_dict(),
            }

    doc = run(as_json, go)
    if as_json:
        output.emit_json(doc)
        return
    rid = doc["radio"]
    rcp = rid.get("rcp")
    if isinstance(rcp, dict):
        print(f"radio     {rid['part']} ({rid['backend']})")
    else:
        print(f"radio     {rid['part']} rev {rid['version_num']} ({rid['backend']})")
    print(f"url       {rid['url']}")
    print(f"eui64     {rid['eui64']}")
    if isinstance(rcp, dict):
        _print_rcp(rcp, doc.get("counters") or {})
    power = "" if doc["tx_power_dbm"] is None else f"  tx power {doc['tx_power_dbm']:+.1f} dBm"
    print(f"channel   {doc['channel']}{power}")
    print(f"energy    {doc['ed_dbm']} dBm on channel {doc['channel']}")
    if doc["via"] == VIA_SERVICE:
        svc = doc["service"]
        print(
            f"service   radio service pid {svc['pid']}, {svc['phase']}, up "
            f"{output.duration(svc['uptime_s'])}, {svc['clients']} client(s)"
        )
        print(f"health    {output.style('ok', output.GREEN)} (answered in {doc['open_ms']} ms)")
    else:
        print(f"health    {output.style('ok', output.GREEN)} (opened in {doc['open_ms']} ms)")


# What the Spinel backend counts when an RCP misbehaves (drivers/spinel/backend.py).
RCP_FAULTS = (
    ("recoveries", "recovered by reset"),
    ("rcp_timeouts", "no answer"),
    ("rcp_unexpected_resets", "reset by itself"),
    ("rcp_lost_config", "lost its configuration"),
    ("rcp_link_lost", "link lost"),
    ("rcp_protocol_errors", "malformed answers"),
    ("hdlc_bad_fcs", "bad FCS"),
    ("recovery_failures", "not recoverable"),
)


def _print_rcp(rcp: dict[str, Any], counters: dict[str, Any]) -> None:
    """The RCP's firmware, versions against what the gateway supports, and its faults."""
    print(f"firmware  {rcp.get('firmware')}")
    print(
        f"spinel    protocol {rcp.get('protocol_version')}, RCP API {rcp.get('rcp_api_version')}"
        f" (the RCP needs a host at {rcp.get('min_host_api_version')} or newer; this gateway is "
        f"at {rcp.get('host_api_version')} and supports RCP API {rcp.get('supported_rcp_api')})"
    )
    print(f"caps      {', '.join(rcp.get('caps') or []) or '-'}")
    print(f"radiocaps {', '.join(rcp.get('radio_caps') or []) or '-'}")
    faults = [f"{counters[k]} {label}" for k, label in RCP_FAULTS if counters.get(k)]
    if faults:
        print(f"faults    {output.style(', '.join(faults), output.YELLOW)}")
    else:
        print("faults    none since the radio was opened")


async def _probe_remote(rr: RemoteRadio) -> dict[str, Any]:
    from gateway.admin.services import ask
    from gateway.runtime.paths import Paths

    answer = await ask(Paths.from_env(), "radio")  # pid, phase, uptime: the control socket
    st = {**(answer.status or {}), **(await rr.status())}
    radio_st = st.get("radio")
    if not isinstance(radio_st, dict) or not radio_st.get("healthy", False):
        raise RadioNotResponding("the radio service runs but reports its radio as not healthy")
    scan = await rr.energy_scan([rr.channel], 0.005)
    ident = {k: radio_st[k] for k in rr.info if k in radio_st} or rr.info
    return {
        "ok": True,
        "via": VIA_SERVICE,
        "radio": ident,
        "channel": int(radio_st.get("channel", rr.channel)),
        "tx_power_dbm": None,  # not reported by the radio service
        "ed_dbm": scan[rr.channel],
        "open_ms": rr.connect_ms,
        "counters": radio_st.get("counters", {}),
        "service": {
            "pid": st.get("pid"),
            "phase": st.get("phase"),
            "uptime_s": st.get("uptime_s", 0.0),
            "clients": st.get("clients", 0),
            "mac": st.get("mac", {}),
        },
    }


# ------------------------------------------------------------------------------------ scan


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

    def note(ch: int, done: int, total: int) -> None:
        progress.update(done, f"channel {ch}")

    async def go() -> tuple[str, dict[int, int]]:
        target = await open_target(radio_url)
        if isinstance(target, RemoteRadio):
            async with target as rr:
                output.info("scanning through the running radio service")
                return VIA_SERVICE, await rr.energy_scan(chans, duration, progress=note)
        async with target as r:
            driver: Any = r  # the drivers' energy_scan reports progress (not in the Radio ABC)
            result: dict[int, int] = await driver.energy_scan(chans, duration, progress=note)
            return VIA_DIRECT, result

    via, res = run(as_json, go)
    if as_json:
        output.emit_json(
            {"via": via, "channels": [{"channel": c, "ed_dbm": res[c]} for c in chans]}
        )
        return
    quietest = min(chans, key=lambda c: res[c])
    for c in chans:
        bar = "#" * max(0, (res[c] + 94) // 3)
        print(f"channel {c:2d}  {res[c]:4d} dBm  {bar}")
    print(f"quietest channel: {quietest}")


# ------------------------------------------------------------------------------------ sniff


@radio.command("sniff", epilog=EXIT_CODES_HELP)
@radio_option
@click.option(
    "--channel",
    type=click.IntRange(11, 26),
    help="Channel (required on a radio opened directly; through the radio service: its channel).",
)
@click.option(
    "--pcap", "pcap_path", type=click.Path(dir_okay=False), help="Write a pcap (LINKTYPE 195)."
)
@click.option("--duration", type=click.FloatRange(0.0), help="Stop after this many seconds.")
@click.option("--count", type=click.IntRange(1), help="Stop after this many frames.")
@json_option
def radio_sniff(
    radio_url: str | None,
    channel: int | None,
    pcap_path: str | None,
    duration: float | None,
    count: int | None,
    as_json: bool,
) -> None:
    """Capture frames on a channel, to the terminal and/or a pcap file.

    On a radio opened directly the capture is promiscuous. Through the running radio service it
    holds what the service's radio receives (its address filter applies) plus every frame the
    service transmits."""

    frames: list[dict[str, Any]] = []
    state = {"channel": channel or 0, "via": VIA_DIRECT, "dropped": 0}

    def show(psdu: bytes, wall: float, ch: int, rssi: int | None, lqi: int | None,
             crc_ok: bool, tx: bool, pcap: Any) -> None:  # fmt: skip
        if pcap is not None:
            pcap.write(psdu, wall)
        if as_json:
            row: dict[str, Any] = {"time": wall, "psdu": psdu.hex(), "rssi_dbm": rssi, "lqi": lqi,
                                   "crc_ok": crc_ok}  # fmt: skip
            if state["via"] == VIA_SERVICE:
                row["tx"] = tx
            frames.append(row)
            return
        from drivers.mac_header import describe

        ts = time.strftime("%H:%M:%S", time.localtime(wall))
        ms = int((wall % 1) * 1000)
        crc = "" if crc_ok else " BAD-FCS"
        level = "     tx      " if tx else f"{rssi:4d}dBm lqi{lqi:3d}"
        print(f"{ts}.{ms:03d} ch{ch} {level} {describe(psdu[:-2])}{crc}", flush=True)

    async def go() -> int:
        from drivers.pcap import PcapWriter

        target = await open_target(radio_url)
        pcap = None
        n = 0
        t_end = None if duration is None else time.monotonic() + duration

        def left() -> float | None:
            return None if t_end is None else t_end - time.monotonic()

        if isinstance(target, RemoteRadio):
            async with target as rr:
                state["via"] = VIA_SERVICE
                if channel is not None:
                    await rr.set_channel(channel)
                state["channel"] = rr.channel
                sub = await rr.subscribe(include_tx=True)
                pcap = PcapWriter(pcap_path) if pcap_path else None
                try:
                    output.info(f"capturing on channel {rr.channel} through the radio service"
                                + (f" to {pcap_path}" if pcap else ""))  # fmt: skip
                    with contextlib.suppress(asyncio.CancelledError):
                        while count is None or n < count:
                            rem = left()
                            if rem is not None and rem <= 0:
                                break
                            ev = await rr.next_frame(sub, rem)
                            if ev is None:
                                if rr.closed:
                                    output.warn("the radio service went away; capture ended")
                                    break
                                continue
                            n += 1
                            show(ev.psdu, ev.wall_time, ev.channel or rr.channel,
                                 None if ev.tx else ev.rssi, None if ev.tx else ev.lqi,
                                 ev.crc_ok, ev.tx, pcap)  # fmt: skip
                    state["dropped"] = sub.dropped
                finally:
                    if pcap is not None:
                        pcap.close()
            return n
        if channel is None:
            raise InvalidArgument(
                "--channel is required when the radio is opened directly",
                hint="Give --channel 11..26 (the radio service is not running).",
            )
        async with target as r:
            await r.set_channel(channel)
            await r.set_promiscuous(True)
            with r.subscribe(maxsize=4096) as rsub:
                pcap = PcapWriter(pcap_path) if pcap_path else None
                try:
                    output.info(
                        f"capturing on channel {channel}" + (f" to {pcap_path}" if pcap else "")
                    )
                    with contextlib.suppress(asyncio.CancelledError):
                        while count is None or n < count:
                            rem = left()
                            if rem is not None and rem <= 0:
                                break
                            f = await rsub.get(rem)
                            if f is None:
                                if t_end is None:
                                    break  # radio closed
                                continue
                            n += 1
                            show(f.psdu, f.wall_time, channel, f.rssi_dbm, f.lqi, f.crc_ok,
                                 False, pcap)  # fmt: skip
                finally:
                    if pcap is not None:
                        pcap.close()
        return n

    n = run(as_json, go)
    if as_json:
        doc: dict[str, Any] = {"channel": state["channel"], "count": n, "pcap": pcap_path,
                               "frames": frames}  # fmt: skip
        if state["via"] == VIA_SERVICE:
            doc["via"] = VIA_SERVICE
            doc["dropped"] = state["dropped"]
        output.emit_json(doc)
    else:
        output.info(f"captured {n} frame(s)")


# ------------------------------------------------------------------------------------ send


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
        target = await open_target(radio_url)
        if isinstance(target, RemoteRadio):
            async with target as rr:
                if channel is not None:
                    await rr.set_channel(channel)
                t0 = time.monotonic()
                res = await rr.transmit(bytes(frame), csma=not no_csma, retries=retries)
                return {
                    "ok": bool(res.get("ok")),
                    "status": res["status"],
                    "channel": rr.channel,
                    "frame_retries": res.get("frame_retries", 0),
                    "csma_retries": res.get("csma_retries", 0),
                    "ack_requested": bool(frame[0] & 0x20),
                    "elapsed_ms": round((time.monotonic() - t0) * 1000, 2),
                    "via": VIA_SERVICE,
                }
        async with target as r:
            if channel is not None:
                await r.set_channel(channel)
            t0 = time.monotonic()
            tx = await r.transmit(bytes(frame), csma=not no_csma, retries=retries)
            return {
                "ok": tx.ok,
                "status": tx.status.value,
                "channel": r.channel,
                "frame_retries": tx.frame_retries,
                "csma_retries": tx.csma_retries,
                "ack_requested": bool(frame[0] & 0x20),
                "elapsed_ms": round((time.monotonic() - t0) * 1000, 2),
                "via": VIA_DIRECT,
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
            output.error(err.message, err.hint)
        sys.exit(err.exit_code)
