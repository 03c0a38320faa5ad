"""The SRP server in the border router service and its advertising proxy.

The sans-IO core is :class:`gateway.thread.srp.server.SrpServer`. Here: a UDP socket bound to
the Thread interface (the mesh reaches the gateway's ML-EID through it; the LAN cannot reach
the socket, as OpenThread's server socket is Thread-internal), the unicast DNS/SRP entry in the
leader's Network Data, expiry timers, the registrations saved atomically in ``srp.json``
(reloaded on start, within their leases) and the LAN publication with zeroconf on the
infrastructure interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import StateError
from gateway.ratelimit import WarningLimiter
from gateway.runtime.state import JsonState
from gateway.thread.network.addressing import slaac_prefixes
from gateway.thread.network.router import RouterCore
from gateway.thread.srp.server import (
    KEY_LEASE_MAX,
    KEY_LEASE_MIN,
    LEASE_MAX,
    LEASE_MIN,
    Bounds,
    Host,
    SrpServer,
)

LOG = logging.getLogger(__name__)
STATE_FILE = "srp.json"
DEFAULT_PORT = 53536  # OpenThread's first unicast port (53535 + 1)
_WARN = WarningLimiter()
IPV6_FREEBIND = 78  # linux/in6.h; not in the socket module


def _warn(category: str, msg: str, *args: Any) -> None:
    held = _WARN.admit(category, time.monotonic())
    if held is not None:
        LOG.warning("%s%s", msg % args, f" ({held} similar lines held back)" if held else "")


def lan_addresses(host: Host, omr: list[ipaddress.IPv6Network]) -> list[str]:
    """The host's addresses the LAN may see: those in an OMR prefix (never the ML-EID or a
    link-local address)."""
    out = []
    for a in host.addresses:
        try:
            addr = ipaddress.IPv6Address(a)
        except ValueError:
            continue
        if any(addr in n for n in omr):
            out.append(str(addr))
    return out


class Proxy(Protocol):
    async def publish(self, host: Host, omr: list[ipaddress.IPv6Network]) -> None: ...
    async def withdraw(self, name: str) -> None: ...
    def published(self) -> dict[str, list[str]]: ...
    async def restart(self) -> None: ...
    async def close(self) -> None: ...


class AdvertisingProxy:
    """Publishes the SRP registrations on the LAN interface: per live service an SRV, TXT and
    PTR (``<type>.local.``), and under ``<host>.local.`` the host's OMR addresses as AAAA
    records (zeroconf emits them with each service). Instance names are probed (a LAN
    conflict leaves that service unpublished and logged); host names and subtypes are not
    published by zeroconf's API (docs/srp.md)."""

    def __init__(self, interface: Callable[[], str]) -> None:
        self._interface = interface
        self._azc: Any = None
        self._published: dict[str, tuple[Any, list[Any]]] = {}  # host -> (what, infos)
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _zeroconf(self) -> Any:
        if self._azc is None:
            from zeroconf import IPVersion
            from zeroconf.asyncio import AsyncZeroconf

            ifname = self._interface()
            try:
                index = socket.if_nametoindex(ifname)
            except OSError:
                raise StateError(f"the LAN interface {ifname!r} is not there") from None
            # IPv6 mDNS needs the interface index (zeroconf's default choice is IPv4's)
            self._azc = AsyncZeroconf(interfaces=[index], ip_version=IPVersion.V6Only)
        return self._azc

    async def publish(self, host: Host, omr: list[ipaddress.IPv6Network]) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        addrs = lan_addresses(host, omr)
        live = sorted(
            (s for s in host.services.values() if not s.deleted), key=lambda s: s.instance
        )
        what = (
            tuple(addrs),
            tuple((s.instance, s.service_type, s.port, s.priority, s.weight, tuple(s.txt))
                  for s in live),
        )  # fmt: skip
        async with self._lock(host.name):
            old = self._published.get(host.name)
            if old is not None and old[0] == what:
                return  # nothing the LAN sees changed
            await self._withdraw(host.name)
            if host.deleted or not addrs or not live:
                return
            azc = self._zeroconf()
            infos = []
            for s in live:
                stype = f"{s.service_type}.local."
                info = AsyncServiceInfo(
                    stype,
                    f"{s.instance}.{stype}",
                    port=s.port,
                    weight=s.weight,
                    priority=s.priority,
                    properties=_txt(s.txt),
                    parsed_addresses=addrs,
                    server=f"{host.name}.local.",
                    host_ttl=120,
                )
                try:
                    await (await azc.async_register_service(info))
                except Exception as exc:  # noqa: BLE001 - a LAN conflict must not stop the SRP server
                    _warn("srp-publish", "advertising proxy: %s not published: %s", info.name,
                          type(exc).__name__)  # fmt: skip
                    continue
                infos.append(info)
            self._published[host.name] = (what, infos)

    async def withdraw(self, name: str) -> None:
        async with self._lock(name):
            await self._withdraw(name)
        self._locks.pop(name, None)

    async def _withdraw(self, name: str) -> None:
        _what, infos = self._published.pop(name, (None, []))
        for info in infos:
            with contextlib.suppress(Exception):
                await self._azc.async_unregister_service(info)

    def published(self) -> dict[str, list[str]]:
        return {h: [i.name for i in infos] for h, (_w, infos) in self._published.items()}

    async def restart(self) -> None:
        """The LAN interface moved: withdraw everything; the next publish starts afresh."""
        await self.close()

    async def close(self) -> None:
        for name in list(self._published):
            await self.withdraw(name)
        if self._azc is not None:
            azc, self._azc = self._azc, None
            with contextlib.suppress(Exception):
                await azc.async_close()


def _txt(entries: list[bytes]) -> dict[bytes, bytes | None]:
    out: dict[bytes, bytes | None] = {}
    for e in entries:
        if not e:
            continue
        k, sep, v = e.partition(b"=")
        out[k] = v if sep else None
    return out


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SrpService) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner.datagram(data, addr)


class SrpService:
    """Runs while border routing runs: ``open()`` binds and publishes the entry, ``close()``
    withdraws everything from Network Data and the LAN.

    ``thread_if``: the interface the socket is bound to (``None``: any, for tests);
    ``clock``: wall-clock seconds (leases are kept on disk across restarts)."""

    def __init__(
        self,
        net: RouterCore,
        state_dir: Path,
        *,
        lan_if: Callable[[], str],
        changed: Callable[[], None],
        thread_if: str | None,
        port: int = DEFAULT_PORT,
        bounds: Bounds | None = None,
        proxy: Proxy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.net = net
        self.port = port
        self.thread_if = thread_if
        self.changed = changed
        self.now = clock
        self.core = SrpServer(bounds, on_change=self._host_changed)
        self.proxy: Proxy = proxy if proxy is not None else AdvertisingProxy(lan_if)
        self._store = JsonState(state_dir / STATE_FILE, "gateway-srp", 1)
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._dirty: set[str] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._restart_proxy = False
        self._closed = False
        self.idle = asyncio.Event()  # set while nothing waits to be saved or published
        self.idle.set()

    async def open(self) -> None:
        try:
            doc = await asyncio.to_thread(self._store.load)
            if doc is not None:
                self.core.load_json(doc, self.now())
        except (StateError, KeyError, TypeError, ValueError) as exc:
            # registrations are soft state (devices register again within their lease): the
            # file is kept for a look and the server starts empty, saying so
            self.core.hosts.clear()
            aside = self._store.path.with_name(STATE_FILE + ".corrupt")
            with contextlib.suppress(OSError):
                self._store.path.replace(aside)
            why = exc.message if isinstance(exc, StateError) else type(exc).__name__
            LOG.warning("SRP state unreadable (%s): kept as %s, starting empty", why, aside)
        self._dirty.update(self.core.hosts)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            address = "::"
            if self.thread_if is not None:
                # the ML-EID published in the entry, so that answers come from it (the kernel
                # would pick the RLOC as often); it may not be on the interface yet: freebind
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.thread_if.encode())
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
                address = str(self._ml_eid())
            sock.bind((address, self.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise StateError(
                f"the SRP server cannot bind UDP {self.port}: {exc.strerror}",
                hint="another program holds the port: set [border_router] srp_port",
            ) from None
        self.port = sock.getsockname()[1]
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self.publish_entry()
        self._kick()

    def _ml_eid(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(bytes(self.net.ml_prefix[:8]) + self.net.ml_eid_iid)

    def publish_entry(self) -> None:
        self.net.set_srp_unicast((self._ml_eid(), self.port), asyncio.get_running_loop().time())
        self.changed()

    def netdata_changed(self) -> None:
        """The Network Data changed (OMR prefixes may have moved): publish every host again
        with the addresses valid now (a host whose LAN view did not change stays as it is)."""
        self._dirty.update(self.core.hosts)
        self._kick()

    def uplink_changed(self) -> None:
        """The LAN interface moved: the proxy starts again on it."""
        self._restart_proxy = True
        self._dirty.update(self.core.hosts)
        self._kick()

    def datagram(self, data: bytes, addr: Any) -> None:
        resp = self.core.handle(data, str(addr[0]), self.now())
        if resp is not None and self._transport is not None:
            self._transport.sendto(resp, addr)
        self._kick()

    def _host_changed(self, name: str) -> None:
        self._dirty.add(name)

    def _kick(self) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dirty and (self._sync_task is None or self._sync_task.done()):
            self.idle.clear()
            self._sync_task = asyncio.get_running_loop().create_task(self._sync())
        deadline = self.core.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - self.now()) + 0.01, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self.core.expire(self.now())
        self._kick()

    async def _sync(self) -> None:
        try:
            while self._dirty:
                names, self._dirty = self._dirty, set()
                if self._restart_proxy:
                    self._restart_proxy = False
                    await self.proxy.restart()
                await asyncio.to_thread(self._store.save, self.core.to_json())
                omr = list(slaac_prefixes(self.net.netdata.full))
                jobs = []
                for name in sorted(names):
                    host = self.core.hosts.get(name)
                    if host is None:
                        jobs.append(self.proxy.withdraw(name))
                    else:
                        jobs.append(self.proxy.publish(host, omr))
                for res in await asyncio.gather(*jobs, return_exceptions=True):
                    if isinstance(res, BaseException):
                        _warn("srp-proxy", "advertising proxy: %s", res)
        finally:
            if not self._dirty:
                self.idle.set()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._sync_task is not None:
            with contextlib.suppress(Exception):
                await self._sync_task
        await self.proxy.close()
        self.net.set_srp_unicast(None, asyncio.get_running_loop().time())
        self.changed()

    # -- views for gwctl ---------------------------------------------------------------------

    def hosts_view(self) -> list[dict[str, Any]]:
        now = self.now()
        return [
            {
                "name": h.name,
                "addresses": h.addresses,
                "deleted": h.deleted,
                "lease": h.lease,
                "key_lease": h.key_lease,
                "remaining_lease": 0 if h.deleted else max(0, round(h.lease_end() - now)),
                "remaining_key_lease": max(0, round(h.key_lease_end() - now)),
                "services": sorted(h.services),
            }
            for h in self.core.hosts.values()
        ]

    def services_view(self) -> list[dict[str, Any]]:
        published = self.proxy.published()
        return [
            {
                "instance": s.instance,
                "type": s.service_type,
                "subtypes": s.subtypes,
                "port": s.port,
                "priority": s.priority,
                "weight": s.weight,
                "txt": [t.decode(errors="replace") for t in s.txt],
                "host": h.name,
                "deleted": s.deleted,
                "published": f"{s.instance}.{s.service_type}.local." in published.get(h.name, []),
            }
            for h in self.core.hosts.values()
            for s in h.services.values()
        ]

    def status_view(self) -> dict[str, Any]:
        b = self.core.bounds
        return {
            "state": "running" if self._transport is not None else "stopped",
            "port": self.port,
            "address_mode": "unicast",
            "domain": "default.service.arpa.",
            "lease_bounds": [LEASE_MIN, LEASE_MAX],
            "key_lease_bounds": [KEY_LEASE_MIN, KEY_LEASE_MAX],
            "bounds": dict(b.__dict__),
            "hosts": len(self.core.hosts),
            "services": sum(len(h.services) for h in self.core.hosts.values()),
            "counters": dict(self.core.counters.__dict__),
        }
