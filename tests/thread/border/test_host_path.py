"""The host side of border routing without a kernel: what the Thread interface hands to the
mesh (the shell's filters and its bounds under a LAN flood), driven straight into
:class:`gateway.border_router.border_routing.BorderRouting` with a real network core."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from gateway.border_router.border_routing import HOST_BACKLOG, HOST_BURST, BorderRouting
from gateway.thread.network.events import NetFrame
from gateway.thread.network.ip6 import Echo, echo_packet
from gateway.thread.network.netdata import BorderRouterEntry, OwnPrefix
from gateway.wire.ipv6 import Ipv6Packet
from tests.thread.network.world import NetWorld

Addr = ipaddress.IPv6Address
OMR = ipaddress.IPv6Network("fd11:22:33:1::/64")
LAN_HOST = Addr("fd00:abcd::5")


def _setup(tmp_path: Path) -> tuple[NetWorld, BorderRouting, list[NetFrame], list[Addr]]:
    world = NetWorld(seed=3)
    world.add_child(rx_on=True, timeout=60)
    world.add_child(rx_on=False, timeout=60, poll_period=1)
    world.run_until(lambda: len(world.attached()) == 2, 10)
    flags = BorderRouterEntry.PREFERRED | BorderRouterEntry.SLAAC | BorderRouterEntry.ON_MESH
    world.parent.set_own_prefixes([OwnPrefix(OMR, br_flags=flags)], world.now)
    world.run(10)
    kids = [n.core.slaac[0] for n in world.nodes]
    queue: list[NetFrame] = []
    border = BorderRouting(
        world.parent, lan_if="lan0", thread_if="wpan9", state_dir=tmp_path,
        ext_pan_id=bytes(8), now=lambda: world.now, changed=lambda: None,
        spawn=lambda coro, name: coro.close(), tx_backlog=lambda: len(queue),
    )  # fmt: skip
    return world, border, queue, kids


def test_a_lan_flood_is_bounded_per_destination_and_in_the_transmit_queue(tmp_path: Path) -> None:
    world, border, queue, kids = _setup(tmp_path)
    rx_on = kids[0]
    # 10,000 echo requests to one child in one instant: a burst passes, the rest is refused
    for i in range(10_000):
        pkt = echo_packet(LAN_HOST, rx_on, Echo(True, 1, i, b"flood"))
        border._from_kernel(pkt.to_bytes())
        queue.extend(world.parent.frames_to_send())  # the radio does not drain meanwhile
    assert border.counters["from_host_sent"] == int(HOST_BURST)
    assert border.counters["from_host_rate_limited"] == 10_000 - int(HOST_BURST)
    # with the transmit queue holding its share of LAN traffic, nothing more from the LAN goes in
    world.run(60)  # the buckets refill
    queue[:] = queue[:HOST_BACKLOG] + [queue[0]] * max(0, HOST_BACKLOG - len(queue))
    before = border.counters["from_host_sent"]
    for i in range(100):
        border._from_kernel(echo_packet(LAN_HOST, kids[1], Echo(True, 2, i, b"x")).to_bytes())
    assert border.counters["from_host_sent"] == before
    assert border.counters["from_host_queue_full"] == 100
    queue.clear()
    border._from_kernel(echo_packet(LAN_HOST, kids[1], Echo(True, 2, 999, b"x")).to_bytes())
    assert border.counters["from_host_sent"] == before + 1
    # the core still talks to its children: commissioning and MLE never wait behind the LAN
    world.run(5)
    assert len(world.attached()) == 2


def test_the_kernels_own_chatter_and_control_ports_stay_out(tmp_path: Path) -> None:
    _world, border, _queue, kids = _setup(tmp_path)
    mld = Ipv6Packet(Addr("fe80::1"), Addr("ff02::16"), 0, bytes(8) + b"\x8f" + bytes(7))
    ns = Ipv6Packet(Addr("fe80::1"), Addr("ff02::1:ff00:1"), 58, bytes((135, 0)) + bytes(22))
    tmf = Ipv6Packet.udp(LAN_HOST, kids[0], 5000, 61631, b"tmf from the host")
    mle = Ipv6Packet.udp(LAN_HOST, kids[0], 19788, 19788, b"mle from the host")
    for pkt in (mld, ns, tmf, mle):
        border._from_kernel(pkt.to_bytes())
    border._from_kernel(b"\x60garbage")
    c = border.counters
    assert c["from_host_hop_by_hop"] == 1 and c["from_host_nd_mld"] == 1
    assert c["from_host_control_port"] == 2 and c["from_host_malformed"] == 1
    assert c["from_host_sent"] == 0
