"""The Thread joiner (sans-IO): discovery scan, DTLS with the commissioner through a joiner
router, JOIN_FIN, JOIN_ENT, and the credentials it ends up holding.

Fact sheet §4.3-§4.5 (OpenThread ``src/core/meshcop/joiner.cpp``):

1. **Discover**: on each channel (11-26 by default), with a random extended address and a
   random PAN ID, send one MLE Discovery Request with the joiner flag and listen
   ``scan_dwell`` seconds (300 ms). Keep the responses whose steering data admits our Joiner ID
   and that name a joiner UDP port; rank them like OpenThread; keep the best two.
2. **Connect**: take the Joiner ID as extended address, the candidate's PAN and channel, and
   open DTLS (EC-JPAKE with the PSKd) from UDP port 1000 to ``[fe80::<router IID>]:<joiner
   port>``, unsecured at the MAC layer. A failed candidate makes way for the next one.
3. **JOIN_FIN**: once connected, POST ``c/jf`` with State Accept and the vendor TLVs; the KEK
   is derived from the session (SHA-256 of the key block).
4. **Entrust**: after JOIN_FIN.rsp, close DTLS and wait for JOIN_ENT (``c/je``), MAC-secured
   with the KEK at level 5 / key id mode 0; answer 2.04 under the KEK as well. The credentials
   are the network key plus the dataset TLVs of JOIN_ENT, the channel and PAN of the router.

The owner drives it with :meth:`Joiner.start`, :meth:`Joiner.receive_frame` (every received
PSDU), :meth:`Joiner.poll` at :meth:`Joiner.next_timeout`, and performs the
:class:`Tune` / :class:`Transmit` actions from :meth:`Joiner.actions` in order.
"""

from __future__ import annotations

import enum
import random
import secrets
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final

from cryptography.hazmat.primitives import hashes

from gateway.crypto.dtls import (
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    DtlsAuthenticationError,
    DtlsClient,
    DtlsConfig,
    DtlsError,
    HandshakeComplete,
)
from gateway.crypto.thread_keys import joiner_id as compute_joiner_id
from gateway.crypto.thread_keys import validate_pskd
from gateway.errors import CryptoError, InvalidArgument, ParseError
from gateway.thread.coap import CoapEndpoint
from gateway.thread.commissioning.discovery import (
    DiscoveryCandidate,
    discovery_request_packet,
    parse_discovery_response_datagram,
)
from gateway.thread.errors import (
    CommissioningError,
    JoinerNotFound,
    JoinerSecurityFailure,
    JoinerTimeout,
)
from gateway.thread.link import (
    LinkReceiver,
    LinkSecurity,
    RxDatagram,
    TagAllocator,
    TxFrame,
    classify_security,
    encode_datagram,
    link_local,
    secure_tx_frame,
    unsecure_frame,
)
from gateway.wire.coap import TMF_PORT, CoapCode, MessageType, TmfMessage, TmfUri
from gateway.wire.dataset import ActiveDataset
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import BROADCAST, ExtAddress, MacFrame
from gateway.wire.meshcop import (
    ActiveTimestampTlv,
    ChannelMaskTlv,
    ExtendedPanIdTlv,
    MeshcopTlv,
    MeshLocalPrefixTlv,
    NetworkKeySequenceTlv,
    NetworkKeyTlv,
    NetworkNameTlv,
    ProvisioningUrlTlv,
    PskcTlv,
    SecurityPolicyTlv,
    State,
    StateTlv,
    VendorModelTlv,
    VendorNameTlv,
    VendorStackVersionTlv,
    VendorSwVersionTlv,
)
from gateway.wire.tlv import Tlv, first_of

__all__ = [
    "JOINER_UDP_PORT",
    "Joiner",
    "JoinerCredentials",
    "JoinerState",
    "Transmit",
    "Tune",
    "VendorInfo",
]

JOINER_UDP_PORT: Final = 1000
SCAN_DWELL: Final = 0.3  # OPENTHREAD_CONFIG_MAC_SCAN_DURATION
MAX_CANDIDATES: Final = 2  # OPENTHREAD_CONFIG_JOINER_MAX_CANDIDATES
RESPONSE_TIMEOUT: Final = 4.0  # JOIN_FIN.rsp and JOIN_ENT (OpenThread's joiner timer)
# RFC 6347 §4.2.4.1 suggests a 1 s initial retransmission timer; OpenThread uses 8 s. A lost
# fragment of a DTLS flight costs a whole retransmission, so the reference joiner retries after
# 2 s (doubling up to 60 s): a busy channel recovers in seconds instead of 8-24 s.
JOINER_DTLS: Final = DtlsConfig(retransmit_initial=2.0, retransmit_max=60.0)
CONNECT_TIMEOUT: Final = 30.0  # a candidate's handshake: one lost flight costs 8 + 16 s


class JoinerState(enum.Enum):
    IDLE = "idle"
    DISCOVER = "discover"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ENTRUST = "entrust"
    JOINED = "joined"
    FAILED = "failed"


@dataclass(frozen=True)
class Tune:
    """Put the radio on ``channel`` with these address filter settings."""

    channel: int
    pan_id: int
    ext_addr: ExtAddress


@dataclass(frozen=True)
class Transmit:
    """Send this PSDU (without FCS): a MAC frame, already secured when it must be."""

    psdu: bytes
    what: str = ""


JoinerAction = Tune | Transmit


@dataclass(frozen=True)
class VendorInfo:
    name: str = "Gateway Reference Thing"
    model: str = "Emulated AT86RF233"
    sw_version: str = "0.1.0"
    stack_oui: int = 0x000000
    provisioning_url: str | None = None


def _fingerprint(secret: bytes) -> str:
    """4 bytes of SHA-256: enough to compare two copies of a key, useless to recover it."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(secret)
    return digest.finalize()[:4].hex()


@dataclass(frozen=True)
class JoinerCredentials:
    """What a joined device holds: the network key and the dataset JOIN_ENT carried."""

    dataset: ActiveDataset
    key_sequence: int
    router: ExtAddress

    @property
    def network_key(self) -> bytes:
        assert self.dataset.network_key is not None
        return self.dataset.network_key

    def redacted(self) -> dict[str, object]:
        ds = self.dataset
        key = ds.network_key or b""
        return {
            "network_name": ds.network_name,
            "channel": ds.channel,
            "pan_id": f"0x{ds.pan_id:04x}" if ds.pan_id is not None else None,
            "ext_pan_id": ds.ext_pan_id.hex() if ds.ext_pan_id else None,
            "mesh_local_prefix": ds.mesh_local_prefix.hex() if ds.mesh_local_prefix else None,
            "network_key": f"(redacted; fingerprint {_fingerprint(key)})" if key else None,
            "pskc": "(redacted)" if ds.pskc else None,
            "key_sequence": self.key_sequence,
            "joiner_router": self.router.hex(),
        }


@dataclass
class Joiner:
    pskd: str = field(repr=False)
    eui64: bytes
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    channels: tuple[int, ...] = tuple(range(11, 27))
    scan_dwell: float = SCAN_DWELL
    vendor: VendorInfo = field(default_factory=VendorInfo)
    dtls_config: DtlsConfig | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    response_timeout: float = RESPONSE_TIMEOUT
    stop_at_first_candidate: bool = False
    # Scans over all channels before giving up: a Discovery Request or its Response can be
    # lost on a busy air (the leader's Network Data multicast after a commissioner's petition
    # goes out just as a joiner starts), and one lost frame should not fail the join.
    scan_passes: int = 1
    state: JoinerState = JoinerState.IDLE
    error: CommissioningError | None = None
    credentials: JoinerCredentials | None = None
    candidates: list[DiscoveryCandidate] = field(default_factory=list)
    joiner_id: bytes = field(init=False)
    log: list[tuple[float, str]] = field(default_factory=list)
    _actions: list[JoinerAction] = field(default_factory=list)
    _scan_index: int = 0
    _passes_left: int = 1
    _deadline: float | None = None
    _ext: ExtAddress = field(init=False)
    _pan: int = 0
    _channel: int = 0
    _tags: TagAllocator = field(init=False)
    _rx: LinkReceiver = field(default_factory=LinkReceiver)
    _dtls: DtlsClient | None = None
    _candidate: DiscoveryCandidate | None = None
    _tried: int = 0
    _coap: CoapEndpoint = field(init=False)
    _kek: bytes | None = field(default=None, repr=False)
    _frame_counter: int = 0
    _last_failure: CommissioningError | None = None

    def __post_init__(self) -> None:
        self.pskd = validate_pskd(self.pskd)
        if len(self.eui64) != 8:
            raise InvalidArgument("an EUI-64 is 8 bytes")
        if not self.channels or not all(11 <= c <= 26 for c in self.channels):
            raise InvalidArgument("joiner channels must be within 11..26")
        self.joiner_id = compute_joiner_id(self.eui64)
        self._ext = ExtAddress(self.rng.randbytes(8))
        self._tags = TagAllocator(self.rng.randrange(0, 0x10000))
        self._coap = CoapEndpoint(rng=self.rng)

    # -- outputs --------------------------------------------------------------------------------

    def actions(self) -> list[JoinerAction]:
        out, self._actions = self._actions, []
        return out

    @property
    def done(self) -> bool:
        return self.state in (JoinerState.JOINED, JoinerState.FAILED)

    @property
    def ext_addr(self) -> ExtAddress:
        return self._ext

    @property
    def kek(self) -> bytes | None:
        """The joiner router KEK of the current session (secret: never log it)."""
        return self._kek

    @property
    def dtls(self) -> DtlsClient | None:
        """The DTLS session with the commissioner (``None`` before connecting)."""
        return self._dtls

    def _note(self, now: float, text: str) -> None:
        self.log.append((now, text))

    def _tune(self, channel: int, pan: int, ext: ExtAddress) -> None:
        self._channel, self._pan, self._ext = channel, pan, ext
        self._actions.append(Tune(channel, pan, ext))

    def _send_packet(self, packet: Ipv6Packet, dst: ExtAddress, security: LinkSecurity) -> None:
        frames = encode_datagram(
            packet, src=self._ext, dst=dst, dst_pan=self._pan, security=security, tags=self._tags
        )
        for tx in frames:
            self._actions.append(Transmit(self._protect(tx)))

    def _protect(self, tx: TxFrame) -> bytes:
        if tx.security is LinkSecurity.NONE:
            return tx.frame.to_bytes()
        assert self._kek is not None
        frame = secure_tx_frame(
            tx, key=self._kek, frame_counter=self._frame_counter, ext_src=self._ext
        )
        self._frame_counter += 1
        return frame.to_bytes()

    # -- discovery ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self.state is not JoinerState.IDLE:
            raise InvalidArgument("the joiner was already started")
        self.state = JoinerState.DISCOVER
        self._note(now, f"joiner ID {self.joiner_id.hex()}; scanning channels "
                        f"{self.channels[0]}-{self.channels[-1]}")  # fmt: skip
        self._scan_index = 0
        self._passes_left = max(1, self.scan_passes)
        self._scan_channel(now)

    def _scan_channel(self, now: float) -> None:
        channel = self.channels[self._scan_index]
        pan = self.rng.randrange(0, 0xFFFF)
        self._tune(channel, pan, ExtAddress(self.rng.randbytes(8)))
        packet = discovery_request_packet(self._ext)
        frames = encode_datagram(
            packet,
            src=self._ext,
            dst=BROADCAST,
            dst_pan=0xFFFF,
            src_pan=pan,
            tags=self._tags,
        )
        for tx in frames:
            self._actions.append(Transmit(tx.psdu(), "discovery request"))
        self._deadline = now + self.scan_dwell

    def _scan_done(self, now: float) -> None:
        self.candidates.sort(key=lambda c: c.priority, reverse=True)
        del self.candidates[MAX_CANDIDATES:]
        if not self.candidates and self._passes_left > 1:
            self._passes_left -= 1
            self._note(now, "no joiner router answered; scanning again")
            self._scan_index = 0
            self._scan_channel(now)
            return
        if not self.candidates:
            self._fail(
                now,
                JoinerNotFound(
                    "no joiner router admitted this device on channels "
                    f"{self.channels[0]}-{self.channels[-1]}"
                ),
            )
            return
        self._tried = 0
        self._connect_next(now)

    # -- connect --------------------------------------------------------------------------------

    def _connect_next(self, now: float) -> None:
        if self._tried >= len(self.candidates):
            self._fail(
                now,
                self._last_failure or JoinerSecurityFailure("no candidate completed the handshake"),
            )
            return
        cand = self.candidates[self._tried]
        self._tried += 1
        self._candidate = cand
        self.state = JoinerState.CONNECTING
        self._tune(cand.channel, cand.pan_id, ExtAddress(self.joiner_id))
        self._note(
            now,
            f"connecting to joiner router {cand.ext_addr} of '{cand.network_name}' on channel "
            f"{cand.channel} (PAN 0x{cand.pan_id:04x}, port {cand.joiner_udp_port})",
        )
        self._dtls = DtlsClient(
            self.pskd.encode(), config=self.dtls_config or JOINER_DTLS, rng=self.rng.randbytes
        )
        self._dtls.start(now)
        self._deadline = now + self.connect_timeout
        self._flush_dtls()

    def _router_ip(self) -> IPv6Address:
        assert self._candidate is not None
        return link_local(self._candidate.ext_addr)

    def _flush_dtls(self) -> None:
        if self._dtls is None or self._candidate is None:
            return
        for d in self._dtls.datagrams_to_send():
            packet = Ipv6Packet.udp(
                link_local(self._ext),
                self._router_ip(),
                JOINER_UDP_PORT,
                self._candidate.joiner_udp_port,
                d,
            )
            self._send_packet(packet, self._candidate.ext_addr, LinkSecurity.NONE)

    def _join_fin_tlvs(self) -> list[MeshcopTlv | Tlv]:
        v = self.vendor
        tlvs: list[MeshcopTlv | Tlv] = [
            StateTlv(State.ACCEPT),
            VendorNameTlv(v.name),
            VendorModelTlv(v.model),
            VendorSwVersionTlv(v.sw_version),
            VendorStackVersionTlv(v.stack_oui, 0, 0, 1, 0),
        ]
        if v.provisioning_url is not None:
            tlvs.append(ProvisioningUrlTlv(v.provisioning_url))
        return tlvs

    def _after_dtls(self, now: float) -> None:
        if self._dtls is None:
            return
        for ev in self._dtls.events():
            if isinstance(ev, HandshakeComplete):
                self._kek = self._dtls.kek
                self.state = JoinerState.CONNECTED
                self._note(now, "DTLS connected; sending JOIN_FIN.req")
                req = self._coap.request(TmfUri.JOIN_FIN, self._join_fin_tlvs(), now=now)
                try:
                    self._dtls.send(req.to_bytes())
                except (DtlsError, InvalidArgument) as exc:
                    self._candidate_failed(now, JoinerSecurityFailure(f"DTLS: {exc}"))
                    return
                self._deadline = now + self.response_timeout
            elif isinstance(ev, ApplicationData):
                self._on_dtls_coap(ev.data, now)
            elif isinstance(ev, ConnectionFailed):
                err = ev.error
                if isinstance(err, DtlsAuthenticationError):
                    msg = "the commissioner rejected the handshake: wrong joining code (PSKd)?"
                else:
                    msg = f"DTLS handshake failed: {err.message}"
                self._flush_dtls()
                self._candidate_failed(now, JoinerSecurityFailure(msg))
                return
            elif isinstance(ev, ConnectionClosed) and self.state is JoinerState.CONNECTED:
                self._candidate_failed(now, JoinerSecurityFailure("the commissioner closed DTLS"))
                return
        self._flush_dtls()

    def _on_dtls_coap(self, data: bytes, now: float) -> None:
        try:
            msg = TmfMessage.from_bytes(data)
        except ParseError:
            return
        if self._dtls is None:
            return
        if msg.mtype == MessageType.CON and msg.is_response:
            ack = self._coap.ack_for(msg)
            if ack is not None:
                self._dtls.send(ack.to_bytes())
        inc = self._coap.receive(msg, now)
        if inc.kind != "response" or self.state is not JoinerState.CONNECTED:
            return
        try:
            st = first_of(msg.tlvs(), StateTlv)
        except ParseError:
            st = None
        self._note(
            now,
            "JOIN_FIN.rsp: "
            + ("accepted" if st is not None and st.accepted else f"state {st and st.value}"),
        )
        # Like OpenThread, move on to Entrust whatever the state: the joiner router entrusts
        # only if the commissioner gave it the KEK.
        self.state = JoinerState.ENTRUST
        self._dtls.close()
        self._flush_dtls()
        self._deadline = now + self.response_timeout

    def _candidate_failed(self, now: float, err: CommissioningError) -> None:
        self._note(now, err.message)
        self._last_failure = err
        self._dtls = None
        self._kek = None
        self._connect_next(now)

    # -- input ----------------------------------------------------------------------------------

    def receive_frame(self, psdu: bytes, now: float, *, rssi: int = 0, channel: int = 0) -> None:
        """A received PSDU (with FCS). Anything not for us is ignored."""
        if self.done or self.state is JoinerState.IDLE:
            return
        try:
            frame = MacFrame.from_bytes(psdu, fcs=True)
        except ParseError:
            return
        if frame.dst is not None and frame.dst != self._ext and frame.dst != BROADCAST:
            return
        sec = classify_security(frame)
        if sec is None or sec is LinkSecurity.MAC:
            return  # we hold no network key yet
        if sec is LinkSecurity.KEK:
            if self._kek is None or not isinstance(frame.src, ExtAddress):
                return
            try:
                frame = unsecure_frame(frame, self._kek)
            except CryptoError:
                return
        dg = self._rx.receive(frame, sec, now, rssi=rssi, channel=channel or self._channel)
        if dg is not None:
            self._on_datagram(dg, now)

    def _on_datagram(self, dg: RxDatagram, now: float) -> None:
        udp = dg.udp()
        if udp is None:
            return
        if self.state is JoinerState.DISCOVER:
            cand = parse_discovery_response_datagram(dg, self.joiner_id)
            if cand is not None and all(c.ext_addr != cand.ext_addr for c in self.candidates):
                self.candidates.append(cand)
                self._note(
                    now,
                    f"discovery response from {cand.ext_addr} '{cand.network_name}' on channel "
                    f"{cand.channel}",
                )
                if self.stop_at_first_candidate:
                    self._scan_done(now)
            return
        cand = self._candidate
        if cand is None or dg.src_ext != cand.ext_addr:
            return
        if dg.security is LinkSecurity.NONE:
            if (
                self._dtls is not None
                and udp.dst_port == JOINER_UDP_PORT
                and udp.src_port == cand.joiner_udp_port
            ):
                self._dtls.receive_datagram(udp.payload, now)
                self._after_dtls(now)
            return
        if dg.security is LinkSecurity.KEK and udp.dst_port == TMF_PORT:
            self._on_join_ent(dg, udp.src_port, udp.payload, now)

    def _on_join_ent(self, dg: RxDatagram, src_port: int, payload: bytes, now: float) -> None:
        if self.state not in (JoinerState.ENTRUST, JoinerState.JOINED):
            return
        try:
            msg = TmfMessage.from_bytes(payload)
        except ParseError:
            return
        if msg.tmf_uri is not TmfUri.JOIN_ENT or msg.mtype != MessageType.CON:
            return
        ack = TmfMessage(MessageType.ACK, CoapCode.CHANGED, msg.mid, msg.token)
        reply = Ipv6Packet.udp(link_local(self._ext), dg.packet.src, TMF_PORT, src_port,
                               ack.to_bytes())  # fmt: skip
        if self.state is JoinerState.JOINED:  # a retransmission: answer again
            assert dg.src_ext is not None
            self._send_packet(reply, dg.src_ext, LinkSecurity.KEK)
            return
        try:
            creds = self._credentials(msg.tlvs())
        except (ParseError, InvalidArgument) as exc:
            self._note(now, f"malformed JOIN_ENT ignored: {exc}")
            return
        assert dg.src_ext is not None
        self._send_packet(reply, dg.src_ext, LinkSecurity.KEK)
        self.credentials = creds
        self.state = JoinerState.JOINED
        self._deadline = None
        self._note(now, f"JOIN_ENT received: joined '{creds.dataset.network_name}'")

    def _credentials(self, tlvs: tuple[MeshcopTlv | Tlv, ...]) -> JoinerCredentials:
        key = first_of(tlvs, NetworkKeyTlv)
        if key is None:
            raise InvalidArgument("JOIN_ENT without a network key")
        seq = first_of(tlvs, NetworkKeySequenceTlv)
        mlp = first_of(tlvs, MeshLocalPrefixTlv)
        xp = first_of(tlvs, ExtendedPanIdTlv)
        name = first_of(tlvs, NetworkNameTlv)
        ts = first_of(tlvs, ActiveTimestampTlv)
        mask = first_of(tlvs, ChannelMaskTlv)
        pskc = first_of(tlvs, PskcTlv)
        policy = first_of(tlvs, SecurityPolicyTlv)
        assert self._candidate is not None
        ds = ActiveDataset(
            active_timestamp=ts.value if ts else None,
            channel=self._candidate.channel,
            channel_mask=mask.value if mask else None,
            ext_pan_id=xp.value if xp else self._candidate.ext_pan_id,
            mesh_local_prefix=mlp.value if mlp else None,
            network_key=key.value,
            network_name=name.value if name else self._candidate.network_name,
            pan_id=self._candidate.pan_id,
            pskc=pskc.value if pskc else None,
            security_policy=policy.value if policy else None,
        )
        return JoinerCredentials(ds, seq.value if seq else 0, self._candidate.ext_addr)

    # -- time -----------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        if self.done:
            return None
        times = [t for t in (self._deadline, self._coap.next_timeout()) if t is not None]
        if self._dtls is not None:
            t = self._dtls.next_timeout()
            if t is not None:
                times.append(t)
        return min(times, default=None)

    def poll(self, now: float) -> None:
        if self.done:
            return
        self._rx.expire(now)
        if self._dtls is not None:
            self._dtls.handle_timeout(now)
            self._after_dtls(now)
        resend, _gone = self._coap.poll(now)  # always: no deadline may stay in the past
        for m in resend:
            if self._dtls is not None and self._dtls.is_connected:
                self._dtls.send(m.to_bytes())
        self._flush_dtls()
        if self._deadline is None or now < self._deadline:
            return
        if self.state is JoinerState.DISCOVER:
            self._scan_index += 1
            if self._scan_index < len(self.channels):
                self._scan_channel(now)
            else:
                self._scan_done(now)
        elif self.state is JoinerState.CONNECTING:
            self._candidate_failed(
                now, JoinerSecurityFailure("the DTLS handshake did not complete in time")
            )
        elif self.state is JoinerState.CONNECTED:
            self._fail(now, JoinerTimeout("no JOIN_FIN response from the commissioner"))
        elif self.state is JoinerState.ENTRUST:
            self._fail(now, JoinerTimeout("no JOIN_ENT from the joiner router"))

    def _fail(self, now: float, err: CommissioningError) -> None:
        self.state = JoinerState.FAILED
        self.error = err
        self._deadline = None
        self._dtls = None
        self._note(now, f"join failed: {err.message}")
