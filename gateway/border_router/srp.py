"""The SRP server in the border router service and its advertising proxy.

The sans-IO core is :class:`gateway.thread.srp.server.SrpServer`. Here: a UDP socket on the
kernel side (the mesh reaches the gateway's ML-EID through the Thread interface), the unicast
DNS/SRP entry in the leader's Network Data, expiry timers, the registrations saved atomically in
``srp.json`` (reloaded on start, within their leases) and the LAN publication with zeroconf.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import StateError
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


class AdvertisingProxy:
    """Publishes the SRP registrations on the LAN: per service an SRV/TXT/PTR (and the first
    subtype) through ``AsyncServiceInfo``, the host's OMR addresses as its AAAA records."""

    def __init__(self, uplink: Callable[[], str]) -> None:
        self._uplink = uplink
        self._azc: Any = None
        self._published: dict[str, list[Any]] = {}  # host -> infos
        self._lock = asyncio.Lock()

    async def publish(self, host: Host, omr: list[ipaddress.IPv6Network]) -> None:
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        from gateway.runtime.mdns import _zeroconf_args, interface_addresses

        async with self._lock:
            await self._withdraw(host.name)
            addrs = [a for a in host.addresses if any(ipaddress.IPv6Address(a) in n for n in omr)]
            live = [s for s in host.services.values() if not s.deleted]
            if host.deleted or not addrs or not live:
                return
            if self._azc is None:
                self._azc = AsyncZeroconf(**_zeroconf_args(interface_addresses(self._uplink())))
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
                )
                try:
                    await (
                        await self._azc.async_register_service(info, cooperating_responders=True)
                    )
                except Exception as exc:  # noqa: BLE001 - a LAN conflict must not stop the SRP server
                    LOG.warning("advertising proxy: %s not published: %s", info.name, exc)
                    continue
                infos.append(info)
            self._published[host.name] = infos

    async def withdraw(self, name: str) -> None:
        async with self._lock:
            await self._withdraw(name)

    async def _withdraw(self, name: str) -> None:
        for info in self._published.pop(name, []):
            with contextlib.suppress(Exception):
                await self._azc.async_unregister_service(info)

    def published(self) -> dict[str, list[str]]:
        return {h: [i.name for i in infos] for h, infos in self._published.items()}

    async def close(self) -> None:
        async with self._lock:
            for name in list(self._published):
                await self._withdraw(name)
            if self._azc is not None:
                await self._azc.async_close()
                self._azc = None


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
    withdraws everything from Network Data and the LAN."""

    def __init__(
        self,
        net: RouterCore,
        state_dir: Path,
        *,
        uplink: Callable[[], str],
        changed: Callable[[], None],
        port: int = DEFAULT_PORT,
        bounds: Bounds | None = None,
    ) -> None:
        self.net = net
        self.port = port
        self.changed = changed
        self.core = SrpServer(bounds, on_change=self._host_changed)
        self.proxy = AdvertisingProxy(uplink)
        self._store = JsonState(state_dir / STATE_FILE, "gateway-srp", 1)
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._dirty: set[str] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._restart_proxy = False

    @staticmethod
    def now() -> float:
        return time.time()  # wall clock: leases are kept on disk across restarts

    async def open(self) -> None:
        try:
            doc = await asyncio.to_thread(self._store.load)
        except StateError as exc:
            LOG.warning("SRP state unreadable (%s); starting empty", exc.message)
            doc = None
        if doc is not None:
            self.core.load_json(doc, self.now())
            self._dirty.update(self.core.hosts)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=("::", self.port)
        )
        self.publish_entry()
        self._kick()

    def publish_entry(self) -> None:
        ml_eid = ipaddress.IPv6Address(bytes(self.net.ml_prefix[:8]) + self.net.ml_eid_iid)
        self.net.set_srp_unicast((ml_eid, self.port), asyncio.get_running_loop().time())
        self.changed()

    def netdata_changed(self) -> None:
        """OMR prefixes moved: publish every host again with the addresses now valid."""
        self._dirty.update(self.core.hosts)
        self._kick()

    def uplink_changed(self) -> None:
        """The uplink moved: the proxy starts again on the new interface's addresses."""
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dirty and (self._sync_task is None or self._sync_task.done()):
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
        while self._dirty:
            names, self._dirty = self._dirty, set()
            if self._restart_proxy:
                self._restart_proxy = False
                await self.proxy.close()
            await asyncio.to_thread(self._store.save, self.core.to_json())
            omr = list(slaac_prefixes(self.net.netdata.full))
            for name in sorted(names):
                host = self.core.hosts.get(name)
                if host is None:
                    await self.proxy.withdraw(name)
                else:
                    await self.proxy.publish(host, omr)

    async def close(self) -> None:
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
                "remaining_lease": max(0, round(h.lease_end() - now)),
                "remaining_key_lease": max(0, round(h.key_lease_end() - now)),
                "services": sorted(h.services),
            }
            for h in self.core.hosts.values()
        ]

    def services_view(self) -> list[dict[str, Any]]:
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
                "published": f"{s.instance}.{s.service_type}.local."
                in self.proxy.published().get(h.name, []),
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
