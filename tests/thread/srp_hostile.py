"""A hostile Thread device for the SRP tests: it holds the network's credentials (a child like
any other), attaches, finds the SRP server in the Network Data and sends it, one at a time from
its ML-EID, UPDATE messages that must be refused:

* ``forged``: a well-formed update whose SIG(0) signature has one bit flipped;
* ``truncated``: a well-formed update cut short inside its records;
* ``oversized``: a datagram of 1,300 bytes (above the 1,272 bytes SRP allows);
* ``big_txt``: a correctly signed update whose TXT record exceeds the server's bound.

    python -m tests.thread.srp_hostile --radio URL --state FILE

For each it prints a JSON line ``{"kind": ..., "rcode": N | null}`` (null: no answer within
``--wait`` seconds), then exits 0."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import GatewayError, ParseError
from gateway.peers.thing.attach import ChildStateStore, Exercise, attach
from gateway.thread.network.child import ChildCore
from gateway.thread.network.events import UdpReceived
from gateway.thread.network.netdata import parse_network_data, srp_unicast_servers
from gateway.thread.srp.client import ServiceSpec, build_update

SRC_PORT = 49202


def hostile_updates(address: str) -> list[tuple[str, bytes]]:
    """The messages, in the order they are sent (message IDs 1..4)."""
    key = ec.generate_private_key(ec.SECP256R1())
    svc = [ServiceSpec("evil", "_test._udp", 9)]
    good = build_update(1, "hostile", [address], svc, key)
    forged = good[:-1] + bytes([good[-1] ^ 0x01])
    truncated = bytearray(build_update(2, "hostile", [address], svc, key)[:-40])
    oversized = bytearray(build_update(3, "hostile", [address], svc, key) + bytes(1300))[:1300]
    big = [ServiceSpec("evil", "_test._udp", 9, txt=[b"k=" + b"x" * 250, b"j=" + b"y" * 100])]
    big_txt = build_update(4, "hostile", [address], big, key)
    return [("forged", forged), ("truncated", bytes(truncated)), ("oversized", bytes(oversized)),
            ("big_txt", big_txt)]  # fmt: skip


class Hostile(Exercise):
    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait = wait
        self.queue: list[tuple[str, bytes]] = []
        self.current: tuple[str, int, float] | None = None  # kind, message ID, sent at
        self.answer: int | None = None
        self.done = False

    def event(self, ev: object, child: ChildCore, now: float) -> None:
        if isinstance(ev, UdpReceived) and ev.dst_port == SRC_PORT and len(ev.payload) >= 4:
            msg_id, flags = struct.unpack_from("!HH", ev.payload)
            if self.current is not None and msg_id == self.current[1]:
                self.answer = flags & 0xF

    def poll(self, child: ChildCore, now: float) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        if self.done or not child.attached or not child.slaac:
            return out
        try:
            servers = srp_unicast_servers(parse_network_data(child.network_data))
        except ParseError:
            servers = []
        if not servers:
            return out
        if self.current is None and not self.queue:
            self.queue = hostile_updates(str(child.slaac[0]))
        if self.current is not None:
            kind, _id, sent = self.current
            if self.answer is None and now < sent + self.wait:
                return out
            out.append(("hostile", {"kind": kind, "rcode": self.answer}))
            self.current, self.answer = None, None
        if not self.queue:
            self.done = True
            return out
        kind, msg = self.queue.pop(0)
        addr, port = servers[0]
        with contextlib.suppress(GatewayError):
            child.send_udp(addr, SRC_PORT, port, msg, now, src=child.ml_eid)
        self.current = (kind, struct.unpack_from("!H", msg)[0], now)
        return out

    def next_timeout(self, child: ChildCore) -> float | None:
        if self.done or not child.attached:
            return None
        return self.current[2] + self.wait if self.current is not None else None


async def run(args: argparse.Namespace) -> int:
    from drivers.radio import open_radio

    store = ChildStateStore(args.state)
    state = store.load()
    if state is None:
        raise SystemExit(f"{args.state} holds no Thread network")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    hostile = Hostile(args.wait)

    def report(kind: str, st: dict[str, Any]) -> None:
        if kind == "hostile":
            r = st["result"]
            print(json.dumps({"kind": r["kind"], "rcode": r["rcode"]}), flush=True)
        if hostile.done:
            stop.set()

    radio = open_radio(args.radio)
    await radio.open()
    try:
        await attach(radio, state, store, timeout=30, report=report, stop=stop, exercise=hostile)
    finally:
        await radio.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--radio", required=True)
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for each answer")
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
