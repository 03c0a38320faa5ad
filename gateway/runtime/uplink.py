"""The gateway's uplink (its WLAN/LAN interface), followed through rtnetlink.

The border agent binds its sockets and announces ``_meshcop._udp`` on the uplink, and the cloud
link runs over it. When the uplink's addresses or link state change (DHCP renew, router reboot,
WLAN roaming, a cable swapped, the default route moving to another interface), they must follow
without a restart. :class:`Uplink` keeps a current :class:`UplinkState` and tells subscribers about
every change. See ``docs/uplink.md``.

Two layers:

* A sans-IO layer: :func:`parse_message` turns one decoded rtnetlink message (a pyroute2 message
  or a plain mapping of the same shape) into a :class:`LinkEvent`, :class:`AddrEvent` or
  :class:`RouteEvent`; :class:`NetView` applies events (mirroring the kernel's silent side effects)
  and :func:`compute_state` derives the :class:`UplinkState`. No sockets, no asyncio.
* :class:`Uplink`, the asyncio component: a netlink socket bound to the link, address and route
  multicast groups (pyroute2 ``AsyncIPRoute``), a second socket for full dumps, bursts debounced,
  a full resynchronisation after a receive-buffer overrun (``ENOBUFS``) or a socket error, after
  changes whose side effects the kernel does not announce, and periodically.

Kernel constants below are from the Linux UAPI headers ``include/uapi/linux/if.h``, ``if_addr.h``,
``rtnetlink.h`` and ``netlink.h``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import ipaddress
import logging
import math
import socket
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, ClassVar, Final, Protocol

from gateway.errors import ConfigError, GatewayError

LOG = logging.getLogger(__name__)

AUTO: Final = "auto"

# --- kernel constants (Linux UAPI) ------------------------------------------------------------

AF_INET: Final = 2
AF_INET6: Final = 10

# include/uapi/linux/rtnetlink.h: message types
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
_EVENT_NAMES: Final = {
    "RTM_NEWLINK": RTM_NEWLINK,
    "RTM_DELLINK": RTM_DELLINK,
    "RTM_NEWADDR": RTM_NEWADDR,
    "RTM_DELADDR": RTM_DELADDR,
    "RTM_NEWROUTE": RTM_NEWROUTE,
    "RTM_DELROUTE": RTM_DELROUTE,
}

# rtnetlink.h: multicast groups (the legacy RTMGRP_* bit masks accepted by bind())
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV4_IFADDR: Final = 0x10
RTMGRP_IPV4_ROUTE: Final = 0x40
RTMGRP_IPV6_IFADDR: Final = 0x100
RTMGRP_IPV6_ROUTE: Final = 0x400
GROUPS: Final = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
NETLINK_ROUTE: Final = 0

# rtnetlink.h: routing tables, route types, scopes
RT_TABLE_MAIN: Final = 254
RTN_UNICAST: Final = 1
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_LINK: Final = 253

# netlink.h: header flags
NLM_F_DUMP_INTR: Final = 0x10
NLM_F_REPLACE: Final = 0x100

# if.h: net_device_flags
IFF_UP: Final = 0x1
IFF_LOOPBACK: Final = 0x8
IFF_RUNNING: Final = 0x40

# if.h: RFC 2863 operational states (IF_OPER_*)
OPERSTATES: Final = (
    "unknown",
    "notpresent",
    "down",
    "lowerlayerdown",
    "testing",
    "dormant",
    "up",
)

# if_addr.h: address flags
IFA_F_DADFAILED: Final = 0x08
IFA_F_DEPRECATED: Final = 0x20
IFA_F_TENTATIVE: Final = 0x40
_IFA_F_UNUSABLE: Final = IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class UplinkError(GatewayError):
    """The uplink cannot be followed (netlink unavailable)."""

    code = "UPL001"
    default_hint = (
        "The gateway follows its uplink through netlink: the service needs AF_NETLINK in "
        "RestrictAddressFamilies=. Check '[network] uplink' in the configuration."
    )


def validate_uplink_name(configured: str) -> str:
    """``"auto"`` or a Linux interface name (1-15 bytes, no '/', ':' or whitespace)."""
    if configured == AUTO:
        return configured
    raw = configured.encode(errors="replace")
    if (
        not 1 <= len(raw) <= 15
        or configured in (".", "..")
        or any(c in configured for c in "/:")
        or any(c.isspace() for c in configured)
    ):
        raise ConfigError(
            f"[network] uplink must be 'auto' or an interface name, not {configured!r}"
        )
    return configured


# --- sans-IO: messages to values --------------------------------------------------------------


@dataclass(frozen=True)
class LinkEvent:
    """RTM_NEWLINK / RTM_DELLINK. ``None`` fields were absent (a partial update keeps them)."""

    deleted: bool
    index: int
    name: str | None = None
    flags: int | None = None
    operstate: str | None = None


@dataclass(frozen=True)
class AddrEvent:
    """RTM_NEWADDR / RTM_DELADDR."""

    deleted: bool
    index: int
    address: IPInterface
    flags: int = 0  # IFA_F_* (the 32-bit IFA_FLAGS attribute when present)
    scope: int = RT_SCOPE_UNIVERSE


@dataclass(frozen=True)
class RouteInfo:
    family: int
    table: int
    dst_len: int
    oifs: tuple[int, ...]  # RTA_OIF, or every nexthop's interface of a multipath route
    gateway: str | None = None
    priority: int = 0  # the metric
    tos: int = 0
    type: int = RTN_UNICAST

    @property
    def is_default(self) -> bool:
        return self.dst_len == 0

    def key(self) -> tuple[Any, ...]:
        return (
            self.family,
            self.table,
            self.tos,
            self.priority,
            self.type,
            self.oifs,
            self.gateway,
        )

    def replace_key(self) -> tuple[int, int, int, int]:
        return (self.family, self.table, self.tos, self.priority)


@dataclass(frozen=True)
class RouteEvent:
    """RTM_NEWROUTE / RTM_DELROUTE. ``replace`` is NLM_F_REPLACE on a notification."""

    deleted: bool
    route: RouteInfo
    replace: bool = False


NetEvent = LinkEvent | AddrEvent | RouteEvent


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _get(msg: Any, key: str) -> Any:
    """A field of the message. pyroute2 messages are dicts whose ``get`` searches attributes
    too (slow); the plain dict lookup is the field."""
    if isinstance(msg, dict):
        return dict.get(msg, key)
    try:
        return msg.get(key)
    except Exception:  # noqa: BLE001 - a foreign object: treat as absent
        return None


def _attrs(msg: Any, wanted: frozenset[str]) -> dict[str, Any]:
    """The wanted netlink attributes by name (first occurrence wins). Only these are decoded:
    pyroute2 decodes an attribute's value when it is read, and a link message carries dozens."""
    out: dict[str, Any] = {}
    raw = _get(msg, "attrs")
    if not isinstance(raw, list | tuple):
        return out
    for item in raw:
        try:
            name = item[0]
            if name in wanted and name not in out:
                out[name] = item[1]
        except Exception:  # noqa: BLE001, S112 - a malformed attribute is skipped
            continue
    return out


_LINK_ATTRS: Final = frozenset({"IFLA_IFNAME", "IFLA_OPERSTATE"})
_ADDR_ATTRS: Final = frozenset({"IFA_LOCAL", "IFA_ADDRESS", "IFA_FLAGS"})
_ROUTE_ATTRS: Final = frozenset(
    {"RTA_TABLE", "RTA_GATEWAY", "RTA_PRIORITY", "RTA_OIF", "RTA_MULTIPATH"}
)


def _msg_type(msg: Any) -> int | None:
    header = _get(msg, "header")
    if isinstance(header, Mapping):
        kind = _int(header.get("type"))
        if kind is not None:
            return kind
    event = _get(msg, "event")
    return _EVENT_NAMES.get(event) if isinstance(event, str) else None


def _header_flags(msg: Any) -> int:
    header = _get(msg, "header")
    if isinstance(header, Mapping):
        return _int(header.get("flags")) or 0
    return 0


def _operstate(value: Any) -> str | None:
    if isinstance(value, str):
        name = value.lower()
        return name if name in OPERSTATES else "unknown"
    number = _int(value)
    if number is None:
        return None
    return OPERSTATES[number] if 0 <= number < len(OPERSTATES) else "unknown"


def _parse_link(msg: Any, deleted: bool) -> LinkEvent | None:
    index = _int(_get(msg, "index"))
    if index is None or index <= 0:
        return None
    attrs = _attrs(msg, _LINK_ATTRS)
    name = attrs.get("IFLA_IFNAME")
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        name = None
    flags = _int(_get(msg, "flags"))
    return LinkEvent(deleted, index, name, flags, _operstate(attrs.get("IFLA_OPERSTATE")))


def _parse_addr(msg: Any, deleted: bool) -> AddrEvent | None:
    family = _get(msg, "family")
    index = _int(_get(msg, "index"))
    prefixlen = _int(_get(msg, "prefixlen"))
    if family not in (AF_INET, AF_INET6) or index is None or index <= 0 or prefixlen is None:
        return None
    attrs = _attrs(msg, _ADDR_ATTRS)
    # IFA_LOCAL is the local address; IFA_ADDRESS is the peer on point-to-point links and the
    # local address otherwise (if_addr.h)
    text = attrs.get("IFA_LOCAL") or attrs.get("IFA_ADDRESS")
    if not isinstance(text, str):
        return None
    try:
        address: IPInterface
        if family == AF_INET:
            address = ipaddress.IPv4Interface(f"{text}/{prefixlen}")
        else:
            address = ipaddress.IPv6Interface(f"{text}/{prefixlen}")
    except ValueError:
        return None
    flags = _int(attrs.get("IFA_FLAGS"))
    if flags is None:
        flags = _int(_get(msg, "flags")) or 0
    scope = _int(_get(msg, "scope"))
    return AddrEvent(deleted, index, address, flags, RT_SCOPE_UNIVERSE if scope is None else scope)


def _oifs(msg: Any, attrs: Mapping[str, Any]) -> tuple[int, ...]:
    oif = _int(attrs.get("RTA_OIF"))
    if oif is not None:
        return (oif,)
    hops = attrs.get("RTA_MULTIPATH")
    found: list[int] = []
    if isinstance(hops, list | tuple):
        for hop in hops[:64]:
            hop_oif = _int(_get(hop, "oif"))
            if hop_oif is not None and hop_oif > 0 and hop_oif not in found:
                found.append(hop_oif)
    return tuple(sorted(found))


def _parse_route(msg: Any, deleted: bool) -> RouteEvent | None:
    family = _get(msg, "family")
    dst_len = _int(_get(msg, "dst_len"))
    if family not in (AF_INET, AF_INET6) or dst_len is None:
        return None
    attrs = _attrs(msg, _ROUTE_ATTRS)
    table = _int(attrs.get("RTA_TABLE"))
    if table is None:
        table = _int(_get(msg, "table")) or 0
    gateway = attrs.get("RTA_GATEWAY")
    route = RouteInfo(
        family=family,
        table=table,
        dst_len=dst_len,
        oifs=_oifs(msg, attrs),
        gateway=gateway if isinstance(gateway, str) else None,
        priority=_int(attrs.get("RTA_PRIORITY")) or 0,
        tos=_int(_get(msg, "tos")) or 0,
        type=_int(_get(msg, "type")) or 0,
    )
    replace_flag = bool(_header_flags(msg) & NLM_F_REPLACE)
    return RouteEvent(deleted, route, replace=replace_flag and not deleted)


def parse_message(msg: Any) -> NetEvent | None:
    """One decoded rtnetlink message as an event, or ``None`` when it is not one we follow.

    Total: a message of another type, or missing or ill-typed fields, give ``None``, never an
    exception.
    """
    kind = _msg_type(msg)
    if kind in (RTM_NEWLINK, RTM_DELLINK):
        return _parse_link(msg, kind == RTM_DELLINK)
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        return _parse_addr(msg, kind == RTM_DELADDR)
    if kind in (RTM_NEWROUTE, RTM_DELROUTE):
        return _parse_route(msg, kind == RTM_DELROUTE)
    return None


# --- sans-IO: the kernel's state as far as the uplink needs it --------------------------------


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    flags: int = 0
    operstate: str = "unknown"

    @property
    def admin_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def oper_up(self) -> bool:
        """Administratively up and operational (RFC 2863 "up"; "unknown" counts when the kernel
        reports IFF_RUNNING, as for drivers without carrier reporting)."""
        if not self.admin_up:
            return False
        if self.operstate == "up":
            return True
        return self.operstate == "unknown" and bool(self.flags & IFF_RUNNING)

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)


@dataclass(frozen=True)
class AddrInfo:
    address: IPInterface
    flags: int = 0
    scope: int = RT_SCOPE_UNIVERSE

    @property
    def usable(self) -> bool:
        """Global or link-local, and neither tentative, deprecated nor failed DAD."""
        return self.scope in (RT_SCOPE_UNIVERSE, RT_SCOPE_LINK) and not self.flags & _IFA_F_UNUSABLE


class NetView:
    """Links, addresses and default routes, maintained from rtnetlink events.

    Besides applying what the kernel announces, it mirrors the IPv4 side effects the kernel does
    not announce (``net/ipv4/fib_frontend.c``): when an interface goes administratively down or
    loses its last IPv4 address, its IPv4 routes are flushed without RTM_DELROUTE. Such changes
    also set :attr:`resync_wanted`, so that the owner confirms the result with a full dump.
    """

    def __init__(self) -> None:
        self.links: dict[int, LinkInfo] = {}
        self.addrs: dict[int, dict[tuple[int, IPInterface], AddrInfo]] = {}
        self.routes: dict[tuple[Any, ...], RouteInfo] = {}
        self.resync_wanted = False

    @classmethod
    def from_messages(cls, messages: Iterable[Any]) -> NetView:
        """A view built from a full dump (links, addresses, routes)."""
        view = cls()
        for msg in messages:
            event = parse_message(msg)
            if event is not None:
                view.apply(event)
        view.resync_wanted = False
        return view

    def feed(self, msg: Any) -> bool:
        event = parse_message(msg)
        return event is not None and self.apply(event)

    def apply(self, event: NetEvent) -> bool:
        """Apply one event; True when something the uplink depends on changed."""
        if isinstance(event, LinkEvent):
            return self._apply_link(event)
        if isinstance(event, AddrEvent):
            return self._apply_addr(event)
        return self._apply_route(event)

    def _drop_routes(self, index: int, family: int | None) -> bool:
        doomed = [
            key
            for key, route in self.routes.items()
            if index in route.oifs and (family is None or route.family == family)
        ]
        for key in doomed:
            del self.routes[key]
        return bool(doomed)

    def _apply_link(self, event: LinkEvent) -> bool:
        if event.deleted:
            changed = self.links.pop(event.index, None) is not None
            changed |= bool(self.addrs.pop(event.index, None))
            changed |= self._drop_routes(event.index, None)
            return changed
        old = self.links.get(event.index)
        new = LinkInfo(
            index=event.index,
            name=event.name if event.name is not None else (old.name if old else ""),
            flags=event.flags if event.flags is not None else (old.flags if old else 0),
            operstate=(
                event.operstate
                if event.operstate is not None
                else (old.operstate if old else "unknown")
            ),
        )
        if new == old:
            return False
        self.links[event.index] = new
        if old is not None and (old.admin_up, old.operstate) != (new.admin_up, new.operstate):
            if old.admin_up and not new.admin_up:
                self._drop_routes(event.index, AF_INET)
            # IPv6 drops addresses and routes on the way down, with notifications; confirm
            self.resync_wanted = True
        return True

    def _apply_addr(self, event: AddrEvent) -> bool:
        table = self.addrs.setdefault(event.index, {})
        key = (event.address.version, event.address)
        if event.deleted:
            removed = table.pop(key, None) is not None
            if not table:
                del self.addrs[event.index]
            if event.address.version == 4:
                if not any(version == 4 for version, _ in table):
                    removed |= self._drop_routes(event.index, AF_INET)
                # routes using the address as preferred source go silently too; confirm
                self.resync_wanted = True
            return removed
        info = AddrInfo(event.address, event.flags, event.scope)
        if table.get(key) == info:
            return False
        table[key] = info
        return True

    def _apply_route(self, event: RouteEvent) -> bool:
        route = event.route
        if not route.is_default:
            return False
        if event.deleted:
            return self.routes.pop(route.key(), None) is not None
        changed = False
        if event.replace:
            for key in [
                k for k, r in self.routes.items() if r.replace_key() == route.replace_key()
            ]:
                del self.routes[key]
                changed = True
        if self.routes.get(route.key()) != route:
            self.routes[route.key()] = route
            changed = True
        return changed

    # ---- queries

    def link_by_name(self, name: str) -> LinkInfo | None:
        for link in self.links.values():
            if link.name == name:
                return link
        return None

    def default_routes(self, index: int) -> list[RouteInfo]:
        """Usable default routes of the main table through the interface."""
        return [
            r
            for r in self.routes.values()
            if index in r.oifs and r.table == RT_TABLE_MAIN and r.type == RTN_UNICAST
        ]

    def addresses(self, index: int) -> list[AddrInfo]:
        return list(self.addrs.get(index, {}).values())


def select_uplink(view: NetView, configured: str, previous: int | None = None) -> int | None:
    """The interface index of the uplink, or None.

    A fixed name selects that interface when it exists. ``"auto"`` selects the interface holding
    a default route of the main table: operationally up first, then one with an IPv4 default
    route (lowest metric), then one with an IPv6 default route (lowest metric), then the lowest
    index. When no interface holds a default route, the previous uplink is kept while it exists
    (a router reboot must not tear down the border agent).
    """
    if configured != AUTO:
        link = view.link_by_name(configured)
        return link.index if link is not None else None
    best: tuple[Any, ...] | None = None
    best_index: int | None = None
    for index, link in view.links.items():
        if link.loopback:
            continue
        routes = view.default_routes(index)
        if not routes:
            continue
        v4 = [r.priority for r in routes if r.family == AF_INET]
        v6 = [r.priority for r in routes if r.family == AF_INET6]
        rank = (
            not link.oper_up,
            not v4,
            min(v4, default=math.inf),
            not v6,
            min(v6, default=math.inf),
            index,
        )
        if best is None or rank < best:
            best, best_index = rank, index
    if best_index is None and previous is not None and previous in view.links:
        return previous
    return best_index


def _address_order(address: IPInterface) -> tuple[bool, IPInterface]:
    return (address.ip.is_link_local, address)


@dataclass(frozen=True)
class UplinkState:
    """What the services need to know about the uplink. Equality ignores ``since``."""

    configured: str
    ifname: str | None = None
    ifindex: int | None = None  # None: no such interface (yet)
    oper_up: bool = False
    operstate: str = "absent"
    ipv4: tuple[ipaddress.IPv4Interface, ...] = ()
    ipv6: tuple[ipaddress.IPv6Interface, ...] = ()  # link-local ones need ifindex as scope id
    default_route_v4: bool = False
    default_route_v6: bool = False
    since: float = field(default=0.0, compare=False)  # wall-clock time of the last change

    @property
    def present(self) -> bool:
        return self.ifindex is not None

    @property
    def has_default_route(self) -> bool:
        return self.default_route_v4 or self.default_route_v6

    @property
    def addresses(self) -> tuple[IPInterface, ...]:
        return (*self.ipv4, *self.ipv6)

    @property
    def usable(self) -> bool:
        """Present, operationally up and holding at least one usable address."""
        return self.present and self.oper_up and bool(self.ipv4 or self.ipv6)

    def as_dict(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "ifname": self.ifname,
            "ifindex": self.ifindex,
            "present": self.present,
            "oper_up": self.oper_up,
            "operstate": self.operstate,
            "ipv4": [str(a) for a in self.ipv4],
            "ipv6": [str(a) for a in self.ipv6],
            "has_default_route": self.has_default_route,
            "default_route_v4": self.default_route_v4,
            "default_route_v6": self.default_route_v6,
            "usable": self.usable,
            "since": round(self.since, 3),
        }

    def describe(self) -> str:
        if not self.present:
            return f"{self.ifname} (absent)" if self.ifname else "none"
        routes = "/".join(
            f for f, on in (("IPv4", self.default_route_v4), ("IPv6", self.default_route_v6)) if on
        )
        addrs = ", ".join(str(a) for a in self.addresses) or "no address"
        return (
            f"{self.ifname} (index {self.ifindex}) {self.operstate}, {addrs}, "
            f"{'default route ' + routes if routes else 'no default route'}"
        )


def compute_state(
    view: NetView, configured: str, previous: int | None = None, since: float = 0.0
) -> UplinkState:
    """The uplink's state as the view shows it (see :func:`select_uplink`)."""
    index = select_uplink(view, configured, previous)
    link = view.links.get(index) if index is not None else None
    if link is None:
        return UplinkState(
            configured, ifname=None if configured == AUTO else configured, since=since
        )
    usable = [a.address for a in view.addresses(link.index) if a.usable]
    routes = view.default_routes(link.index)
    return UplinkState(
        configured=configured,
        ifname=link.name,
        ifindex=link.index,
        oper_up=link.oper_up,
        operstate=link.operstate,
        ipv4=tuple(
            sorted(
                (a for a in usable if isinstance(a, ipaddress.IPv4Interface)), key=_address_order
            )
        ),
        ipv6=tuple(
            sorted(
                (a for a in usable if isinstance(a, ipaddress.IPv6Interface)), key=_address_order
            )
        ),
        default_route_v4=any(r.family == AF_INET for r in routes),
        default_route_v6=any(r.family == AF_INET6 for r in routes),
        since=since,
    )


CHANGE_INTERFACE: Final = "interface"
CHANGE_LINK: Final = "link"
CHANGE_ADDRESSES: Final = "addresses"
CHANGE_ROUTE: Final = "route"


def diff(old: UplinkState, new: UplinkState) -> frozenset[str]:
    """Which aspects differ: "interface", "link", "addresses", "route"."""
    out = set()
    if (old.ifname, old.ifindex) != (new.ifname, new.ifindex):
        out.add(CHANGE_INTERFACE)
    if (old.oper_up, old.operstate) != (new.oper_up, new.operstate):
        out.add(CHANGE_LINK)
    if (old.ipv4, old.ipv6) != (new.ipv4, new.ipv6):
        out.add(CHANGE_ADDRESSES)
    if (old.default_route_v4, old.default_route_v6) != (new.default_route_v4, new.default_route_v6):
        out.add(CHANGE_ROUTE)
    return frozenset(out)


@dataclass(frozen=True)
class UplinkChange:
    """One notification: the state before, the state now, and what changed in between."""

    old: UplinkState
    new: UplinkState
    changed: frozenset[str]

    @property
    def rebind(self) -> bool:
        """Sockets bound to the uplink's addresses or interface must be re-opened."""
        return bool(self.changed & {CHANGE_INTERFACE, CHANGE_ADDRESSES})

    @property
    def lost_addresses(self) -> frozenset[IPInterface]:
        """Addresses the uplink had before and has no longer."""
        return frozenset(self.old.addresses) - frozenset(self.new.addresses)

    @property
    def reconnect(self) -> bool:
        """Connections over the uplink may have broken and can be re-established now: the
        uplink is usable and it is another interface, or its link or default route went away
        (even if only for a moment), or it lost an address."""
        if not self.new.usable:
            return False
        outage = self.changed & {CHANGE_INTERFACE, CHANGE_LINK, CHANGE_ROUTE}
        return bool(outage or self.lost_addresses)


# --- the netlink side -------------------------------------------------------------------------


class NetlinkBackend(Protocol):
    """What :class:`Uplink` needs from netlink; errors are raised as :class:`OSError`."""

    async def subscribe(self) -> None:
        """(Re)open the event socket bound to :data:`GROUPS`; events queue from now on."""

    async def receive(self) -> Sequence[Any]:
        """The messages of the next datagram on the event socket."""

    async def dump(self) -> Sequence[Any]:
        """Every link, address and route (on a socket of its own)."""

    async def close(self) -> None: ...


_YIELD_EVERY: Final = 64  # messages handled between two yields to the event loop


def _netlink_error(exc: BaseException) -> OSError:
    code = getattr(exc, "code", None)
    return OSError(code if isinstance(code, int) else errno.EPROTO, str(exc) or type(exc).__name__)


class PyRoute2Backend:
    """:class:`NetlinkBackend` over pyroute2's ``AsyncIPRoute`` (0.9)."""

    def __init__(self, netns: str | None = None, rcvbuf: int = 1 << 20) -> None:
        self._netns = netns
        self._rcvbuf = rcvbuf
        self._events: Any = None
        self._query: Any = None

    async def _open(self) -> Any:
        from pyroute2 import AsyncIPRoute

        if self._netns is None:
            return AsyncIPRoute(rcvbuf=self._rcvbuf, groups=0)
        from pyroute2 import netns as pyroute2_netns

        # entering a namespace forks a helper: keep it off the event loop
        sock = await asyncio.to_thread(
            pyroute2_netns.create_socket,
            self._netns,
            socket.AF_NETLINK,
            socket.SOCK_DGRAM,
            NETLINK_ROUTE,
        )
        return AsyncIPRoute(fileno=sock.detach(), rcvbuf=self._rcvbuf, groups=0)

    async def subscribe(self) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        old, self._events = self._events, None
        if old is not None:
            old.close()
        ipr = await self._open()
        try:
            await ipr.bind(groups=GROUPS)
        except NetlinkError as exc:
            ipr.close()
            raise _netlink_error(exc) from exc
        except BaseException:
            ipr.close()
            raise
        self._events = ipr

    async def receive(self) -> Sequence[Any]:
        from pyroute2.netlink.exceptions import NetlinkDecodeError, NetlinkError

        ipr = self._events
        if ipr is None:
            raise ConnectionResetError(errno.ECONNRESET, "netlink event socket is closed")
        try:
            messages = [msg async for msg in ipr.get()]
        except (NetlinkError, NetlinkDecodeError) as exc:
            raise _netlink_error(exc) from exc
        if not messages:
            raise ConnectionResetError(errno.ECONNRESET, "netlink event socket was closed")
        return messages

    async def dump(self) -> Sequence[Any]:
        from pyroute2.netlink.exceptions import NetlinkDecodeError, NetlinkError

        if self._query is None:
            self._query = await self._open()
        ipr = self._query
        try:
            messages: list[Any] = []
            for _attempt in range(3):
                messages = []
                interrupted = False
                for request in (ipr.link, ipr.addr, ipr.route):
                    async for msg in await request("dump"):
                        if _header_flags(msg) & NLM_F_DUMP_INTR:
                            interrupted = True  # the kernel changed the table mid-dump
                        messages.append(msg)
                        if len(messages) % _YIELD_EVERY == 0:
                            # queued datagrams are parsed without suspending: let others run
                            await asyncio.sleep(0)
                if not interrupted:
                    break
            return messages
        except (NetlinkError, NetlinkDecodeError) as exc:
            self._drop_query()
            raise _netlink_error(exc) from exc
        except BaseException:
            # a dump broken off half-way leaves the socket busy (EBUSY): never reuse it
            self._drop_query()
            raise

    def _drop_query(self) -> None:
        ipr, self._query = self._query, None
        if ipr is not None:
            ipr.close()

    async def close(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            events.close()
        self._drop_query()


# --- the component ----------------------------------------------------------------------------

UplinkCallback = Callable[[UplinkChange], object]


class UplinkChanges:
    """An async iterator of :class:`UplinkChange` for one consumer (see :meth:`Uplink.changes`).

    Changes are coalesced: a consumer that is busy gets one change from the state it saw last to
    the current one, with ``changed`` holding every aspect that changed in between (so a link
    outage that is over by the time the consumer looks still shows "link"). Iteration ends when
    the subscription or the :class:`Uplink` is closed.
    """

    def __init__(self, uplink: Uplink) -> None:
        self._uplink = uplink
        self._seen = uplink.state
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._closed = False

    def _notify(self, change: UplinkChange) -> None:
        self._pending |= change.changed
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._uplink._unsubscribe_changes(self)
        self._wake.set()

    def __enter__(self) -> UplinkChanges:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> UplinkChanges:
        return self

    async def __anext__(self) -> UplinkChange:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending:
                current = self._uplink.state
                change = UplinkChange(self._seen, current, frozenset(self._pending))
                self._seen = current
                self._pending.clear()
                return change
            self._wake.clear()
            await self._wake.wait()


class Uplink:
    """Follows the configured uplink and notifies subscribers of every change.

    ``async with Uplink("auto") as uplink:`` (or ``await uplink.start()`` ... ``await
    uplink.close()``). After ``start()`` returns, :attr:`state` reflects a full dump.
    """

    DEBOUNCE_S: ClassVar[float] = 0.2
    MAX_DELAY_S: ClassVar[float] = 1.0
    RESYNC_INTERVAL_S: ClassVar[float] = 300.0

    def __init__(
        self,
        configured: str = AUTO,
        *,
        debounce: float = DEBOUNCE_S,
        max_delay: float = MAX_DELAY_S,
        resync_interval: float = RESYNC_INTERVAL_S,
        netns: str | None = None,
        rcvbuf: int = 1 << 20,
        backend: NetlinkBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._configured = validate_uplink_name(configured)
        self._debounce = debounce
        self._max_delay = max(max_delay, debounce)
        self._resync_interval = resync_interval
        self._backend: NetlinkBackend = backend or PyRoute2Backend(netns=netns, rcvbuf=rcvbuf)
        self._clock = clock
        self._view = NetView()
        self._state = UplinkState(self._configured, since=clock())
        self._callbacks: list[UplinkCallback] = []
        self._subscriptions: weakref.WeakSet[UplinkChanges] = weakref.WeakSet()
        self._dirty = asyncio.Event()
        self._need_resync = False
        self._replay: list[NetEvent] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self.counters = {"events": 0, "changes": 0, "resyncs": 0, "overruns": 0, "errors": 0}

    # ---- public API

    @property
    def configured(self) -> str:
        return self._configured

    @property
    def state(self) -> UplinkState:
        return self._state

    @property
    def running(self) -> bool:
        return self._started and not self._closed

    def subscribe(self, callback: UplinkCallback) -> Callable[[], None]:
        """Call ``callback(change)`` on every change, in the event loop; it must not block
        (for async work use :meth:`changes`). Returns a function that unsubscribes."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def changes(self) -> UplinkChanges:
        """A new async iterator of changes, subscribed from now on (see :class:`UplinkChanges`)."""
        sub = UplinkChanges(self)
        if self._closed:
            sub._closed = True
        else:
            self._subscriptions.add(sub)
        return sub

    async def wait_for(
        self, predicate: Callable[[UplinkState], bool], timeout: float | None = None
    ) -> UplinkState:
        """Wait until the current state satisfies ``predicate``; TimeoutError after ``timeout``."""
        if predicate(self._state):
            return self._state
        with self.changes() as changes:
            async with asyncio.timeout(timeout):
                async for change in changes:
                    if predicate(change.new):
                        return change.new
        raise UplinkError("the uplink monitor was closed")

    def status(self) -> dict[str, Any]:
        """The uplink for ``gwctl status`` (keys documented in docs/uplink.md)."""
        return {**self._state.as_dict(), "monitor": {"running": self.running, **self.counters}}

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("Uplink.start() called twice")
        self._started = True
        try:
            await self._backend.subscribe()
            await self._resync()
        except BaseException as exc:
            self._closed = True
            await self._backend.close()
            if isinstance(exc, OSError):
                raise UplinkError(f"cannot follow the uplink through netlink: {exc}") from exc
            raise
        self._publish(notify=False)
        LOG.info("uplink (%s): %s", self._configured, self._state.describe())
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop(), name="uplink-netlink"),
            loop.create_task(self._publish_loop(), name="uplink-publish"),
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._backend.close()
        for sub in list(self._subscriptions):
            sub.close()

    async def __aenter__(self) -> Uplink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- internals

    def _unsubscribe_changes(self, sub: UplinkChanges) -> None:
        self._subscriptions.discard(sub)

    async def _resync(self) -> None:
        """Replace the view with a full dump plus the events that arrived during it."""
        self._replay = []
        try:
            messages = await self._backend.dump()
            view = NetView()
            for count, msg in enumerate(messages, 1):
                event = parse_message(msg)
                if event is not None:
                    view.apply(event)
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a big table must not stall the event loop
            view.resync_wanted = False
        finally:
            replay, self._replay = self._replay, None
        for event in replay:
            view.apply(event)
        self._view = view
        self._need_resync = False
        self.counters["resyncs"] += 1
        if view.resync_wanted:
            self._dirty.set()

    async def _resubscribe(self) -> None:
        delay = 0.0
        while True:
            try:
                await self._backend.subscribe()
                break
            except Exception as exc:
                self.counters["errors"] += 1
                delay = min(max(delay * 2, 0.5), 30.0)
                LOG.warning(
                    "cannot reopen the netlink socket (%s); retrying in %.1f s",
                    exc,
                    delay,
                    exc_info=not isinstance(exc, OSError),
                )
                await asyncio.sleep(delay)
        self._need_resync = True
        self._dirty.set()

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            try:
                batch = await self._backend.receive()
            except Exception as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOBUFS:
                    self.counters["overruns"] += 1
                    LOG.warning("netlink receive buffer overrun; resynchronising with a full dump")
                else:
                    self.counters["errors"] += 1
                    failures += 1
                    LOG.warning(
                        "netlink socket error (%s); reopening it",
                        exc,
                        exc_info=not isinstance(exc, OSError),
                    )
                    await asyncio.sleep(min(0.05 * 2**failures, 30.0))
                await self._resubscribe()
                continue
            failures = 0
            self.counters["events"] += len(batch)
            dirty = False
            for msg in batch:
                event = parse_message(msg)
                if event is None:
                    continue
                if self._replay is not None:
                    self._replay.append(event)
                dirty |= self._view.apply(event)
            if dirty or self._view.resync_wanted:
                self._dirty.set()

    async def _publish_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            periodic = False
            try:
                async with asyncio.timeout(self._resync_interval):
                    await self._dirty.wait()
            except TimeoutError:
                periodic = True
            else:
                # debounce: wait for a quiet period, but publish at the latest after max_delay
                started = loop.time()
                while True:
                    self._dirty.clear()
                    remaining = min(self._debounce, started + self._max_delay - loop.time())
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            await self._dirty.wait()
                    except TimeoutError:
                        break
            self._dirty.clear()
            if periodic or self._need_resync or self._view.resync_wanted:
                try:
                    await self._resync()
                except Exception as exc:
                    self.counters["errors"] += 1
                    failures += 1
                    delay = min(0.25 * 2**failures, 30.0)
                    LOG.warning(
                        "netlink dump failed (%s); retrying in %.1f s",
                        exc,
                        delay,
                        exc_info=not isinstance(exc, OSError),
                    )
                    self._need_resync = True
                    await asyncio.sleep(delay)
                    self._dirty.set()
                    continue
                failures = 0
            self._publish()

    def _publish(self, *, notify: bool = True) -> None:
        old = self._state
        new = compute_state(self._view, self._configured, old.ifindex, old.since)
        if new == old:
            return
        new = replace(new, since=self._clock())
        self._state = new
        change = UplinkChange(old, new, diff(old, new))
        if not notify:
            return
        self.counters["changes"] += 1
        LOG.info("uplink changed (%s): %s", ", ".join(sorted(change.changed)), new.describe())
        for callback in list(self._callbacks):
            try:
                result = callback(change)
            except Exception:
                LOG.exception("uplink subscriber %r failed", callback)
                continue
            if inspect.isawaitable(result):
                LOG.error(
                    "uplink subscriber %r returned an awaitable; use Uplink.changes() for "
                    "async work",
                    callback,
                )
                if inspect.iscoroutine(result):
                    result.close()
        for sub in list(self._subscriptions):
            sub._notify(change)
