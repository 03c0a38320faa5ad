"""MLE codec (gateway.wire.mle): known answers, tshark cross-checks, round trips and fuzzing.

The tshark checks build real 802.15.4 frames by hand (MAC header, 6LoWPAN IPHC with inline
next header, uncompressed UDP) around our MLE bytes and let Wireshark 4.0 decode them. For
secured MLE, Wireshark derives the MLE key itself from the network key ("Thread hash" key
entry: HMAC-SHA256 over the key sequence and "Thread") and checks the MIC, so a wrong nonce,
AAD or key derivation would leave the payload undecoded.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.fcs import append_fcs, fcs_ok
from drivers.pcap import PcapWriter
from gateway.errors import CryptoError, InvalidArgument, ParseError
from gateway.wire import meshcop as mc
from gateway.wire import mle
from gateway.wire.meshcop import Timestamp
from gateway.wire.tlv import Tlv

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

NETWORK_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
CHILD_EXT = bytes.fromhex("1ab4300000000002")
PARENT_EXT = bytes.fromhex("1ab4300000000001")
TSHARK_KEY_PREF = f'uat:ieee802154_keys:"{NETWORK_KEY.hex()}","0","Thread hash"'


# --- frame building helpers (shared with the other Thread wire tests) --------------------------


def mle_key(network_key: bytes, key_sequence: int) -> bytes:
    """Test-side MLE key: first half of HMAC-SHA256(network key, BE32(seq) || "Thread")
    (fact sheet §5.6). tshark derives it on its own, which checks this too."""
    h = hmac.HMAC(network_key, hashes.SHA256())
    h.update(key_sequence.to_bytes(4, "big") + b"Thread")
    return h.finalize()[:16]


def link_local(ext: bytes) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes((ext[0] ^ 0x02,)) + ext[1:])


def _udp_checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, udp: bytes) -> int:
    data = src.packed + dst.packed + struct.pack(">I", len(udp)) + b"\x00\x00\x00\x11" + udp
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF) or 0xFFFF


def lowpan_udp_frame(
    payload: bytes,
    *,
    src_ext: bytes,
    dst_ext: bytes | None,
    dst_ip: ipaddress.IPv6Address,
    port: int,
    seq: int = 1,
    pan_id: int = 0xFACE,
) -> bytes:
    """802.15.4-2006 data frame (PSDU with FCS) carrying one UDP datagram from the link-local
    address of ``src_ext``: IPHC with TF elided, next header inline, hop limit 255, source
    from the MAC address, destination from the MAC address (unicast) or ff02::XX (multicast)."""
    src_ip = link_local(src_ext)
    udp = struct.pack(">HHHH", port, port, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack(">H", _udp_checksum(src_ip, dst_ip, udp)) + udp[8:]
    if dst_ext is None:  # broadcast MAC, multicast IPv6 ff02::XX
        mac = bytes((0x41, 0xD8, seq)) + struct.pack("<HH", pan_id, 0xFFFF) + src_ext[::-1]
        iphc = bytes((0x7B, 0x3B, 0x11, dst_ip.packed[15]))
    else:
        mac = bytes((0x41, 0xDC, seq)) + struct.pack("<H", pan_id) + dst_ext[::-1] + src_ext[::-1]
        iphc = bytes((0x7B, 0x33, 0x11))
    return append_fcs(mac + iphc + udp)


def tshark_fields(
    tmp_path: Path, frames: list[bytes], fields: list[str], *extra: str
) -> list[dict[str, str]]:
    """Decode ``frames`` with tshark; one dict (field -> comma-joined values) per frame."""
    pcap = tmp_path / "frames.pcap"
    with PcapWriter(pcap) as w:
        for i, frame in enumerate(frames):
            w.write(frame, 1000.0 + i)
    cmd = [str(TSHARK), "-r", str(pcap), *extra, "-T", "fields", "-E", "separator=\t"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=,"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == len(frames)
    return [dict(zip(fields, row, strict=True)) for row in rows]


def as_int(text: str) -> int:
    """A tshark numeric field (decimal or 0x-hex)."""
    return int(text, 0)


def as_hex(text: str) -> str:
    """A tshark byte field as plain lower-case hex."""
    return text.removeprefix("0x").replace(":", "").lower()


# --- known answers ---------------------------------------------------------------------------

# A real MLE Discovery Request sent by an OpenThread joiner, captured on the air (PSDU with FCS;
# supplied with the task brief). MAC: data frame, dst 0xffff/0xffff, src PAN 0x2bcf, src ext
# 269eb173f9fa93c8. 6LoWPAN: IPHC 7f3b, dst ff02::2, NHC UDP f0 4d4c 4d4c checksum 12c3.
OT_DISCOVERY_REQUEST_FRAME = bytes.fromhex(
    "01d807ffffffff2bcfc893faf973b19e267f3b02f04d4c4d4c12c3ff101a0480025800fd00"
)
MLE_OFFSET = 17 + 3 + 7  # MAC header, IPHC + inline dst, NHC UDP with both ports inline


def test_openthread_discovery_request_known_answer() -> None:
    assert fcs_ok(OT_DISCOVERY_REQUEST_FRAME)
    mle_bytes = OT_DISCOVERY_REQUEST_FRAME[MLE_OFFSET:-2]
    assert mle_bytes == bytes.fromhex("ff101a0480025800")
    msg = mle.parse_mle(mle_bytes)
    assert isinstance(msg, mle.MleMessage)
    assert msg.command == mle.MleCommand.DISCOVERY_REQUEST
    info = mle.parse_discovery_request(msg)
    assert (info.version, info.joiner, info.ext_pan_id) == (mle.THREAD_VERSION_1_4, True, None)
    # Our builder produces the same bytes an OpenThread 1.4 joiner sends.
    assert mle.discovery_request().to_unsecured_bytes() == mle_bytes
    assert msg.to_unsecured_bytes() == mle_bytes


@needs_tshark
def test_openthread_discovery_request_as_tshark_sees_it(tmp_path: Path) -> None:
    # Independent oracle: Wireshark's 6LoWPAN/UDP/MLE dissectors on the captured frame agree
    # with our reading of where the MLE payload starts and what it says.
    (row,) = tshark_fields(
        tmp_path,
        [OT_DISCOVERY_REQUEST_FRAME],
        [
            "udp.dstport",
            "mle.sec_suite",
            "mle.cmd",
            "mle.tlv.type",
            "thread_meshcop.tlv.type",
            "thread_meshcop.tlv.discovery_req_ver",
            "thread_meshcop.tlv.discovery_req_j",
            "_ws.malformed",
        ],
    )
    assert row["udp.dstport"] == "19788"
    assert as_int(row["mle.sec_suite"]) == 255
    assert row["mle.cmd"] == "16"
    assert row["mle.tlv.type"] == "26"
    assert row["thread_meshcop.tlv.type"] == "128"
    assert row["thread_meshcop.tlv.discovery_req_ver"] == "5"
    assert row["thread_meshcop.tlv.discovery_req_j"] == "1"
    assert row["_ws.malformed"] == ""


def _parent_request() -> mle.MleMessage:
    return mle.MleMessage(
        mle.MleCommand.PARENT_REQUEST,
        (
            mle.ModeTlv.of(rx_on_when_idle=True, full_thread_device=False, full_network_data=False),
            mle.ChallengeTlv(bytes.fromhex("0102030405060708")),
            mle.ScanMaskTlv.of(router=True, end_device=False),
            mle.VersionTlv(mle.THREAD_VERSION_1_4),
        ),
    )


def _child_id_request() -> mle.MleMessage:
    return mle.MleMessage(
        mle.MleCommand.CHILD_ID_REQUEST,
        (
            mle.ResponseTlv(bytes.fromhex("1112131415161718")),
            mle.LinkFrameCounterTlv(0),
            mle.MleFrameCounterTlv(8),
            mle.ModeTlv.of(rx_on_when_idle=True, full_thread_device=False, full_network_data=False),
            mle.TimeoutTlv(240),
            mle.VersionTlv(5),
            mle.TlvRequestTlv((mle.MleTlvType.ADDRESS16, mle.MleTlvType.NETWORK_DATA)),
            mle.ActiveTimestampTlv(Timestamp(1)),
            mle.AddressRegistrationTlv(
                (mle.AddressRegistrationEntry(bytes.fromhex("0011223344556677"), 0),)
            ),
        ),
    )


def _parent_response() -> mle.MleMessage:
    return mle.MleMessage(
        mle.MleCommand.PARENT_RESPONSE,
        (
            mle.SourceAddressTlv(0x0400),
            mle.LeaderDataTlv(0x12345678, 64, 7, 6, 1),
            mle.LinkFrameCounterTlv(1000),
            mle.MleFrameCounterTlv(2000),
            mle.ResponseTlv(bytes.fromhex("0102030405060708")),
            mle.ChallengeTlv(bytes.fromhex("a1a2a3a4a5a6a7a8")),
            mle.LinkMarginTlv(40),
            mle.ConnectivityTlv(1, 2, 3, 4, 1, 9, 3, 1280, 1),
            mle.VersionTlv(5),
        ),
    )


def _child_id_response() -> mle.MleMessage:
    return mle.MleMessage(
        mle.MleCommand.CHILD_ID_RESPONSE,
        (
            mle.SourceAddressTlv(0x0400),
            mle.LeaderDataTlv(0x12345678, 64, 7, 6, 1),
            mle.Address16Tlv(0x0401),
            mle.Route64Tlv(9, (mle.RouteEntry(1, 3, 3, 1), mle.RouteEntry(5, 2, 1, 0))),
            mle.NetworkDataTlv(bytes.fromhex("0808090204000b021234")),  # commissioning data
            mle.TimeoutTlv(240),
        ),
    )


@needs_tshark
@pytest.mark.parametrize("key_sequence", [0, 5])
def test_secured_mle_decrypted_by_tshark(tmp_path: Path, key_sequence: int) -> None:
    key = mle_key(NETWORK_KEY, key_sequence)
    child, parent = link_local(CHILD_EXT), link_local(PARENT_EXT)
    multicast = ipaddress.IPv6Address("ff02::2")

    def secured(
        msg: mle.MleMessage, fc: int, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address
    ) -> bytes:
        return mle.encode_secured(
            msg,
            mle_key=key,
            key_sequence=key_sequence,
            frame_counter=fc,
            source=src,
            destination=dst,
        )

    frames = [
        lowpan_udp_frame(
            secured(_parent_request(), 7, child, multicast),
            src_ext=CHILD_EXT,
            dst_ext=None,
            dst_ip=multicast,
            port=mle.MLE_PORT,
            seq=1,
        ),
        lowpan_udp_frame(
            secured(_parent_response(), 100, parent, child),
            src_ext=PARENT_EXT,
            dst_ext=CHILD_EXT,
            dst_ip=child,
            port=mle.MLE_PORT,
            seq=2,
        ),
        lowpan_udp_frame(
            secured(_child_id_request(), 8, child, parent),
            src_ext=CHILD_EXT,
            dst_ext=PARENT_EXT,
            dst_ip=parent,
            port=mle.MLE_PORT,
            seq=3,
        ),
        lowpan_udp_frame(
            secured(_child_id_response(), 101, parent, child),
            src_ext=PARENT_EXT,
            dst_ext=CHILD_EXT,
            dst_ip=child,
            port=mle.MLE_PORT,
            seq=4,
        ),
    ]
    for f in frames:
        assert len(f) <= 127
    fields = [
        "mle.sec_suite",
        "wpan.aux_sec.frame_counter",
        "wpan.aux_sec.key_source",
        "wpan.aux_sec.key_index",
        "mle.cmd",
        "mle.tlv.type",
        "mle.tlv.challenge",
        "mle.tlv.response",
        "mle.tlv.mode.idle_rx",
        "mle.tlv.mode.device_type",
        "mle.tlv.scan_mask.r",
        "mle.tlv.scan_mask.e",
        "mle.tlv.version",
        "mle.tlv.timeout",
        "mle.tlv.mle_frm_cntr",
        "mle.tlv.ll_frm_cntr",
        "mle.tlv.source_addr",
        "mle.tlv.addr16",
        "mle.tlv.leader_data.partition_id",
        "mle.tlv.leader_data.weighting",
        "mle.tlv.leader_data.data_version",
        "mle.tlv.leader_data.stable_data_version",
        "mle.tlv.leader_data.router_id",
        "mle.tlv.route64.id_seq",
        "mle.tlv.route64.nbr_out",
        "mle.tlv.route64.nbr_in",
        "mle.tlv.route64.cost",
        "mle.tlv.link_margin",
        "mle.tlv.conn.flags.pp",
        "mle.tlv.conn.lq3",
        "mle.tlv.conn.lq2",
        "mle.tlv.conn.lq1",
        "mle.tlv.conn.leader_cost",
        "mle.tlv.conn.id_seq",
        "mle.tlv.conn.active_rtrs",
        "mle.tlv.conn.sed_buf_size",
        "mle.tlv.conn.sed_dgram_cnt",
        "mle.tlv.addr_reg_cid",
        "mle.tlv.addr_reg_iid",
        "_ws.malformed",
        "_ws.expert.message",
    ]
    rows = tshark_fields(tmp_path, frames, fields, "-o", TSHARK_KEY_PREF)
    pr, prsp, cid, cidr = rows
    for row, fc in zip(rows, (7, 100, 8, 101), strict=True):
        assert as_int(row["mle.sec_suite"]) == 0
        assert row["wpan.aux_sec.frame_counter"] == str(fc)
        assert int(row["wpan.aux_sec.key_source"], 16) == key_sequence
        assert int(row["wpan.aux_sec.key_index"], 16) == mle.mle_key_index(key_sequence)
        assert row["_ws.malformed"] == "" and row["_ws.expert.message"] == ""
    # Parent Request: decrypted (a bad MIC leaves only "can't decrypt" and raw data).
    assert pr["mle.cmd"] == "9"
    assert pr["mle.tlv.type"] == "1,3,14,18"
    assert pr["mle.tlv.challenge"] == "0102030405060708"
    assert (pr["mle.tlv.mode.idle_rx"], pr["mle.tlv.mode.device_type"]) == ("1", "0")
    assert (pr["mle.tlv.scan_mask.r"], pr["mle.tlv.scan_mask.e"]) == ("1", "0")
    assert pr["mle.tlv.version"] == "5"
    # Parent Response.
    assert prsp["mle.cmd"] == "10"
    assert prsp["mle.tlv.type"] == "0,11,5,8,4,3,16,15,18"
    assert int(prsp["mle.tlv.leader_data.partition_id"], 0) == 0x12345678
    assert prsp["mle.tlv.leader_data.weighting"] == "64"
    assert prsp["mle.tlv.leader_data.data_version"] == "7"
    assert prsp["mle.tlv.leader_data.stable_data_version"] == "6"
    assert prsp["mle.tlv.leader_data.router_id"] == "1"
    assert (prsp["mle.tlv.ll_frm_cntr"], prsp["mle.tlv.mle_frm_cntr"]) == ("1000", "2000")
    assert prsp["mle.tlv.link_margin"] == "40"
    conn = [prsp[f"mle.tlv.conn.{k}"] for k in ("lq3", "lq2", "lq1", "leader_cost", "id_seq")]
    assert conn == ["2", "3", "4", "1", "9"]
    assert prsp["mle.tlv.conn.active_rtrs"] == "3"
    assert prsp["mle.tlv.conn.sed_buf_size"] == "1280"
    assert prsp["mle.tlv.conn.sed_dgram_cnt"] == "1"
    assert int(prsp["mle.tlv.conn.flags.pp"], 0) == 1
    # Child ID Request.
    assert cid["mle.cmd"] == "11"
    # tshark lists the requested types (10, 12) of the TLV Request with the TLV types.
    assert cid["mle.tlv.type"] == "4,5,8,1,2,18,13,10,12,22,19"
    assert cid["mle.tlv.response"] == "1112131415161718"
    assert (cid["mle.tlv.timeout"], cid["mle.tlv.mle_frm_cntr"]) == ("240", "8")
    assert cid["mle.tlv.addr_reg_cid"] == "0"
    assert as_hex(cid["mle.tlv.addr_reg_iid"]) == "0011223344556677"
    # Child ID Response.
    assert cidr["mle.cmd"] == "12"
    assert cidr["mle.tlv.type"] == "0,11,10,9,12,2"
    assert as_hex(cidr["mle.tlv.source_addr"]) == "0400"
    assert as_hex(cidr["mle.tlv.addr16"]) == "0401"
    assert cidr["mle.tlv.route64.id_seq"] == "9"
    assert cidr["mle.tlv.route64.nbr_out"] == "3,2"
    assert cidr["mle.tlv.route64.nbr_in"] == "3,1"
    assert cidr["mle.tlv.route64.cost"] == "1,0"


@needs_tshark
def test_tshark_rejects_a_tampered_mic(tmp_path: Path) -> None:
    # Control for the test above: tshark really checks the MIC.
    key = mle_key(NETWORK_KEY, 0)
    child, multicast = link_local(CHILD_EXT), ipaddress.IPv6Address("ff02::2")
    good = mle.encode_secured(
        _parent_request(),
        mle_key=key,
        key_sequence=0,
        frame_counter=7,
        source=child,
        destination=multicast,
    )
    bad = good[:-1] + bytes((good[-1] ^ 0x01,))
    frames = [
        lowpan_udp_frame(m, src_ext=CHILD_EXT, dst_ext=None, dst_ip=multicast, port=mle.MLE_PORT)
        for m in (good, bad)
    ]
    ok, tampered = tshark_fields(tmp_path, frames, ["mle.cmd"], "-o", TSHARK_KEY_PREF)
    assert ok["mle.cmd"] == "9"
    assert tampered["mle.cmd"] == ""


@needs_tshark
def test_discovery_response_decoded_by_tshark(tmp_path: Path) -> None:
    rsp = mle.discovery_response(
        ext_pan_id=bytes.fromhex("dead00beef00cafe"),
        network_name="OpenThread-1234",
        steering_data=bytes(15) + b"\x12",
        joiner_udp_port=1000,
        native_commissioner=True,
        commissioner_udp_port=49191,
    )
    wire = rsp.to_unsecured_bytes()
    frame = lowpan_udp_frame(
        wire,
        src_ext=PARENT_EXT,
        dst_ext=CHILD_EXT,
        dst_ip=link_local(CHILD_EXT),
        port=mle.MLE_PORT,
    )
    (row,) = tshark_fields(
        tmp_path,
        [frame],
        [
            "mle.cmd",
            "thread_meshcop.tlv.type",
            "thread_meshcop.tlv.discovery_rsp_ver",
            "thread_meshcop.tlv.discovery_rsp_n",
            "thread_meshcop.tlv.xpan_id",
            "thread_meshcop.tlv.net_name",
            "thread_meshcop.tlv.steering_data",
            "thread_meshcop.tlv.udp_port",
            "_ws.malformed",
        ],
    )
    assert row["mle.cmd"] == "17"
    assert row["thread_meshcop.tlv.type"] == "15,129,2,3,8,18"
    assert row["thread_meshcop.tlv.discovery_rsp_ver"] == "5"
    assert row["thread_meshcop.tlv.discovery_rsp_n"] == "1"
    assert as_hex(row["thread_meshcop.tlv.xpan_id"]) == "dead00beef00cafe"
    assert row["thread_meshcop.tlv.net_name"] == "OpenThread-1234"
    assert as_hex(row["thread_meshcop.tlv.steering_data"]) == "00" * 15 + "12"
    assert row["thread_meshcop.tlv.udp_port"] == "49191,1000"
    assert row["_ws.malformed"] == ""
    info = mle.parse_discovery_response(mle.MleMessage.from_payload(wire[1:]))
    assert info == mle.DiscoveryResponseInfo(
        5,
        True,
        False,
        bytes.fromhex("dead00beef00cafe"),
        "OpenThread-1234",
        bytes(15) + b"\x12",
        1000,
        49191,
        None,
    )


# --- security details -------------------------------------------------------------------------


def test_aux_header_layout() -> None:
    # fact sheet §5.8: 0x15 | frame counter LE | key source = key sequence BE | (seq & 0x7F) + 1
    aux = mle.AuxSecurityHeader(frame_counter=0x01020304, key_sequence=0x80000081)
    assert aux.to_bytes() == bytes.fromhex("15040302018000008102")
    assert mle.AuxSecurityHeader.from_bytes(aux.to_bytes()) == aux
    with pytest.raises(ParseError):
        mle.AuxSecurityHeader.from_bytes(bytes.fromhex("0d04030201800000810200"))


def test_nonce_uses_sender_extended_address() -> None:
    src = link_local(CHILD_EXT)
    assert mle.mle_nonce(src, 7) == CHILD_EXT + bytes.fromhex("00000007") + b"\x05"


def test_secured_roundtrip_and_failures() -> None:
    key = mle_key(NETWORK_KEY, 3)
    src, dst = link_local(CHILD_EXT), link_local(PARENT_EXT)
    msg = _child_id_request()
    wire = mle.encode_secured(
        msg, mle_key=key, key_sequence=3, frame_counter=42, source=src, destination=dst
    )
    assert wire[0] == 0 and wire[1] == 0x15
    frame = mle.parse_mle(wire)
    assert isinstance(frame, mle.SecuredMleFrame)
    assert (frame.aux.frame_counter, frame.aux.key_sequence, frame.aux.key_index) == (42, 3, 4)
    assert frame.decrypt(key, src, dst) == msg
    assert frame.decrypt(key, str(src), dst.packed) == msg
    with pytest.raises(CryptoError):
        frame.decrypt(mle_key(NETWORK_KEY, 4), src, dst)
    with pytest.raises(CryptoError):  # receiver address is authenticated
        frame.decrypt(key, src, ipaddress.IPv6Address("ff02::1"))
    with pytest.raises(CryptoError):  # sender address feeds the nonce and the AAD
        frame.decrypt(key, dst, dst)
    tampered = wire[:12] + bytes((wire[12] ^ 0x80,)) + wire[13:]
    tf = mle.parse_mle(tampered)
    assert isinstance(tf, mle.SecuredMleFrame)
    with pytest.raises(CryptoError):
        tf.decrypt(key, src, dst)
    text = repr(frame) + repr(msg)
    assert key.hex() not in text


@pytest.mark.parametrize(
    "bad",
    ["", "01", "ff", "00", "0015" + "00" * 9, "0014" + "00" * 14, "ff101a05"],
)
def test_parse_errors(bad: str) -> None:
    with pytest.raises(ParseError):
        mle.parse_mle(bytes.fromhex(bad))


def test_discovery_request_with_ext_pan_id() -> None:
    msg = mle.discovery_request(version=mle.THREAD_VERSION_1_2, joiner=False, ext_pan_id=bytes(8))
    info = mle.parse_discovery_request(mle.parse_mle(msg.to_unsecured_bytes()))  # type: ignore[arg-type]
    assert info == mle.DiscoveryRequestInfo(3, False, bytes(8), None)
    with pytest.raises(ParseError):
        mle.parse_discovery_response(msg)
    with pytest.raises(ParseError):
        mle.parse_discovery_request(mle.MleMessage(16))
    empty_disc = mle.MleMessage(17, (mle.DiscoveryTlv(()),))
    with pytest.raises(ParseError):
        mle.parse_discovery_response(empty_disc)


def test_tlv_semantics() -> None:
    assert (
        mle.ModeTlv.of(rx_on_when_idle=True, full_thread_device=True, full_network_data=True).value
        == 0x0F
    )
    m = mle.ModeTlv(0x08)
    assert (m.rx_on_when_idle, m.full_thread_device, m.full_network_data) == (True, False, False)
    r = mle.Route64Tlv.from_value(bytes.fromhex("05c000000000000000e111"))
    assert r.router_ids == (0, 1) and r.entries[0] == mle.RouteEntry(0, 3, 2, 1)
    with pytest.raises(ParseError):  # router ID 63 is not valid
        mle.Route64Tlv.from_value(bytes.fromhex("05000000000000000100"))
    with pytest.raises(ParseError):  # route byte missing
        mle.Route64Tlv.from_value(bytes.fromhex("05c000000000000000e1"))
    with pytest.raises(InvalidArgument):
        mle.Route64Tlv(1, (mle.RouteEntry(5), mle.RouteEntry(2)))
    c = mle.ConnectivityTlv.from_value(bytes.fromhex("c0 01 02 03 04 05 06"))
    assert c.parent_priority == -1 and c.sed_buffer_size is None
    with pytest.raises(ParseError):
        mle.ConnectivityTlv.from_value(bytes(8))
    assert mle.ActiveDatasetTlv(b"\x05\x10" + NETWORK_KEY).__repr__() == "ActiveDatasetTlv(len=18)"


def test_unknown_tlvs_pass_through_in_order() -> None:
    payload = bytes.fromhex("0b5002000b0002abcdfe005503000000")
    msg = mle.MleMessage.from_payload(payload)
    assert [type(t).__name__ for t in msg.tlvs] == ["Tlv", "SourceAddressTlv", "Tlv", "Tlv"]
    assert msg.payload() == payload


# --- properties -------------------------------------------------------------------------------

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
timestamps = st.builds(
    Timestamp, st.integers(0, (1 << 48) - 1), st.integers(0, 0x7FFF), st.booleans()
)


@st.composite
def route64(draw: st.DrawFn) -> mle.Route64Tlv:
    ids = sorted(draw(st.sets(st.integers(0, 62), max_size=32)))
    entries = [
        mle.RouteEntry(
            i, draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 15))
        )
        for i in ids
    ]
    return mle.Route64Tlv(draw(u8), tuple(entries))


@st.composite
def connectivity(draw: st.DrawFn) -> mle.ConnectivityTlv:
    sed = draw(st.booleans())
    lq3, lq2, lq1, cost, seq, active = (draw(u8) for _ in range(6))
    return mle.ConnectivityTlv(
        parent_priority=draw(st.integers(-2, 1)),
        link_quality_3=lq3,
        link_quality_2=lq2,
        link_quality_1=lq1,
        leader_cost=cost,
        id_sequence=seq,
        active_routers=active,
        sed_buffer_size=draw(u16) if sed else None,
        sed_datagram_count=draw(u8) if sed else None,
    )


address_entries = st.one_of(
    st.builds(mle.AddressRegistrationEntry, st.binary(min_size=16, max_size=16)),
    st.builds(mle.AddressRegistrationEntry, st.binary(min_size=8, max_size=8), st.integers(0, 15)),
)

MLE_TLV_STRATEGIES: dict[type, st.SearchStrategy[object]] = {
    mle.SourceAddressTlv: st.builds(mle.SourceAddressTlv, u16),
    mle.ModeTlv: st.builds(mle.ModeTlv, u8),
    mle.TimeoutTlv: st.builds(mle.TimeoutTlv, u32),
    mle.ChallengeTlv: st.builds(mle.ChallengeTlv, st.binary(min_size=4, max_size=8)),
    mle.ResponseTlv: st.builds(mle.ResponseTlv, st.binary(min_size=4, max_size=8)),
    mle.LinkFrameCounterTlv: st.builds(mle.LinkFrameCounterTlv, u32),
    mle.MleFrameCounterTlv: st.builds(mle.MleFrameCounterTlv, u32),
    mle.Route64Tlv: route64(),
    mle.Address16Tlv: st.builds(mle.Address16Tlv, u16),
    mle.LeaderDataTlv: st.builds(mle.LeaderDataTlv, u32, u8, u8, u8, u8),
    mle.NetworkDataTlv: st.builds(mle.NetworkDataTlv, st.binary(max_size=300)),
    mle.TlvRequestTlv: st.builds(mle.TlvRequestTlv, st.lists(u8, max_size=10).map(tuple)),
    mle.ScanMaskTlv: st.builds(mle.ScanMaskTlv, u8),
    mle.ConnectivityTlv: connectivity(),
    mle.LinkMarginTlv: st.builds(mle.LinkMarginTlv, u8),
    mle.StatusTlv: st.builds(mle.StatusTlv, u8),
    mle.VersionTlv: st.builds(mle.VersionTlv, u16),
    mle.AddressRegistrationTlv: st.builds(
        mle.AddressRegistrationTlv, st.lists(address_entries, max_size=6).map(tuple)
    ),
    mle.ChannelTlv: st.builds(mle.ChannelTlv, u16, u8),
    mle.PanIdTlv: st.builds(mle.PanIdTlv, u16),
    mle.ActiveTimestampTlv: st.builds(mle.ActiveTimestampTlv, timestamps),
    mle.PendingTimestampTlv: st.builds(mle.PendingTimestampTlv, timestamps),
    mle.ActiveDatasetTlv: st.builds(mle.ActiveDatasetTlv, st.binary(max_size=254)),
    mle.PendingDatasetTlv: st.builds(mle.PendingDatasetTlv, st.binary(max_size=254)),
    mle.DiscoveryTlv: st.builds(
        mle.DiscoveryTlv,
        st.lists(
            st.one_of(
                st.builds(mc.DiscoveryRequestTlv, st.integers(0, 15), st.booleans()),
                st.builds(
                    mc.DiscoveryResponseTlv, st.integers(0, 15), st.booleans(), st.booleans()
                ),
                st.builds(mc.ExtendedPanIdTlv, st.binary(min_size=8, max_size=8)),
                st.builds(mc.JoinerUdpPortTlv, u16),
            ),
            max_size=5,
        ).map(tuple),
    ),
    mle.SupervisionIntervalTlv: st.builds(mle.SupervisionIntervalTlv, u16),
}


def test_every_typed_mle_tlv_has_a_strategy() -> None:
    assert set(MLE_TLV_STRATEGIES) == set(mle.MLE_TLV_CLASSES.values())


raw_unknown = st.builds(Tlv, st.sampled_from([6, 7, 80, 85, 86, 200]), st.binary(max_size=20))
any_mle_tlv = st.one_of(*MLE_TLV_STRATEGIES.values(), raw_unknown)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 255), st.lists(any_mle_tlv, max_size=6))
def test_message_roundtrip(command: int, tlvs: list[mle.MleTlv | Tlv]) -> None:
    msg = mle.MleMessage(command, tuple(tlvs))
    wire = msg.to_unsecured_bytes()
    assert mle.parse_mle(wire) == msg
    assert mle.parse_mle(wire).to_unsecured_bytes() == wire  # type: ignore[union-attr]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(any_mle_tlv, max_size=4),
    u32,
    u32,
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
)
def test_secured_roundtrip_property(
    tlvs: list[mle.MleTlv | Tlv], fc: int, seq: int, src: bytes, dst: bytes
) -> None:
    key = mle_key(NETWORK_KEY, seq)
    msg = mle.MleMessage(mle.MleCommand.DATA_RESPONSE, tuple(tlvs))
    wire = mle.encode_secured(
        msg, mle_key=key, key_sequence=seq, frame_counter=fc, source=src, destination=dst
    )
    frame = mle.parse_mle(wire)
    assert isinstance(frame, mle.SecuredMleFrame)
    assert frame.decrypt(key, src, dst) == msg


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_parse_mle(data: bytes) -> None:
    try:
        mle.parse_mle(data)
    except ParseError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(mle.MLE_TLV_CLASSES)), st.binary(max_size=80))
def test_fuzz_each_tlv_value(tlv_type: int, value: bytes) -> None:
    try:
        mle.decode_mle_tlvs(Tlv(tlv_type, value).to_bytes())
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=5, max_size=100))
def test_fuzz_decrypt_only_crypto_error(body: bytes) -> None:
    frame = mle.parse_mle(b"\x00\x15" + bytes(9) + body)
    assert isinstance(frame, mle.SecuredMleFrame)
    try:
        frame.decrypt(mle_key(NETWORK_KEY, 0), link_local(CHILD_EXT), link_local(PARENT_EXT))
    except (CryptoError, ParseError):
        pass
