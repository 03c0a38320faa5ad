"""The MTD child core: attach schedule and parent choice (§4.1-§4.4 as OpenThread's Attacher
does them), keep-alive and re-attach (§5.1, §12), sleepy polls (§6), restore (§5.4)."""

from __future__ import annotations

import random

import pytest

from gateway.thread.link import LinkReceiver, LinkSecurity
from gateway.thread.network.child import ChildConfig, ChildCore, ChildRole
from gateway.thread.network.errors import InvalidSnapshot, NetworkConfigError, NotAttached
from gateway.thread.network.events import Transmit
from gateway.thread.network.security import open_mle
from gateway.thread.network.snapshot import ChildNodeSnapshot
from gateway.wire.mac802154 import BROADCAST, ExtAddress, FrameType, MacFrame
from gateway.wire.mle import (
    Address16Tlv,
    ChallengeTlv,
    ConnectivityTlv,
    LeaderDataTlv,
    LinkFrameCounterTlv,
    LinkMarginTlv,
    MleCommand,
    MleFrameCounterTlv,
    MleMessage,
    MleTlvType,
    NetworkDataTlv,
    ResponseTlv,
    ScanMaskTlv,
    SourceAddressTlv,
    TlvRequestTlv,
    VersionTlv,
)
from tests.thread.network.helpers import Peer, ll
from tests.thread.network.world import NetWorld, dataset

T = MleTlvType
NOW = 50.0


def child(**kw: object) -> ChildCore:
    c = ChildCore(
        dataset(),
        ExtAddress.from_hex("c0ffee0000000001"),
        rng=random.Random(2),
        config=ChildConfig(**kw),  # type: ignore[arg-type]
    )
    c.start(NOW)
    return c


def mle_of(c: ChildCore, t: Transmit) -> object:
    rx = LinkReceiver()
    frame = MacFrame.from_bytes(t.psdu)
    dg = rx.receive(frame, LinkSecurity.NONE, 0)
    assert dg is not None
    return open_mle(dg, c.keys)


def run(c: ChildCore, until: float) -> list[tuple[float, Transmit]]:
    out: list[tuple[float, Transmit]] = []
    t = NOW
    while True:
        nt = c.next_timeout()
        if nt is None or nt > until:
            break
        t = nt
        c.poll(t)
        out += [(t, a) for a in c.actions()]
    return out


def test_parent_request_schedule_of_the_first_and_later_attach_cycles() -> None:
    c = child()
    sent = run(c, NOW + 12)
    prs = []
    for t, a in sent:
        rm = mle_of(c, a)
        assert rm.message.command == MleCommand.PARENT_REQUEST  # type: ignore[attr-defined]
        prs.append((t, rm))
    assert len(prs) >= 7
    first = prs[:6]
    assert 0 < first[0][0] - NOW <= 0.75
    masks = [p.message.get(ScanMaskTlv).value for _t, p in first]  # type: ignore[attr-defined]
    assert masks == [0x80, 0x80, 0xC0, 0xC0, 0xC0, 0xC0]
    gaps = [round(b[0] - a[0], 3) for a, b in zip(first, first[1:], strict=False)]
    assert gaps == [0.75, 0.75, 1.25, 1.25, 1.25]
    # §4.1: Mode, Challenge (8, fresh each time), Scan Mask, Version 5; to ff02::2 broadcast
    rm = first[0][1]
    assert [t.TYPE for t in rm.message.tlvs] == [T.MODE, T.CHALLENGE, T.SCAN_MASK, T.VERSION]  # type: ignore[attr-defined]
    assert rm.message.get(VersionTlv).value == 5  # type: ignore[attr-defined]
    assert str(rm.dst) == "ff02::2" and rm.datagram.packet.hop_limit == 255  # type: ignore[attr-defined]
    challenges = {p.message.get(ChallengeTlv).value for _t, p in first}  # type: ignore[attr-defined]
    assert len(challenges) == 6 and all(len(x) == 8 for x in challenges)
    frame = MacFrame.from_bytes(sent[0][1].psdu)
    assert frame.dst == BROADCAST and frame.security is None
    # a later cycle after the back-off: 2 Parent Requests, 1 to routers
    later = prs[6:8]
    assert [p.message.get(ScanMaskTlv).value for _t, p in later] == [0x80, 0xC0]  # type: ignore[attr-defined]
    assert c.counters["attach_cycles_failed"] >= 1


class FakeParent:
    """Answers the child's Parent Requests by hand (a second candidate with another margin)."""

    def __init__(self, c: ChildCore, ext: str, rloc16: int, margin: int) -> None:
        self.peer = Peer(c.dataset, ExtAddress.from_hex(ext))
        self.rloc16 = rloc16
        self.margin = margin
        self.challenge = bytes(range(8))

    def parent_response(self, pr: object) -> list[MacFrame]:
        ch = pr.message.get(ChallengeTlv).value  # type: ignore[attr-defined]
        msg = MleMessage(
            MleCommand.PARENT_RESPONSE,
            (
                SourceAddressTlv(self.rloc16),
                LeaderDataTlv(0x1234, 64, 1, 1, self.rloc16 >> 10),
                LinkFrameCounterTlv(0),
                MleFrameCounterTlv(self.peer.keys.mle_frame_counter),
                ResponseTlv(ch),
                ChallengeTlv(self.challenge),
                LinkMarginTlv(self.margin),
                ConnectivityTlv(active_routers=1, sed_buffer_size=1280, sed_datagram_count=1),
                VersionTlv(5),
            ),
        )
        return self.peer.mle(msg, ll(pr.sender), mac_dst=pr.sender)  # type: ignore[attr-defined]


def first_pr(c: ChildCore) -> tuple[float, object]:
    while True:
        t = c.next_timeout()
        assert t is not None
        c.poll(t)
        acts = c.actions()
        if acts:
            return t, mle_of(c, acts[0])


def test_a_router_only_window_takes_only_a_link_quality_3_parent() -> None:
    c = child()
    t, pr = first_pr(c)
    weak = FakeParent(c, "0a00000000000001", 0x0400, margin=15)  # LQ 2
    for f in weak.parent_response(pr):
        c.frame_received(f, t + 0.1)
    t2 = c.next_timeout()
    assert t2 is not None
    c.poll(t2)  # the window closes: an LQ 2 parent is not enough, next PR
    acts = [mle_of(c, a) for a in c.actions()]
    assert [a.message.command for a in acts] == [MleCommand.PARENT_REQUEST]  # type: ignore[attr-defined]
    strong = FakeParent(c, "0b00000000000001", 0x0800, margin=60)  # LQ 3
    for fp in (weak, strong):
        for f in fp.parent_response(acts[0]):
            c.frame_received(f, t2 + 0.1)
    t3 = c.next_timeout()
    assert t3 is not None
    c.poll(t3)
    (req,) = [mle_of(c, a) for a in c.actions()]
    assert req.message.command == MleCommand.CHILD_ID_REQUEST  # type: ignore[attr-defined]
    assert req.dst == ll(strong.peer.ext)  # type: ignore[attr-defined]
    assert req.message.get(ResponseTlv).value == strong.challenge  # type: ignore[attr-defined]


def test_child_id_request_tlvs_fit_one_frame() -> None:
    for rx_on in (True, False):
        c = child(rx_on=rx_on)
        t, pr = first_pr(c)
        fp = FakeParent(c, "0a00000000000002", 0x0400, margin=60)
        for f in fp.parent_response(pr):
            c.frame_received(f, t + 0.1)
        t2 = c.next_timeout()
        assert t2 is not None
        c.poll(t2)
        acts = c.actions()
        assert len(acts) == 1 and len(acts[0].psdu) + 2 <= 127  # one unsecured frame
        req = mle_of(c, acts[0])
        types = [x.TYPE for x in req.message.tlvs]  # type: ignore[attr-defined]
        # §4.3: Response, Link FC, MLE FC, Mode, Timeout, Version, [Supervision], Address
        # Registration, TLV Request {10, 12}, Active Timestamp
        expect = (
            [T.RESPONSE, T.LINK_FRAME_COUNTER, T.MLE_FRAME_COUNTER, T.MODE, T.TIMEOUT, T.VERSION]
            + ([] if rx_on else [T.SUPERVISION_INTERVAL])
            + [T.ADDRESS_REGISTRATION, T.TLV_REQUEST, T.ACTIVE_TIMESTAMP]
        )
        assert types == expect
        assert req.message.get(TlvRequestTlv).value == (10, 12)  # type: ignore[attr-defined]
        if not rx_on:  # a sleepy child polls the candidate every 100 ms for its answer
            t3 = c.next_timeout()
            assert t3 is not None and round(t3 - t2, 3) == 0.1
            c.poll(t3)
            (poll,) = c.actions()
            frame = MacFrame.from_bytes(poll.psdu)
            assert frame.frame_type == FrameType.COMMAND and frame.dst == fp.peer.ext
            assert frame.security is not None and frame.security.key_id_mode == 1


def test_child_id_response_with_a_foreign_address16_is_refused() -> None:
    c = child()
    t, pr = first_pr(c)
    fp = FakeParent(c, "0a00000000000003", 0x0400, margin=60)
    for f in fp.parent_response(pr):
        c.frame_received(f, t + 0.1)
    t2 = c.next_timeout()
    assert t2 is not None
    c.poll(t2)
    req = mle_of(c, c.actions()[0])
    for a16, nd in ((0x0801, True), (0x0401, False), (0x0400, True)):
        msg = MleMessage(
            MleCommand.CHILD_ID_RESPONSE,
            tuple(
                x
                for x in (
                    SourceAddressTlv(0x0400),
                    LeaderDataTlv(0x1234, 64, 1, 1, 1),
                    Address16Tlv(a16),
                    NetworkDataTlv(b"") if nd else None,
                )
                if x is not None
            ),
        )
        for f in fp.peer.mle(msg, req.src, mac_dst=c.ext_addr):  # type: ignore[attr-defined]
            c.frame_received(f, t2 + 0.1)
        assert c.role is ChildRole.ATTACHING
    assert c.counters["child_id_response_bad_address16"] == 2
    assert c.counters["child_id_response_malformed"] == 1


def test_a_med_keeps_alive_every_timeout_minus_4_02_s_and_reattaches_when_unanswered() -> None:
    world = NetWorld(seed=21)
    med = world.add_child(rx_on=True, timeout=60)
    world.run_until(lambda: med.core.attached, 10)
    t0 = world.now
    world.run(60)
    assert med.core.counters["child_update_requests"] == 1
    c = world.parent.children_table.get(med.ext)
    assert c is not None and 60 - 4.02 - 0.01 <= c.last_heard - t0 <= 60 - 4.02 + 0.01
    world.parent_alive = False
    world.run(60)
    # unacknowledged Child Update Requests, 1 s apart: detach and look for a parent again
    detached = med.core.counters["detach_keep_alive_failed"]
    assert detached + med.core.counters["detach_parent_unreachable"] == 1
    assert med.core.role is ChildRole.ATTACHING


def test_a_sed_polls_at_its_period_and_reattaches_after_4_unacknowledged_polls() -> None:
    world = NetWorld(seed=22)
    sed = world.add_child(rx_on=False, timeout=60, poll_period=5)
    world.run_until(lambda: sed.core.attached, 10)
    polls = world.parent.counters["data_polls"]
    world.run(50)
    assert world.parent.counters["data_polls"] - polls == 10
    c = world.parent.children_table.get(sed.ext)
    assert c is not None and world.now - c.last_heard <= 5
    world.parent_alive = False
    world.run(25)
    assert sed.core.counters["detach_parent_unreachable"] == 1
    assert sed.core.role is ChildRole.ATTACHING


def test_new_network_data_reaches_a_sleepy_child_by_child_update_request() -> None:
    world = NetWorld(seed=23)
    sed = world.add_child(rx_on=False, timeout=60, poll_period=3, full_network_data=True)
    med = world.add_child(rx_on=True, timeout=60, full_network_data=True)
    world.run_until(lambda: len(world.attached()) == 2, 10)
    world.parent.set_commissioning_data(bytes.fromhex("0b02beef"), world.now)
    want = world.parent.netdata.versions()[0]
    world.run(10)
    for n in (sed, med):
        assert n.core.leader_data is not None and n.core.leader_data.data_version == want
        assert bytes.fromhex("0b02beef") in n.core.network_data
    c = world.parent.children_table.get(sed.ext)
    assert c is not None and c.netdata_version == want and c.update_due is None
    assert sed.core.counters["mle_rx"] >= 2


def test_a_child_rejected_by_its_parent_attaches_again() -> None:
    world = NetWorld(seed=24)
    med = world.add_child(rx_on=True, timeout=30)
    world.run_until(lambda: med.core.attached, 10)
    assert world.parent.remove_child(med.ext, world.now)
    world.run(30)  # its next Child Update Request is refused with Status 1
    assert med.core.counters["child_update_rejected"] == 1
    world.run_until(lambda: med.core.attached, 20)
    assert world.parent.children_table.get(med.ext) is not None


def test_restore_falls_back_to_attach_when_the_parent_does_not_know_us() -> None:
    world = NetWorld(seed=25)
    med = world.add_child(rx_on=True, timeout=30)
    world.run_until(lambda: med.core.attached, 10)
    snap = med.core.snapshot()
    assert snap is not None
    med.alive = False
    world.parent.remove_child(med.ext, world.now)
    again = world.add_child(
        rx_on=True,
        timeout=30,
        ext=med.ext,
        saved=snap,
        mle_frame_counter=snap.mle_frame_counter + 1000,
        mac_frame_counter=snap.mac_frame_counter + 1000,
    )
    world.run_until(lambda: again.core.attached, 30)
    assert again.core.counters["detach_rejected_by_parent"] == 1
    assert again.core.counters["parent_requests"] >= 1


def test_config_and_snapshot_validation() -> None:
    with pytest.raises(NetworkConfigError):
        ChildConfig(timeout=2)
    with pytest.raises(NetworkConfigError):
        ChildConfig(timeout=60, poll_period=100)
    c = child()
    with pytest.raises(NotAttached):
        c.ping("fd00::1", NOW)
    assert c.snapshot() is None
    good = ChildNodeSnapshot("00" * 8, "11" * 8, 0x400, 0x401, 0x0C, 240, 0, 5, 6, "22" * 8)
    assert ChildNodeSnapshot.from_dict(good.to_dict()) == good
    broken: object
    for broken in (
        {},
        {**good.to_dict(), "version": 9},
        {**good.to_dict(), "rloc16": -1},
        {**good.to_dict(), "ext": "zz"},
        {**good.to_dict(), "mode": "x"},
        [],
    ):
        with pytest.raises(InvalidSnapshot):
            ChildNodeSnapshot.from_dict(broken)
