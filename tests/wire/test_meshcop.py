"""MeshCoP TLVs (gateway.wire.meshcop): known answers, tshark cross-checks, round trips, fuzz."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidArgument, ParseError
from gateway.wire import meshcop as mc
from gateway.wire.coap import TmfUri, tmf_request
from gateway.wire.meshcop import (
    ChannelMask,
    SecurityPolicy,
    Timestamp,
    decode_meshcop_tlvs,
    encode_meshcop_tlvs,
)
from gateway.wire.tlv import Tlv
from tests.wire.test_mle import (
    CHILD_EXT,
    PARENT_EXT,
    as_hex,
    as_int,
    link_local,
    lowpan_udp_frame,
    needs_tshark,
    tshark_fields,
)

# Values of the OpenThread CLI README example dataset (openthread/openthread
# src/cli/README_DATASET.md, "dataset set active 0e08...", shown field by field under
# "dataset active": Network Key f366..., Mesh Local Prefix fdf1:f1ad:d079:7dc0::/64, Ext PAN ID
# 39758ec8144b07fb, Network Name OpenThread-5938, PAN ID 0x5938, PSKc 3ca6..., Channel 15).
README_KEY = bytes.fromhex("f366cec7a446bab978d90d27abe38f23")
README_PSKC = bytes.fromhex("3ca67c969efb0d0c74a4d8ee923b576c")
README_MLP = bytes.fromhex("fdf1f1add0797dc0")
README_XPANID = bytes.fromhex("39758ec8144b07fb")

TMF_DECODE = (
    "-d",
    "udp.port==61631,coap",
    "-d",
    "media_type==application/octet-stream,thread_coap",
)


def tmf_frame(uri: TmfUri, tlvs: list[Any], mid: int, confirmable: bool = True) -> bytes:
    msg = tmf_request(uri, tlvs, mid=mid, token=bytes((0xAB, mid)), confirmable=confirmable)
    frame = lowpan_udp_frame(
        msg.to_bytes(),
        src_ext=CHILD_EXT,
        dst_ext=PARENT_EXT,
        dst_ip=link_local(PARENT_EXT),
        port=61631,
        seq=mid,
    )
    assert len(frame) <= 127
    return frame


# --- known answers from OpenThread's CLI documentation ----------------------------------------


def test_readme_dataset_values_decode() -> None:
    # The TLVs of the README hex (see above), one by one.
    items = decode_meshcop_tlvs(
        bytes.fromhex(
            "0e080000000000010000"  # Active Timestamp: 1
            "000300000f"  # Channel: 15
            "35060004001fffe0"  # Channel Mask: 0x07fff800
            "0c0402a0f7f8"  # Security Policy: 672 onrc 0
            "0102"
            "5938"  # PAN ID: 0x5938
        )
    )
    ts, ch, mask, policy, pan = items
    assert ts == mc.ActiveTimestampTlv(Timestamp(1, 0, False))
    assert ch == mc.ChannelTlv(15, 0)
    assert isinstance(mask, mc.ChannelMaskTlv)
    assert mask.value.entries[0].ot_mask == 0x07FFF800
    assert mask.value.channels() == frozenset(range(11, 27))
    assert ChannelMask.from_ot_mask(0x07FFF800) == mask.value
    assert isinstance(policy, mc.SecurityPolicyTlv)
    assert policy.value.describe() == "672 onrc 0"
    assert policy.value == SecurityPolicy()  # OpenThread's defaults
    assert pan == mc.PanIdTlv(0x5938)


def test_security_policy_letters_match_openthread_cli() -> None:
    # Flag letters of `dataset securitypolicy` (README_DATASET.md): o n r c C e p R; the C, e, p
    # and R bits are inverted on the wire (OpenThread src/core/thread/key_manager.cpp).
    p = SecurityPolicy(
        commercial_commissioning=True,
        autonomous_enrollment=True,
        network_key_provisioning=True,
        non_ccm_routers=True,
        version_threshold=3,
        obtain_network_key=False,
    )
    assert p.describe() == "672 nrcCepR 3"
    assert p.to_bytes() == bytes.fromhex("02a070bb")
    assert SecurityPolicy.from_bytes(p.to_bytes()) == p


def test_security_policy_thread_1_1_layout() -> None:
    # Thread 1.1 layout: one flags byte (OpenThread accepts it: SecurityPolicyTlv::IsValid needs
    # at least one flags byte; the second byte's fields then take their defaults).
    old = SecurityPolicy.from_bytes(bytes.fromhex("02a0f7"))
    assert old.flags_length == 1 and old.describe() == "672 onrc 0"
    assert old.to_bytes() == bytes.fromhex("02a0f7")
    assert SecurityPolicy.from_bytes(bytes.fromhex("0e10f8")).beacons
    # Unknown trailing flag bytes survive a round trip.
    future = bytes.fromhex("02a0f7f8aa55")
    assert SecurityPolicy.from_bytes(future).to_bytes() == future
    with pytest.raises(ParseError):
        SecurityPolicy.from_bytes(b"\x02\xa0")


def test_timestamp_layout_and_order() -> None:
    # timestamp.hpp: seconds (48 bits) | ticks (15 bits) << 1 | authoritative (bit 0)
    t = Timestamp(0x0102030405, 0x7FFF, True)
    assert t.to_bytes() == bytes.fromhex("000102030405ffff")
    assert Timestamp.from_bytes(t.to_bytes()) == t
    assert Timestamp(1) < Timestamp(1, 1) < Timestamp(1, 1, True) < Timestamp(2)
    with pytest.raises(InvalidArgument):
        Timestamp(1 << 48)


def test_discovery_request_from_openthread_capture() -> None:
    # Sub-TLV bytes of a captured OpenThread joiner Discovery Request (see test_mle.py).
    (req,) = decode_meshcop_tlvs(bytes.fromhex("80025800"))
    assert req == mc.DiscoveryRequestTlv(version=5, joiner=True)
    assert req.to_bytes() == bytes.fromhex("80025800")


def test_state_values() -> None:
    assert mc.StateTlv.from_value(b"\xff").value == mc.State.REJECT
    assert mc.StateTlv(-1).to_bytes() == b"\x10\x01\xff"
    assert mc.StateTlv(1).accepted and not mc.StateTlv(0).accepted


def test_encapsulation_tlvs_are_extended_like_openthread() -> None:
    # fact sheet §3.1: OpenThread writes Joiner DTLS and UDP Encapsulation TLVs in extended
    # form even when short; both forms must parse.
    dtls = mc.JoinerDtlsEncapsulationTlv(b"\x16\xfe\xfd")
    assert dtls.to_bytes() == bytes.fromhex("11ff000316fefd")
    (short,) = decode_meshcop_tlvs(bytes.fromhex("110316fefd"))
    assert isinstance(short, mc.JoinerDtlsEncapsulationTlv) and not short.extended
    assert short.to_bytes() == bytes.fromhex("110316fefd")
    udp = mc.UdpEncapsulationTlv(61631, 61631, b"\x01")
    assert udp.to_bytes() == bytes.fromhex("30ff0005f0bff0bf01")
    assert decode_meshcop_tlvs(udp.to_bytes()) == (udp,)


def test_keys_never_in_repr() -> None:
    for cls in (mc.NetworkKeyTlv, mc.PskcTlv, mc.JoinerRouterKekTlv):
        text = repr(cls(README_KEY))
        assert README_KEY.hex() not in text and "\\x" not in text and "f366" not in text
    payload = encode_meshcop_tlvs([mc.NetworkKeyTlv(README_KEY), mc.PskcTlv(README_PSKC)])
    assert README_KEY.hex() not in repr(decode_meshcop_tlvs(payload))
    assert README_PSKC.hex() not in repr(decode_meshcop_tlvs(payload))


def test_unknown_tlvs_pass_through_in_order() -> None:
    wire = bytes.fromhex("3a02abcd0102facec8003b0474657374")
    items = decode_meshcop_tlvs(wire)
    assert items[0] == Tlv(58, b"\xab\xcd")  # Secure Dissemination stays raw
    assert items[1] == mc.PanIdTlv(0xFACE)
    assert items[2] == Tlv(200, b"")
    assert items[3] == mc.ThreadDomainNameTlv("test")
    assert encode_meshcop_tlvs(items) == wire


@pytest.mark.parametrize(
    "bad",
    [
        "0102ff",  # PAN ID too short
        "0310" + "41" * 16 + "00",  # truncated TLV
        "0311" + "41" * 17,  # network name longer than 16
        "0302ff fe",  # not UTF-8
        "0800",  # steering data must be 1..16 bytes
        "0811" + "00" * 17,
        "0c02 02a0",  # security policy without flags
        "3503 0004 00",  # channel mask entry truncated
        "f103 18b430",  # joiner advertisement without data
        "2505 18b4300010",  # vendor stack version needs 6 bytes
        "3003 f0bff0",  # UDP encapsulation needs both ports
    ],
)
def test_malformed_values_raise_parse_error(bad: str) -> None:
    with pytest.raises(ParseError):
        decode_meshcop_tlvs(bytes.fromhex(bad.replace(" ", "")))


def test_longer_fixed_values_are_tolerated_like_openthread() -> None:
    # OpenThread reads fixed-size values from the start of a longer TLV (Tlv::Read).
    (pan,) = decode_meshcop_tlvs(bytes.fromhex("0103beef00"))
    assert pan == mc.PanIdTlv(0xBEEF)


# --- tshark cross-checks ----------------------------------------------------------------------


@needs_tshark
def test_tmf_payloads_decoded_by_tshark(tmp_path: Path) -> None:
    inner = tmf_request(
        TmfUri.MGMT_COMMISSIONER_SET,
        [mc.CommissionerSessionIdTlv(0x1234), mc.SteeringDataTlv(b"\xff")],
        mid=77,
        token=b"\x01\x02",
    ).to_bytes()
    frames = [
        tmf_frame(
            TmfUri.MGMT_ACTIVE_SET,
            [
                mc.NetworkKeyTlv(README_KEY),
                mc.MeshLocalPrefixTlv(README_MLP),
                mc.ExtendedPanIdTlv(README_XPANID),
                mc.NetworkNameTlv("OpenThread-5938"),
                mc.ActiveTimestampTlv(Timestamp(1)),
            ],
            1,
        ),
        tmf_frame(
            TmfUri.MGMT_ACTIVE_SET,
            [
                mc.ChannelMaskTlv(ChannelMask.from_ot_mask(0x07FFF800)),
                mc.PskcTlv(README_PSKC),
                mc.NetworkKeySequenceTlv(0x01020304),
                mc.ChannelTlv(15),
                mc.PanIdTlv(0x5938),
                mc.SecurityPolicyTlv(SecurityPolicy(flags_length=1, beacons=True)),
            ],
            2,
        ),
        tmf_frame(
            TmfUri.JOIN_FIN,
            [
                mc.StateTlv(1),
                mc.VendorNameTlv("OPENTHREAD"),
                mc.VendorModelTlv("SIMULATION"),
                mc.VendorSwVersionTlv("1.4"),
                mc.VendorStackVersionTlv(0x18B430, 0x123, 0x4, 1, 0),
                mc.ProvisioningUrlTlv("https://x.io/p"),
            ],
            3,
        ),
        tmf_frame(
            TmfUri.RLY_TX,
            [
                mc.JoinerUdpPortTlv(1000),
                mc.JoinerIidTlv(bytes.fromhex("d45e64fa83f81cf7")),
                mc.JoinerRouterLocatorTlv(0x0400),
                mc.JoinerRouterKekTlv(bytes(range(16))),
                mc.JoinerDtlsEncapsulationTlv(bytes(10)),
            ],
            4,
            confirmable=False,
        ),
        tmf_frame(
            TmfUri.UDP_TX,
            [
                mc.Ipv6AddressTlv(ipaddress.IPv6Address("fd00::ff:fe00:fc00")),
                mc.UdpEncapsulationTlv(61631, 61631, inner),
            ],
            5,
            confirmable=False,
        ),
        tmf_frame(
            TmfUri.MGMT_COMMISSIONER_SET,
            [
                mc.CommissionerSessionIdTlv(0x1234),
                mc.SteeringDataTlv(bytes(15) + b"\x12"),
                mc.BorderAgentLocatorTlv(0x0400),
                mc.CommissionerIdTlv("OT-commissioner"),
                mc.CommissionerUdpPortTlv(49191),
            ],
            6,
        ),
        tmf_frame(
            TmfUri.MGMT_ED_SCAN,
            [
                mc.ChannelMaskTlv(ChannelMask.from_channels([11, 15, 26])),
                mc.CountTlv(3),
                mc.PeriodTlv(100),
                mc.ScanDurationTlv(32),
            ],
            7,
        ),
        tmf_frame(
            TmfUri.MGMT_PENDING_SET,
            [
                mc.PendingTimestampTlv(Timestamp(0x12345678, 100, True)),
                mc.DelayTimerTlv(300000),
                mc.GetTlv((0, 1, 2)),
                mc.StateTlv(-1),
            ],
            8,
        ),
    ]
    p = "thread_meshcop.tlv."
    fields = [
        "coap.opt.uri_path_recon",
        "coap.opt.uri_path",
        "coap.type",
        f"{p}type",
        f"{p}len16",
        f"{p}master_key",
        f"{p}ml_prefix",
        f"{p}xpan_id",
        f"{p}net_name",
        f"{p}active_tstamp",
        f"{p}pending_tstamp",
        f"{p}chan_mask_page",
        f"{p}chan_mask_len",
        f"{p}chan_mask_mask",
        f"{p}pskc",
        f"{p}net_key_seq_ctr",
        f"{p}channel",
        f"{p}channel_page",
        f"{p}pan_id",
        f"{p}sec_policy_rot",
        f"{p}sec_policy_o",
        f"{p}sec_policy_n",
        f"{p}sec_policy_r",
        f"{p}sec_policy_c",
        f"{p}sec_policy_b",
        f"{p}state",
        f"{p}vendor_name",
        f"{p}vendor_model",
        f"{p}vendor_sw_ver",
        f"{p}vendor_stack_ver_oui",
        f"{p}vendor_stack_ver_build",
        f"{p}vendor_stack_ver_rev",
        f"{p}vendor_stack_ver_min",
        f"{p}vendor_stack_ver_maj",
        f"{p}provisioning_url",
        f"{p}udp_port",
        f"{p}iid",
        f"{p}jr_locator",
        f"{p}kek",
        f"{p}ipv6_addr",
        f"{p}udp_encap_src_port",
        f"{p}udp_encap_dst_port",
        f"{p}commissioner_sess_id",
        f"{p}steering_data",
        f"{p}ba_locator",
        f"{p}commissioner_id",
        f"{p}count",
        f"{p}period",
        f"{p}scan_duration",
        f"{p}delay_timer",
        "_ws.malformed",
        "_ws.expert.message",
    ]
    rows = tshark_fields(tmp_path, frames, fields, *TMF_DECODE)
    a1, a2, fin, rly, udp, cs, ed, ps = rows
    for row in rows:
        assert row["_ws.malformed"] == ""
        # tshark feeds the UDP Encapsulation to its UDP dissector with a zero checksum and
        # warns about that; nothing else may raise an expert note.
        expected = "Illegal checksum value (0)" if row is udp else ""
        assert row["_ws.expert.message"] == expected
    assert a1["coap.opt.uri_path_recon"] == "/c/as"
    assert a1[f"{p}type"] == "5,7,2,3,14"
    assert a1[f"{p}master_key"] == README_KEY.hex()
    assert a1[f"{p}ml_prefix"].startswith("fdf1:f1ad:d079:7dc0::")
    assert as_hex(a1[f"{p}xpan_id"]) == README_XPANID.hex()
    assert a1[f"{p}net_name"] == "OpenThread-5938"
    assert "1970 00:00:01.000000000" in a1[f"{p}active_tstamp"]
    assert a2[f"{p}type"] == "53,4,6,0,1,12"
    assert (a2[f"{p}chan_mask_page"], a2[f"{p}chan_mask_len"]) == ("0", "4")
    assert as_hex(a2[f"{p}chan_mask_mask"]) == "001fffe0"
    assert a2[f"{p}pskc"] == README_PSKC.hex()
    assert as_hex(a2[f"{p}net_key_seq_ctr"]) == "01020304"
    assert (a2[f"{p}channel_page"], a2[f"{p}channel"]) == ("0", "15")
    assert as_int(a2[f"{p}pan_id"]) == 0x5938
    # Wireshark 4.0 decodes the Thread 1.1 (3-byte) Security Policy layout.
    assert a2[f"{p}sec_policy_rot"] == "672"
    bits = [a2[f"{p}sec_policy_{x}"] for x in "onrcb"]
    assert [as_int(b) for b in bits] == [1, 1, 1, 1, 1]
    assert fin["coap.opt.uri_path_recon"] == "/c/jf"
    assert fin[f"{p}state"] == "1"
    assert (fin[f"{p}vendor_name"], fin[f"{p}vendor_model"]) == ("OPENTHREAD", "SIMULATION")
    assert fin[f"{p}vendor_sw_ver"] == "1.4"
    assert as_int(fin[f"{p}vendor_stack_ver_oui"]) == 0x18B430
    assert as_int(fin[f"{p}vendor_stack_ver_build"]) == 0x123
    assert as_int(fin[f"{p}vendor_stack_ver_rev"]) == 4
    assert as_int(fin[f"{p}vendor_stack_ver_min"]) == 1
    assert as_int(fin[f"{p}vendor_stack_ver_maj"]) == 0
    assert fin[f"{p}provisioning_url"] == "https://x.io/p"
    assert rly["coap.type"] == "1"  # NON
    assert rly[f"{p}type"] == "18,19,20,21,17"
    assert rly[f"{p}udp_port"] == "1000"
    assert as_hex(rly[f"{p}iid"]) == "d45e64fa83f81cf7"
    assert as_hex(rly[f"{p}jr_locator"]) == "0400"
    assert as_hex(rly[f"{p}kek"]) == bytes(range(16)).hex()
    assert rly[f"{p}len16"] == "10"  # extended form
    assert udp[f"{p}ipv6_addr"] == "fd00::ff:fe00:fc00"
    assert (udp[f"{p}udp_encap_src_port"], udp[f"{p}udp_encap_dst_port"]) == ("61631", "61631")
    assert udp[f"{p}len16"] == str(4 + len(inner))
    # tshark goes on to decode the encapsulated MGMT_COMMISSIONER_SET too.
    assert udp["coap.opt.uri_path"] == "c,ut,c,cs"
    assert as_hex(udp[f"{p}commissioner_sess_id"]) == "1234"
    assert cs[f"{p}type"] == "11,8,9,10,15"
    assert as_hex(cs[f"{p}steering_data"]) == "00" * 15 + "12"
    assert as_hex(cs[f"{p}ba_locator"]) == "0400"
    assert cs[f"{p}commissioner_id"] == "OT-commissioner"
    assert cs[f"{p}udp_port"] == "49191"
    assert as_hex(ed[f"{p}chan_mask_mask"]) == "00110020"  # channels 11, 15, 26
    assert (ed[f"{p}count"], ed[f"{p}period"], ed[f"{p}scan_duration"]) == ("3", "100", "32")
    assert ps[f"{p}type"] == "51,52,13,0,1,2,16"  # tshark lists the Get TLV's types too
    assert "1979 22:51:36.003051758" in ps[f"{p}pending_tstamp"]  # 0x12345678 s, 100/32768
    assert ps[f"{p}delay_timer"] == "300000"
    assert ps[f"{p}state"] == "-1"


# --- properties -------------------------------------------------------------------------------

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
text16 = st.text(max_size=16).filter(lambda s: len(s.encode()) <= 16)
text32 = st.text(max_size=32).filter(lambda s: len(s.encode()) <= 32)
text64 = st.text(max_size=64).filter(lambda s: len(s.encode()) <= 64)
timestamps = st.builds(
    Timestamp, st.integers(0, (1 << 48) - 1), st.integers(0, 0x7FFF), st.booleans()
)


def fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


@st.composite
def security_policies(draw: st.DrawFn) -> SecurityPolicy:
    flags_length = draw(st.sampled_from([1, 2]))
    common: dict[str, Any] = {
        "rotation_hours": draw(u16),
        "obtain_network_key": draw(st.booleans()),
        "native_commissioning": draw(st.booleans()),
        "routers": draw(st.booleans()),
        "external_commissioning": draw(st.booleans()),
        "beacons": draw(st.booleans()),
        "commercial_commissioning": draw(st.booleans()),
        "autonomous_enrollment": draw(st.booleans()),
        "network_key_provisioning": draw(st.booleans()),
    }
    if flags_length == 1:
        return SecurityPolicy(flags_length=1, **common)
    return SecurityPolicy(
        flags_length=2,
        toble_link=draw(st.booleans()),
        non_ccm_routers=draw(st.booleans()),
        version_threshold=draw(st.integers(0, 7)),
        reserved=draw(st.integers(0, 7)),
        extra=draw(st.binary(max_size=3)),
        **common,
    )


channel_masks = st.builds(
    ChannelMask,
    st.lists(st.builds(mc.ChannelMaskEntry, u8, st.binary(max_size=8)), max_size=3).map(tuple),
)

MESHCOP_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    mc.ChannelTlv: st.builds(mc.ChannelTlv, u16, u8),
    mc.PanIdTlv: st.builds(mc.PanIdTlv, u16),
    mc.ExtendedPanIdTlv: st.builds(mc.ExtendedPanIdTlv, fixed(8)),
    mc.NetworkNameTlv: st.builds(mc.NetworkNameTlv, text16),
    mc.PskcTlv: st.builds(mc.PskcTlv, fixed(16)),
    mc.NetworkKeyTlv: st.builds(mc.NetworkKeyTlv, fixed(16)),
    mc.NetworkKeySequenceTlv: st.builds(mc.NetworkKeySequenceTlv, u32),
    mc.MeshLocalPrefixTlv: st.builds(mc.MeshLocalPrefixTlv, fixed(8)),
    mc.SteeringDataTlv: st.builds(mc.SteeringDataTlv, st.binary(min_size=1, max_size=16)),
    mc.BorderAgentLocatorTlv: st.builds(mc.BorderAgentLocatorTlv, u16),
    mc.CommissionerIdTlv: st.builds(mc.CommissionerIdTlv, text64),
    mc.CommissionerSessionIdTlv: st.builds(mc.CommissionerSessionIdTlv, u16),
    mc.SecurityPolicyTlv: st.builds(mc.SecurityPolicyTlv, security_policies()),
    mc.GetTlv: st.builds(mc.GetTlv, st.lists(u8, max_size=10).map(tuple)),
    mc.ActiveTimestampTlv: st.builds(mc.ActiveTimestampTlv, timestamps),
    mc.CommissionerUdpPortTlv: st.builds(mc.CommissionerUdpPortTlv, u16),
    mc.StateTlv: st.builds(mc.StateTlv, st.integers(-128, 127)),
    mc.JoinerDtlsEncapsulationTlv: st.builds(
        mc.JoinerDtlsEncapsulationTlv, st.binary(max_size=300), st.booleans()
    ),
    mc.JoinerUdpPortTlv: st.builds(mc.JoinerUdpPortTlv, u16),
    mc.JoinerIidTlv: st.builds(mc.JoinerIidTlv, fixed(8)),
    mc.JoinerRouterLocatorTlv: st.builds(mc.JoinerRouterLocatorTlv, u16),
    mc.JoinerRouterKekTlv: st.builds(mc.JoinerRouterKekTlv, fixed(16)),
    mc.DurationTlv: st.builds(mc.DurationTlv, u16),
    mc.ProvisioningUrlTlv: st.builds(mc.ProvisioningUrlTlv, text64),
    mc.VendorNameTlv: st.builds(mc.VendorNameTlv, text32),
    mc.VendorModelTlv: st.builds(mc.VendorModelTlv, text32),
    mc.VendorSwVersionTlv: st.builds(mc.VendorSwVersionTlv, text16),
    mc.VendorDataTlv: st.builds(mc.VendorDataTlv, st.binary(max_size=64)),
    mc.VendorStackVersionTlv: st.builds(
        mc.VendorStackVersionTlv,
        st.integers(0, 0xFFFFFF),
        st.integers(0, 0xFFF),
        st.integers(0, 15),
        st.integers(0, 15),
        st.integers(0, 15),
    ),
    mc.UdpEncapsulationTlv: st.builds(
        mc.UdpEncapsulationTlv, u16, u16, st.binary(max_size=300), st.booleans()
    ),
    mc.Ipv6AddressTlv: st.builds(mc.Ipv6AddressTlv, st.ip_addresses(v=6)),
    mc.PendingTimestampTlv: st.builds(mc.PendingTimestampTlv, timestamps),
    mc.DelayTimerTlv: st.builds(mc.DelayTimerTlv, u32),
    mc.ChannelMaskTlv: st.builds(mc.ChannelMaskTlv, channel_masks),
    mc.CountTlv: st.builds(mc.CountTlv, u8),
    mc.PeriodTlv: st.builds(mc.PeriodTlv, u16),
    mc.ScanDurationTlv: st.builds(mc.ScanDurationTlv, u16),
    mc.EnergyListTlv: st.builds(
        mc.EnergyListTlv, st.lists(st.integers(-128, 127), max_size=16).map(tuple)
    ),
    mc.ThreadDomainNameTlv: st.builds(mc.ThreadDomainNameTlv, text16),
    mc.DomainPrefixTlv: st.builds(mc.DomainPrefixTlv, st.binary(max_size=17)),
    mc.AeSteeringDataTlv: st.builds(mc.AeSteeringDataTlv, st.binary(max_size=16)),
    mc.NmkpSteeringDataTlv: st.builds(mc.NmkpSteeringDataTlv, st.binary(max_size=16)),
    mc.CommissionerTokenTlv: st.builds(mc.CommissionerTokenTlv, st.binary(max_size=300)),
    mc.CommissionerSignatureTlv: st.builds(mc.CommissionerSignatureTlv, st.binary(max_size=80)),
    mc.AeUdpPortTlv: st.builds(mc.AeUdpPortTlv, u16),
    mc.NmkpUdpPortTlv: st.builds(mc.NmkpUdpPortTlv, u16),
    mc.TriHostnameTlv: st.builds(mc.TriHostnameTlv, st.text(max_size=40)),
    mc.RegistrarIpv6AddressTlv: st.builds(mc.RegistrarIpv6AddressTlv, st.ip_addresses(v=6)),
    mc.RegistrarHostnameTlv: st.builds(mc.RegistrarHostnameTlv, st.text(max_size=40)),
    mc.CommissionerPenSignatureTlv: st.builds(
        mc.CommissionerPenSignatureTlv, st.binary(max_size=80)
    ),
    mc.WakeupChannelTlv: st.builds(mc.WakeupChannelTlv, u16, u8),
    mc.AdmitterStateTlv: st.builds(mc.AdmitterStateTlv, u8),
    mc.EnrollerIdTlv: st.builds(mc.EnrollerIdTlv, text64),
    mc.EnrollerModeTlv: st.builds(mc.EnrollerModeTlv, u8),
    mc.DiscoveryRequestTlv: st.builds(mc.DiscoveryRequestTlv, st.integers(0, 15), st.booleans()),
    mc.DiscoveryResponseTlv: st.builds(
        mc.DiscoveryResponseTlv, st.integers(0, 15), st.booleans(), st.booleans()
    ),
    mc.JoinerAdvertisementTlv: st.builds(
        mc.JoinerAdvertisementTlv, st.integers(0, 0xFFFFFF), st.binary(min_size=1, max_size=64)
    ),
}


def test_every_typed_tlv_has_a_strategy_and_the_fact_sheet_table_is_covered() -> None:
    assert set(MESHCOP_STRATEGIES) == set(mc.MESHCOP_TLV_CLASSES.values())
    # Fact sheet §3.2 types (all typed except 58, Secure Dissemination, which has no layout).
    table = {*range(0, 22), 23, *range(32, 38), 48, 49, *range(51, 58), *range(59, 71), 74}
    table |= {128, 129, 241}
    table -= {22}
    assert table <= set(mc.MESHCOP_TLV_CLASSES)


raw_unknown = st.builds(Tlv, st.sampled_from([22, 58, 100, 200, 255]), st.binary(max_size=20))
any_tlv = st.one_of(*MESHCOP_STRATEGIES.values(), raw_unknown)


@settings(max_examples=1000, deadline=None)
@given(st.lists(any_tlv, max_size=6))
def test_roundtrip_every_tlv(items: list[Any]) -> None:
    wire = encode_meshcop_tlvs(items)
    decoded = decode_meshcop_tlvs(wire)
    assert list(decoded) == items
    assert encode_meshcop_tlvs(decoded) == wire


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decode(data: bytes) -> None:
    try:
        decode_meshcop_tlvs(data)
    except ParseError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(mc.MESHCOP_TLV_CLASSES)), st.binary(max_size=80))
def test_fuzz_each_value(tlv_type: int, value: bytes) -> None:
    try:
        (item,) = decode_meshcop_tlvs(Tlv(tlv_type, value).to_bytes())
    except ParseError:
        return
    # Whatever decodes re-decodes to the same value after encoding.
    assert decode_meshcop_tlvs(item.to_bytes()) == (item,)


def test_constructor_validation() -> None:
    with pytest.raises(InvalidArgument):
        mc.PanIdTlv(0x10000)
    with pytest.raises(InvalidArgument):
        mc.PanIdTlv(True)
    with pytest.raises(InvalidArgument):
        mc.NetworkKeyTlv(bytes(15))
    with pytest.raises(InvalidArgument):
        mc.NetworkNameTlv("x" * 17)
    with pytest.raises(InvalidArgument):
        mc.StateTlv(200)
    with pytest.raises(InvalidArgument):
        SecurityPolicy(flags_length=3)
    with pytest.raises(InvalidArgument):
        mc.ChannelMaskEntry.from_channels([40])
    assert mc.Ipv6AddressTlv("fd00::1").value == ipaddress.IPv6Address("fd00::1")  # type: ignore[arg-type]
    assert mc.MeshLocalPrefixTlv(README_MLP).network == ipaddress.IPv6Network(
        "fdf1:f1ad:d079:7dc0::/64"
    )
    sd = mc.SteeringDataTlv(b"\xff")
    assert sd.permits_all and not sd.is_empty and mc.SteeringDataTlv(bytes(16)).is_empty
