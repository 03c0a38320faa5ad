"""Border routing in the border router service: the Thread interface, Router Advertisements on
the LAN and the forwarding rules, around :class:`gateway.thread.border.routing.RoutingManager`
(decisions) and :class:`gateway.thread.network.router.RouterCore` (the mesh).

On when ``[border_router] infra_interface`` names the LAN interface. The BR ULA /48 is made on
first start and kept in ``border-routing.json``; the OMR prefix and the route published for the
LAN follow from it (docs/border-routing.md). What the kernel sends into the Thread interface goes
into the mesh; what the mesh sends to the host comes out of it. Routing starts when the LAN
interface is up and stops (a final RA, the Network Data entries withdrawn) when it goes away or
the service stops.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.border_router import linux
from gateway.errors import ParseError, StateError
from gateway.ratelimit import BucketTable
from gateway.runtime.state import JsonState
from gateway.thread.border.routing import (
    PublishPrefixes,
    RoutingManager,
    SendRa,
    SendRs,
    generate_ula_prefix,
    is_valid_ula_prefix,
)
from gateway.thread.network.errors import NotAttached
from gateway.thread.network.netdata import BorderRouterEntry, BorderRouterTlv
from gateway.thread.network.router import RouterCore
from gateway.wire.coap import TMF_PORT
from gateway.wire.ipv6 import PROTO_HOPOPTS, PROTO_ICMPV6, PROTO_UDP, Ipv6Packet

LOG = logging.getLogger(__name__)
Net = ipaddress.IPv6Network
MLE_PORT = 19788
STATE_FILE = "border-routing.json"
# What the LAN may put on the air: at most HOST_BACKLOG frames of the radio's transmit queue (the
# rest stays for commissioning, MLE and the mesh's own traffic), and per destination address a
# burst of HOST_BURST packets, then HOST_RATE a second (the air carries ~20 full-size ones).
HOST_BACKLOG = 256
HOST_RATE = 50.0
HOST_BURST = 32.0


def load_or_create_ula(path: Path) -> Net:
    """The BR ULA /48 kept in the state directory (a new random one when missing or invalid,
    as ``LoadOrGenerateRandomBrUlaPrefix``)."""
    store = JsonState(path, "gateway-border-routing", 1)
    try:
        body = store.load()
    except StateError as exc:
        LOG.warning("border routing state unreadable (%s); making a new ULA prefix", exc.message)
        body = None
    if body is not None:
        try:
            net = Net(str(body["ula_prefix"]))
            if is_valid_ula_prefix(net):
                return net
        except (KeyError, ValueError):
            pass
    net = generate_ula_prefix()
    store.save({"ula_prefix": str(net)})
    return net


class BorderRouting:
    """One border router's routing between the mesh and the LAN (see the module docstring).
    ``changed()`` is called when the core may have frames or events to flush."""

    def __init__(
        self,
        net: RouterCore,
        *,
        lan_if: str,
        thread_if: str,
        state_dir: Path,
        ext_pan_id: bytes,
        now: Callable[[], float],
        changed: Callable[[], None],
        spawn: Callable[[Any, str], object],
        tx_backlog: Callable[[], int] = lambda: 0,
    ) -> None:
        self.net = net
        self.lan_if = lan_if
        self.now = now
        self.changed = changed
        self.spawn = spawn
        self.counters: Counter[str] = Counter()
        self.tx_backlog = tx_backlog
        self._per_dst = BucketTable(HOST_RATE, HOST_BURST, max_keys=1024)
        self.ula = load_or_create_ula(state_dir / STATE_FILE)
        self.tun = linux.ThreadInterface(thread_if, self._from_kernel)
        self.nd = linux.LanNeighborDiscovery(lan_if, self._from_lan)
        self.rm = RoutingManager(self.ula, ext_pan_id)
        self.problems: list[str] = []
        self._rules_key: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._route_on: Net | None = None
        self._lan_open = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """The Thread interface now; the LAN side with :meth:`lan_up`."""
        self.problems = linux.check_sysctls(self.lan_if, fix=True, unreadable_ok=True)
        for p in self.problems:
            LOG.warning("border routing: %s (deploy/sysctl.d/60-gateway.conf sets it)", p)
        await self.tun.open()
        await self._sync()

    async def lan_up(self) -> None:
        """The LAN interface is up: open the ICMPv6 socket and start advertising."""
        if self._lan_open:
            return
        try:
            await self.nd.open()
        except StateError as exc:
            LOG.warning("border routing waits for %s: %s", self.lan_if, exc.message)
            return
        self._lan_open = True
        self.rm.infra_mac = self.nd.mac
        now = self.now()
        self.rm.start(now)
        self.rm.set_role(self.net.role, now)
        self.rm.netdata_changed(self.net.netdata.full, self.net.rloc16, now)
        LOG.info("border routing on %s: OMR prefix %s, on-link prefix %s", self.lan_if,
                 self.rm.omr_prefix, self.rm.onlink_prefix)  # fmt: skip
        self.flush()

    async def lan_down(self) -> None:
        """The LAN interface went away: withdraw (a final RA if it can still be sent)."""
        if not self._lan_open:
            return
        self.rm.stop(self.now())
        self.flush()
        self._lan_open = False
        await self.nd.close()
        LOG.info("border routing stopped: %s is down", self.lan_if)
        await self._sync()

    async def close(self) -> None:
        self._closed = True
        if self._lan_open:
            self.rm.stop(self.now())
            self.flush()
            self._lan_open = False
        await self.nd.close()
        if self._route_on is not None:
            await linux.set_lan_route(self.lan_if, self._route_on, False)
            self._route_on = None
        await linux.remove_forwarding_rules()
        await self.tun.close()

    # -- the core's side ---------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        return self.rm.next_timeout()

    def poll(self, now: float) -> None:
        self.rm.poll(now)

    def netdata_changed(self) -> None:
        self.rm.netdata_changed(self.net.netdata.full, self.net.rloc16, self.now())
        self.spawn(self._sync(), "border-sync")

    def role_changed(self) -> None:
        self.rm.set_role(self.net.role, self.now())

    def to_host(self, packets: list[Ipv6Packet]) -> int:
        """Packets from the mesh to the kernel; the number dropped."""
        dropped = 0
        for p in packets:
            if not self.tun.write(p.to_bytes()):
                dropped += 1
        return dropped

    def flush(self) -> None:
        """Move the routing manager's actions: RAs and RSs to the LAN, entries into the
        leader's Network Data."""
        for a in self.rm.actions():
            if isinstance(a, SendRa):
                self.nd.send_ra(a.payload)
            elif isinstance(a, SendRs):
                self.nd.send_rs(a.payload)
            elif isinstance(a, PublishPrefixes):
                self.net.set_own_prefixes(a.prefixes, self.now())
                self.changed()
        onlink = self.rm.lan_onlink_prefix
        if onlink != self._route_on and not self._closed:
            self.spawn(self._set_route(onlink), "border-route")

    async def _set_route(self, onlink: Net | None) -> None:
        old, self._route_on = self._route_on, onlink
        if old is not None and old != onlink:
            await linux.set_lan_route(self.lan_if, old, False)
        if onlink is not None:
            await linux.set_lan_route(self.lan_if, onlink, True)

    async def _sync(self) -> None:
        """The Thread interface's addresses and the forwarding rules after a change."""
        if self._closed:
            return
        addrs = [(a, 64) for a in self.net.addresses.unicast()] if self.net.attached else []
        await self.tun.set_addresses(addrs)
        on_mesh = sorted(str(n) for n in _on_mesh_prefixes(self.net))
        ml = str(Net((bytes(self.net.ml_prefix[:8]) + bytes(8), 64)))
        key = (tuple(on_mesh), tuple(sorted({*on_mesh, ml})))
        if key != self._rules_key:
            self._rules_key = key
            await linux.apply_forwarding_rules(
                self.tun.name, self.lan_if, [Net(n) for n in key[0]], [Net(n) for n in key[1]]
            )

    # -- packets ---------------------------------------------------------------------------------

    def _from_kernel(self, data: bytes) -> None:
        try:
            pkt = Ipv6Packet.from_bytes(data)
        except ParseError:
            self.counters["from_host_malformed"] += 1
            return
        reason = _refuse_from_host(pkt)
        if reason is not None:
            self.counters[f"from_host_{reason}"] += 1
            return
        if self.tx_backlog() >= HOST_BACKLOG:
            self.counters["from_host_queue_full"] += 1
            return
        if not self._per_dst.get(pkt.dst).take(self.now()):
            self.counters["from_host_rate_limited"] += 1
            return
        try:
            verdict = self.net.send_ip6(pkt, self.now())
        except NotAttached:
            self.counters["from_host_not_attached"] += 1
            return
        self.counters[f"from_host_{verdict}"] += 1
        self.changed()

    def _from_lan(self, src: ipaddress.IPv6Address, body: bytes, hop_limit: int) -> None:
        self.rm.nd_received(src, body, self.now(), hop_limit=hop_limit)
        self.flush()

    def describe(self) -> dict[str, Any]:
        d = self.rm.describe(self.now())
        d.update(
            {
                "lan_interface": self.lan_if,
                "lan_up": self._lan_open,
                "thread_interface": self.tun.name,
                "thread_addresses": sorted(f"{a}/{p}" for a, p in self.tun.addresses),
                "ula_prefix": str(self.ula),
                "problems": list(self.problems),
                "packets": {
                    **{f"tun_{k}": v for k, v in self.tun.counters.items()},
                    **self.counters,
                    **{f"lan_{k}": v for k, v in self.nd.counters.items()},
                },
            }
        )
        return d


def _refuse_from_host(pkt: Ipv6Packet) -> str | None:
    """Why a packet from the kernel does not go into the mesh (``None``: it does): the
    kernel's own MLD and Neighbor Discovery chatter on a NOARP point-to-point link, and the
    mesh's own control ports (an untrusted origin, as OpenThread's ``Ip6::SendRaw``)."""
    if pkt.next_header == PROTO_HOPOPTS:
        return "hop_by_hop"  # MLDv2 reports to ff02::16
    if pkt.src.is_loopback or pkt.dst.is_loopback or pkt.dst.is_unspecified:
        return "loopback"
    if pkt.next_header == PROTO_ICMPV6 and pkt.payload[:1] and 130 <= pkt.payload[0] <= 143:
        return "nd_mld"
    if pkt.next_header == PROTO_UDP and len(pkt.payload) >= 4:
        dport = int.from_bytes(pkt.payload[2:4], "big")
        if dport in (TMF_PORT, MLE_PORT):
            return "control_port"
    return None


def _on_mesh_prefixes(net: RouterCore) -> list[Net]:
    out: list[Net] = []
    for p in net.netdata.full.prefixes:
        for sub in p.sub_tlvs:
            if isinstance(sub, BorderRouterTlv) and any(
                e.flags & BorderRouterEntry.ON_MESH for e in sub.entries
            ):
                out.append(p.network)
                break
    return out
