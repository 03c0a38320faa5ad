"""SRP server benchmark: what a registration costs and how long a Thread service takes to show on
the LAN.

    python tests/benchmarks/bench_srp.py [--hosts 200] [--things 3]

1. The server core (``SrpServer.handle``, in this process): registrations per second of
   distinct hosts, each a signed UPDATE laid out as OpenThread's client sends it (one service
   with a TXT record, one address); the client's cost of building and signing one; the memory
   the server holds for ``--hosts`` registrations (tracemalloc, after the updates were built).
2. The service shell over UDP on loopback (``SrpService``, no advertising proxy): the round
   trip UPDATE -> response, median and p90 over ``--hosts`` registrations, one at a time.
3. End to end, as root with ``ip netns`` (tests/thread/netns.py): the gateway with border
   routing, a LAN host running a python-zeroconf browser, and ``--things`` reference things
   attached one after the other on the emulated air. Per thing: attach (child role) -> OMR
   address -> SRP ``Registered`` (with the thing's own UPDATE round trip over the air) -> the
   LAN browser resolving the service, in seconds. Skipped with the reason without root.

No timing is asserted anywhere; the figures are printed. Port offset 310 (part 3).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import statistics
import struct
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from gateway.border_router.srp import SrpService  # noqa: E402
from gateway.thread.network.router import RouterCore  # noqa: E402
from gateway.thread.srp.client import ServiceSpec, build_update  # noqa: E402
from gateway.thread.srp.server import Bounds, Host, SrpServer  # noqa: E402
from tests.thread.netns import pct  # noqa: E402

OFFSET = 310


def _updates(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        addr = str(ipaddress.IPv6Address("fd00:db8:1:1::") + i + 1)
        svc = [ServiceSpec(f"ins{i}", "_test._udp", 12345, txt=[b"k=v"])]
        out.append(build_update(i & 0xFFFF, f"thing{i}", [addr], svc, key))
    return out


def core(n: int) -> None:
    t0 = time.perf_counter()
    msgs = _updates(n)
    build = (time.perf_counter() - t0) / n

    def server() -> SrpServer:
        return SrpServer(Bounds(hosts_total=max(256, n), services_total=max(1024, n),
                                updates_per_second_per_source=1e9, burst_per_source=10**9))  # fmt: skip

    srv = server()
    t0 = time.perf_counter()
    for m in msgs:
        resp = srv.handle(m, "fe80::1", 0.0)
        assert resp is not None and resp[3] & 0xF == 0
    took = time.perf_counter() - t0
    tracemalloc.start()  # a second server, for its memory only (tracemalloc slows it down)
    base = tracemalloc.get_traced_memory()[0]
    again = server()
    for m in msgs:
        again.handle(m, "fe80::1", 0.0)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"1. core: {n} registrations in {took * 1000:.0f} ms = {n / took:.0f}/s "
          f"({took / n * 1e6:.0f} us each, ECDSA verify included); client build+sign "
          f"{build * 1e6:.0f} us each; server memory {held / 1024:.0f} KiB "
          f"({held / n:.0f} B per host)")  # fmt: skip


class _NoProxy:
    async def publish(self, host: Host, omr: list[ipaddress.IPv6Network]) -> None:
        return None

    async def withdraw(self, name: str) -> None:
        return None

    def published(self) -> dict[str, list[str]]:
        return {}

    async def restart(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def shell(n: int) -> None:
    from tests.thread.network.world import GATEWAY_EXT, dataset

    msgs = _updates(n)
    net = RouterCore(dataset(seed=5), GATEWAY_EXT, rng=random.Random(5))
    net.start(0.0)
    with tempfile.TemporaryDirectory() as d:
        svc = SrpService(net, Path(d), lan_if=lambda: "lo", changed=lambda: None, thread_if=None,
                         port=0, proxy=_NoProxy(),
                         bounds=Bounds(hosts_total=max(256, n), services_total=max(1024, n),
                                       updates_per_second_per_source=1e9,
                                       burst_per_source=10**9))  # fmt: skip
        await svc.open()
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[bytes] = asyncio.Queue()

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                answers.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(P, remote_addr=("::1", svc.port))
        rtts = []
        for m in msgs:
            t0 = time.perf_counter()
            transport.sendto(m)
            resp = await asyncio.wait_for(answers.get(), 10)
            rtts.append((time.perf_counter() - t0) * 1000)
            assert struct.unpack_from("!H", resp, 2)[0] & 0xF == 0
        await asyncio.wait_for(svc.idle.wait(), 60)
        transport.close()
        await svc.close()
    print(
        f"2. shell over UDP: UPDATE -> response median {statistics.median(rtts):.2f} ms, "
        f"p90 {pct(rtts, 0.9):.2f} ms over {n} registrations (state saved per change)"
    )


def end_to_end(things: int) -> None:
    from tests.thread.netns import LAN_BROWSER, LAN_IF, Net, netns_unavailable
    from tests.thread.stack import Thing, ThreadStack
    from tests.thread.test_srp_netns import _credentials, _thing_cmd

    why = netns_unavailable()
    if why is not None:
        print(f"3. end to end: skipped ({why})")
        return
    net = Net(f"b{OFFSET}", kind="srpb")
    net.down()
    started: list[Thing] = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        stack = ThreadStack(root / "gw", OFFSET, border_extra='infra_interface = "gw-eth0"\n',
                            cmd_prefix=net.exec_prefix())  # fmt: skip
        try:
            net.up()
            stack.start_all()
            browser = Thing([*net.exec_prefix(net.lan), sys.executable, "-c", LAN_BROWSER, LAN_IF,
                             "_test._udp.local."], stack, root / "browser.log")  # fmt: skip
            started.append(browser)
            browser.wait_event(lambda e: e["event"] == "ready", 30, "the browser")
            rows = []
            for i in range(things):
                host = f"bench{i}"
                t = Thing(_thing_cmd(stack, 2 + i, _credentials(stack, root / f"t{i}.json"),
                                     "--srp-host", host), stack, root / f"t{i}.log")  # fmt: skip
                started.append(t)
                child = t.wait_event(lambda e: e["event"] == "role" and e["role"] == "child",
                                     120, "attached")["t"]  # fmt: skip
                omr = t.wait_event(lambda e: e["event"] == "addresses" and e["addresses"]["omr"],
                                   120, "OMR address")["t"]  # fmt: skip
                reg = t.wait_event(
                    lambda e: e["event"] == "srp" and e["result"]["state"] == "Registered",
                    120,
                    "registered",
                )
                lan = browser.wait_event(
                    lambda e, host=host: e["event"] == "added" and e["name"].startswith(host + "."),
                    120,
                    "on the LAN",
                )
                # the browser stamps the line once resolved (the same machine's clock)
                rows.append((omr - child, reg["t"] - child, reg["result"]["rtt_ms"],
                             lan["t"] - child))  # fmt: skip
            for i, (o, r, rtt, seen) in enumerate(rows):
                print(f"3. thing {i}: attach -> OMR address {o:.2f} s, -> Registered {r:.2f} s "
                      f"(UPDATE round trip over the air {rtt} ms), -> resolved on the LAN "
                      f"{seen:.2f} s")  # fmt: skip
            stack.stop()
        finally:
            for t in started:
                if t.proc.poll() is None:
                    t.proc.kill()
                t.stop()
            stack.cleanup()
            net.down()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--things", type=int, default=3)
    args = p.parse_args()
    core(args.hosts)
    asyncio.run(shell(args.hosts))
    end_to_end(args.things)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
