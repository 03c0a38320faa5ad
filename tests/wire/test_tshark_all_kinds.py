"""tshark (Wireshark 4.0) decodes every kind of frame the project puts on the 802.15.4 air.

One pcap (LINKTYPE 195, FCS included, written with :class:`drivers.pcap.PcapWriter`) holds a
joiner's whole story, built only with the project's codecs the way the frames appear on the air:

* CBSB-1 frames of a real in-memory join (gateway session and thing state machines), unsecured
  data frames that Wireshark must leave as plain data (not mis-decoded as 6LoWPAN or ZigBee);
* MLE Discovery Request and Response (suite 255, unsecured data frames);
* a real EC-JPAKE DTLS handshake between :class:`DtlsClient` (the joiner) and :class:`DtlsServer`,
  then JOIN_FIN.req/rsp as application data, every datagram in IPv6/UDP to the joiner router's
  port 1000, IPHC-compressed and split into FRAG1/FRAGN fragments, MAC security off as a joiner
  sends them;
* the joiner router's RLY_RX (with the ClientHello) and the leader's RLY_TX (with the KEK), TMF
  CoAP on port 61631 with MeshCoP TLVs, fragmented, MAC-secured at level 5 with key id mode 1
  and the Thread MAC key;
* JOIN_ENT (CON POST c/je with the dataset TLVs) and the joiner's ACK, MAC-secured with key id
  mode 0 and the KEK of that very DTLS session;
* the joined device's secured MLE Parent Request (suite 0, MLE key).

Wireshark receives the network key as a "Thread hash" key (it derives the MAC and MLE keys
itself: HMAC-SHA256 over the key sequence and "Thread", fact sheet §5.6), the KEK as a "No hash"
key, and the DTLS master secret through an NSS key log, with which its own TLS code decrypts the
Finished messages and the JOIN_FIN application data of the 0xC0FF session. Every frame must have a good
FCS and UDP checksum, nothing malformed and no expert info of warning or error severity; every
expected protocol must appear; fragments must reassemble into the datagrams we fragmented. One
control frame, secured with a wrong KEK, must stay undecoded, so the oracle can say no.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.pcap import PcapWriter
from gateway.crypto.cbsb_keys import derive_psk_t
from gateway.crypto.dtls import DtlsClient, DtlsServer
from gateway.crypto.thread_keys import mac_key_index, network_key_derivation
from gateway.wire import meshcop as mc
from gateway.wire import mle
from gateway.wire.cbsb import BeaconFlags, Delivery
from gateway.wire.cbsb_gateway import GatewayConfig, GatewaySession, JoinGrant
from gateway.wire.cbsb_session import Output, Send
from gateway.wire.cbsb_thing import ThingIdentity, ThingJoin, ThingState
from gateway.wire.coap import TMF_PORT, TmfUri, tmf_request, tmf_response
from gateway.wire.fragment import fragment
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.lowpan import compress
from gateway.wire.mac802154 import (
    Address,
    AuxSecurityHeader,
    ExtAddress,
    FrameType,
    MacFrame,
    ShortAddress,
    secure,
)
from gateway.wire.meshcop import ChannelMask, SecurityPolicy, Timestamp
from tests.dtls_helpers import shuttle as shuttle_datagrams

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

NETWORK_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY_SEQUENCE = 0
MLE_KEY, MAC_KEY = network_key_derivation(NETWORK_KEY, KEY_SEQUENCE)
PAN = 0x8A63
XPANID = bytes.fromhex("dead00beef00cafe")
NETWORK_NAME = "OpenThread-8a63"
MESH_LOCAL_PREFIX = bytes.fromhex("fd11223344550000")
PSKC = bytes.fromhex("3ca67c969efb0d0c74a4d8ee923b576c")
PSKD = b"J01NME"
JOINER = ExtAddress.from_hex("1ab4300000000001")
ROUTER = ExtAddress.from_hex("1ab4300000000002")
LEADER = ExtAddress.from_hex("1ab4300000000003")
BROADCAST = ShortAddress(0xFFFF)
ALL_ROUTERS = ipaddress.IPv6Address("ff02::2")
ROUTER_RLOC16 = 0x0400
JOINER_PORT = 49152  # the joiner's ephemeral DTLS source port
JOINER_ROUTER_PORT = 1000  # fact sheet §4: OpenThread's default joiner UDP port
MLE_PORT = 19788
CBSB_GW = bytes.fromhex("0011223344556677")
CBSB_THING = bytes.fromhex("a000000000000001")
CBSB_SID = bytes(range(16))
CBSB_EXP = 1_700_000_000
CBSB_CHANNEL = 26
CBSB_DATASET = bytes.fromhex(  # espressif/esp-matter "Light + OTBR" README, `dataset active -x`
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c3901546"
    "0510874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a"
    "0f60ca6dd3af116bdefd2a21270c0402a0f7f8"
)
SEVERITY_WARNING = 0x00600000  # Wireshark's PI_WARN; PI_ERROR is 0x00800000
FIELDS = [
    "frame.number",
    "frame.protocols",
    "wpan.fcs_ok",
    "wpan.security",
    "wpan.aux_sec.sec_level",
    "wpan.aux_sec.key_id_mode",
    "6lowpan.frag.tag",
    "6lowpan.reassembled.length",
    "udp.dstport",
    "udp.checksum.status",
    "udp.payload",
    "mle.sec_suite",
    "mle.cmd",
    "dtls.record.content_type",
    "dtls.handshake.type",
    "dtls.handshake.ciphersuite",
    "coap.type",
    "coap.code",
    "coap.opt.uri_path_recon",
    "thread_meshcop.tlv.type",
    "thread_meshcop.tlv.sec_policy_rot",
    "data.data",
    "_ws.expert.severity",
    "_ws.expert.message",
    "_ws.malformed",
]


def link_local(ext: ExtAddress) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + ext.iid())


def rloc(rloc16: int) -> ipaddress.IPv6Address:
    iid = bytes.fromhex("000000fffe00") + rloc16.to_bytes(2, "big")
    return ipaddress.IPv6Address(MESH_LOCAL_PREFIX + iid)


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass
class Frame:
    kind: str
    psdu: bytes
    udp_payload: bytes | None = None  # set on the frame that completes a UDP datagram
    fragments: int = 1  # how many frames carried that datagram
    key_id_mode: int | None = None


@dataclass
class Capture:
    frames: list[Frame] = field(default_factory=list)
    seq: int = 0
    tag: int = 0x1000
    frame_counters: dict[tuple[int, ExtAddress], int] = field(default_factory=dict)

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def datagram(
        self,
        kind: str,
        src_ip: ipaddress.IPv6Address,
        dst_ip: ipaddress.IPv6Address,
        ports: tuple[int, int],
        data: bytes,
        src: ExtAddress,
        dst: Address,
        *,
        key: bytes | None = None,
        key_id_mode: int = 1,
        dst_pan: int = PAN,
    ) -> int:
        """Send one UDP datagram as a Thread MAC layer does: IPHC, FRAG1/FRAGN when it does not
        fit one frame, every frame secured at level 5 with ``key`` when given."""
        packet = Ipv6Packet.udp(src_ip, dst_ip, ports[0], ports[1], data)
        compressed = compress(packet, src, dst)
        security = None
        if key is not None:
            index = mac_key_index(KEY_SEQUENCE) if key_id_mode else None
            security = AuxSecurityHeader(5, key_id_mode, 0, key_index=index)
        empty = MacFrame.create(
            FrameType.DATA, dst=dst, dst_pan=dst_pan, src=src, src_pan=dst_pan, security=security
        )
        capacity = empty.payload_capacity()
        if len(compressed) <= capacity:
            parts = [compressed]
        else:
            self.tag += 1
            parts = fragment(compressed, max_payload=capacity, tag=self.tag)
        for n, part in enumerate(parts, 1):
            sec = security
            if sec is not None:
                counter = self.frame_counters.get((key_id_mode, src), 0)
                self.frame_counters[(key_id_mode, src)] = counter + 1
                sec = AuxSecurityHeader(5, key_id_mode, counter, key_index=sec.key_index)
            frame = MacFrame.create(
                FrameType.DATA,
                seq=self.next_seq(),
                dst=dst,
                dst_pan=dst_pan,
                src=src,
                src_pan=dst_pan,
                payload=part,
                ack_request=dst != BROADCAST,
                security=sec,
            )
            if key is not None:
                frame = secure(frame, key)
            last = n == len(parts)
            self.frames.append(
                Frame(
                    kind,
                    frame.to_bytes(fcs=True),
                    data if last else None,
                    len(parts),
                    None if key is None else key_id_mode,
                )
            )
        return len(parts)


def cbsb_exchange() -> list[tuple[bytes, bytes | None, bytes]]:
    """A whole CBSB-1 join between the gateway and thing state machines on an ideal air: every
    frame as ``(source, destination or None for broadcast, payload)``."""
    thing_id = ThingIdentity(CBSB_THING, bytes(range(32)))
    mode = BeaconFlags.TARGETED
    psk = derive_psk_t(thing_id.k_dev, CBSB_SID, CBSB_GW, CBSB_THING, CBSB_EXP, int(mode))
    delivery = Delivery(thread_dataset=CBSB_DATASET).to_bytes()
    gw = GatewaySession(
        GatewayConfig(CBSB_GW, CBSB_CHANNEL, PAN, delivery),
        JoinGrant(CBSB_SID, CBSB_EXP, mode, 60.0, {CBSB_THING: psk}),
        0.0,
        rng=seeded(1),
        jitter=random.Random(1),
    )
    thing = ThingJoin(thing_id, channels=(CBSB_CHANNEL,), rng=seeded(2), jitter=random.Random(2))
    sent: list[tuple[bytes, bytes | None, bytes]] = []
    queue: list[tuple[bytes, bytes | None, bytes]] = []

    def emit(src: bytes, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, Send):
                sent.append((src, o.dst, o.payload))
                queue.append((src, o.dst, o.payload))

    now = 0.0
    emit(CBSB_THING, thing.start(now))
    emit(CBSB_GW, gw.poll(now))
    for _ in range(500):
        while queue:
            src, _dst, payload = queue.pop(0)
            if src == CBSB_GW:
                emit(CBSB_THING, thing.handle_frame(now, src, payload))
            else:
                emit(CBSB_GW, gw.handle_frame(now, src, payload))
        if thing.state is ThingState.COMMITTED:
            return sent
        deadlines = [d for d in (gw.next_deadline(), thing.next_deadline()) if d is not None]
        now = max(now, min(deadlines))
        emit(CBSB_GW, gw.poll(now))
        emit(CBSB_THING, thing.poll(now))
    raise AssertionError("the CBSB join did not complete")


def dtls_session() -> tuple[list[tuple[str, bytes]], DtlsClient, DtlsServer, bytes]:
    """A real EC-JPAKE handshake, then JOIN_FIN.req and its response as application data.
    Returns the datagrams with their direction, both endpoints and the JOIN_FIN.req bytes."""
    client = DtlsClient(PSKD, rng=seeded(3))
    server = DtlsServer(PSKD, transport_id=link_local(JOINER).packed, rng=seeded(4))
    trace: list[tuple[str, bytes]] = []

    def shuttle() -> None:
        shuttle_datagrams(client, server, trace, rounds=20)

    client.start(0.0)
    shuttle()
    assert client.is_connected and server.is_connected
    join_fin = tmf_request(
        TmfUri.JOIN_FIN,
        [mc.StateTlv(1), mc.VendorNameTlv("OPENTHREAD"), mc.VendorModelTlv("SIMULATION")],
        mid=1,
        token=b"\x4a\x46",
    ).to_bytes()
    client.send(join_fin)
    server.send(tmf_response(tmf_request(TmfUri.JOIN_FIN, mid=1, token=b"JF")).to_bytes())
    shuttle()
    return trace, client, server, join_fin


@dataclass
class Story:
    capture: Capture
    cbsb: list[bytes]
    join_fin: bytes
    keylog: str
    kek: bytes


def build_story() -> Story:
    cap = Capture()
    joiner_ll, router_ll = link_local(JOINER), link_local(ROUTER)

    # CBSB-1: a thing's whole join (version 2006 data frames, MAC security off, docs/cbsb.md §3).
    cbsb = cbsb_exchange()
    for src, dst, payload in cbsb:
        frame = MacFrame.create(
            FrameType.DATA,
            seq=cap.next_seq(),
            dst=BROADCAST if dst is None else ExtAddress(dst),
            dst_pan=0xFFFF if dst is None else PAN,
            src=ExtAddress(src),
            src_pan=0xFFFF if dst is None else PAN,
            payload=payload,
            ack_request=dst is not None,
        )
        cap.frames.append(Frame("cbsb", frame.to_bytes(fcs=True)))

    # MLE discovery (suite 255, MAC security off), joiner and joiner router.
    request = mle.discovery_request(joiner=True).to_unsecured_bytes()
    mle_ports = (MLE_PORT, MLE_PORT)
    cap.datagram(
        "mle", joiner_ll, ALL_ROUTERS, mle_ports, request, JOINER, BROADCAST, dst_pan=0xFFFF
    )
    response = mle.discovery_response(
        ext_pan_id=XPANID,
        network_name=NETWORK_NAME,
        joiner_udp_port=JOINER_ROUTER_PORT,
        steering_data=b"\xff",
    ).to_unsecured_bytes()
    cap.datagram("mle", router_ll, joiner_ll, mle_ports, response, ROUTER, JOINER)

    # The joiner's DTLS session with the joiner router's port 1000 (MAC security off).
    trace, client, server, join_fin = dtls_session()
    fragmented = 0
    for direction, payload in trace:
        if direction == "c2s":
            ports = (JOINER_PORT, JOINER_ROUTER_PORT)
            n = cap.datagram("dtls", joiner_ll, router_ll, ports, payload, JOINER, ROUTER)
        else:
            ports = (JOINER_ROUTER_PORT, JOINER_PORT)
            n = cap.datagram("dtls", router_ll, joiner_ll, ports, payload, ROUTER, JOINER)
        fragmented += n > 1
    assert fragmented >= 3  # both ClientHellos and the server's flight at least

    # RLY_RX with the first ClientHello and RLY_TX with the KEK (NON TMF, mesh-local RLOCs),
    # MAC security level 5, key id mode 1, Thread MAC key.
    kek = client.kek
    assert kek is not None and kek == server.kek
    relay = [
        mc.JoinerUdpPortTlv(JOINER_PORT),
        mc.JoinerIidTlv(JOINER.iid()),
        mc.JoinerRouterLocatorTlv(ROUTER_RLOC16),
    ]
    tmf_ports = (TMF_PORT, TMF_PORT)
    rly_rx = tmf_request(
        TmfUri.RLY_RX,
        [*relay, mc.JoinerDtlsEncapsulationTlv(trace[0][1])],
        mid=0x100,
        token=b"RX",
        confirmable=False,
    ).to_bytes()
    router_rloc, leader_rloc = rloc(ROUTER_RLOC16), rloc(0x0000)
    n = cap.datagram(
        "tmf", router_rloc, leader_rloc, tmf_ports, rly_rx, ROUTER, LEADER, key=MAC_KEY
    )
    assert n > 1
    rly_tx = tmf_request(
        TmfUri.RLY_TX,
        [*relay, mc.JoinerRouterKekTlv(kek), mc.JoinerDtlsEncapsulationTlv(trace[-1][1])],
        mid=0x200,
        token=b"TX",
        confirmable=False,
    ).to_bytes()
    cap.datagram("tmf", leader_rloc, router_rloc, tmf_ports, rly_tx, LEADER, ROUTER, key=MAC_KEY)

    # JOIN_ENT with OpenThread's TLVs (fact sheet §4.5) and its ACK, KEK, key id mode 0. The
    # Security Policy is the 3-byte Thread 1.1 form: Wireshark 4.0 flags the 4-byte 1.2 form
    # ("TLV Length & Size field disagree"), which its dissector predates.
    join_ent = tmf_request(
        TmfUri.JOIN_ENT,
        [
            mc.NetworkKeyTlv(NETWORK_KEY),
            mc.MeshLocalPrefixTlv(MESH_LOCAL_PREFIX),
            mc.ExtendedPanIdTlv(XPANID),
            mc.NetworkNameTlv(NETWORK_NAME),
            mc.ActiveTimestampTlv(Timestamp(1)),
            mc.ChannelMaskTlv(ChannelMask.from_ot_mask(0x07FFF800)),
            mc.PskcTlv(PSKC),
            mc.SecurityPolicyTlv(SecurityPolicy(flags_length=1)),
            mc.NetworkKeySequenceTlv(KEY_SEQUENCE),
        ],
        mid=0x300,
        token=b"JE",
    )
    data = join_ent.to_bytes()
    n = cap.datagram(
        "tmf", router_ll, joiner_ll, tmf_ports, data, ROUTER, JOINER, key=kek, key_id_mode=0
    )
    assert n > 1
    ack = tmf_response(join_ent).to_bytes()
    cap.datagram(
        "tmf", joiner_ll, router_ll, tmf_ports, ack, JOINER, ROUTER, key=kek, key_id_mode=0
    )

    # The joined device's secured MLE Parent Request (suite 0, MLE key of key sequence 0).
    parent_request = mle.MleMessage(
        mle.MleCommand.PARENT_REQUEST,
        (
            mle.ModeTlv.of(rx_on_when_idle=True, full_thread_device=True, full_network_data=True),
            mle.ChallengeTlv(bytes(range(8))),
            mle.ScanMaskTlv.of(router=True, end_device=False),
            mle.VersionTlv(5),
        ),
    )
    secured = mle.encode_secured(
        parent_request,
        mle_key=MLE_KEY,
        key_sequence=KEY_SEQUENCE,
        frame_counter=7,
        source=joiner_ll,
        destination=ALL_ROUTERS,
    )
    cap.datagram("mle", joiner_ll, ALL_ROUTERS, mle_ports, secured, JOINER, BROADCAST)

    # Control: the ACK again, secured with a key that is not the KEK.
    wrong = bytes(b ^ 0x5A for b in kek)
    cap.datagram(
        "control", joiner_ll, router_ll, tmf_ports, ack, JOINER, ROUTER, key=wrong, key_id_mode=0
    )
    keylog = f"CLIENT_RANDOM {client._client_random.hex()} {(client._master or b'').hex()}\n"
    return Story(cap, [p for _, _, p in cbsb], join_fin, keylog, kek)


def run_tshark(path: Path, home: Path, story: Story) -> list[dict[str, str]]:
    assert TSHARK is not None
    keylog = home / "dtls-keys.txt"
    keylog.write_text(story.keylog)
    cmd = [TSHARK, "-r", str(path), "-o", "udp.check_checksum:TRUE"]
    cmd += ["-o", f'uat:ieee802154_keys:"{NETWORK_KEY.hex()}","0","Thread hash"']
    cmd += ["-o", f'uat:ieee802154_keys:"{story.kek.hex()}","0","No hash"']
    cmd += ["-o", f"tls.keylog_file:{keylog}"]
    cmd += ["-d", f"udp.port=={JOINER_ROUTER_PORT},dtls", "-d", f"udp.port=={TMF_PORT},coap"]
    cmd += ["-d", "media_type==application/octet-stream,thread_coap"]
    cmd += ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in FIELDS:
        cmd += ["-e", name]
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}  # no user prefs
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, env=env)
    return [dict(zip(FIELDS, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


def _ints(text: str) -> list[int]:
    return [int(v, 0) for v in text.split(",") if v]


def test_tshark_decodes_every_frame_kind(tmp_path: Path) -> None:
    story = build_story()
    frames = story.capture.frames
    pcap = tmp_path / "all-kinds.pcap"
    with PcapWriter(pcap) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame.psdu, 1_700_000_000 + i * 0.01)
    rows = run_tshark(pcap, tmp_path, story)
    assert len(rows) == len(frames)
    seen: set[str] = set()
    handshake_types: list[int] = []
    suites: list[list[int]] = []
    app_data: list[bytes] = []
    for frame, row in zip(frames, rows, strict=True):
        where = (row["frame.number"], frame.kind, row["frame.protocols"])
        protocols = row["frame.protocols"].split(":")
        assert row["wpan.fcs_ok"] == "1", where
        if frame.kind == "control":
            # tshark could not decrypt it (wrong key): nothing beyond the fragment header.
            assert "coap" not in protocols and "udp" not in protocols, where
            continue
        seen.update(protocols)
        assert row["_ws.malformed"] == "", where
        assert all(s < SEVERITY_WARNING for s in _ints(row["_ws.expert.severity"])), (
            where,
            row["_ws.expert.message"],
        )
        if frame.key_id_mode is not None:
            assert row["wpan.security"] == "1", where
            assert _ints(row["wpan.aux_sec.sec_level"]) == [5], where
            assert _ints(row["wpan.aux_sec.key_id_mode"]) == [frame.key_id_mode], where
        else:
            assert row["wpan.security"] == "0", where
        if frame.kind == "cbsb":
            assert row["frame.protocols"] == "wpan:data", where  # plain data, not mis-decoded
            assert bytes.fromhex(row["data.data"]) in story.cbsb, where
            continue
        if frame.udp_payload is None:
            # A fragment before the last: 6LoWPAN holds it for reassembly.
            assert row["frame.protocols"] == "wpan:6lowpan:data" and row["6lowpan.frag.tag"], where
            continue
        assert protocols[:4] == ["wpan", "6lowpan", "ipv6", "udp"], where
        assert row["udp.checksum.status"] == "1", where  # 1 = good
        if frame.fragments > 1:
            assert row["6lowpan.reassembled.length"] != "", where
        # (re)assembled by Wireshark, the UDP payload is exactly the datagram we sent
        assert bytes.fromhex(row["udp.payload"]) == frame.udp_payload, where
        if frame.kind == "mle":
            suite, command = _ints(row["mle.sec_suite"]), _ints(row["mle.cmd"])
            assert (suite, command) in (([255], [16]), ([255], [17]), ([0], [9])), where
            seen.add(f"mle.{suite[0]}.{command[0]}")
        if frame.kind == "dtls":
            handshake_types += _ints(row["dtls.handshake.type"])
            if row["dtls.handshake.ciphersuite"]:
                suites.append(_ints(row["dtls.handshake.ciphersuite"]))
            if "data" in protocols:
                app_data.append(bytes.fromhex(row["data.data"]))
        if frame.kind == "tmf":
            assert protocols[4:] in (
                ["coap", "thread_coap", "thread_meshcop", "dtls"],  # RLY_RX/TX carry DTLS
                ["coap", "thread_coap", "thread_meshcop"],  # JOIN_ENT
                ["coap"],  # the empty ACK
            ), where
            seen.update((row["coap.opt.uri_path_recon"], f"coap.{row['coap.code']}"))
    assert {"wpan", "6lowpan", "ipv6", "udp", "mle", "dtls", "coap", "thread_meshcop"} <= seen
    assert {"mle.255.16", "mle.255.17", "mle.0.9"} <= seen  # discovery, and decrypted MLE
    assert {"/c/rx", "/c/tx", "/c/je", "coap.68"} <= seen  # 68 = 2.04 Changed
    # ClientHello, HelloVerifyRequest, ClientHello, ServerHello + ServerKeyExchange +
    # ServerHelloDone, ClientKeyExchange + Finished, Finished: the two Finished messages are
    # visible only because Wireshark decrypted them with the master secret.
    assert handshake_types == [1, 3, 1, 2, 12, 14, 16, 20, 20]
    assert suites == [[0xC0FF, 0x00FF], [0xC0FF, 0x00FF], [0xC0FF]]  # offered twice, chosen
    assert app_data[0] == story.join_fin  # JOIN_FIN.req decrypted by Wireshark
    assert len(app_data) == 2
    join_ent = next(
        r for r in rows if r["coap.opt.uri_path_recon"] == "/c/je" and r["coap.code"] == "2"
    )
    assert _ints(join_ent["thread_meshcop.tlv.type"]) == [5, 7, 2, 3, 14, 53, 4, 12, 6]
    assert join_ent["thread_meshcop.tlv.sec_policy_rot"] == "672"
    assert join_ent["wpan.aux_sec.key_id_mode"] == "0x00"
