"""`make demo`: the gateway's main job on the emulated radio, told step by step.

Everything runs unprivileged in a temporary directory on OpenThread's simulated air (emulated
AT86RF233 radios), and the air is captured to a pcap a technician can open in Wireshark.

    python -m gateway.demo [--run-dir DIR] [--keep] [--port-offset K] [--pcap FILE]

Each run is kept in ``./demo-run/`` (``--run-dir``), replacing the previous one: ``air.pcap``
(the whole air, every channel), ``logs/`` (the three services', the cloud's, the app's and the
things' output, and the demo's own log), ``transcript.txt`` (what the demo printed) and
``summary.txt``. The services' state and sockets live in a temporary directory that is removed
at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from drivers.emulator.tap import AirTap
from drivers.mac_header import describe
from drivers.radio import TxStatus, open_radio
from gateway.demo.thread import demo_thread

BOLD = "\x1b[1m" if sys.stdout.isatty() and "NO_COLOR" not in os.environ else ""
RESET = "\x1b[0m" if BOLD else ""
T0 = time.monotonic()


_STEP = [0]
_TRANSCRIPT: list[str] = []
_STEPS: list[str] = []
RUN_MARKER = ".gateway-demo-run"


def step(title: str) -> None:
    _STEP[0] += 1
    line = f"== {_STEP[0]}. {title}"
    _TRANSCRIPT.append("\n" + line)
    _STEPS.append(f"[{time.monotonic() - T0:6.2f}s] {_STEP[0]}. {title}")
    print(f"\n{BOLD}{line}{RESET}", flush=True)


def say(text: str) -> None:
    line = f"  [{time.monotonic() - T0:6.2f}s] {text}"
    _TRANSCRIPT.append(line)
    print(line, flush=True)


def prepare_run_dir(run_dir: Path) -> None:
    """Empty ``run_dir`` for a new run: a previous demo run is replaced, anything else is left
    alone (the demo refuses to delete a folder it did not make)."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise SystemExit(f"demo: {run_dir} exists and is not a folder; use --run-dir")
        if any(run_dir.iterdir()) and not (run_dir / RUN_MARKER).exists():
            raise SystemExit(
                f"demo: {run_dir} is not empty and is not a previous demo run; "
                "remove it or use --run-dir"
            )
        shutil.rmtree(run_dir)
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / RUN_MARKER).write_text("made by python -m gateway.demo; replaced on each run\n")


def write_summary(run_dir: Path, pcap: Path, outcome: str, tap: TapThread | None) -> None:
    logs = sorted(p.name for p in (run_dir / "logs").iterdir()) if run_dir.is_dir() else []
    lines = [
        f"Thing-bootstrapping gateway demo, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"result: {outcome} after {time.monotonic() - T0:.1f} s",
        "",
        "steps:",
        *[f"  {s}" for s in _STEPS],
        "",
        f"air capture: {pcap} ({len(tap.frames) if tap else 0} frames; open it in Wireshark)",
        f"logs: {run_dir / 'logs'}: {', '.join(logs)}",
        f"transcript: {run_dir / 'transcript.txt'}",
    ]
    (run_dir / "summary.txt").write_text("\n".join(lines) + "\n")
    (run_dir / "transcript.txt").write_text("\n".join(_TRANSCRIPT).lstrip("\n") + "\n")


class TapThread:
    """Captures the whole air (every channel) to a pcap while the demo runs."""

    def __init__(self, port_offset: int, pcap: Path) -> None:
        self.tap = AirTap(port_offset, str(pcap))
        self.frames: list[tuple[int, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="air-tap", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.frames.extend(self.tap.poll(0.1))

    def __enter__(self) -> TapThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.tap.close()


def data_frame(seq: int, dst: int, src: int, payload: bytes, ack: bool = True) -> bytes:
    fcf = 0x0001 | (0x20 if ack else 0) | 0x40 | (2 << 10) | (1 << 12) | (2 << 14)
    return (
        fcf.to_bytes(2, "little")
        + bytes((seq,))
        + (0xFACE).to_bytes(2, "little")
        + dst.to_bytes(2, "little")
        + src.to_bytes(2, "little")
        + payload
    )


async def radio_foundation(offset: int) -> None:
    step("Two emulated AT86RF233 radios on the simulated air")
    # a Wi-Fi access point next door raises the energy on channels 15-20
    wifi = "15:-68,16:-61,17:-58,18:-60,19:-66,20:-74"
    url_a = f"emulated:?node=1&port_offset={offset}&interference={wifi}"
    url_b = f"emulated:?node=2&port_offset={offset}&rssi=-71"
    async with open_radio(url_a) as a, open_radio(url_b) as b:
        for name, r in (("gateway radio", a), ("thing radio  ", b)):
            ident = r.info
            say(
                f"{name}: {ident.part} rev {ident.version_num}, EUI-64 {ident.eui64.hex()}, channel {r.channel}"
            )
        await a.set_addresses(pan_id=0xFACE, short_addr=0x0001)
        await b.set_addresses(pan_id=0xFACE, short_addr=0x0002)

        step("Energy scan of channels 11-26 (a Wi-Fi AP is busy on 15-20)")
        scan = await a.energy_scan(range(11, 27), 0.01)
        quiet = min(scan, key=lambda c: scan[c])
        say("  ".join(f"{c}:{scan[c]}" for c in range(11, 27)) + " dBm")
        say(f"quietest channel: {quiet}")
        await a.set_channel(quiet)
        await b.set_channel(quiet)

        step("Acknowledged frames both ways (TX_ARET with CSMA-CA, auto-ACK in RX_AACK)")
        with a.subscribe() as sa, b.subscribe() as sb:
            for i in range(3):
                res = await a.transmit(data_frame(i, 0x0002, 0x0001, b"\x01hello thing"))
                f = await sb.get(1.0)
                say(
                    f"gateway -> thing seq {i}: {res.status.value}, retries {res.frame_retries}; "
                    f"thing heard it at {f.rssi_dbm if f else '?'} dBm, LQI {f.lqi if f else '?'}"
                )
                res = await b.transmit(data_frame(i, 0x0001, 0x0002, b"\x01hello gateway"))
                f = await sa.get(1.0)
                say(f"thing -> gateway seq {i}: {res.status.value}")

        step("A frame nobody acknowledges: the chip retries, then reports NO_ACK")
        res = await a.transmit(data_frame(9, 0x0077, 0x0001, b"\x01anyone?"))
        assert res.status is TxStatus.NO_ACK
        say(
            f"to 0x0077: {res.status.value} after {res.frame_retries} retries (16 ms ACK window each)"
        )
        c = a.counters
        say(f"gateway radio counters: tx {c.tx_frames}, ok {c.tx_success}, no-ack {c.tx_no_ack}, "
            f"rx {c.rx_frames}, IRQs {c.irqs}")  # fmt: skip


def _service_env(tmp: Path, offset: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GATEWAY_STATE_DIR=str(tmp / "state"),
        GATEWAY_RUNTIME_DIR=str(tmp / "run"),
        GATEWAY_CONFIG=str(tmp / "gateway.toml"),
        GATEWAY_RADIO_URL=f"emulated:?node=3&port_offset={offset}",
    )
    return env


@contextlib.contextmanager
def services(
    tmp: Path, offset: int, env: dict[str, str]
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    try:
        for name in ("radio", "border_router", "group_owner"):
            procs[name] = _start_service(name, env, logs)
        yield procs
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


async def _status(tmp: Path, service: str) -> dict[str, Any] | None:
    from gateway.runtime.jsonline import JsonLineClient

    try:
        async with JsonLineClient(tmp / "run" / service / "control.sock") as c:
            res: dict[str, Any] = await c.call("status", timeout=5)
            return res
    except Exception:  # noqa: BLE001 - not up yet
        return None


@dataclass
class DemoContext:
    """What the bootstrapping parts get (:class:`gateway.demo.context.DemoContext`; see
    gateway/demo/cbsb.py and gateway/demo/thread.py)."""

    tmp: Path
    port_offset: int
    env: dict[str, str]

    def say(self, text: str) -> None:
        say(text)

    def step(self, title: str) -> None:
        step(title)


async def _wait_ready(tmp: Path, procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    ready: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(ready) < 3:
        for svc in ("radio", "border-router", "group-owner"):
            if svc not in ready:
                st = await _status(tmp, svc)
                if st and st.get("phase") == "ready":
                    ready[svc] = st
                    say(f"{svc}: ready (pid {st['pid']})")
        for name, p in procs.items():
            if p.poll() is not None:
                raise SystemExit(f"service {name} exited with {p.returncode}; see {tmp}/logs")
        await asyncio.sleep(0.2)
    if len(ready) < 3:
        raise SystemExit(f"services did not become ready; logs in {tmp}/logs")
    return ready


async def appliance(tmp: Path, offset: int) -> None:
    from gateway.demo import cbsb as cbsb_demo

    ctx = DemoContext(tmp, offset, _service_env(tmp, offset))
    step("The appliance: the cloud, then the radio, border-router and group-owner services")
    say(f"state in {tmp / 'state'}, sockets in {tmp / 'run'} (no configuration file: defaults)")
    await cbsb_demo.start_cloud(ctx)
    ctx.env = {**ctx.env, **cbsb_demo.cloud_env(ctx)}
    try:
        with services(tmp, offset, ctx.env) as procs:
            ready = await _wait_ready(tmp, procs)
            br = ready["border-router"].get("thread", {})
            say(f"Thread network created on first start: '{br.get('network_name')}', channel "
                f"{br.get('channel')}, PAN {br.get('pan_id')}, ext PAN {br.get('ext_pan_id')}")  # fmt: skip
            await resilience(tmp, offset, ctx.env, procs)
            await cbsb_demo.demo_cbsb(ctx)
            await demo_thread(ctx)
    finally:
        await cbsb_demo.stop_cloud(ctx)


async def resilience(
    tmp: Path, offset: int, env: dict[str, str], procs: dict[str, subprocess.Popen[bytes]]
) -> None:
    step("Resilience: kill -9 the radio service; its clients reconnect")
    procs["radio"].kill()
    procs["radio"].wait()
    say("radio service killed")
    procs["radio"] = _start_service("radio", env, tmp / "logs")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = await _status(tmp, "border-router")
        if st and st.get("radio_reconnects", 0) >= 1 and st.get("radio_connected"):
            say("radio service restarted; border router reconnected and restored its "
                "channel, addresses and keys")  # fmt: skip
            break
        await asyncio.sleep(0.2)
    doc = _gwctl_status(env)
    if doc is not None:
        say(f"gwctl status --json: {', '.join(sorted(doc.get('services', {})))} answer")


def _start_service(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with open(logs / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", f"gateway.{name}"], env=env, stdout=log, stderr=log
        )


def _gwctl_status(env: dict[str, str]) -> dict[str, Any] | None:
    r = subprocess.run(
        [sys.executable, "-m", "gateway.admin", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        return None
    try:
        doc: dict[str, Any] = json.loads(r.stdout)
    except json.JSONDecodeError:
        return None
    return doc


def summarize(tap: TapThread, pcap: Path) -> None:
    step("The air, as Wireshark sees it")
    say(f"{len(tap.frames)} frames captured to {pcap}")
    for node, ch, psdu in tap.frames[:8]:
        say(f"node {node:2d} ch {ch}: {describe(psdu[:-2])}")
    if shutil.which("tshark"):
        r = subprocess.run(
            ["tshark", "-r", str(pcap), "-T", "fields", "-e", "wpan.fcs_ok"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        oks = r.stdout.split()
        say(f"tshark: {oks.count('1')} of {len(oks)} frames decode with a correct FCS")
    say(f"open it with:  wireshark {pcap}")


async def run(port_offset: int, keep: bool, run_dir: Path, pcap: Path) -> None:
    # State and sockets in a short temporary path (a Unix socket path has at most 107 bytes);
    # the services and peers write their logs through tmp/logs into the run folder.
    tmp = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    (tmp / "logs").symlink_to(run_dir / "logs")
    log_handler = logging.FileHandler(run_dir / "logs" / "demo.log")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(log_handler)
    logging.getLogger().setLevel(logging.INFO)
    print(f"{BOLD}Thing-bootstrapping gateway: demo on the emulated radio{RESET}")
    print(f"this run is kept in {run_dir}/ (air.pcap, logs/, summary.txt); simulated air at "
          f"port offset {port_offset}")  # fmt: skip
    outcome = "FAILED"
    tap: TapThread | None = None
    try:
        with TapThread(port_offset, pcap) as tap:
            await radio_foundation(port_offset)
            await appliance(tmp, port_offset)
            await asyncio.sleep(0.3)
        summarize(tap, pcap)
        outcome = "complete"
        print(f"\n{BOLD}Demo complete.{RESET}")
    except BaseException as exc:
        outcome = f"FAILED ({type(exc).__name__}: {exc})"
        raise
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
        write_summary(run_dir, pcap, outcome, tap)
        if keep:
            print(f"state and sockets kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"this run is kept in {run_dir}/: air.pcap, logs/, summary.txt, transcript.txt")


@click.command(help=(__doc__ or "").split("\n\n")[0],
               context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip
@click.option("--port-offset", type=int, default=7, show_default=True,
              help="simulated air port offset")  # fmt: skip
@click.option("--run-dir", default="demo-run", show_default=True,
              help="where this run is kept, replacing the last one")  # fmt: skip
@click.option("--pcap", help="where to write the air capture (default RUN_DIR/air.pcap)")
@click.option("--keep", is_flag=True, help="keep the state and sockets too")
def command(port_offset: int, run_dir: str, pcap: str | None, keep: bool) -> None:
    where = Path(run_dir).resolve()
    prepare_run_dir(where)
    capture = Path(pcap).resolve() if pcap else where / "air.pcap"
    asyncio.run(run(port_offset, keep, where, capture))


def main() -> None:
    command(prog_name="python -m gateway.demo")


if __name__ == "__main__":
    main()
