"""The netlink watcher: what the kernel says about links, addresses and routes (rtnetlink).

Two layers:

* sans-IO: :func:`parse_message` turns one decoded rtnetlink message (a pyroute2 message or a
  plain mapping of the same shape) into a :class:`LinkEvent`, :class:`AddrEvent` or
  :class:`RouteEvent`; :class:`NetView` applies events (mirroring the kernel's silent side
  effects). No sockets, no asyncio.
* :class:`PyRoute2Backend`, the :class:`NetlinkBackend` that reads them: a netlink socket bound
  to the link, address and route multicast groups (pyroute2 ``AsyncIPRoute``) and a second socket
  for full dumps.

What the gateway makes of it (which interface is the uplink, what changed) is the policy in
:mod:`gateway.runtime.uplink`. Kernel constants below are from the Linux UAPI headers
``include/uapi/linux/if.h``, ``if_addr.h``, ``rtnetlink.h`` and ``netlink.h``. See
``docs/uplink.md``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

LOG = logging.getLogger(__name__)

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


YIELD_EVERY: Final = 64  # messages handled between two yields to the event loop


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
                        if len(messages) % YIELD_EVERY == 0:
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
