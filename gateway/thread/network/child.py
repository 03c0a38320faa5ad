"""An MTD Thread child (rx-on "MED" or sleepy "SED") as one sans-IO object: what the reference
things run to attach to the gateway -- or to any OpenThread parent (fact sheet §4, §5, §6, §12;
OpenThread ``mle.cpp`` ``Attacher``, ``RetxTracker``, ``PrevRoleRestorer``,
``data_poll_sender.cpp``).

States: ``disabled`` -> ``attaching`` (Parent Requests, then a Child ID Request) -> ``child``;
``restoring`` after a reboot with a saved :class:`~gateway.thread.network.snapshot.ChildNodeSnapshot`
(a Child Update Request with a challenge to the old parent; its answer resumes the old RLOC16);
back to ``attaching`` when the parent stops answering.

* Attach cycle: after 1-750 ms, Parent Requests with scan mask 0x80 (routers) 750 ms apart, then
  0xC0 (routers and REEDs) 1250 ms apart: 6 in the first cycle (2 to routers), 2 later (1).
  After a routers-only window only a link-quality-3 parent is taken; after a 0xC0 window the
  best one (``Attacher::IsBetterParent``). Child ID Request: 3 tries, 1250 +- 125 ms apart.
  A failed cycle backs off 251 ms doubling to 20 min (+ up to 2 s jitter).
* Keep-alive: rx-on children send a Child Update Request ``timeout - 4.02`` s after the last
  answer, retried after 1 s, 4 attempts, then re-attach. Sleepy children poll (MAC Data Request)
  every ``poll_period`` (default ``timeout - 4`` s), 100 ms while attaching or waiting for an
  answer; an ACK with frame pending keeps the receiver on for 100 ms (re-polled up to 4 times);
  4 unacknowledged frames in a row to the parent mean re-attach. With supervision on (default
  129 s), 190 s without a secured frame from the parent start a Child Update Request.

This node owns its radio: frames come out secured (key id mode 1, its own MAC frame counter and
sequence numbers) as :class:`~gateway.thread.network.events.Transmit` actions; report ACKs
with :meth:`ChildCore.tx_done`. Received PSDUs go to :meth:`ChildCore.frame_received`;
:meth:`ChildCore.rx_on` says whether the receiver must listen.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import InvalidArgument, ParseError
from gateway.thread.link import (
    LinkReceiver,
    LinkSecurity,
    RxDatagram,
    TagAllocator,
    TxFrame,
    classify_security,
)
from gateway.thread.network.addressing import (
    MeshAddresses,
    address_registration,
    ext_from_link_local,
    locator_address,
    multicast_scope,
    router_id_of,
    slaac_address,
    slaac_prefixes,
)
from gateway.thread.network.child_table import mode_string
from gateway.thread.network.constants import (
    ATTACH_BACKOFF_JITTER,
    ATTACH_BACKOFF_MAX,
    ATTACH_BACKOFF_MIN,
    ATTACH_DATA_POLL_PERIOD,
    ATTACH_START_JITTER,
    CHALLENGE_LENGTH,
    CHILD_ID_RESPONSE_JITTER,
    CHILD_ID_RESPONSE_TIMEOUT,
    CHILD_TIMEOUT_DEFAULT,
    CHILD_TIMEOUT_MAX,
    CHILD_TIMEOUT_MIN,
    DATA_POLL_TIMEOUT,
    DEFAULT_MESH_LOCAL_PREFIX,
    FAILED_CHILD_TRANSMISSIONS,
    FIRST_CYCLE_PARENT_REQUESTS,
    FIRST_CYCLE_TO_ROUTERS,
    KEEP_ALIVE_MARGIN,
    LATER_CYCLE_PARENT_REQUESTS,
    LATER_CYCLE_TO_ROUTERS,
    MAX_CHALLENGE_LENGTH,
    MAX_CHILD_ID_REQUESTS,
    MAX_CHILD_KEEP_ALIVE_ATTEMPTS,
    MAX_POLL_RETX,
    NOISE_FLOOR_DEFAULT,
    PARENT_REQUEST_REED_TIMEOUT,
    PARENT_REQUEST_ROUTER_TIMEOUT,
    RESTORE_CHILD_UPDATE_ATTEMPTS,
    RESTORE_CHILD_UPDATE_TIMEOUTS,
    SUPERVISION_CHECK_TIMEOUT,
    SUPERVISION_INTERVAL_DEFAULT,
    THREAD_VERSION,
    UNICAST_RETX_DELAY,
    UNICAST_RETX_JITTER,
)
from gateway.thread.network.errors import AddressUnresolved, NetworkConfigError, NotAttached
from gateway.thread.network.events import (
    DatasetReceived,
    Event,
    KeySequenceChanged,
    PingReply,
    RoleChanged,
    SnapshotChanged,
    Transmit,
    UdpReceived,
)
from gateway.thread.network.frames import (
    data_frames,
    data_request_frame,
    mle_frames,
    open_mac,
    protect,
)
from gateway.thread.network.ip6 import (
    Echo,
    MplOption,
    MplSeedSet,
    add_mpl,
    echo_packet,
    parse_echo,
    strip_mpl,
)
from gateway.thread.network.netdata import parse_network_data, serial_newer
from gateway.thread.network.security import (
    Drop,
    KeyManager,
    NeighborCounters,
    ReceivedMle,
    is_mle_datagram,
    link_quality,
    open_mle,
    seal_mle,
)
from gateway.thread.network.snapshot import ChildNodeSnapshot
from gateway.wire.dataset import ActiveDataset
from gateway.wire.ipv6 import PROTO_UDP, Ipv6Packet
from gateway.wire.lowpan import LowpanContext
from gateway.wire.mac802154 import BROADCAST, ExtAddress, MacFrame, ShortAddress
from gateway.wire.meshcop import ActiveTimestampTlv as MeshcopActiveTimestampTlv
from gateway.wire.mle import (
    ActiveDatasetTlv,
    ActiveTimestampTlv,
    Address16Tlv,
    ChallengeTlv,
    ConnectivityTlv,
    LeaderDataTlv,
    LinkFrameCounterTlv,
    LinkMarginTlv,
    MleCommand,
    MleFrameCounterTlv,
    MleMessage,
    MleTlv,
    MleTlvType,
    ModeTlv,
    NetworkDataTlv,
    ResponseTlv,
    ScanMaskTlv,
    SourceAddressTlv,
    StatusTlv,
    SupervisionIntervalTlv,
    TimeoutTlv,
    TlvRequestTlv,
    VersionTlv,
)
from gateway.wire.tlv import Tlv

__all__ = ["ChildConfig", "ChildCore", "ChildRole"]

Addr = ipaddress.IPv6Address
MAX_SLAAC_ADDRESSES: Final = (
    3  # with the ML-EID, the 4 addresses an OpenThread parent keeps per child
)
MAX_CANDIDATES: Final = 8
DATA_REQUEST_DELAY_MAX: Final = 1.0
DATA_REQUEST_DELAY_UNICAST: Final = 0.010
ALL_ROUTERS_LL: Final = Addr("ff02::2")


class ChildRole(enum.Enum):
    DISABLED = "disabled"
    ATTACHING = "attaching"
    RESTORING = "restoring"
    CHILD = "child"


@dataclass(frozen=True)
class ChildConfig:
    rx_on: bool = True
    timeout: int = CHILD_TIMEOUT_DEFAULT
    poll_period: float | None = None  # sleepy: default timeout - 4 s
    full_network_data: bool = False
    supervision_interval: int = SUPERVISION_INTERVAL_DEFAULT  # sleepy: asked of the parent
    noise_floor: int = NOISE_FLOOR_DEFAULT

    def __post_init__(self) -> None:
        if not CHILD_TIMEOUT_MIN <= self.timeout <= CHILD_TIMEOUT_MAX:
            raise NetworkConfigError(
                f"child timeout must be {CHILD_TIMEOUT_MIN}..{CHILD_TIMEOUT_MAX} s"
            )
        if self.poll_period is not None and not 0.01 <= self.poll_period <= self.timeout:
            raise NetworkConfigError("poll period must be 10 ms .. the child timeout")
        if not 0 <= self.supervision_interval <= 0xFFFF:
            raise NetworkConfigError("supervision interval must be 0..65535 s")

    @property
    def mode(self) -> int:
        return ModeTlv.of(
            rx_on_when_idle=self.rx_on,
            full_thread_device=False,
            full_network_data=self.full_network_data,
        ).value

    @property
    def default_poll_period(self) -> float:
        return self.poll_period if self.poll_period is not None else max(1.0, self.timeout - 4.0)


@dataclass
class _Candidate:
    ext: ExtAddress
    rloc16: int
    challenge: bytes
    link_fc: int
    mle_fc: int
    key_sequence: int
    leader_data: LeaderDataTlv
    connectivity: ConnectivityTlv
    version: int
    margin: int  # two-way
    received_fc: int  # MLE counter of the Parent Response itself

    @property
    def lq(self) -> int:
        return link_quality(self.margin)

    @property
    def is_router(self) -> bool:
        return self.rloc16 & 0x1FF == 0

    def rank(self) -> tuple[int, ...]:
        c = self.connectivity
        return (
            self.lq,
            1 if self.is_router else 0,
            c.parent_priority,
            c.link_quality_3,
            self.version,
            c.sed_buffer_size or 1280,
            c.sed_datagram_count or 1,
            c.link_quality_2,
            c.link_quality_1,
            self.margin,
        )


@dataclass
class _Parent:
    ext: ExtAddress
    rloc16: int
    counters: NeighborCounters


@dataclass
class ChildCore:
    dataset: ActiveDataset
    ext_addr: ExtAddress
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    config: ChildConfig = field(default_factory=ChildConfig)
    saved: ChildNodeSnapshot | None = None
    key_sequence: int | None = None
    mle_frame_counter: int | None = None  # pass saved counters reserved ahead
    mac_frame_counter: int | None = None
    role: ChildRole = ChildRole.DISABLED
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        ds = self.dataset
        if ds.network_key is None or ds.pan_id is None:
            raise InvalidArgument("a child needs the network key and PAN ID")
        self.pan_id = ds.pan_id
        self.ml_prefix = ds.mesh_local_prefix or DEFAULT_MESH_LOCAL_PREFIX
        s = self.saved
        seq = self.key_sequence if self.key_sequence is not None else (s.key_sequence if s else 0)
        mle_fc = (
            self.mle_frame_counter
            if self.mle_frame_counter is not None
            else (s.mle_frame_counter if s else 0)
        )
        mac_fc = (
            self.mac_frame_counter
            if self.mac_frame_counter is not None
            else (s.mac_frame_counter if s else 0)
        )
        policy = ds.security_policy
        self.keys = KeyManager(
            ds.network_key,
            seq,
            mle_fc,
            mac_fc,
            rotation_hours=policy.rotation_hours if policy else 672,
        )
        self.ml_eid_iid = bytes.fromhex(s.ml_eid_iid) if s is not None else self.rng.randbytes(8)
        self.rloc16: int | None = None
        self.parent: _Parent | None = None
        self.leader_data: LeaderDataTlv | None = None
        self.network_data = b""
        self.slaac: tuple[Addr, ...] = ()
        self.rx = LinkReceiver()
        self._tags = TagAllocator(self.rng.randrange(0, 0x10000))
        self._mac_seq = self.rng.randrange(0, 256)
        self._handle_seq = itertools.count(1)
        self._handles: dict[int, str] = {}
        self._actions: list[Transmit] = []
        self._events: list[Event] = []
        self._timers: dict[str, float] = {}
        self._candidates: list[_Candidate] = []
        self._challenge = b""
        self._pr_count = 0
        self._pr_total = FIRST_CYCLE_PARENT_REQUESTS
        self._pr_to_routers = FIRST_CYCLE_TO_ROUTERS
        self._phase = "idle"  # attaching: start | parent_request | child_id_request | backoff
        self._cand: _Candidate | None = None
        self._cidreq_count = 0
        self._backoff = ATTACH_BACKOFF_MIN
        self._ka_attempts = 0
        self._restore_attempts = 0
        self._cur_challenge = b""
        self._awaiting_update = False
        self._tx_failures = 0
        self._rx_window_until: float | None = None
        self._poll_retx = 0
        self._last_secure_rx: float | None = None
        self.mpl = MplSeedSet()
        self._mpl_sequence = self.rng.randrange(0, 256)
        self._pings: dict[tuple[int, int], float] = {}
        self._rssi = -20
        self._cand_counters: NeighborCounters | None = None
        self.attached_since: float | None = None
        self._update_contexts()

    def __repr__(self) -> str:
        rloc = "-" if self.rloc16 is None else f"0x{self.rloc16:04x}"
        return f"ChildCore({self.ext_addr}, {self.role.value}, {rloc})"

    # -- properties ------------------------------------------------------------------------------

    @property
    def mode(self) -> int:
        return self.config.mode

    @property
    def sleepy(self) -> bool:
        return not self.config.rx_on

    @property
    def attached(self) -> bool:
        return self.role is ChildRole.CHILD

    @property
    def addresses(self) -> MeshAddresses:
        rloc = self.rloc16 if self.attached else None
        slaac = self.slaac if self.attached else ()
        return MeshAddresses(self.ml_prefix, self.ext_addr, self.ml_eid_iid, rloc, slaac=slaac)

    @property
    def link_local(self) -> Addr:
        return self.addresses.link_local

    @property
    def ml_eid(self) -> Addr:
        return self.addresses.ml_eid

    def rx_on(self, now: float) -> bool:
        """Whether the receiver must listen now: always for rx-on children; for a sleepy one
        while it looks for a parent (until the Child ID Request) and in the window after an ACK
        with frame pending."""
        if self.config.rx_on:
            return self.role is not ChildRole.DISABLED
        if self.role is ChildRole.ATTACHING and self._phase in ("start", "parent_request"):
            return True
        return self._rx_window_until is not None and now < self._rx_window_until

    def _contexts(self) -> dict[int, LowpanContext]:
        ctx: dict[int, LowpanContext] = {}
        try:
            ctx.update(parse_network_data(self.network_data).contexts())
        except ParseError:
            pass
        ctx[0] = LowpanContext(ipaddress.IPv6Network((bytes(self.ml_prefix) + bytes(8), 64)))
        return ctx

    def _update_contexts(self) -> None:
        self.rx.contexts = self._contexts()

    def _slaac_update(self) -> bool:
        """Form the SLAAC (OMR) addresses the Network Data asks for; True when they changed."""
        try:
            prefixes = slaac_prefixes(parse_network_data(self.network_data))
        except ParseError:
            prefixes = ()
        new = tuple(slaac_address(p, self.ml_eid_iid) for p in prefixes[:MAX_SLAAC_ADDRESSES])
        if new == self.slaac:
            return False
        self.slaac = new
        return True

    # -- outputs ---------------------------------------------------------------------------------

    def actions(self) -> list[Transmit]:
        out, self._actions = self._actions, []
        return out

    def events(self) -> list[Event]:
        for seq in self.keys.take_switches():
            self._events.append(KeySequenceChanged(seq, "key switch"))
            self._events.append(SnapshotChanged("key sequence"))
        out, self._events = self._events, []
        return out

    def _transmit(self, tx: TxFrame, kind: str, what: str) -> None:
        frame = protect(tx, self.keys, self.ext_addr, self._mac_seq)
        self._mac_seq = (self._mac_seq + 1) & 0xFF
        handle = next(self._handle_seq)
        if frame.ack_request:
            self._handles[handle] = kind
            if len(self._handles) > 256:
                self._handles.pop(next(iter(self._handles)))
        self._actions.append(Transmit(frame.to_bytes(), frame.ack_request, handle, what))
        self.counters["tx_frames"] += 1

    def _send_mle(self, dst: Addr, msg: MleMessage, what: str) -> None:
        packet = seal_mle(msg, self.keys, self.link_local, dst)
        mac_dst: ExtAddress | ShortAddress
        if dst.is_multicast:
            mac_dst = BROADCAST
        else:
            ext = ext_from_link_local(dst)
            if ext is None:
                raise InvalidArgument("MLE goes to a link-local address")
            mac_dst = ext
        for tx in mle_frames(
            packet,
            src=self.ext_addr,
            dst=mac_dst,
            pan_id=self.pan_id,
            tags=self._tags,
            key_index=self.keys.mac_key_index,
        ):
            self._transmit(tx, "mle", what)
        self.counters["mle_tx"] += 1

    def _parent_ll(self) -> Addr:
        assert self.parent is not None
        return Addr(b"\xfe\x80" + bytes(6) + self.parent.ext.iid())

    # -- start and attach ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self.role is not ChildRole.DISABLED:
            raise InvalidArgument("the child was already started")
        self.keys.start(now)
        s = self.saved
        if s is not None and s.mode == self.mode and s.rloc16 & 0x1FF:
            self.parent = _Parent(
                ExtAddress.from_hex(s.parent_ext),
                s.parent_rloc16,
                NeighborCounters(self.keys.key_sequence),
            )
            self.rloc16 = s.rloc16
            self.role = ChildRole.RESTORING
            self._restore_attempts = 0
            self._timers["restore"] = now
            self._events.append(RoleChanged("restoring", self.rloc16, parent=self.parent.ext))
        else:
            self._begin_attach(now, first=True)

    def stop(self, now: float) -> None:
        """Leave the network: a graceful detach (Child Update Request with timeout 0) when
        attached, then disabled."""
        if self.attached and self.parent is not None:
            self._send_mle(
                self._parent_ll(),
                MleMessage(
                    MleCommand.CHILD_UPDATE_REQUEST,
                    (
                        ModeTlv(self.mode),
                        SourceAddressTlv(self.rloc16 or 0xFFFE),
                        self.leader_data or LeaderDataTlv(0),
                        TimeoutTlv(0),
                    ),
                ),
                "child update request (detach)",
            )
        self.role = ChildRole.DISABLED
        self._timers.clear()
        self._events.append(RoleChanged("disabled", None))

    def _begin_attach(self, now: float, *, first: bool) -> None:
        was = self.role
        self.role = ChildRole.ATTACHING
        self._phase = "start"
        self._pr_count = 0
        self._pr_total = FIRST_CYCLE_PARENT_REQUESTS if first else LATER_CYCLE_PARENT_REQUESTS
        self._pr_to_routers = FIRST_CYCLE_TO_ROUTERS if first else LATER_CYCLE_TO_ROUTERS
        self._candidates = []
        self._cand = None
        self._timers.clear()
        self._timers["attach"] = now + self.rng.uniform(0.001, ATTACH_START_JITTER)
        self._rx_window_until = None
        self.counters["attach_attempts"] += 1
        if was is not ChildRole.ATTACHING:
            self._events.append(RoleChanged("detached", None))

    def _detach(self, now: float, reason: str) -> None:
        self.counters[f"detach_{reason}"] += 1
        self.parent = None
        self.rloc16 = None
        self.attached_since = None
        self._tx_failures = 0
        self._begin_attach(now, first=True)

    def _attach_timer(self, now: float) -> None:
        if self._phase == "backoff":
            self._begin_attach(now, first=False)
            return
        if self._phase == "child_id_request":
            if self._cidreq_count < MAX_CHILD_ID_REQUESTS:
                self._send_child_id_request(now)
            else:
                self.counters["child_id_request_failed"] += 1
                self._cycle_failed(now)
            return
        if self._pr_count > 0:
            best = max(self._candidates, key=_Candidate.rank, default=None)
            routers_only = self._pr_count <= self._pr_to_routers
            if best is not None and (not routers_only or best.lq == 3):
                self._cand = best
                self._cand_counters = None
                self._cidreq_count = 0
                self._phase = "child_id_request"
                self._send_child_id_request(now)
                return
        if self._pr_count < self._pr_total:
            to_routers = self._pr_count < self._pr_to_routers
            self._send_parent_request(to_routers)
            self._pr_count += 1
            self._phase = "parent_request"
            wait = PARENT_REQUEST_ROUTER_TIMEOUT if to_routers else PARENT_REQUEST_REED_TIMEOUT
            self._timers["attach"] = now + wait
            return
        self._cycle_failed(now)

    def _cycle_failed(self, now: float) -> None:
        self.counters["attach_cycles_failed"] += 1
        self._phase = "backoff"
        self._candidates = []
        self._cand = None
        self._timers.pop("poll", None)
        self._timers["attach"] = now + self._backoff + self.rng.uniform(0, ATTACH_BACKOFF_JITTER)
        self._backoff = min(self._backoff * 2, ATTACH_BACKOFF_MAX)

    def _send_parent_request(self, to_routers: bool) -> None:
        self._challenge = self.rng.randbytes(CHALLENGE_LENGTH)
        msg = MleMessage(
            MleCommand.PARENT_REQUEST,
            (
                ModeTlv(self.mode),
                ChallengeTlv(self._challenge),
                ScanMaskTlv.of(router=True, end_device=not to_routers),
                VersionTlv(THREAD_VERSION),
            ),
        )
        self._send_mle(ALL_ROUTERS_LL, msg, "parent request")
        self.counters["parent_requests"] += 1

    def _registration(self, *, ml_eid_only: bool = False) -> MleTlv:
        return address_registration(
            self.ml_eid, self.slaac, contexts=self._contexts(), ml_eid_only=ml_eid_only
        )

    def _send_child_id_request(self, now: float) -> None:
        cand = self._cand
        assert cand is not None
        self._cidreq_count += 1
        tlvs: list[MleTlv | Tlv] = [
            ResponseTlv(cand.challenge),
            LinkFrameCounterTlv(self.keys.mac_frame_counter),
            MleFrameCounterTlv(self.keys.mle_frame_counter),
            ModeTlv(self.mode),
            TimeoutTlv(self.config.timeout),
            VersionTlv(THREAD_VERSION),
        ]
        if self.sleepy:
            tlvs.append(SupervisionIntervalTlv(self.config.supervision_interval))
        tlvs.append(self._registration())
        tlvs.append(TlvRequestTlv((MleTlvType.ADDRESS16, MleTlvType.NETWORK_DATA)))
        ts = self.dataset.active_timestamp
        if ts is not None:
            tlvs.append(ActiveTimestampTlv(ts))
        msg = MleMessage(MleCommand.CHILD_ID_REQUEST, tuple(tlvs))
        self._send_mle(Addr(b"\xfe\x80" + bytes(6) + cand.ext.iid()), msg, "child id request")
        self.counters["child_id_requests"] += 1
        wait = CHILD_ID_RESPONSE_TIMEOUT + self.rng.uniform(
            -CHILD_ID_RESPONSE_JITTER, CHILD_ID_RESPONSE_JITTER
        )
        self._timers["attach"] = now + wait
        if self.sleepy:
            self._timers["poll"] = now + ATTACH_DATA_POLL_PERIOD

    # -- radio input -----------------------------------------------------------------------------

    def frame_received(
        self, psdu: bytes | MacFrame, now: float, *, rssi: int = -20, fcs: bool = True
    ) -> None:
        """A received frame (a PSDU with FCS, or a parsed frame). Never raises for bytes."""
        if self.role is ChildRole.DISABLED:
            return
        if isinstance(psdu, MacFrame):
            frame = psdu
        else:
            try:
                frame = MacFrame.from_bytes(psdu, fcs=fcs)
            except ParseError:
                self.counters["rx_malformed"] += 1
                return
        self.counters["rx_frames"] += 1
        self._rssi = rssi
        me = {self.ext_addr, BROADCAST}
        if self.rloc16 is not None:
            me.add(ShortAddress(self.rloc16))
        if frame.dst not in me or frame.dst_pan not in (self.pan_id, 0xFFFF):
            self.counters["rx_not_for_us"] += 1
            return
        if frame.src == self.ext_addr:
            return
        sec = classify_security(frame)
        if sec is LinkSecurity.NONE:
            dg = self.rx.receive(frame, sec, now, rssi=rssi)
            if dg is not None and is_mle_datagram(dg.packet):
                self._mle(dg, now)
            return
        if sec is not LinkSecurity.MAC:
            self.counters["rx_security_ignored"] += 1
            return
        neighbor = self._mac_neighbor(frame)
        if neighbor is None:
            self.counters["rx_unknown_neighbor"] += 1
            return
        ext, counters = neighbor
        try:
            plain, seq = open_mac(frame, self.keys, ext)
        except Drop as d:
            self.counters[d.reason] += 1
            return
        assert frame.security is not None
        fc = frame.security.frame_counter or 0
        verdict = counters.check(seq, fc, mle=False)
        if verdict != "ok":
            self.counters[f"mac_{verdict}"] += 1
            return
        counters.accept(seq, fc, mle=False)
        if seq > self.keys.key_sequence:
            self.keys.process_peer_key_sequence(
                seq, now, authoritative=False, from_valid_neighbor=self.attached
            )
        self._last_secure_rx = now
        self._data_from_parent(plain.frame_pending, now)
        if not plain.payload:
            self.counters["rx_empty_frames"] += 1
            return
        dg = self.rx.receive(plain, LinkSecurity.MAC, now, rssi=rssi)
        if dg is None:
            return
        if is_mle_datagram(dg.packet):
            self._mle(dg, now)
        else:
            self._ip_in(dg, now)

    def _mac_neighbor(self, frame: MacFrame) -> tuple[ExtAddress, NeighborCounters] | None:
        if self.parent is not None:
            p = self.parent
            if frame.src == p.ext or frame.src == ShortAddress(p.rloc16):
                return p.ext, p.counters
        cand = self._cand
        if cand is not None and self._phase == "child_id_request" and frame.src == cand.ext:
            if self._cand_counters is None:
                self._cand_counters = NeighborCounters(
                    cand.key_sequence, cand.received_fc + 1, cand.link_fc
                )
            return cand.ext, self._cand_counters
        return None

    def _data_from_parent(self, frame_pending: bool, now: float) -> None:
        """A secured frame from the parent arrived: a sleepy child polls again at once when it
        says more is pending, else its receiver goes back off."""
        if not self.sleepy:
            return
        self._poll_retx = 0
        if frame_pending:
            self._timers["poll_now"] = now
            self._rx_window_until = now + DATA_POLL_TIMEOUT
        else:
            self._rx_window_until = None
            self._timers.pop("rx_window", None)

    def tx_done(self, handle: int, acked: bool, now: float, *, frame_pending: bool = False) -> None:
        """The outcome of a :class:`Transmit` with ``ack_request`` (``frame_pending`` = the FP
        bit of the ACK)."""
        kind = self._handles.pop(handle, None)
        if kind is None:
            return
        if acked:
            self._tx_failures = 0
        else:
            self._tx_failures += 1
            self.counters["tx_no_ack"] += 1
            if self._tx_failures >= FAILED_CHILD_TRANSMISSIONS and self.attached:
                self._detach(now, "parent_unreachable")
                return
        if kind == "poll":
            if acked and frame_pending:
                self._rx_window_until = now + DATA_POLL_TIMEOUT
                self._timers["rx_window"] = self._rx_window_until
            else:
                self._rx_window_until = None

    # -- MLE ---------------------------------------------------------------------------------------

    def _mle(self, dg: RxDatagram, now: float) -> None:
        try:
            rm = open_mle(dg, self.keys)
        except Drop as d:
            self.counters[d.reason] += 1
            return
        self.counters["mle_rx"] += 1
        cmd = rm.message.command
        try:
            if cmd == MleCommand.PARENT_RESPONSE:
                self._parent_response(rm, now)
                return
            counters = self._mle_counters(rm)
            if counters is None:
                raise Drop("mle_not_from_parent")
            verdict = counters.check(rm.key_sequence, rm.frame_counter, mle=True)
            if verdict != "ok":
                raise Drop(f"mle_{verdict}")
            counters.accept(rm.key_sequence, rm.frame_counter, mle=True)
            if cmd == MleCommand.CHILD_ID_RESPONSE:
                self._child_id_response(rm, now)
            elif cmd == MleCommand.CHILD_UPDATE_RESPONSE:
                self._child_update_response(rm, now)
            elif cmd == MleCommand.CHILD_UPDATE_REQUEST:
                self._child_update_request(rm, now)
            elif cmd in (MleCommand.DATA_RESPONSE, MleCommand.ADVERTISEMENT):
                self._leader_update(rm, now, cmd == MleCommand.DATA_RESPONSE)
            else:
                self.counters["mle_ignored"] += 1
        except Drop as d:
            self.counters[d.reason] += 1

    def _mle_counters(self, rm: ReceivedMle) -> NeighborCounters | None:
        if self.parent is not None and rm.sender == self.parent.ext:
            return self.parent.counters
        cand = self._cand
        if cand is not None and rm.sender == cand.ext and self._phase == "child_id_request":
            if self._cand_counters is None:
                self._cand_counters = NeighborCounters(
                    cand.key_sequence, cand.received_fc + 1, cand.link_fc
                )
            return self._cand_counters
        return None

    def _parent_response(self, rm: ReceivedMle, now: float) -> None:
        if self.role is not ChildRole.ATTACHING or self._phase != "parent_request":
            raise Drop("parent_response_unexpected")
        m = rm.message
        resp = m.get(ResponseTlv)
        if resp is None or len(resp.value) != CHALLENGE_LENGTH or resp.value != self._challenge:
            raise Drop("parent_response_bad_response")
        src, version, ld = m.get(SourceAddressTlv), m.get(VersionTlv), m.get(LeaderDataTlv)
        margin_tlv, conn = m.get(LinkMarginTlv), m.get(ConnectivityTlv)
        link_fc, mle_fc, challenge = (
            m.get(LinkFrameCounterTlv),
            m.get(MleFrameCounterTlv),
            m.get(ChallengeTlv),
        )
        if None in (src, version, ld, margin_tlv, conn, link_fc, challenge):
            raise Drop("parent_response_malformed")
        assert src is not None and version is not None and ld is not None
        assert margin_tlv is not None and conn is not None and link_fc is not None
        assert challenge is not None
        if version.value < 2:
            raise Drop("parent_response_malformed")
        # authoritative: a larger key sequence is adopted
        self.keys.process_peer_key_sequence(
            rm.key_sequence, now, authoritative=True, from_valid_neighbor=False
        )
        own = max(0, self._rssi - self.config.noise_floor)
        cand = _Candidate(
            rm.sender,
            src.value,
            challenge.value[:MAX_CHALLENGE_LENGTH],
            link_fc.value,
            mle_fc.value if mle_fc is not None else link_fc.value,
            rm.key_sequence,
            ld,
            conn,
            version.value,
            min(own, margin_tlv.value),
            rm.frame_counter,
        )
        self._candidates = [c for c in self._candidates if c.ext != cand.ext]
        self._candidates.append(cand)
        if len(self._candidates) > MAX_CANDIDATES:
            self._candidates.remove(min(self._candidates, key=_Candidate.rank))
        self.counters["parent_responses"] += 1

    def _child_id_response(self, rm: ReceivedMle, now: float) -> None:
        cand = self._cand
        if (
            self.role is not ChildRole.ATTACHING
            or self._phase != "child_id_request"
            or cand is None
        ):
            raise Drop("child_id_response_unexpected")
        m = rm.message
        src, a16, ld, nd = (
            m.get(SourceAddressTlv),
            m.get(Address16Tlv),
            m.get(LeaderDataTlv),
            m.get(NetworkDataTlv),
        )
        if src is None or a16 is None or ld is None or nd is None:
            raise Drop("child_id_response_malformed")
        if router_id_of(a16.value) != router_id_of(cand.rloc16) or not a16.value & 0x1FF:
            raise Drop("child_id_response_bad_address16")
        try:
            parse_network_data(nd.value)
        except ParseError:
            raise Drop("child_id_response_bad_network_data") from None
        ats, ads = m.get(ActiveTimestampTlv), m.get(ActiveDatasetTlv)
        if ats is not None and ads is not None and ats.value != self.dataset.active_timestamp:
            self._dataset_from_parent(ats, ads)
        self.keys.process_peer_key_sequence(
            rm.key_sequence, now, authoritative=False, from_valid_neighbor=True
        )
        assert self._cand_counters is not None
        self.parent = _Parent(cand.ext, src.value, self._cand_counters)
        self._cand_counters = None
        self._cand = None
        self._candidates = []
        self.rloc16 = a16.value
        self.leader_data = ld
        self.network_data = nd.value
        self._update_contexts()
        self._slaac_update()
        self._became_child(now, "child id response")
        if self.slaac:  # register the OMR addresses the Network Data gave us
            self._send_child_update_request(now)

    def _dataset_from_parent(self, ats: ActiveTimestampTlv, ads: ActiveDatasetTlv) -> None:
        raw = MeshcopActiveTimestampTlv(ats.value).to_bytes() + ads.value
        try:
            ds = ActiveDataset.from_bytes(raw)
        except (ParseError, InvalidArgument):
            self.counters["dataset_malformed"] += 1
            return
        if ds.network_key is not None and ds.network_key != self.dataset.network_key:
            self.counters["dataset_other_key"] += 1
            return
        self.dataset = ds
        if ds.mesh_local_prefix is not None and ds.mesh_local_prefix != self.ml_prefix:
            self.ml_prefix = ds.mesh_local_prefix
        self._events.append(DatasetReceived(raw))

    def _became_child(self, now: float, how: str) -> None:
        self.role = ChildRole.CHILD
        self._phase = "idle"
        self._timers.clear()
        self._backoff = ATTACH_BACKOFF_MIN
        self._ka_attempts = 0
        self._awaiting_update = False
        self._tx_failures = 0
        self._last_secure_rx = now
        self.attached_since = now
        self._schedule_keep_alive(now)
        assert self.parent is not None
        self._events.append(RoleChanged("child", self.rloc16, parent=self.parent.ext))
        self._events.append(SnapshotChanged(how))
        self.counters["attached"] += 1

    def _schedule_keep_alive(self, now: float) -> None:
        if self.sleepy:
            self._timers["poll"] = now + self.config.default_poll_period
            if self.config.supervision_interval:
                self._timers["supervision"] = (self._last_secure_rx or now) + self._check_timeout
        else:
            self._timers["keep_alive"] = now + max(1.0, self.config.timeout - KEEP_ALIVE_MARGIN)

    # Child Update ------------------------------------------------------------------------------

    def _send_child_update_request(
        self, now: float, *, challenge: bool = False, restoring: bool = False
    ) -> None:
        if self.parent is None:
            return
        tlvs: list[MleTlv | Tlv] = [ModeTlv(self.mode)]
        if challenge:
            self._cur_challenge = self.rng.randbytes(CHALLENGE_LENGTH)
            tlvs.append(ChallengeTlv(self._cur_challenge))
        else:
            self._cur_challenge = b""
        if restoring:
            tlvs.append(self._registration(ml_eid_only=True))
        else:
            assert self.rloc16 is not None
            tlvs += [
                SourceAddressTlv(self.rloc16),
                self.leader_data or LeaderDataTlv(0),
                TimeoutTlv(self.config.timeout),
            ]
            if self.sleepy:
                tlvs.append(SupervisionIntervalTlv(self.config.supervision_interval))
            tlvs.append(self._registration())
        self._send_mle(
            self._parent_ll(),
            MleMessage(MleCommand.CHILD_UPDATE_REQUEST, tuple(tlvs)),
            "child update request",
        )
        self._awaiting_update = True
        self.counters["child_update_requests"] += 1
        if self.sleepy:
            self._timers["poll"] = now + ATTACH_DATA_POLL_PERIOD

    def _child_update_response(self, rm: ReceivedMle, now: float) -> None:
        m = rm.message
        status = m.get(StatusTlv)
        if status is not None:
            self.counters["child_update_rejected"] += 1
            self._detach(now, "rejected_by_parent")
            return
        mode, src, ld = m.get(ModeTlv), m.get(SourceAddressTlv), m.get(LeaderDataTlv)
        if mode is None or mode.value != self.mode:
            raise Drop("child_update_response_mode_mismatch")
        if (
            self.parent is None
            or src is None
            or ld is None
            or router_id_of(src.value) != router_id_of(self.parent.rloc16)
        ):
            raise Drop("child_update_response_malformed")
        resp = m.get(ResponseTlv)
        if self._cur_challenge:
            if resp is None or resp.value != self._cur_challenge:
                raise Drop("child_update_response_bad_response")
            link_fc, mle_fc = m.get(LinkFrameCounterTlv), m.get(MleFrameCounterTlv)
            if link_fc is None or mle_fc is None:
                raise Drop("child_update_response_malformed")
            self.parent.counters.set(
                rm.key_sequence, mle=max(mle_fc.value, rm.frame_counter + 1), mac=link_fc.value
            )
            self.keys.process_peer_key_sequence(
                rm.key_sequence, now, authoritative=True, from_valid_neighbor=True
            )
        elif not self._awaiting_update and self.role is not ChildRole.CHILD:
            raise Drop("child_update_response_unexpected")
        self._apply_leader_data(ld, m.get(NetworkDataTlv), now)
        self._awaiting_update = False
        self._cur_challenge = b""
        self._ka_attempts = 0
        self._timers.pop("retx", None)
        if self.role is ChildRole.RESTORING:
            self.parent.rloc16 = src.value
            self._became_child(now, "restored")
            return
        self._last_secure_rx = now
        self._schedule_keep_alive(now)

    def _child_update_request(self, rm: ReceivedMle, now: float) -> None:
        """The parent's Child Update Request (new Network Data, or it restored us after its
        own restart): answer with Source Address, Leader Data, [Response + counters] and what
        it asks for."""
        m = rm.message
        if self.parent is None or self.role not in (ChildRole.CHILD, ChildRole.RESTORING):
            raise Drop("child_update_request_unexpected")
        ld = m.get(LeaderDataTlv)
        if ld is not None:
            self._apply_leader_data(ld, m.get(NetworkDataTlv), now)
        challenge = m.get(ChallengeTlv)
        tlvs: list[MleTlv | Tlv] = [
            SourceAddressTlv(self.rloc16 or 0xFFFE),
            self.leader_data or LeaderDataTlv(0),
        ]
        if challenge is not None:
            tlvs += [
                ResponseTlv(challenge.value[:MAX_CHALLENGE_LENGTH]),
                MleFrameCounterTlv(self.keys.mle_frame_counter),
                LinkFrameCounterTlv(self.keys.mac_frame_counter),
            ]
        req = m.get(TlvRequestTlv)
        if req is not None:
            if MleTlvType.TIMEOUT in req.value:
                tlvs.append(TimeoutTlv(self.config.timeout))
            if MleTlvType.ADDRESS_REGISTRATION in req.value:
                tlvs.append(self._registration())
        self._send_mle(
            self._parent_ll(),
            MleMessage(MleCommand.CHILD_UPDATE_RESPONSE, tuple(tlvs)),
            "child update response",
        )
        self._last_secure_rx = now
        if self.role is ChildRole.RESTORING and challenge is not None:
            self._became_child(now, "restored by the parent")

    def _version(self, ld: LeaderDataTlv) -> int:
        return ld.data_version if self.config.full_network_data else ld.stable_data_version

    def _apply_leader_data(self, ld: LeaderDataTlv, nd: NetworkDataTlv | None, now: float) -> None:
        """Take the Network Data that comes with ``ld`` unless it is older than ours; without
        Network Data, a newer version or another partition/leader means a Data Request."""
        old = self.leader_data
        moved = (
            old is None
            or old.partition_id != ld.partition_id
            or old.leader_router_id != ld.leader_router_id
        )
        if nd is not None and (
            moved or old is None or not serial_newer(self._version(old), self._version(ld))
        ):
            try:
                parse_network_data(nd.value)
            except ParseError:
                self.counters["network_data_malformed"] += 1
                return
            self.network_data = nd.value
            self.leader_data = ld
            self._update_contexts()
            self._timers.pop("data_request", None)
            if self._slaac_update() and self.attached:
                self._send_child_update_request(now)
            return
        if moved or (old is not None and serial_newer(self._version(ld), self._version(old))):
            if moved:
                self.leader_data = ld
            self._timers["data_request"] = now + DATA_REQUEST_DELAY_UNICAST

    def _leader_update(self, rm: ReceivedMle, now: float, data_response: bool) -> None:
        """An Advertisement or Data Response from the parent: take new Network Data, or ask for
        it (Data Request after up to 1 s) when the versions show it is newer."""
        if not self.attached:
            return
        m = rm.message
        ld = m.get(LeaderDataTlv)
        if ld is None:
            raise Drop("leader_data_missing")
        self._last_secure_rx = now
        nd = m.get(NetworkDataTlv)
        if data_response and nd is not None:
            self._apply_leader_data(ld, nd, now)
            self._timers.pop("data_request", None)
            return
        old = self.leader_data
        if old is None or "data_request" in self._timers:
            return
        moved = old.partition_id != ld.partition_id or old.leader_router_id != ld.leader_router_id
        if moved or serial_newer(self._version(ld), self._version(old)):
            delay = (
                self.rng.uniform(0.0, DATA_REQUEST_DELAY_MAX)
                if rm.dst.is_multicast
                else DATA_REQUEST_DELAY_UNICAST
            )
            self._timers["data_request"] = now + delay

    def _send_data_request(self) -> None:
        if self.parent is None:
            return
        tlvs: list[MleTlv | Tlv] = [TlvRequestTlv((MleTlvType.NETWORK_DATA,))]
        ts = self.dataset.active_timestamp
        if ts is not None:
            tlvs.append(ActiveTimestampTlv(ts))
        self._send_mle(
            self._parent_ll(), MleMessage(MleCommand.DATA_REQUEST, tuple(tlvs)), "data request"
        )
        self.counters["data_requests"] += 1

    # -- polls -----------------------------------------------------------------------------------

    def _send_poll(self, now: float) -> None:
        p_ext: ExtAddress | None = None
        p_short: int | None = None
        if self.parent is not None:
            p_ext, p_short = self.parent.ext, self.parent.rloc16
        elif self._cand is not None:
            p_ext = self._cand.ext
        if p_ext is None:
            return
        if self.attached and self.rloc16 is not None and p_short is not None:
            src: ExtAddress | ShortAddress = ShortAddress(self.rloc16)
            dst: ExtAddress | ShortAddress = ShortAddress(p_short)
        else:
            src, dst = self.ext_addr, p_ext
        self._transmit(data_request_frame(src=src, dst=dst, pan_id=self.pan_id), "poll", "poll")
        self.counters["data_polls"] += 1

    @property
    def _check_timeout(self) -> float:
        """The supervision listener's timeout: 190 s, but never shorter than a poll period plus
        the poll retries (a SED only hears its parent when it polls)."""
        return max(float(SUPERVISION_CHECK_TIMEOUT), self.config.default_poll_period + 4.0)

    def _poll_period(self) -> float:
        if (
            self.role is ChildRole.ATTACHING
            or self._awaiting_update
            or self.role is ChildRole.RESTORING
        ):
            return ATTACH_DATA_POLL_PERIOD
        return self.config.default_poll_period

    # -- IPv6 ------------------------------------------------------------------------------------

    def _ip_in(self, dg: RxDatagram, now: float) -> None:
        try:
            mpl, packet = strip_mpl(dg.packet)
        except ParseError:
            self.counters["ip_malformed"] += 1
            return
        if mpl is not None:
            seed = packet.src.packed if mpl.seed is None else mpl.seed.to_bytes(2, "big")
            if self.mpl.seen(seed, mpl.sequence, now):
                self.counters["mpl_duplicates"] += 1
                return
        if not self.addresses.is_own(packet.dst):
            self.counters["ip_not_for_us"] += 1
            return
        self.counters["ip_rx"] += 1
        try:
            echo = parse_echo(packet)
        except ParseError:
            self.counters["icmp_malformed"] += 1
            return
        if echo is not None:
            if echo.request:
                src = packet.dst
                if src.is_multicast:
                    src = self.link_local if packet.src.is_link_local else self.ml_eid
                self._send_ip(
                    echo_packet(
                        src, packet.src, Echo(False, echo.identifier, echo.sequence, echo.data)
                    ),
                    now,
                )
                self.counters["echo_requests"] += 1
            else:
                sent = self._pings.pop((echo.identifier, echo.sequence), None)
                self._events.append(
                    PingReply(
                        packet.src,
                        echo.identifier,
                        echo.sequence,
                        len(echo.data),
                        packet.hop_limit,
                        None if sent is None else now - sent,
                    )
                )
            return
        if packet.next_header == PROTO_UDP:
            try:
                udp = packet.udp_datagram()
            except ParseError:
                self.counters["udp_malformed"] += 1
                return
            self._events.append(
                UdpReceived(packet.src, packet.dst, udp.src_port, udp.dst_port, udp.payload)
            )

    def _send_ip(self, packet: Ipv6Packet, now: float) -> None:
        """Everything goes to the parent as a MAC unicast (§12.8)."""
        if not self.attached or self.parent is None or self.rloc16 is None:
            raise NotAttached("the child is not attached")
        if packet.dst.is_multicast and multicast_scope(packet.dst) >= 3:
            seq = self._mpl_sequence
            self._mpl_sequence = (seq + 1) & 0xFF
            rloc = locator_address(self.ml_prefix, self.rloc16)
            seed = None if packet.src == rloc else self.rloc16
            self.mpl.seen(packet.src.packed if seed is None else seed.to_bytes(2, "big"), seq, now)
            packet = add_mpl(packet, MplOption(seq, seed))
        src: ExtAddress | ShortAddress = (
            self.ext_addr if packet.src == self.link_local else ShortAddress(self.rloc16)
        )
        dst: ExtAddress | ShortAddress = ShortAddress(self.parent.rloc16)
        if packet.dst.is_link_local and packet.dst == self._parent_ll():
            dst = self.parent.ext
        try:
            frames = data_frames(
                packet,
                src=src,
                dst=dst,
                pan_id=self.pan_id,
                tags=self._tags,
                key_index=self.keys.mac_key_index,
                contexts=self._contexts(),
            )
        except InvalidArgument:
            self.counters["ip_too_big"] += 1
            return
        for tx in frames:
            self._transmit(tx, "data", "ipv6")
        self.counters["ip_tx"] += 1

    def send_ip6(self, packet: Ipv6Packet, now: float) -> None:
        self._send_ip(packet, now)

    def send_udp(
        self,
        dst: Addr | str,
        src_port: int,
        dst_port: int,
        payload: bytes,
        now: float,
        *,
        src: Addr | None = None,
    ) -> None:
        d = Addr(dst)
        s = src or (self.link_local if d.is_link_local else self.ml_eid)
        self._send_ip(Ipv6Packet.udp(s, d, src_port, dst_port, payload), now)

    def ping(
        self,
        dst: Addr | str,
        now: float,
        *,
        size: int = 8,
        identifier: int = 1,
        sequence: int = 1,
        src: Addr | None = None,
    ) -> None:
        d = Addr(dst)
        if not 0 <= size <= 1232:
            raise InvalidArgument("ping size must be 0..1232 bytes")
        if not self.attached:
            raise NotAttached("the child is not attached")
        if d.is_unspecified:
            raise AddressUnresolved("no destination")
        s = src or (self.link_local if d.is_link_local else self.ml_eid)
        data = bytes(i & 0xFF for i in range(size))
        self._pings[(identifier & 0xFFFF, sequence & 0xFFFF)] = now
        if len(self._pings) > 64:
            self._pings.pop(next(iter(self._pings)))
        self._send_ip(
            echo_packet(s, d, Echo(True, identifier & 0xFFFF, sequence & 0xFFFF, data)), now
        )

    # -- time ------------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        if self.role is ChildRole.DISABLED:
            return None
        times = list(self._timers.values())
        k = self.keys.next_timeout()
        if k is not None:
            times.append(k)
        return min(times, default=None)

    def poll(self, now: float) -> None:
        if self.role is ChildRole.DISABLED:
            return
        self.rx.expire(now)
        self.keys.poll(now)
        due = sorted((t, name) for name, t in self._timers.items() if t <= now)
        for _t, name in due:
            if self._timers.get(name, now + 1) > now:
                continue  # rescheduled or removed by an earlier timer this round
            del self._timers[name]
            self._timer(name, now)

    def _timer(self, name: str, now: float) -> None:
        if name == "attach" and self.role is ChildRole.ATTACHING:
            self._attach_timer(now)
        elif name == "restore" and self.role is ChildRole.RESTORING:
            if self._restore_attempts >= RESTORE_CHILD_UPDATE_ATTEMPTS:
                self.counters["restore_failed"] += 1
                self._detach(now, "restore_failed")
                return
            timeouts = RESTORE_CHILD_UPDATE_TIMEOUTS
            wait = timeouts[min(self._restore_attempts, len(timeouts) - 1)]
            self._restore_attempts += 1
            self._send_child_update_request(now, challenge=True, restoring=True)
            self._timers["restore"] = now + wait
        elif name == "keep_alive" and self.attached:
            self._ka_attempts = 1
            self._send_child_update_request(now)
            self._timers["retx"] = (
                now
                + UNICAST_RETX_DELAY
                + self.rng.uniform(-UNICAST_RETX_JITTER, UNICAST_RETX_JITTER)
            )
        elif name == "retx" and self.attached and self._awaiting_update:
            if self._ka_attempts >= MAX_CHILD_KEEP_ALIVE_ATTEMPTS:
                self._detach(now, "keep_alive_failed")
                return
            self._ka_attempts += 1
            self._send_child_update_request(now)
            self._timers["retx"] = (
                now
                + UNICAST_RETX_DELAY
                + self.rng.uniform(-UNICAST_RETX_JITTER, UNICAST_RETX_JITTER)
            )
        elif name in ("poll", "poll_now") and self.sleepy:
            if self.role is ChildRole.ATTACHING and self._phase != "child_id_request":
                return
            self._send_poll(now)
            if name == "poll" or "poll" not in self._timers:
                self._timers["poll"] = now + self._poll_period()
        elif name == "rx_window" and self.sleepy:
            if self._rx_window_until is not None and now >= self._rx_window_until:
                self._rx_window_until = None
                if self._poll_retx < MAX_POLL_RETX:
                    self._poll_retx += 1
                    self._timers["poll_now"] = now
                else:
                    self._poll_retx = 0
        elif name == "supervision" and self.attached and self.sleepy:
            last = self._last_secure_rx or now
            if now - last >= self._check_timeout:
                self.counters["supervision_timeouts"] += 1
                self._ka_attempts = 1
                self._send_child_update_request(now)
                self._timers["retx"] = now + UNICAST_RETX_DELAY
                self._timers["supervision"] = now + self._check_timeout
            else:
                self._timers["supervision"] = last + self._check_timeout
        elif name == "data_request" and self.attached:
            self._send_data_request()

    # -- views and state ---------------------------------------------------------------------------

    def snapshot(self) -> ChildNodeSnapshot | None:
        """The attachment to save (``None`` while not attached)."""
        if self.role is not ChildRole.CHILD or self.parent is None or self.rloc16 is None:
            return None
        return ChildNodeSnapshot(
            ext=self.ext_addr.hex(),
            parent_ext=self.parent.ext.hex(),
            parent_rloc16=self.parent.rloc16,
            rloc16=self.rloc16,
            mode=self.mode,
            timeout=self.config.timeout,
            key_sequence=self.keys.key_sequence,
            mle_frame_counter=self.keys.mle_frame_counter,
            mac_frame_counter=self.keys.mac_frame_counter,
            ml_eid_iid=self.ml_eid_iid.hex(),
        )

    def status(self, now: float) -> dict[str, Any]:
        a = self.addresses
        ld = self.leader_data
        return {
            "role": self.role.value,
            "phase": self._phase if self.role is ChildRole.ATTACHING else None,
            "mode": mode_string(self.mode),
            "ext_addr": self.ext_addr.hex(),
            "rloc16": None if self.rloc16 is None else f"0x{self.rloc16:04x}",
            "parent": None
            if self.parent is None
            else {"ext_addr": self.parent.ext.hex(), "rloc16": f"0x{self.parent.rloc16:04x}"},
            "partition_id": None if ld is None else ld.partition_id,
            "leader_router_id": None if ld is None else ld.leader_router_id,
            "key_sequence": self.keys.key_sequence,
            "timeout_s": self.config.timeout,
            "attached_s": None
            if self.attached_since is None
            else round(now - self.attached_since, 1),
            "addresses": {
                "link_local": str(a.link_local),
                "ml_eid": str(a.ml_eid),
                "rloc": str(a.rloc) if a.rloc is not None else None,
                "omr": [str(x) for x in a.slaac],
            },
            "counters": dict(self.counters),
        }
