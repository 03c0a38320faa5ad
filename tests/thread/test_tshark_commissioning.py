"""tshark (Wireshark 4.0) decodes a capture of a whole commissioning through the gateway.

The radio and border router services run as subprocesses on the emulated air; an external
commissioner (the reference peer) petitions the border agent on loopback and admits the
reference joiner. Two captures are taken while it happens:

* the air, by :class:`drivers.emulator.tap.AirTap` (every frame of the port group, LINKTYPE 195):
  MLE Discovery Request/Response, the joiner's EC-JPAKE DTLS handshake with the commissioner in
  6LoWPAN fragments to the joiner router's port, JOIN_FIN inside it, and JOIN_ENT with its ACK
  MAC-secured with the KEK (key id mode 0);
* the border agent's UDP on loopback, recorded by a UDP relay in the middle (LINKTYPE_RAW IPv4):
  the commissioner's DTLS session with the PSKc, and inside it COMM_PET, MGMT_ACTIVE_GET, the
  UDP_TX carrying MGMT_COMMISSIONER_SET, and the relay: RLY_RX/RLY_TX with the joiner's DTLS
  records and the KEK.

Wireshark gets the network key (as a "Thread hash" key), the KEK ("No hash") and both DTLS
sessions' master secrets (an NSS key log). Nothing may be malformed, no expert info of warning
severity or above on any frame, and every step must be there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from drivers.emulator.tap import AirTap
from drivers.pcap import PcapWriter
from gateway.crypto.dtls import DtlsClient
from gateway.peers.commissioner import CommissionerPeer
from gateway.peers.thing.joiner import join
from gateway.thread.commissioning.joiner import JoinerState
from gateway.wire.ipv6 import internet_checksum
from tests.thread.stack import thread_stack

TSHARK = shutil.which("tshark")
pytestmark = [
    pytest.mark.skipif(TSHARK is None, reason="tshark is not installed"),
    pytest.mark.timeout(120),
]

PORT_OFFSET = 120
LINKTYPE_RAW = 101
SEVERITY_WARNING = 0x00600000
EUI64 = bytes.fromhex("18b4300000000abc")
PSKD = "J01NME"
FIELDS = [
    "frame.number",
    "frame.protocols",
    "wpan.fcs_ok",
    "wpan.aux_sec.key_id_mode",
    "udp.srcport",
    "udp.dstport",
    "mle.cmd",
    "dtls.handshake.type",
    "dtls.handshake.ciphersuite",
    "coap.type",
    "coap.code",
    "coap.opt.uri_path_recon",
    "thread_meshcop.tlv.type",
    "data.data",
    "_ws.expert.severity",
    "_ws.expert.message",
    "_ws.malformed",
]


class TapThread:
    def __init__(self, offset: int, pcap: Path) -> None:
        self.tap = AirTap(offset, str(pcap))
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.tap.poll(0.05)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.tap.poll(0.0)
        self.tap.close()


def _ipv4_udp(src_port: int, dst_port: int, payload: bytes) -> bytes:
    lo = bytes((127, 0, 0, 1))
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, lo, lo)
    head = head[:10] + internet_checksum(head).to_bytes(2, "big") + head[12:]
    return head + udp


class RecordingRelay(asyncio.DatagramProtocol):
    """Listens on an ephemeral loopback port, forwards to the border agent and back, and records
    every datagram as it crossed loopback."""

    def __init__(self, ba_port: int, pcap: PcapWriter) -> None:
        self.ba_port = ba_port
        self.pcap = pcap
        self.client: Any = None
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client = addr
        assert self.upstream is not None
        self.pcap.write(_ipv4_udp(addr[1], self.ba_port, data))
        self.upstream.sendto(data)

    def from_ba(self, data: bytes) -> None:
        if self.client is not None and self.transport is not None:
            self.pcap.write(_ipv4_udp(self.ba_port, self.client[1], data))
            self.transport.sendto(data, self.client)


class _Up(asyncio.DatagramProtocol):
    def __init__(self, relay: RecordingRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay.from_ba(data)


def keylog_line(client: DtlsClient) -> str:
    # The master secret is not part of DtlsClient's public API: a test-only look inside, the
    # same way tests/wire/test_tshark_all_kinds.py gives Wireshark a session's keys.
    master = client._master
    assert master is not None
    return f"CLIENT_RANDOM {client._client_random.hex()} {master.hex()}\n"


def run_tshark(pcap: Path, home: Path, keys: list[str], keylog: Path, decode: list[str]) -> list[dict[str, str]]:  # fmt: skip
    assert TSHARK is not None
    cmd = [TSHARK, "-r", str(pcap), "-o", "udp.check_checksum:TRUE"]
    for k in keys:
        cmd += ["-o", k]
    cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for d in decode:
        cmd += [d] if d.startswith("--") or d == "thread_meshcop" else ["-d", d]
    cmd += ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in FIELDS:
        cmd += ["-e", name]
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, env=env)
    return [dict(zip(FIELDS, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


def _ints(text: str) -> list[int]:
    return [int(v, 0) for v in text.split(",") if v]


# Wireshark 4.0 knows only the Thread 1.1 Security Policy TLV (rotation + one flags byte) and
# flags the Thread 1.2+ form (a second flags byte, which OpenThread sends as well) with this
# warning; it is the only warning we accept, and only on frames carrying a Security Policy.
SECURITY_POLICY_1_2 = "TLV Length & Size field disagree"


def _clean(rows: list[dict[str, str]]) -> None:
    for row in rows:
        where = (row["frame.number"], row["frame.protocols"], row["_ws.expert.message"])
        assert row["_ws.malformed"] == "", where
        messages = row["_ws.expert.message"].split(",") if row["_ws.expert.message"] else []
        for sev, msg in zip(_ints(row["_ws.expert.severity"]), messages, strict=False):
            if msg == SECURITY_POLICY_1_2 and 12 in _ints(row["thread_meshcop.tlv.type"]):
                continue
            assert sev < SEVERITY_WARNING, where


async def test_tshark_decodes_a_whole_commissioning(tmp_path: Path) -> None:
    air_pcap = tmp_path / "air.pcap"
    ba_pcap = tmp_path / "border-agent.pcap"
    with thread_stack(tmp_path / "gw", PORT_OFFSET) as stack:
        ds = stack.dataset()
        assert ds.pskc is not None and ds.network_key is not None
        tap = TapThread(PORT_OFFSET, air_pcap)
        loop = asyncio.get_running_loop()
        writer = PcapWriter(ba_pcap, LINKTYPE_RAW)
        relay = RecordingRelay(stack.ba_port, writer)
        listen, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        up, _ = await loop.create_datagram_endpoint(
            lambda: _Up(relay), remote_addr=("127.0.0.1", stack.ba_port)
        )
        relay.upstream = up
        relay.port = listen.get_extra_info("sockname")[1]
        peer = CommissionerPeer(("127.0.0.1", relay.port), ds.pskc)
        try:
            await peer.start()
            await peer.add_joiner(PSKD, eui64=EUI64)
            result = await join(stack.radio_url(2), PSKD, eui64=EUI64, channels=(stack.channel,))
            assert result.joiner.state is JoinerState.JOINED, result.joiner.log
            await peer.wait_joiner(EUI64, timeout=10)
            await asyncio.sleep(0.3)  # the JOIN_ENT ACK and the last relays reach the captures
            assert peer.ext._dtls is not None and result.joiner.dtls is not None
            keylog = tmp_path / "keys.txt"
            keylog.write_text(keylog_line(peer.ext._dtls) + keylog_line(result.joiner.dtls))
            kek = result.joiner.kek
            assert kek is not None
        finally:
            await peer.close()
            listen.close()
            up.close()
            writer.close()
            tap.stop()

    keys = [
        f'uat:ieee802154_keys:"{ds.network_key.hex()}","0","Thread hash"',
        f'uat:ieee802154_keys:"{kek.hex()}","0","No hash"',
    ]
    tmf = "media_type==application/octet-stream,thread_coap"
    # -- the air --------------------------------------------------------------------------------
    rows = run_tshark(
        air_pcap, tmp_path, keys, keylog, ["udp.port==1000,dtls", "udp.port==61631,coap", tmf]
    )
    assert rows, "nothing captured on the air"
    assert all(r["wpan.fcs_ok"] == "1" for r in rows)
    _clean(rows)
    mle = [c for r in rows for c in _ints(r["mle.cmd"])]
    assert 16 in mle and 17 in mle, "MLE Discovery Request and Response"
    hs = [
        t for r in rows if "dtls" in r["frame.protocols"] for t in _ints(r["dtls.handshake.type"])
    ]
    # ClientHello, HelloVerifyRequest, ClientHello(cookie), ServerHello, ServerKeyExchange,
    # ServerHelloDone, ClientKeyExchange, Finished, Finished (both decrypted with the key log)
    assert hs == [1, 3, 1, 2, 12, 14, 16, 20, 20], hs
    assert [0xC0FF] in [_ints(r["dtls.handshake.ciphersuite"]) for r in rows]
    join_ent = [r for r in rows if r["coap.opt.uri_path_recon"] == "/c/je"]
    assert join_ent, "JOIN_ENT not decoded (KEK)"
    assert _ints(join_ent[0]["thread_meshcop.tlv.type"]) == [5, 7, 2, 3, 14, 53, 4, 12, 6]
    assert _ints(join_ent[0]["wpan.aux_sec.key_id_mode"]) == [0]
    acks = [
        r for r in rows if r["coap.code"] == "68" and _ints(r["wpan.aux_sec.key_id_mode"]) == [0]
    ]
    assert acks, "the joiner's KEK-secured 2.04 ACK"
    # -- the border agent session -----------------------------------------------------------------
    # Wireshark's MeshCoP dissector hands the joiner's DTLS records inside RLY_RX/RLY_TX to its
    # DTLS dissector on the same UDP conversation, which then loses the outer session's keys.
    # So: one pass with every dissector (until the first relay, everything is decoded down to
    # the MeshCoP TLVs), and one pass without the MeshCoP dissector for the whole session.
    decode = [f"udp.port=={stack.ba_port},dtls", f"dtls.port=={stack.ba_port},coap", tmf]
    rows = run_tshark(ba_pcap, tmp_path, [], keylog, decode)
    assert rows
    _clean(rows)
    uris = [r["coap.opt.uri_path_recon"] for r in rows if r["coap.opt.uri_path_recon"]]
    assert uris[:6] == ["/c/cp", "/c/cp", "/c/ag", "/c/ag", "/c/ut", "/c/ur"], uris
    first = {r["coap.opt.uri_path_recon"]: _ints(r["thread_meshcop.tlv.type"]) for r in rows}
    assert first["/c/cp"][:1] in ([10], [16])  # Commissioner ID; State + Session ID
    assert first["/c/ut"] == [48, 49], "UDP_TX: UDP Encapsulation + IPv6 Address"
    assert first["/c/rx"][:4] == [18, 19, 20, 17], "RLY_RX: port, IID, locator, DTLS"
    whole = [*decode[:2], "--disable-protocol", "thread_meshcop"]  # payloads stay raw data
    rows = run_tshark(ba_pcap, tmp_path, [], keylog, whole)
    _clean(rows)
    uris = [r["coap.opt.uri_path_recon"] for r in rows if r["coap.opt.uri_path_recon"]]
    assert {"/c/cp", "/c/ag", "/c/ut", "/c/ur", "/c/rx", "/c/tx", "/c/ca"} <= set(uris), uris
    kek_tlvs = [
        t
        for r in rows
        if r["coap.opt.uri_path_recon"] == "/c/tx"
        for t in _tlv_types(bytes.fromhex(r["data.data"]))
        if t == (21, 16)
    ]
    assert len(kek_tlvs) == 1, "exactly one RLY_TX (the JOIN_FIN.rsp) carries the 16-byte KEK"


def _tlv_types(payload: bytes) -> list[tuple[int, int]]:
    """(type, length) of each MeshCoP TLV, extended lengths included (a walk written for this
    test from the fact sheet §3.1, independent of gateway.wire.tlv)."""
    out, pos = [], 0
    while pos + 2 <= len(payload):
        t, n = payload[pos], payload[pos + 1]
        pos += 2
        if n == 0xFF:
            n = int.from_bytes(payload[pos : pos + 2], "big")
            pos += 2
        out.append((t, n))
        pos += n
    return out
