"""Border routing between the Thread network and the LAN, sans-IO, after OpenThread's Routing
Manager (``src/core/border_router/routing_manager.cpp``; facts in
``docs/border-routing.md``).

:class:`RoutingManager` decides, from the Network Data, the Router Advertisements heard on the
LAN and time:

* the **OMR prefix**: the BR ULA /48 (random, kept by the caller) with subnet 1 as a /64,
  published with low preference and flags ``paos`` (``r`` too while ``::/0`` is published),
  after a random 250-3750 ms, and withdrawn when another border router's OMR prefix is
  favored (higher preference, or equal preference and numerically smaller);
* the **on-link prefix** ``fd`` + ExtPANID[0..4] + ExtPANID[6..7] /64, advertised in a PIO
  when the LAN has no eligible on-link prefix (or has this same one) once router discovery is
  over, and deprecated when the LAN has an eligible one that is not larger;
* the **external route** it publishes for the LAN: ``::/0`` when the LAN has a non-ULA on-link
  prefix (or a default/non-ULA route while the favored OMR prefix is infrastructure-derived),
  ``fc00::/7`` when it has a ULA on-link prefix or the gateway advertises its own, else none;
* the **Router Advertisements** it sends: Router Lifetime 0, the SNAC-router flag, a RIO per
  OMR prefix (1800 s, medium preference as a router or leader, low as a child), the PIO while
  advertising; three 16 +- 2 s apart, then every 180 +- 15 s, an answer 250 +- 250 ms after a
  Router Solicitation, never two within 3 s; a removed RIO stays 300 s at low preference, then
  goes once with lifetime 0; a final RA on stop withdraws every RIO and deprecates the PIO.

It returns :class:`SendRa`, :class:`SendRs` and :class:`PublishPrefixes` actions; the border
router service moves them to a raw ICMPv6 socket and to the Leader's Network Data. Everything a
LAN host sends is bounded (16 routers, 64 prefixes) and a malformed message is counted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from drivers.errors import InvalidArgument
from gateway.errors import ParseError
from gateway.thread.network.netdata import (
    BorderRouterEntry,
    BorderRouterTlv,
    HasRouteTlv,
    NetworkData,
    OwnPrefix,
)
from gateway.wire.nd6 import (
    PREFERENCE_LOW,
    PREFERENCE_MEDIUM,
    RA_FLAG_SNAC_ROUTER,
    PrefixInfo,
    RouteInfo,
    RouterAdvert,
    RouterSolicit,
    parse_nd,
)

__all__ = [
    "ULA_ROUTE",
    "PublishPrefixes",
    "RoutingManager",
    "SendRa",
    "SendRs",
    "generate_ula_prefix",
    "onlink_prefix_for",
]

Net = ipaddress.IPv6Network
Addr = ipaddress.IPv6Address

ULA_ROUTE: Final = Net("fc00::/7")
DEFAULT_ROUTE: Final = Net("::/0")
OMR_SUBNET_ID: Final = 1
OMR_LIFETIME: Final = 1800  # RIO lifetime (kDefaultOmrPrefixLifetime)
ONLINK_LIFETIME: Final = 1800  # PIO valid = preferred (kDefaultOnLinkPrefixLifetime)
FAVORED_MIN_PREFERRED: Final = 1800  # an eligible LAN on-link prefix's preferred lifetime
RIO_DEPRECATION: Final = 300.0  # a removed RIO stays this long at low preference
OMR_ADD_DELAY: Final = (0.250, 3.750)
INITIAL_RA_COUNT: Final = 3
INITIAL_RA_INTERVAL: Final = (16.0, 2.0)
RA_INTERVAL: Final = (180.0, 15.0)
MIN_RA_GAP: Final = 3.0
RS_REPLY_DELAY: Final = (0.0, 0.5)
EVALUATION_DELAY: Final = (2.0, 4.0)
RS_COUNT: Final = 3
RS_INTERVAL: Final = 4.0
RS_FIRST_DELAY: Final = 1.0
DISCOVERY_TAIL: Final = 1.0  # discovery ends this long after the last RS
MAX_ROUTERS: Final = 16
MAX_PREFIXES: Final = 64
OWN_RA_HASHES: Final = 5

# Has Route entry flags: preference bits 7..6 (medium 00), AdvPIO bit 4
ROUTE_FLAG_ADV_PIO: Final = 1 << 4
_ROUTE_PRF = {1: 0b01, 0: 0b00, -1: 0b11}


def generate_ula_prefix(rng: random.Random | secrets.SystemRandom | None = None) -> Net:
    """A new random BR ULA /48 (``fd`` + a 40-bit global ID, RFC 4193 §3.2)."""
    r = rng or secrets.SystemRandom()
    gid = r.getrandbits(40).to_bytes(5, "big")
    return Net((b"\xfd" + gid + bytes(10), 48))


def is_valid_ula_prefix(net: Net) -> bool:
    """``IsValidBrUlaPrefix``: a /48 whose first byte is ``fd``."""
    return net.prefixlen == 48 and net.network_address.packed[0] == 0xFD


def omr_prefix_for(ula: Net) -> Net:
    raw = bytearray(ula.network_address.packed)
    raw[6:8] = OMR_SUBNET_ID.to_bytes(2, "big")
    return Net((bytes(raw[:8]) + bytes(8), 64))


def onlink_prefix_for(ext_pan_id: bytes) -> Net:
    """``OnLinkPrefixManager::GenerateLocalPrefix``: fd | xpanid[0..4] | xpanid[6..7], /64."""
    if len(ext_pan_id) != 8:
        raise InvalidArgument("an extended PAN ID is 8 bytes")
    return Net((b"\xfd" + ext_pan_id[0:5] + ext_pan_id[6:8] + bytes(8), 64))


def _is_ula(net: Net) -> bool:
    return net.network_address.packed[0] & 0xFE == 0xFC


@dataclass(frozen=True, slots=True)
class SendRa:
    """Send this ICMPv6 body to ff02::1 on the LAN interface (hop limit 255)."""

    payload: bytes
    final: bool = False


@dataclass(frozen=True, slots=True)
class SendRs:
    """Send this Router Solicitation to ff02::2 on the LAN interface (hop limit 255)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class PublishPrefixes:
    """The gateway's own Network Data entries are now these (empty: none)."""

    prefixes: tuple[OwnPrefix, ...]


Action = SendRa | SendRs | PublishPrefixes


@dataclass
class _LanPrefix:
    valid_until: float
    preferred_until: float
    on_link: bool
    autonomous: bool
    pd: bool


@dataclass
class _LanRouter:
    last_heard: float
    default_until: float = 0.0
    prefixes: dict[Net, _LanPrefix] = field(default_factory=dict)
    routes: dict[Net, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _OmrCandidate:
    prefix: Net
    preference: int
    rloc16: int

    def favored_over(self, other: _OmrCandidate) -> bool:
        if self.preference != other.preference:
            return self.preference > other.preference
        return int(self.prefix.network_address) < int(other.prefix.network_address)


class RoutingManager:
    """One border router's routing decisions (see the module docstring)."""

    def __init__(
        self,
        ula_prefix: Net,
        ext_pan_id: bytes,
        *,
        rng: random.Random | secrets.SystemRandom | None = None,
        infra_mac: bytes | None = None,
    ) -> None:
        if not is_valid_ula_prefix(ula_prefix):
            raise InvalidArgument("the BR ULA prefix must be a /48 starting with fd")
        self.ula_prefix = ula_prefix
        self.omr_prefix = omr_prefix_for(ula_prefix)
        self.onlink_prefix = onlink_prefix_for(ext_pan_id)
        self.rng = rng or secrets.SystemRandom()
        self.infra_mac = infra_mac
        self.counters: Counter[str] = Counter()
        self.running = False
        self.role = "leader"
        self._actions: list[Action] = []
        self._routers: dict[Addr, _LanRouter] = {}
        self._own_hashes: deque[bytes] = deque(maxlen=OWN_RA_HASHES)
        # router discovery (our own RSs)
        self._rs_times: list[float] = []
        self._discovery_end: float | None = None
        # OMR prefix
        self._omr_state = "not_added"  # not_added | to_add | added
        self._omr_add_at: float | None = None
        self._favored_omr: _OmrCandidate | None = None
        self._netdata_omrs: list[_OmrCandidate] = []
        self._own_rloc16: int | None = None
        self._netdata_has_ula_route = False
        # on-link prefix
        self._onlink_state = "idle"  # idle | publishing | advertising | deprecating
        self._onlink_expire: float = 0.0
        self._favored_onlink: Net | None = None
        # external route
        self._route: Net | None = None
        # RAs
        self._ra_count = 0
        self._last_ra: float | None = None
        self._next_ra: float | None = None
        self._evaluate_at: float | None = None
        self._rios: dict[Net, int] = {}  # advertised RIOs: prefix -> preference
        self._old_rios: dict[Net, float] = {}  # removed RIOs: prefix -> deprecation end
        self._published: tuple[OwnPrefix, ...] = ()
        self._advertised: tuple[tuple[tuple[Net, int], ...], str] = ((), "")

    # -- inputs ----------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The LAN interface is up and the Thread network attached: begin router discovery
        (3 RSs, 4 s apart, the first within 1 s), then advertise."""
        if self.running:
            return
        self.running = True
        first = now + self.rng.uniform(0, RS_FIRST_DELAY)
        self._rs_times = [first + i * RS_INTERVAL for i in range(RS_COUNT)]
        self._discovery_end = self._rs_times[-1] + DISCOVERY_TAIL
        self._ra_count = 0
        self._next_ra = None
        self._advertised = ((), "")
        self._evaluate(now)

    def stop(self, now: float) -> None:
        """Withdraw everything: a final RA (every RIO with lifetime 0, the PIO deprecated with
        a valid lifetime of 0) and no Network Data entries."""
        if not self.running:
            return
        # every RIO advertised, and our own OMR prefix even when this run has not advertised it
        # yet (after a restart the LAN may still hold the route from the run before)
        withdrawn = dict.fromkeys((self.omr_prefix, *self._rios, *self._old_rios))
        final_rios = [RouteInfo(p, 0, PREFERENCE_LOW) for p in withdrawn]
        pios: list[PrefixInfo] = []
        if self._onlink_state in ("advertising", "deprecating"):
            pios.append(PrefixInfo(self.onlink_prefix, 0, 0))
        if final_rios or pios:
            self._send_ra(now, tuple(pios), tuple(final_rios), final=True)
        self.running = False
        self._rios.clear()
        self._old_rios.clear()
        self._omr_state = "not_added"
        self._omr_add_at = None
        self._onlink_state = "idle"
        self._route = None
        self._routers.clear()
        self._rs_times = []
        self._discovery_end = None
        self._next_ra = self._evaluate_at = None
        self._publish()

    def set_role(self, role: str, now: float) -> None:
        """The gateway's Thread role: RIOs are medium preference as a router or leader, low as
        a child."""
        if role != self.role:
            self.role = role
            self._schedule_evaluation(now)

    def netdata_changed(self, netdata: NetworkData, own_rloc16: int, now: float) -> None:
        """The leader's Network Data changed: learn the OMR prefixes and ULA route in it."""
        self._own_rloc16 = own_rloc16
        omrs: list[_OmrCandidate] = []
        has_ula = False
        for p in netdata.prefixes:
            net = p.network
            for sub in p.sub_tlvs:
                if isinstance(sub, BorderRouterTlv):
                    for e in sub.entries:
                        preferred = bool(e.flags & BorderRouterEntry.PREFERRED)
                        if preferred and _valid_omr(net, e.flags, sub.stable):
                            omrs.append(_OmrCandidate(net, e.preference, e.rloc16))
                elif isinstance(sub, HasRouteTlv) and sub.entries and ULA_ROUTE.subnet_of(net):
                    has_ula = True  # fc00::/7 or a covering route
        self._netdata_omrs = omrs
        self._netdata_has_ula_route = has_ula
        if self.running:
            if self._onlink_state == "publishing" and has_ula:
                self._onlink_state = "advertising"
            self._schedule_evaluation(now)

    def rs_received(self, now: float) -> None:
        """A Router Solicitation arrived on the LAN: an RA in 250 +- 250 ms (after our own
        discovery, and never within 3 s of the last)."""
        if not self.running:
            return
        self.counters["rs_rx"] += 1
        if self._discovery_end is not None and now < self._discovery_end:
            return
        due = now + self.rng.uniform(*RS_REPLY_DELAY)
        if self._last_ra is not None:
            due = max(due, self._last_ra + MIN_RA_GAP)
        if self._next_ra is None or due < self._next_ra:
            self._next_ra = due

    def nd_received(self, src: Addr, body: bytes, now: float, *, hop_limit: int = 255) -> None:
        """An ICMPv6 message from the LAN (RS or RA; others are ignored). An RA must come from
        a link-local source with hop limit 255 (RFC 4861 §6.1.2)."""
        if not self.running:
            return
        if hop_limit != 255 or not src.is_link_local:
            self.counters["nd_invalid"] += 1
            return
        try:
            msg = parse_nd(body)
        except ParseError:
            self.counters["nd_malformed"] += 1
            return
        if isinstance(msg, RouterSolicit):
            self.rs_received(now)
        elif isinstance(msg, RouterAdvert):
            if hashlib.sha256(body).digest() in self._own_hashes:
                self.counters["ra_own"] += 1
                return
            self._ra_received(src, msg, now)

    def _ra_received(self, src: Addr, ra: RouterAdvert, now: float) -> None:
        self.counters["ra_rx"] += 1
        r = self._routers.get(src)
        if r is None:
            if len(self._routers) >= MAX_ROUTERS:
                self.counters["ra_table_full"] += 1
                return
            r = self._routers[src] = _LanRouter(now)
        r.last_heard = now
        r.default_until = now + ra.router_lifetime
        for pio in ra.prefixes:
            net = pio.prefix
            if net.is_link_local or net.is_multicast or net == self.onlink_prefix:
                continue  # a peer BR's copy of our own on-link prefix is disregarded
            if not pio.on_link:
                continue
            if pio.valid_lifetime == 0:
                r.prefixes.pop(net, None)
                continue
            if net not in r.prefixes and self._prefix_count() >= MAX_PREFIXES:
                self.counters["ra_prefixes_full"] += 1
                continue
            r.prefixes[net] = _LanPrefix(
                now + pio.valid_lifetime,
                now + min(pio.preferred_lifetime, pio.valid_lifetime),
                pio.on_link,
                pio.autonomous,
                bool(pio.other_flags & 0x10),
            )
        own_omrs = {c.prefix for c in self._netdata_omrs} | {self.omr_prefix}
        for rio in ra.routes:
            net = rio.prefix
            if net.is_link_local or net.is_multicast or net in own_omrs:
                continue
            if rio.lifetime == 0:
                r.routes.pop(net, None)
                continue
            if net not in r.routes and self._prefix_count() >= MAX_PREFIXES:
                self.counters["ra_prefixes_full"] += 1
                continue
            r.routes[net] = now + rio.lifetime
        self._schedule_evaluation(now)

    def _prefix_count(self) -> int:
        return sum(len(r.prefixes) + len(r.routes) for r in self._routers.values())

    # -- time ------------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        if not self.running:
            return None
        times = [t for t in (self._next_ra, self._evaluate_at, self._omr_add_at) if t is not None]
        times += self._rs_times[:1]
        if self._discovery_end is not None:
            times.append(self._discovery_end)
        if self._onlink_state == "deprecating":
            times.append(self._onlink_expire)
        times += self._old_rios.values()
        expiries = [
            t
            for r in self._routers.values()
            for t in (
                *(p.valid_until for p in r.prefixes.values()),
                *(p.preferred_until for p in r.prefixes.values()),
                *r.routes.values(),
            )
        ]
        if expiries:
            times.append(min(expiries))
        return min(times) if times else None

    def poll(self, now: float) -> None:
        if not self.running:
            return
        while self._rs_times and self._rs_times[0] <= now:
            self._rs_times.pop(0)
            self._actions.append(SendRs(RouterSolicit(self.infra_mac).to_bytes()))
            self.counters["rs_tx"] += 1
        evaluate = False
        if self._discovery_end is not None and now >= self._discovery_end:
            self._discovery_end = None
            evaluate = True
        if self._omr_add_at is not None and now >= self._omr_add_at:
            self._omr_add_at = None
            if self._omr_state == "to_add":
                self._omr_state = "added"
                evaluate = True
        if self._evaluate_at is not None and now >= self._evaluate_at:
            self._evaluate_at = None
            evaluate = True
        if self._onlink_state == "deprecating" and now >= self._onlink_expire:
            self._onlink_state = "idle"
            evaluate = True
        for net, until in list(self._old_rios.items()):
            if now >= until:
                del self._old_rios[net]
                self._send_ra(now, (), (RouteInfo(net, 0, PREFERENCE_LOW),))
        if self._expire_lan(now):
            evaluate = True
        if evaluate:
            self._evaluate(now)
        if self._next_ra is not None and now >= self._next_ra:
            self._next_ra = None
            self._advertise(now)

    def _expire_lan(self, now: float) -> bool:
        changed = False
        for src, r in list(self._routers.items()):
            for net, p in list(r.prefixes.items()):
                if p.valid_until <= now:
                    del r.prefixes[net]
                    changed = True
            for net, until in list(r.routes.items()):
                if until <= now:
                    del r.routes[net]
                    changed = True
            if not r.prefixes and not r.routes and r.default_until <= now:
                del self._routers[src]
        return changed

    def _schedule_evaluation(self, now: float) -> None:
        due = now + self.rng.uniform(*EVALUATION_DELAY)
        if self._evaluate_at is None or due < self._evaluate_at:
            self._evaluate_at = due

    # -- decisions -------------------------------------------------------------------------------

    def _favored_lan_onlink(self, now: float) -> Net | None:
        """``RxRaTracker::GetFavoredOnLinkPrefix``: the numerically smallest eligible one."""
        best: Net | None = None
        for r in self._routers.values():
            for net, p in r.prefixes.items():
                eligible = (
                    p.on_link
                    and net.prefixlen == 64
                    and (p.autonomous or p.pd)
                    and p.preferred_until - now >= FAVORED_MIN_PREFERRED - 1
                )
                if eligible and (
                    best is None or int(net.network_address) < int(best.network_address)
                ):
                    best = net
        return best

    def _lan_has(self, now: float, *, ula: bool, onlink: bool) -> bool:
        for r in self._routers.values():
            if onlink:
                for net, p in r.prefixes.items():
                    if p.valid_until > now and _is_ula(net) == ula and net.prefixlen == 64:
                        return True
            else:
                if not ula and r.default_until > now:
                    return True
                for net in r.routes:
                    if not _is_ula(net):
                        return True
        return False

    def _evaluate(self, now: float) -> None:
        """``EvaluateRoutingPolicy``: OMR, on-link, route; then an RA soon."""
        if not self.running:
            return
        self._evaluate_omr(now)
        if self._discovery_end is None:
            self._evaluate_onlink(now)
        self._evaluate_route(now)
        self._publish()
        if self._discovery_end is None:
            self._schedule_ra(now)

    def _local_omr(self) -> _OmrCandidate:
        return _OmrCandidate(self.omr_prefix, PREFERENCE_LOW, self._own_rloc16 or 0)

    def _evaluate_omr(self, now: float) -> None:
        favored: _OmrCandidate | None = None
        for c in self._netdata_omrs:
            if favored is None or c.favored_over(favored):
                favored = c
        local = self._local_omr()
        if favored is not None and favored.prefix == local.prefix:
            self._omr_state = "added"
            self._omr_add_at = None
        elif favored is None:
            if self._omr_state == "not_added":
                self._omr_state = "to_add"
                self._omr_add_at = now + self.rng.uniform(*OMR_ADD_DELAY)
        elif favored.preference < local.preference:
            self._omr_state = "added"
            self._omr_add_at = None
        else:
            self._omr_state = "not_added"
            self._omr_add_at = None
        if self._omr_state == "added":
            self._favored_omr = favored if favored is not None else local
        else:
            self._favored_omr = favored

    def _evaluate_onlink(self, now: float) -> None:
        ail = self._favored_lan_onlink(now)
        if ail is None or ail == self.onlink_prefix:
            if self._onlink_state in ("idle", "deprecating"):
                self._onlink_state = "advertising" if self._netdata_has_ula_route else "publishing"
            self._onlink_expire = now + ONLINK_LIFETIME
            self._favored_onlink = self.onlink_prefix
            return
        smaller = int(self.onlink_prefix.network_address) < int(ail.network_address)
        if self._onlink_state in ("publishing", "advertising") and not smaller:
            self._onlink_state = "deprecating"
            self._onlink_expire = now + ONLINK_LIFETIME
        self._favored_onlink = ail

    def _evaluate_route(self, now: float) -> None:
        infra_derived = self._favored_omr is not None and self._favored_omr.preference >= 0
        if infra_derived and self._lan_has(now, ula=False, onlink=False):
            route: Net | None = DEFAULT_ROUTE
        elif self._lan_has(now, ula=False, onlink=True):
            route = DEFAULT_ROUTE
        elif self._lan_has(now, ula=True, onlink=True) or self._onlink_state != "idle":
            route = ULA_ROUTE
        else:
            route = None
        self._route = route

    def _publish(self) -> None:
        want: list[OwnPrefix] = []
        if self.running and self._omr_state == "added":
            flags = (
                BorderRouterEntry.PREFERRED
                | BorderRouterEntry.SLAAC
                | BorderRouterEntry.ON_MESH
                | (BorderRouterEntry.DEFAULT_ROUTE if self._route == DEFAULT_ROUTE else 0)
                | (0b11 << 14)  # low preference
            )
            want.append(OwnPrefix(self.omr_prefix, br_flags=flags))
        if self.running and self._route is not None:
            rflags = _ROUTE_PRF[PREFERENCE_MEDIUM] << 6
            if self._onlink_state != "idle":  # UpdateAdvPioFlags(state != kIdle)
                rflags |= ROUTE_FLAG_ADV_PIO
            want.append(OwnPrefix(self._route, route_flags=rflags))
        new = tuple(want)
        if new != self._published:
            self._published = new
            self._actions.append(PublishPrefixes(new))

    # -- Router Advertisements -------------------------------------------------------------------

    def _schedule_ra(self, now: float) -> None:
        """After an evaluation: the next RA, at once for the first or a change, else on the
        beacon schedule (never within 3 s of the last)."""
        if self._ra_count == 0 or self._ra_content() != self._advertised:
            due = now
        elif self._next_ra is not None:
            return
        else:
            base, jitter = INITIAL_RA_INTERVAL if self._ra_count < INITIAL_RA_COUNT else RA_INTERVAL
            due = (self._last_ra or now) + self.rng.uniform(base - jitter, base + jitter)
        if self._last_ra is not None:
            due = max(due, self._last_ra + MIN_RA_GAP)
        if self._next_ra is None or due < self._next_ra:
            self._next_ra = due

    def _ra_content(self) -> tuple[tuple[tuple[Net, int], ...], str]:
        return tuple(sorted(self._rio_set().items())), self._onlink_state

    def _rio_set(self) -> dict[Net, int]:
        prf = PREFERENCE_MEDIUM if self.role in ("router", "leader") else PREFERENCE_LOW
        rios: dict[Net, int] = {}
        if self._omr_state == "added" and any(
            c.prefix == self.omr_prefix for c in self._netdata_omrs
        ):
            rios[self.omr_prefix] = prf
        if self._favored_omr is not None and self._favored_omr.prefix != self.omr_prefix:
            rios[self._favored_omr.prefix] = prf
        for c in self._netdata_omrs:
            rios.setdefault(c.prefix, prf)
        return rios

    def _advertise(self, now: float) -> None:
        rios = self._rio_set()
        for net in self._rios:
            if net not in rios:
                self._old_rios[net] = now + RIO_DEPRECATION
        for net in rios:
            self._old_rios.pop(net, None)
        self._rios = rios
        routes = [RouteInfo(n, OMR_LIFETIME, p) for n, p in rios.items()]
        routes += [
            RouteInfo(n, max(0, int(until - now)), PREFERENCE_LOW)
            for n, until in self._old_rios.items()
        ]
        pios: list[PrefixInfo] = []
        if self._onlink_state == "advertising":
            pios.append(PrefixInfo(self.onlink_prefix, ONLINK_LIFETIME, ONLINK_LIFETIME))
        elif self._onlink_state == "deprecating":
            left = max(0, int(self._onlink_expire - now))
            pios.append(PrefixInfo(self.onlink_prefix, left, 0))
        self._send_ra(now, tuple(pios), tuple(routes))
        self._advertised = self._ra_content()
        self._ra_count += 1
        base, jitter = INITIAL_RA_INTERVAL if self._ra_count < INITIAL_RA_COUNT else RA_INTERVAL
        self._next_ra = now + self.rng.uniform(base - jitter, base + jitter)

    def _send_ra(
        self, now: float, pios: tuple[PrefixInfo, ...], rios: tuple[RouteInfo, ...], *,
        final: bool = False,
    ) -> None:  # fmt: skip
        ra = RouterAdvert(
            flags=RA_FLAG_SNAC_ROUTER, router_lifetime=0, prefixes=pios, routes=rios,
            slla=self.infra_mac,
        )  # fmt: skip
        body = ra.to_bytes()
        self._own_hashes.append(hashlib.sha256(body).digest())
        self._actions.append(SendRa(body, final))
        self._last_ra = now
        self.counters["ra_tx"] += 1

    # -- outputs ---------------------------------------------------------------------------------

    @property
    def lan_onlink_prefix(self) -> Net | None:
        """The gateway's own on-link prefix while its PIO is on the LAN (advertised or being
        deprecated): the shell keeps a route for it on the LAN interface."""
        if self.running and self._onlink_state in ("advertising", "deprecating"):
            return self.onlink_prefix
        return None

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def describe(self, now: float) -> dict[str, Any]:
        """What ``gwctl thread prefixes`` shows."""
        fav = self._favored_omr
        return {
            "running": self.running,
            "omr": {
                "local": str(self.omr_prefix),
                "state": self._omr_state,
                "favored": None if fav is None else str(fav.prefix),
                "favored_preference": None if fav is None else _prf_name(fav.preference),
            },
            "on_link": {
                "local": str(self.onlink_prefix),
                "state": self._onlink_state,
                "favored": None if self._favored_onlink is None else str(self._favored_onlink),
            },
            "route": None if self._route is None else str(self._route),
            "router_discovery": "done" if self._discovery_end is None else "running",
            "lan_routers": [
                {
                    "address": str(a),
                    "age_s": round(now - r.last_heard, 1),
                    "default_route": r.default_until > now,
                    "on_link_prefixes": sorted(str(n) for n in r.prefixes),
                    "routes": sorted(str(n) for n in r.routes),
                }
                for a, r in self._routers.items()
            ],
            "ras_sent": self._ra_count,
            "counters": dict(self.counters),
        }


def _prf_name(p: int) -> str:
    return {1: "high", 0: "medium", -1: "low"}.get(p, "medium")


def _valid_omr(net: Net, flags: int, stable: bool) -> bool:
    """``IsValidOmrPrefix``: a /64, not link-local or multicast, on-mesh + SLAAC + stable."""
    on_mesh = bool(flags & BorderRouterEntry.ON_MESH)
    slaac = bool(flags & BorderRouterEntry.SLAAC)
    return (
        net.prefixlen == 64
        and not net.is_link_local
        and not net.is_multicast
        and on_mesh
        and slaac
        and stable
    )
