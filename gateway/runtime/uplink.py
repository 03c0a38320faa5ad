"""The gateway's uplink (its WLAN/LAN interface): the policy that follows it.

The border agent binds its sockets and announces ``_meshcop._udp`` on the uplink, and the cloud
link runs over it. When the uplink's addresses or link state change (DHCP renew, router reboot,
WLAN roaming, a cable swapped, the default route moving to another interface), they must follow
without a restart. :class:`Uplink` keeps a current :class:`UplinkState` and tells subscribers about
every change; :func:`follow_uplink` is how a service hands each change to its own reaction. See
``docs/uplink.md``.

It consumes the netlink watcher (:mod:`gateway.runtime.netlink`, events and the kernel's view):

* sans-IO: :func:`select_uplink` chooses the interface, :func:`compute_state` derives the
  :class:`UplinkState`, :func:`diff` names what changed (:class:`UplinkChange`);
* :class:`Uplink`, the asyncio component: bursts debounced, a full resynchronisation after a
  receive-buffer overrun (``ENOBUFS``) or a socket error, after changes whose side effects the
  kernel does not announce, and periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import ipaddress
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, ClassVar, Final

from gateway.errors import ConfigError, GatewayError
from gateway.runtime.netlink import (
    AF_INET,
    AF_INET6,
    YIELD_EVERY,
    IPInterface,
    NetEvent,
    NetlinkBackend,
    NetView,
    PyRoute2Backend,
    parse_message,
)

LOG = logging.getLogger(__name__)

AUTO: Final = "auto"


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
                if count % YIELD_EVERY == 0:
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


async def follow_uplink(
    configured: str,
    on_change: Callable[[UplinkChange], Awaitable[None]],
    spawn: Callable[[Awaitable[None], str], object],
    without: str,
) -> Uplink | None:
    """How a service follows the uplink: start an :class:`Uplink` on ``configured`` and hand every
    change to ``on_change``, one at a time, in a task started by ``spawn`` (the service's own, so
    a failure fails the service). When netlink cannot be used, log what the service does
    ``without`` it and return None; the service runs on."""
    uplink = Uplink(configured)
    try:
        await uplink.start()
    except GatewayError as exc:
        LOG.warning("not following the uplink (%s); %s", exc, without)
        return None

    async def follow() -> None:
        with uplink.changes() as changes:
            async for change in changes:
                await on_change(change)

    spawn(follow(), "uplink")
    return uplink
