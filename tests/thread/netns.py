"""Two network namespaces for border routing runs: ``gw`` (the gateway, and on its loopback the
emulated air, so every radio node -- the reference thing, OpenThread simulation nodes -- runs
inside it too) and ``lan`` (a LAN host), joined by a veth pair. No LAN router: the gateway's own
on-link prefix (its PIO) gives the LAN host an address, its RIO the route to the OMR prefix.

Used by the OpenThread interop test of border routing and by the border routing benchmark; the
names carry a per-run tag so that runs side by side do not meet, and :meth:`Net.down` deletes
them whatever happened."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

GW_IF, LAN_IF = "gw-eth0", "lan-eth0"
PING_TIME = re.compile(r"time=([0-9.]+) ms")

# a UDP echo on the LAN host: prints "ready", then sends every datagram back where it came from
LAN_ECHO_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)
"""

# an mDNS browser on the LAN host (python-zeroconf on interface argv[1], service type argv[2]):
# a ready line, then one JSON line per service added, updated or removed, stamped with the time
LAN_BROWSER = """
import json, socket, sys, threading, time
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf
zc = Zeroconf(interfaces=[socket.if_nametoindex(sys.argv[1])], ip_version=IPVersion.V6Only)
def seen(zeroconf, service_type, name, state_change):
    doc = {"event": state_change.name.lower(), "name": name, "t": time.time()}
    if state_change is not ServiceStateChange.Removed:
        info = zeroconf.get_service_info(service_type, name, timeout=5000)
        if info is None:
            return
        doc.update(server=info.server, port=info.port,
                   addresses=info.parsed_scoped_addresses())
    print(json.dumps(doc), flush=True)
ServiceBrowser(zc, sys.argv[2], handlers=[seen])
print(json.dumps({"event": "ready"}), flush=True)
threading.Event().wait()
"""


def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stdout}{r.stderr}")
    return r


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here (``None``: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN, nftables)"
    for tool in ("ip", "nft", "ping"):
        if shutil.which(tool) is None:
            return f"needs {tool} (iproute2, nftables, iputils-ping)"
    probe = f"gwprobe-{os.getpid()}"
    r = run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"'ip netns add' is not permitted here: {r.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class Net:
    tag: str
    kind: str = "br"  # part of the names, so that different users of this module differ
    gw: str = field(init=False)
    lan: str = field(init=False)

    def __post_init__(self) -> None:
        self.gw, self.lan = f"gw{self.kind}-{self.tag}", f"lan{self.kind}-{self.tag}"

    def exec_prefix(self, ns: str | None = None) -> list[str]:
        return ["ip", "netns", "exec", ns or self.gw]

    def up(self) -> None:
        run("ip", "netns", "add", self.gw)
        run("ip", "netns", "add", self.lan)
        run("ip", "link", "add", GW_IF, "netns", self.gw, "type", "veth", "peer", "name", LAN_IF,
            "netns", self.lan)  # fmt: skip
        for ns, dev in ((self.gw, GW_IF), (self.lan, LAN_IF)):
            for conf in ("all", "default", dev):
                self.run_in(ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", dev, "up")
        self.run_in(
            self.lan, "sysctl", "-qw", f"net.ipv6.conf.{LAN_IF}.accept_ra_rt_info_max_plen=64"
        )

    def down(self) -> None:
        for ns in (self.gw, self.lan):
            run("ip", "netns", "del", ns, check=False)

    def gone(self) -> bool:
        listed = run("ip", "netns", "list").stdout.split()
        return self.gw not in listed and self.lan not in listed

    def run_in(self, ns: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *args, **kw)

    def lan_routes(self) -> str:
        return run("ip", "-n", self.lan, "-6", "route").stdout

    def lan_address(self) -> str | None:
        """The LAN host's address from the gateway's PIO, once it is no longer tentative."""
        out = run("ip", "-n", self.lan, "-6", "-o", "addr", "show", "dev", LAN_IF, "scope",
                  "global").stdout  # fmt: skip
        m = re.search(r"inet6 ([0-9a-f:]+)/64", out)
        return m.group(1) if m and "tentative" not in out else None

    def lan_ready(self) -> bool:
        """The LAN host has a route through the gateway (its RIO) and an address (its PIO)."""
        return " via fe80::" in self.lan_routes() and self.lan_address() is not None

    def ping(self, addr: str, count: int = 20, size: int = 56,
             interval: float = 0.2) -> tuple[int, list[float]]:  # fmt: skip
        """``ping`` from the LAN host: (replies, round trips in ms)."""
        out = self.run_in(self.lan, "ping", "-c", str(count), "-i", f"{interval:g}", "-W", "5",
                          "-s", str(size), addr, check=False,
                          timeout=count * (interval + 5) + 30).stdout  # fmt: skip
        m = re.search(r"(\d+) received", out)
        return (int(m.group(1)) if m else 0), [float(t) for t in PING_TIME.findall(out)]


@contextlib.contextmanager
def namespaces(kind: str) -> Iterator[Net]:
    """A new pair of namespaces, up, named with ``kind`` and this process; deleted on the way
    out whatever happened (and checked to be gone)."""
    n = Net(str(os.getpid()), kind=kind)
    try:
        n.up()
        yield n
    finally:
        n.down()
        assert n.gone()


def namespace_fixture(kind: str) -> Iterator[Net]:
    """A module fixture's body: :func:`namespaces` for this run, skipped with the reason when
    namespaces cannot be used."""
    import pytest

    why = netns_unavailable()
    if why is not None:
        pytest.skip(why)
    with namespaces(kind) as n:
        yield n


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)
