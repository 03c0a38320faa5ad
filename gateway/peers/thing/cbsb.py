"""The reference thing, CBSB side: a device on its own emulated AT86RF233 that bootstraps through
the gateway's group owner (draft steps 5-8).

    python -m gateway.peers.thing cbsb --radio URL --dev-id HEX --k-dev-file F --out FILE

It waits for its bootstrap-mode trigger (at once by default; ``--wait-trigger``: SIGUSR1, like a
pairing button), scans the channels with Beacon Requests (or only listens with ``--passive``),
joins the first acceptable gateway with :class:`~gateway.wire.cbsb_thing.ThingJoin`, commits
only on the final message (M4) and then writes the delivered credentials to ``--out`` (mode 0600,
atomically). A gateway that fails it (no answer, responses that do not verify, an authenticated
abort, the fail-safe) is blacklisted for this run and the scan goes on; staged credentials are
discarded (fail-safe rollback) and nothing is written.

It uses a random, locally administered MAC address for discovery and the join (docs/cbsb.md §8 N1);
its identity travels only in M1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from gateway.cli.common import invoke
from gateway.errors import GatewayError, ParseError
from gateway.peers.thing.options import attach_options
from gateway.wire.cbsb import STATUS_HINTS, Beacon, MsgType, Status, peek_type
from gateway.wire.cbsb_mac import cbsb_mac_frame, parse_cbsb_mac
from gateway.wire.cbsb_session import Committed, Output, Progress, Send, SetChannel, ThingFailed
from gateway.wire.cbsb_thing import ThingIdentity, ThingJoin, ThingTimers

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_RADIO = 6
REQUEST_JITTER_S = 0.005


@dataclass
class ThingResult:
    ok: bool
    status: str
    elapsed_s: float  # from the trigger to the commit (or failure)
    gw_id: str | None = None
    channel: int | None = None
    counters: dict[str, int] | None = None
    trigger_t: float | None = None  # wall-clock time of the trigger
    committed: Committed | None = field(default=None, repr=False)  # holds the network key

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "elapsed_s": round(self.elapsed_s, 4),
                "trigger_t": self.trigger_t,
                "gw_id": self.gw_id, "channel": self.channel, "counters": self.counters or {},
                "hint": STATUS_HINTS.get(Status[self.status], "") if self.status in Status.__members__
                else ""}  # fmt: skip


def _random_ext() -> bytes:
    raw = bytearray(os.urandom(8))
    raw[0] = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
    return bytes(raw)


def write_credentials(path: Path, c: Committed, channel: int | None) -> None:
    from gateway.runtime.state import atomic_write

    d = c.delivery
    doc: dict[str, Any] = {
        "format": "cbsb-thing-credentials", "version": 1, "gw_id": c.gw_id.hex(),
        "sid": c.sid.hex(), "channel": channel, "committed_at": time.time(),
        "active_dataset": d.thread_dataset.hex() if d.thread_dataset is not None else None,
        "key_sequence": d.key_sequence, "k_link": c.k_link.hex(),
    }  # fmt: skip
    if d.link is not None:
        doc["link"] = {"network_key": d.link.network_key.hex(), "key_seq": d.link.key_seq,
                       "pan_id": d.link.pan_id, "short_addr": d.link.short_addr,
                       "channel": d.link.channel, "lease_s": d.link.lease_s}  # fmt: skip
    atomic_write(path, json.dumps(doc, indent=1).encode() + b"\n", mode=0o600)


async def run_thing(
    radio: Any,
    identity: ThingIdentity,
    *,
    out: Path | None = None,
    channels: tuple[int, ...] = tuple(range(11, 27)),
    active: bool = True,
    pfs: bool = False,
    timers: ThingTimers | None = None,
    trigger: asyncio.Event | None = None,
    on_progress: Callable[[str], None] | None = None,
    shuffle: bool = True,
) -> ThingResult:
    """Bootstrap one thing on an opened radio (``drivers.radio.Radio``)."""

    loop = asyncio.get_running_loop()
    rand = random.Random(int.from_bytes(os.urandom(8), "big"))
    # Things triggered together must not sweep in lockstep: their Beacon Requests would collide
    # on every channel. Each starts its sweep at a random channel and sends each request after a
    # few random milliseconds (the gateway answers with one broadcast beacon for all of them).
    if shuffle:
        start = rand.randrange(len(channels))
        channels = channels[start:] + channels[:start]
    ext = _random_ext()
    await radio.set_addresses(ext_addr=ext, pan_id=0xFFFF)
    pan_of: dict[bytes, int] = {}
    current_pan = 0xFFFF
    channel: int | None = None
    result: ThingResult | None = None
    shell: Counter[str] = Counter()
    with radio.subscribe(maxsize=512) as sub:
        if trigger is not None:
            await trigger.wait()
        t0 = loop.time()
        trigger_t = time.time()
        thing = ThingJoin(identity, timers=timers, channels=channels, active=active, pfs=pfs)

        async def apply(outputs: list[Output]) -> None:
            nonlocal current_pan, channel, result
            for o in outputs:
                if isinstance(o, SetChannel):
                    await radio.set_channel(o.channel)
                    channel = o.channel
                elif isinstance(o, Send):
                    pan = pan_of.get(o.dst, 0xFFFF) if o.dst is not None else 0xFFFF
                    if o.dst is not None and pan != current_pan:
                        # Answers from the gateway come to our address on its join PAN.
                        await radio.set_addresses(pan_id=pan)
                        current_pan = pan
                    if o.dst is None and peek_type(o.payload) == MsgType.BEACON_REQUEST:
                        await asyncio.sleep(rand.uniform(0.0, REQUEST_JITTER_S))
                    shell["tx"] += 1
                    try:
                        res = await radio.transmit(cbsb_mac_frame(o.payload, ext, o.dst, pan))
                        if not res.ok:
                            shell[f"tx_{res.status.value}"] += 1
                    except GatewayError:
                        shell["tx_error"] += 1  # a lost frame; the state machine retransmits
                elif isinstance(o, Progress):
                    if on_progress is not None:
                        on_progress(o.stage)
                elif isinstance(o, Committed):
                    elapsed = loop.time() - t0
                    if out is not None:
                        write_credentials(out, o, channel)
                    result = ThingResult(True, Status.OK.name, elapsed, o.gw_id.hex(), channel,
                                         dict(thing.counters + shell), trigger_t,
                                         committed=o)  # fmt: skip
                elif isinstance(o, ThingFailed):
                    result = ThingResult(False, o.status.name, loop.time() - t0, None, channel,
                                         dict(thing.counters + shell), trigger_t)  # fmt: skip

        await apply(thing.start(loop.time()))
        while result is None:
            deadline = thing.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            frame = await sub.get(timeout)
            now = loop.time()
            if frame is not None:
                parsed = parse_cbsb_mac(frame.psdu) if frame.crc_ok else None
                if parsed is not None:
                    src, payload = parsed
                    shell["rx"] += 1
                    if src is not None and peek_type(payload) == MsgType.BEACON:
                        with contextlib.suppress(ParseError):
                            pan_of[src] = Beacon.from_bytes(payload).pan_id
                    await apply(thing.handle_frame(now, src, payload))
            d = thing.next_deadline()
            if d is not None and d <= loop.time():
                await apply(thing.poll(loop.time()))
            elif deadline is None and frame is None:
                break
    return result or ThingResult(False, Status.PROTOCOL_ERROR.name, loop.time() - t0)


@click.command(
    help="A thing on an emulated radio that bootstraps through the gateway's group owner with "
    "CBSB-1 (cloud-based secure bootstrapping) and stores the Thread network credentials it "
    "receives.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--radio", required=True, metavar="URL",
              help="its own radio, e.g. emulated:?node=5&port_offset=K")  # fmt: skip
@click.option("--dev-id", required=True, help="the thing's EUI-64 (16 hex digits)")
@click.option("--k-dev-file", type=click.Path(path_type=Path), required=True,
              help="file with the 32-byte factory key K_dev (hex)")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path),
              help="write the committed credentials here (0600)")  # fmt: skip
@click.option("--channels", default="11-26", help="channels to scan, e.g. 11-26 or 15,20")
@click.option("--fixed-order", is_flag=True,
              help="sweep the channels in the given order (default: from a random one)")  # fmt: skip
@click.option("--passive", is_flag=True, help="listen for beacons only")
@click.option("--pfs", is_flag=True, help="always use the X25519 profile")
@click.option("--timeout", type=float, default=180.0, help="give up after this many seconds")
@click.option("--dwell-ms", type=float, default=50.0, help="active scan time per channel")
@click.option("--wait-trigger", is_flag=True,
              help="wait for SIGUSR1 (the pairing button) before bootstrapping")  # fmt: skip
@click.option("--json", "json_", is_flag=True, help="print progress and the result as JSON lines")
@attach_options(
    "bootstrapping",
    "the thing's Thread state (mode 0600): when it holds a network, the thing "
    "attaches without bootstrapping again",
)
def command(**opts: Any) -> int:
    args = SimpleNamespace(json=opts.pop("json_"), quiet=False, **opts)
    if args.state is not None and args.state.exists():
        return _attach(args, None)  # reboot into the network: no bootstrapping
    return _main(args)


def _attach(args: SimpleNamespace, committed: Committed | None) -> int:
    from gateway.peers.thing.attach import ChildState, ChildStateStore, attach_cli
    from gateway.peers.thing.report import ResultReport
    from gateway.wire.cbsb import AppReport
    from gateway.wire.dataset import ActiveDataset

    store = ChildStateStore(args.state) if args.state is not None else None
    result_report: ResultReport | None = None
    try:
        if committed is not None:
            d = committed.delivery
            if d.thread_dataset is None:
                print("thing: the delivery carried no Thread dataset", file=sys.stderr)
                return EXIT_FAILED
            state = ChildState(ActiveDataset.from_hex(d.thread_dataset.hex()), d.key_sequence or 0)
            target = AppReport.of(d)
            if target is not None:  # step 9 over IP: tell the app once attached
                result_report = ResultReport(target, bytes.fromhex(args.dev_id), committed.sid)
        else:
            assert store is not None
            loaded = store.load()
            if loaded is None:
                print(f"thing: {args.state} holds no Thread network", file=sys.stderr)
                return EXIT_USAGE
            state = loaded
    except GatewayError as exc:
        print(f"thing: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    return attach_cli(args, state, store, result_report)


def _channels(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b or a)
        out.extend(range(lo, hi + 1))
    if not out or any(not 11 <= c <= 26 for c in out):
        raise ValueError("channels must be within 11..26")
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    return invoke(command, argv, "python -m gateway.peers.thing cbsb")


def _main(args: SimpleNamespace) -> int:
    try:
        dev_id = bytes.fromhex(args.dev_id)
        k_dev = bytes.fromhex(args.k_dev_file.read_text().strip())
        identity = ThingIdentity(dev_id, k_dev)
        channels = _channels(args.channels)
    except (OSError, ValueError, GatewayError) as exc:
        print(f"thing: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def say(kind: str, **fields: Any) -> None:
        if args.json:
            print(json.dumps({"event": kind, "t": round(time.time(), 4), **fields}), flush=True)
        elif kind == "progress":
            print(f"thing {dev_id.hex()}: {fields['stage']}", flush=True)

    async def run() -> int:
        from drivers.radio import open_radio

        radio = open_radio(args.radio)
        try:
            await radio.open()
        except GatewayError as exc:
            print(f"thing: cannot open the radio: {exc.message}", file=sys.stderr)
            return EXIT_RADIO
        try:
            trigger: asyncio.Event | None = None
            if args.wait_trigger:
                trigger = asyncio.Event()
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, trigger.set)
                say("ready")
                if not args.json:
                    print(f"thing {dev_id.hex()}: waiting for the pairing button (SIGUSR1)",
                          flush=True)  # fmt: skip
            timers = ThingTimers(dwell_s=args.dwell_ms / 1000, deadline_s=args.timeout)
            res = await run_thing(
                radio, identity, out=args.out, channels=channels, active=not args.passive,
                pfs=args.pfs, timers=timers, trigger=trigger, shuffle=not args.fixed_order,
                on_progress=lambda stage: say("progress", stage=stage),
            )  # fmt: skip
        finally:
            await radio.close()
        if args.json:
            say("result", **res.as_dict())
        elif res.ok:
            print(f"thing {dev_id.hex()}: joined gateway {res.gw_id} in {res.elapsed_s:.2f} s; "
                  f"credentials in {args.out}", flush=True)  # fmt: skip
        else:
            print(f"thing {dev_id.hex()}: bootstrapping failed ({res.status}): "
                  f"{STATUS_HINTS.get(Status[res.status], '')}", flush=True)  # fmt: skip
        if res.ok and (args.attach or args.state is not None):
            committed[:] = [res.committed]
        return EXIT_OK if res.ok else EXIT_FAILED

    committed: list[Committed | None] = []
    with contextlib.suppress(KeyboardInterrupt):
        rc = asyncio.run(run())
        if rc == EXIT_OK and committed:
            return _attach(args, committed[0])
        return rc
    return EXIT_FAILED
