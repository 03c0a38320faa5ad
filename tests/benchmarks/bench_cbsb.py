"""Benchmark: CBSB-1 codec throughput, crypto per message, CPU per join, and join latency.

Run: ``python tests/benchmarks/bench_cbsb.py [--seconds 0.5] [--joins 100]``. Not collected by
pytest. Figures:

* build/parse rates (frames per CPU second) of every CBSB-1 frame type;
* CPU per protected message (proof, M2 with its chunk, opening M2, M3, M4);
* CPU per complete join exchange, gateway side and thing side separately (PSK and PFS profiles),
  measured by timing every call into each state machine during real joins;
* simulated completion times of 1 and 20 concurrent things (discovery included) on the
  discrete-event air of tests/cbsb/sim.py (airtime at 250 kbit/s, 5 ms processing per hop).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.crypto import cbsb_keys as k  # noqa: E402
from gateway.wire.cbsb import (  # noqa: E402
    BeaconFlags,
    BeaconRequest,
    Delivery,
    JoinConfirm,
    JoinResponse,
    parse_frame,
)
from gateway.wire.cbsb_gateway import GatewayConfig, GatewaySession, JoinGrant
from gateway.wire.cbsb_session import (
    Committed,
    Output,
    build_beacon,
    build_confirm,
    build_join_request,
    build_response_ok,
    open_confirm,
    open_response,
    verify_join_request,
)
from gateway.wire.cbsb_thing import ThingIdentity, ThingJoin, ThingState
from tests.cbsb.sim import Air  # noqa: E402

DATASET = bytes.fromhex(  # espressif/esp-matter "Light + OTBR" README, `dataset active -x`
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c3901546"
    "0510874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a"
    "0f60ca6dd3af116bdefd2a21270c0402a0f7f8"
)
DELIVERY = Delivery(thread_dataset=DATASET, key_sequence=0).to_bytes()
GW_ID = bytes.fromhex("0011223344556677")
EXP = 1_700_000_000
SID = bytes(range(16))


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per CPU second, measured over about ``seconds``."""
    n = 0
    batch = 50
    start = time.process_time()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        spent = time.process_time() - start
        if spent >= seconds:
            return n / spent


def ident(n: int) -> ThingIdentity:
    return ThingIdentity(
        bytes([0xA0, 0, 0, 0]) + n.to_bytes(4, "big"), hashlib.sha256(b"%d" % n).digest()
    )


def bench_codec(seconds: float) -> None:
    t = ident(1)
    mode = BeaconFlags.TARGETED
    psk = k.derive_psk_t(t.k_dev, SID, GW_ID, t.dev_id, EXP, int(mode))
    beacon = build_beacon(
        flags=mode,
        gw_id=GW_ID,
        sid=SID,
        epoch=1,
        r_g=bytes(16),
        exp=EXP,
        window_left_s=100,
        channel=15,
        pan_id=0x1234,
        k_bcn=bytes(16),
        steering=k.steering_build([t.dev_id], 8),
    )
    m0 = beacon.to_bytes()
    m1 = build_join_request(m0, 1, t.dev_id, psk, bytes(16))
    flight = build_response_ok(
        m0=m0,
        m1_raw=m1.to_bytes(),
        m1=m1,
        psk_t=psk,
        r_g=bytes(16),
        k_bcn=bytes(16),
        delivery=DELIVERY,
    )
    m2 = JoinResponse.from_bytes(flight.m2)
    m3 = build_confirm(flight.keys, flight.th2, t.dev_id, bytes(16))
    frames: dict[str, Any] = {
        "Beacon (71 B)": beacon,
        "BeaconRequest (4 B)": BeaconRequest(),
        "M1 JoinRequest (45 B)": m1,
        "M2 JoinResponse (104 B)": m2,
        "Delivery chunk": parse_frame(flight.chunks[0]),
        "M3 JoinConfirm (37 B)": JoinConfirm.from_bytes(m3),
    }
    print("codec (frames per CPU second)")
    for name, frame in frames.items():
        raw = frame.to_bytes()
        build = rate(frame.to_bytes, seconds)
        parse = rate(partial(parse_frame, raw), seconds)
        print(f"  {name:26s} build {build:>10,.0f}/s   parse {parse:>10,.0f}/s")

    print("crypto per message (microseconds of CPU)")
    ops: dict[str, Callable[[], object]] = {
        "thing: PSK_T from K_dev": lambda: k.derive_psk_t(t.k_dev, SID, GW_ID, t.dev_id, EXP, 1),
        "thing: build M1 (proof_T)": lambda: build_join_request(m0, 1, t.dev_id, psk, bytes(16)),
        "gateway: verify M1": lambda: verify_join_request(m0, m1, psk),
        "gateway: M2 + chunk": lambda: build_response_ok(
            m0=m0,
            m1_raw=m1.to_bytes(),
            m1=m1,
            psk_t=psk,
            r_g=bytes(16),
            k_bcn=bytes(16),
            delivery=DELIVERY,
        ),
        "thing: open M2": lambda: open_response(
            m0=m0, m1_raw=m1.to_bytes(), m1=m1, psk_t=psk, r_g=bytes(16), m2=m2
        ),
        "gateway: open M3": lambda: open_confirm(
            flight.keys, flight.th2, JoinConfirm.from_bytes(m3)
        ),
        "X25519 key pair + exchange": lambda: k.x25519_shared(
            k.x25519_keypair(bytes(range(32))).private, bytes([9]) + bytes(31)
        ),
    }
    for name, fn in ops.items():
        print(f"  {name:30s} {1e6 / rate(fn, seconds):8.1f} µs")


class Timed:
    """Wraps a state machine and adds up the CPU time spent in it."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.cpu = 0.0

    def _t(self, fn: Callable[..., list[Output]], *args: Any) -> list[Output]:
        start = time.process_time()
        try:
            return fn(*args)
        finally:
            self.cpu += time.process_time() - start

    def handle_frame(self, now: float, src: bytes | None, payload: bytes) -> list[Output]:
        return self._t(self.node.handle_frame, now, src, payload)

    def poll(self, now: float) -> list[Output]:
        return self._t(self.node.poll, now)

    def next_deadline(self) -> float | None:
        deadline: float | None = self.node.next_deadline()
        return deadline


def run_world(
    n: int, *, pfs: bool = False, loss: float = 0.0, seed: int = 1, channel: int = 26
) -> tuple[list[float], float, float, int]:
    """(commit times, gateway CPU, things' CPU, frames on air) for ``n`` concurrent things."""
    rnd = random.Random(seed)
    ids = [ident(seed * 1000 + i) for i in range(n)]
    mode = BeaconFlags.TARGETED | (BeaconFlags.PFS_REQUIRED if pfs else BeaconFlags.NONE)
    psks = {t.dev_id: k.derive_psk_t(t.k_dev, SID, GW_ID, t.dev_id, EXP, int(mode)) for t in ids}
    gw = Timed(
        GatewaySession(
            GatewayConfig(GW_ID, channel, 0x1234, DELIVERY),
            JoinGrant(SID, EXP, mode, 180.0, psks),
            0.0,
            rng=rnd.randbytes,
            jitter=rnd,
        )
    )
    air = Air(loss=loss, seed=seed, proc_delay=0.005)
    g = air.add("gw", gw, GW_ID, channel)
    air.start(g, gw.poll(0.0))
    things = []
    for i, t in enumerate(ids):
        tj = Timed(ThingJoin(t, rng=rnd.randbytes, jitter=random.Random(i)))
        st = air.add(f"t{i}", tj, bytes([0xEE, 0, 0, 0, 0, 0, i >> 8, i & 0xFF]), None)
        air.call_at(0.0, st, tj.node.start)
        things.append((st, tj))
    air.run(
        60.0,
        stop=lambda: all(
            tj.node.state in (ThingState.COMMITTED, ThingState.FAILED) for _, tj in things
        ),
    )
    times = [
        next((t for t, e in st.events if isinstance(e, Committed)), float("inf"))
        for st, _ in things
    ]
    return times, gw.cpu, sum(tj.cpu for _, tj in things), air.frames_sent


def bench_joins(joins: int) -> None:
    print("CPU per complete join (state machines, discovery included)")
    for pfs in (False, True):
        label = "PFS" if pfs else "PSK"
        for crowd in (1, 20):
            gw_cpu = thing_cpu = 0.0
            done = 0
            for r in range(max(1, joins // crowd)):
                times, g, t, _ = run_world(crowd, pfs=pfs, seed=r + 1)
                done += sum(x != float("inf") for x in times)
                gw_cpu += g
                thing_cpu += t
            print(
                f"  {label} profile, {crowd:2d} thing(s) at once: gateway "
                f"{1e3 * gw_cpu / done:5.2f} ms/join, thing {1e3 * thing_cpu / done:5.2f} ms/join "
                f"({done} joins)"
            )
    print(
        "  (in a crowd each thing also receives the others' broadcast Beacon Requests; most of its"
    )
    print("   figure there is the per-call timing overhead of those ~600 receptions)")

    print("simulated completion time (start to commit, gateway on channel 26 = slowest sweep)")
    for n, loss in ((1, 0.0), (20, 0.0), (20, 0.1)):
        times, _, _, frames = run_world(n, loss=loss, seed=42)
        ok = [x for x in times if x != float("inf")]
        print(
            f"  {n:2d} things, loss {loss:4.0%}: committed {len(ok)}/{n}, "
            f"median {statistics.median(ok):.3f} s, max {max(ok):.3f} s, {frames} frames on air"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=0.3, help="CPU seconds per rate measurement")
    p.add_argument("--joins", type=int, default=100, help="joins per profile for the CPU figures")
    args = p.parse_args()
    bench_codec(args.seconds)
    bench_joins(args.joins)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
