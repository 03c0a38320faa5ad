"""tshark (Wireshark 4.0) as an independent oracle for the 802.15.4 and 6LoWPAN codecs.

A pcap (LINKTYPE 195, frames with FCS) built with our encoders must dissect with correct FCS,
good UDP checksums, no malformed packet and no expert info; Wireshark must decrypt and verify
the MIC of our secured frames at every security level with the key configured through the
``ieee802154_keys`` UAT ("No hash": the key is used as is), reassemble our fragments, and read our
mesh header, beacon, Imm-Ack and 2015 frames. A tampered MIC and a wrong UDP checksum must be
flagged, so the oracle is known to be able to say no.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from drivers.pcap import PcapWriter
from gateway.wire.fragment import fragment
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.lowpan import MeshHeader, compress
from gateway.wire.mac802154 import (
    HT2,
    AuxSecurityHeader,
    ExtAddress,
    FrameType,
    FrameVersion,
    HeaderIE,
    MacCommand,
    MacFrame,
    ShortAddress,
    build_header_ies,
    secure,
)

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY_UAT = f'uat:ieee802154_keys:"{KEY.hex()}","1","No hash"'
A = ExtAddress.from_hex("1122334455667788")
B = ExtAddress.from_hex("8877665544332211")
PAN = 0xFACE
LL_A = "fe80::1322:3344:5566:7788"  # from A with the U/L bit flipped
LL_B = "fe80::8a77:6655:4433:2211"
MLE_DISCOVERY_REQUEST = bytes.fromhex(  # reference/openthread-sim-air.md
    "01d807ffffffff2bcfc893faf973b19e267f3b02f04d4c4d4c12c3ff101a0480025800fd00"
)
FIELDS = [
    "frame.number",
    "wpan.fcs_ok",
    "wpan.frame_type",
    "wpan.version",
    "wpan.seq_no",
    "wpan.aux_sec.sec_level",
    "wpan.aux_sec.key_id_mode",
    "wpan.cmd",
    "wpan.header_ie.id",
    "6lowpan.mesh.orig16",
    "6lowpan.mesh.dest16",
    "6lowpan.frag.tag",
    "udp.srcport",
    "udp.checksum.status",
    "data.data",
    "_ws.malformed",
    "_ws.expert.message",
]


def _data_frame(
    payload: bytes,
    seq: int,
    *,
    ack_request: bool = False,
    security: AuxSecurityHeader | None = None,
) -> MacFrame:
    return MacFrame.create(
        FrameType.DATA,
        seq=seq,
        dst=B,
        dst_pan=PAN,
        src=A,
        src_pan=PAN,
        payload=payload,
        ack_request=ack_request,
        security=security,
    )


def _udp(data: bytes, sport: int = 40000, dport: int = 40001) -> Ipv6Packet:
    return Ipv6Packet.udp(LL_A, LL_B, sport, dport, data)


def _run_tshark(path: Path, home: Path) -> dict[int, dict[str, str]]:
    assert TSHARK is not None
    cmd = [TSHARK, "-r", str(path), "-o", KEY_UAT, "-o", "udp.check_checksum:TRUE"]
    cmd += ["-T", "fields", "-E", "separator=|"]
    for f in FIELDS:
        cmd += ["-e", f]
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}  # no user prefs
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, env=env)
    rows: dict[int, dict[str, str]] = {}
    for line in out.stdout.splitlines():
        values = line.split("|")
        row = dict(zip(FIELDS, values, strict=True))
        rows[int(row["frame.number"])] = row
    return rows


class Capture:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.names: dict[str, int] = {}

    def add(self, name: str, psdu: bytes) -> None:
        self.frames.append(psdu)
        self.names[name] = len(self.frames)


BIG = bytes(i * 7 & 0xFF for i in range(400))


def _build() -> Capture:
    cap = Capture()
    plain = _udp(b"unsecured payload")
    cap.add("unsecured", _data_frame(compress(plain, A, B), 1).to_bytes(fcs=True))
    sec = _data_frame(
        compress(_udp(b"secret payload"), A, B),
        2,
        ack_request=True,
        security=AuxSecurityHeader(5, 1, 1234, key_index=1),
    )
    cap.add("secured", secure(sec, KEY).to_bytes(fcs=True))
    big = compress(_udp(BIG), A, B)
    parts = fragment(big, max_payload=_data_frame(b"", 0).payload_capacity(), tag=0x4242)
    assert len(parts) == 5
    for i, part in enumerate(parts):
        cap.add(f"frag{i}", _data_frame(part, 10 + i).to_bytes(fcs=True))
    beacon = MacFrame.create(
        FrameType.BEACON,
        seq=20,
        src=ShortAddress(0x0400),
        src_pan=PAN,
        payload=bytes.fromhex("ffcf0000") + b"beacon payload",
    )
    cap.add("beacon", beacon.to_bytes(fcs=True))
    cap.add("ack", MacFrame.imm_ack(20, frame_pending=True).to_bytes(fcs=True))
    ies = build_header_ies([HeaderIE(0x1A, bytes.fromhex("ed0b350c")), HeaderIE(HT2, b"")])
    short_pkt = Ipv6Packet.udp("fe80::ff:fe00:400", "fe80::ff:fe00:800", 0xF0B1, 0xF0B2, b"v2015")
    v2015 = MacFrame.create(
        FrameType.DATA,
        seq=None,
        dst=ShortAddress(0x0800),
        dst_pan=PAN,
        src=ShortAddress(0x0400),
        src_pan=PAN,
        version=FrameVersion.V2015,
        header_ies=ies,
        payload=compress(short_pkt, ShortAddress(0x0400), ShortAddress(0x0800)),
    )
    cap.add("v2015", v2015.to_bytes(fcs=True))
    v2015_sec = MacFrame.create(
        FrameType.DATA,
        seq=21,
        dst=B,
        dst_pan=PAN,
        src=A,
        version=FrameVersion.V2015,
        header_ies=ies,
        payload=compress(_udp(b"2015 secured"), A, B),
        security=AuxSecurityHeader(5, 1, 77, key_index=1),
    )
    cap.add("v2015_secured", secure(v2015_sec, KEY).to_bytes(fcs=True))
    mesh = MeshHeader(5, ShortAddress(0x0400), ShortAddress(0x0800))
    meshed = Ipv6Packet.udp("fe80::ff:fe00:400", "fe80::ff:fe00:800", 40000, 40001, b"meshed")
    mesh_frame = MacFrame.create(
        FrameType.DATA,
        seq=22,
        dst=ShortAddress(0x0C00),
        dst_pan=PAN,
        src=ShortAddress(0x1000),
        src_pan=PAN,
        payload=mesh.to_bytes() + compress(meshed, mesh.originator, mesh.final),
    )
    cap.add("mesh", mesh_frame.to_bytes(fcs=True))
    command = MacFrame.create(
        FrameType.COMMAND,
        seq=23,
        dst=B,
        dst_pan=PAN,
        src=A,
        src_pan=PAN,
        payload=bytes((MacCommand.DATA_REQUEST,)),
        ack_request=True,
        security=AuxSecurityHeader(5, 1, 1235, key_index=1),
    )
    cap.add("command", secure(command, KEY).to_bytes(fcs=True))
    cmd2015 = MacFrame.create(
        FrameType.COMMAND,
        seq=24,
        dst=B,
        dst_pan=PAN,
        src=A,
        version=FrameVersion.V2015,
        header_ies=ies,
        payload=bytes((MacCommand.DATA_REQUEST,)),  # encrypted in 2015 frames
        ack_request=True,
        security=AuxSecurityHeader(5, 1, 1236, key_index=1),
    )
    cap.add("command2015", secure(cmd2015, KEY).to_bytes(fcs=True))
    enh_ack = MacFrame.create(
        FrameType.ACK,
        seq=24,
        dst=B,
        dst_pan=PAN,
        src=A,
        version=FrameVersion.V2015,
        header_ies=build_header_ies([HeaderIE(0x1A, bytes.fromhex("ed0b350c"))]),
        security=AuxSecurityHeader(5, 1, 1237, key_index=1),
    )
    cap.add("enh_ack", secure(enh_ack, KEY).to_bytes(fcs=True))
    cap.add("ot_mle", MacFrame.from_bytes(MLE_DISCOVERY_REQUEST, fcs=True).to_bytes(fcs=True))
    for level in range(1, 8):
        for mode, source in ((1, b""), (2, b"\x00\x00\x00\x01"), (3, bytes(range(8)))):
            frame = _data_frame(
                compress(_udp(f"level {level} mode {mode}".encode()), A, B),
                30 + level,
                security=AuxSecurityHeader(level, mode, 5000 + level, source, 1),
            )
            cap.add(f"level{level}.{mode}", secure(frame, KEY).to_bytes(fcs=True))
    # negative controls: the oracle must object to these
    tampered = secure(
        _data_frame(
            compress(_udp(b"x"), A, B), 40, security=AuxSecurityHeader(5, 1, 9, key_index=1)
        ),
        KEY,
    )
    tampered = replace(tampered, mic=bytes((tampered.mic[0] ^ 1,)) + tampered.mic[1:])
    cap.add("bad_mic", tampered.to_bytes(fcs=True))
    good = _udp(b"bad checksum")
    bad = Ipv6Packet(good.src, good.dst, 17, good.payload[:6] + b"\x12\x34" + good.payload[8:])
    cap.add("bad_udp", _data_frame(compress(bad, A, B), 41).to_bytes(fcs=True))
    fcs_broken = _data_frame(compress(good, A, B), 42).to_bytes(fcs=True)
    cap.add("bad_fcs", fcs_broken[:-1] + bytes((fcs_broken[-1] ^ 0x55,)))
    return cap


NEGATIVE = {"bad_mic", "bad_udp", "bad_fcs"}


@pytest.fixture(scope="module")
def dissected(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Capture, dict[int, dict[str, str]]]]:
    cap = _build()
    tmp = tmp_path_factory.mktemp("tshark")
    path = tmp / "mac_lowpan.pcap"
    with PcapWriter(path) as writer:
        for i, psdu in enumerate(cap.frames):
            writer.write(psdu, 1_700_000_000 + i * 0.01)
    yield cap, _run_tshark(path, tmp)


def _row(dissected: tuple[Capture, dict[int, dict[str, str]]], name: str) -> dict[str, str]:
    cap, rows = dissected
    return rows[cap.names[name]]


def test_every_frame_clean(dissected: tuple[Capture, dict[int, dict[str, str]]]) -> None:
    cap, rows = dissected
    assert len(rows) == len(cap.frames)
    for name, number in cap.names.items():
        if name in NEGATIVE:
            continue
        row = rows[number]
        assert row["wpan.fcs_ok"] == "1", name
        assert row["_ws.malformed"] == "", name
        assert row["_ws.expert.message"] == "", (name, row["_ws.expert.message"])
        if row["udp.srcport"]:
            assert row["udp.checksum.status"] == "1", name  # 1 = Good


def test_unsecured_and_secured_payloads(
    dissected: tuple[Capture, dict[int, dict[str, str]]],
) -> None:
    assert bytes.fromhex(_row(dissected, "unsecured")["data.data"]) == b"unsecured payload"
    secured = _row(dissected, "secured")
    assert (secured["wpan.aux_sec.sec_level"], secured["wpan.aux_sec.key_id_mode"]) == (
        "0x05",
        "0x01",
    )
    assert bytes.fromhex(secured["data.data"]) == b"secret payload"
    v2015 = _row(dissected, "v2015_secured")
    assert v2015["wpan.version"] == "2" and v2015["wpan.header_ie.id"] == "0x001a,0x007f"
    assert bytes.fromhex(v2015["data.data"]) == b"2015 secured"


def test_all_security_levels_and_key_id_modes(
    dissected: tuple[Capture, dict[int, dict[str, str]]],
) -> None:
    for level in range(1, 8):
        for mode in (1, 2, 3):
            row = _row(dissected, f"level{level}.{mode}")
            assert row["wpan.aux_sec.sec_level"] == f"0x{level:02x}"
            assert row["wpan.aux_sec.key_id_mode"] == f"0x{mode:02x}"
            assert bytes.fromhex(row["data.data"]) == f"level {level} mode {mode}".encode()


def test_reassembly(dissected: tuple[Capture, dict[int, dict[str, str]]]) -> None:
    for i in range(5):
        assert _row(dissected, f"frag{i}")["6lowpan.frag.tag"] == "0x4242"
    last = _row(dissected, "frag4")
    assert last["udp.checksum.status"] == "1"
    assert bytes.fromhex(last["data.data"]) == BIG


def test_other_frame_kinds(dissected: tuple[Capture, dict[int, dict[str, str]]]) -> None:
    assert _row(dissected, "beacon")["wpan.frame_type"] == "0x0000"
    ack = _row(dissected, "ack")
    assert (ack["wpan.frame_type"], ack["wpan.seq_no"]) == ("0x0002", "20")
    v2015 = _row(dissected, "v2015")
    assert v2015["wpan.version"] == "2" and v2015["wpan.seq_no"] == ""  # suppressed
    assert bytes.fromhex(v2015["data.data"]) == b"v2015"
    mesh = _row(dissected, "mesh")
    assert (mesh["6lowpan.mesh.orig16"], mesh["6lowpan.mesh.dest16"]) == ("0x0400", "0x0800")
    assert bytes.fromhex(mesh["data.data"]) == b"meshed"
    assert _row(dissected, "command")["wpan.cmd"] == "0x04"
    assert _row(dissected, "command2015")["wpan.cmd"] == "0x04"  # visible only once decrypted
    enh_ack = _row(dissected, "enh_ack")
    assert (enh_ack["wpan.frame_type"], enh_ack["wpan.header_ie.id"]) == ("0x0002", "0x001a")
    assert _row(dissected, "ot_mle")["udp.checksum.status"] == "1"


def test_oracle_objects_to_broken_frames(
    dissected: tuple[Capture, dict[int, dict[str, str]]],
) -> None:
    assert _row(dissected, "bad_mic")["_ws.expert.message"] != ""
    bad_udp = _row(dissected, "bad_udp")
    assert bad_udp["udp.checksum.status"] == "0" and "checksum" in bad_udp["_ws.expert.message"]
    assert _row(dissected, "bad_fcs")["wpan.fcs_ok"] == "0"
