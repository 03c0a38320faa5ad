"""The commissioner (sans-IO): petition, keep-alive, joiner table, joiner DTLS sessions, JOIN_FIN
and the KEK, with brute-force rate limiting of PSKd attempts.

The same core serves the external commissioner (``gateway.peers.commissioner``, which carries the
management messages over DTLS to a border agent) and the native commissioner on the gateway
(carried by a local border-agent session). It only produces and consumes
:class:`~gateway.wire.coap.TmfMessage` values towards the border agent:

* COMM_PET (Commissioner ID) → accepted with a session ID, or refused (another commissioner is
  active: :class:`~gateway.thread.errors.AnotherCommissionerActive`);
* MGMT_ACTIVE_GET to learn the mesh-local prefix (for the Leader ALOC), then
  MGMT_COMMISSIONER_SET (Session ID, Steering Data, [Joiner UDP Port]) tunnelled in UDP_TX to
  ``Leader ALOC:61631`` whenever the joiner table changes; the answer comes back in UDP_RX;
* COMM_KA every ``keep_alive_interval`` (25 s like OpenThread's native commissioner); a refused
  or unanswered keep-alive ends the session (:class:`~gateway.thread.errors.KeepAliveTimeout`);
* RLY_RX carries joiner DTLS records: one DTLS server per Joiner IID, its password the PSKd of
  the best matching joiner entry (EUI-64, then longest discerner, then ``*``); the JOIN_FIN.req
  is answered with State Accept, and the RLY_TX carrying that answer also carries the Joiner
  Router KEK derived from the session;
* failures are typed: unknown joiner, wrong PSKd, rate-limited PSKd attempts, joiner vanished
  mid-handshake (no progress within ``joiner_session_timeout``, 30 s like OpenThread).
"""

from __future__ import annotations

import enum
import random
import secrets
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final

from gateway.crypto.dtls import (
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    CookieJar,
    DtlsAuthenticationError,
    DtlsConfig,
    DtlsError,
    DtlsServer,
    DtlsTimeoutError,
    HandshakeComplete,
    check_client_hello,
)
from gateway.crypto.dtls_handshake import HS_CLIENT_HELLO, ClientHello, parse_fragments
from gateway.crypto.dtls_record import CONTENT_HANDSHAKE, parse_datagram_prefix
from gateway.crypto.thread_keys import (
    SteeringData,
    discerner_matches,
    joiner_id,
    validate_pskd,
)
from gateway.errors import InvalidArgument, ParseError
from gateway.thread.coap import CoapEndpoint, Pending
from gateway.thread.commissioning.border_agent import ALOC16_LEADER, aloc
from gateway.thread.errors import (
    AnotherCommissionerActive,
    CommissioningError,
    JoinerVanished,
    KeepAliveTimeout,
    PetitionRejected,
    PskdRateLimited,
    UnknownJoiner,
    WrongPskd,
)
from gateway.wire.coap import TMF_PORT, CoapCode, MessageType, TmfMessage, TmfUri
from gateway.wire.meshcop import (
    CommissionerIdTlv,
    CommissionerSessionIdTlv,
    GetTlv,
    Ipv6AddressTlv,
    JoinerDtlsEncapsulationTlv,
    JoinerIidTlv,
    JoinerRouterKekTlv,
    JoinerRouterLocatorTlv,
    JoinerUdpPortTlv,
    MeshcopTlv,
    MeshcopTlvType,
    MeshLocalPrefixTlv,
    ProvisioningUrlTlv,
    State,
    StateTlv,
    SteeringDataTlv,
    UdpEncapsulationTlv,
    VendorModelTlv,
    VendorNameTlv,
    VendorSwVersionTlv,
)
from gateway.wire.tlv import Tlv, first_of

__all__ = [
    "Commissioner",
    "CommissionerState",
    "JoinerEntry",
    "JoinerEvent",
    "RateLimit",
    "StateChanged",
    "SteeringUpdated",
]

DEFAULT_COMMISSIONER_ID: Final = "Gateway Commissioner"
KEEP_ALIVE_INTERVAL: Final = 25.0
JOINER_SESSION_TIMEOUT: Final = 30.0  # OPENTHREAD_CONFIG_COMMISSIONER_JOINER_SESSION_TIMEOUT
REMOVE_JOINED_AFTER: Final = 20.0  # kRemoveJoinerDelay
DEFAULT_JOINER_TIMEOUT: Final = 120.0  # CLI default of `commissioner joiner add`
MAX_JOINER_ENTRIES: Final = 64
MAX_JOINER_SESSIONS: Final = 16


class CommissionerState(enum.Enum):
    DISABLED = "disabled"
    PETITIONING = "petitioning"
    ACTIVE = "active"


@dataclass(frozen=True)
class StateChanged:
    state: CommissionerState
    session_id: int | None = None
    error: CommissioningError | None = None


@dataclass(frozen=True)
class SteeringUpdated:
    steering_data: bytes
    accepted: bool


@dataclass(frozen=True)
class JoinerEvent:
    """``kind``: start, connect, finalize, end, failed, removed (OpenThread's CLI prints
    ``Commissioner: Joiner <kind> <id>`` for the first four)."""

    kind: str
    joiner_id: bytes
    entry: str  # the joiner table key: "eui64 <hex>", "discerner <v>/<len>" or "*"
    error: CommissioningError | None = None
    detail: str = ""


CommissionerEvent = StateChanged | SteeringUpdated | JoinerEvent


@dataclass(frozen=True)
class RateLimit:
    """PSKd brute-force limits. Each failed handshake tells an attacker one wrong guess; after
    ``max_failures`` within ``window`` seconds the entry refuses new handshakes for
    ``backoff`` seconds (doubling up to ``backoff_max``). Globally, ``global_max_failures``
    within ``global_window`` refuse every new joiner handshake for ``backoff`` seconds."""

    max_failures: int = 3
    window: float = 600.0
    backoff: float = 30.0
    backoff_max: float = 3600.0
    global_max_failures: int = 10
    global_window: float = 60.0

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.global_max_failures < 1:
            raise InvalidArgument("failure limits must be at least 1")
        if min(self.window, self.backoff, self.global_window) <= 0:
            raise InvalidArgument("rate-limit windows must be positive")


@dataclass
class JoinerEntry:
    """One row of the joiner table. Exactly one of ``eui64``/``discerner`` or neither (``*``)."""

    pskd: str = field(repr=False)
    eui64: bytes | None = None
    discerner: tuple[int, int] | None = None  # (value, bit length)
    expires: float | None = None
    provisioning_url: str | None = None
    failures: deque[float] = field(default_factory=deque, repr=False)
    blocked_until: float = 0.0
    backoff: float = 0.0
    joined: int = 0
    joined_at: float | None = None
    last_result: str | None = None
    last_error: CommissioningError | None = None

    def __post_init__(self) -> None:
        self.pskd = validate_pskd(self.pskd)
        if self.eui64 is not None and len(self.eui64) != 8:
            raise InvalidArgument("an EUI-64 is 8 bytes")
        if self.eui64 is not None and self.discerner is not None:
            raise InvalidArgument("a joiner entry has an EUI-64 or a discerner, not both")
        if self.discerner is not None:
            value, length = self.discerner
            if not 1 <= length <= 64 or not 0 <= value < (1 << length):
                raise InvalidArgument("a discerner is 1..64 bits")

    @property
    def key(self) -> str:
        if self.eui64 is not None:
            return f"eui64 {self.eui64.hex()}"
        if self.discerner is not None:
            return f"discerner {self.discerner[0]:#x}/{self.discerner[1]}"
        return "*"

    @property
    def joiner_id(self) -> bytes | None:
        return joiner_id(self.eui64) if self.eui64 is not None else None

    def match(self, jid: bytes) -> int:
        """0 = no match; higher is better (EUI-64 > longer discerner > wildcard)."""
        if self.eui64 is not None:
            return 200 if joiner_id(self.eui64) == jid else 0
        if self.discerner is not None:
            value, length = self.discerner
            return 100 + length if discerner_matches(jid, value, length) else 0
        return 1

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "joiner": self.key,
            "joiner_id": self.joiner_id.hex() if self.joiner_id is not None else None,
            "expires_in_s": None if self.expires is None else round(max(0, self.expires - now)),
            "joined": self.joined,
            "failures": len(self.failures),
            "blocked_for_s": round(max(0.0, self.blocked_until - now), 1),
            "last_result": self.last_result,
        }


@dataclass
class _JoinerSession:
    iid: bytes
    joiner_id: bytes
    entry: JoinerEntry
    port: int
    locator: int
    dtls: DtlsServer
    started: float
    coap: CoapEndpoint
    connected: bool = False
    finalized_at: float | None = None
    kek: bytes | None = field(default=None, repr=False)
    hello_random: bytes | None = None


class _Ctx(enum.Enum):
    PETITION = "petition"
    KEEP_ALIVE = "keep_alive"
    ACTIVE_GET = "active_get"
    COMMISSIONER_SET = "commissioner_set"


def client_hello_random(datagram: bytes) -> bytes | None:
    """The random of an unfragmented epoch-0 ClientHello in ``datagram``, else ``None``."""
    records, _ = parse_datagram_prefix(datagram)
    for rec in records:
        if rec.content_type != CONTENT_HANDSHAKE or rec.epoch != 0:
            continue
        try:
            for frag in parse_fragments(rec.fragment):
                if frag.msg_type == HS_CLIENT_HELLO and frag.is_complete:
                    return ClientHello.from_bytes(frag.fragment).random
        except ParseError:
            return None
    return None


def joiner_id_from_iid(iid: bytes) -> bytes:
    """The Joiner ID is the joiner's extended address: its IID with the U/L bit flipped."""
    return bytes((iid[0] ^ 0x02,)) + iid[1:]


@dataclass
class Commissioner:
    commissioner_id: str = DEFAULT_COMMISSIONER_ID
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    keep_alive_interval: float = KEEP_ALIVE_INTERVAL
    joiner_session_timeout: float = JOINER_SESSION_TIMEOUT
    remove_joined_after: float | None = REMOVE_JOINED_AFTER
    joiner_udp_port: int | None = None  # sent in MGMT_COMMISSIONER_SET when set
    rate_limit: RateLimit = field(default_factory=RateLimit)
    dtls_config: DtlsConfig | None = None
    max_sessions: int = MAX_JOINER_SESSIONS
    state: CommissionerState = CommissionerState.DISABLED
    session_id: int | None = None
    mesh_local_prefix: bytes | None = None
    steering_data: bytes | None = None
    joiners: dict[str, JoinerEntry] = field(default_factory=dict)
    _ba: CoapEndpoint = field(init=False)
    _mesh: CoapEndpoint = field(init=False)
    _out: list[TmfMessage] = field(default_factory=list)
    _events: list[CommissionerEvent] = field(default_factory=list)
    _sessions: dict[bytes, _JoinerSession] = field(default_factory=dict)
    _next_keep_alive: float | None = None
    _ka_sent_at: float | None = None  # the oldest keep-alive still unanswered
    _steering_dirty: bool = False
    _global_failures: deque[float] = field(default_factory=deque)
    _global_blocked_until: float = 0.0
    _reported: dict[tuple[bytes, str], float] = field(default_factory=dict)
    _cookies: CookieJar = field(init=False)
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "joiner_sessions": 0,
            "joined": 0,
            "wrong_pskd": 0,
            "unknown_joiner": 0,
            "rate_limited": 0,
            "vanished": 0,
        }
    )

    def __post_init__(self) -> None:
        CommissionerIdTlv(self.commissioner_id)  # InvalidArgument when too long
        self._ba = CoapEndpoint(rng=self.rng)
        self._mesh = CoapEndpoint(rng=self.rng)
        self._cookies = CookieJar(rng=self.rng.randbytes)

    def __repr__(self) -> str:
        return (
            f"Commissioner({self.commissioner_id!r}, {self.state.value}, "
            f"joiners={len(self.joiners)}, sessions={len(self._sessions)})"
        )

    # -- outputs --------------------------------------------------------------------------------

    def management_to_send(self) -> list[TmfMessage]:
        """CoAP messages for the border agent (inside its DTLS session, or its local session)."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[CommissionerEvent]:
        out, self._events = self._events, []
        return out

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Petition (COMM_PET)."""
        if self.state is not CommissionerState.DISABLED:
            raise InvalidArgument(f"the commissioner is already {self.state.value}")
        self.state = CommissionerState.PETITIONING
        self._events.append(StateChanged(self.state))
        self._out.append(
            self._ba.request(
                TmfUri.COMM_PET,
                [CommissionerIdTlv(self.commissioner_id)],
                now=now,
                context=_Ctx.PETITION,
            )
        )

    def stop(self, now: float) -> None:
        """Resign (COMM_KA with State Reject) and end every joiner session."""
        if self.state is CommissionerState.ACTIVE and self.session_id is not None:
            self._out.append(
                self._ba.request(
                    TmfUri.COMM_KA,
                    [StateTlv(State.REJECT), CommissionerSessionIdTlv(self.session_id)],
                    now=now,
                    expect_response=False,
                )
            )
        self._disable(None)

    def link_lost(self, reason: str) -> None:
        """The transport to the border agent ended (DTLS closed or failed)."""
        if self.state is not CommissionerState.DISABLED:
            self._disable(KeepAliveTimeout(f"the border agent session ended: {reason}"))

    def _ka_patience(self) -> float:
        """How long a keep-alive may go unanswered: two intervals, at most the leader's 50 s."""
        return min(2 * self.keep_alive_interval, 50.0)

    def _disable(self, error: CommissioningError | None) -> None:
        self._ka_sent_at = None
        was = self.state
        self.state = CommissionerState.DISABLED
        self.session_id = None
        self._next_keep_alive = None
        self._ba.cancel(_Ctx.KEEP_ALIVE)
        self._ba.cancel(_Ctx.ACTIVE_GET)
        self._ba.cancel(_Ctx.PETITION)
        self._mesh.cancel(_Ctx.COMMISSIONER_SET)
        for s in self._sessions.values():
            s.dtls.close()
        self._sessions.clear()
        if was is not CommissionerState.DISABLED or error is not None:
            self._events.append(StateChanged(self.state, None, error))

    # -- joiner table ---------------------------------------------------------------------------

    def add_joiner(
        self,
        pskd: str,
        *,
        eui64: bytes | None = None,
        discerner: tuple[int, int] | None = None,
        timeout: float | None = DEFAULT_JOINER_TIMEOUT,
        now: float,
        provisioning_url: str | None = None,
    ) -> JoinerEntry:
        """Admit a joiner (``eui64``), a discerner, or every joiner (neither) with a PSKd."""
        entry = JoinerEntry(
            pskd,
            eui64,
            discerner,
            None if timeout is None else now + timeout,
            provisioning_url,
        )
        if entry.key not in self.joiners and len(self.joiners) >= MAX_JOINER_ENTRIES:
            raise InvalidArgument(f"the joiner table is full ({MAX_JOINER_ENTRIES} entries)")
        old = self.joiners.get(entry.key)
        if old is not None:  # keep the brute-force history of the same joiner
            entry.failures, entry.blocked_until, entry.backoff = (
                old.failures,
                old.blocked_until,
                old.backoff,
            )
        self.joiners[entry.key] = entry
        self._steering_dirty = True
        self._maybe_send_steering(now)
        return entry

    def remove_joiner(
        self, *, eui64: bytes | None = None, discerner: tuple[int, int] | None = None, now: float
    ) -> bool:
        key = JoinerEntry("000000", eui64, discerner).key
        entry = self.joiners.pop(key, None)
        if entry is None:
            return False
        for iid in [i for i, s in self._sessions.items() if s.entry is entry]:
            self._sessions.pop(iid).dtls.close()
        self._events.append(JoinerEvent("removed", entry.joiner_id or bytes(8), key))
        self._steering_dirty = True
        self._maybe_send_steering(now)
        return True

    def compute_steering_data(self) -> bytes:
        if any(e.eui64 is None and e.discerner is None for e in self.joiners.values()):
            return SteeringData.permit_all().to_bytes()
        sd = SteeringData.empty()
        for e in self.joiners.values():
            if e.eui64 is not None:
                sd = sd.with_eui64(e.eui64)
            elif e.discerner is not None:
                sd = sd.with_discerner(*e.discerner)
        return sd.to_bytes()

    def _maybe_send_steering(self, now: float) -> None:
        if not self._steering_dirty or self.state is not CommissionerState.ACTIVE:
            return
        if self.mesh_local_prefix is None or self.session_id is None:
            return
        self._steering_dirty = False
        steering = self.compute_steering_data()
        tlvs: list[MeshcopTlv | Tlv] = [
            CommissionerSessionIdTlv(self.session_id),
            SteeringDataTlv(steering),
        ]
        if self.joiner_udp_port is not None:
            tlvs.append(JoinerUdpPortTlv(self.joiner_udp_port))
        self._mesh.cancel(_Ctx.COMMISSIONER_SET)
        inner = self._mesh.request(
            TmfUri.MGMT_COMMISSIONER_SET, tlvs, now=now, context=_Ctx.COMMISSIONER_SET
        )
        self.steering_data = steering
        self._udp_tx(inner, now)

    def _leader_aloc(self) -> IPv6Address:
        assert self.mesh_local_prefix is not None
        return aloc(self.mesh_local_prefix, ALOC16_LEADER)

    def _udp_tx(self, inner: TmfMessage, now: float) -> None:
        self._out.append(
            self._ba.request(
                TmfUri.UDP_TX,
                [
                    UdpEncapsulationTlv(TMF_PORT, TMF_PORT, inner.to_bytes()),
                    Ipv6AddressTlv(self._leader_aloc()),
                ],
                now=now,
                confirmable=False,
                expect_response=False,
            )
        )

    # -- input from the border agent ------------------------------------------------------------

    def receive_management(self, msg: TmfMessage, now: float) -> None:
        inc = self._ba.receive(msg, now)
        if inc.kind == "response":
            self._on_response(inc.context, msg, now)
            return
        if inc.kind in ("request", "duplicate"):
            uri = msg.tmf_uri
            try:
                tlvs = msg.tlvs()
            except ParseError:
                return
            if uri is TmfUri.RLY_RX:
                self._relay_rx(tlvs, now)
            elif uri is TmfUri.UDP_RX:
                self._udp_rx(tlvs, now)
            if msg.mtype == MessageType.CON:  # nothing we serve is CON: acknowledge anyway
                self._out.extend(self._ba.respond(msg, [], now=now))

    def _on_response(self, ctx: object, msg: TmfMessage, now: float) -> None:
        try:
            tlvs = msg.tlvs()
        except ParseError:
            tlvs = ()
        state = first_of(tlvs, StateTlv)
        if ctx is _Ctx.PETITION:
            sid = first_of(tlvs, CommissionerSessionIdTlv)
            if msg.code == CoapCode.CHANGED and state is not None and state.accepted and sid:
                self.state = CommissionerState.ACTIVE
                self.session_id = sid.value
                self._next_keep_alive = now + self.keep_alive_interval
                self._events.append(StateChanged(self.state, sid.value))
                self._out.append(
                    self._ba.request(
                        TmfUri.MGMT_ACTIVE_GET,
                        [GetTlv((MeshcopTlvType.MESH_LOCAL_PREFIX,))],
                        now=now,
                        context=_Ctx.ACTIVE_GET,
                    )
                )
                self._steering_dirty = True
                return
            other = first_of(tlvs, CommissionerIdTlv)
            if other is not None and other.value != self.commissioner_id:
                err: CommissioningError = AnotherCommissionerActive(
                    f"petition rejected: commissioner '{other.value}' is already active"
                )
            else:
                err = PetitionRejected(f"petition rejected by the leader (CoAP {msg.code_text})")
            self._disable(err)
            return
        if ctx is _Ctx.KEEP_ALIVE:
            self._ka_sent_at = None
            if state is None or not state.accepted:
                self._disable(
                    KeepAliveTimeout(
                        "keep-alive refused: the leader ended this commissioner session "
                        "(it timed out or another commissioner took over)"
                    )
                )
            return
        if ctx is _Ctx.ACTIVE_GET:
            mlp = first_of(tlvs, MeshLocalPrefixTlv)
            if mlp is not None:
                self.mesh_local_prefix = mlp.value
                self._maybe_send_steering(now)

    def _udp_rx(self, tlvs: tuple[MeshcopTlv | Tlv, ...], now: float) -> None:
        enc = first_of(tlvs, UdpEncapsulationTlv)
        if enc is None or enc.destination_port != TMF_PORT:
            return
        try:
            inner = TmfMessage.from_bytes(enc.payload)
        except ParseError:
            return
        inc = self._mesh.receive(inner, now)
        if inc.kind == "response" and inc.context is _Ctx.COMMISSIONER_SET:
            try:
                st = first_of(inner.tlvs(), StateTlv)
            except ParseError:
                st = None
            ok = st is not None and st.accepted
            self._events.append(SteeringUpdated(self.steering_data or b"", ok))
        elif inner.is_request and inner.mtype == MessageType.CON:
            # e.g. MGMT_DATASET_CHANGED from the leader: acknowledge it through the proxy.
            self._udp_tx(self._mesh.respond(inner, [], now=now)[0], now)

    # -- joiner sessions ------------------------------------------------------------------------

    def _report(self, jid: bytes, kind: str, now: float, every: float = 10.0) -> bool:
        """Whether to report this (joiner, kind) now (at most once per ``every`` seconds)."""
        last = self._reported.get((jid, kind))
        if last is not None and now - last < every:
            return False
        if len(self._reported) > 256:
            self._reported.clear()
        self._reported[(jid, kind)] = now
        return True

    def _match(self, jid: bytes, now: float) -> JoinerEntry | None:
        best: JoinerEntry | None = None
        score = 0
        for e in self.joiners.values():
            if e.expires is not None and now >= e.expires:
                continue
            m = e.match(jid)
            if m > score:
                best, score = e, m
        return best

    def _relay_rx(self, tlvs: tuple[MeshcopTlv | Tlv, ...], now: float) -> None:
        if self.state is not CommissionerState.ACTIVE:
            return
        port = first_of(tlvs, JoinerUdpPortTlv)
        iid_tlv = first_of(tlvs, JoinerIidTlv)
        loc = first_of(tlvs, JoinerRouterLocatorTlv)
        enc = first_of(tlvs, JoinerDtlsEncapsulationTlv)
        if port is None or iid_tlv is None or loc is None or enc is None:
            return
        iid = iid_tlv.value
        s = self._sessions.get(iid)
        if s is not None:
            hello = client_hello_random(enc.value) if not s.connected else None
            if hello is not None and s.hello_random is not None and hello != s.hello_random:
                # The joiner started over (a new ClientHello, not a retransmission): drop the
                # half-done session instead of leaving the joiner unanswered until it times out.
                self._sessions.pop(iid, None)
                s = None
        if s is not None:
            s.port, s.locator = port.value, loc.value
            s.dtls.receive_datagram(enc.value, now)
            self._after_session(s, now)
            return
        jid = joiner_id_from_iid(iid)
        entry = self._match(jid, now)
        if entry is None:
            self.counters["unknown_joiner"] += 1
            if self._report(jid, "unknown", now):
                self._events.append(
                    JoinerEvent(
                        "failed",
                        jid,
                        "-",
                        UnknownJoiner(f"joiner {jid.hex()} is not in the joiner table"),
                    )
                )
            return
        blocked = max(entry.blocked_until, self._global_blocked_until)
        if now < blocked:
            self.counters["rate_limited"] += 1
            if self._report(jid, "rate", now, every=max(1.0, blocked - now)):
                self._events.append(
                    JoinerEvent(
                        "failed",
                        jid,
                        entry.key,
                        PskdRateLimited(
                            f"joiner {jid.hex()}: too many wrong joining codes; new attempts "
                            f"refused for {blocked - now:.0f} s"
                        ),
                    )
                )
            return
        transport_id = b"\xfe\x80" + bytes(6) + iid
        check = check_client_hello(enc.value, transport_id, self._cookies, now)
        if check.verdict == "hello_verify_request":
            self._relay_tx(iid, port.value, loc.value, check.reply, None)
            return
        if check.verdict != "verified" or len(self._sessions) >= self.max_sessions:
            return
        try:
            server = DtlsServer(
                entry.pskd.encode(),
                transport_id=transport_id,
                cookies=self._cookies,
                config=self.dtls_config,
                rng=self.rng.randbytes,
            )
        except InvalidArgument:  # pragma: no cover - PSKds are validated on entry
            return
        s = _JoinerSession(
            iid, jid, entry, port.value, loc.value, server, now, CoapEndpoint(rng=self.rng)
        )
        s.hello_random = client_hello_random(enc.value)
        self._sessions[iid] = s
        self.counters["joiner_sessions"] += 1
        self._events.append(JoinerEvent("start", jid, entry.key))
        server.receive_datagram(enc.value, now)
        self._after_session(s, now)

    def _relay_tx(
        self, iid: bytes, port: int, locator: int, data: bytes, kek: bytes | None
    ) -> None:
        tlvs: list[MeshcopTlv | Tlv] = [
            JoinerUdpPortTlv(port),
            JoinerIidTlv(iid),
            JoinerRouterLocatorTlv(locator),
        ]
        if kek is not None:
            tlvs.append(JoinerRouterKekTlv(kek))
        tlvs.append(JoinerDtlsEncapsulationTlv(data))
        self._out.append(
            self._ba.request(TmfUri.RLY_TX, tlvs, now=0.0, confirmable=False, expect_response=False)
        )

    def _flush(self, s: _JoinerSession, kek: bytes | None = None) -> None:
        for d in s.dtls.datagrams_to_send():
            self._relay_tx(s.iid, s.port, s.locator, d, kek)

    def _after_session(self, s: _JoinerSession, now: float) -> None:
        for ev in s.dtls.events():
            if isinstance(ev, HandshakeComplete):
                s.connected = True
                s.kek = s.dtls.kek
                self._events.append(JoinerEvent("connect", s.joiner_id, s.entry.key))
            elif isinstance(ev, ApplicationData):
                self._flush(s)
                self._on_joiner_coap(s, ev.data, now)
            elif isinstance(ev, ConnectionClosed):
                self._flush(s)
                self._end_session(s, now, None if s.finalized_at is not None else "closed")
                return
            elif isinstance(ev, ConnectionFailed):
                self._flush(s)
                self._on_failure(s, ev.error, now)
                return
        self._flush(s)

    def _on_joiner_coap(self, s: _JoinerSession, data: bytes, now: float) -> None:
        try:
            msg = TmfMessage.from_bytes(data)
        except ParseError:
            return
        inc = s.coap.receive(msg, now)
        if inc.kind == "duplicate":
            self._send_to_joiner(s, list(inc.replies), kek=s.kek)
            return
        if inc.kind != "request" or msg.tmf_uri is not TmfUri.JOIN_FIN:
            if inc.kind == "request" and msg.mtype == MessageType.CON:
                self._send_to_joiner(s, s.coap.respond(msg, [], code=CoapCode.NOT_FOUND, now=now))
            return
        try:
            tlvs = msg.tlvs()
        except ParseError:
            self._send_to_joiner(s, s.coap.respond(msg, [], code=CoapCode.BAD_REQUEST, now=now))
            return
        url = first_of(tlvs, ProvisioningUrlTlv)
        accept = True
        if s.entry.provisioning_url is not None and (
            url is None or url.value != s.entry.provisioning_url
        ):
            accept = False
        vendor = ", ".join(
            t.value
            for t in (
                first_of(tlvs, VendorNameTlv),
                first_of(tlvs, VendorModelTlv),
                first_of(tlvs, VendorSwVersionTlv),
            )
            if t is not None
        )
        replies = s.coap.respond(msg, [StateTlv(State.ACCEPT if accept else State.REJECT)], now=now)
        # Both OpenThread and ot-commissioner attach the KEK to the record carrying JOIN_FIN.rsp.
        self._send_to_joiner(s, replies, kek=s.kek)
        s.finalized_at = now
        s.entry.last_result = "joined" if accept else "rejected (provisioning URL)"
        s.entry.last_error = None
        if accept:
            s.entry.joined += 1
            s.entry.joined_at = now
            self.counters["joined"] += 1
        self._events.append(
            JoinerEvent("finalize", s.joiner_id, s.entry.key, detail=vendor or "no vendor info")
        )

    def _send_to_joiner(
        self, s: _JoinerSession, msgs: list[TmfMessage], *, kek: bytes | None = None
    ) -> None:
        for m in msgs:
            try:
                s.dtls.send(m.to_bytes())
            except (DtlsError, InvalidArgument):
                return
        self._flush(s, kek)

    def _end_session(self, s: _JoinerSession, now: float, failure: str | None) -> None:
        self._sessions.pop(s.iid, None)
        if failure is None:
            self._events.append(JoinerEvent("end", s.joiner_id, s.entry.key))
            return
        self.counters["vanished"] += 1
        s.entry.last_result = "vanished"
        err = JoinerVanished(f"joiner {s.joiner_id.hex()} vanished mid-handshake ({failure})")
        s.entry.last_error = err
        self._events.append(JoinerEvent("failed", s.joiner_id, s.entry.key, err))

    def _on_failure(self, s: _JoinerSession, error: DtlsError, now: float) -> None:
        self._sessions.pop(s.iid, None)
        if s.finalized_at is not None:
            self._events.append(JoinerEvent("end", s.joiner_id, s.entry.key))
            return
        if isinstance(error, DtlsTimeoutError):
            self._end_session(s, now, "DTLS handshake timed out")
            return
        if isinstance(error, DtlsAuthenticationError):
            self.counters["wrong_pskd"] += 1
            s.entry.last_result = "wrong PSKd"
            wrong = WrongPskd(f"joiner {s.joiner_id.hex()} used a different joining code (PSKd)")
            s.entry.last_error = wrong
            self._record_failure(s.entry, now)
            self._events.append(JoinerEvent("failed", s.joiner_id, s.entry.key, wrong))
            return
        s.entry.last_result = "handshake failed"
        other = CommissioningError(f"joiner {s.joiner_id.hex()}: {error.message}")
        s.entry.last_error = other
        self._events.append(JoinerEvent("failed", s.joiner_id, s.entry.key, other))

    def _record_failure(self, entry: JoinerEntry, now: float) -> None:
        rl = self.rate_limit
        entry.failures.append(now)
        while entry.failures and now - entry.failures[0] > rl.window:
            entry.failures.popleft()
        if len(entry.failures) >= rl.max_failures:
            entry.backoff = min(rl.backoff_max, entry.backoff * 2 if entry.backoff else rl.backoff)
            entry.blocked_until = now + entry.backoff
            entry.failures.clear()
        self._global_failures.append(now)
        while self._global_failures and now - self._global_failures[0] > rl.global_window:
            self._global_failures.popleft()
        if len(self._global_failures) >= rl.global_max_failures:
            self._global_blocked_until = now + rl.backoff
            self._global_failures.clear()

    # -- status ---------------------------------------------------------------------------------

    def joiner_table(self, now: float) -> list[dict[str, object]]:
        return [e.as_dict(now) for e in self.joiners.values()]

    def joiner_sessions(self, now: float) -> list[dict[str, object]]:
        return [
            {
                "joiner_id": s.joiner_id.hex(),
                "entry": s.entry.key,
                "state": "finalized"
                if s.finalized_at is not None
                else ("connected" if s.connected else "handshaking"),
                "age_s": round(now - s.started, 1),
            }
            for s in self._sessions.values()
        ]

    # -- time -----------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        times: list[float] = []
        ka_deadline = None if self._ka_sent_at is None else self._ka_sent_at + self._ka_patience()
        for t in (
            self._ba.next_timeout(),
            self._mesh.next_timeout(),
            self._next_keep_alive,
            ka_deadline,
        ):
            if t is not None:
                times.append(t)
        for s in self._sessions.values():
            t = s.dtls.next_timeout()
            if t is not None:
                times.append(t)
            if s.finalized_at is not None:
                times.append(s.finalized_at + 5.0)
            else:
                times.append(s.started + self.joiner_session_timeout)
        for e in self.joiners.values():
            if e.expires is not None:
                times.append(e.expires)
            if (
                e.joined_at is not None
                and self.remove_joined_after is not None
                and e.eui64 is not None  # only EUI-64 entries are removed after a join
            ):
                times.append(e.joined_at + self.remove_joined_after)
        return min(times, default=None)

    def poll(self, now: float) -> None:
        resend, gone = self._ba.poll(now)
        self._out.extend(resend)
        for p in gone:
            self._gave_up(p)
        resend, gone = self._mesh.poll(now)
        for m in resend:
            if self.mesh_local_prefix is not None:
                self._udp_tx(m, now)
        for p in gone:
            if p.context is _Ctx.COMMISSIONER_SET:
                self._events.append(SteeringUpdated(self.steering_data or b"", False))
        if (
            self.state is CommissionerState.ACTIVE
            and self._ka_sent_at is not None
            and now - self._ka_sent_at >= self._ka_patience()
        ):
            self._disable(
                KeepAliveTimeout(
                    f"the keep-alive went unanswered for {now - self._ka_sent_at:.0f} s: the "
                    "border agent or the session is gone"
                )
            )
        if (
            self.state is CommissionerState.ACTIVE
            and self._next_keep_alive is not None
            and now >= self._next_keep_alive
            and self.session_id is not None
        ):
            self._next_keep_alive = now + self.keep_alive_interval
            if self._ka_sent_at is None:
                self._ka_sent_at = now
            self._ba.cancel(_Ctx.KEEP_ALIVE)
            self._out.append(
                self._ba.request(
                    TmfUri.COMM_KA,
                    [StateTlv(State.ACCEPT), CommissionerSessionIdTlv(self.session_id)],
                    now=now,
                    context=_Ctx.KEEP_ALIVE,
                )
            )
        for s in list(self._sessions.values()):
            s.dtls.handle_timeout(now)
            self._after_session(s, now)
            if s.iid not in self._sessions:
                continue
            if s.finalized_at is not None:
                if now >= s.finalized_at + 5.0:  # the joiner did not close; it has the KEK
                    self._sessions.pop(s.iid, None)
                    self._events.append(JoinerEvent("end", s.joiner_id, s.entry.key))
            elif now >= s.started + self.joiner_session_timeout:
                s.dtls.close()
                self._flush(s)
                self._end_session(s, now, f"no progress for {self.joiner_session_timeout:.0f} s")
        changed = False
        for key, e in list(self.joiners.items()):
            expired = e.expires is not None and now >= e.expires
            done = (
                e.joined_at is not None
                and self.remove_joined_after is not None
                and e.eui64 is not None
                and now >= e.joined_at + self.remove_joined_after
            )
            if expired or done:
                del self.joiners[key]
                self._events.append(JoinerEvent("removed", e.joiner_id or bytes(8), key))
                changed = True
        if changed:
            self._steering_dirty = True
        self._maybe_send_steering(now)

    def _gave_up(self, p: Pending) -> None:
        if p.context is _Ctx.PETITION:
            self._disable(PetitionRejected("the border agent did not answer the petition"))
        elif p.context is _Ctx.KEEP_ALIVE:
            self._disable(KeepAliveTimeout("the border agent did not answer the keep-alive"))
