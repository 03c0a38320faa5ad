"""The gateway's Thread side as one sans-IO object: Leader (commissioning), Joiner Router on its
own radio, Border Agent for external commissioners, and the native commissioner.

:class:`BorderRouterCore` composes :class:`~gateway.thread.commissioning.leader.CommissioningLeader`,
:class:`~gateway.thread.commissioning.joiner_router.JoinerRouter`,
:class:`~gateway.thread.commissioning.border_agent.BorderAgent`,
:class:`~gateway.thread.policy.UnsecuredPolicer`, :class:`~gateway.thread.link.LinkReceiver` and,
when a technician starts it, a :class:`~gateway.thread.commissioning.commissioner.Commissioner` attached to the
border agent through a local session. The asyncio service (``gateway.border_router``) only moves
bytes: received frames in (:meth:`frame_received`), frames out (:meth:`frames_to_send`), border
agent datagrams both ways, and :meth:`poll` at :meth:`next_timeout`.

Received frames arrive with the security already removed when the radio service could (MAC key,
or the KEK it currently holds); KEK-secured frames it could not open are opened here with the KEK
of the joiner being entrusted (several joiners may be entrusted at once).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import CryptoError, InvalidArgument
from gateway.ratelimit import BucketTable, WarningLimiter
from gateway.thread.commissioning.border_agent import BorderAgent, RelayTx, SessionEvent
from gateway.thread.commissioning.commissioner import (
    Commissioner,
    CommissionerState,
    JoinerEvent,
    RateLimit,
    StateChanged,
    SteeringUpdated,
)
from gateway.thread.commissioning.discovery import NetworkInfo, answer_discovery
from gateway.thread.commissioning.joiner_router import JoinerEntrusted, JoinerRouter
from gateway.thread.commissioning.leader import KEEP_ALIVE_TIMEOUT, CommissioningLeader
from gateway.thread.errors import CommissionerNotActive
from gateway.thread.link import (
    LinkReceiver,
    LinkSecurity,
    RxDatagram,
    TagAllocator,
    TxFrame,
    classify_security,
    encode_datagram,
    unsecure_frame,
)
from gateway.thread.policy import PolicerConfig, UnsecuredPolicer, Verdict
from gateway.wire.dataset import ActiveDataset
from gateway.wire.mac802154 import ExtAddress, MacFrame
from gateway.wire.mle import MLE_PORT

__all__ = ["BorderRouterCore", "LogLine", "OutFrame"]

NATIVE_PEER: Final = ("native", "commissioner")
SUPPRESSED_SUMMARY_EVERY: Final = 60.0  # seconds between "... suppressed" journal lines


def _warning_category(event: object, text: str) -> str:
    """Warnings of one category share a journal budget (they are what a remote peer repeats)."""
    if isinstance(event, SessionEvent):
        return f"border agent: {event.kind}"
    if isinstance(event, JoinerEvent):
        err = type(event.error).__name__ if event.error is not None else ""
        return f"joiner {event.kind} {err}".strip()
    return text.split(":", 1)[0]


@dataclass(frozen=True)
class OutFrame:
    """A frame to transmit; ``kek`` is set for :attr:`LinkSecurity.KEK` frames."""

    tx: TxFrame
    kek: bytes | None = field(default=None, repr=False)
    what: str = ""


@dataclass(frozen=True)
class LogLine:
    """Something worth a log line (and, for the native commissioner, a status entry)."""

    level: str  # info / warning
    text: str
    event: object = None


@dataclass
class _Scheduled:
    due: float
    frames: list[OutFrame]


@dataclass
class BorderRouterCore:
    dataset: ActiveDataset
    ext_addr: ExtAddress
    rloc16: int = 0x0000
    key_sequence: int = 0
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT
    policer_config: PolicerConfig = field(default_factory=PolicerConfig)
    mac_key: bytes | None = field(default=None, repr=False)
    leader: CommissioningLeader = field(init=False)
    joiner_router: JoinerRouter = field(init=False)
    border_agent: BorderAgent = field(init=False)
    policer: UnsecuredPolicer = field(init=False)
    link: LinkReceiver = field(default_factory=LinkReceiver)
    native: Commissioner | None = None
    entrusted: list[JoinerEntrusted] = field(default_factory=list)
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "rx_frames": 0,
            "rx_secured_ignored": 0,
            "rx_kek_unknown": 0,
            "rx_mic_failures": 0,
            "discovery_requests": 0,
            "discovery_responses": 0,
            "discovery_throttled": 0,
            "tx_frames": 0,
        }
    )
    _tags: TagAllocator = field(init=False)
    _out: list[OutFrame] = field(default_factory=list)
    _scheduled: list[_Scheduled] = field(default_factory=list)
    _log: list[LogLine] = field(default_factory=list)
    on_native_event: Callable[[object], None] | None = None
    warnings: WarningLimiter = field(default_factory=WarningLimiter)
    # A joiner sends one Discovery Request per channel and scan pass (300 ms apart): a sender
    # asking faster only makes us talk over the real joiners, so it gets 2 answers a second.
    _discovery_answers: BucketTable = field(default_factory=lambda: BucketTable(2.0, 3.0, 64))
    _clock: float = 0.0
    _summary_due: float | None = None

    def __post_init__(self) -> None:
        if not self.dataset.is_complete:
            raise InvalidArgument(f"the active dataset lacks {', '.join(self.dataset.missing())}")
        assert self.dataset.pskc is not None
        self.leader = CommissioningLeader(rng=self.rng, keep_alive_timeout=self.keep_alive_timeout)
        self.joiner_router = JoinerRouter(
            self.ext_addr, self.rloc16, rng=self.rng, key_sequence=self.key_sequence
        )
        self.border_agent = BorderAgent(
            self.dataset.pskc,
            self.leader,
            lambda: self.dataset,
            rloc16=self.rloc16,
            rng=self.rng,
            session_timeout=self.keep_alive_timeout,
        )
        self.policer = UnsecuredPolicer(self.policer_config)
        self._tags = TagAllocator(self.rng.randrange(0, 0x10000))

    def __repr__(self) -> str:
        return f"BorderRouterCore({self.ext_addr}, joining_allowed={self.joining_allowed})"

    # -- state ----------------------------------------------------------------------------------

    @property
    def pan_id(self) -> int:
        assert self.dataset.pan_id is not None
        return self.dataset.pan_id

    @property
    def joining_allowed(self) -> bool:
        return self.leader.joining_allowed

    def set_dataset(self, dataset: ActiveDataset) -> None:
        """A new active dataset (same network; e.g. a new PSKc)."""
        if not dataset.is_complete:
            raise InvalidArgument(f"the active dataset lacks {', '.join(dataset.missing())}")
        assert dataset.pskc is not None
        self.dataset = dataset
        self.border_agent.pskc = dataset.pskc

    # -- outputs --------------------------------------------------------------------------------

    def frames_to_send(self) -> list[OutFrame]:
        out, self._out = self._out, []
        self.counters["tx_frames"] += len(out)
        return out

    def ba_datagrams(self) -> list[tuple[Any, bytes]]:
        return self.border_agent.datagrams_to_send()

    def log_lines(self) -> list[LogLine]:
        out, self._log = self._log, []
        return out

    def _say(self, text: str, level: str = "info", event: object = None) -> None:
        if level == "warning":
            held = self.warnings.admit(_warning_category(event, text), self._clock)
            if held is None:  # counted; reported by the next line or the periodic summary
                if self._summary_due is None:
                    self._summary_due = self._clock + SUPPRESSED_SUMMARY_EVERY
                return
            if held:
                text += f" ({held} more like this suppressed)"
        self._log.append(LogLine(level, text, event))

    def _summarise_suppressed(self, now: float) -> None:
        if self._summary_due is None or now < self._summary_due:
            return
        pending = self.warnings.take_pending()
        self._summary_due = None
        if pending:
            parts = ", ".join(f"{n} x '{cat}'" for cat, n in sorted(pending.items()))
            self._log.append(LogLine("warning", f"suppressed warnings: {parts}"))

    # -- radio input ----------------------------------------------------------------------------

    def frame_received(
        self,
        frame: MacFrame,
        now: float,
        *,
        plain: MacFrame | None = None,
        rssi: int = 0,
        lqi: int = 0,
        channel: int = 0,
    ) -> Verdict | None:
        """One received frame (``frame`` as on the air; ``plain`` its plaintext when the radio
        service removed the security). Returns the policer's verdict for unsecured frames."""
        self._clock = max(self._clock, now)
        self.counters["rx_frames"] += 1
        sec = classify_security(frame)
        if sec is None:
            self.counters["rx_secured_ignored"] += 1
            return None
        if sec is LinkSecurity.NONE:
            verdict = self.policer.check(
                frame,
                joining_allowed=self.joining_allowed,
                joiner_port=self.leader.joiner_udp_port,
                now=now,
            )
            if verdict is Verdict.ACCEPT:
                dg = self.link.receive(frame, sec, now, rssi=rssi, lqi=lqi, channel=channel)
                if dg is not None:
                    self._unsecured_datagram(dg, now)
            self._flush_ba(now)
            return verdict
        if sec is LinkSecurity.KEK:
            if plain is None:
                if not isinstance(frame.src, ExtAddress):
                    self.counters["rx_kek_unknown"] += 1
                    return None
                kek = self.joiner_router.kek_for(frame.src)
                if kek is None:
                    self.counters["rx_kek_unknown"] += 1
                    return None
                try:
                    plain = unsecure_frame(frame, kek)
                except CryptoError:
                    self.counters["rx_mic_failures"] += 1
                    return None
            dg = self.link.receive(plain, sec, now, rssi=rssi, lqi=lqi, channel=channel)
            if dg is not None:
                ent = self.joiner_router.entrust_response(dg, now)
                if ent is not None:
                    self.entrusted.append(ent)
                    self.policer.forget(ent.joiner)
                    self._say(f"joiner {ent.joiner} acknowledged JOIN_ENT: it holds the "
                              "network credentials", event=ent)  # fmt: skip
                    if self.native is not None and self.on_native_event is not None:
                        self.on_native_event(ent)
            return None
        # Network-key secured traffic needs MLE attach and routing, which come later.
        self.counters["rx_secured_ignored"] += 1
        return None

    def _unsecured_datagram(self, dg: RxDatagram, now: float) -> None:
        udp = dg.udp()
        if udp is None:
            return
        if udp.dst_port == MLE_PORT:
            self.counters["discovery_requests"] += 1
            if not self._discovery_answers.get(dg.src_link).take(now):
                self.counters["discovery_throttled"] += 1
                return
            reply = answer_discovery(
                dg,
                NetworkInfo(
                    ext_pan_id=self.dataset.ext_pan_id or bytes(8),
                    network_name=self.dataset.network_name or "",
                    pan_id=self.pan_id,
                    ext_addr=self.ext_addr,
                ),
                joining_allowed=self.joining_allowed,
                steering_data=self.leader.steering_data,
                joiner_udp_port=self.leader.joiner_udp_port,
                rng=self.rng,
            )
            if reply is None:
                return
            self.counters["discovery_responses"] += 1
            frames = encode_datagram(
                reply.packet,
                src=self.ext_addr,
                dst=reply.dst,
                dst_pan=reply.dst_pan,
                src_pan=self.pan_id,
                tags=self._tags,
            )
            self._scheduled.append(
                _Scheduled(
                    now + reply.delay, [OutFrame(f, None, "discovery response") for f in frames]
                )
            )
            return
        tlvs = self.joiner_router.relay_rx(dg, self.leader.joiner_udp_port)
        if tlvs is not None:
            self.border_agent.relay_rx(tlvs, now)

    # -- border agent ---------------------------------------------------------------------------

    def ba_datagram_received(self, peer: Any, transport_id: bytes, data: bytes, now: float) -> None:
        self._clock = max(self._clock, now)
        self.border_agent.datagram_received(peer, transport_id, data, now)
        self._flush_ba(now)

    def _flush_ba(self, now: float) -> None:
        for ev in self.border_agent.events():
            if isinstance(ev, RelayTx):
                for s in self.joiner_router.relay_tx(ev.tlvs, self.leader.joiner_udp_port, now):
                    self._queue_joiner(s.packet, s.dst, s.security, s.kek, s.what)
            elif isinstance(ev, SessionEvent):
                who = ev.commissioner_id or "a commissioner"
                text = {
                    "connected": f"border agent: DTLS session with {ev.peer} established",
                    "petition_accepted": f"leader: accepted the petition of '{who}' "
                    f"(session {ev.session_id})",
                    "petition_rejected": f"leader: rejected the petition of '{who}': {ev.detail}",
                    "resigned": f"leader: '{who}' resigned",
                    "timeout": f"border agent: session of '{who}' timed out ({ev.detail or 'no keep-alive'})",
                    "closed": f"border agent: session with {ev.peer} closed",
                    "failed": f"border agent: DTLS with {ev.peer} failed: {ev.detail}",
                }.get(ev.kind, f"border agent: {ev.kind}")
                level = (
                    "warning" if ev.kind in ("petition_rejected", "timeout", "failed") else "info"
                )
                self._say(text, level, ev)
        if self.native is not None:
            for _peer, msg in self.border_agent.local_messages():
                self.native.receive_management(msg, now)
            self.pump_native(now)

    def _queue_joiner(
        self, packet: Any, dst: ExtAddress, security: LinkSecurity, kek: bytes | None, what: str
    ) -> None:
        frames = encode_datagram(
            packet, src=self.ext_addr, dst=dst, dst_pan=self.pan_id, security=security,
            tags=self._tags,
        )  # fmt: skip
        self._out.extend(OutFrame(f, kek, what) for f in frames)

    # -- native commissioner --------------------------------------------------------------------

    def commissioner_start(
        self,
        now: float,
        *,
        commissioner_id: str = "Gateway native commissioner",
        keep_alive_interval: float | None = None,
        joiner_session_timeout: float | None = None,
        rate_limit: RateLimit | None = None,
    ) -> Commissioner:
        if self.native is not None and self.native.state is not CommissionerState.DISABLED:
            raise InvalidArgument("the native commissioner is already running")
        kw: dict[str, Any] = {}
        if keep_alive_interval is not None:
            kw["keep_alive_interval"] = keep_alive_interval
        if joiner_session_timeout is not None:
            kw["joiner_session_timeout"] = joiner_session_timeout
        if rate_limit is not None:
            kw["rate_limit"] = rate_limit
        self.native = Commissioner(commissioner_id, rng=self.rng, **kw)
        self.border_agent.open_local(NATIVE_PEER, now)
        self.native.start(now)
        self.pump_native(now)
        return self.native

    def native_active(self) -> Commissioner:
        c = self.native
        if c is None or c.state is not CommissionerState.ACTIVE:
            raise CommissionerNotActive("the native commissioner is not active")
        return c

    def commissioner_stop(self, now: float) -> None:
        c = self.native
        if c is None:
            return
        c.stop(now)
        self.pump_native(now)
        self.border_agent.close(NATIVE_PEER, now, "closed")
        self._flush_ba(now)

    def pump_native(self, now: float) -> None:
        self._clock = max(self._clock, now)
        c = self.native
        if c is None:
            return
        for _ in range(8):  # local round trips settle in a few passes
            msgs = c.management_to_send()
            if not msgs:
                break
            for m in msgs:
                self.border_agent.local_message(NATIVE_PEER, m, now)
            for ba_ev in self.border_agent.events():
                self._handle_ba_event_inline(ba_ev, now)
            for _peer, msg in self.border_agent.local_messages():
                c.receive_management(msg, now)
        for ev in c.events():
            self._native_event(ev)

    def _handle_ba_event_inline(self, ev: object, now: float) -> None:
        if isinstance(ev, RelayTx):
            for s in self.joiner_router.relay_tx(ev.tlvs, self.leader.joiner_udp_port, now):
                self._queue_joiner(s.packet, s.dst, s.security, s.kek, s.what)
        elif isinstance(ev, SessionEvent) and ev.kind in ("petition_rejected", "timeout"):
            self._say(f"leader: {ev.kind.replace('_', ' ')} for '{ev.commissioner_id}'",
                      "warning", ev)  # fmt: skip

    def _native_event(self, ev: object) -> None:
        if isinstance(ev, StateChanged):
            if ev.error is not None:
                self._say(f"native commissioner: {ev.error.message}", "warning", ev)
            else:
                sid = f" (session {ev.session_id})" if ev.session_id is not None else ""
                self._say(f"native commissioner: {ev.state.value}{sid}", event=ev)
        elif isinstance(ev, SteeringUpdated):
            self._say(
                f"native commissioner: steering data {ev.steering_data.hex()} "
                + ("accepted by the leader" if ev.accepted else "NOT accepted"),
                event=ev,
            )
        elif isinstance(ev, JoinerEvent):
            text = f"native commissioner: joiner {ev.kind} {ev.joiner_id.hex()} ({ev.entry})"
            if ev.error is not None:
                text += f": {ev.error.message}"
            elif ev.detail:
                text += f": {ev.detail}"
            self._say(text, "warning" if ev.error else "info", ev)
        if self.on_native_event is not None:
            self.on_native_event(ev)

    # -- time -----------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        times = [s.due for s in self._scheduled]
        if self._summary_due is not None:
            times.append(self._summary_due)
        for t in (
            self.border_agent.next_timeout(),
            self.joiner_router.next_timeout(),
            self.native.next_timeout() if self.native is not None else None,
        ):
            if t is not None:
                times.append(t)
        return min(times, default=None)

    def poll(self, now: float) -> None:
        self._clock = max(self._clock, now)
        self._summarise_suppressed(now)
        due = [s for s in self._scheduled if s.due <= now]
        self._scheduled = [s for s in self._scheduled if s.due > now]
        for sched in sorted(due, key=lambda x: x.due):
            self._out.extend(sched.frames)
        self.link.expire(now)
        self.border_agent.poll(now)
        self._flush_ba(now)
        sends, failed = self.joiner_router.poll(now, self.dataset)
        for s in sends:
            self._queue_joiner(s.packet, s.dst, s.security, s.kek, s.what)
        for f in failed:
            self._say(f"joiner router: entrusting {f.joiner} failed: {f.reason}", "warning", f)
        if self.native is not None:
            self.native.poll(now)
            self.pump_native(now)

    # -- status ---------------------------------------------------------------------------------

    def status(self, now: float) -> dict[str, Any]:
        active = self.leader.active
        out: dict[str, Any] = {
            "leader": {
                "active_commissioner": None
                if active is None
                else {
                    "id": active.commissioner_id,
                    "session_id": active.session_id,
                    "keep_alive_age_s": round(now - active.last_keep_alive, 1),
                },
                "session_id": self.leader.dataset.session_id,
                "steering_data": self.leader.steering_data.hex()
                if self.leader.steering_data is not None
                else None,
                "joiner_udp_port": self.leader.joiner_udp_port,
                "joining_allowed": self.joining_allowed,
            },
            "border_agent": {
                "sessions": self.border_agent.sessions(),
                "counters": dict(self.border_agent.counters),
            },
            "joiner_router": self.joiner_router.stats(),
            "policer": self.policer.stats(),
            "warnings_suppressed": dict(self.warnings.suppressed),
            "link": self.link.stats(),
            "counters": dict(self.counters),
        }
        c = self.native
        out["native_commissioner"] = (
            None
            if c is None
            else {
                "id": c.commissioner_id,
                "state": c.state.value,
                "session_id": c.session_id,
                "steering_data": c.steering_data.hex() if c.steering_data else None,
                "joiners": c.joiner_table(now),
                "joiner_sessions": c.joiner_sessions(now),
                "counters": dict(c.counters),
            }
        )
        return out
