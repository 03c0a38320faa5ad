"""The Linux side of border routing (thin shells; the decisions are in
:mod:`gateway.thread.border.routing`):

* :class:`ThreadInterface`: the TUN device (``wpan0`` by default; ``IFF_TUN | IFF_NO_PI``, MTU
  1280, no kernel link-local) that carries raw IPv6 between the kernel and the mesh, with the
  gateway's Thread addresses on it (``IFA_F_NODAD``; each /64 brings the kernel's prefix route,
  which is what makes the OMR prefix reachable through it). Not persistent: it disappears with
  the process, routes and all, so a crash leaves nothing stale behind.
* :class:`LanNeighborDiscovery`: a raw ICMPv6 socket on the LAN interface that receives Router
  Solicitations and Advertisements (``ICMP6_FILTER``, hop limit and source checked by the core)
  and sends the gateway's RAs to ff02::1 and RSs to ff02::2 with hop limit 255.
* :func:`apply_forwarding_rules`, :func:`remove_forwarding_rules`: the gateway's own nftables
  table: IPv6 is forwarded to and from the Thread interface only from and to the LAN interface,
  a LAN packet may reach the on-mesh (OMR) prefixes but never the mesh-local or link-local
  addresses of the mesh, and may not claim a Thread source (as ot-br-posix's ingress filter).
* :func:`check_sysctls`: forwarding on, RAs still accepted on the LAN interface.

Netlink calls go through pyroute2 in a worker thread, ``nft`` runs as a subprocess: nothing here
blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from gateway.errors import StateError

LOG = logging.getLogger(__name__)

TUNSETIFF: Final = 0x400454CA
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
IFA_F_NODAD: Final = 0x02
IN6_ADDR_GEN_MODE_NONE: Final = 1
MTU: Final = 1280
ICMP6_FILTER: Final = 1  # <netinet/icmp6.h>
NFT_TABLE: Final = "gateway_border_router"
ALL_NODES: Final = "ff02::1"
ALL_ROUTERS: Final = "ff02::2"

Addr = ipaddress.IPv6Address
Net = ipaddress.IPv6Network


def _ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise StateError(
            f"the network interface {name!r} does not exist",
            hint="Set [border_router] infra_interface to the LAN interface (ip link), or leave it "
            "empty to run without border routing.",
        ) from None


class ThreadInterface:
    """The TUN device of the Thread network. ``on_packet(bytes)`` gets every IPv6 packet the
    kernel sends into it; :meth:`write` hands one to the kernel."""

    def __init__(self, name: str, on_packet: Callable[[bytes], None]) -> None:
        self.name = name
        self.on_packet = on_packet
        self.index = 0
        self.counters: Counter[str] = Counter()
        self._fd: int | None = None
        self._addresses: set[tuple[Addr, int]] = set()
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise StateError(
                f"cannot open /dev/net/tun: {exc.strerror}",
                hint="The border router needs the TUN device and CAP_NET_ADMIN "
                "(the systemd unit grants both).",
            ) from None
        try:
            ifr = struct.pack("16sH22x", self.name.encode(), IFF_TUN | IFF_NO_PI)
            res = fcntl.ioctl(fd, TUNSETIFF, ifr)
            self.name = res[:16].rstrip(b"\0").decode()
            self.index = await asyncio.to_thread(self._configure)
        except OSError as exc:
            os.close(fd)
            raise StateError(
                f"cannot create the Thread interface {self.name}: {exc.strerror}",
                hint="Another process may hold the name ([border_router] thread_interface), "
                "or CAP_NET_ADMIN is missing.",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._readable)
        LOG.info("thread interface %s up (index %d, MTU %d)", self.name, self.index, MTU)

    def _configure(self) -> int:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            idx = int(ipr.link_lookup(ifname=self.name)[0])
            mode = [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]
            ipr.link("set", index=idx, af_spec={"attrs": [("AF_INET6", {"attrs": mode})]})
            ipr.link("set", index=idx, mtu=MTU, state="up")
        return idx

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        for _ in range(64):  # a burst at most, then back to the loop
            try:
                data = os.read(fd, 2048)
            except BlockingIOError:
                return
            except OSError as exc:
                self.counters["read_errors"] += 1
                LOG.debug("thread interface read: %s", exc)
                return
            if not data:
                return
            self.counters["rx_packets"] += 1
            self.on_packet(data)

    def write(self, packet: bytes) -> bool:
        """Hand one IPv6 packet to the kernel; False (counted) when the queue is full."""
        fd = self._fd
        if fd is None or len(packet) > MTU:
            self.counters["tx_dropped"] += 1
            return False
        try:
            os.write(fd, packet)
        except (BlockingIOError, OSError):
            self.counters["tx_dropped"] += 1
            return False
        self.counters["tx_packets"] += 1
        return True

    async def set_addresses(self, addresses: Iterable[tuple[Addr, int]]) -> None:
        """Make the interface carry exactly these (address, prefix length) pairs."""
        want = set(addresses)
        async with self._lock:
            if want == self._addresses or self._fd is None:
                return
            add, remove = want - self._addresses, self._addresses - want
            await asyncio.to_thread(self._apply_addresses, add, remove)
            self._addresses = want

    def _apply_addresses(self, add: set[tuple[Addr, int]], remove: set[tuple[Addr, int]]) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            for a, plen in remove:
                with contextlib.suppress(NetlinkError):
                    ipr.addr("del", index=self.index, address=str(a), prefixlen=plen)
            for a, plen in add:
                try:
                    ipr.addr("replace", index=self.index, address=str(a), prefixlen=plen,
                             flags=IFA_F_NODAD)  # fmt: skip
                except NetlinkError as exc:
                    LOG.warning("cannot add %s/%d to %s: %s", a, plen, self.name, exc)

    @property
    def addresses(self) -> set[tuple[Addr, int]]:
        return set(self._addresses)

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)  # the interface, its addresses and routes go with it


class LanNeighborDiscovery:
    """Router Solicitations and Advertisements on the LAN interface."""

    def __init__(self, ifname: str, on_message: Callable[[Addr, bytes, int], None]) -> None:
        self.ifname = ifname
        self.on_message = on_message
        self.index = 0
        self.counters: Counter[str] = Counter()
        self._sock: socket.socket | None = None

    @property
    def mac(self) -> bytes | None:
        try:
            raw = Path(f"/sys/class/net/{self.ifname}/address").read_text().strip()
            mac = bytes.fromhex(raw.replace(":", ""))
        except (OSError, ValueError):
            return None
        return mac if len(mac) == 6 else None

    async def open(self) -> None:
        self.index = _ifindex(self.ifname)
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        except OSError as exc:
            raise StateError(
                f"cannot open a raw ICMPv6 socket: {exc.strerror}",
                hint="Router advertisements need CAP_NET_RAW (the systemd unit grants it).",
            ) from None
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            # pass only RS (133) and RA (134): a bitmap where a set bit blocks that type
            blocked = [0xFFFFFFFF] * 8
            for t in (133, 134):
                blocked[t >> 5] &= ~(1 << (t & 31))
            s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *blocked))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.index)
            mreq = socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I", self.index)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            s.setblocking(False)
        except OSError as exc:
            s.close()
            raise StateError(
                f"cannot set up the ICMPv6 socket on {self.ifname}: {exc.strerror}"
            ) from None
        self._sock = s
        asyncio.get_running_loop().add_reader(s.fileno(), self._readable)

    def _readable(self) -> None:
        s = self._sock
        if s is None:
            return
        for _ in range(64):
            try:
                data, anc, _flags, addr = s.recvmsg(2048, socket.CMSG_SPACE(4))
            except BlockingIOError:
                return
            except OSError as exc:
                self.counters["rx_errors"] += 1
                LOG.debug("ICMPv6 receive: %s", exc)
                return
            hop = 0
            for level, kind, cdata in anc:
                if (
                    level == socket.IPPROTO_IPV6
                    and kind == socket.IPV6_HOPLIMIT
                    and len(cdata) >= 4
                ):
                    hop = struct.unpack("@i", cdata[:4])[0]
            try:
                src = Addr(addr[0].split("%")[0])
            except ValueError:
                continue
            self.counters["rx"] += 1
            self.on_message(src, data, hop)

    def _send(self, body: bytes, dst: str) -> bool:
        s = self._sock
        if s is None:
            return False
        try:
            s.sendto(body, (dst, 0, 0, self.index))
        except OSError as exc:
            self.counters["tx_errors"] += 1
            LOG.debug("ICMPv6 send to %s on %s: %s", dst, self.ifname, exc)
            return False
        self.counters["tx"] += 1
        return True

    def send_ra(self, body: bytes) -> bool:
        return self._send(body, ALL_NODES)

    def send_rs(self, body: bytes) -> bool:
        return self._send(body, ALL_ROUTERS)

    async def close(self) -> None:
        s, self._sock = self._sock, None
        if s is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(s.fileno())
            s.close()


# -- forwarding rules ------------------------------------------------------------------------------


def forwarding_ruleset(thread_if: str, lan_if: str, allow_dst: Iterable[Net],
                       deny_src: Iterable[Net]) -> str:  # fmt: skip
    """The gateway's nftables table (replaces a previous one whole)."""

    def elements(nets: Iterable[Net]) -> str:
        items = sorted({str(n) for n in nets})
        return f"elements = {{ {', '.join(items)} }}" if items else ""

    t, lan = json_str(thread_if), json_str(lan_if)
    return "\n".join(
        [
            f"table ip6 {NFT_TABLE}",
            f"delete table ip6 {NFT_TABLE}",
            f"table ip6 {NFT_TABLE} {{",
            f"  set allow_dst {{ type ipv6_addr; flags interval; {elements(allow_dst)} }}",
            f"  set deny_src {{ type ipv6_addr; flags interval; {elements(deny_src)} }}",
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            f"    iifname {t} oifname {t} drop",
            f"    oifname {t} iifname != {lan} drop",
            f"    iifname {t} oifname != {lan} drop",
            f"    oifname {t} ip6 saddr @deny_src drop",
            f"    oifname {t} ip6 daddr ff00::/8 accept",
            f"    oifname {t} ip6 daddr @allow_dst accept",
            f"    oifname {t} counter drop",
            "  }",
            "}",
            "",
        ]
    )


def json_str(name: str) -> str:
    """An interface name as an nft string literal (names are at most 15 printable bytes)."""
    if not name or len(name) > 15 or any(c in name for c in '"\\ \t\n;{}'):
        raise StateError(f"unusable interface name {name!r}")
    return f'"{name}"'


async def _nft(script: str) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            "nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except FileNotFoundError:
        return 127, "nft is not installed (Debian package nftables)"
    _out, err = await asyncio.wait_for(proc.communicate(script.encode()), 30)
    return proc.returncode or 0, err.decode(errors="replace").strip()


async def apply_forwarding_rules(thread_if: str, lan_if: str, allow_dst: Iterable[Net],
                                 deny_src: Iterable[Net]) -> None:  # fmt: skip
    rc, err = await _nft(forwarding_ruleset(thread_if, lan_if, allow_dst, deny_src))
    if rc != 0:
        raise StateError(
            f"cannot install the forwarding rules (nft exit {rc}): {err.splitlines()[-1:] or ''}",
            hint="The border router needs nftables and CAP_NET_ADMIN.",
        )


async def remove_forwarding_rules() -> None:
    await _nft(f"table ip6 {NFT_TABLE}\ndelete table ip6 {NFT_TABLE}\n")


# -- routes and sysctls ----------------------------------------------------------------------------


async def set_lan_route(lan_if: str, prefix: Net, present: bool) -> None:
    """The gateway's own on-link prefix on the LAN interface (the way back to LAN hosts that
    took an address from its PIO)."""

    def run() -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=lan_if)
            if not idx:
                return
            try:
                ipr.route("replace" if present else "del", dst=str(prefix), oif=idx[0],
                          family=socket.AF_INET6, priority=1024)  # fmt: skip
            except NetlinkError as exc:
                if present:
                    LOG.warning("cannot add the route %s dev %s: %s", prefix, lan_if, exc)

    await asyncio.to_thread(run)


SYSCTLS: Final = (
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/ipv6/conf/{lan}/accept_ra", "2"),
    ("net/ipv6/conf/{lan}/accept_ra_rt_info_max_plen", "64"),
)


def check_sysctls(
    lan_if: str, *, fix: bool, root: Path = Path("/proc/sys"), unreadable_ok: bool = False
) -> list[str]:
    """What is not as border routing needs it (each a sentence); with ``fix``, try to set it
    first. Inside the systemd unit /proc/sys is hidden (``ProcSubset=pid``) and read-only:
    deploy/sysctl.d sets the values and ``gwctl doctor`` checks them from outside, so the service
    passes ``unreadable_ok``."""
    problems: list[str] = []
    for path, want in SYSCTLS:
        p = root / path.format(lan=lan_if)
        try:
            have = p.read_text().strip()
        except OSError:
            if not unreadable_ok:
                problems.append(f"{p} cannot be read")
            continue
        if have == want:
            continue
        if fix:
            with contextlib.suppress(OSError):
                p.write_text(want + "\n")
                have = p.read_text().strip()
        if have != want:
            problems.append(
                f"{'.'.join(path.format(lan=lan_if).split('/'))} is {have}, needs {want}"
            )
    return problems


def describe_interface(name: str) -> dict[str, Any]:
    """Whether ``name`` exists and is up (for gwctl doctor)."""
    try:
        flags = int(Path(f"/sys/class/net/{name}/flags").read_text(), 16)
    except (OSError, ValueError):
        return {"exists": False, "up": False}
    return {"exists": True, "up": bool(flags & 0x1)}
