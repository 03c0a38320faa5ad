"""The Leader's router ID table: Address Solicit / Release decisions (fact sheet §7.2, §7.3)."""

from __future__ import annotations

import random

import pytest

from gateway.errors import InvalidArgument, ParseError
from gateway.thread.network.router_ids import (
    RouterIdTable,
    SolicitReason,
    SolicitStatus,
    address_release_payload,
    address_solicit_payload,
)
from gateway.thread.network.tmf_tlvs import AddressTlvs, parse_thread_tlvs
from gateway.wire.tlv import encode_tlvs


def ext(n: int) -> bytes:
    return n.to_bytes(8, "big")


def table(seq: int = 0x80, upgrade_threshold: int = 16) -> RouterIdTable:
    return RouterIdTable(random.Random(1), seq, upgrade_threshold=upgrade_threshold)


def test_requested_id_is_granted_and_sequence_bumps() -> None:
    t = table(0xFF)
    r = t.solicit(ext(1), SolicitReason.TOO_FEW_ROUTERS, 0.0, requested=21)
    assert r.status is SolicitStatus.SUCCESS and r.router_id == 21
    assert t.id_sequence == 0x00  # wraps
    assert t.mask() == bytes([0, 0, 0x04, 0, 0, 0, 0, 0])
    assert t.owner(21) == ext(1)


def test_same_ext_address_gets_its_id_again_without_a_new_allocation() -> None:
    t = table()
    first = t.solicit(ext(1), SolicitReason.TOO_FEW_ROUTERS, 0.0)
    seq = t.id_sequence
    again = t.solicit(ext(1), SolicitReason.HAVE_CHILD_ID_REQUEST, 1.0, requested=5)
    assert again.router_id == first.router_id
    assert t.id_sequence == seq and t.counters["allocated"] == 1


def test_released_id_waits_out_the_reuse_delay() -> None:
    t = table()
    assert t.solicit(ext(1), 2, 0.0, requested=7).router_id == 7
    assert not t.release(7, 1.0, ext(2))  # not the owner
    assert t.counters["release_mismatch"] == 1
    seq = t.id_sequence
    assert t.release(7, 1.0, ext(1))
    assert t.id_sequence == (seq + 1) & 0xFF
    r = t.solicit(ext(3), 2, 50.0, requested=7)
    assert r.status is SolicitStatus.SUCCESS and r.router_id != 7
    assert t.solicit(ext(4), 2, 101.0, requested=7).router_id == 7


def test_reason_two_stops_at_the_upgrade_threshold_but_three_does_not() -> None:
    t = table(upgrade_threshold=3)
    for n in range(3):
        assert t.solicit(ext(n), SolicitReason.TOO_FEW_ROUTERS, 0.0).status is SolicitStatus.SUCCESS
    refused = t.solicit(ext(9), SolicitReason.TOO_FEW_ROUTERS, 0.0)
    assert refused.status is SolicitStatus.NO_ADDRESS_AVAILABLE and refused.router_id is None
    assert t.solicit(ext(9), SolicitReason.HAVE_CHILD_ID_REQUEST, 0.0).router_id is not None
    br = t.solicit(ext(10), SolicitReason.BORDER_ROUTER_REQUEST, 0.0, border_routers_as_routers=2)
    assert br.status is SolicitStatus.NO_ADDRESS_AVAILABLE


def test_unknown_reason_is_status_six() -> None:
    t = table()
    assert t.solicit(ext(1), 77, 0.0).status is SolicitStatus.UNRECOGNIZED_REASON
    assert t.allocated() == () and t.counters["refused_reason"] == 1


def test_a_solicit_flood_is_bounded_by_max_routers() -> None:
    t = table()
    granted = {
        t.solicit(ext(n), SolicitReason.HAVE_CHILD_ID_REQUEST, 0.0).router_id for n in range(500)
    }
    assert len(t.allocated()) == 32
    assert len(granted - {None}) == 32
    assert t.counters["refused_full"] == 500 - 32


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgument):
        RouterIdTable(random.Random(), 256)
    with pytest.raises(InvalidArgument):
        table().allocate(b"short", 0.0)
    # an out-of-range requested ID is ignored, not trusted
    assert table().solicit(ext(1), 3, 0.0, requested=63).router_id in range(63)


def test_address_solicit_payload_round_trip() -> None:
    t = table(0x80)
    request = encode_tlvs(
        AddressTlvs(ext_mac=ext(5), rloc16=21 << 10, status=SolicitReason.TOO_FEW_ROUTERS).to_tlvs()
    )
    reply = parse_thread_tlvs(address_solicit_payload(t, request, 0.0))
    assert reply.status == SolicitStatus.SUCCESS and reply.rloc16 == 21 << 10
    assert reply.router_mask == bytes([0x81, 0, 0, 0x04, 0, 0, 0, 0, 0])
    released = encode_tlvs(AddressTlvs(ext_mac=ext(5), rloc16=21 << 10).to_tlvs())
    assert address_release_payload(t, released, 1.0)
    assert t.allocated() == ()


def test_address_solicit_payload_refusal_and_malformed() -> None:
    t = table()
    refused = parse_thread_tlvs(
        address_solicit_payload(t, encode_tlvs(AddressTlvs(ext_mac=ext(1), status=9).to_tlvs()), 0)
    )
    assert refused.status == SolicitStatus.UNRECOGNIZED_REASON
    assert refused.rloc16 is None and refused.router_mask is None
    with pytest.raises(ParseError):
        address_solicit_payload(t, encode_tlvs(AddressTlvs(status=2).to_tlvs()), 0.0)
    with pytest.raises(ParseError):  # a child RLOC16 is not a router's
        address_release_payload(
            t, encode_tlvs(AddressTlvs(ext_mac=ext(1), rloc16=0x0401).to_tlvs()), 0
        )
    with pytest.raises(ParseError):  # a truncated Router Mask
        parse_thread_tlvs(bytes([7, 3, 1, 2, 3]))
