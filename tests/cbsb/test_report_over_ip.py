"""The draft's step 9 over IP, piece by piece: the delivery item that tells a thing where its app
listens (0x80), which app addresses a thing can reach, and the thing's report itself
(:class:`gateway.peers.thing.report.ResultReport`) against a stand-in for the child core and the
app. The whole path through a border router is tests/thread/test_cbsb_report_netns.py."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gateway.errors import GatewayError
from gateway.peers.thing.report import MAX_RETRANSMIT, REPORT_SRC_PORT, ResultReport
from gateway.thread.network.events import UdpReceived
from gateway.wire import cbsb_notice as notice
from gateway.wire.cbsb import AppReport, Delivery, ItemType
from gateway.wire.coap import CoapCode, MessageType, TmfMessage

K_APPGW = bytes(range(32))
SID = bytes(range(16, 32))
DEV = bytes.fromhex("0011223344556677")
APP = ipaddress.IPv6Address("fd3a:1b2c:3d4e:1::25")
OMR = ipaddress.IPv6Address("fd11:2233:4455:1:aaaa:bbbb:cccc:dddd")
DATASET = bytes.fromhex("0510" + "00112233445566778899aabbccddeeff")


@dataclass
class FakeChild:
    """What ResultReport uses of ChildCore: attached, slaac, status() and send_udp()."""

    attached: bool = True
    slaac: tuple[ipaddress.IPv6Address, ...] = ()
    sent: list[tuple[ipaddress.IPv6Address, int, int, bytes, float, Any]] = field(
        default_factory=list
    )

    def status(self, now: float) -> dict[str, Any]:
        return {"role": "child", "rloc16": "0x0401", "parent": {"ext_addr": "1122334455667788"},
                "partition_id": 7}  # fmt: skip

    def send_udp(self, dst: Any, sport: int, dport: int, payload: bytes, now: float,
                 *, src: Any = None) -> None:  # fmt: skip
        self.sent.append((ipaddress.IPv6Address(dst), sport, dport, payload, now, src))


def _target() -> AppReport:
    return AppReport(notice.report_key(K_APPGW, SID), APP.packed, 5683)


def _run_until_sent(rep: ResultReport, child: FakeChild, now: float, n: int) -> float:
    """Advance the clock through next_timeout until ``n`` datagrams went out."""
    c = cast(Any, child)
    while len(child.sent) < n:
        t = rep.next_timeout(c)
        assert t is not None
        now = max(now, t)
        rep.poll(c, now)
    return now


def _app_answer(req: bytes, key: bytes | None = None, token: bytes | None = None) -> bytes:
    msg = TmfMessage.from_bytes(req)
    kind, body = notice.open_with(notice.report_key(K_APPGW, SID), SID, msg.payload)
    assert kind == notice.KIND_REPORT
    ack = notice.seal_with(key or notice.report_key(K_APPGW, SID), SID, {"id": body["id"]},
                           notice.KIND_ACK)  # fmt: skip
    return TmfMessage(MessageType.ACK, 0x44, msg.mid, msg.token if token is None else token,
                      (), ack).to_bytes()  # fmt: skip


def _udp(payload: bytes, src: ipaddress.IPv6Address = APP, sport: int = 5683) -> UdpReceived:
    return UdpReceived(src, OMR, sport, REPORT_SRC_PORT, payload)


def test_the_app_report_item_round_trips_in_a_delivery_and_a_bad_one_is_ignored() -> None:
    item = _target()
    d = Delivery(thread_dataset=DATASET, key_sequence=0,
                 extra=((ItemType.APP_REPORT, item.to_bytes()),))  # fmt: skip
    back = Delivery.from_bytes(d.to_bytes())
    assert AppReport.of(back) == item
    assert AppReport.of(Delivery(thread_dataset=DATASET)) is None
    broken = Delivery(thread_dataset=DATASET, extra=((ItemType.APP_REPORT, b"\x01" * 20),))
    assert AppReport.of(Delivery.from_bytes(broken.to_bytes())) is None  # optional: skipped
    for addr, port in ((b"\xff" + bytes(15), 5683), (bytes(16), 5683), (APP.packed, 0)):
        with pytest.raises(GatewayError):
            AppReport(item.key, addr, port)


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        (f"[{APP}]:5683", True),
        ("[2001:db8::1]:40001", True),
        ("127.0.0.1:5683", False),  # IPv4: no route from the mesh
        ("[::1]:5683", False),
        ("[fe80::1]:5683", False),
        ("[ff02::fd]:5683", False),
        ("[::ffff:10.0.0.1]:5683", False),
        ("[fd00::1]:0", False),
        ("[fd00::1]:99999", False),
        ("fd00::1:5683", False),  # not bracketed: ambiguous
        ("", False),
    ],
)
def test_only_an_app_address_the_mesh_can_route_to_gets_reports(target: str, ok: bool) -> None:
    assert (notice.report_target(target) is not None) is ok


def test_report_key_is_not_the_notice_key_and_a_report_is_not_a_notice() -> None:
    assert notice.report_key(K_APPGW, SID) != notice.notify_key(K_APPGW, SID)
    sealed = notice.seal_with(notice.report_key(K_APPGW, SID), SID, {"id": "1"},
                              notice.KIND_REPORT)  # fmt: skip
    with pytest.raises(GatewayError):
        notice.open_sealed(K_APPGW, SID, sealed)  # the notice key does not open it


def test_the_thing_reports_once_it_has_an_omr_address_and_the_app_acknowledges() -> None:
    child = FakeChild()
    rep = ResultReport(_target(), DEV, SID, rng=random.Random(1))
    c = cast(Any, child)
    assert rep.poll(c, 0.0) == [] and child.sent == []  # no OMR address: nothing sent
    child.slaac = (OMR,)
    rep.poll(c, 1.0)
    assert child.sent == []  # the address registration reaches the parent first
    now = _run_until_sent(rep, child, 1.0, 1)
    dst, sport, dport, payload, _, src = child.sent[0]
    assert (dst, sport, dport, src) == (APP, REPORT_SRC_PORT, 5683, OMR)
    msg = TmfMessage.from_bytes(payload)
    assert msg.mtype is MessageType.CON and msg.code == CoapCode.POST
    assert msg.uri_path == notice.REPORT_PATH
    kind, body = notice.open_with(notice.report_key(K_APPGW, SID), SID, msg.payload)
    assert kind == notice.KIND_REPORT
    assert body["dev_id"] == DEV.hex() and body["address"] == str(OMR)
    assert body["event"] == "attached" and body["role"] == "child"
    rep.event(_udp(_app_answer(payload)), c, now + 0.05)
    out = rep.poll(c, now + 0.05)
    assert [k for k, _ in out] == ["reported"]
    assert out[0][1]["acked"] is True and out[0][1]["sent"] == 1
    assert out[0][1]["rtt_ms"] == pytest.approx(50, abs=1)
    assert rep.poll(c, now + 10) == [] and rep.next_timeout(c) is None  # reported once


def test_forged_or_foreign_answers_are_ignored_and_the_real_one_still_counts() -> None:
    child = FakeChild(slaac=(OMR,))
    rep = ResultReport(_target(), DEV, SID, rng=random.Random(2))
    c = cast(Any, child)
    now = _run_until_sent(rep, child, 0.0, 1)
    req = child.sent[0][3]
    forged = [
        _app_answer(req, key=bytes(16)),  # not under K_rep
        _app_answer(req, token=b"\x00" * 8),  # another exchange
        b"\x40",  # not CoAP
        bytes(2000),
    ]
    for f in forged:
        rep.event(_udp(f), c, now)
    rep.event(_udp(_app_answer(req), src=ipaddress.IPv6Address("fd00::66")), c, now)  # not the app
    rep.event(_udp(_app_answer(req), sport=5684), c, now)
    assert rep.ignored == len(forged) + 2 and not rep.done
    rep.event(_udp(_app_answer(req)), c, now)
    assert rep.acked and rep.poll(c, now)[0][1]["ignored"] == len(forged) + 2


def test_an_unanswered_report_is_retransmitted_with_a_doubling_timeout_then_given_up() -> None:
    child = FakeChild(slaac=(OMR,))
    rep = ResultReport(_target(), DEV, SID, rng=random.Random(3))
    c = cast(Any, child)
    now = _run_until_sent(rep, child, 0.0, MAX_RETRANSMIT + 1)
    times = [s[4] for s in child.sent]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 2.0 <= gaps[0] <= 3.0  # ACK_TIMEOUT x [1, 1.5]
    for a, b in zip(gaps, gaps[1:], strict=False):
        assert b == pytest.approx(2 * a)
    assert len({s[3] for s in child.sent}) == 1  # retransmissions: the same message
    out: list[tuple[str, dict[str, Any]]] = []
    while not out:
        t = rep.next_timeout(c)
        assert t is not None
        now = max(now, t)
        out = rep.poll(c, now)
    assert out[0][1]["acked"] is False and out[0][1]["sent"] == MAX_RETRANSMIT + 1
    assert len(child.sent) == MAX_RETRANSMIT + 1


async def test_the_app_takes_a_report_only_sealed_for_the_session_and_from_where_it_says() -> None:
    import aiocoap

    from gateway.peers.app.cli import _SealedResource

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    endpoint = _SealedResource(K_APPGW, SID, queue, notice.report_key, notice.KIND_REPORT, "thing")
    post = endpoint.resource().render_post
    body = {"id": "r1", "event": "attached", "dev_id": DEV.hex(), "address": str(OMR)}
    sealed = notice.seal_with(notice.report_key(K_APPGW, SID), SID, body, notice.KIND_REPORT)

    def request(payload: bytes, src: str) -> aiocoap.Message:
        msg = aiocoap.Message(code=aiocoap.POST, payload=payload)
        msg.remote = SimpleNamespace(sockaddr=(src, 49210, 0, 0))
        return msg

    refused = [
        (request(sealed, str(APP)), aiocoap.FORBIDDEN),  # a replay from the LAN
        (request(notice.seal(K_APPGW, SID, body), str(OMR)), aiocoap.UNAUTHORIZED),  # K_note
        (request(bytes(64), str(OMR)), aiocoap.UNAUTHORIZED),
    ]
    for req, code in refused:
        assert (await post(req)).code == code
    assert queue.empty() and endpoint.forged == len(refused)
    answer = await post(request(sealed, str(OMR)))
    assert answer.code == aiocoap.CHANGED
    assert notice.open_with(notice.report_key(K_APPGW, SID), SID, answer.payload) == (
        notice.KIND_ACK, {"id": "r1"},
    )  # fmt: skip
    assert queue.get_nowait() == {**body, "_via": "thing"}


def test_the_group_owner_adds_the_item_only_with_border_routing_and_a_routable_paired_app() -> None:
    from gateway.group_owner.service import GroupOwnerService

    base = Delivery(thread_dataset=DATASET, key_sequence=0).to_bytes()

    def delivery(infra: str, target: str, paired: bool = True) -> bytes | None:
        go = SimpleNamespace(
            _notify_targets={SID: target},
            pairing=SimpleNamespace(k_appgw=K_APPGW) if paired else None,
            boot=SimpleNamespace(params=SimpleNamespace(delivery=base)),
            settings=SimpleNamespace(border_router=SimpleNamespace(infra_interface=infra)),
        )
        return GroupOwnerService._session_delivery(cast(Any, go), SID)

    d = delivery("eth0", f"[{APP}]:5683")
    assert d is not None
    assert AppReport.of(Delivery.from_bytes(d)) == _target()  # K_rep of this session, the app
    assert Delivery.from_bytes(d).thread_dataset == DATASET
    assert delivery("", f"[{APP}]:5683") is None  # border routing off: no IP path
    assert delivery("eth0", "127.0.0.1:5683") is None  # the mesh cannot reach it
    assert delivery("eth0", f"[{APP}]:5683", paired=False) is None
