"""Benchmark: CBSB-1 end to end on the emulated air WITH airtime, every party a separate process.

Run: ``python tests/benchmarks/bench_cbsb_system.py [--single 5] [--many 20] [--processes]``.
Not collected by pytest. It starts the reference cloud, the three gateway services (radio node
1) and things on their own emulated AT86RF233s (nodes 2..), opens one targeted session for all of
them through the reference app, and measures on each thing the time from its trigger (SIGUSR1,
the pairing button) to committed credentials, discovery included:

* one thing at a time (``--single`` runs): min / median / max, split into discovery (trigger to
  the first acceptable beacon) and join (M1 to commit on M4);
* ``--many`` things triggered at the same instant (all must commit), by default in one process
  holding every thing's emulated radio, with ``--processes`` as separate processes (on a 2-core
  machine 20 extra processes starve the real-time emulation; the air is the same either way).

Anchor: Thread's discovery alone scans 16 channels in about 4.8 s before a join can start; the
aim here is the whole bootstrap under 2 s. Figures depend on the CPU available to the real-time
emulation (each emulated chip runs in real time over UDP multicast): the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.cbsb.stack import Stack, parse_lines, wait_until  # noqa: E402

OFFSET = 298


def _phases(events: list[dict[str, Any]]) -> dict[str, Any]:
    res = next(e for e in reversed(events) if e.get("event") == "result")
    t0 = res.get("trigger_t") or res["t"] - res["elapsed_s"]
    found = next((e["t"] - t0 for e in events if e.get("event") == "progress"
                  and " found on channel " in e.get("stage", "")), None)  # fmt: skip
    return {"ok": res["ok"], "total": res["elapsed_s"], "discovery": found,
            "join": res["elapsed_s"] - found if found is not None else None,
            "channel": res.get("channel"), "counters": res.get("counters", {})}  # fmt: skip


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"min {min(values):.3f} s, median {statistics.median(values):.3f} s, "
            f"max {max(values):.3f} s")  # fmt: skip


async def _worker(offset: int, first_node: int, devs_file: str) -> None:
    """--worker: many things in this one process, triggered together by SIGUSR1."""
    from drivers.radio import open_radio
    from gateway.peers.thing.cbsb import run_thing
    from gateway.wire.cbsb_thing import ThingIdentity, ThingTimers

    devs = json.loads(Path(devs_file).read_text())
    radios = []
    for i in range(len(devs)):
        r = open_radio(f"emulated:?node={first_node + i}&port_offset={offset}&airtime=1")
        await r.open()
        radios.append(r)
    trigger = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, trigger.set)
    print(json.dumps({"event": "ready"}), flush=True)
    stamps: list[list[dict[str, Any]]] = [[] for _ in devs]

    def progress(i: int) -> Any:
        return lambda stage: stamps[i].append({"event": "progress", "t": time.time(),
                                               "stage": stage})  # fmt: skip

    results = await asyncio.gather(*(
        run_thing(r, ThingIdentity(bytes.fromhex(d["dev_id"]),
                                   bytes.fromhex(Path(d["k"]).read_text().strip())),
                  trigger=trigger, timers=ThingTimers(deadline_s=60), on_progress=progress(i))
        for i, (r, d) in enumerate(zip(radios, devs, strict=True))))  # fmt: skip
    for i, res in enumerate(results):
        print(json.dumps({"thing": i, "events": [*stamps[i], {"event": "result", "t": time.time(),
                                                               **res.as_dict()}]}), flush=True)  # fmt: skip
    for r in radios:
        await r.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--single", type=int, default=5, help="one-thing runs")
    ap.add_argument("--many", type=int, default=20, help="things triggered at once")
    ap.add_argument("--processes", action="store_true",
                    help="the many things as separate processes (default: one process)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(_worker(int(args.worker[0]), int(args.worker[1]), args.worker[2]))
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-cbsb-system-"))
    s = Stack(root, OFFSET, airtime=True)
    load0 = os.getloadavg()
    print(f"CBSB-1 system benchmark: emulated air with airtime, {os.cpu_count()} CPUs, "
          f"load average {load0[0]:.1f}")  # fmt: skip
    try:
        s.start_cloud()
        s.enrol_gateway()
        s.add_user("bench")
        n_total = args.single + args.many
        devs = [s.enrol_device(f"b{i}") for i in range(n_total)]
        s.start_services()
        st = s.wait_cloud_link(60)
        s.login("bench")
        rc, ev = s.app("bench", "claim", st["claim_code"])
        assert rc == 0, ev
        qrs = [a for d in devs for a in ("--qr", d.qr)]
        s.app_bg("bench", "app", "bootstrap", *qrs, "--listen", f"127.0.0.1:{s.app_port(0)}",
                 "--window", "600", "--timeout", "600")  # fmt: skip
        wait_until(lambda: any(e.get("event") == "window_open" for e in s.events("app")), 60,
                   "the window")  # fmt: skip
        print(f"gateway {st['gw_id']} on channel {st['channel']} (a sweep starts at a random "
              f"channel; 50 ms per channel)")  # fmt: skip

        singles = []
        for i in range(args.single):
            name = f"single{i}"
            s.thing_bg(name, devs[i], 2 + (i % 10), root / f"{name}.json", "--wait-trigger",
                       "--timeout", "60")  # fmt: skip
            wait_until(lambda n=name: any(e.get("event") == "ready" for e in s.events(n)), 60,
                       "the thing")  # fmt: skip
            s.procs[name].send_signal(signal.SIGUSR1)
            s.wait_exit(name, 90)
            singles.append(_phases(s.events(name)))
        ok = [r for r in singles if r["ok"]]
        print(f"\n1 thing at a time ({len(ok)}/{len(singles)} committed):")
        print(f"  trigger -> committed:  {_stats([r['total'] for r in ok])}")
        print(f"  discovery:             {_stats([r['discovery'] for r in ok])}")
        print(f"  join (M1 .. M4):       {_stats([r['join'] for r in ok])}")

        many_devs = devs[args.single :]
        if many_devs:
            results = _many(s, root, many_devs, not args.processes)
            ok = [r for r in results if r["ok"]]
            how = "separate processes" if args.processes else "one process"
            print(f"\n{len(many_devs)} things triggered at once ({how}); "
                  f"{len(ok)}/{len(results)} committed:")  # fmt: skip
            print(f"  trigger -> committed:  {_stats([r['total'] for r in ok])}")
            print(f"  discovery:             {_stats([r['discovery'] for r in ok])}")
            print(f"  join (M1 .. M4):       {_stats([r['join'] for r in ok])}")
            under = sum(1 for r in ok if r["total"] < 2.0)
            print(f"  under 2 s:             {under}/{len(results)}")
            sess = s.go().get("session") or s.go().get("last_session") or {}
            print(f"  gateway counters:      {sess.get('counters')}")
        print(f"\nload average at the end {os.getloadavg()[0]:.1f} "
              "(other work on the machine slows the real-time emulation)")  # fmt: skip
        return 0
    finally:
        s.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


def _many(s: Stack, root: Path, devs: list[Any], inprocess: bool) -> list[dict[str, Any]]:
    first = 12
    if inprocess:
        spec = root / "many.json"
        spec.write_text(json.dumps([{"dev_id": d.dev_id, "k": str(d.k_file)} for d in devs]))
        s.spawn("many", [__file__, "--worker", str(OFFSET), str(first), str(spec)])
        wait_until(lambda: any(e.get("event") == "ready" for e in s.events("many")), 120,
                   "the things")  # fmt: skip
        s.procs["many"].send_signal(signal.SIGUSR1)
        s.wait_exit("many", 180)
        return [_phases(e["events"]) for e in parse_lines(s.log("many")) if "events" in e]
    names = []
    for i, d in enumerate(devs):
        name = f"many{i}"
        s.thing_bg(name, d, first + i, root / f"{name}.json", "--wait-trigger", "--timeout", "90")
        names.append(name)
    wait_until(lambda: all(any(e.get("event") == "ready" for e in s.events(n)) for n in names),
               180, "the things")  # fmt: skip
    time.sleep(0.5)
    for n in names:  # as close to one instant as signals go
        s.procs[n].send_signal(signal.SIGUSR1)
    for n in names:
        s.wait_exit(n, 180)
    return [_phases(s.events(n)) for n in names]


if __name__ == "__main__":
    raise SystemExit(main())
