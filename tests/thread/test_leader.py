"""The Leader's commissioning role (gateway.thread.commissioning.leader), the CoAP endpoint it and its peers
use (gateway.thread.coap), and the joiner router (gateway.thread.commissioning.joiner_router). Byte layouts
come from the fact sheet's worked examples (thread-meshcop.md §4.8), which restate
OpenThread's meshcop_leader.cpp, joiner_router.cpp and commissioner.cpp."""

from __future__ import annotations

import random

import pytest

from gateway.thread.coap import CoapEndpoint
from gateway.thread.commissioning.joiner_router import ENTRUST_DELAY, JoinerRouter, join_ent_tlvs
from gateway.thread.commissioning.leader import CommissioningLeader
from gateway.thread.link import LinkReceiver, LinkSecurity, TagAllocator, encode_datagram
from gateway.wire.coap import CoapCode, MessageType, TmfMessage, TmfUri
from gateway.wire.dataset import new_active_dataset
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import ExtAddress, MacFrame
from gateway.wire.meshcop import (
    GetTlv,
    JoinerDtlsEncapsulationTlv,
    JoinerIidTlv,
    JoinerRouterKekTlv,
    JoinerRouterLocatorTlv,
    JoinerUdpPortTlv,
)
from gateway.wire.tlv import encode_tlvs

ROUTER = ExtAddress.from_hex("12b4300000000001")
JOINER = ExtAddress.from_hex("d65e64fa83f81cf7")
DS = new_active_dataset(random.Random(3), channel=15, network_name="LeaderNet")


def leader(session: int = 0x1233) -> CommissioningLeader:
    return CommissioningLeader(rng=random.Random(1), session_counter=session)


def req(uri: TmfUri, payload_hex: str, mid: int = 1) -> TmfMessage:
    return TmfMessage(MessageType.CON, CoapCode.POST, mid, b"\x01\x02", uri.path,
                      bytes.fromhex(payload_hex))  # fmt: skip


# -- leader -----------------------------------------------------------------------------------


def test_petition_accept_and_reject_layouts() -> None:
    ld = leader()
    # COMM_PET.req: 0A 0F "OT-commissioner"
    rsp = ld.handle_tmf(req(TmfUri.LEAD_PET, "0a0f" + b"OT-commissioner".hex()), 0.0,
                        source_rloc16=0x0400)  # fmt: skip
    assert rsp is not None and rsp.mtype == MessageType.ACK and rsp.code == CoapCode.CHANGED
    assert rsp.payload == bytes.fromhex("100101" + "0b021234")  # State Accept, Session ID
    assert ld.dataset.border_agent_locator == 0x0400
    assert ld.dataset.steering_data == b"\x00" and not ld.joining_allowed
    # another commissioner: 10 01 FF 0A LL <existing id>
    rsp = ld.handle_tmf(req(TmfUri.LEAD_PET, "0a03" + b"two".hex()), 1.0, source_rloc16=0x0400)
    assert rsp is not None
    assert rsp.payload == bytes.fromhex("1001ff" + "0a0f" + b"OT-commissioner".hex())
    # the same commissioner again takes over with the next session ID
    res = ld.petition("OT-commissioner", 0x0400, 2.0)
    assert res.accepted and res.session_id == 0x1235
    assert ld.petitions_accepted == 2 and ld.petitions_rejected == 1


def test_keep_alive_timeout_and_resignation() -> None:
    ld = leader()
    sid = ld.petition("c", 0, 0.0).session_id
    assert sid is not None
    assert ld.keep_alive(sid, True, 0, 40.0)
    assert ld.poll(89.0) is None  # 50 s after the last keep-alive
    expired = ld.poll(90.0)
    assert expired is not None and expired.session_id == sid
    assert ld.active is None and ld.dataset.session_id == sid + 1  # only the next session ID
    assert not ld.keep_alive(sid, True, 0, 91.0)
    sid2 = ld.petition("c", 0, 100.0).session_id
    assert sid2 == sid + 2
    # COMM_KA with State Reject resigns: 10 01 FF 0B 02 <sid>
    rsp = ld.handle_tmf(req(TmfUri.LEAD_KA, f"1001ff0b02{sid2:04x}"), 101.0, source_rloc16=0)
    assert rsp is not None and rsp.payload == bytes.fromhex("100101")
    assert ld.active is None


def test_commissioner_set_rules() -> None:
    ld = leader()
    sid = ld.petition("c", 0x0400, 0.0).session_id
    assert sid is not None
    sd = "00000000000000000000000000000012"
    # MGMT_COMMISSIONER_SET.req: 0B 02 <sid> 08 10 <steering> [12 02 <port>]
    ok = ld.handle_tmf(req(TmfUri.MGMT_COMMISSIONER_SET, f"0b02{sid:04x}0810{sd}120203e9"), 1.0,
                       source_rloc16=0xFC30)  # fmt: skip
    assert ok is not None and ok.payload == bytes.fromhex("100101")
    assert ld.joining_allowed and ld.joiner_udp_port == 1001
    assert ld.dataset.border_agent_locator == 0x0400  # kept from the petition
    for bad in (
        f"0b02{sid + 1:04x}0810{sd}",  # wrong session
        f"0b02{sid:04x}0810{sd}09020400",  # carries a Border Agent Locator
        f"0b02{sid:04x}",  # nothing to set
    ):
        rsp = ld.handle_tmf(req(TmfUri.MGMT_COMMISSIONER_SET, bad), 1.0, source_rloc16=0)
        assert rsp is not None and rsp.payload == bytes.fromhex("1001ff"), bad
    rsp = ld.handle_tmf(req(TmfUri.MGMT_COMMISSIONER_GET, ""), 1.0, source_rloc16=0)
    assert rsp is not None and bytes.fromhex(f"0810{sd}") in rsp.payload


def test_active_get_filters_and_malformed_requests() -> None:
    ld = leader()
    get = encode_tlvs([GetTlv((7, 3)).to_tlv()]).hex()
    rsp = ld.handle_tmf(req(TmfUri.MGMT_ACTIVE_GET, get), 0.0, source_rloc16=0, active_dataset=DS)
    assert rsp is not None and DS.mesh_local_prefix is not None
    assert rsp.payload == bytes.fromhex("0708") + DS.mesh_local_prefix + bytes.fromhex("0309") + (
        b"LeaderNet"
    )
    rsp = ld.handle_tmf(req(TmfUri.MGMT_ACTIVE_GET, "0d"), 0.0, source_rloc16=0, active_dataset=DS)
    assert rsp is not None and rsp.code == CoapCode.BAD_REQUEST
    assert ld.handle_tmf(req(TmfUri.JOIN_FIN, ""), 0.0, source_rloc16=0) is None


# -- CoAP endpoint ----------------------------------------------------------------------------


def test_confirmable_retransmission_schedule() -> None:
    # RFC 7252 §4.8 with OpenThread's parameters: ACK_TIMEOUT 2 s, factor 1.5, 4 retransmits
    ep = CoapEndpoint(rng=random.Random(0))
    msg = ep.request(TmfUri.COMM_KA, now=0.0, context="ka")
    first = ep.next_timeout()
    assert first is not None and 2.0 <= first <= 3.0
    sent = [0.0]
    now = first
    while True:
        resend, gone = ep.poll(now)
        if gone:
            assert gone[0].context == "ka"
            break
        assert resend == [msg]
        sent.append(now)
        t = ep.next_timeout()
        assert t is not None
        now = t
    assert len(sent) == 5  # the original and 4 retransmissions
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert all(abs(gaps[i + 1] - 2 * gaps[i]) < 1e-9 for i in range(len(gaps) - 1))


def test_separate_response_duplicates_and_reset() -> None:
    client, server = CoapEndpoint(rng=random.Random(1)), CoapEndpoint(rng=random.Random(2))
    r = client.request(TmfUri.COMM_PET, now=0.0, context="pet")
    inc = server.receive(r, 0.0)
    assert inc.kind == "request"
    ack, rsp = server.respond(r, code=CoapCode.CHANGED, separate=True, now=0.0)
    assert ack.mtype == MessageType.ACK and ack.code == 0 and ack.mid == r.mid
    assert rsp.mtype == MessageType.NON and rsp.token == r.token and rsp.mid != r.mid
    assert client.receive(ack, 0.1).kind == "empty_ack"
    assert client.receive(rsp, 0.2).context == "pet"
    dup = server.receive(r, 0.3)  # the request retransmitted: the same answers again
    assert dup.kind == "duplicate" and dup.replies == (ack, rsp)
    assert client.receive(rsp, 0.4).kind == "unmatched"
    r2 = client.request(TmfUri.COMM_KA, now=1.0)
    rst = TmfMessage(MessageType.RST, 0, r2.mid)
    assert client.receive(rst, 1.1).kind == "reset" and client.outstanding == 0


# -- joiner router ----------------------------------------------------------------------------


def _joiner_datagram(payload: bytes):
    pkt = Ipv6Packet.udp(f"fe80::{JOINER.iid().hex(':', 2)}", f"fe80::{ROUTER.iid().hex(':', 2)}",
                         1000, 1000, payload)  # fmt: skip
    rx = LinkReceiver()
    out = None
    for f in encode_datagram(pkt, src=JOINER, dst=ROUTER, dst_pan=0x1234, tags=TagAllocator(0)):
        out = rx.receive(MacFrame.from_bytes(f.frame.to_bytes()), LinkSecurity.NONE, 0.0) or out
    assert out is not None
    return out


def test_relay_rx_layout() -> None:
    jr = JoinerRouter(ROUTER, 0x0400)
    records = bytes(range(40))
    tlvs = jr.relay_rx(_joiner_datagram(records), 1000)
    assert tlvs is not None
    # RLY_RX.ntf: 12 02 03 E8, 13 08 <IID>, 14 02 <RLOC16>, 11 FF <len16> <DTLS records>
    assert b"".join(t.to_bytes() for t in tlvs) == (
        bytes.fromhex("120203e81308") + JOINER.iid() + bytes.fromhex("14020400")
        + bytes.fromhex("11ff0028") + records
    )  # fmt: skip
    assert jr.relay_rx(_joiner_datagram(records), 1001) is None  # not our joiner port


def test_relay_tx_with_kek_schedules_join_ent() -> None:
    jr = JoinerRouter(ROUTER, 0x0400, rng=random.Random(4), key_sequence=3)
    kek = bytes(range(16))
    tlvs = [
        JoinerUdpPortTlv(1000),
        JoinerIidTlv(JOINER.iid()),
        JoinerRouterLocatorTlv(0x0400),
        JoinerRouterKekTlv(kek),
        JoinerDtlsEncapsulationTlv(b"\x17\xfe\xfd" + bytes(20)),
    ]
    (send,) = jr.relay_tx(tlvs, 1000, now=10.0)
    assert send.security is LinkSecurity.NONE and send.dst == JOINER
    udp = send.packet.udp_datagram()
    assert (udp.src_port, udp.dst_port, udp.payload[:3]) == (1000, 1000, b"\x17\xfe\xfd")
    assert jr.kek_for(JOINER) == kek
    assert jr.poll(10.0 + ENTRUST_DELAY - 0.001, DS) == ([], [])
    sends, failed = jr.poll(10.0 + ENTRUST_DELAY, DS)
    assert not failed and len(sends) == 1
    ent = sends[0]
    assert ent.security is LinkSecurity.KEK and ent.kek == kek and ent.dst == JOINER
    msg = TmfMessage.from_bytes(ent.packet.udp_datagram().payload)
    assert msg.tmf_uri is TmfUri.JOIN_ENT and msg.mtype == MessageType.CON
    assert [t.TYPE for t in msg.tlvs()] == [5, 7, 2, 3, 14, 53, 4, 12, 6]  # type: ignore[union-attr]
    assert msg.payload.endswith(bytes.fromhex("060400000003"))  # Network Key Sequence 3
    assert kek.hex() not in repr(ent) and str(list(kek)) not in repr(ent)
    # missing RLY_TX TLVs are dropped and counted
    assert jr.relay_tx(tlvs[:2], 1000, now=11.0) == [] and jr.dropped_relay_tx == 1


def test_join_ent_needs_a_complete_dataset() -> None:
    from gateway.errors import InvalidArgument
    from gateway.wire.dataset import ActiveDataset

    with pytest.raises(InvalidArgument, match="lacks"):
        join_ent_tlvs(ActiveDataset(network_name="x"), 0)
