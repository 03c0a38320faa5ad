"""The reference Thread joiner: a thing on its own (emulated) radio joins a Thread network with a
joining code (PSKd) and ends up holding the network credentials.

    python -m gateway.peers.thing join --radio URL --pskd-file FILE|- [--eui64 HEX] [--out FILE]

It drives :class:`gateway.thread.commissioning.joiner.Joiner` (sans-IO) on a radio opened directly with
:func:`drivers.radio.open_radio` -- not through a radio service: MLE discovery across channels,
DTLS EC-JPAKE through the joiner router, JOIN_FIN, JOIN_ENT. It prints each step; the
credentials are printed redacted and, with ``--out``, written as JSON (mode 0600) holding the
active dataset in OpenThread's hex form (``dataset set active <hex>``).

Exit codes: 0 joined; 2 usage; 3-9 radio errors (as gwctl); 10 no joiner router admitted us;
11 the DTLS handshake failed (wrong PSKd?); 12 JOIN_FIN or JOIN_ENT timed out; 1 anything else.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from drivers.errors import GatewayError
from gateway.cli.common import invoke, option_value
from gateway.peers.thing.options import attach_options
from gateway.runtime.secret_input import read_secret
from gateway.runtime.state import atomic_write
from gateway.thread.commissioning.joiner import (
    Joiner,
    JoinerCredentials,
    Transmit,
    Tune,
    VendorInfo,
)
from gateway.thread.errors import JoinerNotFound, JoinerSecurityFailure, JoinerTimeout

__all__ = ["JoinResult", "join", "main", "parse_channels"]

EXIT_NOT_FOUND = 10
EXIT_SECURITY = 11
EXIT_TIMEOUT = 12


def parse_channels(text: str) -> tuple[int, ...]:
    """``"11-26"``, ``"15"`` or ``"11,15,20"``."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ValueError(f"{text!r}: use e.g. 11-26, 15 or 11,15,20") from None
    if not out or not all(11 <= c <= 26 for c in out):
        raise ValueError("channels must be within 11..26")
    return tuple(dict.fromkeys(out))


@dataclass
class JoinResult:
    joiner: Joiner
    seconds: float
    discovery_seconds: float | None

    @property
    def credentials(self) -> JoinerCredentials | None:
        return self.joiner.credentials


async def join(
    radio_url: str,
    pskd: str,
    *,
    eui64: bytes | None = None,
    channels: tuple[int, ...] = tuple(range(11, 27)),
    scan_dwell: float = 0.3,
    timeout: float = 60.0,
    vendor: VendorInfo | None = None,
    say: Any = None,
    stop_at_first_candidate: bool = False,
    start_at: float | None = None,
    scan_passes: int = 3,
) -> JoinResult:
    """Join on the radio at ``radio_url``; the :class:`JoinResult` holds the state machine
    (``joiner.state``, ``joiner.error``, ``joiner.credentials``) and the time it took."""
    from drivers.radio import open_radio

    loop = asyncio.get_running_loop()
    radio = open_radio(radio_url)
    await radio.open()
    try:
        if start_at is not None:  # several things started together (demo, benchmark)
            await asyncio.sleep(max(0.0, start_at - time.time()))
        j = Joiner(
            pskd,
            eui64 if eui64 is not None else radio.info.eui64,
            channels=channels,
            scan_dwell=scan_dwell,
            vendor=vendor or VendorInfo(),
            stop_at_first_candidate=stop_at_first_candidate,
            scan_passes=scan_passes,
        )
        logged = 0
        t0 = loop.time()
        discovery_done: float | None = None
        with radio.subscribe(maxsize=512) as sub:
            j.start(loop.time())
            end = t0 + timeout
            while True:
                for action in j.actions():
                    if isinstance(action, Tune):
                        if radio.channel != action.channel:
                            await radio.set_channel(action.channel)
                        await radio.set_addresses(
                            pan_id=action.pan_id,
                            ext_addr=action.ext_addr.octets,
                            short_addr=0xFFFE,
                        )
                    elif isinstance(action, Transmit):
                        await radio.transmit(action.psdu)
                if say is not None:
                    for _t, line in j.log[logged:]:
                        say(line)
                    logged = len(j.log)
                if discovery_done is None and j.state.value not in ("idle", "discover"):
                    discovery_done = loop.time() - t0
                if j.done:
                    break
                now = loop.time()
                if now >= end:
                    break
                deadline = j.next_timeout()
                wait = max(0.0, min(end, deadline if deadline is not None else end) - now)
                frame = await sub.get(wait) if wait > 0 else None
                now = loop.time()
                if frame is not None:
                    j.receive_frame(frame.psdu, now, rssi=frame.rssi_dbm, channel=frame.channel)
                j.poll(now)
        if say is not None:
            for _t, line in j.log[logged:]:
                say(line)
        if not j.done and j.error is None:
            j.error = JoinerTimeout(f"the join did not finish within {timeout:.0f} s")
        return JoinResult(j, loop.time() - t0, discovery_done)
    finally:
        await radio.close()


def write_credentials(path: Path, creds: JoinerCredentials) -> None:
    body = {
        "schema_version": 1,
        "active_dataset": creds.dataset.to_hex(),
        "key_sequence": creds.key_sequence,
        "joiner_router": creds.router.hex(),
        "joined_at": time.time(),
    }
    atomic_write(path, (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)


@click.command(
    help="Join a Thread network with a joining code (PSKd) on an emulated or real radio, and keep "
    "the network credentials.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--radio", required=True, help="radio URL, e.g. emulated:?node=2&port_offset=0")
@click.option("--pskd", hidden=True)  # refused: secrets never on the command line
@click.option("--pskd-file", metavar="FILE",
              help="the joining code (6-32 of 0-9, A-Z w/o IOQZ) from FILE ('-': stdin); "
              "default: a hidden prompt")  # fmt: skip
@click.option("--eui64", help="16 hex digits (default: the radio's EUI-64)")
@click.option("--channels", default="11-26", callback=option_value(parse_channels),
              help="channels to scan (default 11-26, like OpenThread)")  # fmt: skip
@click.option("--scan-dwell", type=float, default=0.3, help="seconds per channel (0.3)")
@click.option("--first", is_flag=True, help="stop scanning at the first admitting joiner router")
@click.option("--timeout", type=float, default=60.0, help="give up after this many seconds")
@click.option("--start-at", type=float, metavar="UNIX_TIME",
              help="open the radio, then start joining at this wall-clock time")  # fmt: skip
@click.option(
    "--out", type=click.Path(path_type=Path), help="write the credentials here (JSON, mode 0600)"
)
@click.option("--vendor-name", default=VendorInfo.name)
@click.option("--vendor-model", default=VendorInfo.model)
@click.option("--provisioning-url")
@click.option("--json", "json_", is_flag=True, help="print one JSON result on stdout")
@click.option("--quiet", is_flag=True, help="no step-by-step account")
@attach_options(
    "joining",
    "the thing's Thread state (credentials, attachment, frame counters; mode "
    "0600): when it holds a network, the thing attaches without joining again",
)
def command(**opts: Any) -> int:
    args = SimpleNamespace(json=opts.pop("json_"), **opts)
    if args.state is not None and args.state.exists():
        return _attach_main(args, None)  # reboot into the network: no join, no PSKd
    if args.pskd is not None:
        raise click.UsageError(
            "--pskd is no longer taken on the command line (other users can read it there): "
            "use --pskd-file FILE, or --pskd-file - for standard input"
        )
    try:
        args.pskd = read_secret(args.pskd_file, what="the joining code (PSKd)",
                                option="--pskd-file")  # fmt: skip
    except GatewayError as exc:
        raise click.UsageError(exc.message) from None
    return _main(args)


def main(argv: list[str] | None = None) -> int:
    return invoke(command, argv, "python -m gateway.peers.thing join")


def _main(args: SimpleNamespace) -> int:
    eui64: bytes | None = None
    if args.eui64:
        try:
            eui64 = bytes.fromhex(args.eui64.replace(":", ""))
        except ValueError:
            eui64 = b""
        if len(eui64) != 8:
            raise click.BadParameter("must be 16 hex digits", param_hint="--eui64")
    t0 = time.monotonic()

    def say(text: str) -> None:
        if not args.quiet:
            out = sys.stderr if args.json else sys.stdout
            print(f"[{time.monotonic() - t0:6.2f}s] {text}", file=out, flush=True)

    try:
        result = asyncio.run(
            join(
                args.radio,
                args.pskd,
                eui64=eui64,
                channels=args.channels,
                scan_dwell=args.scan_dwell,
                timeout=args.timeout,
                vendor=VendorInfo(
                    name=args.vendor_name,
                    model=args.vendor_model,
                    provisioning_url=args.provisioning_url,
                ),
                say=say,
                stop_at_first_candidate=args.first,
                start_at=args.start_at,
            )
        )
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 1
    j = result.joiner
    creds = j.credentials
    if creds is not None:
        if args.out is not None:
            write_credentials(args.out, creds)
        if args.json:
            print(json.dumps({"schema_version": 1, "joined": True,
                              "seconds": round(result.seconds, 3),
                              "discovery_seconds": result.discovery_seconds,
                              "joiner_id": j.joiner_id.hex(),
                              "credentials": creds.redacted()}))  # fmt: skip
        else:
            say(f"joined in {result.seconds:.2f} s; credentials held:")
            for k, v in creds.redacted().items():
                print(f"    {k}: {v}", flush=True)
            if args.out is not None:
                print(f"    written to {args.out} (mode 0600)", flush=True)
        if args.attach or args.state is not None:
            return _attach_main(args, creds)
        return 0
    err = j.error
    code = 1
    if isinstance(err, JoinerNotFound):
        code = EXIT_NOT_FOUND
    elif isinstance(err, JoinerSecurityFailure):
        code = EXIT_SECURITY
    elif isinstance(err, JoinerTimeout):
        code = EXIT_TIMEOUT
    message = err.message if err is not None else "the join did not complete"
    if args.json:
        print(json.dumps({"schema_version": 1, "joined": False, "joiner_id": j.joiner_id.hex(),
                          "error": err.to_dict() if err is not None else None}))  # fmt: skip
    print(f"join failed: {message}", file=sys.stderr)
    if err is not None and err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)
    return code


def _attach_main(args: SimpleNamespace, creds: JoinerCredentials | None) -> int:
    """Attach as a Thread child (after a join, or from the saved state) and stay."""
    from gateway.peers.thing.attach import ChildState, ChildStateStore, attach_cli

    store = ChildStateStore(args.state) if args.state is not None else None
    try:
        if creds is not None:
            state = ChildState(creds.dataset, creds.key_sequence)
        else:
            assert store is not None
            loaded = store.load()
            if loaded is None:
                raise click.UsageError(f"{args.state} holds no Thread network")
            state = loaded
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return attach_cli(args, state, store)
