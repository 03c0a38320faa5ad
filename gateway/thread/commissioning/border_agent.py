"""The Border Agent (sans-IO): the commissioners' door into the Thread network.

Fact sheet §2.3, §4.2, §4.6 (OpenThread ``src/core/meshcop/border_agent.cpp``):

* every external commissioner gets its own DTLS 1.2 server session (EC-JPAKE with the PSKc,
  HelloVerifyRequest cookies bound to its address) -- :meth:`BorderAgent.datagram_received`;
  a commissioner running on the gateway itself (the *native* commissioner) uses a local session
  that carries the same CoAP messages without DTLS -- :meth:`BorderAgent.open_local`;
* a session lives 50 s after it connects and after every accepted COMM_KA; then it is closed
  (and an active commissioner resigned at the leader);
* COMM_PET and COMM_KA are forwarded to the leader (here: in-process, as LEAD_PET/LEAD_KA with
  our RLOC16 as the Border Agent Locator) and answered the way OpenThread does, with an empty
  ACK followed by a separate NON response;
* RLY_TX from the active commissioner goes to the joiner router (:class:`RelayTx` event);
  RLY_RX from the joiner router goes to the active commissioner (:meth:`BorderAgent.relay_rx`);
* UDP_TX carries TMF messages for the Leader ALOC (MGMT_COMMISSIONER_SET, ...); the leader's
  answers come back as UDP_RX from the Leader ALOC. Destinations we do not serve are counted
  and dropped (there is no other Thread node to route to until MLE attach exists);
* MGMT_ACTIVE_GET, MGMT_PENDING_GET and MGMT_COMMISSIONER_GET are answered directly, but only
  to the active commissioner's session (OpenThread answers any connected session; we do not:
  a session that has not petitioned gets 4.01 Unauthorized and no Network Key); like OpenThread
  the direct answer ignores the Security Policy's O bit, the leader behind the UDP proxy does
  not. MGMT_COMMISSIONER_SET sent directly (not tunnelled, as commissioners did before
  OpenThread's PR #10652) is served for the active commissioner.

What an attacker on the LAN can do is bounded (:class:`BaLimits`, issue 16): new handshakes per
source address and in all (token buckets), handshakes in progress per source and in all (the
oldest unconnected session of the busiest source is evicted first, connected sessions never),
and wrong-PSKc verdicts: a source gets a burst of 5 and then 10 a minute -- past that its final
flights wait, unread, until its bucket refills -- and past the same budget in all the verdict of
a wrong guess is withheld (the session ends without an alert) while a right one is let in.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Hashable, Sequence
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
    HandshakeComplete,
    check_client_hello,
)
from gateway.errors import InvalidArgument, ParseError
from gateway.ratelimit import BackoffBucket, BucketTable, TokenBucket
from gateway.thread.coap import CoapEndpoint
from gateway.thread.commissioning.leader import CommissioningLeader, filter_get
from gateway.wire.coap import TMF_PORT, CoapCode, MessageType, TmfMessage, TmfUri
from gateway.wire.dataset import ActiveDataset
from gateway.wire.meshcop import (
    CommissionerIdTlv,
    CommissionerSessionIdTlv,
    Ipv6AddressTlv,
    MeshcopTlv,
    State,
    StateTlv,
    UdpEncapsulationTlv,
)
from gateway.wire.tlv import Tlv, first_of

__all__ = [
    "ALOC16_LEADER",
    "BaLimits",
    "BorderAgent",
    "RelayTx",
    "SessionEvent",
    "aloc",
    "commissioner_aloc16",
    "rloc",
]

ALOC16_LEADER: Final = 0xFC00
SESSION_TIMEOUT: Final = 50.0  # kKeepAliveTimeout


def rloc(mesh_local_prefix: bytes, rloc16: int) -> IPv6Address:
    return IPv6Address(mesh_local_prefix + b"\x00\x00\x00\xff\xfe\x00" + rloc16.to_bytes(2, "big"))


def aloc(mesh_local_prefix: bytes, aloc16: int) -> IPv6Address:
    return rloc(mesh_local_prefix, aloc16)


def commissioner_aloc16(session_id: int) -> int:
    return 0xFC30 + (session_id & 0x7)


Peer = Hashable


def source_of(peer: Peer) -> Hashable:
    """The source address of a peer (``(host, port, ...)`` -> host): the limits are per address,
    since one host has as many ports as it likes."""
    if isinstance(peer, tuple) and peer:
        host: Hashable = peer[0]
        return host
    return peer


@dataclass(frozen=True)
class BaLimits:
    """What one LAN host, and all of them together, can make the border agent do.

    ``pskc_burst``/``pskc_rate`` bound the wrong-PSKc verdicts (per source and in all; the
    PSKd limits of the commissioner are the model), and once the burst is spent each further
    verdict waits a gap that doubles from ``1/pskc_rate`` up to ``pskc_backoff_max`` (12 s: the
    right PSKc from an attacked address may wait behind one of the attacker's held flights and
    still gets in within 30 s); ``handshake_*`` the new DTLS handshakes (each costs EC-JPAKE
    work); ``max_handshakes*`` the sessions still handshaking."""

    pskc_burst: float = 5
    pskc_rate: float = 10 / 60
    pskc_backoff_max: float = 12.0
    handshake_burst: float = 5
    handshake_rate: float = 1.0  # per source, per second
    global_handshake_burst: float = 20
    global_handshake_rate: float = 5.0
    max_handshakes_per_source: int = 2
    max_handshakes: int = 4
    max_sources_tracked: int = 1024

    def __post_init__(self) -> None:
        if min(self.pskc_burst, self.handshake_burst, self.global_handshake_burst) < 1:
            raise InvalidArgument("border agent bursts must be at least 1")
        if self.pskc_backoff_max < 0:
            raise InvalidArgument("border agent pskc_backoff_max must not be negative")
        if min(self.pskc_rate, self.handshake_rate, self.global_handshake_rate) <= 0:
            raise InvalidArgument("border agent rates must be positive")
        if min(self.max_handshakes_per_source, self.max_handshakes) < 1:
            raise InvalidArgument("border agent handshake limits must be at least 1")


@dataclass(frozen=True)
class RelayTx:
    """A RLY_TX from the active commissioner, for the joiner router."""

    tlvs: tuple[MeshcopTlv | Tlv, ...]


@dataclass(frozen=True)
class SessionEvent:
    """Something a technician may want to read in the log or in ``status``."""

    peer: Peer
    kind: str  # connected, petition_accepted, petition_rejected, resigned, closed, timeout,
    #            failed
    commissioner_id: str | None = None
    session_id: int | None = None
    detail: str = ""


BaEvent = RelayTx | SessionEvent


@dataclass
class _Session:
    peer: Peer
    dtls: DtlsServer | None  # None: a local (native) session
    coap: CoapEndpoint
    created: float
    expires: float | None  # the 50 s timer starts at connection
    connected: bool = False
    commissioner_id: str | None = None
    session_id: int | None = None
    held: bytes | None = None  # a final flight waiting for its source's PSKc budget
    held_until: float = 0.0

    @property
    def source(self) -> Hashable:
        return source_of(self.peer)

    @property
    def local(self) -> bool:
        return self.dtls is None


@dataclass
class BorderAgent:
    pskc: bytes = field(repr=False)
    leader: CommissioningLeader
    active_dataset: Callable[[], ActiveDataset]
    rloc16: int = 0x0000
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    session_timeout: float = SESSION_TIMEOUT
    max_sessions: int = 8
    dtls_config: DtlsConfig | None = None
    limits: BaLimits = field(default_factory=BaLimits)
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "dtls_hello_verify": 0,
            "dtls_sessions": 0,
            "dtls_failures": 0,
            "sessions_refused": 0,
            "handshakes_throttled": 0,
            "handshakes_evicted": 0,
            "pskc_wrong": 0,
            "pskc_verdicts_withheld": 0,
            "pskc_flights_held": 0,
            "dtls_bad_records": 0,
            "relay_rx_forwarded": 0,
            "relay_rx_no_commissioner": 0,
            "relay_tx": 0,
            "udp_tx_to_leader": 0,
            "udp_tx_unroutable": 0,
            "requests_refused": 0,
        }
    )
    _sessions: dict[Peer, _Session] = field(default_factory=dict)
    _cookies: CookieJar | None = None
    _datagrams: list[tuple[Peer, bytes]] = field(default_factory=list)
    _local_out: list[tuple[Peer, TmfMessage]] = field(default_factory=list)
    _events: list[BaEvent] = field(default_factory=list)
    _hs_per_source: BucketTable = field(init=False)
    _hs_global: TokenBucket = field(init=False)
    _pskc_per_source: BucketTable = field(init=False)
    _pskc_global: BackoffBucket = field(init=False)

    def __post_init__(self) -> None:
        if len(self.pskc) != 16:
            raise InvalidArgument("the PSKc is 16 bytes")
        self._cookies = CookieJar(rng=self.rng.randbytes)
        lim = self.limits
        n = lim.max_sources_tracked
        self._hs_per_source = BucketTable(lim.handshake_rate, lim.handshake_burst, n)
        self._hs_global = TokenBucket(lim.global_handshake_rate, lim.global_handshake_burst)
        gap = lim.pskc_backoff_max
        self._pskc_per_source = BucketTable(lim.pskc_rate, lim.pskc_burst, n, max_gap=gap)
        self._pskc_global = BackoffBucket(lim.pskc_rate, lim.pskc_burst, gap)

    def __repr__(self) -> str:
        return f"BorderAgent(sessions={len(self._sessions)})"

    # -- outputs --------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[Peer, bytes]]:
        out, self._datagrams = self._datagrams, []
        return out

    def local_messages(self) -> list[tuple[Peer, TmfMessage]]:
        out, self._local_out = self._local_out, []
        return out

    def events(self) -> list[BaEvent]:
        out, self._events = self._events, []
        return out

    # -- sessions -------------------------------------------------------------------------------

    def sessions(self) -> list[dict[str, object]]:
        active = self.leader.active
        return [
            {
                "peer": str(s.peer),
                "local": s.local,
                "connected": s.connected,
                "commissioner_id": s.commissioner_id,
                "session_id": s.session_id,
                "active": active is not None
                and s.session_id is not None
                and active.session_id == s.session_id,
            }
            for s in self._sessions.values()
        ]

    def _active_session(self) -> _Session | None:
        active = self.leader.active
        if active is None:
            return None
        for s in self._sessions.values():
            if s.session_id == active.session_id and s.connected:
                return s
        return None

    def open_local(self, peer: Peer, now: float) -> None:
        """A session for a commissioner on this box (no DTLS; messages through
        :meth:`local_message` / :meth:`local_messages`)."""
        self.close(peer, now)
        self._sessions[peer] = _Session(
            peer,
            None,
            CoapEndpoint(rng=self.rng),
            now,
            now + self.session_timeout,
            connected=True,
        )

    def close(self, peer: Peer, now: float, reason: str = "closed") -> None:
        s = self._sessions.pop(peer, None)
        if s is None:
            return
        if s.dtls is not None:
            s.dtls.close()
            self._flush(s)
        self._resign_if_active(s, now)
        self._events.append(SessionEvent(peer, reason, s.commissioner_id, s.session_id))

    def _resign_if_active(self, s: _Session, now: float) -> None:
        active = self.leader.active
        if active is not None and s.session_id is not None and active.session_id == s.session_id:
            self.leader.resign(now)

    # -- input ----------------------------------------------------------------------------------

    def datagram_received(self, peer: Peer, transport_id: bytes, data: bytes, now: float) -> None:
        """A UDP datagram from an external commissioner (``transport_id``: its address bytes,
        bound into the DTLS cookie)."""
        s = self._sessions.get(peer)
        if s is None:
            assert self._cookies is not None
            check = check_client_hello(data, transport_id, self._cookies, now)
            if check.verdict == "hello_verify_request":
                self.counters["dtls_hello_verify"] += 1
                self._datagrams.append((peer, check.reply))
                return
            if check.verdict != "verified":
                return
            if not self._admit_handshake(source_of(peer), now):
                return
            try:
                server = DtlsServer(
                    self.pskc,
                    transport_id=transport_id,
                    cookies=self._cookies,
                    config=self.dtls_config,
                    rng=self.rng.randbytes,
                )
            except InvalidArgument:  # pragma: no cover - the PSKc was checked at construction
                return
            s = _Session(peer, server, CoapEndpoint(rng=self.rng), now, None)
            self._sessions[peer] = s
        assert s.dtls is not None
        if (
            not s.connected
            and s.dtls.awaiting_final_flight
            and not self._pskc_per_source.get(s.source).available(now)
        ):
            # This source has had its wrong-PSKc verdicts for now: its final flight waits,
            # unread (and costs no EC-JPAKE work), until the source's budget refills.
            s.held = data
            s.held_until = now + self._pskc_per_source.get(s.source).wait_time(now)
            self.counters["pskc_flights_held"] += 1
            return
        self._feed(s, data, now)

    def _feed(self, s: _Session, data: bytes, now: float) -> None:
        assert s.dtls is not None
        before = s.dtls.bad_records
        s.dtls.receive_datagram(data, now)
        self.counters["dtls_bad_records"] += s.dtls.bad_records - before
        self._after_dtls(s, now)

    def _handshaking(self) -> list[_Session]:
        return [x for x in self._sessions.values() if not x.connected and x.dtls is not None]

    def _admit_handshake(self, source: Hashable, now: float) -> bool:
        """Room and budget for one more DTLS handshake from ``source``; evicts the oldest
        unconnected session of the busiest source when the tables are full."""
        lim = self.limits
        if not self._hs_per_source.get(source).take(now) or not self._hs_global.take(now):
            self.counters["handshakes_throttled"] += 1
            return False
        pending = self._handshaking()
        mine = [x for x in pending if x.source == source]
        victim: _Session | None = None
        if len(mine) >= lim.max_handshakes_per_source:
            victim = min(mine, key=lambda x: x.created)
        elif pending and (
            len(pending) >= lim.max_handshakes or len(self._sessions) >= self.max_sessions
        ):
            counts: dict[Hashable, int] = {}
            for x in pending:
                counts[x.source] = counts.get(x.source, 0) + 1
            busiest = max(counts.values())
            victim = min(
                (x for x in pending if counts[x.source] == busiest), key=lambda x: x.created
            )
        if victim is not None:
            self.counters["handshakes_evicted"] += 1
            self._drop(victim)
        if len(self._sessions) >= self.max_sessions:  # every session is connected
            self.counters["sessions_refused"] += 1
            return False
        return True

    def _drop(self, s: _Session) -> None:
        """End an unconnected session quietly (no alert, no event: it never was a session)."""
        self._sessions.pop(s.peer, None)
        if s.dtls is not None:
            s.dtls.close()
            s.dtls.datagrams_to_send()

    def _judge_wrong_pskc(self, s: _Session, now: float) -> bool:
        """A wrong-PSKc verdict is due for ``s``: whether it may be told (its alert sent)."""
        if not self._pskc_per_source.get(s.source).take(now) or not self._pskc_global.take(now):
            self.counters["pskc_verdicts_withheld"] += 1
            return False
        self.counters["pskc_wrong"] += 1
        return True

    def _after_dtls(self, s: _Session, now: float) -> None:
        assert s.dtls is not None
        for ev in s.dtls.events():
            if isinstance(ev, HandshakeComplete):
                s.connected = True
                s.expires = now + self.session_timeout
                bucket = self._pskc_per_source.peek(s.source)
                if isinstance(bucket, BackoffBucket):  # the source knows the PSKc
                    bucket.reset()
                self.counters["dtls_sessions"] += 1
                self._events.append(SessionEvent(s.peer, "connected"))
            elif isinstance(ev, ApplicationData):
                try:
                    msg = TmfMessage.from_bytes(ev.data)
                except ParseError:
                    continue
                self._handle(s, msg, now)
            elif isinstance(ev, ConnectionClosed | ConnectionFailed):
                detail = ev.error.message if isinstance(ev, ConnectionFailed) else "peer closed"
                tell = True
                if isinstance(ev, ConnectionFailed):
                    self.counters["dtls_failures"] += 1
                    if isinstance(ev.error, DtlsAuthenticationError):
                        tell = self._judge_wrong_pskc(s, now)
                if tell:
                    self._flush(s)
                elif s.dtls is not None:
                    s.dtls.datagrams_to_send()  # the alert is withheld
                self._sessions.pop(s.peer, None)
                self._resign_if_active(s, now)
                kind = "failed" if isinstance(ev, ConnectionFailed) else "closed"
                self._events.append(
                    SessionEvent(s.peer, kind, s.commissioner_id, s.session_id, detail)
                )
                return
        self._flush(s)

    def local_message(self, peer: Peer, msg: TmfMessage, now: float) -> None:
        s = self._sessions.get(peer)
        if s is None or not s.local:
            return
        self._handle(s, msg, now)

    def _flush(self, s: _Session) -> None:
        if s.dtls is not None:
            for d in s.dtls.datagrams_to_send():
                self._datagrams.append((s.peer, d))

    def _send(self, s: _Session, msgs: list[TmfMessage]) -> None:
        for m in msgs:
            if s.dtls is None:
                self._local_out.append((s.peer, m))
                continue
            try:
                s.dtls.send(m.to_bytes())
            except (DtlsError, InvalidArgument):
                return
        self._flush(s)

    # -- CoAP resources -------------------------------------------------------------------------

    def _handle(self, s: _Session, msg: TmfMessage, now: float) -> None:
        inc = s.coap.receive(msg, now)
        if inc.kind == "duplicate":
            self._send(s, list(inc.replies))
            return
        if inc.kind != "request":
            return
        uri = msg.tmf_uri
        try:
            tlvs = msg.tlvs()
        except ParseError:
            self._reply(s, msg, [], now, code=CoapCode.BAD_REQUEST)
            return
        if uri is TmfUri.COMM_PET:
            cid = first_of(tlvs, CommissionerIdTlv)
            if cid is None:
                self._reply(s, msg, [], now, code=CoapCode.BAD_REQUEST)
                return
            # Another session of the same commissioner ID replaces the old one (the leader
            # accepts it); close that old session's claim.
            res = self.leader.petition(cid.value, self.rloc16, now)
            if res.accepted:
                for other in self._sessions.values():
                    if other is not s and other.commissioner_id == cid.value:
                        other.session_id = None
                s.commissioner_id = cid.value
                s.session_id = res.session_id
                s.expires = now + self.session_timeout
                self._events.append(
                    SessionEvent(s.peer, "petition_accepted", cid.value, res.session_id)
                )
            else:
                self._events.append(
                    SessionEvent(
                        s.peer,
                        "petition_rejected",
                        cid.value,
                        None,
                        f"commissioner '{res.active_commissioner_id}' is active",
                    )
                )
            self._reply(s, msg, res.tlvs(), now, separate=True)
            return
        if uri is TmfUri.COMM_KA:
            st = first_of(tlvs, StateTlv)
            sid = first_of(tlvs, CommissionerSessionIdTlv)
            ok = False
            if st is not None and sid is not None and sid.value == s.session_id:
                keep = st.value == State.ACCEPT
                ok = self.leader.keep_alive(sid.value, keep, self.rloc16, now)
                if ok and keep:
                    s.expires = now + self.session_timeout
                elif ok:
                    self._events.append(
                        SessionEvent(s.peer, "resigned", s.commissioner_id, s.session_id)
                    )
                    s.session_id = None
            self._reply(
                s, msg, [StateTlv(State.ACCEPT if ok else State.REJECT)], now, separate=True
            )
            return
        if uri in (TmfUri.MGMT_ACTIVE_GET, TmfUri.MGMT_PENDING_GET, TmfUri.MGMT_COMMISSIONER_GET):
            if self._active_session() is not s:
                # Knowing the PSKc is not enough to read the Network Key: petition first.
                self.counters["requests_refused"] += 1
                self._reply(s, msg, [], now, code=CoapCode.UNAUTHORIZED)
                return
            try:
                if uri is TmfUri.MGMT_ACTIVE_GET:
                    out = filter_get(self.active_dataset().to_tlvs(), msg.payload)
                elif uri is TmfUri.MGMT_PENDING_GET:
                    out = []  # no pending dataset
                else:
                    out = filter_get(self.leader.dataset.to_tlvs(), msg.payload)
            except ParseError:
                self._reply(s, msg, [], now, code=CoapCode.BAD_REQUEST)
                return
            self._reply(s, msg, out, now)
            return
        if uri is TmfUri.MGMT_COMMISSIONER_SET:
            # Sent straight to the border agent by commissioners older than OpenThread's PR
            # #10652 (newer ones tunnel it in UDP_TX): served for the active commissioner.
            if self._active_session() is not s:
                self._reply(s, msg, [StateTlv(State.REJECT)], now)
                return
            rsp = self.leader.handle_tmf(msg, now, source_rloc16=self.rloc16)
            if rsp is not None:
                self._send(s, [rsp])
            return
        if uri in (TmfUri.RLY_TX, TmfUri.UDP_TX):
            if self._active_session() is not s:
                self.counters["requests_refused"] += 1
                return  # notifications: nothing to answer
            if uri is TmfUri.RLY_TX:
                self.counters["relay_tx"] += 1
                self._events.append(RelayTx(tuple(tlvs)))
            else:
                self._udp_tx(s, tlvs, now)
            return
        self.counters["requests_refused"] += 1
        if msg.mtype == MessageType.CON:
            self._reply(s, msg, [], now, code=CoapCode.NOT_FOUND)

    def _reply(
        self,
        s: _Session,
        req: TmfMessage,
        tlvs: Sequence[MeshcopTlv | Tlv],
        now: float,
        *,
        code: int = CoapCode.CHANGED,
        separate: bool = False,
    ) -> None:
        self._send(s, s.coap.respond(req, tlvs, code=code, separate=separate, now=now))

    def _udp_tx(self, s: _Session, tlvs: tuple[MeshcopTlv | Tlv, ...], now: float) -> None:
        enc = first_of(tlvs, UdpEncapsulationTlv)
        dst = first_of(tlvs, Ipv6AddressTlv)
        ds = self.active_dataset()
        mlp = ds.mesh_local_prefix
        if enc is None or dst is None or mlp is None:
            self.counters["udp_tx_unroutable"] += 1
            return
        ours = {aloc(mlp, ALOC16_LEADER), rloc(mlp, self.rloc16)}
        if dst.value not in ours or enc.destination_port != TMF_PORT:
            self.counters["udp_tx_unroutable"] += 1
            return
        try:
            inner = TmfMessage.from_bytes(enc.payload)
        except ParseError:
            self.counters["udp_tx_unroutable"] += 1
            return
        rsp = self.leader.handle_tmf(inner, now, source_rloc16=self.rloc16, active_dataset=ds)
        self.counters["udp_tx_to_leader"] += 1
        if rsp is None:
            return
        udp_rx = [
            UdpEncapsulationTlv(TMF_PORT, enc.source_port, rsp.to_bytes()),
            Ipv6AddressTlv(dst.value),
        ]
        note = s.coap.request(TmfUri.UDP_RX, udp_rx, now=now, confirmable=False,
                              expect_response=False)  # fmt: skip
        self._send(s, [note])

    def relay_rx(self, tlvs: list[MeshcopTlv | Tlv], now: float) -> bool:
        """Forward a joiner router's RLY_RX to the active commissioner (``False``: none)."""
        s = self._active_session()
        if s is None:
            self.counters["relay_rx_no_commissioner"] += 1
            return False
        note = s.coap.request(TmfUri.RLY_RX, tlvs, now=now, confirmable=False,
                              expect_response=False)  # fmt: skip
        self._send(s, [note])
        self.counters["relay_rx_forwarded"] += 1
        return True

    # -- time -----------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        times: list[float] = []
        for s in self._sessions.values():
            if s.expires is not None:
                times.append(s.expires)
            elif not s.connected:
                times.append(s.created + 120.0)  # a handshake that never completes
            if s.dtls is not None:
                t = s.dtls.next_timeout()
                if t is not None:
                    times.append(t)
            if s.held is not None:
                times.append(s.held_until)
        lt = self.leader.next_timeout()
        if lt is not None:
            times.append(lt)
        return min(times, default=None)

    def poll(self, now: float) -> None:
        expired = self.leader.poll(now)
        if expired is not None:
            for s in self._sessions.values():
                if s.session_id == expired.session_id:
                    s.session_id = None
                    self._events.append(
                        SessionEvent(
                            s.peer,
                            "timeout",
                            expired.commissioner_id,
                            expired.session_id,
                            "no keep-alive",
                        )  # fmt: skip
                    )
        for s in list(self._sessions.values()):
            if s.held is not None and now >= s.held_until:
                bucket = self._pskc_per_source.get(s.source)
                if bucket.available(now):
                    held, s.held = s.held, None
                    self._feed(s, held, now)
                    if s.peer not in self._sessions:
                        continue
                else:  # another session of the source took the token first
                    s.held_until = now + bucket.wait_time(now)
            if s.dtls is not None:
                s.dtls.handle_timeout(now)
                self._after_dtls(s, now)
                if s.peer not in self._sessions:
                    continue
            deadline = s.expires if s.expires is not None else s.created + 120.0
            if s.connected or s.expires is not None:
                if s.expires is not None and now >= s.expires:
                    self.close(s.peer, now, "timeout")
            elif now >= deadline:
                self.close(s.peer, now, "timeout")
