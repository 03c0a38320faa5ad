"""Unit tests of the building blocks: Network Data codec and the leader's versions and
contexts, key management and replay windows, snapshots, trickle, addressing, TMF TLVs, MPL,
the EID cache."""

from __future__ import annotations

import ipaddress
import random

import pytest

from gateway.crypto.thread_keys import network_key_derivation
from gateway.errors import ParseError
from gateway.thread.network.addressing import (
    MeshAddresses,
    address_registration,
    all_thread_nodes,
    registered_addresses,
    rloc16_of,
)
from gateway.thread.network.errors import InvalidSnapshot
from gateway.thread.network.ip6 import AddressResolver, MplOption, add_mpl, strip_mpl
from gateway.thread.network.netdata import (
    BorderRouterEntry,
    BorderRouterTlv,
    CommissioningDataTlv,
    ContextTlv,
    HasRouteEntry,
    HasRouteTlv,
    NetworkDataLeader,
    OwnPrefix,
    PrefixTlv,
    ServerTlv,
    ServiceTlv,
    UnknownTlv,
    parse_network_data,
    serial_newer,
)
from gateway.thread.network.router import RouterCore
from gateway.thread.network.security import KeyManager, NeighborCounters, link_quality
from gateway.thread.network.snapshot import RouterSnapshot
from gateway.thread.network.tmf_tlvs import AddressTlvs, parse_thread_tlvs
from gateway.thread.network.trickle import Trickle
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.lowpan import LowpanContext
from gateway.wire.mac802154 import ExtAddress
from tests.thread.network.world import GATEWAY_EXT, NetWorld, dataset

Addr = ipaddress.IPv6Address

# src/cli/cli_network_data.cpp's `netdata show -x` example, decoded in the fact sheet §8.1
OT_NETDATA = bytes.fromhex("08040b02174703140040fd00deadbeefcafe0504dc00330007021140")


def test_the_openthread_netdata_example_decodes_and_round_trips() -> None:
    nd = parse_network_data(OT_NETDATA)
    assert nd.to_bytes() == OT_NETDATA
    comm, prefix = nd.tlvs
    assert isinstance(comm, CommissioningDataTlv) and comm.value == bytes.fromhex("0b021747")
    assert not comm.stable
    assert isinstance(prefix, PrefixTlv) and prefix.stable
    assert prefix.network == ipaddress.IPv6Network("fd00:dead:beef:cafe::/64")
    br = prefix.sub_tlvs[0].entries[0]  # type: ignore[union-attr]
    assert br == BorderRouterEntry(0xDC00, 0x3300)
    # paros med: P, S (SLAAC, "a"), R, O; medium preference
    f = br.flags
    assert f & br.PREFERRED and f & br.SLAAC and f & br.DEFAULT_ROUTE and f & br.ON_MESH
    assert br.preference == 0 and not f & br.DHCP
    assert prefix.context == ContextTlv(1, 64, True, True)
    assert nd.contexts() == {1: LowpanContext(ipaddress.IPv6Network("fd00:dead:beef:cafe::/64"))}
    # stable subset (§8.3): the commissioning data goes, the BR RLOC16 becomes 0xFFFE
    assert nd.stable_subset().to_bytes() == bytes.fromhex(
        "03140040fd00deadbeefcafe0504fffe330007021140"
    )


def test_stable_subset_rules_for_dhcp_entries_routes_and_servers() -> None:
    nd = parse_network_data(
        PrefixTlv.of(
            "fd00:1::/64",
            [
                BorderRouterTlv((BorderRouterEntry(0x0400, BorderRouterEntry.DHCP),), True),
                HasRouteTlv((HasRouteEntry(0x0400, 0),), True),
                HasRouteTlv((HasRouteEntry(0x0800, 0),), False),
                ContextTlv(2, 64, True, True),
            ],
        ).to_bytes()
        + ServiceTlv(
            3, b"\x5c", sub_tlvs=(ServerTlv(0x0400, b"\x01", True),), stable=True
        ).to_bytes()
        + ServiceTlv(4, b"\x5d", sub_tlvs=(ServerTlv(0x0400, b"", False),), stable=True).to_bytes()
    )
    st = nd.stable_subset()
    p = st.prefixes[0]
    assert [type(s).__name__ for s in p.sub_tlvs] == [
        "BorderRouterTlv",
        "HasRouteTlv",
        "ContextTlv",
    ]
    assert p.sub_tlvs[0].entries[0].rloc16 == 0xFC02  # type: ignore[union-attr]  # DHCP agent ALOC + CID
    assert p.sub_tlvs[1].entries[0].rloc16 == 0xFFFE  # type: ignore[union-attr]
    (svc,) = st.services  # the second service had no stable server: gone
    assert svc.service_id == 3 and svc.sub_tlvs[0].server16 == 0xFC13  # type: ignore[union-attr]
    assert parse_network_data(st.to_bytes()) == st


@pytest.mark.parametrize(
    "raw",
    [
        "03",
        "0305",
        "0301ff",
        "0303" + "0081ff",
        "03040040fd00",
        "0105ffff",
        "0b03ff0001",
        "0b0600" + "00000000",
        "0b0280",
        "0b0580ff00",
        "03060010fd000503",  # BR sub-TLV of 3 bytes
        "03060010fd000401",  # Has Route of 1 byte
        "03060010fd000700",  # context too short
        "03060010fd000702",
    ],  # context truncated
)
def test_malformed_network_data_is_a_parse_error(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_network_data(bytes.fromhex(raw))


def test_network_data_oversize_and_unknown_tlvs() -> None:
    with pytest.raises(ParseError):
        parse_network_data(bytes(256))
    odd = bytes.fromhex("7f02abcd0d03010203")  # type 63 stable, type 6 (Server) at top level
    nd = parse_network_data(odd)
    assert all(isinstance(t, UnknownTlv) for t in nd.tlvs) and nd.to_bytes() == odd


def test_leader_versions_and_context_ids() -> None:
    ld = NetworkDataLeader(0x0400, random.Random(1), data_version=254, stable_data_version=10)
    assert ld.set_commissioning_data(bytes.fromhex("0b020001"))
    assert ld.versions() == (255, 10)
    assert not ld.set_commissioning_data(bytes.fromhex("0b020001"))  # no change, no bump
    omr = OwnPrefix(ipaddress.IPv6Network("fd11:22::/64"), br_flags=0x3300)
    route = OwnPrefix(ipaddress.IPv6Network("fd33::/64"), route_flags=0)
    assert ld.set_own_prefixes([omr, route], 0.0)
    assert ld.versions() == (0, 11)  # 8-bit serial wrap; stable data changed too
    ctx = ld.full.prefixes[0].context
    assert ctx is not None and ctx.context_id == 1 and ctx.compress  # lowest free, C = 1
    assert ld.full.prefixes[1].context is None  # Has-Route-only prefixes get none
    assert ld.contexts()[1].prefix == omr.network
    assert not any(
        p.network.network_address.packed[:8] == bytes.fromhex("fddead00beef0000")
        for p in ld.full.prefixes
    )
    # the BR goes: its context stays with C = 0 for 300 s, then is deleted
    assert ld.set_own_prefixes([route], 10.0)
    kept = [p for p in ld.full.prefixes if p.context is not None]
    assert len(kept) == 1 and kept[0].context is not None and not kept[0].context.compress
    assert ld.next_timeout() == 310.0
    assert not ld.poll(309.0) and ld.poll(310.0)
    assert all(p.context is None for p in ld.full.prefixes)
    assert serial_newer(0, 255) and not serial_newer(255, 0) and not serial_newer(5, 5)


def test_key_manager_matches_the_spec_vectors_and_resolves_key_indexes() -> None:
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    km = KeyManager(key, 1)
    # Thread 1.1 §7.1.4 vectors, as tests/crypto checks them
    assert km.mle_key.hex() == "8f4cd1a27d95c07d12db8974bd615c13"
    assert km.mac_key.hex() == "9be0d1af7bd87350deabcdd07febb9d5"
    assert km.keys_for(2) == network_key_derivation(key, 2)
    assert km.mac_key_index == 2
    assert [km.resolve_mac_key_index(i) for i in (1, 2, 3, 4)] == [0, 1, 2, None]
    assert "00112233" not in repr(km) and key.hex() not in repr(km)


def test_key_switch_guard_and_rotation() -> None:
    km = KeyManager(bytes(16), 5, mle_frame_counter=77, mac_frame_counter=88, rotation_hours=2)
    km.start(0.0)
    assert not km.guard_active(0.0)
    assert (
        km.process_peer_key_sequence(6, 1.0, authoritative=False, from_valid_neighbor=True)
        == "switched"
    )
    assert (km.key_sequence, km.mle_frame_counter, km.mac_frame_counter) == (6, 0, 0)
    assert km.guard_active(1.0) and km.guard_time == 1 * 3600.0  # 93 % of 2 h, whole hours
    assert (
        km.process_peer_key_sequence(7, 2.0, authoritative=False, from_valid_neighbor=True)
        == "guarded"
    )
    assert (
        km.process_peer_key_sequence(9, 2.0, authoritative=False, from_valid_neighbor=True)
        == "resync"
    )
    assert (
        km.process_peer_key_sequence(7, 2.0, authoritative=False, from_valid_neighbor=False)
        == "ignored"
    )
    assert (
        km.process_peer_key_sequence(4, 2.0, authoritative=True, from_valid_neighbor=True)
        == "ignored"
    )
    assert (
        km.process_peer_key_sequence(9, 2.0, authoritative=True, from_valid_neighbor=True)
        == "switched"
    )
    assert km.key_sequence == 9
    assert km.next_timeout() == 2.0 + 7200.0
    assert km.poll(7202.0) and km.key_sequence == 10
    assert km.take_switches() == [6, 9, 10]


def test_neighbor_replay_windows() -> None:
    n = NeighborCounters(3)
    assert n.check(3, 10, mle=False) == "ok"
    n.accept(3, 10, mle=False)
    assert n.check(3, 10, mle=False) == "duplicate" and n.check(3, 9, mle=False) == "replay"
    assert n.check(3, 10, mle=True) == "ok"  # separate windows
    n.accept(3, 50, mle=True)
    assert n.check(3, 49, mle=True) == "replay" and n.check(3, 50, mle=True) == "replay"
    assert n.check(2, 1000, mle=False) == "old_key"
    assert n.check(4, 0, mle=False) == "ok"
    n.accept(4, 0, mle=False)  # a larger key sequence resets both windows
    assert (n.key_sequence, n.mle, n.mac) == (4, None, 1)
    assert [link_quality(m) for m in (0, 2, 3, 10, 11, 20, 21, 80)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_router_snapshot_round_trip_and_corruption() -> None:
    world = NetWorld(seed=61)
    world.add_child(rx_on=True, timeout=60)
    world.run_until(lambda: len(world.attached()) == 1, 10)
    snap = world.parent.snapshot()
    d = snap.to_dict()
    assert RouterSnapshot.from_dict(d) == snap
    assert d["role"] == "leader" and len(d["children"]) == 1
    assert world.parent.ml_eid_iid.hex() == d["ml_eid_iid"]
    bad_cases: list[object] = [
        None,
        [],
        {**d, "version": 2},
        {**d, "role": "child"},
        {**d, "router_id": 63},
        {**d, "partition_id": -1},
        {**d, "partition_id": 1 << 32},
        {**d, "ml_eid_iid": "zz"},
        {**d, "children": [{"ext": "00"}]},
        {**d, "children": [d["children"][0]] * 2},
        {**d, "children": "x"},
        {**d, "key_sequence": True},
    ]
    for bad in bad_cases:
        with pytest.raises(InvalidSnapshot):
            RouterSnapshot.from_dict(bad)


def test_restored_leader_keeps_its_role_and_the_id_sequence_moves_past_the_reserve() -> None:
    ds = dataset(seed=62)
    core = RouterCore(ds, GATEWAY_EXT, rng=random.Random(1))
    core.start(0.0)
    first = core.snapshot()
    seen = {core.id_sequence}
    t = 0.0
    reserve_events = 0
    while t < 400:
        nt = core.next_timeout()
        assert nt is not None
        t = nt
        core.poll(t)
        core.frames_to_send()
        seen.add(core.id_sequence)
        reserve_events += sum(1 for e in core.events() if "reserve" in e.text)
    assert reserve_events >= 2  # every 16 increments (160 s) the reserve moves
    snap = core.snapshot()
    sent_max = core.id_sequence
    assert ((snap.id_sequence - sent_max) & 0xFF) <= 16
    again = RouterCore(ds, GATEWAY_EXT, rng=random.Random(2), saved=snap)
    again.start(500.0)
    assert (again.router_id, again.partition_id, again.weighting, again.leader_router_id) == (
        core.router_id,
        core.partition_id,
        core.weighting,
        core.leader_router_id,
    )
    assert serial_newer(again.id_sequence, sent_max)  # newer than anything sent before
    assert again.netdata.versions() == tuple((v + 1) & 0xFF for v in core.netdata.versions())
    assert again.ml_eid_iid == core.ml_eid_iid and first.router_id == snap.router_id
    fresh = RouterCore(ds, GATEWAY_EXT, rng=random.Random(3))
    fresh.start(0.0)
    assert fresh.partition_id != core.partition_id or fresh.router_id != core.router_id


def test_trickle_fires_once_per_interval_in_its_second_half() -> None:
    tr = Trickle(1.0, 8.0, random.Random(3))
    tr.start(0.0)
    fires = []
    t = 0.0
    while t < 60:
        nt = tr.next_timeout()
        assert nt is not None
        t = nt
        if tr.poll(t):
            fires.append(t)
    assert 0.5 <= fires[0] < 1.0
    assert all(b - a <= 16.0 for a, b in zip(fires, fires[1:], strict=False))
    assert tr.interval == 8.0
    tr.reset(60.0)
    assert tr.interval == 1.0 and tr.next_timeout() is not None and tr.next_timeout() < 61.0  # type: ignore[operator]


def test_addressing_helpers() -> None:
    prefix = bytes.fromhex("fd00000000000001")
    ext = ExtAddress.from_hex("1234567890abcdef")
    a = MeshAddresses(prefix, ext, bytes(range(8)), rloc16_of(3, 1))
    assert str(a.link_local) == "fe80::1034:5678:90ab:cdef"
    assert str(a.rloc) == "fd00::1:0:ff:fe00:c01"
    assert a.leader_aloc is None
    assert str(all_thread_nodes(prefix, 3)) == "ff33:40:fd00::1:0:1"
    assert Addr("ff02::2") not in a.multicast()  # an MTD does not listen to all-routers
    other = Addr("fd11:2200::5")
    ctx = {1: LowpanContext(ipaddress.IPv6Network("fd11:2200::/64"))}
    reg = address_registration(a.ml_eid, [other, Addr("ff35::1"), a.link_local], contexts=ctx)
    assert [e.context_id for e in reg.entries] == [0, 1, None]
    iid, others = registered_addresses(reg, prefix, ctx)
    assert iid == bytes(range(8)) and others == [other, Addr("ff35::1")]
    iid2, others2 = registered_addresses(reg, prefix, {})  # unknown context: skipped
    assert iid2 == bytes(range(8)) and others2 == [Addr("ff35::1")]


def test_tmf_address_tlvs() -> None:
    f = AddressTlvs(
        target=Addr("fd00::1"), ml_eid_iid=bytes(8), rloc16=0x400, last_transaction_time=7
    )
    payload = b"".join(t.to_bytes() for t in f.to_tlvs())
    assert payload.startswith(
        bytes.fromhex("0010") + Addr("fd00::1").packed + bytes.fromhex("0308")
    )
    assert parse_thread_tlvs(payload) == f
    with pytest.raises(ParseError):
        parse_thread_tlvs(bytes.fromhex("0002abcd"))  # a 2-byte Target EID
    with pytest.raises(ParseError):
        parse_thread_tlvs(bytes.fromhex("0205"))


def test_mpl_option_insert_and_strip() -> None:
    pkt = Ipv6Packet.udp(Addr("fd00::1"), Addr("ff03::1"), 1, 2, b"hello")
    for opt in (MplOption(9, 0x0401), MplOption(200, None)):
        with_mpl = add_mpl(pkt, opt)
        assert with_mpl.next_header == 0 and len(with_mpl.payload) == len(pkt.payload) + 8
        got, inner = strip_mpl(with_mpl)
        assert got == opt and inner == pkt
    assert strip_mpl(pkt) == (None, pkt)
    bad_hbh = (
        "1100",
        "1101000000000000",
        "11006d0500000000",
        "11006d0100000000",
        "11006d02c0010000",
        "11006d0240010000",
    )
    for raw in bad_hbh:
        bad = Ipv6Packet(pkt.src, pkt.dst, 0, bytes.fromhex(raw))
        with pytest.raises(ParseError):
            strip_mpl(bad)


def test_eid_cache_is_bounded_and_backs_off() -> None:
    r = AddressResolver(max_entries=4)
    pkt = Ipv6Packet.udp(Addr("fd00::1"), Addr("fd00::2"), 1, 2, b"")
    for i in range(10):
        assert r.resolve(Addr(f"fd00::{i + 10:x}"), pkt, 0.0)
    assert len(r.entries()) == 4
    for _ in range(10):
        r.resolve(Addr("fd00::13"), pkt, 0.0)  # at most 4 held per query
    assert r.poll(3.0) == 4 + 3 * 1
    assert not r.resolve(Addr("fd00::13"), pkt, 4.0)  # in back-off
    assert r.resolve(Addr("fd00::13"), pkt, 18.1)  # retry after 15 s
    assert r.notify(Addr("fd00::13"), 0x401, None) == [pkt]
    assert r.lookup(Addr("fd00::13")) == 0x401
    r.remove_rloc16(0x401)
    assert r.lookup(Addr("fd00::13")) is None
