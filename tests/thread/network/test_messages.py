"""The parent core's MLE messages, byte for byte against the fact sheet's TLV lists
(reference/thread-mle-network.md §4.2, §4.4, §5.1, §5.3, §7.5)."""

from __future__ import annotations

import random

import pytest

from gateway.thread.link import LinkSecurity
from gateway.thread.network.netdata import CommissioningDataTlv, parse_network_data
from gateway.thread.network.router import RouterConfig, RouterCore
from gateway.wire.dataset import ActiveDataset
from gateway.wire.mac802154 import BROADCAST, ExtAddress, FrameVersion
from gateway.wire.meshcop import ActiveTimestampTlv as McActiveTimestamp
from gateway.wire.mle import (
    ActiveDatasetTlv,
    Address16Tlv,
    AddressRegistrationTlv,
    ChallengeTlv,
    ConnectivityTlv,
    LeaderDataTlv,
    LinkFrameCounterTlv,
    LinkMarginTlv,
    MleCommand,
    MleFrameCounterTlv,
    MleMessage,
    MleTlvType,
    ModeTlv,
    NetworkDataTlv,
    ResponseTlv,
    Route64Tlv,
    SourceAddressTlv,
    SupervisionIntervalTlv,
    TimeoutTlv,
    TlvRequestTlv,
    VersionTlv,
)
from tests.thread.network.helpers import Peer, ll, read_mle, tlv_types
from tests.thread.network.world import GATEWAY_EXT, dataset

T = MleTlvType
NOW = 100.0


def leader(ds: ActiveDataset | None = None, **kw: object) -> RouterCore:
    core = RouterCore(
        ds or dataset(),
        GATEWAY_EXT,
        rng=random.Random(3),
        config=RouterConfig(router_id=21, **kw),  # type: ignore[arg-type]
    )
    core.start(NOW)
    core.frames_to_send()
    core.events()
    return core


def exchange_parent_request(
    core: RouterCore, peer: Peer, *, scan: int = 0x80, mode: int = 0x0C, now: float = NOW
):
    for f in peer.mle(peer.parent_request(scan=scan, mode=mode)):
        assert core.frame_received(f, now, rssi=-20)
    assert not [
        m for m in read_mle(core.frames_to_send(), peer.keys) if m.message.command == 10
    ]  # answered only after a random delay
    core.poll(now + 1.0)
    out = core.frames_to_send()
    msgs = [m for m in read_mle(out, peer.keys) if m.message.command == MleCommand.PARENT_RESPONSE]
    assert len(msgs) == 1
    return msgs[0], out


def test_parent_response_tlvs_in_openthread_order_and_values() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0011"))
    pr, frames = exchange_parent_request(core, peer)
    # §4.2: Source Address, Leader Data, Link FC, MLE FC, Response, Challenge, Link Margin,
    # Connectivity, Version
    assert tlv_types(pr) == [
        T.SOURCE_ADDRESS,
        T.LEADER_DATA,
        T.LINK_FRAME_COUNTER,
        T.MLE_FRAME_COUNTER,
        T.RESPONSE,
        T.CHALLENGE,
        T.LINK_MARGIN,
        T.CONNECTIVITY,
        T.VERSION,
    ]
    m = pr.message
    assert m.get(SourceAddressTlv).value == 21 << 10 == 0x5400
    ld = m.get(LeaderDataTlv)
    assert ld is not None and ld.partition_id == core.partition_id
    assert (ld.weighting, ld.leader_router_id) == (64, 21)
    assert (ld.data_version, ld.stable_data_version) == core.netdata.versions()
    assert m.get(LinkFrameCounterTlv).value == core.mac_frame_counter
    # OpenThread puts the counter this very message is secured with
    assert m.get(MleFrameCounterTlv).value == pr.frame_counter
    assert m.get(ResponseTlv).value == peer.challenge
    assert len(m.get(ChallengeTlv).value) == 8
    assert m.get(LinkMarginTlv).value == 80  # RSS -20 dBm over a -100 dBm noise floor
    conn = m.get(ConnectivityTlv)
    assert conn is not None
    # the lone leader example of §4.2: 00 00 00 00 00 SS 01 05 00 01
    assert conn.value_bytes() == bytes.fromhex(f"0000000000{core.id_sequence:02x}01050001")
    assert m.get(VersionTlv).value == 5
    # unicast to the child's link-local, MAC ext -> ext, 2006, no MAC security (§3)
    nf = [f for f in frames if f.what == "parent response"]
    assert len(nf) == 1 and nf[0].tx.security is LinkSecurity.NONE
    frame = nf[0].tx.frame
    assert frame.src == GATEWAY_EXT and frame.dst == peer.ext
    assert frame.version == FrameVersion.V2006 and frame.ack_request
    assert pr.dst == ll(peer.ext) and pr.src == ll(GATEWAY_EXT)
    assert pr.datagram.packet.hop_limit == 255


def test_parent_response_delay_is_random_within_the_scan_mask_bound() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0012"))
    for f in peer.mle(peer.parent_request(scan=0x80)):
        core.frame_received(f, NOW)
    c = core.children_table.get(peer.ext)
    assert c is not None and c.parent_response_due is not None
    assert NOW + 0.001 <= c.parent_response_due <= NOW + 0.5
    peer2 = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0013"))
    dues = []
    for i in range(40):
        p = Peer(core.dataset, ExtAddress((0x10 + i).to_bytes(8, "big")))
        for f in p.mle(p.parent_request(scan=0xC0)):
            core.frame_received(f, NOW)
        c2 = core.children_table.get(p.ext)
        if c2 is not None and c2.parent_response_due is not None:
            dues.append(c2.parent_response_due - NOW)
    assert dues and max(dues) <= 1.0 and max(dues) > 0.5  # R+E: 1..1000 ms
    assert peer2.ext not in [c.ext for c in core.children_table]


def attach(
    core: RouterCore,
    peer: Peer,
    *,
    mode: int = 0x0C,
    sup: int | None = None,
    requests: tuple[int, ...] = (T.ADDRESS16, T.NETWORK_DATA),
    active_ts: bool = False,
):
    pr, _ = exchange_parent_request(core, peer, mode=mode)
    challenge = pr.message.get(ChallengeTlv).value
    req = peer.child_id_request(challenge, mode=mode, requests=requests)
    tlvs = list(req.tlvs)
    if sup is not None:
        tlvs.insert(6, SupervisionIntervalTlv(sup))
    if active_ts:
        assert core.dataset.active_timestamp is not None
        from gateway.wire.mle import ActiveTimestampTlv

        tlvs.append(ActiveTimestampTlv(core.dataset.active_timestamp))
    for f in peer.mle(MleMessage(MleCommand.CHILD_ID_REQUEST, tuple(tlvs)), ll(GATEWAY_EXT)):
        core.frame_received(f, NOW + 1.1)
    return core.frames_to_send()


def test_child_id_response_for_a_med_without_active_timestamp() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0021"))
    out = attach(core, peer)
    msgs = [
        m for m in read_mle(out, peer.keys) if m.message.command == MleCommand.CHILD_ID_RESPONSE
    ]
    assert len(msgs) == 1
    r = msgs[0]
    # §4.4: Source Address, Leader Data, Active Timestamp, Address16, then the request list
    # (Network Data, Active Dataset since the child sent no timestamp), Address Registration
    assert tlv_types(r) == [
        T.SOURCE_ADDRESS,
        T.LEADER_DATA,
        T.ACTIVE_TIMESTAMP,
        T.ADDRESS16,
        T.NETWORK_DATA,
        T.ACTIVE_DATASET,
        T.ADDRESS_REGISTRATION,
    ]
    a16 = r.message.get(Address16Tlv)
    assert a16 is not None and a16.value == 0x5401  # first child ID under router 21
    # the Active Dataset TLV is the dataset without its timestamp, which is MLE TLV 22
    ads = r.message.get(ActiveDatasetTlv)
    assert ads is not None and b"\x0e\x08" not in ads.value[:2]
    assert core.dataset.active_timestamp is not None
    rebuilt = ActiveDataset.from_bytes(
        McActiveTimestamp(core.dataset.active_timestamp).to_bytes() + ads.value
    )
    assert rebuilt == core.dataset
    # Network Data: a child without the N bit gets the stable subset, which loses the
    # commissioning data; the mesh-local prefix never appears (§8.3, §8.5)
    assert r.message.get(NetworkDataTlv) == NetworkDataTlv(b"")
    # the echo carries the registered non-ML-EID addresses: none here
    assert r.message.get(AddressRegistrationTlv) == AddressRegistrationTlv(())
    # a 100+ byte message: MAC-secured 6LoWPAN fragments, direct to the rx-on child
    nfs = [f for f in out if f.what == "child id response"]
    assert len(nfs) >= 2 and all(f.tx.security is LinkSecurity.MAC for f in nfs)
    assert all(f.tx.frame.dst == peer.ext for f in nfs)
    c = core.children_table.get(peer.ext)
    assert c is not None and c.valid and c.rloc16 == 0x5401
    assert c.supervision_interval == 0  # Version 5 without the TLV: no supervision (§4.3)


def test_a_child_with_the_n_bit_gets_the_full_network_data() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0025"))
    out = attach(core, peer, mode=0x0D)
    r = [m for m in read_mle(out, peer.keys) if m.message.command == MleCommand.CHILD_ID_RESPONSE]
    nd = parse_network_data(r[0].message.get(NetworkDataTlv).value)  # type: ignore[union-attr]
    assert nd.prefixes == () and [type(t) for t in nd.tlvs] == [CommissioningDataTlv]


def test_child_id_response_for_a_sleepy_child_is_indirect_with_supervision_echo() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0022"))
    out = attach(core, peer, mode=0x04, sup=129, active_ts=True)
    assert not [f for f in out if f.what == "child id response"]  # waits for a poll
    c = core.children_table.get(peer.ext)
    assert c is not None and c.queue.pending and c.supervision_interval == 129
    assert c.request_tlvs == (T.ADDRESS16, T.NETWORK_DATA, T.SUPERVISION_INTERVAL)
    frames = []
    for _ in range(8):
        core.frame_received(peer.poll(GATEWAY_EXT), NOW + 1.2, ack_frame_pending=None)
        got = core.frames_to_send()
        for f in got:
            if f.handle is not None:
                core.tx_done(f.handle, True, NOW + 1.2)
        frames += got
        if len(c.queue) == 0:
            break
    msgs = [
        m for m in read_mle(frames, peer.keys) if m.message.command == MleCommand.CHILD_ID_RESPONSE
    ]
    assert len(msgs) == 1
    # the child held the current Active Timestamp: no Active Dataset; the echo last
    assert tlv_types(msgs[0]) == [
        T.SOURCE_ADDRESS,
        T.LEADER_DATA,
        T.ACTIVE_TIMESTAMP,
        T.ADDRESS16,
        T.NETWORK_DATA,
        T.SUPERVISION_INTERVAL,
        T.ADDRESS_REGISTRATION,
    ]
    # frame pending set on every fragment but the last (§6)
    pend = [f.tx.frame.frame_pending for f in frames if f.what == "child id response"]
    assert pend and pend[-1] is False and all(pend[:-1])


def test_too_many_requested_tlvs_is_refused() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0023"))
    attach(core, peer, requests=(10, 12, 9, 24, 25, 27), sup=129)  # 6 + sup + dataset > 6
    assert core.counters["child_id_request_too_many_tlvs"] == 1
    c = core.children_table.get(peer.ext)
    assert c is not None and not c.valid


def test_mtd_without_address_registration_is_refused() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0024"))
    pr, _ = exchange_parent_request(core, peer)
    req = peer.child_id_request(pr.message.get(ChallengeTlv).value, registration=False)
    for f in peer.mle(req, ll(GATEWAY_EXT)):
        core.frame_received(f, NOW + 1.1)
    assert core.counters["child_id_request_no_address_registration"] == 1


def test_advertisement_route64_matches_the_fact_sheet_example() -> None:
    core = leader()
    core.id_sequence = 0x80
    core.trickle.fire_at = NOW  # due now
    core.poll(NOW + 0.001)
    out = core.frames_to_send()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0031"))
    adv = [m for m in read_mle(out, peer.keys) if m.message.command == MleCommand.ADVERTISEMENT]
    assert len(adv) == 1
    assert tlv_types(adv[0]) == [T.SOURCE_ADDRESS, T.LEADER_DATA, T.ROUTE64]
    r64 = adv[0].message.get(Route64Tlv)
    assert r64 is not None
    # §7.5: lone leader ID 21, sequence 0x80
    assert r64.to_bytes() == bytes.fromhex("090a800000040000000000" + "01")
    assert str(adv[0].dst) == "ff02::1"
    f = [x for x in out if x.what == "advertisement"][0]
    assert f.tx.frame.dst == BROADCAST and not f.tx.frame.ack_request


def test_trickle_intervals_grow_to_imax_and_id_sequence_moves_every_10_s() -> None:
    core = leader()
    seq0 = core.id_sequence
    times = []
    t = NOW
    while t < NOW + 120:
        nt = core.next_timeout()
        assert nt is not None
        t = nt
        core.poll(t)
        if [f for f in core.frames_to_send() if f.what == "advertisement"]:
            times.append(t)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[0] - NOW < 1.0 and gaps[0] < 2.5  # Imin 1 s: [0.5, 1) then [1, 2) later
    assert max(gaps) <= 2 * 12.0 and gaps[-1] > 4.0  # Imax 12 s with no router neighbours
    assert ((core.id_sequence - seq0) & 0xFF) == 12  # every 10 s


def test_child_update_response_order_and_mode_echo() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0041"))
    attach(core, peer)
    cur = MleMessage(
        MleCommand.CHILD_UPDATE_REQUEST,
        (
            ModeTlv(0x0D),
            ChallengeTlv(b"\x01" * 8),
            SourceAddressTlv(0x5401),
            LeaderDataTlv(core.partition_id),
            TimeoutTlv(120),
            AddressRegistrationTlv(()),
            TlvRequestTlv((T.NETWORK_DATA,)),
        ),
    )
    for f in peer.mle(cur, ll(GATEWAY_EXT)):
        core.frame_received(f, NOW + 2)
    out = read_mle(core.frames_to_send(), peer.keys)
    rsp = [m for m in out if m.message.command == MleCommand.CHILD_UPDATE_RESPONSE]
    assert len(rsp) == 1
    # §5.1: Response, Source Address, Mode, Link Margin, Leader Data, MLE FC, Link FC,
    # Address Registration, Timeout, then the requested Network Data + Active Timestamp
    assert tlv_types(rsp[0]) == [
        T.RESPONSE,
        T.SOURCE_ADDRESS,
        T.MODE,
        T.LINK_MARGIN,
        T.LEADER_DATA,
        T.MLE_FRAME_COUNTER,
        T.LINK_FRAME_COUNTER,
        T.ADDRESS_REGISTRATION,
        T.TIMEOUT,
        T.NETWORK_DATA,
        T.ACTIVE_TIMESTAMP,
    ]
    assert rsp[0].message.get(ModeTlv).value == 0x0D  # type: ignore[union-attr]
    c = core.children_table.get(peer.ext)
    assert c is not None and c.timeout == 120 and c.mode == 0x0D


def test_data_response_to_a_data_request() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0051"))
    attach(core, peer)
    req = MleMessage(MleCommand.DATA_REQUEST, (TlvRequestTlv((T.NETWORK_DATA,)),))
    for f in peer.mle(req, ll(GATEWAY_EXT)):
        core.frame_received(f, NOW + 3)
    rsp = [
        m
        for m in read_mle(core.frames_to_send(), peer.keys)
        if m.message.command == MleCommand.DATA_RESPONSE
    ]
    assert len(rsp) == 1
    # §5.3: Source Address, Leader Data, Active TS, requested (Network Data, Active Dataset
    # since the request carried no timestamp)
    assert tlv_types(rsp[0]) == [
        T.SOURCE_ADDRESS,
        T.LEADER_DATA,
        T.ACTIVE_TIMESTAMP,
        T.NETWORK_DATA,
        T.ACTIVE_DATASET,
    ]


def test_network_data_change_multicasts_a_data_response_and_bumps_only_the_full_version() -> None:
    core = leader()
    d0, s0 = core.netdata.versions()
    core.set_commissioning_data(bytes.fromhex("0b021234"), NOW + 1)
    d1, s1 = core.netdata.versions()
    assert d1 == (d0 + 1) & 0xFF and s1 == s0  # commissioning data is not stable
    out = core.frames_to_send()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0061"))
    rsp = [m for m in read_mle(out, peer.keys) if m.message.command == MleCommand.DATA_RESPONSE]
    assert len(rsp) == 1 and str(rsp[0].dst) == "ff02::1"
    nd = parse_network_data(rsp[0].message.get(NetworkDataTlv).value)  # type: ignore[union-attr]
    assert nd.commissioning_data() == bytes.fromhex("0b021234")


def test_formation_network_data_holds_a_fresh_commissioner_session_id() -> None:
    core = leader()
    raw = core.netdata.full.to_bytes()
    assert raw[:4] == bytes.fromhex("08040b02")  # Commissioning Data {Session ID}, not stable
    assert core.netdata.stable.to_bytes() == b""


@pytest.mark.parametrize("scan", [0x40, 0x00])
def test_parent_request_without_the_router_bit_is_not_answered(scan: int) -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0071"))
    for f in peer.mle(peer.parent_request(scan=scan)):
        core.frame_received(f, NOW)
    core.poll(NOW + 2)
    assert core.counters["parent_request_not_for_routers"] == 1
    assert len(core.children_table) == 0


def test_an_ftd_child_gets_route64_listing_its_parent_and_no_registration_echo() -> None:
    core = leader()
    peer = Peer(core.dataset, ExtAddress.from_hex("aabbccddeeff0081"))
    pr, _ = exchange_parent_request(core, peer, mode=0x0F)
    challenge = pr.message.get(ChallengeTlv).value
    req = peer.child_id_request(
        challenge, mode=0x0F, registration=False, requests=(T.ADDRESS16, T.NETWORK_DATA, T.ROUTE64)
    )
    for f in peer.mle(req, ll(GATEWAY_EXT)):
        core.frame_received(f, NOW + 1.1)
    (r,) = [
        m
        for m in read_mle(core.frames_to_send(), peer.keys)
        if m.message.command == MleCommand.CHILD_ID_RESPONSE
    ]
    assert tlv_types(r) == [
        T.SOURCE_ADDRESS,
        T.LEADER_DATA,
        T.ACTIVE_TIMESTAMP,
        T.ADDRESS16,
        T.NETWORK_DATA,
        T.ROUTE64,
        T.ACTIVE_DATASET,
    ]
    r64 = r.message.get(Route64Tlv)
    assert r64 is not None and r64.router_ids == (21,)  # lists the parent (§4.4)
    c = core.children_table.get(peer.ext)
    assert c is not None and c.valid and c.ftd
