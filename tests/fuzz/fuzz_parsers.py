"""Fuzz targets for every parser of gateway/wire, gateway/crypto and the driver helpers.

A *target* is a callable that takes arbitrary bytes and feeds them to one parser entry point
(and, for stateful code, to a fresh state machine); it may let through only the exception types
it declares (normally :class:`gateway.errors.ParseError`; :class:`gateway.errors.CryptoError`
as well for crypto readers; nothing at all for the DTLS and CBSB state machines, which must
swallow hostile bytes). Anything else escaping is a *finding*: a crash, or a broken invariant
(a parsed value that does not re-encode to the same bytes, a reassembly buffer over its bound).

Every target is seeded with valid inputs produced by the project's own codecs (and, for the
state machines, by real in-memory DTLS and CBSB sessions that a fresh, identically seeded
endpoint replays to the end). The loop mutates them (bit flips, interesting values, truncation,
insertion, deletion, duplication, splicing with other seeds) and mixes in purely random inputs.
With guidance on (the CLI default), a line-pair coverage tracer over ``gateway/`` and
``drivers/`` keeps every input that reaches new code in the corpus.

Run it long outside CI (docs/fuzzing.md)::

    python -m tests.fuzz.fuzz_parsers --seconds 60               # every target, 60 s each
    python -m tests.fuzz.fuzz_parsers --seconds 600 --target dtls.server
    python -m tests.fuzz.fuzz_parsers --list

It prints executions and executions/s per target and, for each finding, the exception, where it
was raised and a minimised reproducer in hex; the exit status is 1 if anything was found.
``tests/fuzz/test_fuzz_smoke.py`` runs the same targets briefly in CI.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import hashlib
import ipaddress
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from drivers.errors import RcpIncompatible
from drivers.fcs import append_fcs
from drivers.mac_header import HeaderError, describe, parse_header
from drivers.pcap import PcapError, PcapWriter, read_pcap
from drivers.spinel.codec import SpinelParseError
from gateway.crypto import cbsb_keys
from gateway.crypto.dtls import (
    ConnectionFailed,
    CookieJar,
    DtlsClient,
    DtlsServer,
    DtlsState,
    KeyBlock,
    check_client_hello,
)
from gateway.crypto.dtls_handshake import (
    ClientHello,
    HandshakeFragment,
    HandshakeReassembler,
    HelloVerifyRequest,
    ServerHello,
    parse_ec_point_formats,
    parse_fragments,
    parse_supported_groups,
)
from gateway.crypto.dtls_record import (
    CcmRecordCipher,
    DtlsRecord,
    parse_datagram,
    parse_datagram_prefix,
)
from gateway.crypto.ec import decode_point, encode_point, mul_base
from gateway.crypto.ecjpake import EcJpake
from gateway.crypto.thread_keys import (
    SteeringData,
    network_key_derivation,
    validate_passphrase,
    validate_pskd,
)
from gateway.errors import CryptoError, InvalidArgument, ParseError
from gateway.wire import cbsb_notice, cloudapi, mle
from gateway.wire import meshcop as mc
from gateway.wire.cbsb import (
    DISPATCH,
    AckBody,
    AppReport,
    BeaconFlags,
    ConfirmBody,
    Delivery,
    ItemType,
    LinkParams,
    ResponseBody,
    parse_frame,
    peek_type,
)
from gateway.wire.cbsb_gateway import GatewayConfig, GatewaySession, JoinGrant
from gateway.wire.cbsb_mac import cbsb_mac_frame, parse_cbsb_mac
from gateway.wire.cbsb_session import Output, Send
from gateway.wire.cbsb_thing import ThingIdentity, ThingJoin, ThingState
from gateway.wire.ccm_star import ccm_star_decrypt, ccm_star_encrypt
from gateway.wire.coap import MessageType, TmfMessage, TmfUri, tmf_request, tmf_response
from gateway.wire.dataset import ActiveDataset, CommissionerDataset, PendingDataset
from gateway.wire.fragment import FragmentHeader, Reassembler, fragment, parse_lowpan_frame
from gateway.wire.ipv6 import Ipv6Packet, UdpDatagram
from gateway.wire.lowpan import (
    LowpanContext,
    MeshHeader,
    classify,
    compress,
    decompress,
    header_sizes,
)
from gateway.wire.mac802154 import (
    HT1,
    HT2,
    PAYLOAD_TERMINATION,
    Address,
    AuxSecurityHeader,
    ExtAddress,
    FrameVersion,
    HeaderIE,
    MacCommand,
    MacFrame,
    PayloadIE,
    ShortAddress,
    build_header_ies,
    build_payload_ies,
    parse_header_ies,
    parse_payload_ies,
    secure,
    split_payload_ies,
    unsecure,
)
from gateway.wire.mac802154 import (
    FrameType as MacFrameType,
)
from gateway.wire.meshcop import ChannelMask, SecurityPolicy, Timestamp
from gateway.wire.tlv import Tlv, decode_tlvs, encode_tlvs
from tests.dtls_helpers import shuttle as shuttle_datagrams
from tests.fuzz import spinel_targets as sp
from tests.fuzz.fuzz_border import BORDER_TARGETS
from tests.fuzz.fuzz_network import NETWORK_TARGETS
from tests.fuzz.fuzz_srp import SRP_TARGETS

# --- fixed material ------------------------------------------------------------------------------

NETWORK_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
MLE_KEY, MAC_KEY = network_key_derivation(NETWORK_KEY, 0)
KEK = bytes(range(0x40, 0x50))
PSKD = b"J01NME"
EXT_A = ExtAddress.from_hex("1ab4300000000001")
EXT_B = ExtAddress.from_hex("1ab4300000000002")
SHORT_A, SHORT_B = ShortAddress(0x0400), ShortAddress(0x0C01)
PAN = 0xFACE
MESH_LOCAL = ipaddress.IPv6Network("fd11:2233:4455:0::/64")
CONTEXTS = {0: LowpanContext(MESH_LOCAL), 1: LowpanContext(ipaddress.IPv6Network("2001:db8::/32"))}
LINK_PAIRS: tuple[tuple[Address, Address], ...] = (
    (EXT_A, EXT_B),
    (SHORT_A, SHORT_B),
    (EXT_A, SHORT_B),
    (SHORT_A, ShortAddress(0xFFFF)),
)
OT_DISCOVERY_REQUEST = bytes.fromhex(  # reference/openthread-sim-air.md (captured OpenThread frame)
    "01d807ffffffff2bcfc893faf973b19e267f3b02f04d4c4d4c12c3ff101a0480025800fd00"
)
DATASET_HEX = (  # espressif/esp-matter "Light + OTBR" README, `dataset active -x`
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c3901546"
    "0510874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a"
    "0f60ca6dd3af116bdefd2a21270c0402a0f7f8"
)
DATASET = bytes.fromhex(DATASET_HEX)
CBSB_GW = bytes.fromhex("0011223344556677")
CBSB_THING = bytes.fromhex("a000000000000001")
CBSB_SID = bytes(range(16))
CBSB_EXP = 1_700_000_000
CBSB_CHANNEL = 26
AEAD_KEY = bytes(range(0x10, 0x20))
AEAD_AAD = b"cbsb-aad"


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def link_local(link: ExtAddress) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + link.iid())


# --- framing of multi-message inputs ---------------------------------------------------------------


def records(data: bytes, header: int) -> Iterator[tuple[bytes, bytes]]:
    """Split ``data`` into ``(header bytes, body)`` records: ``header`` bytes whose last byte is
    the body length (a truncated tail still yields what is there)."""
    pos = 0
    while pos < len(data):
        head = data[pos : pos + header]
        pos += header
        if len(head) < header:
            return
        body = data[pos : pos + head[-1]]
        pos += head[-1]
        yield head, body


def long_records(data: bytes) -> Iterator[bytes]:
    """Records with a 2-byte big-endian length (datagrams up to 64 KiB)."""
    pos = 0
    while pos + 2 <= len(data):
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        yield data[pos : pos + n]
        pos += n


def long_framed(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack(">H", len(i)) + i for i in items)


# --- seeds: valid inputs made by the codecs themselves ---------------------------------------------


def _udp(src: Any, dst: Any, sport: int, dport: int, data: bytes) -> Ipv6Packet:
    return Ipv6Packet.udp(src, dst, sport, dport, data)


@functools.cache
def ipv6_packets() -> tuple[Ipv6Packet, ...]:
    ml = MESH_LOCAL.network_address
    packets = [
        _udp(link_local(EXT_A), link_local(EXT_B), 19788, 19788, b"\xff\x10\x12\x34"),
        _udp("fe80::ff:fe00:400", "fe80::ff:fe00:c01", 0xF0B1, 0xF0B2, b"short"),
        _udp(link_local(EXT_A), "ff02::1", 61631, 61631, b"multicast" * 3),
        _udp(ml + 0x0400, ml + 0xFC00, 61631, 61631, bytes(range(40))),
        _udp("2001:db8::1", "ff03::fc", 5683, 5683, b"context 1"),
        _udp(link_local(EXT_A), link_local(EXT_B), 49152, 1000, bytes(range(256)) * 2),
        Ipv6Packet(
            ipaddress.IPv6Address(link_local(EXT_A)),
            ipaddress.IPv6Address("ff02::2"),
            58,
            bytes.fromhex("8700abcd00000000") + bytes(16),
            255,
        ),
    ]
    inner = _udp(ml + 1, ml + 2, 1234, 61631, b"tunnelled")
    packets.append(Ipv6Packet(ml + 3, ml + 4, 41, inner.to_bytes(), 64))
    hop_by_hop = bytes((17, 0, 0x63, 4, 0x00, 0x01, 0x02, 0x03))  # RPL-like option, padded
    udp = UdpDatagram(7, 8, b"after hbh").to_bytes(ml + 5, ml + 6)
    packets.append(Ipv6Packet(ml + 5, ml + 6, 0, hop_by_hop + udp, 64))
    return tuple(packets)


@functools.cache
def lowpan_seeds() -> tuple[bytes, ...]:
    """Selector byte (link pair, contexts) followed by an IPHC/0x41 datagram."""
    out: list[bytes] = []
    for packet in ipv6_packets():
        for pair_index, (src, dst) in enumerate(LINK_PAIRS):
            for with_contexts in (False, True):
                ctx = CONTEXTS if with_contexts else None
                try:
                    compressed = compress(packet, src, dst, ctx, elide_udp_checksum=pair_index == 1)
                except InvalidArgument:
                    continue
                out.append(bytes((pair_index | (4 if with_contexts else 0),)) + compressed)
    out.append(b"\x00\x41" + ipv6_packets()[0].to_bytes())
    return tuple(out)


def _decode_selector(data: bytes) -> tuple[Address, Address, Any, bytes]:
    sel = data[0] if data else 0
    src, dst = LINK_PAIRS[sel & 3]
    return src, dst, (CONTEXTS if sel & 4 else None), data[1:]


@functools.cache
def fragment_seeds() -> tuple[bytes, ...]:
    """Records ``len(1) | fragment`` of whole fragmented datagrams (several interleaved)."""
    out: list[bytes] = []
    big = [p for p in ipv6_packets() if len(p.payload) > 100]
    streams: list[list[bytes]] = []
    for tag, packet in enumerate(big):
        compressed = compress(packet, EXT_A, EXT_B)
        streams.append(fragment(compressed, max_payload=80, tag=0x100 + tag))
    for stream in streams:
        out.append(b"".join(bytes((len(f),)) + f for f in stream))
        out.append(b"".join(bytes((len(f),)) + f for f in reversed(stream)))
    mixed = [f for pair in zip(*streams[:2], strict=False) for f in pair]
    out.append(b"".join(bytes((len(f),)) + f for f in mixed))
    return tuple(out)


@functools.cache
def mac_frames() -> tuple[MacFrame, ...]:
    """Unsecured frames (secured ones come from :func:`secured_frames`)."""
    frames = [
        MacFrame.create(
            MacFrameType.DATA,
            seq=1,
            dst=EXT_B,
            dst_pan=PAN,
            src=EXT_A,
            src_pan=PAN,
            payload=b"\x7b\x33\x3a" + bytes(8),
            ack_request=True,
        ),
        MacFrame.create(
            MacFrameType.DATA,
            seq=2,
            dst=ShortAddress(0xFFFF),
            dst_pan=0xFFFF,
            src=EXT_A,
            src_pan=0xFFFF,
            payload=b"\x3c\x16\x01\x00",
        ),
        MacFrame.create(
            MacFrameType.DATA, seq=3, dst=SHORT_B, dst_pan=PAN, src=SHORT_A, src_pan=0x1234
        ),
        MacFrame.create(
            MacFrameType.BEACON,
            seq=4,
            src=SHORT_A,
            src_pan=PAN,
            payload=bytes.fromhex("ffcf0000") + b"beacon",
        ),
        MacFrame.imm_ack(5, frame_pending=True),
        MacFrame.create(
            MacFrameType.COMMAND,
            seq=6,
            dst=EXT_B,
            dst_pan=PAN,
            src=EXT_A,
            src_pan=PAN,
            payload=bytes((MacCommand.DATA_REQUEST,)),
        ),
        MacFrame.create(
            MacFrameType.DATA,
            seq=None,
            dst=SHORT_B,
            dst_pan=PAN,
            src=SHORT_A,
            version=FrameVersion.V2015,
            header_ies=build_header_ies(
                [HeaderIE(0x1A, bytes.fromhex("ed0b350c")), HeaderIE(HT1, b"")]
            ),
            payload=build_payload_ies(
                [PayloadIE(0x5, b"\x01\x02"), PayloadIE(PAYLOAD_TERMINATION, b"")]
            )
            + b"after ies",
        ),
        MacFrame.create(
            MacFrameType.ACK,
            seq=7,
            dst=EXT_B,
            dst_pan=PAN,
            src=EXT_A,
            version=FrameVersion.V2015,
            header_ies=build_header_ies(
                [HeaderIE(0x1A, bytes.fromhex("ed0b350c")), HeaderIE(HT2, b"")]
            ),
        ),
        MacFrame.from_bytes(OT_DISCOVERY_REQUEST, fcs=True),
    ]
    return tuple(frames)


@functools.cache
def secured_frames() -> tuple[MacFrame, ...]:
    out: list[MacFrame] = []
    for level in (1, 4, 5, 6, 7):
        for mode, source, key_index in (
            (0, b"", None),
            (1, b"", 1),
            (2, b"\xff" * 4, 0xFF),
            (3, bytes(8), 2),
        ):
            frame = MacFrame.create(
                MacFrameType.DATA,
                seq=level,
                dst=EXT_B if mode else SHORT_B,
                dst_pan=PAN,
                src=EXT_A if mode != 3 else SHORT_A,
                src_pan=PAN,
                payload=b"\x7b\x33\x3a" + bytes(range(20)),
                security=AuxSecurityHeader(level, mode, 100 + level, source, key_index),
            )
            out.append(secure(frame, MAC_KEY, ext_src=EXT_A))
    command = MacFrame.create(
        MacFrameType.COMMAND,
        seq=9,
        dst=EXT_B,
        dst_pan=PAN,
        src=EXT_A,
        version=FrameVersion.V2015,
        header_ies=build_header_ies([HeaderIE(0x1A, b"\x01\x02"), HeaderIE(HT2, b"")]),
        payload=bytes((MacCommand.DATA_REQUEST,)),
        security=AuxSecurityHeader(5, 1, 77, key_index=1),
    )
    out.append(secure(command, MAC_KEY))
    return tuple(out)


@functools.cache
def mle_messages() -> tuple[bytes, ...]:
    """Unsecured (suite 255) and secured (suite 0) MLE UDP payloads."""
    discovery = [
        mle.discovery_request(joiner=True).to_unsecured_bytes(),
        mle.discovery_request(joiner=False, ext_pan_id=bytes(8)).to_unsecured_bytes(),
        mle.discovery_response(
            ext_pan_id=bytes.fromhex("dead00beef00cafe"),
            network_name="OpenThread-1234",
            joiner_udp_port=1000,
            steering_data=b"\xff",
            commissioner_udp_port=49191,
            domain_name="DefaultDomain",
        ).to_unsecured_bytes(),
    ]
    message = mle.MleMessage(
        mle.MleCommand.CHILD_ID_REQUEST,
        (
            mle.ResponseTlv(bytes(range(8))),
            mle.LinkFrameCounterTlv(1),
            mle.MleFrameCounterTlv(2),
            mle.ModeTlv.of(rx_on_when_idle=True, full_thread_device=False, full_network_data=True),
            mle.TimeoutTlv(240),
            mle.VersionTlv(4),
            mle.TlvRequestTlv((10, 12)),
            mle.ActiveTimestampTlv(Timestamp(1)),
        ),
    )
    secured = [
        mle.encode_secured(
            msg,
            mle_key=MLE_KEY,
            key_sequence=0,
            frame_counter=counter,
            source=link_local(EXT_A),
            destination=link_local(EXT_B),
        )
        for counter, msg in enumerate(
            [
                message,
                mle.MleMessage(
                    mle.MleCommand.PARENT_REQUEST,
                    (mle.ScanMaskTlv.of(router=True, end_device=True),),
                ),
            ]
        )
    ]
    return tuple(discovery + secured)


@functools.cache
def meshcop_payloads() -> tuple[bytes, ...]:
    items: list[list[Any]] = [
        [mc.CommissionerIdTlv("OT-commissioner")],
        [mc.StateTlv(1), mc.CommissionerSessionIdTlv(0x1234)],
        [
            mc.JoinerUdpPortTlv(1000),
            mc.JoinerIidTlv(bytes(8)),
            mc.JoinerRouterLocatorTlv(0x0400),
            mc.JoinerRouterKekTlv(KEK),
            mc.JoinerDtlsEncapsulationTlv(bytes(range(40))),
        ],
        [
            mc.NetworkKeyTlv(NETWORK_KEY),
            mc.MeshLocalPrefixTlv(bytes.fromhex("fd11223344550000")),
            mc.ExtendedPanIdTlv(bytes(8)),
            mc.NetworkNameTlv("OpenThread"),
            mc.ActiveTimestampTlv(Timestamp(1, 2, True)),
            mc.ChannelMaskTlv(ChannelMask.from_ot_mask(0x07FFF800)),
            mc.PskcTlv(bytes(16)),
            mc.SecurityPolicyTlv(SecurityPolicy()),
            mc.NetworkKeySequenceTlv(5),
        ],
        [
            mc.UdpEncapsulationTlv(61631, 61631, b"coap"),
            mc.Ipv6AddressTlv(ipaddress.IPv6Address("fd00::1")),
        ],
        [
            mc.VendorNameTlv("OPENTHREAD"),
            mc.VendorModelTlv("SIMULATION"),
            mc.VendorSwVersionTlv("1.4"),
            mc.VendorStackVersionTlv(0x18B430, 0x123, 4, 1, 0),
            mc.VendorDataTlv(b"data"),
            mc.ProvisioningUrlTlv("https://x.io/p"),
        ],
        [mc.GetTlv((0, 1, 2, 53)), mc.SteeringDataTlv(b"\xff"), mc.DelayTimerTlv(30000)],
        [
            mc.EnergyListTlv((-90, -70, 1)),
            mc.CountTlv(2),
            mc.PeriodTlv(100),
            mc.ScanDurationTlv(32),
        ],
    ]
    payloads = [mc.encode_meshcop_tlvs(group) for group in items]
    return tuple(payloads)


@functools.cache
def tmf_messages() -> tuple[bytes, ...]:
    out: list[bytes] = []
    payloads = meshcop_payloads()
    for i, uri in enumerate((TmfUri.COMM_PET, TmfUri.RLY_RX, TmfUri.JOIN_ENT, TmfUri.UDP_TX)):
        req = tmf_request(uri, mid=i, token=bytes((i, i)), confirmable=i % 2 == 0)
        req = TmfMessage(
            req.mtype, req.code, req.mid, req.token, req.uri_path, payloads[i % len(payloads)]
        )
        out.append(req.to_bytes())
        if i % 2 == 0:
            out.append(tmf_response(req, [mc.StateTlv(1)]).to_bytes())
    out.append(bytes.fromhex("42021234a1b2b163026370ff0a0f") + b"OT-commissioner")  # RFC 7252 §3
    out.append(
        TmfMessage(
            MessageType.CON, 1, 7, b"", ("a", "aq"), b"", ((12, b"\x2a"), (60, b"\x01"))
        ).to_bytes()
    )
    return tuple(out)


@functools.cache
def dataset_seeds() -> tuple[bytes, ...]:
    pending = (
        DATASET
        + mc.PendingTimestampTlv(Timestamp(2)).to_bytes()
        + mc.DelayTimerTlv(30000).to_bytes()
    )
    commissioner = mc.encode_meshcop_tlvs(
        [
            mc.BorderAgentLocatorTlv(0x0400),
            mc.CommissionerSessionIdTlv(1),
            mc.SteeringDataTlv(b"\xff"),
        ]
    )
    return (DATASET, pending, commissioner, b"")


# --- CBSB: a real join on an ideal air -------------------------------------------------------------


def _cbsb_gateway() -> GatewaySession:
    mode = BeaconFlags.TARGETED
    psk = cbsb_keys.derive_psk_t(
        _cbsb_identity().k_dev, CBSB_SID, CBSB_GW, CBSB_THING, CBSB_EXP, int(mode)
    )
    delivery = Delivery(thread_dataset=DATASET).to_bytes()
    return GatewaySession(
        GatewayConfig(CBSB_GW, CBSB_CHANNEL, 0x8A63, delivery),
        JoinGrant(CBSB_SID, CBSB_EXP, mode, 120.0, {CBSB_THING: psk}),
        0.0,
        rng=seeded(1),
        jitter=random.Random(1),
    )


def _cbsb_identity() -> ThingIdentity:
    return ThingIdentity(CBSB_THING, hashlib.sha256(b"fuzz k_dev").digest())


def _cbsb_thing() -> ThingJoin:
    return ThingJoin(
        _cbsb_identity(), channels=(CBSB_CHANNEL,), rng=seeded(2), jitter=random.Random(2)
    )


@functools.cache
def cbsb_trace() -> tuple[tuple[float, bytes, bytes | None, bytes], ...]:
    """Every frame of a complete join: ``(time, source, destination, payload)``."""
    gw, thing = _cbsb_gateway(), _cbsb_thing()
    sent: list[tuple[float, bytes, bytes | None, bytes]] = []
    queue: list[tuple[bytes, bytes]] = []
    now = 0.0

    def emit(src: bytes, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, Send):
                sent.append((now, src, o.dst, o.payload))
                queue.append((src, o.payload))

    emit(CBSB_THING, thing.start(now))
    emit(CBSB_GW, gw.poll(now))
    for _ in range(1000):
        while queue:
            src, payload = queue.pop(0)
            if src == CBSB_GW:
                emit(CBSB_THING, thing.handle_frame(now, src, payload))
            else:
                emit(CBSB_GW, gw.handle_frame(now, src, payload))
        if thing.state is ThingState.COMMITTED:
            return tuple(sent)
        deadlines = [d for d in (gw.next_deadline(), thing.next_deadline()) if d is not None]
        now = max(now, min(deadlines))
        emit(CBSB_GW, gw.poll(now))
        emit(CBSB_THING, thing.poll(now))
    raise RuntimeError("the seed CBSB join did not complete")


def _cbsb_replay_input(from_src: bytes) -> bytes:
    """The frames ``from_src`` sent, as session-target records ``dt_ms(2) | src(1) | len(1)``."""
    out = bytearray()
    last = 0.0
    for t, src, _dst, payload in cbsb_trace():
        if src != from_src:
            continue
        dt = min(0xFFFF, round((t - last) * 1000))
        last = t
        out += struct.pack(">HBB", dt, 0, len(payload)) + payload
    return bytes(out)


@functools.cache
def cbsb_frames() -> tuple[bytes, ...]:
    return tuple(payload for _, _, _, payload in cbsb_trace())


def replay_gateway(data: bytes) -> GatewaySession:
    """A fresh gateway session fed the records of ``data`` (frames "from the thing")."""
    gw = _cbsb_gateway()
    now = 0.0
    gw.poll(now)
    for head, payload in records(data, 4):
        now += struct.unpack(">H", head[:2])[0] / 1000
        gw.poll(now)
        gw.handle_frame(now, None if head[2] & 1 else CBSB_THING, payload)
    gw.poll(now + 1000.0)
    return gw


def replay_thing(data: bytes) -> ThingJoin:
    """A fresh thing fed the records of ``data`` (frames "from the gateway")."""
    thing = _cbsb_thing()
    now = 0.0
    thing.start(now)
    for head, payload in records(data, 4):
        now += struct.unpack(">H", head[:2])[0] / 1000
        thing.poll(now)
        thing.handle_frame(now, None if head[2] & 1 else CBSB_GW, payload)
    thing.poll(now + 1000.0)
    return thing


# --- DTLS: a real EC-JPAKE session -----------------------------------------------------------------

DTLS_CLIENT_TRANSPORT = link_local(EXT_A).packed


def _dtls_pair() -> tuple[DtlsClient, DtlsServer]:
    client = DtlsClient(PSKD, rng=seeded(11))
    server = DtlsServer(PSKD, transport_id=DTLS_CLIENT_TRANSPORT, rng=seeded(12))
    return client, server


@functools.cache
def dtls_trace() -> tuple[tuple[str, bytes], ...]:
    """Handshake, application data both ways and close_notify: ``(direction, datagram)``."""
    client, server = _dtls_pair()
    trace: list[tuple[str, bytes]] = []

    def shuttle() -> None:
        shuttle_datagrams(client, server, trace)

    client.start(0.0)
    shuttle()
    if not (client.is_connected and server.is_connected):
        raise RuntimeError("the seed DTLS handshake failed")
    client.send(b"JOIN_FIN.req")
    server.send(b"JOIN_FIN.rsp")
    shuttle()
    client.close()
    shuttle()
    return tuple(trace)


def _dtls_side(direction: str) -> list[bytes]:
    return [d for dirn, d in dtls_trace() if dirn == direction]


def replay_dtls_server(data: bytes) -> DtlsServer:
    _, server = _dtls_pair()
    for datagram in long_records(data):
        server.receive_datagram(datagram, 0.0)
        server.datagrams_to_send()
    return server


def replay_dtls_client(data: bytes) -> DtlsClient:
    client, _ = _dtls_pair()
    client.start(0.0)
    for datagram in long_records(data):
        client.receive_datagram(datagram, 0.0)
        client.datagrams_to_send()
    return client


def _check_dtls_endpoint(endpoint: DtlsClient | DtlsServer) -> None:
    for event in endpoint.events():
        if isinstance(event, ConnectionFailed):
            assert event.error.code.startswith("DTL"), event.error.code
    endpoint.handle_timeout(10_000.0)
    endpoint.handle_timeout(20_000.0)
    endpoint.datagrams_to_send()
    assert endpoint.state in DtlsState


@functools.cache
def ecjpake_messages() -> dict[str, bytes]:
    client = EcJpake("client", PSKD, rng=seeded(21))
    server = EcJpake("server", PSKD, rng=seeded(22))
    c1, s1 = client.write_round_one(), server.write_round_one()
    client.read_round_one(s1)
    server.read_round_one(c1)
    return {
        "c1": c1,
        "s1": s1,
        "c2": client.write_round_two(),
        "s2": server.write_round_two(),
    }


def _jpake(role: str, peer_round_one: str | None) -> EcJpake:
    side = EcJpake(
        "client" if role == "client" else "server", PSKD, rng=seeded(21 if role == "client" else 22)
    )
    if peer_round_one is not None:
        side.read_round_one(ecjpake_messages()[peer_round_one])
    return side


# --- targets ------------------------------------------------------------------------------------


def t_mac_from_bytes(data: bytes) -> None:
    frame = MacFrame.from_bytes(data)
    assert frame.to_bytes() == data, "a parsed frame must re-encode to the same bytes"
    str(frame)
    frame.source_pan  # noqa: B018
    try:
        frame.command_id  # noqa: B018
        split_payload_ies(frame)
    except InvalidArgument:  # payload IEs of an encrypted frame: a usage error, not bad bytes
        pass
    with_fcs = append_fcs(data)
    assert MacFrame.from_bytes(with_fcs, fcs=True) == frame


def t_mac_from_bytes_fcs(data: bytes) -> None:
    MacFrame.from_bytes(data, fcs=True)


def t_mac_unsecure(data: bytes) -> None:
    frame = MacFrame.from_bytes(data)
    if frame.security is None:
        return
    plain = unsecure(frame, MAC_KEY, ext_src=EXT_A)
    str(plain)
    split_payload_ies(plain)


def t_mac_ies(data: bytes) -> None:
    try:
        parse_header_ies(data)
    except ParseError:
        pass
    parse_payload_ies(data)


def t_mac_header(data: bytes) -> None:
    describe(data)
    parse_header(data)


def t_lowpan_decompress(data: bytes) -> None:
    src, dst, contexts, body = _decode_selector(data)
    packet = decompress(body, src, dst, contexts)
    packet.to_bytes()
    if packet.next_header == 17:
        packet.udp_datagram(verify=False)


def t_lowpan_headers(data: bytes) -> None:
    if data:
        classify(data)
        classify(data[0])
    try:
        MeshHeader.parse(data)
    except ParseError:
        pass
    header_sizes(data)


def t_fragment_header(data: bytes) -> None:
    try:
        FragmentHeader.parse(data)
    except ParseError:
        pass
    frame = parse_lowpan_frame(data)
    frame.link_addresses(EXT_A, EXT_B)
    if frame.mesh is None:  # (a mesh header's hops-left may have two encodings)
        assert frame.to_bytes() == data, "the headers re-encode byte for byte"


def t_fragment_reassembler(data: bytes) -> None:
    reasm = Reassembler(timeout=5.0, max_datagrams=3, max_bytes=1500)
    for i, (_head, body) in enumerate(records(data, 1)):
        try:
            datagram = reasm.feed(body, EXT_A, EXT_B, now=i * 0.5)
        except ParseError:
            datagram = None
        assert reasm.bytes_reserved <= 1500 and reasm.pending <= 3
        if datagram is not None:
            try:
                decompress(datagram, EXT_A, EXT_B)
            except ParseError:
                pass
        try:
            frame = parse_lowpan_frame(body)
        except ParseError:
            continue
        try:
            reasm.accept(frame, EXT_B, EXT_A, now=i * 0.5)
        except ParseError:
            pass


def t_ipv6(data: bytes) -> None:
    packet = Ipv6Packet.from_bytes(data)
    assert packet.to_bytes() == data[: 40 + len(packet.payload)]
    if packet.next_header == 17:
        packet.udp_datagram(verify=True)


def t_udp(data: bytes) -> None:
    UdpDatagram.from_bytes(data, "fe80::1", "fe80::2")


def t_tlv(data: bytes) -> None:
    tlvs = decode_tlvs(data)
    assert encode_tlvs(tlvs) == data, "TLVs re-encode byte for byte"
    if len(tlvs) == 1:
        assert Tlv.from_bytes(data) == tlvs[0]


def t_meshcop_tlvs(data: bytes) -> None:
    for item in mc.decode_meshcop_tlvs(data):
        assert mc.decode_meshcop_tlvs(item.to_bytes()) == (item,), "decode(encode(x)) == x"
        repr(item)


_MESHCOP_TYPES = sorted(mc.MESHCOP_TLV_CLASSES)
_MLE_TYPES = sorted(mle.MLE_TLV_CLASSES)


def t_meshcop_values(data: bytes) -> None:
    if not data:
        return
    tlv = Tlv(_MESHCOP_TYPES[data[0] % len(_MESHCOP_TYPES)], data[1:])
    (item,) = mc.decode_meshcop_tlvs(tlv.to_bytes())
    assert mc.decode_meshcop_tlvs(item.to_bytes()) == (item,)


def t_meshcop_structs(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    which = data[0] % 3
    if which == 0:
        stamp = Timestamp.from_bytes(body)
        assert Timestamp.from_bytes(stamp.to_bytes()) == stamp
    elif which == 1:
        policy = SecurityPolicy.from_bytes(body)
        policy.describe()
        assert SecurityPolicy.from_bytes(policy.to_bytes()) == policy
    else:
        mask = ChannelMask.from_bytes(body)
        mask.channels()
        assert ChannelMask.from_bytes(mask.to_bytes()) == mask


def t_dataset_from_bytes(data: bytes) -> None:
    for cls in (ActiveDataset, PendingDataset, CommissionerDataset):
        try:
            ds: Any = cls.from_bytes(data)
        except ParseError:
            continue
        assert ds.to_bytes() == data, "a dataset re-encodes byte for byte"
        repr(ds)
        if isinstance(ds, ActiveDataset | PendingDataset):
            ds.missing()
            ds.mesh_local_network  # noqa: B018
        if isinstance(ds, PendingDataset):
            try:
                ds.active()
            except (ParseError, InvalidArgument):
                pass


def t_dataset_from_hex(data: bytes) -> None:
    ActiveDataset.from_hex(data.decode("latin-1"))


def t_mle_parse(data: bytes) -> None:
    message = mle.parse_mle(data)
    if isinstance(message, mle.MleMessage):
        message.payload()
        for parse in (mle.parse_discovery_request, mle.parse_discovery_response):
            try:
                parse(message)
            except ParseError:
                pass


def t_mle_decrypt(data: bytes) -> None:
    frame = mle.parse_mle(data)
    if isinstance(frame, mle.SecuredMleFrame):
        frame.decrypt(MLE_KEY, link_local(EXT_A), link_local(EXT_B))


def t_mle_tlvs(data: bytes) -> None:
    mle.decode_mle_tlvs(data)
    if data:
        tlv = Tlv(_MLE_TYPES[data[0] % len(_MLE_TYPES)], data[1:])
        try:
            mle.decode_mle_tlvs(tlv.to_bytes())
        except ParseError:
            pass


def t_coap(data: bytes) -> None:
    msg = TmfMessage.from_bytes(data)
    assert TmfMessage.from_bytes(msg.to_bytes()) == msg, "decode(encode(x)) == x"
    msg.tmf_uri  # noqa: B018
    msg.code_text  # noqa: B018
    msg.tlvs()


def t_cbsb_parse_frame(data: bytes) -> None:
    peek_type(data)
    frame = parse_frame(data)
    assert frame.to_bytes() == data, "whatever parses is canonical"
    repr(frame)


_CBSB_BODIES: tuple[Callable[[bytes], Any], ...] = (
    ResponseBody.from_bytes,
    ConfirmBody.from_bytes,
    AckBody.from_bytes,
    LinkParams.from_bytes,
    Delivery.from_bytes,
    AppReport.from_bytes,
)


def t_cbsb_bodies(data: bytes) -> None:
    if data:
        _CBSB_BODIES[data[0] % len(_CBSB_BODIES)](data[1:])


def t_cbsb_gateway(data: bytes) -> None:
    replay_gateway(data)


def t_cbsb_thing(data: bytes) -> None:
    replay_thing(data)


def t_ecjpake_round_one(data: bytes) -> None:
    _jpake("server", None).read_round_one(data)


def t_ecjpake_round_two_client(data: bytes) -> None:
    side = _jpake("client", "s1")
    side.read_round_two(data)
    side.derive_secret()


def t_ecjpake_round_two_server(data: bytes) -> None:
    side = _jpake("server", "c1")
    side.read_round_two(data)
    side.derive_secret()


def t_ec_point(data: bytes) -> None:
    point = decode_point(data)
    assert encode_point(point) == data


def t_dtls_records(data: bytes) -> None:
    records_, error = parse_datagram_prefix(data)
    assert error is None or isinstance(error, ParseError)
    for record in records_:
        assert DtlsRecord.from_bytes(record.to_bytes()) == record
    parse_datagram(data)


_RECORD_CIPHER = CcmRecordCipher(bytes(range(16)), b"\x01\x02\x03\x04")


def t_dtls_record_decrypt(data: bytes) -> None:
    for record in parse_datagram(data):
        _RECORD_CIPHER.decrypt(record)


_HANDSHAKE_PARSERS: tuple[Callable[[bytes], Any], ...] = (
    ClientHello.from_bytes,
    ServerHello.from_bytes,
    HelloVerifyRequest.from_bytes,
    parse_fragments,
    HandshakeFragment.from_bytes,
    parse_supported_groups,
    parse_ec_point_formats,
)


def t_dtls_handshake(data: bytes) -> None:
    if data:
        _HANDSHAKE_PARSERS[data[0] % len(_HANDSHAKE_PARSERS)](data[1:])


def t_dtls_handshake_reassembler(data: bytes) -> None:
    reasm = HandshakeReassembler(max_message_len=2048, window=4, max_buffered=4096)
    for body in long_records(data):
        try:
            fragments = parse_fragments(body)
        except ParseError:
            continue
        for frag in fragments:
            reasm.add(frag, 0)
            assert reasm.buffered_bytes <= 4096
            while reasm.pop() is not None:
                pass


_COOKIES = CookieJar(rng=seeded(31))


def t_dtls_check_client_hello(data: bytes) -> None:
    check_client_hello(data, DTLS_CLIENT_TRANSPORT, _COOKIES, 0.0)


def t_dtls_server(data: bytes) -> None:
    _check_dtls_endpoint(replay_dtls_server(data))


def t_dtls_client(data: bytes) -> None:
    _check_dtls_endpoint(replay_dtls_client(data))


def t_steering_data(data: bytes) -> None:
    sd = SteeringData.from_bytes(data)
    assert sd.to_bytes() == data
    sd.contains_joiner_id(bytes(8))
    sd.merged(sd)
    sd.permits_all  # noqa: B018


def t_validate_pskd(data: bytes) -> None:
    try:
        validate_pskd(data)
    except InvalidArgument:
        pass
    validate_pskd(data.decode("latin-1"))


def t_validate_passphrase(data: bytes) -> None:
    try:
        validate_passphrase(data)
    except InvalidArgument:
        pass
    validate_passphrase(data.decode("utf-8", "surrogateescape"))


def t_cbsb_open_sealed(data: bytes) -> None:
    cbsb_keys.open_sealed(AEAD_KEY, cbsb_keys.DIR_G2T, 1, data, AEAD_AAD)


_X25519_PRIVATE = bytes(range(32))


def t_x25519(data: bytes) -> None:
    cbsb_keys.x25519_shared(_X25519_PRIVATE, (data + bytes(32))[:32])


_MIC_LENGTHS = (0, 4, 8, 16)


def t_ext_address_hex(data: bytes) -> None:
    ExtAddress.from_hex(data.decode("latin-1"))


def t_key_block(data: bytes) -> None:
    block = KeyBlock.from_bytes(data)
    assert block.to_bytes() == data
    block.kek  # noqa: B018


def t_ccm_star(data: bytes) -> None:
    if len(data) < 2:
        return
    mic_len, encrypts = _MIC_LENGTHS[data[0] & 3], bool(data[0] & 4)
    a_len = min(data[1], len(data) - 2)
    a_data, rest = data[2 : 2 + a_len], data[2 + a_len :]
    if len(rest) < mic_len:
        return
    body, mic = rest[: len(rest) - mic_len], rest[len(rest) - mic_len :]
    ccm_star_decrypt(MAC_KEY, bytes(range(13)), a_data, body, mic, encrypts)


_PCAP_DIR: list[Path] = []


def _remove_pcap_dir() -> None:
    for directory in _PCAP_DIR:
        shutil.rmtree(directory, ignore_errors=True)


def t_read_pcap(data: bytes) -> None:
    if not _PCAP_DIR:
        _PCAP_DIR.append(Path(tempfile.mkdtemp(prefix="fuzz-pcap-")))
        atexit.register(_remove_pcap_dir)
    path = _PCAP_DIR[0] / "input.pcap"
    path.write_bytes(data)
    read_pcap(path)


# --- the whole receive path, as the radio service and its clients will run it -----------------


def _air_datagram(
    src: ExtAddress,
    dst: Address,
    ports: tuple[int, int],
    payload: bytes,
    *,
    key: bytes | None = None,
    key_id_mode: int = 1,
    tag: int = 1,
) -> list[bytes]:
    """PSDUs (no FCS) carrying one UDP datagram between link-local addresses, fragmented and
    MAC-secured (level 5) as a Thread node sends it."""
    dst_ip = link_local(dst) if isinstance(dst, ExtAddress) else ipaddress.IPv6Address("ff02::2")
    packet = Ipv6Packet.udp(link_local(src), dst_ip, ports[0], ports[1], payload)
    security = None
    if key is not None:
        security = AuxSecurityHeader(5, key_id_mode, 0, key_index=1 if key_id_mode else None)
    template = MacFrame.create(
        MacFrameType.DATA, dst=dst, dst_pan=PAN, src=src, src_pan=PAN, security=security
    )
    parts = fragment(compress(packet, src, dst), max_payload=template.payload_capacity(), tag=tag)
    out = []
    for counter, part in enumerate(parts):
        frame = MacFrame.create(
            MacFrameType.DATA,
            seq=counter,
            dst=dst,
            dst_pan=PAN,
            src=src,
            src_pan=PAN,
            payload=part,
            security=security,
        )
        if key is not None:
            frame = secure(frame, key, frame_counter=counter)
        out.append(frame.to_bytes())
    return out


@functools.cache
def air_seeds() -> tuple[bytes, ...]:
    """Record streams ``len(1) | PSDU`` of what a joiner router hears during a join."""
    broadcast = ShortAddress(0xFFFF)
    mle_ports, tmf_ports = (19788, 19788), (61631, 61631)
    messages = mle_messages()
    discovery = _air_datagram(EXT_A, broadcast, mle_ports, messages[0])
    discovery += _air_datagram(EXT_B, EXT_A, mle_ports, messages[2])
    secured_mle = _air_datagram(EXT_A, EXT_B, mle_ports, messages[3])
    c2s = _dtls_side("c2s")
    dtls = [
        psdu
        for i, d in enumerate(c2s[:3])
        for psdu in _air_datagram(EXT_A, EXT_B, (49152, 1000), d, tag=10 + i)
    ]
    tmf = [
        psdu
        for i, payload in enumerate(tmf_messages()[:4])
        for psdu in _air_datagram(EXT_B, EXT_A, tmf_ports, payload, key=MAC_KEY, tag=20 + i)
    ]
    join_ent = _air_datagram(
        EXT_B, EXT_A, tmf_ports, tmf_messages()[2], key=KEK, key_id_mode=0, tag=30
    )
    cbsb = [
        MacFrame.create(
            MacFrameType.DATA,
            seq=i,
            dst=broadcast if dst is None else ExtAddress(dst),
            dst_pan=0xFFFF if dst is None else PAN,
            src=ExtAddress(src),
            src_pan=0xFFFF if dst is None else PAN,
            payload=payload,
        ).to_bytes()
        for i, (_t, src, dst, payload) in enumerate(cbsb_trace())
    ]
    streams = [discovery + secured_mle, dtls, tmf + join_ent, cbsb]
    return tuple(b"".join(bytes((len(p),)) + p for p in stream) for stream in streams)


def _rx_key(frame: MacFrame) -> bytes | None:
    sec = frame.security
    if sec is None:
        return None
    if sec.key_id_mode == 0:
        return KEK
    return MAC_KEY if sec.key_id_mode == 1 and sec.key_index == 1 else None


def _rx_udp(udp: UdpDatagram, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address) -> None:
    if udp.dst_port == 19788:
        message = mle.parse_mle(udp.payload)
        if isinstance(message, mle.SecuredMleFrame):
            message = message.decrypt(MLE_KEY, src, dst)
        for parse in (mle.parse_discovery_request, mle.parse_discovery_response):
            try:
                parse(message)
            except ParseError:
                pass
    elif udp.dst_port == 61631:
        TmfMessage.from_bytes(udp.payload).tlvs()
    elif udp.dst_port == 1000:
        parse_datagram(udp.payload)


def t_receive_path(data: bytes) -> None:
    reasm = Reassembler(timeout=10.0, max_datagrams=4, max_bytes=3000)
    for i, (_head, psdu) in enumerate(records(data, 1)):
        try:
            frame = MacFrame.from_bytes(psdu)
            if frame.security is not None:
                ext_src = None if isinstance(frame.src, ExtAddress) else EXT_A
                frame = unsecure(frame, _rx_key, ext_src=ext_src)
            if not frame.payload or frame.frame_type != MacFrameType.DATA:
                continue
            if classify(frame.payload).value == "nalp":
                parse_frame(frame.payload)
                continue
            lowpan = parse_lowpan_frame(frame.payload)
            src, dst = lowpan.link_addresses(frame.src, frame.dst)
            datagram = reasm.accept(lowpan, src, dst, now=i * 0.1)
            if datagram is None:
                continue
            size = None if lowpan.fragment is None else lowpan.fragment.datagram_size
            packet = decompress(datagram, src, dst, CONTEXTS, datagram_size=size)
            if packet.next_header == 17:
                _rx_udp(packet.udp_datagram(verify=True), packet.src, packet.dst)
        except (ParseError, CryptoError):
            continue
        assert reasm.bytes_reserved <= 3000


# --- seeds per target --------------------------------------------------------------------------


def _mac_seeds() -> list[bytes]:
    return [f.to_bytes() for f in mac_frames()] + [f.to_bytes() for f in secured_frames()]


def _pcap_seed() -> list[bytes]:
    path = Path(tempfile.mkdtemp(prefix="fuzz-seed-")) / "seed.pcap"
    with PcapWriter(path) as writer:
        for i, frame in enumerate(mac_frames()[:4]):
            writer.write(frame.to_bytes(fcs=True), 1_700_000_000 + i)
    data = path.read_bytes()
    path.unlink()
    path.parent.rmdir()
    return [data]


def _first_fragments() -> list[bytes]:
    return [next(body for _, body in records(s, 1)) for s in fragment_seeds()]


def _ies_seeds() -> list[bytes]:
    return [f.header_ies for f in mac_frames() if f.header_ies] + [
        build_payload_ies([PayloadIE(0x5, b"\x01\x02"), PayloadIE(0x1, b"")])
    ]


def _mle_tlv_seeds() -> list[bytes]:
    out = []
    for raw in mle_messages():
        message = mle.parse_mle(raw)
        if isinstance(message, mle.SecuredMleFrame):
            message = message.decrypt(MLE_KEY, link_local(EXT_A), link_local(EXT_B))
        out.append(message.payload()[1:])
    return out


def _typed_value_seeds(
    payloads: Sequence[bytes], types: list[int], decode: Callable[[bytes], Any]
) -> list[bytes]:
    out = []
    for payload in payloads:
        for item in decode(payload):
            tlv = item.to_tlv() if hasattr(item, "to_tlv") else item
            if tlv.type in types:
                out.append(bytes((types.index(tlv.type),)) + tlv.value)
    return out


def _meshcop_value_seeds() -> list[bytes]:
    return _typed_value_seeds(meshcop_payloads(), _MESHCOP_TYPES, mc.decode_meshcop_tlvs)


def _lowpan_header_seeds() -> list[bytes]:
    return [s[1:] for s in lowpan_seeds()] + [MeshHeader(5, SHORT_A, EXT_B).to_bytes()]


def _dataset_hex_seeds() -> list[bytes]:
    spaced = DATASET_HEX[:40].upper() + " \n" + DATASET_HEX[40:]
    return [s.hex().encode() for s in dataset_seeds()] + [spaced.encode()]


def _meshcop_struct_seeds() -> list[bytes]:
    return [
        b"\x00" + Timestamp(5, 3, True).to_bytes(),
        b"\x01" + SecurityPolicy().to_bytes(),
        b"\x01" + SecurityPolicy(flags_length=1).to_bytes(),
        b"\x02" + ChannelMask.from_ot_mask(0x07FFF800).to_bytes(),
    ]


def _cbsb_body_seeds() -> list[bytes]:
    app = AppReport(bytes(range(16)), bytes.fromhex("fd3a1b2c3d4e00010000000000000025"), 5683)
    with_app = Delivery(thread_dataset=DATASET, extra=((ItemType.APP_REPORT, app.to_bytes()),))
    selector = {f: bytes((i,)) for i, f in enumerate(_CBSB_BODIES)}
    return [
        selector[Delivery.from_bytes] + Delivery(thread_dataset=DATASET).to_bytes(),
        selector[Delivery.from_bytes] + with_app.to_bytes(),
        selector[AppReport.from_bytes] + app.to_bytes(),
    ]


def _record_seeds() -> list[bytes]:
    return [d for _, d in dtls_trace()]


def _encrypted_record_seeds() -> list[bytes]:
    out = []
    for seq, text in enumerate((b"", b"x", b"application data" * 4)):
        fragment_ = _RECORD_CIPHER.encrypt(23, 0xFEFD, 1, seq, text)
        out.append(DtlsRecord(23, 0xFEFD, 1, seq, fragment_).to_bytes())
    return out


def _handshake_seeds() -> list[bytes]:
    out = []
    for record in parse_datagram(b"".join(_record_seeds())):
        if record.content_type != 22 or record.epoch != 0:
            continue
        out.append(b"\x03" + record.fragment)
        for frag in parse_fragments(record.fragment):
            selector = {1: 0, 2: 1, 3: 2}.get(frag.msg_type)
            if selector is not None:
                out.append(bytes((selector,)) + frag.fragment)
            out.append(b"\x04" + frag.to_bytes())
    return out


def _handshake_reassembler_seeds() -> list[bytes]:
    bodies = [
        r.fragment
        for r in parse_datagram(b"".join(_record_seeds()))
        if r.content_type == 22 and r.epoch == 0
    ]
    return [long_framed(bodies), long_framed(list(reversed(bodies)))]


def _ccm_seeds() -> list[bytes]:
    out = []
    for sel in range(8):
        mic_len, encrypts = _MIC_LENGTHS[sel & 3], bool(sel & 4)
        a_data, m_data = b"header", b"payload bytes"
        body, mic = ccm_star_encrypt(MAC_KEY, bytes(range(13)), a_data, m_data, mic_len, encrypts)
        out.append(bytes((sel, len(a_data))) + a_data + body + mic)
    return out


def _sealed_seeds() -> list[bytes]:
    return [cbsb_keys.seal(AEAD_KEY, cbsb_keys.DIR_G2T, 1, b"delivery chunk", AEAD_AAD)]


def _steering_seeds() -> list[bytes]:
    return [b"\xff", b"\x00", SteeringData.empty().with_joiner_id(bytes(range(8))).to_bytes()]


# --- the cloud API, LAN notices and CBSB MAC framing ----------------------------------------------

NOTICE_KEY = bytes(range(32))
NOTICE_SID = bytes(range(16))


def t_cbsb_mac(data: bytes) -> None:
    parsed = parse_cbsb_mac(data)
    if parsed is not None:
        src, payload = parsed
        assert payload[:1] == bytes((DISPATCH,)) and (src is None or len(src) == 8)


def _cbsb_mac_seeds() -> list[bytes]:
    frames = cbsb_frames()[:4]
    gw, thing = bytes.fromhex("1ab4300000000001"), bytes.fromhex("1ab4300000000002")
    return [append_fcs(cbsb_mac_frame(f, gw, None, 0xFFFF)) for f in frames] + [
        append_fcs(cbsb_mac_frame(f, thing, gw, 0x1234)) for f in frames
    ]


REPORT_KEY = cbsb_notice.report_key(NOTICE_KEY, NOTICE_SID)


def t_notice(data: bytes) -> None:
    """Both of the app's endpoints: ``/cbsb/v1/notify`` (K_note) and ``/cbsb/v1/report``
    (K_rep, also the thing opening the app's ack). Whatever one key opens, the other does not."""
    opened = 0
    for open_ in (
        lambda: cbsb_notice.open_sealed(NOTICE_KEY, NOTICE_SID, data),
        lambda: cbsb_notice.open_with(REPORT_KEY, NOTICE_SID, data),
    ):
        try:
            open_()
            opened += 1
        except CryptoError:
            pass
    assert opened <= 1, "a datagram opens under both the notice and the report key"
    if not opened:
        raise CryptoError("sealed under neither key")


def _notice_seeds() -> list[bytes]:
    return [
        cbsb_notice.seal(NOTICE_KEY, NOTICE_SID, {"event": "report", "status": "OK"}),
        cbsb_notice.seal(NOTICE_KEY, NOTICE_SID, {"id": "1"}, cbsb_notice.KIND_ACK),
        cbsb_notice.seal_with(REPORT_KEY, NOTICE_SID, {"id": "2"}, cbsb_notice.KIND_REPORT),
        cbsb_notice.seal_with(REPORT_KEY, NOTICE_SID, {"id": "2"}, cbsb_notice.KIND_ACK),
    ]


def t_cloud_body(data: bytes) -> None:
    doc = cloudapi.decode_body(data)
    assert cloudapi.decode_body(cloudapi.encode_body(doc)) == doc


def t_thing_qr(data: bytes) -> None:
    dev_id, code = cloudapi.parse_thing_qr(data.decode("utf-8", "replace"))
    assert len(dev_id) == 8 and cloudapi.normalize_claim_code(code) == code


def _thing_qr_seeds() -> list[bytes]:
    return [cloudapi.thing_qr(bytes(range(8)), "0000000000").encode()]


# --- the registry ---------------------------------------------------------------------------------

P = (ParseError,)
PC = (ParseError, CryptoError)
NOTHING: tuple[type[BaseException], ...] = ()


@dataclass(frozen=True)
class Target:
    """One fuzz target: ``run(data)`` may raise only ``allowed``; ``seeds()`` are valid inputs."""

    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], Sequence[bytes]]
    max_len: int = 512
    entry_points: tuple[str, ...] = ()  # qualified names of the parser functions it reaches


def _t(
    name: str,
    run: Callable[[bytes], object],
    allowed: tuple[type[BaseException], ...],
    seeds: Callable[[], Sequence[bytes]],
    max_len: int,
    *entry_points: str,
) -> Target:
    return Target(name, run, allowed, seeds, max_len, entry_points)


_MAC = "mac802154."
_DTLS_HS = "dtls_handshake."
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        _t(
            "mac802154.from_bytes",
            t_mac_from_bytes,
            P,
            _mac_seeds,
            200,
            _MAC + "MacFrame.from_bytes",
            _MAC + "AuxSecurityHeader.parse",
        ),
        _t(
            "mac802154.from_bytes_fcs",
            t_mac_from_bytes_fcs,
            P,
            lambda: [f.to_bytes(fcs=True) for f in mac_frames()],
            200,
            _MAC + "MacFrame.from_bytes",
        ),
        _t(
            "mac802154.unsecure",
            t_mac_unsecure,
            PC,
            lambda: [f.to_bytes() for f in secured_frames()],
            200,
            _MAC + "unsecure",
            _MAC + "MacFrame.open_payload_length",
        ),
        _t(
            "mac802154.ies",
            t_mac_ies,
            P,
            _ies_seeds,
            128,
            _MAC + "parse_header_ies",
            _MAC + "parse_payload_ies",
        ),
        _t(
            "mac802154.ext_address_hex",
            t_ext_address_hex,
            (InvalidArgument,),
            lambda: [b"1ab4300000000001", b"1a:b4:30:00:00:00:00:01"],
            40,
            _MAC + "ExtAddress.from_hex",
        ),
        _t(
            "ccm_star.decrypt",
            t_ccm_star,
            (CryptoError,),
            _ccm_seeds,
            200,
            "ccm_star.ccm_star_decrypt",
        ),
        _t("lowpan.decompress", t_lowpan_decompress, P, lowpan_seeds, 700, "lowpan.decompress"),
        _t(
            "lowpan.headers",
            t_lowpan_headers,
            P,
            _lowpan_header_seeds,
            700,
            "lowpan.classify",
            "lowpan.MeshHeader.parse",
            "lowpan.header_sizes",
        ),
        _t(
            "fragment.header",
            t_fragment_header,
            P,
            _first_fragments,
            128,
            "fragment.FragmentHeader.parse",
            "fragment.parse_lowpan_frame",
        ),
        _t(
            "fragment.reassembler",
            t_fragment_reassembler,
            NOTHING,
            fragment_seeds,
            2000,
            "fragment.Reassembler.feed",
            "fragment.Reassembler.accept",
        ),
        _t(
            "ipv6.packet",
            t_ipv6,
            P,
            lambda: [p.to_bytes() for p in ipv6_packets()],
            700,
            "ipv6.Ipv6Packet.from_bytes",
        ),
        _t(
            "ipv6.udp",
            t_udp,
            P,
            lambda: [UdpDatagram(1, 2, b"x").to_bytes("fe80::1", "fe80::2")],
            128,
            "ipv6.UdpDatagram.from_bytes",
        ),
        _t(
            "tlv.decode",
            t_tlv,
            P,
            lambda: [*meshcop_payloads(), Tlv(1, bytes(300)).to_bytes()],
            700,
            "tlv.decode_tlvs",
            "tlv.Tlv.from_bytes",
        ),
        _t(
            "meshcop.tlvs",
            t_meshcop_tlvs,
            P,
            meshcop_payloads,
            512,
            "meshcop.decode_meshcop_tlvs",
            "tlv.decode_typed",
        ),
        _t(
            "meshcop.values",
            t_meshcop_values,
            P,
            _meshcop_value_seeds,
            300,
            "meshcop.*Tlv.from_value",
            "tlv.check_uint",
            "tlv.check_bytes",
            "tlv.decode_utf8",
        ),
        _t(
            "meshcop.structs",
            t_meshcop_structs,
            P,
            _meshcop_struct_seeds,
            64,
            "meshcop.Timestamp.from_bytes",
            "meshcop.SecurityPolicy.from_bytes",
            "meshcop.ChannelMask.from_bytes",
        ),
        _t(
            "dataset.from_bytes",
            t_dataset_from_bytes,
            P,
            dataset_seeds,
            300,
            "dataset._TlvRecord.from_bytes",
        ),
        _t(
            "dataset.from_hex",
            t_dataset_from_hex,
            P,
            _dataset_hex_seeds,
            600,
            "dataset._TlvRecord.from_hex",
        ),
        _t(
            "mle.parse",
            t_mle_parse,
            P,
            mle_messages,
            300,
            "mle.parse_mle",
            "mle.AuxSecurityHeader.from_bytes",
            "mle.parse_discovery_request",
            "mle.parse_discovery_response",
        ),
        _t("mle.decrypt", t_mle_decrypt, PC, mle_messages, 300, "mle.SecuredMleFrame.decrypt"),
        _t(
            "mle.tlvs",
            t_mle_tlvs,
            P,
            _mle_tlv_seeds,
            300,
            "mle.decode_mle_tlvs",
            "mle.*Tlv.from_value",
        ),
        _t("coap.tmf", t_coap, P, tmf_messages, 400, "coap.TmfMessage.from_bytes"),
        _t(
            "cbsb.parse_frame",
            t_cbsb_parse_frame,
            P,
            cbsb_frames,
            127,
            "cbsb.parse_frame",
            "cbsb.peek_type",
            *(
                f"cbsb.{c}.from_bytes"
                for c in (
                    "Beacon",
                    "BeaconRequest",
                    "JoinRequest",
                    "JoinResponse",
                    "JoinConfirm",
                    "JoinDone",
                    "DeliveryChunk",
                    "DeliveryAck",
                    "Abort",
                )
            ),
        ),
        _t(
            "cbsb.bodies",
            t_cbsb_bodies,
            P,
            _cbsb_body_seeds,
            300,
            *(
                f"cbsb.{c}.from_bytes"
                for c in (
                    "ResponseBody",
                    "ConfirmBody",
                    "AckBody",
                    "LinkParams",
                    "Delivery",
                    "AppReport",
                )
            ),
        ),
        _t(
            "cbsb.gateway_session",
            t_cbsb_gateway,
            NOTHING,
            lambda: [_cbsb_replay_input(CBSB_THING)],
            1200,
            "cbsb_gateway.GatewaySession.handle_frame",
            "cbsb_session.verify_join_request",
            "cbsb_session.open_ack",
            "cbsb_session.open_confirm",
            "cbsb_session.open_abort",
        ),
        _t("cbsb_mac.parse", t_cbsb_mac, NOTHING, _cbsb_mac_seeds, 127, "cbsb_mac.parse_cbsb_mac"),
        _t(
            "cbsb_notice.open",
            t_notice,
            PC,
            _notice_seeds,
            400,
            "cbsb_notice.open_sealed",
            "cbsb_notice.open_with",
        ),
        _t(
            "cloudapi.body",
            t_cloud_body,
            (ValueError,),
            lambda: [cloudapi.encode_body({"token": "t", "sid": "00" * 16, "wait_s": 5})],
            400,
            "cloudapi.decode_body",
        ),
        _t(
            "cloudapi.thing_qr",
            t_thing_qr,
            (cloudapi.BadClaimCode,),
            _thing_qr_seeds,
            80,
            "cloudapi.parse_thing_qr",
        ),
        _t(
            "cbsb.thing_join",
            t_cbsb_thing,
            NOTHING,
            lambda: [_cbsb_replay_input(CBSB_GW)],
            1200,
            "cbsb_thing.ThingJoin.handle_frame",
            "cbsb_session.verify_beacon_tag",
            "cbsb_session.open_response",
            "cbsb_session.open_chunk",
            "cbsb_session.open_done",
            "cbsb_session.open_abort",
        ),
        _t(
            "cbsb_keys.open_sealed",
            t_cbsb_open_sealed,
            (CryptoError,),
            _sealed_seeds,
            200,
            "cbsb_keys.open_sealed",
        ),
        _t(
            "cbsb_keys.x25519",
            t_x25519,
            (CryptoError,),
            lambda: [cbsb_keys.x25519_keypair(bytes(32)).public],
            40,
            "cbsb_keys.x25519_shared",
        ),
        _t(
            "ecjpake.round_one",
            t_ecjpake_round_one,
            PC,
            lambda: [ecjpake_messages()["c1"]],
            400,
            "ecjpake.EcJpake.read_round_one",
        ),
        _t(
            "ecjpake.round_two_client",
            t_ecjpake_round_two_client,
            PC,
            lambda: [ecjpake_messages()["s2"]],
            300,
            "ecjpake.EcJpake.read_round_two",
        ),
        _t(
            "ecjpake.round_two_server",
            t_ecjpake_round_two_server,
            PC,
            lambda: [ecjpake_messages()["c2"]],
            300,
            "ecjpake.EcJpake.read_round_two",
        ),
        _t(
            "ec.decode_point",
            t_ec_point,
            P,
            lambda: [encode_point(mul_base(7))],
            80,
            "ec.decode_point",
        ),
        _t(
            "dtls_record.parse",
            t_dtls_records,
            P,
            _record_seeds,
            1500,
            "dtls_record.parse_datagram",
            "dtls_record.parse_datagram_prefix",
            "dtls_record.DtlsRecord.from_bytes",
        ),
        _t(
            "dtls_record.decrypt",
            t_dtls_record_decrypt,
            PC,
            _encrypted_record_seeds,
            300,
            "dtls_record.CcmRecordCipher.decrypt",
        ),
        _t(
            "dtls_handshake.parse",
            t_dtls_handshake,
            P,
            _handshake_seeds,
            600,
            _DTLS_HS + "ClientHello.from_bytes",
            _DTLS_HS + "ServerHello.from_bytes",
            _DTLS_HS + "HelloVerifyRequest.from_bytes",
            _DTLS_HS + "parse_fragments",
            _DTLS_HS + "HandshakeFragment.from_bytes",
            _DTLS_HS + "parse_supported_groups",
            _DTLS_HS + "parse_ec_point_formats",
        ),
        _t(
            "dtls_handshake.reassembler",
            t_dtls_handshake_reassembler,
            NOTHING,
            _handshake_reassembler_seeds,
            2000,
            _DTLS_HS + "HandshakeReassembler.add",
        ),
        _t(
            "dtls.check_client_hello",
            t_dtls_check_client_hello,
            NOTHING,
            lambda: _dtls_side("c2s")[:2],
            600,
            "dtls.check_client_hello",
        ),
        _t(
            "dtls.server",
            t_dtls_server,
            NOTHING,
            lambda: [long_framed(_dtls_side("c2s"))],
            2000,
            "dtls._DtlsConnection.receive_datagram",
            "dtls.DtlsServer.receive_datagram",
        ),
        _t(
            "dtls.client",
            t_dtls_client,
            NOTHING,
            lambda: [long_framed(_dtls_side("s2c"))],
            2000,
            "dtls._DtlsConnection.receive_datagram",
            "dtls.DtlsClient.receive_datagram",
        ),
        _t(
            "dtls.key_block",
            t_key_block,
            (InvalidArgument,),
            lambda: [bytes(range(40))],
            60,
            "dtls.KeyBlock.from_bytes",
        ),
        _t(
            "thread_keys.steering_data",
            t_steering_data,
            P,
            _steering_seeds,
            24,
            "thread_keys.SteeringData.from_bytes",
        ),
        _t(
            "thread_keys.validate_pskd",
            t_validate_pskd,
            (InvalidArgument,),
            lambda: [PSKD, b"ABCDEFGHJKLMNPRSTUVWXY0123456789"],
            40,
            "thread_keys.validate_pskd",
        ),
        _t(
            "thread_keys.validate_passphrase",
            t_validate_passphrase,
            (InvalidArgument,),
            lambda: [b"J01NME-passphrase", "p\u00e4ssw\u00f6rd \u20ac".encode()],
            300,
            "thread_keys.validate_passphrase",
        ),
        _t(
            "receive_path",
            t_receive_path,
            NOTHING,
            air_seeds,
            4000,
            "(MAC, CCM*, 6LoWPAN, reassembly, IPHC, UDP, MLE/TMF/DTLS/CBSB dispatch in sequence)",
        ),
        _t(
            "drivers.mac_header",
            t_mac_header,
            (HeaderError,),
            lambda: [*(f.to_bytes(fcs=True) for f in mac_frames()), OT_DISCOVERY_REQUEST],
            160,
            "drivers.mac_header.parse_header",
            "drivers.mac_header.describe",
        ),
        _t(
            "drivers.read_pcap",
            t_read_pcap,
            (PcapError,),
            _pcap_seed,
            600,
            "drivers.pcap.read_pcap",
        ),
        _t(
            "drivers.spinel.hdlc",
            sp.t_spinel_hdlc,
            NOTHING,
            sp.hdlc_seeds,
            1200,
            "drivers.spinel.hdlc.HdlcDecoder.feed",
        ),
        _t(
            "drivers.spinel.frame",
            sp.t_spinel_frame,
            (SpinelParseError,),
            lambda: list(sp.spinel_frames()),
            300,
            "drivers.spinel.codec.decode_frame",
        ),
        _t(
            "drivers.spinel.values",
            sp.t_spinel_values,
            (SpinelParseError,),
            sp.value_seeds,
            300,
            "drivers.spinel.codec.unpack",
        ),
        _t(
            "drivers.spinel.rcp_values",
            sp.t_spinel_rcp_values,
            (SpinelParseError,),
            sp.rcp_value_seeds,
            300,
            "drivers.spinel.rcp.parse_raw_frame",
            "drivers.spinel.rcp.parse_tx_done",
            "drivers.spinel.rcp.parse_tx_request",
            "drivers.spinel.rcp.parse_last_status",
        ),
        _t(
            "drivers.spinel.compat",
            sp.t_spinel_compat,
            (SpinelParseError, RcpIncompatible),
            sp.compat_seeds,
            200,
            "drivers.spinel.rcp.check_protocol_version",
            "drivers.spinel.rcp.check_caps",
            "drivers.spinel.rcp.check_api_versions",
            "drivers.spinel.rcp.check_radio_caps",
        ),
        _t(
            "drivers.spinel.host_receive",
            sp.t_spinel_host_receive,
            NOTHING,
            sp.hdlc_seeds,
            1200,
            "(the RCP backend's receive path: HDLC, Spinel frames, dispatch, raw frames)",
        ),
    )
}
# the Thread network core's targets (gateway/thread/network) live in their own module
TARGETS.update({t.name: Target(*t) for t in NETWORK_TARGETS})
TARGETS.update({t.name: Target(*t) for t in BORDER_TARGETS})  # border routing
TARGETS.update({t.name: Target(*t) for t in SRP_TARGETS})  # the SRP server


# --- the engine -----------------------------------------------------------------------------------

INTERESTING_8 = (
    0x00,
    0x01,
    0x02,
    0x03,
    0x04,
    0x07,
    0x08,
    0x0F,
    0x10,
    0x3C,
    0x40,
    0x41,
    0x7F,
    0x80,
    0xC0,
    0xE0,
    0xFE,
    0xFF,
)
INTERESTING_16 = (0x0000, 0x0001, 0x00FF, 0x0100, 0x7FFF, 0x8000, 0xFEFD, 0xFEFF, 0xFFFE, 0xFFFF)
INTERESTING_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(data: bytes, rng: random.Random, corpus: Sequence[bytes], max_len: int) -> bytes:
    """1..4 stacked random edits of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        n = len(buf)
        op = rng.randrange(17)
        pos = rng.randrange(n) if n else 0
        if op == 0 and n:  # flip one bit
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # random byte
            buf[pos] = rng.randrange(256)
        elif op == 2 and n:  # interesting byte
            buf[pos] = rng.choice(INTERESTING_8)
        elif op == 3 and n:  # small add/sub
            buf[pos] = (buf[pos] + rng.choice((-2, -1, 1, 2, 8, -8))) & 0xFF
        elif op == 4 and n >= 2:  # interesting 16-bit value, either byte order
            pos = rng.randrange(n - 1)
            value = rng.choice(INTERESTING_16)
            buf[pos : pos + 2] = struct.pack(rng.choice((">H", "<H")), value)
        elif op == 5 and n >= 4:  # interesting 32-bit value
            pos = rng.randrange(n - 3)
            buf[pos : pos + 4] = struct.pack(rng.choice((">I", "<I")), rng.choice(INTERESTING_32))
        elif op == 6 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 7 and n:  # delete a range
            del buf[pos : pos + rng.randint(1, max(1, min(16, n - pos)))]
        elif op == 8:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 9:  # insert a repeated byte
            buf[pos:pos] = bytes((rng.choice(INTERESTING_8),)) * rng.randint(1, 32)
        elif op == 10 and n:  # duplicate a range elsewhere
            start = rng.randrange(n)
            chunk = buf[start : start + rng.randint(1, 64)]
            at = rng.randrange(n + 1)
            buf[at:at] = chunk
        elif op == 11 and corpus:  # splice: our head, another input's tail
            other = rng.choice(corpus)
            buf = buf[: rng.randint(0, n)] + bytearray(other[rng.randint(0, len(other)) :])
        elif op == 12 and corpus:  # insert a chunk of another input
            other = rng.choice(corpus)
            if other:
                start = rng.randrange(len(other))
                buf[pos:pos] = other[start : start + rng.randint(1, 64)]
        elif op == 13 and n:  # a length-like byte: what is left after it
            buf[pos] = min(255, max(0, n - pos - 1 + rng.choice((-1, 0, 0, 1))))
        elif op == 14:  # append random bytes
            buf += rng.randbytes(rng.randint(1, 32))
        elif op == 15 and n >= 2:  # swap two bytes
            other_pos = rng.randrange(n)
            buf[pos], buf[other_pos] = buf[other_pos], buf[pos]
        elif n:  # overwrite a range with random bytes
            end = min(n, pos + rng.randint(1, 8))
            buf[pos:end] = rng.randbytes(end - pos)
    return bytes(buf[:max_len])


class Coverage:
    """Line-pair coverage of the project's code, through :func:`sys.settrace` (Python 3.11)."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[2]
        self._roots = (str(root / "gateway") + os.sep, str(root / "drivers") + os.sep)
        self._wanted: dict[CodeType, bool] = {}
        self.edges: set[tuple[CodeType, int, int]] = set()
        self.new = False

    def _global(self, frame: FrameType, event: str, arg: object) -> Any:
        code = frame.f_code
        wanted = self._wanted.get(code)
        if wanted is None:
            wanted = self._wanted[code] = code.co_filename.startswith(self._roots)
        if not wanted:
            return None
        edges = self.edges
        prev = frame.f_lineno

        def local(frame: FrameType, event: str, arg: object) -> Any:
            nonlocal prev
            if event == "line":
                edge = (code, prev, frame.f_lineno)
                if edge not in edges:
                    edges.add(edge)
                    self.new = True
                prev = frame.f_lineno
            return local

        return local

    def run(self, target: Target, data: bytes, timeout: float | None) -> BaseException | None:
        """:func:`check` under the tracer; sets :attr:`new` if the input reached new code."""
        self.new = False
        previous = sys.gettrace()
        sys.settrace(self._global)
        try:
            return check(target, data, timeout)
        finally:
            sys.settrace(previous)


class ExecTimeout(Exception):
    """One execution ran longer than the per-input limit (a possible CPU exhaustion)."""


@dataclass
class Finding:
    target: str
    kind: str  # exception class name
    where: str  # innermost project frame
    message: str
    reproducer: bytes
    count: int = 1

    def describe(self) -> str:
        return (
            f"{self.target}: {self.kind} at {self.where}: {self.message}\n"
            f"  reproducer ({len(self.reproducer)} bytes): {self.reproducer.hex()}"
        )


@dataclass
class Result:
    target: str
    executions: int = 0
    seconds: float = 0.0
    corpus: int = 0
    edges: int = 0
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    slowest: float = 0.0  # seconds of the slowest execution (wall clock, noisy)
    slowest_input: bytes = b""

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    root = str(Path(__file__).resolve().parents[2]) + os.sep
    ours = [f for f in frames if f.filename.startswith(root)] or frames
    if not ours:
        return "?"
    f = ours[-1]
    return f"{f.filename.removeprefix(root)}:{f.lineno} ({f.name})"


def check(target: Target, data: bytes, timeout: float | None = None) -> BaseException | None:
    """Run ``target`` on ``data``; the unexpected exception, or None."""
    armed = timeout is not None and hasattr(signal, "setitimer")
    if armed:
        signal.setitimer(signal.ITIMER_REAL, timeout)  # type: ignore[arg-type]
    try:
        target.run(data)
    except target.allowed:
        return None
    except Exception as exc:  # noqa: BLE001 - this is what we are looking for
        return exc
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def retime(target: Target, data: bytes, timeout: float | None, runs: int = 3) -> float:
    """The best of ``runs`` timed executions (without tracing): the input's own cost, not a
    scheduler hiccup's or the garbage collector's."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        check(target, data, timeout)
        best = min(best, time.perf_counter() - t0)
    return best


def _key(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, _where(exc)


def minimize(target: Target, data: bytes, key: tuple[str, str], budget: float = 2.0) -> bytes:
    """Shrink ``data`` while the same exception at the same place still happens."""
    deadline = time.monotonic() + budget
    best = data
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        progressed = False
        pos = 0
        while pos < len(best) and time.monotonic() < deadline:
            candidate = best[:pos] + best[pos + chunk :]
            exc = check(target, candidate)
            if exc is not None and _key(exc) == key:
                best = candidate
                progressed = True
            else:
                pos += chunk
        if not progressed:
            chunk //= 2
    return best


def fuzz(
    target: Target,
    *,
    seconds: float | None = None,
    max_execs: int | None = None,
    seed: int = 0,
    guided: bool = True,
    timeout: float | None = None,
    random_share: float = 0.1,
    trace_share: float = 0.1,
    shrink: bool = True,
) -> Result:
    """Mutation and random fuzzing of one target until ``seconds`` or ``max_execs`` runs out.

    With ``guided``, a share ``trace_share`` of the executions (and every seed) runs under the
    coverage tracer, which costs 5 to 20 times an untraced run; inputs that reach new code join
    the corpus. The rest run at full speed."""
    if seconds is None and max_execs is None:
        raise ValueError("give seconds or max_execs")
    rng = random.Random(seed)
    result = Result(target.name)
    seeds = [bytes(s) for s in target.seeds()]
    corpus: list[bytes] = list(seeds) or [b""]
    coverage = Coverage() if guided else None
    start = time.monotonic()
    deadline = start + seconds if seconds is not None else float("inf")
    old_handler: Any = None
    saved_timer = 0.0
    if timeout is not None and hasattr(signal, "SIGALRM"):

        def on_alarm(signum: int, frame: object) -> None:
            raise ExecTimeout(f"one input ran for more than {timeout} s")

        # Someone else's alarm (pytest-timeout's, for one) is put back when we are done.
        saved_timer = signal.getitimer(signal.ITIMER_REAL)[0]
        old_handler = signal.signal(signal.SIGALRM, on_alarm)
    try:
        queue = list(corpus)  # every seed runs once, as is, whatever the time budget
        while True:
            if max_execs is not None and result.executions >= max_execs:
                break
            if not queue and result.executions % 16 == 0 and time.monotonic() >= deadline:
                break
            from_queue = bool(queue)
            if queue:
                data = queue.pop()
            elif rng.random() < random_share:
                data = rng.randbytes(rng.randrange(target.max_len + 1))
            else:
                data = mutate(rng.choice(corpus), rng, corpus, target.max_len)
            t0 = time.perf_counter()
            exc: BaseException | None
            traced = coverage is not None and (from_queue or rng.random() < trace_share)
            if traced:
                assert coverage is not None
                exc = coverage.run(target, data, timeout)
            else:
                exc = check(target, data, timeout)
            elapsed = time.perf_counter() - t0
            if elapsed > result.slowest:
                result.slowest, result.slowest_input = elapsed, data
            result.executions += 1
            if exc is not None:
                key = _key(exc)
                if key in result.findings:
                    result.findings[key].count += 1
                else:
                    small = minimize(target, data, key) if shrink else data
                    result.findings[key] = Finding(
                        target.name, key[0], key[1], str(exc)[:200], small
                    )
            elif traced and coverage is not None and coverage.new:
                if len(corpus) < 4096:
                    corpus.append(data)
                else:
                    corpus[rng.randrange(len(seeds), len(corpus))] = data
        result.seconds = time.monotonic() - start
        result.slowest = retime(target, result.slowest_input, timeout)
    finally:
        if old_handler is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if saved_timer > 0:
                left = saved_timer - (time.monotonic() - start)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
    result.corpus = len(corpus)
    result.edges = len(coverage.edges) if coverage is not None else 0
    return result


# --- CLI ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.fuzz_parsers",
        description="Mutation and random fuzzing of every parser (see docs/fuzzing.md).",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target (60)")
    parser.add_argument("--target", action="append", help="only this target (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--no-guidance", action="store_true", help="no coverage feedback")
    parser.add_argument(
        "--trace-share", type=float, default=0.1, help="share of traced executions (0.1)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="per-input limit in s (5)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--repro", metavar="HEX", help="run one input on --target, show the trace")
    parser.add_argument(
        "--slow-ms", type=float, default=50.0, help="show inputs slower than this (50)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for t in TARGETS.values():
            allowed = ", ".join(e.__name__ for e in t.allowed) or "nothing"
            print(f"{t.name:34} may raise {allowed:24} {', '.join(t.entry_points)}")
        return 0
    names = args.target or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)} (see --list)")
    if args.repro is not None:
        if len(names) != 1:
            parser.error("--repro needs exactly one --target")
        exc = check(TARGETS[names[0]], bytes.fromhex(args.repro))
        if exc is None:
            print("no unexpected exception")
            return 0
        traceback.print_exception(exc)
        return 1
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(
        f"seed {seed}, {args.seconds:g} s per target, guidance {'off' if args.no_guidance else 'on'}"
    )
    print(
        f"{'target':34} {'execs':>9} {'execs/s':>9} {'corpus':>7} {'edges':>6} {'slowest':>8}  findings"
    )
    findings: list[Finding] = []
    slow: list[str] = []
    total_execs, total_time = 0, 0.0
    for i, name in enumerate(names):
        result = fuzz(
            TARGETS[name],
            seconds=args.seconds,
            seed=seed + i,
            guided=not args.no_guidance,
            timeout=args.timeout,
            trace_share=args.trace_share,
        )
        if result.slowest * 1000 > args.slow_ms:
            slow.append(f"{name}: {result.slowest * 1000:.0f} ms for {result.slowest_input.hex()}")
        total_execs += result.executions
        total_time += result.seconds
        findings += result.findings.values()
        print(
            f"{name:34} {result.executions:9d} {result.rate:9.0f} {result.corpus:7d} "
            f"{result.edges:6d} {result.slowest * 1000:6.1f}ms  {len(result.findings)}",
            flush=True,
        )
    print(f"{'total':34} {total_execs:9d} {total_execs / max(total_time, 1e-9):9.0f}")
    for line in slow:
        print(f"\nSLOW {line}")
    for finding in findings:
        print(f"\nFINDING ({finding.count}x) {finding.describe()}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
