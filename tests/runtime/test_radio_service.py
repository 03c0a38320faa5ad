"""The radio service through its socket (docs/sockets.md, "Radio socket"), with the simulated air
as the witness: a passive AirTap captures what the service transmits, and a second node
(``AirPort``, node 2) injects frames the test builds byte by byte.

MAC security is checked against an independent CCM* computation (``cryptography``'s AESCCM) with
the IEEE 802.15.4-2006 §7.6.3.2 nonce: source extended address (canonical, most significant octet
first) ‖ frame counter (big-endian) ‖ security level, as OpenThread builds it
(openthread/openthread src/core/mac/mac.cpp, ``Mac::GenerateNonce``); and with the project's own
``gateway.wire.mac802154.unsecure``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from drivers.emulator.air import AirPort
from drivers.emulator.tap import AirTap
from drivers.fcs import append_fcs, fcs_ok
from gateway.wire.mac802154 import ExtAddress, MacFrame, unsecure
from tests.runtime.helpers import Install, LineClient, ServiceProcess, Services, temp_install

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY2 = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
PEER_EXT = bytes.fromhex("1a2b3c4d5e6f7081")  # node 2's extended address (canonical order)
MIC_LEN = {0: 0, 1: 4, 2: 8, 3: 16, 4: 0, 5: 4, 6: 8, 7: 16}  # IEEE 802.15.4-2006 Table 95
KEY_ID_LEN = {0: 0, 1: 1, 2: 5, 3: 9}  # Table 96


@dataclass
class Rig:
    install: Install
    service: ServiceProcess
    tap: AirTap
    peer: AirPort
    ext: bytes  # the service radio's extended address (canonical)

    def client(self) -> LineClient:
        return LineClient(self.install.radio_socket)

    def captured(self, want: int, timeout: float = 3.0, node: int = 1) -> list[tuple[int, bytes]]:
        """(channel, PSDU) of frames sent by ``node``, waiting for at least ``want``."""
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            out += [(ch, p) for n, ch, p in self.tap.poll(0.05) if n == node]
        out += [(ch, p) for n, ch, p in self.tap.poll(0.05) if n == node]
        return out

    def inject(self, frame: bytes, channel: int = 11) -> None:
        self.peer.send(channel, append_fcs(frame))


@pytest.fixture
def rig(port_offset: int) -> Iterator[Rig]:
    with temp_install(port_offset) as inst, Services(inst) as svc:
        tap = AirTap(port_offset)
        peer = AirPort(2, port_offset)
        try:
            sp = svc.start("radio")
            with LineClient(inst.radio_socket) as c:
                ext = bytes.fromhex(c.result("hello", client="test")["ext_addr"])
            yield Rig(inst, sp, tap, peer, ext)
            sp.stop()
        finally:
            tap.close()
            peer.close()


# ---------------------------------------------------------------- frames built by hand


def data_frame(
    src_ext: bytes,
    payload: bytes,
    seq: int = 0,
    ack_dst: int | None = None,
    aux: bytes = b"",
) -> bytes:
    """A 2006 data frame: PAN 0xffff (compressed), short destination (broadcast unless
    ``ack_dst``), extended source, optional auxiliary security header ``aux``."""
    fcf = 0x0001 | 0x0040 | (2 << 10) | (1 << 12) | (3 << 14)
    if aux:
        fcf |= 0x0008
    if ack_dst is not None:
        fcf |= 0x0020
    dst = 0xFFFF if ack_dst is None else ack_dst
    return (
        fcf.to_bytes(2, "little")
        + bytes((seq,))
        + b"\xff\xff"
        + dst.to_bytes(2, "little")
        + src_ext[::-1]  # extended addresses travel least significant octet first
        + aux
        + payload
    )


def aux_header(level: int, fc: int, mode: int = 1, index: int = 1, source: bytes = b"") -> bytes:
    key_id = b"" if mode == 0 else source + bytes((index,))
    return bytes((level | (mode << 3),)) + fc.to_bytes(4, "little") + key_id


def nonce(src_ext: bytes, fc: int, level: int) -> bytes:
    return src_ext + fc.to_bytes(4, "big") + bytes((level,))


def ccm_secure(
    frame_hdr: bytes, payload: bytes, key: bytes, src: bytes, fc: int, level: int
) -> bytes:
    """Independent CCM*: header (with aux) ‖ encrypted payload ‖ MIC (levels 1..3, 5..7)."""
    m = MIC_LEN[level]
    ccm = AESCCM(key, tag_length=m)
    if level >= 5:
        return frame_hdr + ccm.encrypt(nonce(src, fc, level), payload, frame_hdr)
    return frame_hdr + payload + ccm.encrypt(nonce(src, fc, level), b"", frame_hdr + payload)[-m:]


def ccm_open(psdu: bytes, hdr_len: int, key: bytes, src: bytes, fc: int, level: int) -> bytes:
    body = psdu[hdr_len:-2]
    ccm = AESCCM(key, tag_length=MIC_LEN[level])
    if level >= 5:
        return ccm.decrypt(nonce(src, fc, level), body, psdu[:hdr_len])
    payload, mic = body[: -MIC_LEN[level]], body[-MIC_LEN[level] :]
    ccm.decrypt(nonce(src, fc, level), mic, psdu[:hdr_len] + payload)
    return payload


def secured_frame(
    payload: bytes,
    fc: int,
    key: bytes = KEY,
    level: int = 5,
    src: bytes = PEER_EXT,
    seq: int = 7,
) -> bytes:
    unsec = data_frame(src, b"", seq=seq, aux=aux_header(level, fc))
    return ccm_secure(unsec, payload, key, src, fc, level)


HDR = 15  # fcf 2, seq 1, PAN 2, short dst 2, ext src 8


# ---------------------------------------------------------------- hello, status, errors


def test_hello_and_status(rig: Rig) -> None:
    with rig.client() as c:
        hello = c.result("hello", client="border-router")
        assert hello["protocol"] == 1
        assert hello["channel"] == 11  # the chip's reset channel
        assert hello["radio"]["backend"] == "emulated"
        assert hello["radio"]["part"] == "AT86RF233"
        assert hello["ext_addr"] == hello["radio"]["eui64"]
        assert len(hello["ext_addr"]) == 16
        err = c.call("hello", client="x" * 65)["error"]
        assert err["code"] == "GW001" and "short string" in err["message"]
        st = c.result("status")
        assert st["clients"] == 1
        assert st["radio"]["healthy"] is True
        assert set(st["mac"]) >= {"tx_requests", "tx_secured", "rx_decrypted", "rx_replays"}
        # the same status on the control socket
        with LineClient(rig.install.control_socket("radio")) as ctl:
            assert ctl.result("status")["radio"]["eui64"] == hello["ext_addr"]
            assert ctl.result("counters")["mac"] == st["mac"]


def test_transmit_assigns_sequence_numbers(rig: Rig) -> None:
    with rig.client() as c:
        frames = [data_frame(rig.ext, b"\x3c" + bytes((i,)) * 5, seq=0xAA) for i in range(3)]
        replies = [c.result("transmit", frame=f.hex()) for f in frames]
        seqs = [r["seq"] for r in replies]
        assert seqs == [seqs[0], (seqs[0] + 1) & 0xFF, (seqs[0] + 2) & 0xFF]
        for r in replies:
            assert r == {
                "status": "success",
                "ok": True,
                "frame_retries": 0,
                "csma_retries": r["csma_retries"],
                "seq": r["seq"],
                "frame_counter": None,
            }
        raw = c.result("transmit", frame=frames[0].hex(), auto_seq=False)
        assert raw["seq"] == 0xAA
        air = rig.captured(4)
        assert [ch for ch, _ in air] == [11] * 4
        expect = [f[:2] + bytes((s,)) + f[3:] for f, s in zip(frames, seqs, strict=True)]
        assert [p[:-2] for _, p in air] == [*expect, frames[0]]
        assert all(fcs_ok(p) for _, p in air)  # the radio appended a correct FCS


def test_unacknowledged_frame_is_retransmitted_unchanged(rig: Rig) -> None:
    with rig.client() as c:
        frame = data_frame(rig.ext, b"\x01hello", ack_dst=0x0002)
        r = c.result("transmit", frame=frame.hex(), retries=1)
        assert r["status"] == "no_ack" and r["ok"] is False and r["frame_retries"] == 1
    air = rig.captured(2)
    assert len(air) == 2 and air[0] == air[1]  # the same PSDU twice: a retransmission


TRANSMIT_ERRORS: list[tuple[dict[str, object], str]] = [
    ({}, "'frame' must be a hex string"),
    ({"frame": "zz"}, "not valid hex"),
    ({"frame": "4188"}, "3..125 bytes"),
    ({"frame": "00" * 126}, "3..125 bytes"),
    ({"frame": "41d8010000"}, "not a valid MAC frame"),
    ({"frame": "41d801ffffffff0102030405060708", "csma": 1}, "'csma' must be true or false"),
    ({"frame": "41d801ffffffff0102030405060708", "retries": 16}, "'retries'"),
    ({"frame": "41d801ffffffff0102030405060708", "security": []}, "'security' must be"),
    ({"frame": "41d801ffffffff0102030405060708", "security": {"key_id": "x"}}, "unknown 'key_id'"),
]


def test_transmit_errors(rig: Rig) -> None:
    with rig.client() as c:
        for params, fragment in TRANSMIT_ERRORS:
            reply = c.call("transmit", **params)
            assert reply["error"]["code"] == "GW001", (params, reply)
            assert fragment in reply["error"]["message"], (params, reply)
    assert rig.captured(0, timeout=0.1) == []  # nothing reached the air


def test_other_methods(rig: Rig) -> None:
    with rig.client() as c:
        assert c.result("set_channel", channel=15) == {"channel": 15}
        assert c.result("status")["radio"]["channel"] == 15
        c.result("transmit", frame=data_frame(rig.ext, b"\x01ch15").hex())
        assert [ch for ch, _ in rig.captured(1)] == [15]
        for bad in (10, 27, "15", 15.0, True):
            assert c.call("set_channel", channel=bad)["error"]["code"] == "GW001"
        scan = c.result("energy_scan", channels=[11, 26], duration=0.005)
        assert [e["channel"] for e in scan["channels"]] == [11, 26]
        assert all(
            isinstance(e["ed_dbm"], int) and -100 <= e["ed_dbm"] <= 0 for e in scan["channels"]
        )
        bad_scans: list[dict[str, object]] = [
            {"channels": []},
            {"channels": [10]},
            {"duration": 0},
            {"duration": 11},
        ]
        for bad_scan in bad_scans:
            assert c.call("energy_scan", **bad_scan)["error"]["code"] == "GW001"
        assert c.result("set_tx_power", dbm=0)["dbm"] <= 0
        for bad_power in ("3", None, True, math.inf, -math.inf, math.nan):
            reply = c.call("set_tx_power", dbm=bad_power)
            assert reply["error"]["code"] == "GW001", (bad_power, reply)
        r = c.result("set_addresses", pan_id=0x1234, short_addr=0x0001, ext_addr="0011223344556677")
        assert r == {"ext_addr": "0011223344556677"}
        assert c.call("set_addresses", pan_id=0x10000)["error"]["code"] == "GW001"
        assert c.call("set_addresses", ext_addr="00")["error"]["code"] == "GW001"
        assert c.call("set_addresses", coordinator="yes")["error"]["code"] == "GW001"
        assert c.call("unsubscribe", sub=0)["error"]["code"] == "GW001"


# ---------------------------------------------------------------- MAC security, transmit


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_secured_transmit_decrypts_with_the_key(rig: Rig, mode: int) -> None:
    source = {0: b"", 1: b"", 2: bytes.fromhex("00000001")}[mode]
    params: dict[str, object] = {"key_id": "k", "key": KEY.hex(), "key_id_mode": mode}
    if mode:
        params["key_index"] = 3
    if source:
        params["key_source"] = source.hex()
    payload = b"\x7e" + bytes(range(20))
    with rig.client() as c:
        assert c.result("register_key", **params) == {"key_id": "k"}
        sent = []
        for level in (5, 6, 7, 1, 2, 3):
            frame = data_frame(rig.ext, payload)
            r = c.result("transmit", frame=frame.hex(), security={"key_id": "k", "level": level})
            sent.append((level, r))
        fcs_seen = [r["frame_counter"] for _, r in sent]
        assert fcs_seen == list(range(6))  # a fresh store counts from 0, one per frame
        assert c.result("status")["mac"]["tx_secured"] == 6
    air = [p for _, p in rig.captured(len(sent))]
    assert len(air) == len(sent)
    for (level, r), psdu in zip(sent, air, strict=True):
        assert fcs_ok(psdu)
        assert psdu[0] & 0x08  # security enabled
        hdr_len = HDR + 5 + KEY_ID_LEN[mode]
        aux = psdu[HDR:hdr_len]
        assert aux[0] == level | (mode << 3)
        assert int.from_bytes(aux[1:5], "little") == r["frame_counter"]
        assert aux[5:] == (source + b"\x03" if mode else b"")
        assert len(psdu) == hdr_len + len(payload) + MIC_LEN[level] + 2
        if level >= 5:
            assert payload not in psdu  # encrypted
        # independent CCM* with the 802.15.4 nonce
        assert ccm_open(psdu, hdr_len, KEY, rig.ext, r["frame_counter"], level) == payload
        # and the project's codec agrees
        mf = MacFrame.from_bytes(psdu, fcs=True)
        assert unsecure(mf, KEY, ext_src=ExtAddress(rig.ext)).payload == payload
        assert mf.security is not None and mf.security.frame_counter == r["frame_counter"]


def test_secure_errors_and_key_management(rig: Rig) -> None:
    with rig.client() as c:
        bad_keys: list[dict[str, object]] = [
            {"key": KEY.hex()},
            {"key_id": "", "key": KEY.hex()},
            {"key_id": "x" * 33, "key": KEY.hex()},
            {"key_id": "k", "key": KEY.hex()[:-2]},
            {"key_id": "k", "key": KEY.hex(), "key_id_mode": 3},
            {"key_id": "k", "key": KEY.hex(), "key_id_mode": 1},  # no key_index
            {"key_id": "k", "key": KEY.hex(), "key_id_mode": 1, "key_index": 256},
            {"key_id": "k", "key": KEY.hex(), "key_id_mode": 2, "key_index": 1},  # no source
            {"key_id": "k", "key": KEY.hex(), "key_id_mode": 0, "key_source": "00"},
        ]
        for params in bad_keys:
            reply = c.call("register_key", **params)
            assert reply["error"]["code"] == "GW001", (params, reply)
            assert KEY.hex() not in str(reply)  # never echo key material
        c.result("register_key", key_id="k", key=KEY.hex(), key_id_mode=1, key_index=1)
        frame = data_frame(rig.ext, b"\x01x")
        for sec, fragment in (
            ({"key_id": "k", "level": 0}, "'level'"),
            ({"key_id": "k", "level": 8}, "'level'"),
            ({"key_id": "nope"}, "unknown 'key_id'"),
        ):
            reply = c.call("transmit", frame=frame.hex(), security=sec)
            assert fragment in reply["error"]["message"]
        already = data_frame(rig.ext, b"\x01x", aux=aux_header(5, 1)) + b"\x00" * 4
        reply = c.call("transmit", frame=already.hex(), security={"key_id": "k"})
        assert "send the frame unsecured" in reply["error"]["message"]
        big = data_frame(rig.ext, b"\x01" * 100)  # 115 bytes: fits unsecured, not with aux+MIC
        reply = c.call("transmit", frame=big.hex(), security={"key_id": "k", "level": 7})
        assert "at most 125 fit" in reply["error"]["message"]
        assert c.result("remove_key", key_id="k") == {"removed": True}
        assert c.result("remove_key", key_id="k") == {"removed": False}
        assert (
            "unknown 'key_id'"
            in c.call("transmit", frame=frame.hex(), security={"key_id": "k"})["error"]["message"]
        )
    assert rig.captured(0, timeout=0.1) == []


def test_same_key_under_a_new_name_does_not_restart_its_counter(rig: Rig) -> None:
    """The frame counter belongs to the key, not to the name a client gives it: registering the
    same key again under another name (say after a client restart) must not reuse a nonce."""
    with rig.client() as c:
        c.result("register_key", key_id="first", key=KEY.hex(), key_id_mode=1, key_index=1)
        frame = data_frame(rig.ext, b"\x01payload").hex()
        used = [
            c.result("transmit", frame=frame, security={"key_id": "first"})["frame_counter"]
            for _ in range(3)
        ]
        c.result("remove_key", key_id="first")
        c.result("register_key", key_id="second", key=KEY.hex(), key_id_mode=1, key_index=1)
        again = c.result("transmit", frame=frame, security={"key_id": "second"})["frame_counter"]
        assert again > max(used)
        # a different key has its own counter
        c.result("register_key", key_id="other", key=KEY2.hex(), key_id_mode=1, key_index=2)
        assert c.result("transmit", frame=frame, security={"key_id": "other"})["frame_counter"] == 0
        # status shows each registered key's next counter by its name
        assert c.result("status")["frame_counters"] == {"second": again + 1, "other": 1}
    stored = (rig.install.state_dir / "radio-frame-counters.json").read_text()
    assert KEY.hex() not in stored and KEY2.hex() not in stored  # no key material on disk


# ---------------------------------------------------------------- MAC security, receive


def test_received_secured_frames_are_decrypted_and_replays_rejected(rig: Rig) -> None:
    with rig.client() as c:
        c.result("register_key", key_id="net", key=KEY.hex(), key_id_mode=1, key_index=1)
        sub = c.result("subscribe")["sub"]
        payload = b"\x7f secret reading 42"

        def rx(frame: bytes) -> dict[str, object]:
            rig.inject(frame)
            ev = c.event(3)
            assert ev is not None and ev["event"] == "rx" and ev["sub"] == sub
            assert ev["psdu"] == append_fcs(frame).hex()
            return ev

        f10 = secured_frame(payload, fc=10)
        ev = rx(f10)
        assert ev["secured"] is True and ev["decrypted"] is True and ev["tx"] is False
        assert ev["key_id"] == "net" and ev["frame_counter"] == 10
        plain = bytes.fromhex(str(ev["plain"]))
        assert plain.endswith(payload)
        assert plain[:2] == f10[:2]  # header as received, then the plaintext payload
        assert ev["channel"] == 11 and ev["crc_ok"] is True
        for replay in (f10, secured_frame(payload, fc=9), secured_frame(b"\x7fother", fc=10)):
            ev = rx(replay)  # the same frame again, an older counter, a reused counter
            assert ev["decrypted"] is False and ev["replay"] is True and "plain" not in ev
        ev = rx(secured_frame(payload, fc=11))
        assert ev["decrypted"] is True and ev["frame_counter"] == 11
        ev = rx(secured_frame(payload, fc=12, key=KEY2))  # wrong key: MIC fails
        assert ev["decrypted"] is False and ev["mic_ok"] is False
        ev = rx(secured_frame(payload, fc=1, src=bytes(7) + b"\x09"))  # another sender: own window
        assert ev["decrypted"] is True
        mac = c.result("status")["mac"]
        assert (mac["rx_decrypted"], mac["rx_replays"], mac["rx_mic_failures"]) == (3, 3, 1)
        # without the key, the frame is delivered undecrypted
        c.result("remove_key", key_id="net")
        ev = rx(secured_frame(payload, fc=50))
        assert ev["secured"] is True and ev["decrypted"] is False


def test_a_client_cannot_read_or_remove_another_clients_key(rig: Rig) -> None:
    """Keys belong to the client that registered them: another client on the radio socket sees
    the frames they open only as they were on the air, cannot use, replace or remove them, and
    the key goes with its owner when it disconnects. (Before, every client got the plaintext of
    every secured frame and could remove or overwrite any key by its id.)"""
    payload = b"\x7f only the owner reads this"
    with rig.client() as owner, rig.client() as other:
        owner.result("register_key", key_id="net", key=KEY.hex(), key_id_mode=1, key_index=1)
        sub_owner = owner.result("subscribe")["sub"]
        sub_other = other.result("subscribe")["sub"]
        rig.inject(secured_frame(payload, fc=5))
        ev = owner.event(3)
        assert ev is not None and ev["sub"] == sub_owner and ev["decrypted"] is True
        assert bytes.fromhex(str(ev["plain"])).endswith(payload) and ev["key_id"] == "net"
        ev = other.event(3)
        assert ev is not None and ev["sub"] == sub_other and ev["secured"] is True
        assert ev["decrypted"] is False and "plain" not in ev and "key_id" not in ev
        assert payload.hex() not in str(ev)
        # the other client's calls on "net" concern its own (absent) key, never the owner's
        assert other.result("remove_key", key_id="net") == {"removed": False}
        frame = data_frame(rig.ext, b"\x01hi").hex()
        reply = other.call("transmit", frame=frame, security={"key_id": "net"})
        assert "unknown 'key_id'" in reply["error"]["message"]
        other.result("register_key", key_id="net", key=KEY2.hex(), key_id_mode=1, key_index=1)
        rig.inject(secured_frame(payload, fc=6))
        ev = owner.event(3)
        assert ev is not None and ev["decrypted"] is True  # still the owner's KEY
        ev = other.event(3)
        assert ev is not None and ev["decrypted"] is False and "plain" not in ev
        assert owner.result("transmit", frame=frame, security={"key_id": "net"})["ok"] in (
            True,
            False,
        )
    # the owner has gone: its key with it
    with rig.client() as late:
        late.result("subscribe")
        rig.inject(secured_frame(payload, fc=7))
        ev = late.event(3)
        assert ev is not None and ev["decrypted"] is False and "plain" not in ev


def test_subscription_filters(rig: Rig) -> None:
    with rig.client() as c:
        c.result("register_key", key_id="net", key=KEY.hex(), key_id_mode=1, key_index=1)
        subs = {
            "cbsb": c.result("subscribe", dispatch=[0x3C, 0x3C], secured=False)["sub"],
            "secured": c.result("subscribe", secured=True)["sub"],
            "data": c.result("subscribe", frame_types=[1])["sub"],
            "beacons": c.result("subscribe", frame_types=[0])["sub"],
            "lowpan": c.result("subscribe", dispatch=[0x40, 0x7F])["sub"],
            "all": c.result("subscribe")["sub"],
        }
        assert len(set(subs.values())) == len(subs)
        names = {v: k for k, v in subs.items()}
        frames = {
            "cbsb": data_frame(PEER_EXT, b"\x3c\x01\x02"),
            "iphc": data_frame(PEER_EXT, b"\x7a\x33"),
            "secured": secured_frame(b"\x3c\x01", fc=1),  # a dispatch filter never sees these
        }
        got: dict[str, set[str]] = {}
        for name, frame in frames.items():
            rig.inject(frame)
            got[name] = {names[int(ev["sub"])] for ev in c.drain_events(0.3)}
        assert got["cbsb"] == {"cbsb", "data", "all"}
        assert got["iphc"] == {"data", "lowpan", "all"}
        assert got["secured"] == {"secured", "data", "all"}
        # unsubscribe stops the delivery
        assert c.result("unsubscribe", sub=subs["all"]) == {"sub": subs["all"]}
        rig.inject(frames["cbsb"])
        assert {names[int(ev["sub"])] for ev in c.drain_events(0.3)} == {"cbsb", "data"}
        for bad in (
            {"frame_types": [8]},
            {"frame_types": 1},
            {"dispatch": [5, 3]},
            {"dispatch": [0, 256]},
            {"dispatch": [1]},
            {"secured": "yes"},
            {"include_tx": 1},
        ):
            assert c.call("subscribe", **bad)["error"]["code"] == "GW001", bad
        n = len(subs) - 1
        for _ in range(16 - n):
            c.result("subscribe")
        err = c.call("subscribe")["error"]
        assert "at most 16 subscriptions" in err["message"]


def test_several_clients_and_a_misbehaving_one(rig: Rig) -> None:
    a, b, bad = rig.client(), rig.client(), rig.client()
    try:
        sa = a.result("subscribe", include_tx=True)["sub"]
        sb = b.result("subscribe")["sub"]
        # the misbehaving client: garbage, wrong versions, unknown methods, a huge line
        bad.send_raw(
            b"garbage\n{]\n" + b'{"v": 9, "id": 1}\n' + b'{"v": 1, "id": 2, "method": "x"}\n'
        )
        replies = [bad.read_message() for _ in range(4)]
        assert all(r is not None and "error" in r for r in replies)
        bad.send_raw(b"x" * (300 * 1024))  # past the line limit: refused and disconnected
        assert (bad.read_message() or {}).get("error", {}).get("message") == "message too long"
        # the others still work, at the same time
        rig.inject(data_frame(PEER_EXT, b"\x3c\x09"))
        ea, eb = a.event(3), b.event(3)
        assert ea is not None and eb is not None
        assert (ea["sub"], eb["sub"]) == (sa, sb) and ea["psdu"] == eb["psdu"]
        # b transmits: a (include_tx) sees it as tx, b (no include_tx) does not
        r = b.result("transmit", frame=data_frame(rig.ext, b"\x01from-b").hex())
        assert r["ok"]
        ev = a.event(3)
        assert ev is not None and ev["tx"] is True and ev["sub"] == sa
        assert bytes.fromhex(ev["psdu"])[3:-2] == data_frame(rig.ext, b"\x01from-b")[3:]
        assert b.event(0.3) is None
        assert a.result("status")["clients"] == 2  # the misbehaving client was dropped
    finally:
        for cl in (a, b, bad):
            cl.close()


def test_frames_without_a_mic_are_not_authenticated(rig: Rig) -> None:
    """Security levels 0 and 4 carry no MIC: nothing proves the sender holds the key. Such a
    frame must not be reported as decrypted with the key, nor move the replay window (a forged
    counter of 0xffffffff would otherwise make the real sender's frames look like replays)."""
    with rig.client() as c:
        c.result("register_key", key_id="net", key=KEY.hex(), key_id_mode=1, key_index=1)
        c.result("subscribe", secured=True)
        for level in (0, 4):
            # level 4 "encrypts" without a MIC: any bytes decrypt to something
            forged = data_frame(PEER_EXT, b"\x7fforged", aux=aux_header(level, 0xFFFFFFFE))
            rig.inject(forged)
            ev = c.event(3)
            assert ev is not None and ev["secured"] is True
            assert ev["decrypted"] is False and "key_id" not in ev and "plain" not in ev
        rig.inject(secured_frame(b"\x7fgenuine", fc=1))
        ev = c.event(3)
        assert ev is not None and ev["decrypted"] is True and ev.get("replay") is None
        assert bytes.fromhex(str(ev["plain"])).endswith(b"\x7fgenuine")


def test_replay_window_follows_the_key_not_its_name(rig: Rig) -> None:
    """A new key under an old name (a Thread key switch restarts the senders' counters, as
    OpenThread's KeyManager does) starts a fresh window; the same key under a new name keeps
    its window (a replay stays a replay)."""
    with rig.client() as c:
        c.result("register_key", key_id="net", key=KEY.hex(), key_id_mode=1, key_index=1)
        c.result("subscribe", secured=True)

        def rx(frame: bytes) -> dict[str, object]:
            rig.inject(frame)
            ev = c.event(3)
            assert ev is not None
            return ev

        old = secured_frame(b"\x7fold", fc=100)
        assert rx(old)["decrypted"] is True
        c.result("register_key", key_id="net", key=KEY2.hex(), key_id_mode=1, key_index=1)
        ev = rx(secured_frame(b"\x7fnew key", fc=1, key=KEY2))
        assert ev["decrypted"] is True and ev["frame_counter"] == 1
        c.result("register_key", key_id="renamed", key=KEY.hex(), key_id_mode=1, key_index=2)
        c.result("register_key", key_id="net", key=KEY.hex(), key_id_mode=1, key_index=1)
        assert rx(old).get("replay") is True  # the old key is back: so is its window
