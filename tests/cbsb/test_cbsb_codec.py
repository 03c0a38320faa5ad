"""CBSB-1 frame codec: round trips, strictness, bounded fuzz, sizes, and Wireshark's view."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.fcs import append_fcs
from drivers.pcap import PcapWriter
from gateway.errors import ParseError
from gateway.wire import cbsb as w
from gateway.wire.cbsb import (
    Abort,
    AckBody,
    Beacon,
    BeaconFlags,
    BeaconRequest,
    ConfirmBody,
    Delivery,
    DeliveryAck,
    DeliveryChunk,
    ItemType,
    JoinConfirm,
    JoinDone,
    JoinRequest,
    JoinResponse,
    LinkParams,
    ResponseBody,
    Status,
    parse_frame,
)

# The active dataset printed by `dataset active -x` in the espressif/esp-matter "Light + OTBR"
# example README (an OpenThread network "OpenThread-8a63", channel 13, PAN 0x8a63): 106 bytes.
ESP_DATASET = bytes.fromhex(
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c3901546"
    "0510874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a"
    "0f60ca6dd3af116bdefd2a21270c0402a0f7f8"
)


def fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


u8, u16, u32 = (st.integers(0, (1 << b) - 1) for b in (8, 16, 32))


@st.composite
def beacons(draw: st.DrawFn) -> Beacon:
    flags = BeaconFlags(draw(st.integers(0, 15)))
    steering = draw(st.binary(min_size=1, max_size=16)) if flags & BeaconFlags.TARGETED else b""
    return Beacon(
        flags=flags,
        gw_id=draw(fixed(8)),
        sid=draw(fixed(16)),
        epoch=draw(u16),
        r_g=draw(fixed(16)),
        exp=draw(u32),
        window_left_s=draw(u16),
        channel=draw(st.integers(11, 26)),
        pan_id=draw(st.integers(0, 0xFFFE)),
        steering=steering,
        btag=draw(fixed(8)),
    )


@st.composite
def responses(draw: st.DrawFn) -> JoinResponse:
    status = draw(st.sampled_from(sorted(w.M2_AUTHENTICATED | w.M2_HINTS)))
    x_g = draw(st.none() | fixed(32)) if status in w.M2_AUTHENTICATED else None
    room = w.MAX_UNICAST_PAYLOAD - 15 - (32 if x_g else 0)
    if status == Status.OK:
        sealed = draw(st.binary(min_size=JoinResponse.MIN_OK_SEALED, max_size=room))
    elif status == Status.CLOUD_DENIED:
        sealed = draw(fixed(8))
    else:
        sealed = b""
    return JoinResponse(
        status=status, dev_id=draw(fixed(8)), nt4=draw(fixed(4)), sealed=sealed, x_g=x_g
    )


frames: st.SearchStrategy[w.Frame] = st.one_of(
    beacons(),
    st.builds(BeaconRequest, versions=st.integers(1, 255)),
    st.builds(
        JoinRequest,
        dev_id=fixed(8),
        epoch=u16,
        n_t=fixed(16),
        proof=fixed(16),
        x_t=st.none() | fixed(32),
    ),
    responses(),
    st.builds(JoinConfirm, dev_id=fixed(8), sealed=fixed(26)),
    st.builds(JoinDone, dev_id=fixed(8), tag=fixed(8)),
    st.builds(
        DeliveryChunk,
        dev_id=fixed(8),
        index=st.integers(1, 15),
        sealed=st.binary(min_size=9, max_size=93),
    ),
    st.builds(DeliveryAck, dev_id=fixed(8), seq=st.integers(1, 255), sealed=fixed(10)),
    st.builds(
        Abort,
        dev_id=fixed(8),
        code=st.sampled_from(sorted(w.ABORT_CODES)),
        tag=st.none() | fixed(8),
    ),
)


@given(frames)
@settings(max_examples=400)
def test_round_trip(frame: w.Frame) -> None:
    raw = frame.to_bytes()
    assert parse_frame(raw) == frame
    assert type(frame).from_bytes(raw) == frame
    # Every frame is foreign to 6LoWPAN (NALP dispatch) and says CBSB version 1.
    assert raw[0] == w.DISPATCH and raw[0] <= 0x3F
    assert raw[1] >> 4 == w.VERSION and raw[1] & 0x0F == frame.TYPE
    # Everything but a beacon fits a unicast extended-to-extended frame; a beacon a broadcast one.
    limit = w.MAX_BROADCAST_PAYLOAD if isinstance(frame, Beacon) else w.MAX_UNICAST_PAYLOAD
    assert len(raw) <= limit


@given(st.binary(max_size=140))
@settings(max_examples=1000)
def test_fuzz_parse_frame_only_parse_error(data: bytes) -> None:
    try:
        parse_frame(data)
    except ParseError:
        pass


@given(st.integers(0, 15), st.binary(max_size=120))
@settings(max_examples=1000)
def test_fuzz_every_type_behind_a_valid_header(msg_type: int, rest: bytes) -> None:
    data = bytes((w.DISPATCH, 0x10 | msg_type)) + rest
    try:
        frame = parse_frame(data)
    except ParseError:
        return
    assert frame.to_bytes() == data  # whatever parses is canonical


@given(frames, st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_frames_parse_canonically_or_fail(frame: w.Frame, data: st.DataObject) -> None:
    raw = bytearray(frame.to_bytes())
    op = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if op == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    try:
        parsed = parse_frame(bytes(raw))
    except ParseError:
        return
    assert parsed.to_bytes() == bytes(raw)


@pytest.mark.parametrize(
    "parser",
    [
        ResponseBody.from_bytes,
        ConfirmBody.from_bytes,
        AckBody.from_bytes,
        LinkParams.from_bytes,
        Delivery.from_bytes,
    ],
)
@given(data=st.binary(max_size=300))
@settings(max_examples=300)
def test_fuzz_bodies_only_parse_error(parser, data: bytes) -> None:
    try:
        parser(data)
    except ParseError:
        pass


def test_non_bytes_input_is_a_parse_error() -> None:
    for bad in (None, "3c11", 42, [0x3C, 0x11]):
        with pytest.raises(ParseError):
            parse_frame(bad)  # type: ignore[arg-type]


# --- strictness -----------------------------------------------------------------------------


def test_dispatch_version_and_type() -> None:
    ok = BeaconRequest().to_bytes()
    assert ok == bytes.fromhex("3c160100")
    with pytest.raises(ParseError, match="not a CBSB"):
        parse_frame(b"\x41" + ok[1:])  # an uncompressed IPv6 dispatch
    with pytest.raises(w.CbsbUnsupportedVersion) as exc:
        parse_frame(b"\x3c\x26\x01\x00")
    assert exc.value.version == 2 and isinstance(exc.value, ParseError)
    with pytest.raises(ParseError, match="unknown CBSB message type"):
        parse_frame(b"\x3c\x1a\x01\x00")
    with pytest.raises(ParseError):
        parse_frame(b"\x3c\x10")
    with pytest.raises(ParseError):
        parse_frame(ok + b"\x00")  # trailing byte
    with pytest.raises(ParseError):
        parse_frame(b"\x3c\x16\x00\x00")  # empty versions bitmap
    with pytest.raises(ParseError):
        parse_frame(b"\x3c\x16\x01\x01")  # reserved request flags
    with pytest.raises(ParseError):
        parse_frame(bytes(200))


def _beacon(**kw: object) -> Beacon:
    fields: dict[str, object] = dict(
        flags=BeaconFlags.TARGETED,
        gw_id=bytes(range(8)),
        sid=bytes(range(16)),
        epoch=3,
        r_g=bytes(16),
        exp=100,
        window_left_s=120,
        channel=15,
        pan_id=0x1234,
        steering=b"\xff" * 8,
    )
    fields.update(kw)
    return Beacon(**fields)  # type: ignore[arg-type]


def test_beacon_layout_and_sizes() -> None:
    b = _beacon()
    raw = b.to_bytes()
    assert len(raw) == 71 and len(_beacon(steering=b"\x01" * 16).to_bytes()) == 79
    assert (
        len(_beacon(flags=BeaconFlags.CLOUD_VERIFY, steering=b"").to_bytes())
        == Beacon.BASE_LEN
        == 62
    )
    # docs/cbsb.md §4.2 offsets
    assert raw[:3] == bytes((0x3C, 0x11, 0x01))
    assert raw[3:11] == bytes(range(8)) and raw[11:27] == bytes(range(16))
    assert raw[27:29] == b"\x00\x03" and raw[45:49] == (100).to_bytes(4, "big")
    assert raw[49:51] == (120).to_bytes(2, "big") and raw[51] == 15 and raw[52:54] == b"\x12\x34"
    assert raw[54] == 8 and raw[55:63] == b"\xff" * 8 and raw[63:] == bytes(8)
    assert b.body() == raw[:-8]


def test_beacon_field_rules() -> None:
    raw = bytearray(_beacon().to_bytes())
    for i, value in [(2, 0x11), (51, 10), (51, 27), (54, 0), (54, 17)]:
        bad = bytearray(raw)
        bad[i] = value
        with pytest.raises(ParseError):
            Beacon.from_bytes(bytes(bad))
    bad = bytearray(raw)
    bad[52:54] = b"\xff\xff"
    with pytest.raises(ParseError):
        Beacon.from_bytes(bytes(bad))
    with pytest.raises(ValueError):
        _beacon(steering=b"")
    with pytest.raises(ValueError):
        _beacon(flags=BeaconFlags.NONE)


def test_join_response_rules() -> None:
    dev, nt4 = bytes(8), bytes(4)
    hint = JoinResponse(Status.PENDING_USER_CONFIRM, dev, nt4)
    assert len(hint.to_bytes()) == 15 and not hint.authenticated
    with pytest.raises(ParseError):  # a hint with a sealed part
        JoinResponse.from_bytes(hint.to_bytes() + bytes(8))
    denied = JoinResponse(Status.CLOUD_DENIED, dev, nt4, sealed=bytes(8))
    assert len(denied.to_bytes()) == 23 and denied.authenticated
    with pytest.raises(ParseError):
        JoinResponse.from_bytes(denied.to_bytes() + b"\x00")
    with pytest.raises(ParseError):  # OK without room for its fixed body
        JoinResponse.from_bytes(JoinResponse.build_header(Status.OK, dev, nt4, None) + bytes(26))
    for status in (Status.AUTH_FAILED, Status.LOCKED_OUT, Status.DEVICE_NOT_ALLOWED):
        # Never on the air: a bad proof gets silence, not an oracle.
        with pytest.raises(ParseError):
            JoinResponse.from_bytes(bytes((0x3C, 0x13, status)) + dev + nt4)
    with_xg = JoinResponse(Status.CLOUD_DENIED, dev, nt4, sealed=bytes(8), x_g=bytes(range(32)))
    raw = with_xg.to_bytes()
    assert raw[2] == 0x80 | Status.CLOUD_DENIED and len(raw) == 55
    assert JoinResponse.from_bytes(raw) == with_xg


def test_abort_and_ack_rules() -> None:
    ab = Abort(bytes(8), Status.SESSION_CLOSED)
    assert len(ab.to_bytes()) == 11 and not ab.authenticated
    assert len(Abort(bytes(8), Status.SESSION_CLOSED, bytes(8)).to_bytes()) == 19
    with pytest.raises(ParseError):
        Abort.from_bytes(ab.to_bytes() + bytes(4))
    with pytest.raises(ParseError):
        Abort.from_bytes(bytes((0x3C, 0x19, Status.OK)) + bytes(8))
    with pytest.raises(ParseError):
        Abort.from_bytes(bytes((0x3C, 0x19, 0x7F)) + bytes(8))
    with pytest.raises(ParseError):
        DeliveryAck.from_bytes(bytes((0x3C, 0x18, 0)) + bytes(8 + 10))  # seq 0
    with pytest.raises(ParseError):
        DeliveryChunk.from_bytes(bytes((0x3C, 0x17, 16)) + bytes(8 + 9))  # index 16
    with pytest.raises(ParseError):
        DeliveryChunk.from_bytes(bytes((0x3C, 0x17, 1)) + bytes(8 + 8))  # empty chunk
    with pytest.raises(ParseError):
        AckBody.from_bytes(b"\x00\x02")  # chunk 0 always held
    with pytest.raises(ParseError):
        JoinDone.from_bytes(bytes((0x3C, 0x15, 1)) + bytes(16))
    with pytest.raises(ParseError):
        JoinConfirm.from_bytes(bytes((0x3C, 0x14, 0)) + bytes(8 + 25))
    with pytest.raises(ParseError):
        JoinRequest.from_bytes(bytes((0x3C, 0x12, 0x02)) + bytes(8 + 2 + 16 + 16))


def test_join_request_sizes() -> None:
    m1 = JoinRequest(bytes(8), 1, bytes(16), bytes(16))
    assert len(m1.to_bytes()) == 45 and m1.body() == m1.to_bytes()[:-16]
    m1p = JoinRequest(bytes(8), 1, bytes(16), bytes(16), x_t=bytes(32))
    assert len(m1p.to_bytes()) == 77 and m1p.to_bytes()[2] == 0x01


def test_response_body_rules() -> None:
    good = ResponseBody(bytes(16), 100, 2, bytes(40))
    assert ResponseBody.from_bytes(good.to_bytes()) == good
    for total, n, first in [
        (1, 1, b"a"),
        (100, 1, bytes(40)),
        (100, 17, bytes(40)),
        (10, 2, bytes(10)),
        (2000, 2, b""),
    ]:
        with pytest.raises(ParseError):
            ResponseBody.from_bytes(bytes(16) + total.to_bytes(2, "big") + bytes((n,)) + first)
    assert "k_bcn" not in repr(good)


# --- delivery payload ---------------------------------------------------------------------------


def test_delivery_with_a_real_openthread_dataset() -> None:
    d = Delivery(thread_dataset=ESP_DATASET, key_sequence=0)
    raw = d.to_bytes()
    assert len(ESP_DATASET) == 106 and len(raw) == 2 + 106 + 6
    assert raw[:2] == bytes((ItemType.THREAD_ACTIVE_DATASET, 106))
    assert Delivery.from_bytes(raw) == d
    # The network key (MeshCoP TLV 5) must not leak through repr.
    assert "874e399792fcb276" not in repr(d) and ESP_DATASET.hex() not in repr(d)


def test_delivery_rules() -> None:
    no_key = bytes.fromhex("000300000f" + "01028a63")  # channel + PAN ID, no network key
    for bad in [
        b"",  # nothing to attach with
        bytes((1, len(no_key))) + no_key,
        bytes((1, 3)) + b"\x05\x10\x00",  # truncated TLV inside
        bytes((1, 4)) + b"\x05\xff\x00\x10",  # extended TLV
        bytes((1, 106)) + ESP_DATASET + bytes((1, 106)) + ESP_DATASET,  # repeated item
        bytes((1, 106)) + ESP_DATASET + bytes((0x40, 1, 0)),  # unknown critical item
        bytes((1, 106)) + ESP_DATASET + bytes((2, 3, 0, 0, 0)),  # bad key sequence length
        bytes((1, 106)) + ESP_DATASET + bytes((3, 5)) + bytes(5),  # bad link params
        bytes((1, 106)) + ESP_DATASET[:-1],  # item truncated
    ]:
        with pytest.raises(ParseError):
            Delivery.from_bytes(bad)
    # Optional items (>= 0x80) are kept, not rejected.
    raw = bytes((1, 106)) + ESP_DATASET + bytes((0x90, 2, 7, 7))
    assert Delivery.from_bytes(raw).extra == ((0x90, b"\x07\x07"),)
    link = LinkParams(bytes(range(16)), 1, 0xABCD, 0x0042, 20, 3600)
    assert len(link.to_bytes()) == LinkParams.LEN
    d = Delivery(link=link)
    assert Delivery.from_bytes(d.to_bytes()) == d
    assert (
        bytes(range(16)).hex() not in repr(d)
        and "0x42" not in repr(link)
        and "66" not in repr(link)
    )


@given(st.binary(min_size=2, max_size=w.MAX_DELIVERY_LEN), st.booleans(), st.integers(60, 104))
@settings(max_examples=200)
def test_split_delivery_reassembles(payload: bytes, pfs: bool, max_payload: int) -> None:
    first = w.m2_first_chunk_capacity(max_payload, pfs)
    cap = w.delivery_chunk_capacity(max_payload)
    try:
        chunks = w.split_delivery(payload, first, cap)
    except ValueError:
        assert len(payload) > first + (w.MAX_CHUNKS - 1) * cap
        return
    assert b"".join(chunks) == payload
    assert 1 <= len(chunks) <= w.MAX_CHUNKS
    assert len(chunks[0]) <= first and all(1 <= len(c) <= cap for c in chunks[1:])


def test_chunk_capacities() -> None:
    assert w.m2_first_chunk_capacity() == 62
    assert w.m2_first_chunk_capacity(pfs=True) == 30
    assert w.delivery_chunk_capacity() == 85
    # A 254-byte dataset (OpenThread's maximum) still fits with the PFS profile.
    assert w.MAX_DELIVERY_LEN <= 30 + 15 * 85


# --- Wireshark sees CBSB as foreign data ------------------------------------------------------


def _mac(payload: bytes, unicast: bool, seq: int) -> bytes:
    # IEEE 802.15.4-2006 data frame, PAN ID compression, source extended address; destination
    # short 0xFFFF (broadcast) or extended (unicast, ack requested). Little-endian fields.
    if unicast:
        fcf = 0x0001 | 0x0020 | 0x0040 | (3 << 10) | (1 << 12) | (3 << 14)
        mhr = fcf.to_bytes(2, "little") + bytes((seq,)) + b"\x34\x12" + bytes(range(8, 0, -1))
    else:
        fcf = 0x0001 | 0x0040 | (2 << 10) | (1 << 12) | (3 << 14)
        mhr = fcf.to_bytes(2, "little") + bytes((seq,)) + b"\xff\xff\xff\xff"
    return append_fcs(mhr + bytes(range(0x10, 0x18)) + payload)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_dissects_cbsb_frames_as_plain_data(tmp_path: Path) -> None:
    examples: list[w.Frame] = [
        _beacon(),
        BeaconRequest(),
        JoinRequest(bytes(8), 1, bytes(16), bytes(16)),
        JoinRequest(bytes(8), 1, bytes(16), bytes(16), x_t=bytes(32)),
        JoinResponse(Status.OK, bytes(8), bytes(4), sealed=bytes(89)),
        JoinResponse(Status.PENDING_USER_CONFIRM, bytes(8), bytes(4)),
        JoinConfirm(bytes(8), bytes(26)),
        JoinDone(bytes(8), bytes(8)),
        DeliveryChunk(bytes(8), 1, bytes(93)),
        DeliveryAck(bytes(8), 1, bytes(10)),
        Abort(bytes(8), Status.THING_NO_CONFIRM, bytes(8)),
    ]
    path = tmp_path / "cbsb.pcap"
    count = 0
    with PcapWriter(path) as pcap:
        for seq, frame in enumerate(examples):
            for unicast in (False, True):
                psdu = _mac(frame.to_bytes(), unicast, seq)
                assert len(psdu) <= 127
                pcap.write(psdu, timestamp=1_700_000_000.0 + count)
                count += 1
    result = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.protocols", "-e", "wpan.fcs_ok"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == count
    for protocols, fcs_ok in rows:
        # Not 6LoWPAN, ZigBee, LwMesh or anything else: the payload stays opaque data.
        assert protocols == "wpan:data", protocols
        assert fcs_ok in ("1", "True")
