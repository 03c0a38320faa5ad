"""Interoperability of the emulated AT86RF233 with real OpenThread nodes on the shared air.

Opt-in: runs only with ``OT_CLI_FTD`` set to an OpenThread ``ot-cli-ftd`` simulation binary
(docs/interop.md). The peer is OpenThread itself, so everything it accepts, answers or counts is
an independent verdict on the emulator (air protocol, address filter, auto-ACK, ACK wait) and on
the project's codecs (802.15.4, CCM*, 6LoWPAN IPHC/NHC, UDP, MLE discovery, Thread key
derivation). Facts used: reference/openthread-sim-air.md §4 (air, ACKs, 16 ms ACK window,
15 retries), reference/thread-meshcop.md §4.3 and §7 (MLE discovery rules), OpenThread
``src/core/thread/mle_ftd.cpp`` (HandleDiscoveryRequest), ``src/cli/README.md`` (CLI commands).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from drivers.at86rf233.driver import At86rf233Radio
from drivers.fcs import fcs_ok
from drivers.radio import RxFrame, RxSubscription, TxResult, TxStatus, open_radio
from gateway.crypto.thread_keys import network_key_derivation
from gateway.errors import ParseError
from gateway.wire import mle
from gateway.wire.ipv6 import PROTO_ICMPV6, Ipv6Packet, upper_layer_checksum
from gateway.wire.lowpan import compress, decompress
from gateway.wire.mac802154 import (
    BROADCAST,
    AuxSecurityHeader,
    ExtAddress,
    FrameType,
    MacFrame,
    ShortAddress,
    secure,
    unsecure,
)
from tests.interop.conftest import Leader, TapThread
from tests.interop.otnode import OtNode, ot_cli_ftd

_BINARY, _SKIP_REASON = ot_cli_ftd()
pytestmark = [
    pytest.mark.skipif(_BINARY is None, reason=_SKIP_REASON),
    pytest.mark.timeout(120),
]

PORT_OFFSET_STEP = 0  # this module's air: OT_INTEROP_PORT_OFFSET + 0
EMU_NODE = 10  # the emulated radio's node id on the air (OpenThread's leader is node 1)
TSHARK = shutil.which("tshark")
ICMPV6_ECHO_REQUEST = 128
RESPONSE_WAIT_S = 1.5  # OpenThread answers discovery after a random delay <= 250 ms (§7)


# --- helpers ----------------------------------------------------------------------------------


def link_local(ext: ExtAddress) -> ipaddress.IPv6Address:
    """fe80::/64 + IID from the extended address with the U/L bit flipped (RFC 4944 §6)."""
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + ext.iid())


async def ot(node: OtNode, command: str, timeout: float = 10.0) -> list[str]:
    """A CLI command off the event loop (the radio driver keeps running on the loop)."""
    return await asyncio.to_thread(node.cmd, command, timeout)


async def counters(node: OtNode) -> dict[str, int]:
    return await asyncio.to_thread(node.counters_mac)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


async def deltas_once(
    node: OtNode,
    before: dict[str, int],
    done: Callable[[dict[str, int]], bool],
    timeout: float = 3.0,
) -> dict[str, int]:
    """Counter deltas, re-read until ``done(deltas)`` holds or ``timeout`` passes: OpenThread
    counts a received frame after its radio has ACKed it, and a sent one when its ACK wait
    ends, both possibly after we already hold the ACK or the frame."""
    end = time.monotonic() + timeout
    while True:
        d = delta(await counters(node), before)
        if done(d) or time.monotonic() > end:
            return d
        await asyncio.sleep(0.05)


async def quiesce(node: OtNode, still_s: float = 0.3, timeout: float = 5.0) -> None:
    """Wait until OpenThread has sent nothing (no frame, no retry) for ``still_s``: an answer
    to a radio that a previous test already closed (up to 16 tries) must not land in the next
    test's counter deltas."""

    def activity(c: dict[str, int]) -> int:
        return c["TxTotal"] + c["TxRetry"]

    last = activity(await counters(node))
    quiet_since = time.monotonic()
    end = quiet_since + timeout
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
        now = activity(await counters(node))
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= still_s:
            return


@pytest.fixture(autouse=True)
async def _openthread_quiet(ot_leader: Leader) -> None:
    await quiesce(ot_leader.node)


@asynccontextmanager
async def emulated_radio(
    leader: Leader, ext: ExtAddress, pan_id: int | None = None
) -> AsyncIterator[At86rf233Radio]:
    """The emulated AT86RF233 as node EMU_NODE on the leader's air and channel."""
    url = f"emulated:?node={EMU_NODE}&port_offset={leader.port_offset}"
    async with open_radio(url) as radio:
        assert isinstance(radio, At86rf233Radio)
        await radio.set_channel(leader.channel)
        await radio.set_addresses(
            pan_id=leader.pan_id if pan_id is None else pan_id,
            short_addr=0xFFFE,
            ext_addr=ext.octets,
        )
        yield radio


async def send(radio: At86rf233Radio, frame: bytes) -> TxResult:
    """Transmit like a MAC user does: a channel-access failure (CCA found OpenThread's frames on
    the air five times) is tried again, up to three times; any other result is final."""
    for _ in range(3):
        result = await radio.transmit(frame)
        if result.status is not TxStatus.CHANNEL_ACCESS_FAILURE:
            break
    return result


def discovery_request_frame(
    *,
    seq: int,
    src: ExtAddress,
    src_pan: int,
    dst: ExtAddress | None,
    dst_pan: int,
    joiner: bool,
) -> bytes:
    """MHR + payload (no FCS) of an unsecured MLE Discovery Request built with the project's
    codecs: to ``dst`` (unicast, AR) or, with ``dst=None``, to ff02::2 / MAC broadcast."""
    payload = mle.discovery_request(joiner=joiner).to_unsecured_bytes()
    ip_dst = link_local(dst) if dst is not None else ipaddress.IPv6Address("ff02::2")
    packet = Ipv6Packet.udp(
        link_local(src), ip_dst, mle.MLE_PORT, mle.MLE_PORT, payload, hop_limit=mle.MLE_HOP_LIMIT
    )
    mac_dst: ExtAddress | ShortAddress = dst if dst is not None else BROADCAST
    frame = MacFrame.create(
        FrameType.DATA,
        seq=seq,
        dst=mac_dst,
        dst_pan=dst_pan,
        src=src,
        src_pan=src_pan,
        payload=compress(packet, src, mac_dst),
        ack_request=dst is not None,
    )
    return frame.to_bytes()


@dataclass
class DiscoveryAnswer:
    rx: RxFrame
    mac: MacFrame
    ip: Ipv6Packet
    info: mle.DiscoveryResponseInfo


def decode_discovery_response(rx: RxFrame) -> DiscoveryAnswer | None:
    """The frame as an MLE Discovery Response (None if it is anything else)."""
    try:
        mac = MacFrame.from_bytes(rx.psdu, fcs=True)
        if mac.frame_type != FrameType.DATA or mac.security is not None:
            return None
        ip = decompress(mac.payload, mac.src, mac.dst)
        udp = ip.udp_datagram()  # checks the UDP checksum OpenThread computed
        if udp.dst_port != mle.MLE_PORT:
            return None
        msg = mle.parse_mle(udp.payload)
        if not isinstance(msg, mle.MleMessage):
            return None
        if msg.command != mle.MleCommand.DISCOVERY_RESPONSE:
            return None
        return DiscoveryAnswer(rx, mac, ip, mle.parse_discovery_response(msg))
    except ParseError:
        return None


async def next_discovery_response(sub: RxSubscription, wait_s: float) -> DiscoveryAnswer | None:
    end = time.monotonic() + wait_s
    while (left := end - time.monotonic()) > 0:
        rx = await sub.get(left)
        if rx is None:
            return None
        answer = decode_discovery_response(rx)
        if answer is not None:
            return answer
    return None


async def frames_to(sub: RxSubscription, ext: ExtAddress, quiet_s: float) -> list[MacFrame]:
    """Every frame addressed to ``ext`` until the air has been quiet for ``quiet_s``."""
    out: list[MacFrame] = []
    while (rx := await sub.get(quiet_s)) is not None:
        assert fcs_ok(rx.psdu)
        mac = MacFrame.from_bytes(rx.psdu, fcs=True)
        if mac.dst == ext:
            out.append(mac)
    return out


def colons(ext: ExtAddress) -> str:
    """An extended address as Wireshark prints it (``wpan.src64``)."""
    return ":".join(f"{b:02x}" for b in ext.octets)


def random_ext(rng: random.Random) -> ExtAddress:
    raw = bytearray(rng.randbytes(8))
    raw[0] = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
    return ExtAddress(bytes(raw))


# --- 1. OpenThread receives, decodes and acknowledges the emulated radio's frames -------------


async def test_openthread_acks_and_answers_a_unicast_frame(ot_leader: Leader) -> None:
    rng = random.Random(1)
    me = random_ext(rng)
    node = ot_leader.node
    async with emulated_radio(ot_leader, me) as radio:
        sub = radio.subscribe()
        before = await counters(node)
        frame = discovery_request_frame(
            seq=0x21,
            src=me,
            src_pan=ot_leader.pan_id,
            dst=ot_leader.ext_addr,
            dst_pan=ot_leader.pan_id,
            joiner=False,  # no joiner flag: a router-eligible node answers (§7)
        )
        result = await send(radio, frame)
        # OpenThread's simulated radio sets Frame Pending in every Imm-Ack (source matching off;
        # openthread-sim-air.md §4), so the acknowledged status is SUCCESS_DATA_PENDING.
        assert result.status is TxStatus.SUCCESS_DATA_PENDING, result
        assert result.frame_retries == 0

        answer = await next_discovery_response(sub, RESPONSE_WAIT_S)
        assert answer is not None, "OpenThread did not answer the Discovery Request"
        d = await deltas_once(node, before, lambda d: d["TxUnicast"] >= 1)
        acks_sent = radio.emulator.stats["acks_sent"]  # type: ignore[attr-defined]
    # OpenThread's MAC received our unicast and transmitted one acknowledged unicast back.
    assert d["RxUnicast"] == 1 and d["RxData"] == 1, d
    assert d["RxErrOther"] == 0 and d["RxErrInvalidSrcAddr"] == 0, d
    assert d["TxUnicast"] == 1 and d["TxAcked"] == 1, d
    assert d["TxDirectMaxRetryExpiry"] == 0, d
    assert acks_sent >= 1  # our chip's auto-ACK is what OpenThread counted as TxAcked
    # ... and the answer is what mle_ftd.cpp SendDiscoveryResponse builds (§7).
    mac, ip, info = answer.mac, answer.ip, answer.info
    assert mac.dst == me and mac.src == ot_leader.ext_addr and mac.ack_request
    assert mac.destination_pan == ot_leader.pan_id and mac.source_pan == ot_leader.pan_id
    assert ip.src == link_local(ot_leader.ext_addr) and ip.dst == link_local(me)
    assert ip.hop_limit == 255
    assert info.ext_pan_id == ot_leader.ext_pan_id
    assert info.network_name == ot_leader.network_name
    assert info.version == mle.THREAD_VERSION_1_4
    assert info.joiner_udp_port == ot_leader.joiner_port
    assert info.steering_data is None  # no commissioner: nobody may join


async def test_frame_to_an_unknown_address_is_not_acknowledged(ot_leader: Leader) -> None:
    rng = random.Random(2)
    me, nobody = random_ext(rng), random_ext(rng)
    async with emulated_radio(ot_leader, me) as radio:
        before = await counters(ot_leader.node)
        frame = discovery_request_frame(
            seq=0x22, src=me, src_pan=ot_leader.pan_id, dst=nobody, dst_pan=ot_leader.pan_id,
            joiner=False,
        )  # fmt: skip
        result = await send(radio, frame)
        assert result.status is TxStatus.NO_ACK
        # the chip's 3 retries (macMaxFrameRetries), then the emulated radio's 2 rounds of
        # 1 + 3 attempts, each after a pause in receive (docs/radio.md)
        assert result.frame_retries == 3 + 2 * (1 + 3)
        after = await counters(ot_leader.node)
    d = delta(after, before)
    assert d["RxUnicast"] == 0 and d["TxUnicast"] == 0, d


async def test_joiner_discovery_is_answered_only_while_joining_is_allowed(
    ot_leader: Leader,
) -> None:
    # Like OpenThread's joiner (§4.3): random extended address, random source PAN, broadcast
    # to ff02::2 with the Joiner flag. A router answers it only when steering data allows
    # joining, i.e. after a commissioner added a joiner.
    rng = random.Random(3)
    me = random_ext(rng)
    joiner_pan = rng.randrange(0, 0xFFFF)
    node = ot_leader.node
    async with emulated_radio(ot_leader, me, pan_id=joiner_pan) as radio:
        sub = radio.subscribe()

        async def ask(seq: int) -> DiscoveryAnswer | None:
            frame = discovery_request_frame(
                seq=seq, src=me, src_pan=joiner_pan, dst=None, dst_pan=0xFFFF, joiner=True
            )
            result = await send(radio, frame)
            assert result.status is TxStatus.SUCCESS  # broadcast: no ACK requested
            return await next_discovery_response(sub, RESPONSE_WAIT_S)

        assert await ask(0x30) is None, "answered a joiner although joining is not allowed"

        mark = node.mark()
        await ot(node, "commissioner start")
        await asyncio.to_thread(node.wait_for, r"Commissioner: active", 10.0, mark)
        try:
            await ot(node, "commissioner joiner add * J01NME")
            answer = None
            for seq in range(0x31, 0x35):  # the leader updates its network data first
                answer = await ask(seq)
                if answer is not None:
                    break
        finally:
            await ot(node, "commissioner stop")
    assert answer is not None, "no Discovery Response once joining was allowed"
    assert answer.mac.dst == me and answer.mac.destination_pan == joiner_pan
    assert answer.mac.source_pan == ot_leader.pan_id
    assert answer.info.steering_data is not None
    assert set(answer.info.steering_data) == {0xFF}  # "joiner add *": permit any joiner
    assert answer.info.joiner_udp_port == ot_leader.joiner_port
    assert answer.info.ext_pan_id == ot_leader.ext_pan_id


# Key ID Mode 2 (the MLE Announce key): the one MAC key OpenThread accepts from a device that is
# not its neighbour (mac.cpp ProcessReceiveSecurity needs a neighbour for mode 1). Fixed key and
# nonce address from reference/thread-meshcop.md §5.7 and OpenThread src/core/mac/mac.cpp.
MODE2_KEY = bytes.fromhex("78581686fdb4580fb092546aecbd1566")
MODE2_NONCE_EXT = ExtAddress.from_hex("3506feb823d48712")


async def test_openthread_verifies_our_ccm_star_mic(ot_leader: Leader) -> None:
    rng = random.Random(7)
    me = random_ext(rng)
    node = ot_leader.node
    # A joiner's request while joining is not allowed: OpenThread stays silent, so no answer
    # goes out after the radio is closed (it would count in the next test's deltas).
    plain = MacFrame.from_bytes(
        discovery_request_frame(
            seq=0,
            src=me,
            src_pan=ot_leader.pan_id,
            dst=ot_leader.ext_addr,
            dst_pan=ot_leader.pan_id,
            joiner=True,
        )
    )
    verdicts = {}
    async with emulated_radio(ot_leader, me) as radio:
        for seq, tamper in ((0x51, False), (0x52, True)):
            sec = AuxSecurityHeader(
                level=5, key_id_mode=2, frame_counter=seq, key_source=b"\xff" * 4, key_index=0xFF
            )
            frame = secure(
                replace(plain, seq=seq, security=sec), MODE2_KEY, ext_src=MODE2_NONCE_EXT
            )
            if tamper:  # one flipped MIC bit: the same frame must now be refused
                frame = replace(frame, mic=bytes((frame.mic[0] ^ 0x01,)) + frame.mic[1:])
            before = await counters(node)
            result = await send(radio, frame.to_bytes())
            assert result.ok  # the simulated radio ACKs before the MAC checks security
            verdicts[tamper] = await deltas_once(node, before, lambda d: d["RxTotal"] >= 1)
    assert verdicts[False]["RxUnicast"] == 1 and verdicts[False]["RxErrSec"] == 0, verdicts
    assert verdicts[False]["RxData"] == 1, verdicts  # passed security, handed up
    assert verdicts[True]["RxUnicast"] == 1 and verdicts[True]["RxErrSec"] == 1, verdicts


# --- 2. The emulated radio receives and acknowledges OpenThread's frames ----------------------


def check_echo_request(
    frames: list[MacFrame], leader: Leader, me: ExtAddress, count: int
) -> list[int]:
    """Decrypt OpenThread's MAC-secured frames with the MAC key derived from its network key
    and check they carry ICMPv6 Echo Requests to our link-local address; their sequence
    numbers."""
    _mle_key, mac_key = network_key_derivation(leader.network_key, leader.key_sequence)
    seqs = []
    for frame in frames:
        assert frame.security is not None and frame.protected
        assert frame.security.level == 5 and frame.security.key_id_mode == 1
        assert frame.src == leader.ext_addr and frame.ack_request
        plain = unsecure(frame, mac_key)  # CryptoError if the MIC does not verify
        ip = decompress(plain.payload, plain.src, plain.dst)
        assert ip.src == link_local(leader.ext_addr) and ip.dst == link_local(me)
        assert ip.next_header == PROTO_ICMPV6
        icmp = ip.payload
        assert icmp[0] == ICMPV6_ECHO_REQUEST and icmp[1] == 0
        zeroed = icmp[:2] + b"\x00\x00" + icmp[4:]
        assert upper_layer_checksum(ip.src, ip.dst, PROTO_ICMPV6, zeroed) == int.from_bytes(
            icmp[2:4], "big"
        )
        assert len(icmp) == 8 + 16  # ping size 16
        seqs.append(int.from_bytes(icmp[6:8], "big"))
    return seqs


async def test_emulated_radio_acks_openthread_unicast(ot_leader: Leader) -> None:
    rng = random.Random(4)
    me = random_ext(rng)
    node = ot_leader.node
    async with emulated_radio(ot_leader, me) as radio:
        sub = radio.subscribe()
        acks0 = radio.emulator.stats["acks_sent"]  # type: ignore[attr-defined]
        before = await counters(node)
        out = await ot(node, f"ping {link_local(me)} 16 3 0.2 64 1", 15)
        d = await deltas_once(node, before, lambda d: d["TxUnicast"] >= 3)
        got = await frames_to(sub, me, 0.3)
        acks = radio.emulator.stats["acks_sent"] - acks0  # type: ignore[attr-defined]
    # Nothing answers the echo (the emulated radio has no IPv6 stack); the MAC layer is the test.
    assert any("3 packets transmitted" in line for line in out), out
    assert d["TxUnicast"] == 3 and d["TxAckRequested"] == 3, d
    assert d["TxAcked"] == 3, d
    assert d["TxDirectMaxRetryExpiry"] == 0 and d["TxErrCca"] == 0, d
    unique = {f.seq: f for f in got}  # an OpenThread retry would repeat a sequence number
    assert len(unique) == 3
    assert acks == len(got)  # every copy we received was acknowledged by our chip
    # A late ACK (> 16 ms, a starved host) makes OpenThread resend; we cannot have heard more
    # copies than it sent (we may hear fewer: RX_SAFE_MODE drops a copy the driver has not
    # made room for). On an idle machine TxRetry is 0.
    assert len(got) - 3 <= d["TxRetry"], d
    assert check_echo_request(list(unique.values()), ot_leader, me, 3) == [1, 2, 3]


async def test_openthread_retries_when_the_emulated_radio_does_not_ack(ot_leader: Leader) -> None:
    # Negative control: promiscuous mode receives everything but disables the auto-ACK, so the
    # same ping must now exhaust OpenThread's retries (1 + 15 transmissions).
    rng = random.Random(5)
    me = random_ext(rng)
    node = ot_leader.node
    async with emulated_radio(ot_leader, me) as radio:
        await radio.set_promiscuous(True)
        sub = radio.subscribe()
        before = await counters(node)
        await ot(node, f"ping {link_local(me)} 16 1 1 64 1", 15)
        d = await deltas_once(node, before, lambda d: d["TxDirectMaxRetryExpiry"] >= 1)
        got = await frames_to(sub, me, 0.3)
        acks = radio.emulator.stats["acks_sent"]  # type: ignore[attr-defined]
    assert d["TxDirectMaxRetryExpiry"] == 1 and d["TxAcked"] == 0, d
    assert d["TxRetry"] == 15, d
    # We hear the copies (one MAC sequence number): all 16 on an idle machine; on a starved
    # host some are lost to RX_SAFE_MODE (the driver had not read the previous one yet), but
    # none arrives garbled (frames_to checks every FCS).
    assert 1 <= len(got) <= 16 and len({f.seq for f in got}) == 1, len(got)
    assert acks == 0


# --- 3. tshark decodes a capture of the whole exchange ----------------------------------------


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
async def test_tshark_decodes_the_captured_exchange(
    ot_leader: Leader, air_tap: TapThread, tmp_path: Path
) -> None:
    rng = random.Random(6)
    me = random_ext(rng)
    node = ot_leader.node
    req_seq = 0x41
    async with emulated_radio(ot_leader, me) as radio:
        sub = radio.subscribe()
        frame = discovery_request_frame(
            seq=req_seq, src=me, src_pan=ot_leader.pan_id, dst=ot_leader.ext_addr,
            dst_pan=ot_leader.pan_id, joiner=False,
        )  # fmt: skip
        assert (await send(radio, frame)).ok
        answer = await next_discovery_response(sub, RESPONSE_WAIT_S)
        assert answer is not None
        await ot(node, f"ping {link_local(me)} 16 2 0.2 64 1", 15)
        await asyncio.sleep(0.2)
    frames = air_tap.stop()

    # Who sent what, from the tap's view of the air (sender = UDP source port - group port).
    assert all(fcs_ok(psdu) for _n, _c, psdu in frames)
    acks = [(n, psdu[2]) for n, _c, psdu in frames if len(psdu) == 5 and (psdu[0] & 7) == 2]
    assert (1, req_seq) in acks  # OpenThread (node 1) acknowledged our request
    assert (EMU_NODE, answer.mac.seq) in acks  # our chip acknowledged OpenThread's answer

    assert TSHARK is not None
    key_pref = f'uat:ieee802154_keys:"{ot_leader.network_key.hex()}","{ot_leader.key_sequence}","Thread hash"'
    fields = ["wpan.fcs_ok", "wpan.frame_type", "wpan.seq_no", "wpan.src64", "mle.cmd", "icmpv6.type",
              "icmpv6.checksum.status", "udp.checksum.status", "_ws.malformed",
              "_ws.expert.message"]  # fmt: skip
    cmd = [TSHARK, "-r", str(air_tap.pcap), "-o", key_pref, "-o", "udp.check_checksum:TRUE"]
    cmd += ["-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, env=env)
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.stdout.splitlines()]
    assert len(rows) == len(frames)
    assert all(r["wpan.fcs_ok"] in ("1", "True") for r in rows), rows
    assert not any(r["_ws.malformed"] for r in rows), rows
    # checksum status 1 = good (0 bad, 2 unverified); expert info would flag a MIC failure
    assert all(r["udp.checksum.status"] in ("", "1") for r in rows), rows
    assert all(r["icmpv6.checksum.status"] in ("", "1") for r in rows), rows
    assert not any(r["_ws.expert.message"] for r in rows), rows
    # Data frames by (sender, sequence number): the two sides number independently.
    data = {
        (r["wpan.src64"], r["wpan.seq_no"]): r for r in rows if r["wpan.frame_type"] == "0x0001"
    }
    ours = data[(colons(me), str(req_seq))]
    assert ours["mle.cmd"] == "16"  # Discovery Request, as Wireshark's MLE dissector reads it
    assert ours["udp.checksum.status"] == "1"
    theirs = data[(colons(ot_leader.ext_addr), str(answer.mac.seq))]
    assert theirs["mle.cmd"] == "17"  # Discovery Response
    # Wireshark decrypts OpenThread's MAC-secured pings with the network key ("Thread hash").
    echoes = [r for r in rows if r["icmpv6.type"] == str(ICMPV6_ECHO_REQUEST)]
    assert len(echoes) >= 2 and all(r["icmpv6.checksum.status"] == "1" for r in echoes), rows
    assert sum(r["wpan.frame_type"] == "0x0002" for r in rows) >= 4  # 1 + 1 + 2 ACKs
