"""MLE Discovery as joiners and joiner routers use it (sans-IO; fact sheet §4.3 and §7).

* :func:`discovery_request_packet` -- the joiner's request: UDP 19788 from its link-local address
  to ``ff02::2``, hop limit 255, MLE suite 255, a Discovery TLV with the joiner flag. It goes in
  an unsecured frame to PAN/short ``0xffff`` from the joiner's random PAN and extended address.
* :func:`answer_discovery` -- the joiner router's decision: no answer while joining is not
  permitted (for joiner-flagged requests) or when the request names our own Extended PAN ID;
  otherwise a unicast Discovery Response to the requester (destination PAN = the request's
  source PAN, source PAN = ours) after a random delay of at most 250 ms, carrying Extended PAN
  ID, Network Name, Steering Data and the Joiner UDP Port in OpenThread's order.
* :func:`parse_discovery_response_datagram` and :func:`candidate_priority` -- what a joiner
  keeps: responses whose steering data admits its Joiner ID and that carry a non-zero joiner
  port, ranked like OpenThread (RSSI + 256 for a specific match, + 128 for permit-all).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final

from gateway.crypto.thread_keys import SteeringData
from gateway.errors import InvalidArgument, ParseError
from gateway.thread.link import RxDatagram, link_local
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import ExtAddress
from gateway.wire.mle import (
    MLE_HOP_LIMIT,
    MLE_PORT,
    THREAD_VERSION_1_4,
    MleCommand,
    MleMessage,
    discovery_request,
    discovery_response,
    parse_discovery_request,
    parse_discovery_response,
    parse_mle,
)

__all__ = [
    "ALL_ROUTERS",
    "MAX_RESPONSE_DELAY",
    "DiscoveryCandidate",
    "DiscoveryReply",
    "NetworkInfo",
    "answer_discovery",
    "candidate_priority",
    "discovery_request_packet",
    "parse_discovery_response_datagram",
]

ALL_ROUTERS: Final = IPv6Address("ff02::2")
MAX_RESPONSE_DELAY: Final = 0.25  # kDiscoveryMaxJitter


def discovery_request_packet(
    joiner: ExtAddress, *, version: int = THREAD_VERSION_1_4, joiner_flag: bool = True
) -> Ipv6Packet:
    msg = discovery_request(version=version, joiner=joiner_flag)
    return Ipv6Packet.udp(
        link_local(joiner),
        ALL_ROUTERS,
        MLE_PORT,
        MLE_PORT,
        msg.to_unsecured_bytes(),
        hop_limit=MLE_HOP_LIMIT,
    )


@dataclass(frozen=True)
class NetworkInfo:
    """What a joiner router advertises about its network."""

    ext_pan_id: bytes
    network_name: str
    pan_id: int
    ext_addr: ExtAddress  # the responder's own extended address
    version: int = THREAD_VERSION_1_4
    native_commissioner: bool = False
    commissioner_udp_port: int | None = None


@dataclass(frozen=True)
class DiscoveryReply:
    """Send ``packet`` to ``dst`` on PAN ``dst_pan`` (from our PAN) after ``delay`` seconds."""

    delay: float
    packet: Ipv6Packet
    dst: ExtAddress
    dst_pan: int


def answer_discovery(
    dg: RxDatagram,
    net: NetworkInfo,
    *,
    joining_allowed: bool,
    steering_data: bytes | None,
    joiner_udp_port: int,
    rng: random.Random | secrets.SystemRandom | None = None,
) -> DiscoveryReply | None:
    """The Discovery Response to a received datagram, or ``None`` (not a valid unsecured
    Discovery Request, or one we must not answer)."""
    udp = dg.udp()
    src = dg.src_ext
    if udp is None or src is None or udp.dst_port != MLE_PORT or udp.src_port != MLE_PORT:
        return None
    if dg.packet.hop_limit != MLE_HOP_LIMIT or dg.src_pan is None:
        return None
    try:
        msg = parse_mle(udp.payload)
        if not isinstance(msg, MleMessage) or msg.command != MleCommand.DISCOVERY_REQUEST:
            return None
        req = parse_discovery_request(msg)
    except ParseError:
        return None
    if req.joiner and not joining_allowed:
        return None
    if req.ext_pan_id is not None and req.ext_pan_id == net.ext_pan_id:
        return None
    try:
        rsp = discovery_response(
            ext_pan_id=net.ext_pan_id,
            network_name=net.network_name,
            joiner_udp_port=joiner_udp_port,
            steering_data=steering_data,
            version=net.version,
            native_commissioner=net.native_commissioner,
            commissioner_udp_port=net.commissioner_udp_port,
        )
    except InvalidArgument:
        return None
    packet = Ipv6Packet.udp(
        link_local(net.ext_addr),
        dg.packet.src,
        MLE_PORT,
        MLE_PORT,
        rsp.to_unsecured_bytes(),
        hop_limit=MLE_HOP_LIMIT,
    )
    r = rng if rng is not None else secrets.SystemRandom()
    return DiscoveryReply(r.uniform(0.0, MAX_RESPONSE_DELAY), packet, src, dg.src_pan)


@dataclass(frozen=True)
class DiscoveryCandidate:
    """A joiner router that answered and admits this joiner."""

    ext_addr: ExtAddress
    pan_id: int
    channel: int
    rssi: int
    ext_pan_id: bytes
    network_name: str
    steering_data: bytes
    joiner_udp_port: int
    version: int
    native_commissioner: bool
    priority: int


def candidate_priority(rssi: int, steering: SteeringData) -> int:
    """OpenThread's ranking: RSSI clamped to -127..-1, plus 128 for permit-all steering data,
    plus 256 for a filter that names this joiner."""
    base = max(-127, min(-1, rssi))
    return base + (128 if steering.permits_all else 256)


def parse_discovery_response_datagram(
    dg: RxDatagram, joiner_id: bytes
) -> DiscoveryCandidate | None:
    """A candidate from a Discovery Response addressed to us, or ``None`` when it is not one or
    does not admit ``joiner_id`` (bloom filter) or lacks a joiner UDP port."""
    udp = dg.udp()
    src = dg.src_ext
    if udp is None or src is None or udp.dst_port != MLE_PORT or dg.src_pan is None:
        return None
    try:
        msg = parse_mle(udp.payload)
        if not isinstance(msg, MleMessage) or msg.command != MleCommand.DISCOVERY_RESPONSE:
            return None
        info = parse_discovery_response(msg)
        if info.steering_data is None or not info.joiner_udp_port:
            return None
        steering = SteeringData.from_bytes(info.steering_data)
        if not steering.contains_joiner_id(joiner_id):
            return None
    except (ParseError, InvalidArgument):
        return None
    return DiscoveryCandidate(
        ext_addr=src,
        pan_id=dg.src_pan,
        channel=dg.channel,
        rssi=dg.rssi,
        ext_pan_id=info.ext_pan_id,
        network_name=info.network_name,
        steering_data=info.steering_data,
        joiner_udp_port=info.joiner_udp_port,
        version=info.version,
        native_commissioner=info.native_commissioner,
        priority=candidate_priority(dg.rssi, steering),
    )
