"""Border routing end to end, in network namespaces: the Thread network and a LAN reach each
other over IPv6.

``gw`` holds the gateway (radio and border router services with ``infra_interface =
"gw-eth0"``), the emulated air (its loopback) and a reference thing attached as a child; ``lan``
is a LAN host (``accept_ra_rt_info_max_plen=64``) on a veth pair to it. No LAN router: the
gateway's own on-link prefix (its PIO) gives the LAN host an address, and its RIO the route to
the OMR prefix. Shown:

* the thing gets an OMR address; the LAN host learns the route from the gateway's RA and pings
  that address 20/20, and the thing pings the LAN host 20/20;
* UDP both ways with 1,200-byte datagrams (fragmented on the mesh), echoed back;
* the LAN host cannot reach the thing's mesh-local address even with a route to it (the
  gateway's nftables table drops it, and its counter shows it);
* after ``kill -9`` of the border router the interface and routes come back (one Thread
  interface, no stale route) and the LAN host reaches the thing again;
* the gateway's stop withdraws the route from the LAN host (an RA with lifetime 0), removes the
  Thread interface and its forwarding table.

Needs root and ``ip netns`` (CI has both; skipped with the reason otherwise); the namespaces
are made per run and deleted in teardown, whatever happened. Port offset 1654 belongs to this
module."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.peers.thing.attach import ChildState, ChildStateStore
from tests.runtime.helpers import wait_until
from tests.thread.stack import Thing, ThreadStack

pytestmark = pytest.mark.timeout(300)
OFFSET = 1654
GW_IF, LAN_IF = "gw-eth0", "lan-eth0"
THING_ECHO = 7000
LAN_ECHO = 7001
CHILD_TIMEOUT = 12

# a UDP echo on the LAN host (the thing's datagrams come back to it)
LAN_ECHO_SERVER = f"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", {LAN_ECHO}))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)
"""
# a UDP client on the LAN host: COUNT datagrams of SIZE bytes to the thing's echo, echoes counted
LAN_UDP_CLIENT = """
import socket, sys, time
dst, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(0.2)
got = set()
for i in range(count):  # stop-and-wait: the next datagram once this one came back (or 3 s)
    s.sendto(i.to_bytes(4, "big") + bytes(size - 4), (dst, port))
    deadline = time.time() + 3
    while i not in got and time.time() < deadline:
        try:
            data, _ = s.recvfrom(2048)
        except TimeoutError:
            continue
        if len(data) == size:
            got.add(int.from_bytes(data[:4], "big"))
print(len(got))
"""


def _run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stdout}{r.stderr}")
    return r


def _in(ns: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return _run("ip", "netns", "exec", ns, *args, **kw)


class Net:
    def __init__(self, tag: str) -> None:
        self.gw, self.lan = f"gwbr-{tag}", f"gwlan-{tag}"

    def up(self) -> None:
        _run("ip", "netns", "add", self.gw)
        _run("ip", "netns", "add", self.lan)
        _run("ip", "link", "add", GW_IF, "netns", self.gw, "type", "veth", "peer", "name", LAN_IF,
             "netns", self.lan)  # fmt: skip
        for ns, dev in ((self.gw, GW_IF), (self.lan, LAN_IF)):
            for conf in ("all", "default", dev):
                _in(ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _in(self.lan, "sysctl", "-qw", f"net.ipv6.conf.{LAN_IF}.accept_ra_rt_info_max_plen=64")

    def down(self) -> None:
        for ns in (self.gw, self.lan):
            _run("ip", "netns", "del", ns, check=False)

    def lan_routes(self) -> str:
        return _run("ip", "-n", self.lan, "-6", "route").stdout

    def lan_address(self) -> str | None:
        out = _run("ip", "-n", self.lan, "-6", "-o", "addr", "show", "dev", LAN_IF, "scope",
                   "global").stdout  # fmt: skip
        m = re.search(r"inet6 ([0-9a-f:]+)/64", out)
        return m.group(1) if m and "tentative" not in out else None


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("needs root, iproute2 and nftables (CI has them)")
    n = Net(str(os.getpid()))
    probe = _run("ip", "netns", "add", n.gw, check=False)
    if probe.returncode != 0:
        pytest.skip(f"'ip netns add' is not permitted here: {probe.stderr.strip()}")
    _run("ip", "netns", "del", n.gw)
    try:
        n.up()
        yield n
    finally:
        n.down()
        listed = _run("ip", "netns", "list").stdout
        assert n.gw not in listed and n.lan not in listed


def _ping(ns: str, addr: str, count: int = 20, size: int = 56) -> int:
    out = _in(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "5", "-s", str(size), addr,
              check=False, timeout=120).stdout  # fmt: skip
    m = re.search(r"(\d+) received", out)
    return int(m.group(1)) if m else 0


def test_the_lan_and_the_thread_network_reach_each_other(net: Net, tmp_path: Path) -> None:
    stack = ThreadStack(tmp_path / "gw", OFFSET, border_extra=f'infra_interface = "{GW_IF}"\n',
                        cmd_prefix=["ip", "netns", "exec", net.gw])  # fmt: skip
    echo = subprocess.Popen(
        ["ip", "netns", "exec", net.lan, sys.executable, "-c", LAN_ECHO_SERVER],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    thing: Thing | None = None
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        stack.start_all()
        st = stack.result("thread_status")
        # the LAN host: a route to the OMR prefix (RIO) and an address from the gateway's PIO
        wait_until(lambda: " via fe80::" in net.lan_routes() and net.lan_address() is not None,
                   60, "the gateway's RA on the LAN host")  # fmt: skip
        lan_addr = net.lan_address()
        assert lan_addr is not None
        prefixes = stack.result("thread_prefixes")
        omr = ipaddress.IPv6Network(prefixes["omr"]["local"])
        assert f"{omr} via fe80::" in net.lan_routes()
        assert ipaddress.IPv6Address(lan_addr) in ipaddress.IPv6Network(
            prefixes["on_link"]["local"]
        )
        assert prefixes["route"] == "fc00::/7" and prefixes["omr"]["state"] == "added"
        # gwctl doctor, in the gateway's namespace, finds border routing in order
        doctor = subprocess.run(
            ["ip", "netns", "exec", net.gw, sys.executable, "-m", "gateway.admin", "doctor",
             "--json"], env=stack.env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        for name in ("border routing: sysctls", "border routing: Thread interface",
                     "border routing: LAN RA"):  # fmt: skip
            assert checks[name]["status"] == "pass", checks[name]
        human = subprocess.run(
            ["ip", "netns", "exec", net.gw, sys.executable, "-m", "gateway.admin", "thread",
             "prefixes"], env=stack.env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert f"OMR prefix: {omr} (added)" in human.stdout, human.stdout + human.stderr

        # a thing with the network's credentials attaches, takes an OMR address, and exercises
        state = tmp_path / "thing.json"
        asyncio.run(ChildStateStore(state).save(ChildState(stack.dataset(), st["key_sequence"])))
        cmd = ["ip", "netns", "exec", net.gw, sys.executable, "-m", "gateway.peers.thing", "join",
               "--radio", stack.radio_url(2), "--state", str(state), "--json", "--quiet",
               "--child-timeout", str(CHILD_TIMEOUT), "--udp-echo", str(THING_ECHO),
               "--ping", lan_addr, "--ping-count", "20",
               "--udp-send", f"[{lan_addr}]:{LAN_ECHO}", "--udp-size", "1200",
               "--udp-count", "20"]  # fmt: skip
        thing = Thing(cmd, stack, tmp_path / "thing.log")
        got = thing.wait_event(lambda d: d.get("event") == "addresses" and d["addresses"]["omr"],
                               60, "an OMR address on the thing")  # fmt: skip
        thing_omr = got["addresses"]["omr"][0]
        assert ipaddress.IPv6Address(thing_omr) in omr
        # the thing -> the LAN host: pings and 1,200-byte UDP datagrams, all answered
        results: dict[str, dict[str, Any]] = {}
        while len(results) < 2:
            doc = thing.wait_event(lambda d: d.get("event") in ("ping", "udp"), 90, "results")
            results[doc["event"]] = doc["result"]
        diag = (
            results,
            stack.result("thread_prefixes")["packets"],
            stack.result("thread_status")["counters"],
            stack.result("thread_children"),
        )
        assert results["ping"]["received"] == 20, json.dumps(diag)
        assert results["udp"]["received"] == 20 and results["udp"]["size"] == 1200, json.dumps(diag)
        # the LAN host -> the thing: pings 20/20 and 1,200-byte UDP echoes 20/20
        assert _ping(net.lan, thing_omr) == 20
        out = _in(net.lan, sys.executable, "-c", LAN_UDP_CLIENT, thing_omr, str(THING_ECHO),
                  "20", "1200", timeout=60).stdout  # fmt: skip
        assert out.strip() == "20"
        # the mesh-local address stays out of reach, even with a route to it
        ml = ipaddress.IPv6Network(got["addresses"]["ml_eid"] + "/64", strict=False)
        gw_ll = re.search(r"via (fe80::[0-9a-f:]+)", net.lan_routes())
        assert gw_ll is not None
        _run("ip", "-n", net.lan, "-6", "route", "add", str(ml), "via", gw_ll.group(1), "dev",
             LAN_IF)  # fmt: skip
        assert _ping(net.lan, got["addresses"]["ml_eid"], count=3) == 0
        rules = _in(net.gw, "nft", "list", "table", "ip6", "gateway_border_router").stdout
        m = re.search(r"counter packets (\d+) bytes \d+ drop", rules)
        assert m is not None and int(m.group(1)) >= 3, rules
        _run("ip", "-n", net.lan, "-6", "route", "del", str(ml))

        # kill -9: the interface and routes come back, nothing stale, the thing is reached again
        br = stack.procs["border-router"]
        br.proc.send_signal(signal.SIGKILL)
        br.proc.wait(10)
        stack.start("border-router")
        links = _run("ip", "-n", net.gw, "-o", "link", "show").stdout
        assert links.count("wpan0") == 1, links
        wait_until(lambda: _ping(net.lan, thing_omr, count=1) == 1, 90,
                   "the thing reachable again after kill -9")  # fmt: skip
        assert _ping(net.lan, thing_omr, count=5) == 5
        routes = _run("ip", "-n", net.gw, "-6", "route").stdout
        assert routes.count(f"{omr} dev wpan0") == 1, routes

        # stop: the route leaves the LAN host, the interface and the table go
        assert thing.stop() == 0, (tmp_path / "thing.log").read_text()
        thing = None
        stack.stop()
        wait_until(
            lambda: str(omr) not in net.lan_routes(), 10, "the route withdrawn (RA lifetime 0)"
        )
        assert "wpan0" not in _run("ip", "-n", net.gw, "link", "show").stdout
        tables = _in(net.gw, "nft", "list", "tables").stdout
        assert "gateway_border_router" not in tables
    finally:
        if thing is not None:
            thing.stop()
        stack.cleanup()
        echo.kill()
        echo.wait(5)
        assert echo.stdout is not None
        echo.stdout.close()
    log = (tmp_path / "gw" / "border-router.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    time.sleep(0)  # nothing further to wait for
