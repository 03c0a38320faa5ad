"""DNS-SD for the Border Agent through ``zeroconf``: publish ``_meshcop._udp`` (the border
router service) and browse for it (the external commissioner peer, the demo). Both import it from
here, so neither imports the other.

Interfaces: ``uplink = "auto"`` (the default of ``[network] uplink``) publishes on every
interface; an interface name restricts publication to that interface's addresses (``lo`` is
what the tests use). The TXT record comes from :mod:`gateway.thread.commissioning.dnssd`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ParseError
from gateway.thread.commissioning.dnssd import SERVICE_TYPE, BorderAgentRecord, parse_meshcop_txt

LOG = logging.getLogger(__name__)

__all__ = ["MeshcopPublisher", "browse_border_agents", "interface_addresses"]


def interface_addresses(uplink: str) -> list[str]:
    """The IP addresses to publish on / listen to for ``uplink`` (``auto``: all non-loopback
    addresses, falling back to loopback when there is nothing else)."""
    import ifaddr

    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        if uplink != "auto" and adapter.nice_name != uplink and adapter.name != uplink:
            continue
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                addr = ip.ip[0]
                if ipaddress.IPv6Address(addr).is_link_local:
                    continue  # zeroconf needs a scope for those; IPv4 and global IPv6 suffice
            else:
                addr = ip.ip
            loopback = ipaddress.ip_address(addr).is_loopback
            if loopback and (uplink == "auto" or ":" in addr):
                continue  # IPv6 multicast does not work on loopback
            out.append(addr)
    if not out and uplink == "auto":
        out = ["127.0.0.1"]
    return out


def _zeroconf_args(addresses: list[str]) -> dict[str, Any]:
    from zeroconf import IPVersion

    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
    if v4 and not v6:
        return {"interfaces": v4, "ip_version": IPVersion.V4Only}
    if v6 and not v4:
        return {"interfaces": v6, "ip_version": IPVersion.V6Only}
    return {"interfaces": v4 + v6, "ip_version": IPVersion.All}


@dataclass
class MeshcopPublisher:
    """Registers (and re-registers on change) one ``_meshcop._udp`` instance."""

    instance: str
    port: int
    uplink: str = "auto"
    host: str = "thing-gateway"
    _azc: Any = None
    _info: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def publish(self, txt: dict[bytes, bytes]) -> None:
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        async with self._lock:
            addresses = interface_addresses(self.uplink)
            if self._azc is None:
                self._azc = AsyncZeroconf(**_zeroconf_args(addresses))
            info = AsyncServiceInfo(
                SERVICE_TYPE,
                f"{self.instance}.{SERVICE_TYPE}",
                port=self.port,
                properties=txt,
                parsed_addresses=addresses,
                server=f"{self.host}.local.",
            )
            if self._info is None:
                await (
                    await self._azc.async_register_service(
                        info, allow_name_change=True, cooperating_responders=True
                    )
                )
            else:
                info.name = self._info.name
                await (await self._azc.async_update_service(info))
            self._info = info

    async def close(self) -> None:
        async with self._lock:
            if self._azc is not None:
                with contextlib.suppress(Exception):
                    await self._azc.async_unregister_all_services()
                await self._azc.async_close()
                self._azc = None
                self._info = None


async def browse_border_agents(
    timeout: float = 3.0, uplink: str = "auto", *, want: int | None = None
) -> list[BorderAgentRecord]:
    """Every ``_meshcop._udp`` border agent answering within ``timeout`` seconds (returns
    early once ``want`` records are resolved)."""
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    azc = AsyncZeroconf(**_zeroconf_args(interface_addresses(uplink)))
    names: asyncio.Queue[str] = asyncio.Queue()

    def handler(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.put_nowait(name)

    browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[handler])
    found: dict[str, BorderAgentRecord] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while loop.time() < deadline and (want is None or len(found) < want):
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    name = await names.get()
            except TimeoutError:
                break
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, 1500):
                continue
            try:
                rec = parse_meshcop_txt(
                    name.removesuffix("." + SERVICE_TYPE),
                    tuple(info.parsed_addresses()),
                    int(info.port or 0),
                    info.properties or {},
                )
            except ParseError as exc:
                LOG.warning("ignoring border agent %s: %s", name, exc)
                continue
            found[name] = rec
    finally:
        await browser.async_cancel()
        await azc.async_close()
    return list(found.values())


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
