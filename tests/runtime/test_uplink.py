"""Unit tests of the uplink follower: the sans-IO layer (rtnetlink messages to values, the view of
links, addresses and default routes, the uplink choice) and the asyncio component on a fake
netlink backend. No root, no netlink socket.

Independent oracles:
- A frozen capture (``CAPTURE`` below): the rtnetlink multicast datagrams a Linux 6.18 kernel sent
  while iproute2 6.1 ran the listed commands in a fresh network namespace, each step followed by
  iproute2's own view (``ip -j link/addr show``, ``ip -j route show table main default``). The
  view built from the datagrams must agree with iproute2 after every step. The capture script is
  in docs/uplink.md.
- Messages built byte by byte from the Linux UAPI layouts (include/uapi/linux/netlink.h
  ``struct nlmsghdr``, rtnetlink.h ``struct rtmsg``/``rtattr``/``rtnexthop``, if_link.h
  ``struct ifinfomsg``/IFLA_*, if_addr.h ``struct ifaddrmsg``/IFA_*), decoded by pyroute2.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import ipaddress
import json
import logging
import struct
import zlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from gateway.errors import ConfigError
from gateway.runtime.netlink import (
    AF_INET,
    AF_INET6,
    AddrEvent,
    LinkEvent,
    NetView,
    RouteEvent,
    parse_message,
)
from gateway.runtime.uplink import (
    CHANGE_ADDRESSES,
    CHANGE_INTERFACE,
    CHANGE_LINK,
    CHANGE_ROUTE,
    Uplink,
    UplinkChange,
    UplinkError,
    UplinkState,
    compute_state,
    diff,
    select_uplink,
)

# Frozen capture (see the module docstring): zlib-compressed JSON, base64. Do not regenerate
# from this project's code; re-run the capture script of docs/uplink.md instead.
CAPTURE = (
    "eNrtXe9vmzgY/lcQn3ZS29mGAMnpPnQ/Pky3rVNv03Q6VRMB00XLkiil3aap//vZgBNMQiBpQkjyWKpSA3792tiP38"
    "evbX6b3/h0xIdmz3QuqHdh2+dRcP7gdFzzzBxMpuP7mDNxczAx7uPBcBD/OjPU5XOR4oKcGcNBvz+JDCpiTKS6i/nk"
    "zuz999sc+v1Eskg8HIy+GX4YGvcTYsS/Jtx44PFXY8L51Bj537m4TkXa0I/926n/XaY3OyQN1CbLg+8Rj0Sc0NxzlF"
    "QFmjznEBIVQjd0+0TcU79CePLnqZRSof48D6Gvm6lG02ecZSrKEEWEiR82uy4vR8n1tVRP0uVzkfFcWib/D8jTQ0ev"
    "dvlq7KT8q7WkuUIymhU9DYmqFiFuxyUWzVQPCeGevJplSXLpZZzqKtnWYtHDINVLxi2R1rbn9y0rzV/FaV9PT7ket8"
    "LC/Sinj4gzT5fHurlyy/R+IR7pcZsU7gt9Ik/Ic7N4oMu3ma4PK9QPo4X7Vu4FyXhUKF/+BTq5ulLxjl7fzM035TRt"
    "h/HI6XLC/dCbXWd6b5KXA1EW6hKElgVHvvNjeC+ifbF+hspMhyAq49004jpiMLMdT8ONfDvvpm3f4U7kRPOKEX3Foq"
    "Jte0Eq3/MqwI9W/JKS+J4DzXr5DIerE6huz5K+X6iXZNjozHFMjaZe4EX5fCJbf28KimZ4XlGfCmv8ZCBd1N+TaNyV"
    "vx2apMnudrw0V1rz/TkC6XZa37SiPZHN2o9HOLecGu20Omj2l3qvM6yvkGPZ4glRUuYAexF2F6TtlJjGDY9ttO542t"
    "GxMjHV+RYUEHIsnhqXtuAh65jqVg1TncBUP1RTnfuBgN7Q6QtuC1MdpvrBmuoMpjpMdZjqMNURYKofkal+k/ex/Dal"
    "kyT1nAyiwSjkP80eFU9E0kFi9szhWNj24wmf3sV+LC+8uvr8XlyKhv5t4jB5e3X14cXly7/Nm8eznAyWk5G6WVYJeX"
    "F9dfnq5eU/H8XFd5/efnyj/j9PntRFW5po8lTRoj78MJwu1kHkfx8Mf0lX0ojHjkgyHAe+dC31erI8kymPBj+HfCQe"
    "Zt6ZeRcINcTdr+O72JRSkzqWYm8epf5Fx9Qdj6UDSvz9aejXiPgr+qXW9oRYVIfxup4QC/SqzfQKnhDQq6OgV9Zcjq"
    "JXLnU74mnxB3oFegV6BXqFAHp1YPRqA0+ItMdpialOYKpvzVSnBVOdFUx1ul1THZ4QmOpHYaozmOow1WGqw1RHgKl+"
    "VKZ69VaKdCNGtpWiow2NS7ZSRFEl1qhcaN40V5Dbhq0UmSq2YiVkTVbigJWAlSCAlYCVHB4r8RZYie+BlYCVgJUggJ"
    "Xsh5XYe2MlrD2shNVgJRSs5FBZCZY1gZUcBSvBsiawErASsBIEsJJjYiVt2DXy6UOdjR3JU2+vPr++/iL+XWfryGby"
    "97B/ROaXHGxGu+yCXLALSp4z2wj5g5GWSts6Yge5NiWbsxUFwoDp+8ROWxijiRkyG+my9hSkvCAlm6wQL3qCckeWlR"
    "111rfSMVv9Cj2tQGO6i2DOGFFMN+LlR5ktVdktxHN+tlpZp3dktlGYG49U1nxp1mQrWedKHeYMkJWlzo5QWJU1OnGz"
    "nbigtSYrJ2rei3WJzJ4LvB2O++Lhmrgg2g/thX2vR4Wa5LkzwwZjNA79sIgQ1W7w9IGsC5b2BTXhJLMnIvtSe3B/bn"
    "Db08FwWVE9NlelXpFoOejxDPR44XxHNlNp2+c5Vqlaep7jrmsf8HPw8LNKZF49HYB0uc7GsBYJi3QvgCYz3mgGvS2A"
    "Njcj6hWpHNCCbgpk6rcBQKtSFYAGQGsboNWVqyCtXKJsVRUAmdxJEDLkkX8/jI2HgT8nh2XE0Cr0U8fOiGGkiCFRKG"
    "mtQkk1+Z3xDgregX7Shn7yey7u3JaNX9RNz8y6iIjfijf3w/+Vrwn5FH/IXvDjQkc7d0r6mlbssv7mlvS3vp31N3+N"
    "/ubMJ9GVc6SCdlGMi+jv6O8r+vtZXoKzUoJWbk3Kmfmdx9NBIN6U6GGPNSZpWJHTPPODgE/iL4LZ/EV7RsxHotENHv"
    "gfDU7csAPkOQFZOXHD1uE53E/5jfpVPCcAyJ0uyLFaIHdmznqs2Yun9xxouhs0fcYuOsadMRRypj3j1eUrIxyPFlGy"
    "1hRJA9DhkSbmfBmmSICSB4CSAMUGTUxr6bS5IcvNp1MefhlGsSEMz5CLS4FQIWzS1rQO0Nb0VzsJrVUDRn7VW/oVOD"
    "eQRVO/asDwG3ESWhgwMGDsdcCwaprVc3Ta1K7G0NSGoSnkwzWXrmVbSBw3nTEN3PYsXeuWAFsD68dKs97R+rE1s97m"
    "gj0MC+0ZFoDhTWD4rhBYO2g+HP8YbXzUfOFLXmufX4kveT3tqPncoLd0T6ZKv6+TYip2ODlBzb1hCBuFhT2Z/oHWP0"
    "6K2c0eweoEqtloezLVbAz2ZK5+z9iTuafgr47zMuc2Qr36XDNsu7433pP5xHK0+aSYbvlE9ZFs3NlhUdnpFNU68qK2"
    "eKNGdVGPZPVnnaIeyY62nRaVnU5RrSMvamt3MNWCpWM5Anvm1u+UDzYNu/XrqNTw0rRaKjW7Q7qeSo3ucdz4e6xkyS"
    "Q5vsd6sJPkax9ciEnxdk6S+wf+HnBwYasmyQkmyTer71OdJF93ktonCJgU3/4k+VP7Mw4uXFw4lqzWenv57+vrorj3"
    "V+cvL6+v37y+FldXrvh6d56kXWc9WTGz5fL3coKhtgjpfvLkJUj4hO5+joW3C+yKbZddYQnSkbCrkveBJUhgV5uzq8"
    "VP6FLihliCBHaFJUhgW7usbyxBat/HqvAJXbASsBIEsBKwkn2ykkWfD+2DlYCVgJWAlYCVNMRK8F1ZmOpYnnVEpjqW"
    "Z8FUJ1ietTNTvW59Y3lWPdMNy7Ngmu/CVH9qf8byLHxXdvWqLHk435Kj+DY9FcrGqVDNbnjpVDAq62mMCs6PI2FUJe"
    "/jZJwfBIyqCUYF5wcYFZwfYFi7ZlhwfqxxKtTpLcliNVgJBSs5VFaytp8Hod2s5FADWMlBsBL4ecBK4OcBC4Gf5/RY"
    "Cds5K/EVmleNzAVfyQy94CuBr6QGusFX0jArOXVfSXfOSgQv0dBespIdjh61IZXVgFRM9GCiBwETPacMqbtbeNXIwq"
    "Wbx/8Baffi0g=="
)


@functools.cache
def load_capture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode("".join(CAPTURE))))
    return data


# ------------------------------------------------------------------- message builders (dicts)

NEW, DEL = False, True


def link(
    index: int,
    name: str | None = "eth0",
    *,
    up: bool = True,
    oper: str | int | None = "UP",
    deleted: bool = False,
    flags: int | None = None,
) -> dict[str, Any]:
    attrs: list[tuple[str, Any]] = []
    if name is not None:
        attrs.append(("IFLA_IFNAME", name))
    if oper is not None:
        attrs.append(("IFLA_OPERSTATE", oper))
    if flags is None:
        flags = 0x1043 if up else 0x1002  # UP|BROADCAST|RUNNING|MULTICAST, or BROADCAST|MULTICAST
    return {
        "header": {"type": 17 if deleted else 16, "flags": 0},
        "family": 0,
        "index": index,
        "flags": flags,
        "attrs": attrs,
    }


def addr(
    index: int,
    text: str,
    *,
    flags: int = 0x80,
    scope: int | None = None,
    deleted: bool = False,
    ifa_flags_attr: int | None = None,
) -> dict[str, Any]:
    iface = ipaddress.ip_interface(text)
    family = AF_INET if iface.version == 4 else AF_INET6
    if scope is None:
        scope = 253 if iface.ip.is_link_local else 0
    attrs: list[tuple[str, Any]] = [("IFA_ADDRESS", str(iface.ip))]
    if family == AF_INET:
        attrs.append(("IFA_LOCAL", str(iface.ip)))
    if ifa_flags_attr is not None:
        attrs.append(("IFA_FLAGS", ifa_flags_attr))
    return {
        "header": {"type": 21 if deleted else 20, "flags": 0},
        "family": family,
        "prefixlen": iface.network.prefixlen,
        "flags": flags & 0xFF,
        "scope": scope,
        "index": index,
        "attrs": attrs,
    }


def route(
    oif: int | None,
    gateway: str | None = "192.0.2.1",
    *,
    family: int = AF_INET,
    metric: int | None = None,
    table: int = 254,
    rtype: int = 1,
    dst_len: int = 0,
    deleted: bool = False,
    replace: bool = False,
    multipath: list[int] | None = None,
) -> dict[str, Any]:
    attrs: list[tuple[str, Any]] = [("RTA_TABLE", table)]
    if metric is not None:
        attrs.append(("RTA_PRIORITY", metric))
    if gateway is not None:
        attrs.append(("RTA_GATEWAY", gateway))
    if oif is not None:
        attrs.append(("RTA_OIF", oif))
    if multipath is not None:
        attrs.append(
            ("RTA_MULTIPATH", [{"oif": o, "flags": 0, "hops": 0, "attrs": []} for o in multipath])
        )
    return {
        "header": {"type": 25 if deleted else 24, "flags": 0x100 if replace else 0},
        "family": family,
        "dst_len": dst_len,
        "src_len": 0,
        "tos": 0,
        "table": min(table, 252),
        "proto": 3,
        "scope": 0,
        "type": rtype,
        "flags": 0,
        "attrs": attrs,
    }


def wanted(view: NetView) -> bool:
    """view.resync_wanted (through a call, so that mypy does not narrow it across feeds)."""
    return view.resync_wanted


def view_of(*msgs: dict[str, Any]) -> NetView:
    view = NetView()
    for m in msgs:
        view.feed(m)
    return view


def ip4(*texts: str) -> tuple[ipaddress.IPv4Interface, ...]:
    return tuple(ipaddress.IPv4Interface(t) for t in texts)


def ip6(*texts: str) -> tuple[ipaddress.IPv6Interface, ...]:
    return tuple(ipaddress.IPv6Interface(t) for t in texts)


# ------------------------------------------------------------ the frozen kernel capture


def test_capture_agrees_with_iproute2_after_every_step() -> None:
    capture = load_capture()
    marshal = MarshalRtnl()
    view = NetView()
    previous: int | None = None
    steps = capture["steps"]
    assert len(steps) == 14
    uplinks = []
    for step in steps:
        for datagram in step["datagrams"]:
            for msg in marshal.parse(bytes.fromhex(datagram)):
                view.feed(msg)
        oracle = step["iproute2"]
        label = step["label"]
        names = {link["ifindex"]: link["ifname"] for link in oracle["links"]}
        index_of = {name: index for index, name in names.items()}

        # links: the view knows the ones announced in the capture, with iproute2's name and state
        assert set(view.links) <= set(names), label
        for index, info in view.links.items():
            (olink,) = [x for x in oracle["links"] if x["ifindex"] == index]
            assert info.name == olink["ifname"], label
            assert info.operstate == olink["operstate"].lower(), label
            assert info.oper_up == ("UP" in olink["flags"] and olink["operstate"] == "UP"), label

        # addresses: every one, and the usable ones (global or link scope, neither tentative,
        # deprecated nor dadfailed) by iproute2's flags
        def iface(a: dict[str, Any]) -> Any:
            return ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")

        expected_all = {(a["ifindex"], iface(a)) for a in oracle["addrs"]}
        expected_usable = {
            (a["ifindex"], iface(a))
            for a in oracle["addrs"]
            if a["scope"] in ("global", "link")
            and not any(a.get(f) for f in ("tentative", "deprecated", "dadfailed"))
        }
        got_all = {(i, a.address) for i, t in view.addrs.items() for a in t.values()}
        got_usable = {(i, a.address) for i, t in view.addrs.items() for a in t.values() if a.usable}
        assert got_all == expected_all, label
        assert got_usable == expected_usable, label

        # default routes of the main table (iproute2 omits metric 0)
        expected_routes = {
            (
                4 if r["family"] == "-4" else 6,
                index_of[r["dev"]],
                r.get("gateway"),
                r.get("metric", 0),
            )
            for r in oracle["routes"]
        }
        got_routes = {
            (4 if r.family == AF_INET else 6, r.oifs[0], r.gateway, r.priority)
            for r in view.routes.values()
            if r.table == 254
        }
        assert got_routes == expected_routes, label

        # the uplink: the holder of a default route, else the previous one while it exists
        holders = {index for _, index, _, _ in expected_routes}
        assert len(holders) <= 1
        expected_index = holders.pop() if holders else (previous if previous in names else None)
        state = compute_state(view, "auto", previous)
        assert state.ifindex == expected_index, label
        if expected_index is not None:
            assert state.ifname == names[expected_index]
            assert set(state.addresses) == {a for i, a in expected_usable if i == expected_index}
            assert state.default_route_v4 == any(r[0] == 4 for r in expected_routes)
            assert state.default_route_v6 == any(r[0] == 6 for r in expected_routes)
        previous = state.ifindex
        uplinks.append(state)

    # spot checks a human can verify against the step labels
    by_label = {s["label"]: u for s, u in zip(steps, uplinks, strict=True)}
    both = by_label["ip -6 route add default via 2001:db8:1::1 dev up0"]
    assert both.ifname == "up0" and both.usable and both.default_route_v4 and both.default_route_v6
    assert both.ipv4 == ip4("192.0.2.10/24")
    assert both.ipv6 == ip6("2001:db8:1::10/64", "fe80::10/64")
    tentative = by_label["ip addr add 2001:db8:2::10/64 dev up0 (accept_dad=1: tentative)"]
    assert ipaddress.IPv6Interface("2001:db8:2::10/64") not in tentative.ipv6
    done = by_label["(2.5 s later: DAD done)"]
    assert ipaddress.IPv6Interface("2001:db8:2::10/64") in done.ipv6
    deprecated = by_label[
        "ip addr add 2001:db8:3::10/64 dev up0 nodad preferred_lft 0 (deprecated)"
    ]
    assert ipaddress.IPv6Interface("2001:db8:3::10/64") not in deprecated.ipv6
    # the kernel flushed the IPv4 default route with the last IPv4 address, without telling
    no_v4 = by_label["ip addr del 192.0.2.10/24 dev up0"]
    assert not no_v4.default_route_v4 and no_v4.default_route_v6 and no_v4.ipv4 == ()
    down = by_label["ip link set up0 down"]
    assert down.ifname == "up0" and not down.oper_up and not down.has_default_route
    assert down.operstate == "down" and not down.usable
    gone = by_label["ip link del up0"]
    assert not gone.present and gone.ifname is None


def test_capture_sets_resync_wanted_only_for_silent_side_effects() -> None:
    marshal = MarshalRtnl()
    view = NetView()
    flagged = []
    for step in load_capture()["steps"]:
        view.resync_wanted = False
        for datagram in step["datagrams"]:
            for msg in marshal.parse(bytes.fromhex(datagram)):
                view.feed(msg)
        flagged.append(view.resync_wanted)
    # link state changes (steps 2, 12, 13, 14) and the IPv4 address removal (step 11)
    assert [i + 1 for i, w in enumerate(flagged) if w] == [2, 11, 12, 13, 14]


# ------------------------------------------------------- messages built from the UAPI layouts


def rtattr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nlmsg(kind: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def test_uapi_link_message() -> None:
    # struct ifinfomsg {u8 family; u8 pad; u16 type; s32 index; u32 flags; u32 change}
    body = struct.pack("=BxHiII", 0, 1, 7, 0x11043, 0xFFFFFFFF)
    body += rtattr(3, b"wlan0\0")  # IFLA_IFNAME
    body += rtattr(16, bytes([5]))  # IFLA_OPERSTATE = IF_OPER_DORMANT
    (msg,) = MarshalRtnl().parse(nlmsg(16, body))
    event = parse_message(msg)
    assert event == LinkEvent(False, 7, "wlan0", 0x11043, "dormant")
    view = view_of()
    view.apply(event)
    assert not view.links[7].oper_up  # dormant: associated but not authenticated yet
    (msg,) = MarshalRtnl().parse(nlmsg(17, body))
    assert parse_message(msg) == LinkEvent(True, 7, "wlan0", 0x11043, "dormant")


def test_uapi_address_message_uses_ifa_flags_attribute() -> None:
    # struct ifaddrmsg {u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index}
    body = struct.pack("=BBBBI", AF_INET6, 64, 0x00, 0, 4)
    body += rtattr(1, ipaddress.IPv6Address("2001:db8:7::1").packed)  # IFA_ADDRESS
    body += rtattr(8, struct.pack("=I", 0x40 | 0x100))  # IFA_FLAGS: TENTATIVE|MANAGETEMPADDR
    (msg,) = MarshalRtnl().parse(nlmsg(20, body))
    event = parse_message(msg)
    assert event == AddrEvent(False, 4, ipaddress.IPv6Interface("2001:db8:7::1/64"), 0x140, 0)
    # IPv4: IFA_LOCAL is the local address, IFA_ADDRESS the peer of a point-to-point link
    body = struct.pack("=BBBBI", AF_INET, 32, 0x80, 0, 5)
    body += rtattr(1, ipaddress.IPv4Address("10.64.0.1").packed)
    body += rtattr(2, ipaddress.IPv4Address("10.64.0.2").packed)
    (msg,) = MarshalRtnl().parse(nlmsg(21, body))
    assert parse_message(msg) == AddrEvent(
        True, 5, ipaddress.IPv4Interface("10.64.0.2/32"), 0x80, 0
    )


def test_uapi_multipath_route_with_large_table() -> None:
    # struct rtmsg {u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags}
    body = struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, 252, 3, 0, 1, 0)
    body += rtattr(15, struct.pack("=I", 1000))  # RTA_TABLE beyond the 8-bit field
    body += rtattr(6, struct.pack("=I", 50))  # RTA_PRIORITY
    hops = b""
    for oif, gw in ((3, "192.0.2.1"), (9, "198.51.100.1")):
        inner = rtattr(5, ipaddress.IPv4Address(gw).packed)  # RTA_GATEWAY
        hops += struct.pack("=HBBi", 8 + len(inner), 0, 0, oif) + inner  # struct rtnexthop
    body += rtattr(9, hops)  # RTA_MULTIPATH
    (msg,) = MarshalRtnl().parse(nlmsg(24, body, flags=0x100))
    event = parse_message(msg)
    assert isinstance(event, RouteEvent)
    assert event.route.table == 1000 and event.route.priority == 50 and event.replace
    assert event.route.oifs == (3, 9) and event.route.is_default and event.route.gateway is None


def test_messages_we_do_not_follow_give_none() -> None:
    body = struct.pack("=BxxxiHBB", AF_INET6, 3, 0x80, 0, 1)  # struct ndmsg (RTM_NEWNEIGH 28)
    (msg,) = MarshalRtnl().parse(nlmsg(28, body))
    assert parse_message(msg) is None
    assert parse_message({}) is None
    assert parse_message({"header": {"type": 16}, "index": 0}) is None  # no such index
    assert (
        parse_message(
            {
                "header": {"type": 20},
                "family": AF_INET,
                "index": 2,
                "prefixlen": 24,
                "attrs": [("IFA_LOCAL", "not an address")],
            }
        )
        is None
    )
    assert parse_message({"event": "RTM_NEWLINK", "index": True}) is None  # bool is not an int
    assert parse_message(42) is None
    assert parse_message({"event": "RTM_NEWLINK", "index": 3, "flags": 1}) == LinkEvent(
        False, 3, None, 1, None
    )


# ------------------------------------------------------------------ the view and the choice


def test_auto_prefers_up_then_ipv4_then_metric_then_index() -> None:
    view = view_of(
        link(2, "eth0"),
        link(3, "wlan0"),
        link(4, "usb0"),
        route(3, metric=600),
        route(2, metric=100),
        route(4, "2001:db8::1", family=AF_INET6, metric=1),
    )
    assert select_uplink(view, "auto") == 2  # IPv4 before IPv6, then the lower metric
    view.feed(link(2, "eth0", up=False, oper="DOWN"))
    assert select_uplink(view, "auto") == 3  # an interface that is up wins
    view.feed(route(3, metric=600, deleted=True))
    assert select_uplink(view, "auto") == 4  # IPv6-only default route
    view.feed(route(2, metric=600))
    view.feed(link(2, "eth0"))
    view.feed(route(3, metric=600))
    assert select_uplink(view, "auto") == 2  # same metric: the lower index


def test_auto_ignores_loopback_other_tables_and_non_unicast() -> None:
    view = view_of(
        link(1, "lo", flags=0x49, oper="UNKNOWN"),
        link(5, "eth1"),
        route(1, None),  # a default route through lo
        route(5, table=100),  # policy routing table
        route(5, None, family=AF_INET6, rtype=7),  # unreachable default
        route(5, dst_len=24),  # not a default route: not even stored
    )
    assert select_uplink(view, "auto") is None
    assert compute_state(view, "auto") == UplinkState("auto")
    assert len(view.routes) == 3
    view.feed(route(None, None, multipath=[5, 7]))
    assert select_uplink(view, "auto") == 5  # a multipath default route counts for its hops


def test_auto_keeps_the_previous_uplink_when_no_default_route_is_left() -> None:
    view = view_of(link(3, "wlan0"), addr(3, "192.0.2.7/24"), route(3))
    state = compute_state(view, "auto")
    assert state.ifindex == 3 and state.default_route_v4
    view.feed(route(3, deleted=True))
    kept = compute_state(view, "auto", previous=state.ifindex)
    assert kept.ifindex == 3 and not kept.has_default_route and kept.usable
    assert compute_state(view, "auto", previous=None).ifindex is None
    view.feed(link(3, "wlan0", deleted=True))
    assert compute_state(view, "auto", previous=3) == UplinkState("auto")


def test_fixed_name_absent_then_present_and_renamed() -> None:
    view = view_of(link(2, "eth0"), route(2))
    absent = compute_state(view, "wlan0")
    assert absent == UplinkState("wlan0", ifname="wlan0") and not absent.present
    assert absent.operstate == "absent"
    view.feed(link(6, "wlan0", up=False, oper="DOWN"))
    present = compute_state(view, "wlan0")
    assert present.ifindex == 6 and not present.oper_up and not present.has_default_route
    view.feed(link(6, "wlan1"))  # renamed away
    assert not compute_state(view, "wlan0").present


def test_address_filtering() -> None:
    view = view_of(
        link(3, "wlan0"),
        addr(3, "192.0.2.7/24"),
        addr(3, "169.254.3.3/16", scope=253),
        addr(3, "2001:db8::7/64", flags=0x00),
        addr(3, "2001:db8::8/64", flags=0x40),  # tentative
        addr(3, "2001:db8::9/64", flags=0x20),  # deprecated
        addr(3, "2001:db8::a/64", flags=0x08),  # DAD failed
        addr(3, "2001:db8::b/64", flags=0, ifa_flags_attr=0x40),  # tentative, in IFA_FLAGS only
        addr(3, "fe80::7/64"),
        addr(3, "127.0.0.2/8", scope=254),  # host scope
    )
    state = compute_state(view, "wlan0")
    assert state.ipv4 == ip4("192.0.2.7/24", "169.254.3.3/16")
    assert state.ipv6 == ip6("2001:db8::7/64", "fe80::7/64")  # global first, then link-local
    view.feed(addr(3, "2001:db8::8/64", flags=0x80))  # DAD completed
    assert ipaddress.IPv6Interface("2001:db8::8/64") in compute_state(view, "wlan0").ipv6


def test_ipv4_routes_go_silently_with_the_last_ipv4_address_and_on_admin_down() -> None:
    view = view_of(
        link(3, "wlan0"),
        addr(3, "192.0.2.7/24"),
        addr(3, "192.0.2.8/24"),
        route(3),
        route(3, "fe80::1", family=AF_INET6, metric=1024),
    )
    view.feed(addr(3, "192.0.2.7/24", deleted=True))
    assert wanted(view)
    assert compute_state(view, "wlan0").default_route_v4  # another IPv4 address is left
    view.feed(addr(3, "192.0.2.8/24", deleted=True))
    state = compute_state(view, "wlan0")
    assert not state.default_route_v4 and state.default_route_v6
    view.feed(route(3))
    view.resync_wanted = False
    view.feed(link(3, "wlan0", up=False, oper="DOWN"))
    assert wanted(view)
    state = compute_state(view, "wlan0")
    assert not state.default_route_v4 and state.default_route_v6  # IPv6 routes are announced


def test_partial_link_updates_keep_what_they_do_not_carry() -> None:
    view = view_of(link(3, "wlan0"))
    view.resync_wanted = False
    # a wireless event: RTM_NEWLINK with the flags but without IFLA_OPERSTATE
    assert not view.feed(link(3, None, oper=None))
    assert not wanted(view)
    assert view.links[3].name == "wlan0" and view.links[3].operstate == "up"
    assert view.feed(link(3, None, oper="DORMANT"))
    assert wanted(view) and not view.links[3].oper_up
    # "unknown" counts as up when the kernel says the interface is running (e.g. tun devices)
    assert view_of(link(9, "tun0", oper="UNKNOWN")).links[9].oper_up
    assert not view_of(link(9, "tun0", oper="UNKNOWN", flags=0x1)).links[9].oper_up
    assert view_of(link(9, "x", oper=6)).links[9].operstate == "up"  # numeric IF_OPER_UP
    assert view_of(link(9, "x", oper="BOGUS")).links[9].operstate == "unknown"


def test_link_deletion_forgets_addresses_and_routes() -> None:
    view = view_of(link(3, "wlan0"), addr(3, "192.0.2.7/24"), route(3))
    assert view.feed(link(3, "wlan0", deleted=True))
    assert view.links == {} and view.addrs == {} and view.routes == {}
    assert not view.feed(link(3, "wlan0", deleted=True))


def test_route_replace_and_delete() -> None:
    view = view_of(link(2, "eth0"), link(3, "wlan0"), route(2, metric=100))
    view.feed(route(3, "192.0.2.254", metric=100, replace=True))
    assert select_uplink(view, "auto") == 3 and len(view.routes) == 1
    view.feed(route(3, "192.0.2.254", metric=100, deleted=True))
    assert view.routes == {}
    assert not view.feed(route(3, "192.0.2.254", metric=100, deleted=True))


def test_state_equality_diff_and_dict() -> None:
    a = UplinkState("auto", "wlan0", 3, True, "up", ip4("192.0.2.7/24"), (), True, False, 1.0)
    b = UplinkState("auto", "wlan0", 3, True, "up", ip4("192.0.2.7/24"), (), True, False, 2.0)
    assert a == b  # since is not compared
    c = UplinkState("auto", "eth0", 2, False, "down", (), ip6("fe80::1/64"), False, True, 3.0)
    assert diff(a, b) == frozenset()
    assert diff(a, c) == {CHANGE_INTERFACE, CHANGE_LINK, CHANGE_ADDRESSES, CHANGE_ROUTE}
    assert a.usable and not c.usable and a.has_default_route and c.has_default_route
    assert a.as_dict() == {
        "configured": "auto",
        "ifname": "wlan0",
        "ifindex": 3,
        "present": True,
        "oper_up": True,
        "operstate": "up",
        "ipv4": ["192.0.2.7/24"],
        "ipv6": [],
        "has_default_route": True,
        "default_route_v4": True,
        "default_route_v6": False,
        "usable": True,
        "since": 1.0,
    }
    json.dumps(c.as_dict())


@pytest.mark.parametrize("name", ["", "a" * 16, "eth/0", "eth 0", "eth0:1", ".", ".."])
def test_bad_configured_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        Uplink(name)


# ------------------------------------------------------------------------------------- fuzz

_NAMES = [
    "IFLA_IFNAME",
    "IFLA_OPERSTATE",
    "IFA_ADDRESS",
    "IFA_LOCAL",
    "IFA_FLAGS",
    "RTA_TABLE",
    "RTA_OIF",
    "RTA_GATEWAY",
    "RTA_PRIORITY",
    "RTA_MULTIPATH",
    "UNKNOWN",
]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.text(max_size=8)
    | st.sampled_from(["192.0.2.1", "2001:db8::1", "fe80::1", "UP", "DOWN", "eth0"])
)
_values = (
    _scalars
    | st.lists(_scalars, max_size=3)
    | st.lists(st.fixed_dictionaries({"oif": _scalars}), max_size=3)
)
_messages = st.fixed_dictionaries(
    {
        "header": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"type": st.sampled_from([16, 17, 20, 21, 24, 25, 28]), "flags": _values}
            ),
        ),
        "event": _values,
        "family": st.sampled_from([0, 2, 10, 7]) | _values,
        "index": st.integers(-2, 5) | _values,
        "flags": _values,
        "prefixlen": st.integers(-1, 129) | _values,
        "scope": _values,
        "dst_len": st.integers(-1, 33) | _values,
        "table": _values,
        "type": _values,
        "tos": _values,
        "attrs": st.lists(st.tuples(st.sampled_from(_NAMES), _values), max_size=6) | _values,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_messages, max_size=8), st.sampled_from(["auto", "eth0"]))
def test_fuzz_arbitrary_message_shapes_never_raise(msgs: list[dict[str, Any]], name: str) -> None:
    view = NetView()
    previous = None
    for m in msgs:
        view.feed(m)
        state = compute_state(view, name, previous)
        previous = state.ifindex
        json.dumps(state.as_dict())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_kernel_datagrams_never_raise(data: st.DataObject) -> None:
    datagrams = [bytes.fromhex(d) for s in load_capture()["steps"] for d in s["datagrams"]]
    marshal = MarshalRtnl()
    view = NetView()
    for raw in data.draw(st.lists(st.sampled_from(datagrams), min_size=1, max_size=8)):
        buf = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 6))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        try:
            msgs = list(marshal.parse(bytes(buf)))
        except Exception:  # pyroute2's own decoder may refuse; that is not our layer
            continue
        for m in msgs:
            view.feed(m)
        compute_state(view, "auto", None).as_dict()


# ------------------------------------------------------- the component on a fake backend


class FakeBackend:
    """A NetlinkBackend whose 'kernel' is a list of messages the test edits."""

    def __init__(self, kernel: list[dict[str, Any]]) -> None:
        self.kernel = kernel
        self.queue: asyncio.Queue[list[dict[str, Any]] | BaseException] = asyncio.Queue()
        self.subscribes = 0
        self.dumps = 0
        self.closed = False
        self.fail_subscribe: list[OSError] = []
        self.dump_gate: asyncio.Event | None = None
        self.dump_started = asyncio.Event()

    async def subscribe(self) -> None:
        self.subscribes += 1
        if self.fail_subscribe:
            raise self.fail_subscribe.pop(0)

    async def receive(self) -> list[dict[str, Any]]:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def dump(self) -> list[dict[str, Any]]:
        self.dumps += 1
        snapshot = list(self.kernel)
        self.dump_started.set()
        if self.dump_gate is not None:
            await self.dump_gate.wait()
        return snapshot

    async def close(self) -> None:
        self.closed = True

    def announce(self, *msgs: dict[str, Any]) -> None:
        """The kernel changes and tells (one datagram)."""
        self.kernel.extend(m for m in msgs if m["header"]["type"] in (16, 20, 24))
        self.queue.put_nowait(list(msgs))


def base_kernel() -> list[dict[str, Any]]:
    return [
        link(1, "lo", flags=0x49, oper="UNKNOWN"),
        link(3, "wlan0"),
        addr(3, "192.0.2.7/24"),
        route(3),
    ]


async def until(pred: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polling state the component owns
            await asyncio.sleep(0.01)


async def test_start_state_and_close() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake) as up:
        assert up.running
        assert up.state.ifname == "wlan0" and up.state.usable and up.state.default_route_v4
        assert fake.subscribes == 1 and fake.dumps == 1
        status = up.status()
        assert set(status) == {
            "configured",
            "ifname",
            "ifindex",
            "present",
            "oper_up",
            "operstate",
            "ipv4",
            "ipv6",
            "has_default_route",
            "default_route_v4",
            "default_route_v6",
            "usable",
            "since",
            "monitor",
        }
        assert set(status["monitor"]) == {
            "running",
            "events",
            "changes",
            "resyncs",
            "overruns",
            "errors",
        }
        json.dumps(status)
    assert fake.closed
    assert not up.status()["monitor"]["running"]


async def test_start_failure_is_a_clear_error() -> None:
    fake = FakeBackend([])
    fake.fail_subscribe.append(PermissionError(errno.EAFNOSUPPORT, "Address family not supported"))
    up = Uplink(backend=fake)
    with pytest.raises(UplinkError) as info:
        await up.start()
    assert info.value.code == "UPL001" and "AF_NETLINK" in info.value.hint
    assert fake.closed


async def test_burst_is_debounced_into_one_change() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.3, max_delay=2.0) as up:
        seen: list[Any] = []
        up.subscribe(seen.append)
        for i in range(10):  # ten datagrams, each handled by the reader on its own
            fake.announce(addr(3, f"198.51.100.{i + 1}/24"))
            await asyncio.sleep(0)
        await until(lambda: len(up.state.ipv4) == 11)
        await asyncio.sleep(0.4)
        assert up.counters["events"] == 10
        assert len(seen) == 1
        assert seen[0].changed == {CHANGE_ADDRESSES} and seen[0].rebind
        assert not seen[0].reconnect  # only new addresses: connections are unaffected
        assert len(seen[0].old.ipv4) == 1 and len(seen[0].new.ipv4) == 11
        assert up.status()["monitor"]["changes"] == 1


async def test_a_long_storm_still_publishes_within_max_delay() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.1, max_delay=0.2) as up:
        seen: list[Any] = []
        up.subscribe(seen.append)
        for i in range(30):  # an event every 30 ms for ~0.9 s: never 100 ms of quiet
            fake.announce(addr(3, f"198.51.100.{i + 1}/24"))
            await asyncio.sleep(0.03)
        assert len(seen) >= 2
        await until(lambda: len(up.state.ipv4) == 31)


async def test_irrelevant_events_do_not_notify() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        seen: list[Any] = []
        up.subscribe(seen.append)
        fake.announce(route(3, dst_len=24))  # a prefix route
        fake.announce(link(3, None, oper=None))  # a wireless event: nothing changes
        fake.announce(addr(7, "203.0.113.1/24"))  # another interface
        fake.announce({"header": {"type": 28}})  # a neighbour
        await until(lambda: up.counters["events"] == 4)
        await asyncio.sleep(0.1)
        assert seen == [] and fake.dumps == 1


async def test_enobufs_resynchronises_with_a_full_dump(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        seen: list[Any] = []
        up.subscribe(seen.append)
        # events were lost in the overrun: the kernel changed without a notification reaching us
        fake.kernel.append(addr(3, "2001:db8::7/64"))
        fake.queue.put_nowait(OSError(errno.ENOBUFS, "No buffer space available"))
        await until(lambda: seen)
        assert up.state.ipv6 == ip6("2001:db8::7/64")
        assert fake.subscribes == 2 and fake.dumps == 2
        assert up.counters["overruns"] == 1 and up.counters["errors"] == 0
        assert up.counters["resyncs"] == 2
    assert "overrun" in caplog.text


async def test_socket_error_reopens_with_backoff() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        fake.fail_subscribe.append(OSError(errno.EMFILE, "Too many open files"))
        fake.queue.put_nowait(ConnectionResetError(errno.ECONNRESET, "closed"))
        await until(lambda: fake.subscribes == 3 and fake.dumps == 2)
        assert up.counters["errors"] == 2
        fake.announce(addr(3, "192.0.2.8/24"))
        await until(lambda: len(up.state.ipv4) == 2)


async def test_unexpected_backend_exception_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        fake.queue.put_nowait(RuntimeError("decoder bug"))
        await until(lambda: fake.subscribes == 2)
        fake.announce(addr(3, "192.0.2.8/24"))
        await until(lambda: len(up.state.ipv4) == 2)
        assert up.counters["errors"] == 1 and up.running
    assert "decoder bug" in caplog.text


def test_reconnect_and_rebind_hints() -> None:
    a = UplinkState("auto", "wlan0", 3, True, "up", ip4("192.0.2.7/24"), (), True, False)
    more = UplinkState(
        "auto", "wlan0", 3, True, "up", ip4("192.0.2.7/24", "192.0.2.8/24"), (), True, False
    )
    fewer = UplinkChange(more, a, diff(more, a))
    assert fewer.rebind and fewer.reconnect
    assert fewer.lost_addresses == {ipaddress.IPv4Interface("192.0.2.8/24")}
    added = UplinkChange(a, more, diff(a, more))
    assert added.rebind and not added.reconnect and not added.lost_addresses
    flapped = UplinkChange(a, a, frozenset({CHANGE_LINK}))  # down and up again, coalesced
    assert flapped.reconnect and not flapped.rebind
    down = replace(a, oper_up=False, operstate="down")
    assert not UplinkChange(a, down, diff(a, down)).reconnect  # nothing to reconnect over yet


async def test_events_during_a_dump_are_replayed_over_it() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        fake.dump_gate = asyncio.Event()
        fake.dump_started.clear()
        fake.queue.put_nowait(OSError(errno.ENOBUFS, "No buffer space available"))
        await fake.dump_started.wait()  # the snapshot is taken ...
        fake.announce(addr(3, "192.0.2.9/24"))  # ... then the kernel changes and tells
        await until(lambda: up.counters["events"] == 1)
        fake.dump_gate.set()
        await until(lambda: up.counters["resyncs"] == 2)
        await until(lambda: ipaddress.IPv4Interface("192.0.2.9/24") in up.state.ipv4)


async def test_link_change_triggers_a_confirming_resync() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        # the kernel drops the IPv4 default route without RTM_DELROUTE when the link goes down
        fake.kernel[:] = [m for m in fake.kernel if m["header"]["type"] != 24]
        fake.announce(link(3, "wlan0", up=False, oper="DOWN"))
        await until(lambda: not up.state.oper_up)
        await until(lambda: fake.dumps == 2)
        assert not up.state.has_default_route


async def test_periodic_resync_heals_silent_drift() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, resync_interval=0.1) as up:
        fake.kernel.append(addr(3, "192.0.2.99/24"))  # never announced
        await until(lambda: len(up.state.ipv4) == 2)
        assert fake.dumps >= 2


async def test_dump_failure_is_retried() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        real_dump = fake.dump
        failures = [OSError(errno.EBUSY, "Device or resource busy")]

        async def flaky_dump() -> list[dict[str, Any]]:
            if failures:
                raise failures.pop()
            return await real_dump()

        fake.dump = flaky_dump  # type: ignore[method-assign]
        fake.kernel.append(addr(3, "192.0.2.77/24"))
        fake.queue.put_nowait(OSError(errno.ENOBUFS, "No buffer space available"))
        await until(lambda: len(up.state.ipv4) == 2)
        assert up.counters["errors"] == 1


async def test_auto_switches_interface_and_fixed_name_appears() -> None:
    fake = FakeBackend(base_kernel())
    async with (
        Uplink(backend=fake, debounce=0.02) as auto,
        Uplink("eth1", backend=FakeBackend(base_kernel()), debounce=0.02) as fixed,
    ):
        assert not fixed.state.present and fixed.state.ifname == "eth1"
        fake.announce(link(5, "eth1"), addr(5, "203.0.113.5/24"), route(5, metric=0))
        fake.announce(route(3, deleted=True))
        await until(lambda: auto.state.ifname == "eth1")
        assert auto.state.ipv4 == ip4("203.0.113.5/24") and auto.state.default_route_v4
        fixed_backend = fixed._backend
        assert isinstance(fixed_backend, FakeBackend)
        fixed_backend.announce(link(5, "eth1"))
        await until(lambda: fixed.state.present)
        assert fixed.state.ifindex == 5


async def test_changes_iterator_coalesces_and_keeps_what_changed() -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        with up.changes() as changes:
            fake.announce(link(3, "wlan0", up=False, oper="DOWN"))
            await until(lambda: not up.state.oper_up)
            fake.kernel.append(route(3))
            fake.announce(link(3, "wlan0"), route(3))
            await until(lambda: up.state.oper_up and up.state.has_default_route)
            change = await anext(changes)
            # the outage is over, but the consumer still learns that the link went away
            assert CHANGE_LINK in change.changed and change.old.oper_up and change.new.oper_up
            assert change.reconnect
            nothing = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(0.05)
            assert not nothing.done()
        with pytest.raises(StopAsyncIteration):  # closing the subscription ends the iteration
            await asyncio.wait_for(nothing, 1)


async def test_close_ends_iterators_and_wait_for() -> None:
    fake = FakeBackend(base_kernel())
    up = Uplink(backend=fake, debounce=0.02)
    await up.start()
    got: list[Any] = []

    async def consume() -> None:
        async for change in up.changes():
            got.append(change)

    consumer = asyncio.ensure_future(consume())
    waiter = asyncio.ensure_future(up.wait_for(lambda s: s.ifname == "nope"))
    await asyncio.sleep(0.02)
    await up.close()
    await asyncio.wait_for(consumer, 1)
    with pytest.raises(UplinkError):
        await asyncio.wait_for(waiter, 1)
    with pytest.raises(TimeoutError):
        await Uplink(backend=FakeBackend(base_kernel())).wait_for(lambda s: False, timeout=0.05)
    await up.close()  # idempotent
    assert [c async for c in up.changes()] == []


async def test_failing_and_async_callbacks_do_not_break_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeBackend(base_kernel())
    async with Uplink(backend=fake, debounce=0.02) as up:
        seen: list[Any] = []

        def broken(change: Any) -> None:
            raise RuntimeError("subscriber bug")

        async def wrong_kind(change: Any) -> None:
            seen.append("never")

        up.subscribe(broken)
        up.subscribe(wrong_kind)
        unsubscribe = up.subscribe(seen.append)
        with caplog.at_level(logging.ERROR):
            fake.announce(addr(3, "192.0.2.8/24"))
            await until(lambda: len(seen) == 1)
        assert "subscriber bug" in caplog.text and "Uplink.changes()" in caplog.text
        unsubscribe()
        unsubscribe()
        fake.announce(addr(3, "192.0.2.9/24"))
        await until(lambda: len(up.state.ipv4) == 3)
        await asyncio.sleep(0.05)
        assert len(seen) == 1
