"""The Joiner Router (sans-IO): relays joiner DTLS to the commissioner and entrusts joiners.

Fact sheet §4.4-§4.5 (OpenThread ``src/core/meshcop/joiner_router.cpp``):

* every datagram a joiner sends to the joiner UDP port becomes a RLY_RX notification for the
  commissioner: Joiner UDP Port (the joiner's source port), Joiner IID (its link-local IID),
  Joiner Router Locator (our RLOC16) and the DTLS records in an extended-form Joiner DTLS
  Encapsulation TLV -- :meth:`JoinerRouter.relay_rx`;
* a RLY_TX from the commissioner is unwrapped into a plain UDP datagram from our joiner port to
  ``[fe80::<Joiner IID>]:<Joiner UDP Port>``, sent without link security; when it carries a
  Joiner Router KEK, a JOIN_ENT is scheduled 50 ms later -- :meth:`JoinerRouter.relay_tx`;
* JOIN_ENT is a confirmable POST ``c/je`` from our link-local address to the joiner's, TMF port
  61631, with the active dataset's Network Key, Mesh-Local Prefix, Extended PAN ID, Network Name,
  Active Timestamp, Channel Mask, PSKc, Security Policy and the Network Key Sequence, to be sent
  MAC-secured with the KEK (level 5, key id mode 0) -- :meth:`JoinerRouter.poll`;
* the joiner answers with an empty 2.04 ACK, also KEK-secured:
  :meth:`JoinerRouter.entrust_response` turns it into a :class:`JoinerEntrusted` event.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final

from gateway.errors import InvalidArgument, ParseError
from gateway.thread.coap import CoapEndpoint
from gateway.thread.link import LinkSecurity, RxDatagram, link_local
from gateway.wire.coap import TMF_PORT, CoapCode, TmfMessage, TmfUri
from gateway.wire.dataset import ActiveDataset
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import ExtAddress
from gateway.wire.meshcop import (
    ActiveTimestampTlv,
    ChannelMaskTlv,
    ExtendedPanIdTlv,
    JoinerDtlsEncapsulationTlv,
    JoinerIidTlv,
    JoinerRouterKekTlv,
    JoinerRouterLocatorTlv,
    JoinerUdpPortTlv,
    MeshcopTlv,
    MeshLocalPrefixTlv,
    NetworkKeySequenceTlv,
    NetworkKeyTlv,
    NetworkNameTlv,
    PskcTlv,
    SecurityPolicyTlv,
)
from gateway.wire.tlv import Tlv, first_of

__all__ = [
    "ENTRUST_DELAY",
    "EntrustFailed",
    "JoinerEntrusted",
    "JoinerRouter",
    "SendToJoiner",
    "join_ent_tlvs",
]

ENTRUST_DELAY: Final = 0.05  # kJoinerEntrustTxDelay
MAX_PENDING_ENTRUSTS: Final = 32
ENTRUST_LIFETIME: Final = 20.0


@dataclass(frozen=True)
class SendToJoiner:
    """Send ``packet`` to the joiner ``dst``; with :attr:`LinkSecurity.KEK`, secure it with
    ``kek`` (key id mode 0)."""

    packet: Ipv6Packet
    dst: ExtAddress
    security: LinkSecurity = LinkSecurity.NONE
    kek: bytes | None = field(default=None, repr=False)
    what: str = "relay"


@dataclass(frozen=True)
class JoinerEntrusted:
    """The joiner acknowledged JOIN_ENT: it now holds the network credentials."""

    joiner: ExtAddress
    iid: bytes


@dataclass(frozen=True)
class EntrustFailed:
    joiner: ExtAddress
    iid: bytes
    reason: str


@dataclass
class _Entrust:
    iid: bytes
    kek: bytes = field(repr=False)
    due: float
    created: float
    message: TmfMessage | None = None


def join_ent_tlvs(ds: ActiveDataset, key_sequence: int) -> list[MeshcopTlv | Tlv]:
    """The JOIN_ENT payload (OpenThread ``PrepareJoinerEntrustMessage`` order)."""
    missing = [
        name
        for name in (
            "network_key",
            "mesh_local_prefix",
            "ext_pan_id",
            "network_name",
            "active_timestamp",
            "channel_mask",
            "pskc",
            "security_policy",
        )
        if getattr(ds, name) is None
    ]
    if missing:
        raise InvalidArgument(f"the active dataset lacks {', '.join(missing)}")
    assert ds.network_key is not None and ds.mesh_local_prefix is not None
    assert ds.ext_pan_id is not None and ds.network_name is not None
    assert ds.active_timestamp is not None and ds.channel_mask is not None
    assert ds.pskc is not None and ds.security_policy is not None
    return [
        NetworkKeyTlv(ds.network_key),
        MeshLocalPrefixTlv(ds.mesh_local_prefix),
        ExtendedPanIdTlv(ds.ext_pan_id),
        NetworkNameTlv(ds.network_name),
        ActiveTimestampTlv(ds.active_timestamp),
        ChannelMaskTlv(ds.channel_mask),
        PskcTlv(ds.pskc),
        SecurityPolicyTlv(ds.security_policy),
        NetworkKeySequenceTlv(key_sequence),
    ]


@dataclass
class JoinerRouter:
    ext_addr: ExtAddress
    rloc16: int
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    entrust_delay: float = ENTRUST_DELAY
    key_sequence: int = 0
    relayed_rx: int = 0
    relayed_tx: int = 0
    entrusted: int = 0
    dropped_relay_tx: int = 0
    _entrusts: dict[bytes, _Entrust] = field(default_factory=dict)
    _coap: CoapEndpoint = field(init=False)

    def __post_init__(self) -> None:
        # OpenThread retransmits JOIN_ENT like any CoAP CON; the joiner answers at once or has
        # already changed its address, so two retries are plenty.
        self._coap = CoapEndpoint(rng=self.rng, max_retransmit=2)

    # -- joiner -> commissioner --------------------------------------------------------------

    def relay_rx(self, dg: RxDatagram, joiner_udp_port: int) -> list[MeshcopTlv | Tlv] | None:
        """RLY_RX TLVs for a joiner datagram (unsecured, to our joiner port), else ``None``."""
        udp = dg.udp()
        src = dg.src_ext
        if udp is None or src is None or udp.dst_port != joiner_udp_port:
            return None
        if dg.security is not LinkSecurity.NONE or not dg.packet.src.is_link_local:
            return None
        iid = dg.packet.src.packed[8:]
        if iid != src.iid():
            return None  # a joiner's link-local address is derived from its MAC address
        self.relayed_rx += 1
        return [
            JoinerUdpPortTlv(udp.src_port),
            JoinerIidTlv(iid),
            JoinerRouterLocatorTlv(self.rloc16),
            JoinerDtlsEncapsulationTlv(udp.payload),
        ]

    # -- commissioner -> joiner --------------------------------------------------------------

    def relay_tx(
        self, tlvs: Sequence[MeshcopTlv | Tlv], joiner_udp_port: int,
        now: float,
    ) -> list[SendToJoiner]:  # fmt: skip
        """Unwrap a RLY_TX; schedules JOIN_ENT when it carries a KEK."""
        port = first_of(tlvs, JoinerUdpPortTlv)
        iid = first_of(tlvs, JoinerIidTlv)
        enc = first_of(tlvs, JoinerDtlsEncapsulationTlv)
        kek = first_of(tlvs, JoinerRouterKekTlv)
        if port is None or iid is None or enc is None:
            self.dropped_relay_tx += 1
            return []
        dst_ip = IPv6Address(b"\xfe\x80" + bytes(6) + iid.value)
        joiner = ExtAddress.from_iid(iid.value)
        try:
            packet = Ipv6Packet.udp(
                link_local(self.ext_addr), dst_ip, joiner_udp_port, port.value, enc.value
            )
        except InvalidArgument:
            self.dropped_relay_tx += 1
            return []
        self.relayed_tx += 1
        if kek is not None:
            if len(self._entrusts) >= MAX_PENDING_ENTRUSTS and iid.value not in self._entrusts:
                oldest = min(self._entrusts.values(), key=lambda e: e.created)
                self._drop(oldest.iid)
            self._entrusts[iid.value] = _Entrust(
                iid.value, kek.value, now + self.entrust_delay, now
            )
        return [SendToJoiner(packet, joiner, what="relay")]

    def _drop(self, iid: bytes) -> None:
        e = self._entrusts.pop(iid, None)
        if e is not None:
            self._coap.cancel(e)

    def kek_for(self, joiner: ExtAddress) -> bytes | None:
        """The KEK of a joiner being entrusted (to check its KEK-secured answer)."""
        e = self._entrusts.get(joiner.iid())
        return e.kek if e is not None else None

    def next_timeout(self) -> float | None:
        times = [e.due for e in self._entrusts.values() if e.message is None]
        t = self._coap.next_timeout()
        if t is not None:
            times.append(t)
        times += [e.created + ENTRUST_LIFETIME for e in self._entrusts.values()]
        return min(times, default=None)

    def poll(
        self, now: float, dataset: ActiveDataset
    ) -> tuple[list[SendToJoiner], list[EntrustFailed]]:
        """JOIN_ENT messages that are due (new or retransmitted), and entrusts given up."""
        out: list[SendToJoiner] = []
        failed: list[EntrustFailed] = []
        for e in list(self._entrusts.values()):
            if e.message is None and now >= e.due:
                try:
                    tlvs = join_ent_tlvs(dataset, self.key_sequence)
                except InvalidArgument as exc:
                    self._drop(e.iid)
                    failed.append(EntrustFailed(ExtAddress.from_iid(e.iid), e.iid, exc.message))
                    continue
                e.message = self._coap.request(TmfUri.JOIN_ENT, tlvs, now=now, context=e)
                out.append(self._entrust_packet(e, e.message))
            elif now >= e.created + ENTRUST_LIFETIME:
                self._drop(e.iid)
        resend, gone = self._coap.poll(now)
        for msg in resend:
            e2 = next((e for e in self._entrusts.values() if e.message is msg), None)
            if e2 is not None:
                out.append(self._entrust_packet(e2, msg))
        for p in gone:
            ent = p.context
            if isinstance(ent, _Entrust) and self._entrusts.get(ent.iid) is ent:
                del self._entrusts[ent.iid]
                failed.append(
                    EntrustFailed(ExtAddress.from_iid(ent.iid), ent.iid, "no JOIN_ENT response")
                )
        return out, failed

    def _entrust_packet(self, e: _Entrust, msg: TmfMessage) -> SendToJoiner:
        dst_ip = IPv6Address(b"\xfe\x80" + bytes(6) + e.iid)
        packet = Ipv6Packet.udp(
            link_local(self.ext_addr), dst_ip, TMF_PORT, TMF_PORT, msg.to_bytes()
        )
        return SendToJoiner(
            packet, ExtAddress.from_iid(e.iid), LinkSecurity.KEK, e.kek, what="join_ent"
        )

    def entrust_response(self, dg: RxDatagram, now: float) -> JoinerEntrusted | None:
        """A KEK-secured datagram from a joiner: the JOIN_ENT response, if it is one."""
        udp = dg.udp()
        src = dg.src_ext
        if udp is None or src is None or dg.security is not LinkSecurity.KEK:
            return None
        if udp.dst_port != TMF_PORT:
            return None
        try:
            msg = TmfMessage.from_bytes(udp.payload)
        except ParseError:
            return None
        inc = self._coap.receive(msg, now)
        if inc.kind != "response" or not isinstance(inc.context, _Entrust):
            return None
        ent = inc.context
        self._entrusts.pop(ent.iid, None)
        if msg.code != CoapCode.CHANGED:
            return None
        self.entrusted += 1
        return JoinerEntrusted(src, ent.iid)

    def stats(self) -> dict[str, int]:
        return {
            "relayed_rx": self.relayed_rx,
            "relayed_tx": self.relayed_tx,
            "entrusted": self.entrusted,
            "pending_entrusts": len(self._entrusts),
            "dropped_relay_tx": self.dropped_relay_tx,
        }
