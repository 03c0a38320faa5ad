"""The uplink follower against a real kernel: a private network namespace per test with veth
pairs, changed with iproute2 (``ip -n NS ...``, independent of pyroute2) while :class:`Uplink`
follows it through a netlink socket opened inside that namespace.

Needs root (CI runs as root); skipped with the reason when ``ip netns add`` is not permitted.
Every namespace is named uniquely per run and deleted in teardown, failure or not; deleting it
removes the veth pairs in it. No packet leaves the namespaces.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.runtime.uplink import (
    CHANGE_ADDRESSES,
    CHANGE_INTERFACE,
    CHANGE_LINK,
    CHANGE_ROUTE,
    Uplink,
    UplinkChange,
    UplinkState,
)

pytestmark = pytest.mark.timeout(60)

_names = itertools.count()
WAIT = 5.0  # seconds for the kernel's notification plus the 200 ms debounce


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=20)


@pytest.fixture
def netns() -> Iterator[str]:
    if shutil.which("ip") is None:
        pytest.skip("iproute2 ('ip') is not installed")
    name = f"gwup-{os.getpid()}-{next(_names)}"
    made = _run("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"'ip netns add' is not permitted here: {made.stderr.strip()}")
    try:
        # no duplicate address detection: addresses are usable at once (no tentative delay)
        for conf in ("all", "default"):
            done = _run(
                "ip",
                "netns",
                "exec",
                name,
                "sh",
                "-c",
                f"echo 0 > /proc/sys/net/ipv6/conf/{conf}/accept_dad",
            )
            assert done.returncode == 0, done.stderr
        yield name
    finally:
        _run("ip", "netns", "del", name)
        assert name not in _run("ip", "netns", "list").stdout


async def ip(ns: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "-n",
        ns,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"ip {' '.join(args)}: {err.decode().strip()}"
    return out.decode()


async def veth(ns: str, name: str, *addresses: str) -> int:
    """A veth pair NAME <-> NAMEp, both up, with addresses on NAME; returns NAME's ifindex."""
    await ip(ns, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    await ip(ns, "link", "set", f"{name}p", "up")
    await ip(ns, "link", "set", name, "up")
    for address in addresses:
        await ip(ns, "addr", "add", address, "dev", name)
    return await ifindex(ns, name)


async def ifindex(ns: str, name: str) -> int:
    (info,) = json.loads(await ip(ns, "-j", "link", "show", name))
    index: int = info["ifindex"]
    return index


async def settle(up: Uplink, pred: Callable[[UplinkState], bool]) -> UplinkState:
    return await up.wait_for(pred, timeout=WAIT)


def has(state: UplinkState, text: str) -> bool:
    return ipaddress.ip_interface(text) in state.addresses


class Recorder:
    def __init__(self, up: Uplink) -> None:
        self.changes: list[UplinkChange] = []
        up.subscribe(self.changes.append)

    def aspects(self) -> set[str]:
        return {aspect for change in self.changes for aspect in change.changed}


async def test_finds_the_default_route_interface_and_reports_addresses(netns: str) -> None:
    await veth(netns, "b0", "203.0.113.10/24")  # no default route: not the uplink
    a0 = await veth(netns, "a0", "192.0.2.10/24", "2001:db8:a::10/64")
    await ip(netns, "route", "add", "default", "via", "192.0.2.1", "dev", "a0")
    started = time.monotonic()
    async with Uplink(netns=netns) as up:
        assert time.monotonic() - started < 3
        state = up.state
        assert (state.ifname, state.ifindex) == ("a0", a0)
        assert state.oper_up and state.operstate == "up" and state.usable
        assert state.default_route_v4 and not state.default_route_v6
        assert state.ipv4 == (ipaddress.IPv4Interface("192.0.2.10/24"),)
        assert ipaddress.IPv6Interface("2001:db8:a::10/64") == state.ipv6[0]
        assert any(a.ip.is_link_local for a in state.ipv6)  # the kernel's own fe80::/64
        json.dumps(up.status())

        rec = Recorder(up)
        await ip(netns, "addr", "add", "198.51.100.10/24", "dev", "a0")
        await settle(up, lambda s: has(s, "198.51.100.10/24"))
        await ip(netns, "addr", "add", "2001:db8:b::10/64", "dev", "a0")
        await settle(up, lambda s: has(s, "2001:db8:b::10/64"))
        await ip(netns, "addr", "del", "198.51.100.10/24", "dev", "a0")
        state = await settle(up, lambda s: not has(s, "198.51.100.10/24"))
        assert has(state, "192.0.2.10/24") and state.default_route_v4
        await ip(netns, "addr", "add", "203.0.113.11/24", "dev", "b0")  # not the uplink
        await asyncio.sleep(0.4)
        assert rec.changes and all(c.changed == {CHANGE_ADDRESSES} for c in rec.changes)
        assert not has(up.state, "203.0.113.11/24")
        assert up.status()["monitor"]["overruns"] == 0


async def test_link_down_and_up_are_reported(netns: str) -> None:
    await veth(netns, "a0", "192.0.2.10/24")
    await ip(netns, "route", "add", "default", "via", "192.0.2.1", "dev", "a0")
    async with Uplink(netns=netns) as up:
        assert up.state.ifname == "a0" and up.state.usable
        rec = Recorder(up)
        await ip(netns, "link", "set", "a0", "down")
        state = await settle(up, lambda s: not s.oper_up)
        # the kernel flushed the IPv4 default route silently; the uplink stays a0
        assert state.ifname == "a0" and state.operstate == "down" and not state.usable
        state = await settle(up, lambda s: not s.has_default_route)
        assert state.ipv4 == (ipaddress.IPv4Interface("192.0.2.10/24"),)  # IPv4 stays
        await ip(netns, "link", "set", "a0", "up")
        await settle(up, lambda s: s.oper_up and s.usable)
        await ip(netns, "route", "add", "default", "via", "192.0.2.1", "dev", "a0")
        await settle(up, lambda s: s.default_route_v4)
        assert {CHANGE_LINK, CHANGE_ROUTE} <= rec.aspects()
        assert CHANGE_INTERFACE not in rec.aspects()
        # the peer going down takes the carrier away: "lowerlayerdown"
        await ip(netns, "link", "set", "a0p", "down")
        state = await settle(up, lambda s: not s.oper_up)
        assert state.operstate == "lowerlayerdown"


async def test_moving_the_default_route_switches_the_auto_uplink(netns: str) -> None:
    a0 = await veth(netns, "a0", "192.0.2.10/24", "2001:db8:a::10/64")
    b0 = await veth(netns, "b0", "198.51.100.10/24")
    await ip(netns, "route", "add", "default", "via", "192.0.2.1", "dev", "a0")
    async with Uplink(netns=netns) as up, Uplink("a0", netns=netns) as fixed:
        assert up.state.ifindex == a0 and fixed.state.ifindex == a0
        rec = Recorder(up)
        await ip(netns, "route", "replace", "default", "via", "198.51.100.1", "dev", "b0")
        state = await settle(up, lambda s: s.ifname == "b0")
        assert state.ifindex == b0 and state.default_route_v4 and state.usable
        assert state.ipv4 == (ipaddress.IPv4Interface("198.51.100.10/24"),)
        assert any(CHANGE_INTERFACE in c.changed and c.rebind for c in rec.changes)
        # the fixed uplink stays on a0 and only loses its default route
        await settle(fixed, lambda s: not s.has_default_route)
        assert fixed.state.ifindex == a0
        # IPv4 default route gone, an IPv6 one on a0: back to a0
        await ip(netns, "route", "del", "default")
        await ip(netns, "-6", "route", "add", "default", "via", "2001:db8:a::1", "dev", "a0")
        state = await settle(up, lambda s: s.ifname == "a0")
        assert state.default_route_v6 and not state.default_route_v4
        await settle(fixed, lambda s: s.default_route_v6)
        # two default routes: the lower metric wins
        await ip(netns, "route", "add", "default", "via", "192.0.2.1", "dev", "a0", "metric", "200")
        await ip(
            netns, "route", "add", "default", "via", "198.51.100.1", "dev", "b0", "metric", "100"
        )
        await settle(up, lambda s: s.ifname == "b0")


async def test_a_fixed_name_that_does_not_exist_yet_is_picked_up(netns: str) -> None:
    async with Uplink("c0", netns=netns) as up:
        assert up.state == UplinkState("c0", ifname="c0") and not up.state.present
        assert up.status()["present"] is False
        await ip(netns, "link", "add", "c0", "type", "veth", "peer", "name", "c0p")
        state = await settle(up, lambda s: s.present)
        assert state.ifindex == await ifindex(netns, "c0") and not state.oper_up
        await ip(netns, "link", "set", "c0p", "up")
        await ip(netns, "link", "set", "c0", "up")
        await ip(netns, "addr", "add", "192.0.2.20/24", "dev", "c0")
        state = await settle(up, lambda s: s.usable and has(s, "192.0.2.20/24"))
        assert not state.has_default_route
        await ip(netns, "link", "del", "c0")
        await settle(up, lambda s: not s.present)
        await ip(netns, "link", "add", "c0", "type", "veth", "peer", "name", "c0p")
        state = await settle(up, lambda s: s.present)
        assert state.ifindex == await ifindex(netns, "c0")


async def test_receive_buffer_overrun_is_recovered_by_a_full_dump(netns: str) -> None:
    await veth(netns, "a0", "192.0.2.10/24")
    await ip(netns, "route", "add", "default", "via", "192.0.2.1", "dev", "a0")
    batch = "".join(f"addr add 10.{i // 200}.{i % 200}.1/32 dev a0\n" for i in range(300))
    # a tiny receive buffer (the kernel doubles it and enforces its minimum)
    async with Uplink(netns=netns, rcvbuf=4096) as up:
        flood = subprocess.Popen(
            ["ip", "-n", netns, "-batch", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = flood.communicate(batch, timeout=20)  # blocks the loop on purpose: no reads
        assert flood.returncode == 0, err
        state = await settle(up, lambda s: len(s.ipv4) == 301)
        assert state.default_route_v4
        assert up.counters["overruns"] >= 1 and up.counters["resyncs"] >= 2
        assert up.status()["monitor"]["running"]
        # and it keeps following after the recovery
        await ip(netns, "addr", "del", "10.0.0.1/32", "dev", "a0")
        await settle(up, lambda s: len(s.ipv4) == 300)


async def test_status_is_plain_json(netns: str) -> None:
    await veth(netns, "a0", "192.0.2.10/24")
    async with Uplink("a0", netns=netns) as up:
        status: dict[str, Any] = json.loads(json.dumps(up.status()))
        assert status["ifname"] == "a0" and status["ipv4"] == ["192.0.2.10/24"]
        assert status["usable"] is True and status["has_default_route"] is False
        assert abs(status["since"] - time.time()) < 30
