"""The gateway's side of the Thread network as one sans-IO object: Leader, Router, and parent
of up to ``max_children`` MTD/FTD children (fact sheet §4-§10; OpenThread ``mle_ftd.cpp``,
``router_table.cpp``, ``child_table.cpp``, ``data_poll_handler.cpp``,
``indirect_sender.cpp``, ``address_resolver.cpp``).

Driving it (a thin asyncio shell does only this):

* :meth:`RouterCore.start` once (forms the partition, or restores the saved role and children);
* every received frame to :meth:`RouterCore.frame_received` (``plain`` when the radio service
  removed the MAC security already; ``ack_frame_pending`` for Data Requests: what the radio put
  in the ACK, ``None`` when it followed our source-match table);
* :meth:`RouterCore.frames_to_send` -> :class:`~gateway.thread.network.events.NetFrame` to the
  radio service, each outcome back with :meth:`RouterCore.tx_done`;
* :meth:`RouterCore.radio_actions` -> :class:`~gateway.thread.network.events.SetSourceMatch`;
* :meth:`RouterCore.events` -> journal lines and state changes (save :meth:`snapshot` on
  :class:`~gateway.thread.network.events.SnapshotChanged`);
* IPv6 from the host with :meth:`send_ip6`, to the host from :meth:`ip6_to_host`;
* :meth:`poll` at :meth:`next_timeout`; :meth:`status`, :meth:`children`,
  :meth:`netdata_view` for ``gwctl``.

Not here (yet): other routers (Link Request/Accept, Address Solicit, routing through a mesh,
mesh headers, partition merges), Network Data registration by others (``a/sd``), Pending
Datasets, CSL, MPL retransmissions. See docs/thread-network.md.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from gateway.errors import InvalidArgument, ParseError
from gateway.thread.coap import CoapEndpoint
from gateway.thread.link import (
    LinkReceiver,
    LinkSecurity,
    RxDatagram,
    TagAllocator,
    TxFrame,
    classify_security,
    peek_packet,
)
from gateway.thread.network.addressing import (
    LINK_LOCAL_ALL_NODES,
    REALM_LOCAL_ALL_ROUTERS,
    MeshAddresses,
    address_registration,
    all_thread_nodes,
    ext_from_link_local,
    is_locator_iid,
    locator_address,
    multicast_scope,
    registered_addresses,
    rloc16_of,
    router_id_of,
    slaac_address,
    slaac_prefixes,
)
from gateway.thread.network.child_table import (
    ChildEntry,
    ChildSnapshot,
    ChildState,
    ChildTable,
    IndirectMessage,
    mode_string,
)
from gateway.thread.network.constants import (
    ADV_INTERVAL_MAX_LOW,
    ADV_INTERVAL_MIN,
    CHALLENGE_LENGTH,
    CHILD_ID_REQUEST_TIMEOUT,
    DEFAULT_LEADER_WEIGHT,
    DEFAULT_MAX_CHILDREN,
    FAILED_CHILD_TRANSMISSIONS,
    ID_SEQUENCE_RESERVE,
    MAX_CHALLENGE_LENGTH,
    MAX_REQUEST_TLVS,
    MAX_ROUTER_ID,
    MAX_TX_ATTEMPTS_INDIRECT_POLLS,
    NETDATA_SYNC_RETRY,
    NOISE_FLOOR_DEFAULT,
    PARENT_REQUEST_DUPLICATE_TIMEOUT,
    PARENT_RESPONSE_MAX_DELAY_ALL,
    PARENT_RESPONSE_MAX_DELAY_ROUTERS,
    REJECT_DELAY_MAX,
    REJECT_DELAY_MIN,
    RESTORED_CHILD_UPDATE_JITTER,
    RESTORED_CHILD_UPDATE_RETRY,
    RESTORED_CHILD_UPDATE_RETRY_MAX,
    RESTORED_CHILD_UPDATE_SPACING,
    ROUTER_ID_SEQUENCE_PERIOD,
    SED_BUFFER_SIZE,
    SED_DATAGRAM_COUNT,
    SUPERVISION_INTERVAL_DEFAULT,
    THREAD_VERSION,
)
from gateway.thread.network.errors import AddressUnresolved, NetworkConfigError, NotAttached
from gateway.thread.network.events import (
    ChildAdded,
    ChildRemoved,
    ChildTableFullEvent,
    Event,
    KeySequenceChanged,
    NetFrame,
    NetworkDataChanged,
    PingReply,
    RoleChanged,
    SetSourceMatch,
    SnapshotChanged,
)
from gateway.thread.network.frames import data_frames, empty_data_frame, mle_frames, open_mac
from gateway.thread.network.ip6 import (
    AddressResolver,
    Echo,
    MplOption,
    MplSeedSet,
    add_mpl,
    echo_packet,
    parse_echo,
    strip_mpl,
)
from gateway.thread.network.netdata import NetworkDataLeader, OwnPrefix
from gateway.thread.network.security import (
    Drop,
    KeyManager,
    ReceivedMle,
    is_mle_datagram,
    open_mle,
    seal_mle,
)
from gateway.thread.network.snapshot import RouterSnapshot
from gateway.thread.network.tmf_tlvs import AddressTlvs, parse_thread_tlvs
from gateway.thread.network.trickle import Trickle
from gateway.wire.coap import TMF_PORT, CoapCode, MessageType, TmfMessage, TmfUri
from gateway.wire.dataset import ActiveDataset
from gateway.wire.ipv6 import PROTO_UDP, Ipv6Packet
from gateway.wire.lowpan import LowpanContext
from gateway.wire.mac802154 import (
    BROADCAST,
    ExtAddress,
    FrameType,
    MacCommand,
    MacFrame,
    ShortAddress,
)
from gateway.wire.meshcop import CommissionerSessionIdTlv, Timestamp
from gateway.wire.mle import (
    ActiveDatasetTlv,
    ActiveTimestampTlv,
    Address16Tlv,
    AddressRegistrationTlv,
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
    Route64Tlv,
    RouteEntry,
    ScanMaskTlv,
    SourceAddressTlv,
    StatusTlv,
    SupervisionIntervalTlv,
    TimeoutTlv,
    TlvRequestTlv,
    VersionTlv,
)
from gateway.wire.tlv import Tlv

__all__ = ["RouterConfig", "RouterCore"]

Addr = ipaddress.IPv6Address

TABLE_FULL_LOG_INTERVAL: Final = 60.0
STATUS_ERROR: Final = 1


@dataclass(frozen=True)
class RouterConfig:
    max_children: int = DEFAULT_MAX_CHILDREN
    leader_weight: int = DEFAULT_LEADER_WEIGHT
    router_id: int | None = None  # preferred router ID on first formation (random otherwise)
    partition_id: int | None = None  # preferred partition ID on first formation
    noise_floor: int = NOISE_FLOOR_DEFAULT
    indirect_queue_messages: int = 8
    indirect_queue_bytes: int = 4 * 1280
    table_full_log_interval: float = TABLE_FULL_LOG_INTERVAL

    def __post_init__(self) -> None:
        if not 1 <= self.max_children <= 511:
            raise NetworkConfigError("max_children must be 1..511")
        if not 0 <= self.leader_weight <= 255:
            raise NetworkConfigError("leader_weight must be 0..255")
        if self.router_id is not None and not 0 <= self.router_id <= MAX_ROUTER_ID:
            raise NetworkConfigError(f"router_id must be 0..{MAX_ROUTER_ID}")
        if self.partition_id is not None and not 0 <= self.partition_id <= 0xFFFFFFFF:
            raise NetworkConfigError("partition_id must fit 32 bits")
        if self.indirect_queue_messages < 1 or self.indirect_queue_bytes < 128:
            raise NetworkConfigError("indirect queue bounds are too small")


@dataclass
class _Handle:
    child: ChildEntry | None
    message: IndirectMessage | None = None


@dataclass
class _PingOut:
    sent: float
    dst: Addr


@dataclass
class RouterCore:
    dataset: ActiveDataset
    ext_addr: ExtAddress
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    config: RouterConfig = field(default_factory=RouterConfig)
    saved: RouterSnapshot | None = None
    key_sequence: int | None = None  # overrides the snapshot's
    mle_frame_counter: int | None = None  # overrides the snapshot's (pass it reserved ahead)
    mac_frame_counter: int = 0  # the radio service's current counter (Link FC TLV); keep it set
    role: str = "disabled"
    keys: KeyManager = field(init=False)
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        ds = self.dataset
        if not ds.is_complete:
            raise InvalidArgument(f"the active dataset lacks {', '.join(ds.missing())}")
        assert ds.network_key is not None and ds.mesh_local_prefix is not None
        assert ds.pan_id is not None
        self.pan_id = ds.pan_id
        self.ml_prefix = ds.mesh_local_prefix
        policy = ds.security_policy
        saved = self.saved
        seq = (
            self.key_sequence
            if self.key_sequence is not None
            else (saved.key_sequence if saved is not None else 0)
        )
        mle_fc = (
            self.mle_frame_counter
            if self.mle_frame_counter is not None
            else (saved.mle_frame_counter if saved is not None else 0)
        )
        self.keys = KeyManager(
            ds.network_key,
            seq,
            mle_fc,
            self.mac_frame_counter,
            rotation_hours=policy.rotation_hours if policy else 672,
        )
        self.children_table = ChildTable(
            self.config.max_children,
            self.config.indirect_queue_messages,
            self.config.indirect_queue_bytes,
        )
        self.router_id = 0
        self.rloc16 = 0
        self.partition_id = 0
        self.weighting = self.config.leader_weight
        self.leader_router_id = 0
        self.id_sequence = 0
        self._id_reserved = 0
        self._id_bump_due: float | None = None
        self.ml_eid_iid = (
            bytes.fromhex(saved.ml_eid_iid) if saved is not None else self.rng.randbytes(8)
        )
        self.netdata = NetworkDataLeader(0xFFFE, self.rng)
        self.trickle = Trickle(ADV_INTERVAL_MIN, ADV_INTERVAL_MAX_LOW, self.rng)
        self.resolver = AddressResolver()
        self.mpl = MplSeedSet()
        self._mpl_sequence = self.rng.randrange(0, 256)
        self.coap = CoapEndpoint(rng=self.rng)
        self.rx = LinkReceiver()
        self._tags = TagAllocator(self.rng.randrange(0, 0x10000))
        self._out: list[NetFrame] = []
        self._actions: list[SetSourceMatch] = []
        self._events: list[Event] = []
        self._host: list[Ipv6Packet] = []
        self._slaac_cache: tuple[tuple[int, int], tuple[Addr, ...]] | None = None
        self._handles: dict[int, _Handle] = {}
        self._handle_seq = itertools.count(1)
        self._sm: dict[ExtAddress, bool] = {}  # source-match state told to the radio
        self._pings: dict[tuple[int, int], _PingOut] = {}
        self._tmf_dst: dict[bytes, tuple[Addr, Addr, int]] = {}
        self._table_full_refused = 0
        self._table_full_logged: float | None = None
        self._rssi = 0
        self._started: float | None = None
        self._update_contexts()

    def __repr__(self) -> str:
        return (
            f"RouterCore({self.ext_addr}, role={self.role}, rloc16=0x{self.rloc16:04x}, "
            f"children={len(self.children_table)})"
        )

    # -- properties ------------------------------------------------------------------------------

    @property
    def addresses(self) -> MeshAddresses:
        return MeshAddresses(
            self.ml_prefix,
            self.ext_addr,
            self.ml_eid_iid,
            self.rloc16 if self.attached else None,
            leader=self.role == "leader",
            router=True,
            slaac=self.slaac if self.attached else (),
        )

    @property
    def slaac(self) -> tuple[Addr, ...]:
        """The gateway's own SLAAC addresses: one per on-mesh SLAAC prefix (the OMR prefix)."""
        version = self.netdata.versions()
        cached = self._slaac_cache
        if cached is None or cached[0] != version:
            addrs = tuple(
                slaac_address(p, self.ml_eid_iid) for p in slaac_prefixes(self.netdata.full)
            )
            cached = self._slaac_cache = (version, addrs)
        return cached[1]

    @property
    def attached(self) -> bool:
        return self.role in ("leader", "router")

    @property
    def link_local(self) -> Addr:
        return self.addresses.link_local

    def _leader_data(self) -> LeaderDataTlv:
        d, s = self.netdata.versions()
        return LeaderDataTlv(self.partition_id, self.weighting, d, s, self.leader_router_id)

    def _route64(self) -> Route64Tlv:
        # A lone leader: its own entry is LQ 0/0 cost 1 (``AppendRouteTlv``).
        return Route64Tlv(self.id_sequence, (RouteEntry(self.router_id, 0, 0, 1),))

    def _connectivity(self) -> ConnectivityTlv:
        used = sum(1 for c in self.children_table if c.valid or c.state.restoring)
        free = self.config.max_children - used
        priority = -1 if free < self.config.max_children / 3 else 0
        return ConnectivityTlv(
            parent_priority=priority,
            leader_cost=0,
            id_sequence=self.id_sequence,
            active_routers=1,
            sed_buffer_size=SED_BUFFER_SIZE,
            sed_datagram_count=SED_DATAGRAM_COUNT,
        )

    def _contexts(self) -> dict[int, LowpanContext]:
        ctx = dict(self.netdata.contexts())
        ctx[0] = LowpanContext(ipaddress.IPv6Network((self.ml_prefix + bytes(8), 64)))
        return ctx

    def _update_contexts(self) -> None:
        self.rx.contexts = self._contexts()

    def _active_timestamp(self) -> Timestamp | None:
        return self.dataset.active_timestamp

    def _active_dataset_tlv(self) -> ActiveDatasetTlv:
        """The MeshCoP TLVs of the Active Dataset without the Active Timestamp (MLE TLV 22)."""
        raw = b"".join(t.to_bytes() for t in self.dataset.to_tlvs() if t.type != 14)
        return ActiveDatasetTlv(raw)

    # -- outputs ---------------------------------------------------------------------------------

    def frames_to_send(self) -> list[NetFrame]:
        out, self._out = self._out, []
        self.counters["tx_frames"] += len(out)
        return out

    def radio_actions(self) -> list[SetSourceMatch]:
        out, self._actions = self._actions, []
        return out

    def events(self) -> list[Event]:
        self._key_events()
        out, self._events = self._events, []
        return out

    def ip6_to_host(self) -> list[Ipv6Packet]:
        out, self._host = self._host, []
        return out

    def _new_handle(self, child: ChildEntry | None, msg: IndirectMessage | None = None) -> int:
        h = next(self._handle_seq)
        self._handles[h] = _Handle(child, msg)
        if len(self._handles) > 4096:  # a shell that never reports: forget the oldest
            for k in list(self._handles)[:1024]:
                del self._handles[k]
        return h

    def _emit(self, tx: TxFrame, what: str, child: ChildEntry | None = None) -> None:
        handle = self._new_handle(child) if child is not None else None
        self._out.append(NetFrame(tx, self.keys.key_sequence, handle, what))

    def _key_events(self) -> None:
        for seq in self.keys.take_switches():
            self._events.append(KeySequenceChanged(seq, "key switch"))
            self._events.append(SnapshotChanged("key sequence"))
            self.mac_frame_counter = 0

    def set_mac_frame_counter(self, value: int) -> None:
        """The radio service's MAC frame counter, for the Link Frame Counter TLVs we send."""
        self.mac_frame_counter = value & 0xFFFFFFFF
        self.keys.mac_frame_counter = self.mac_frame_counter

    # -- start -----------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self._started is not None:
            raise InvalidArgument("the network core was already started")
        self._started = now
        self.keys.start(now)
        saved = self.saved
        if saved is not None:
            self._restore(saved, now)
        else:
            self._become_leader(now)
        self.trickle.start(now)
        self._id_bump_due = now + ROUTER_ID_SEQUENCE_PERIOD
        self._events.append(RoleChanged(self.role, self.rloc16, self.partition_id))
        self._events.append(SnapshotChanged("role"))

    def _become_leader(self, now: float) -> None:
        """``Mle::BecomeLeader`` (§7.8): router ID, random partition ID, own weighting, ID
        sequence +1 from a random value, Network Data reset to random versions with a
        Commissioning Data TLV holding only a session ID."""
        self.router_id = (
            self.config.router_id
            if self.config.router_id is not None
            else self.rng.randrange(0, MAX_ROUTER_ID + 1)
        )
        self.partition_id = (
            self.config.partition_id
            if self.config.partition_id is not None
            else self.rng.randrange(0, 1 << 32)
        )
        self.weighting = self.config.leader_weight
        self.leader_router_id = self.router_id
        self.id_sequence = (self.rng.randrange(0, 256) + 1) & 0xFF
        self._id_reserved = (self.id_sequence + ID_SEQUENCE_RESERVE) & 0xFF
        self.rloc16 = rloc16_of(self.router_id)
        self.netdata = NetworkDataLeader(self.rloc16, self.rng)
        session = self.rng.randrange(0, 0x10000)
        self.netdata.set_commissioning_data(
            CommissionerSessionIdTlv((session + 1) & 0xFFFF).to_bytes()
        )
        self.role = "leader"
        self._update_contexts()

    def _restore(self, saved: RouterSnapshot, now: float) -> None:
        """Back in the saved role (§5.4, §7.8): same router ID, partition ID, weighting and
        leader; the ID sequence continues after the reserved bound; Network Data versions move
        on by one (its content is rebuilt); children come back as *restored* and get a Child
        Update Request with a challenge."""
        self.router_id = saved.router_id
        self.partition_id = saved.partition_id
        self.weighting = saved.weighting
        self.leader_router_id = saved.leader_router_id
        self.id_sequence = (saved.id_sequence + 1) & 0xFF
        self._id_reserved = (self.id_sequence + ID_SEQUENCE_RESERVE) & 0xFF
        self.rloc16 = rloc16_of(self.router_id)
        self.netdata = NetworkDataLeader(
            self.rloc16,
            self.rng,
            data_version=(saved.data_version + 1) & 0xFF,
            stable_data_version=(saved.stable_data_version + 1) & 0xFF,
        )
        self.role = "leader"
        self._update_contexts()
        n_rx_on = 0
        for cs in saved.children:
            self._restore_child(cs, now, n_rx_on)
            if cs.mode & ModeTlv.RX_ON_WHEN_IDLE:
                n_rx_on += 1

    def _restore_child(self, cs: ChildSnapshot, now: float, rx_on_index: int) -> None:
        table = self.children_table
        if table.is_full or router_id_of(cs.rloc16) != self.router_id:
            self.counters["restore_children_skipped"] += 1
            return
        ext = ExtAddress.from_hex(cs.ext)
        if table.get(ext) is not None or table.by_rloc16(cs.rloc16) is not None:
            self.counters["restore_children_skipped"] += 1
            return
        c = table.add(ext, ChildState.RESTORED, now, float(cs.timeout))
        table.set_rloc16(c, cs.rloc16)
        c.mode, c.version = cs.mode, cs.version
        c.counters.key_sequence = self.keys.key_sequence
        c.netdata_version = None
        c.update_retry = RESTORED_CHILD_UPDATE_RETRY
        if c.rx_on:
            jitter = self.rng.uniform(-RESTORED_CHILD_UPDATE_JITTER, RESTORED_CHILD_UPDATE_JITTER)
            c.update_due = now + (rx_on_index + 1) * RESTORED_CHILD_UPDATE_SPACING + jitter
        else:
            c.update_due = now
        self.counters["restored_children"] += 1

    # -- snapshot --------------------------------------------------------------------------------

    def snapshot(self) -> RouterSnapshot:
        d, s = self.netdata.versions()
        kids = tuple(
            ChildSnapshot(c.ext.hex(), c.rloc16, int(c.timeout), c.mode, c.version)
            for c in self.children_table
            if c.rloc16 is not None and (c.valid or c.state.restoring)
        )
        return RouterSnapshot(
            role=self.role if self.attached else "leader",
            router_id=self.router_id,
            partition_id=self.partition_id,
            weighting=self.weighting,
            leader_router_id=self.leader_router_id,
            id_sequence=self._id_reserved,
            data_version=d,
            stable_data_version=s,
            key_sequence=self.keys.key_sequence,
            mle_frame_counter=self.keys.mle_frame_counter,
            ml_eid_iid=self.ml_eid_iid.hex(),
            children=kids,
        )

    # -- Network Data from the shell ---------------------------------------------------------------

    def set_commissioning_data(self, meshcop_tlvs: bytes | None, now: float) -> None:
        """The commissioning leader's dataset changed (``CommissionerDataset.to_bytes()``)."""
        if self.netdata.set_commissioning_data(meshcop_tlvs):
            self._netdata_changed(now)

    def set_srp_unicast(self, entry: tuple[ipaddress.IPv6Address, int] | None, now: float) -> None:
        """Publish or withdraw the SRP server's unicast entry in the leader's Network Data."""
        if self.netdata.set_srp_unicast(entry):
            self._netdata_changed(now)

    def set_own_prefixes(self, prefixes: Iterable[OwnPrefix], now: float) -> None:
        if self.netdata.set_own_prefixes(prefixes, now):
            self._netdata_changed(now)

    def _netdata_changed(self, now: float) -> None:
        """The leader multicasts a Data Response at once; sleepy children get Child Update
        Requests until their Leader Data shows the new version (§5.3, §8.4)."""
        self._update_contexts()
        d, s = self.netdata.versions()
        self._events.append(NetworkDataChanged(d, s))
        self._events.append(SnapshotChanged("network data"))
        if not self.attached:
            return
        self._send_data_response(None, (MleTlvType.NETWORK_DATA,), full=True, now=now)
        for c in self.children_table:
            if c.valid and c.sleepy:
                c.update_due = now

    # -- radio input -----------------------------------------------------------------------------

    def frame_received(
        self,
        frame: MacFrame,
        now: float,
        *,
        plain: MacFrame | None = None,
        rssi: int = -20,
        lqi: int = 0,
        ack_frame_pending: bool | None = None,
    ) -> bool:
        """One received frame (as on the air; ``plain`` = its plaintext if the radio service
        removed the MAC security). Returns True when the frame belongs to the Thread network
        (secured MLE or MAC-secured traffic); False for everything else (discovery, joiner
        traffic, KEK frames), which the commissioning core handles. Never raises for bytes."""
        if not self.attached:
            return False
        self.counters["rx_frames"] += 1
        self._rssi = rssi
        sec = classify_security(frame)
        if sec is None or sec is LinkSecurity.KEK:
            return False
        if frame.dst_pan not in (self.pan_id, 0xFFFF, None):
            self.counters["rx_other_pan"] += 1
            return False
        if frame.dst not in (self.ext_addr, ShortAddress(self.rloc16), BROADCAST):
            self.counters["rx_not_for_us"] += 1
            return False
        if frame.src == self.ext_addr:
            self.counters["rx_own_source"] += 1
            return True
        if sec is LinkSecurity.NONE:
            return self._unsecured_frame(frame, now, rssi, lqi)
        self._secured_frame(frame, plain, now, rssi, lqi, ack_frame_pending)
        return True

    def _unsecured_frame(self, frame: MacFrame, now: float, rssi: int, lqi: int) -> bool:
        if frame.frame_type != FrameType.DATA or not isinstance(frame.src, ExtAddress):
            return False
        try:
            pkt = peek_packet(frame.payload, frame.src, frame.dst)
        except (ParseError, InvalidArgument):
            return False
        if pkt is None or not is_mle_datagram(pkt) or len(pkt.payload) < 9:
            return False
        if pkt.payload[8] != 0:  # security suite 255: discovery, the commissioning core's
            return False
        dg = self.rx.receive(frame, LinkSecurity.NONE, now, rssi=rssi, lqi=lqi)
        if dg is not None:
            self._mle(dg, now)
        else:
            self.counters["rx_malformed"] += 1
        return True

    def _secured_frame(
        self,
        frame: MacFrame,
        plain: MacFrame | None,
        now: float,
        rssi: int,
        lqi: int,
        ack_fp: bool | None,
    ) -> None:
        table = self.children_table
        child: ChildEntry | None = None
        if isinstance(frame.src, ExtAddress):
            child = table.get(frame.src)
        elif isinstance(frame.src, ShortAddress):
            child = table.by_rloc16(frame.src.value)
        if child is None:
            self.counters["rx_unknown_neighbor"] += 1
            return
        sec = frame.security
        assert sec is not None
        try:
            if plain is None:
                plain, seq = open_mac(frame, self.keys, child.ext)
            else:
                s = self.keys.resolve_mac_key_index(sec.key_index or 0)
                if s is None:
                    raise Drop("mac_bad_key_index")
                seq = s
        except Drop as d:
            self.counters[d.reason] += 1
            return
        is_poll = plain.frame_type == FrameType.COMMAND and plain.payload[:1] == bytes(
            (MacCommand.DATA_REQUEST,)
        )
        if not child.valid and not (child.state.restoring and is_poll):
            self.counters["rx_not_valid_neighbor"] += 1
            return
        fc = sec.frame_counter or 0
        verdict = child.counters.check(seq, fc, mle=False)
        if verdict != "ok":
            self.counters[f"mac_{verdict}"] += 1
            return
        child.counters.accept(seq, fc, mle=False)
        if seq > self.keys.key_sequence:
            self.keys.process_peer_key_sequence(
                seq, now, authoritative=False, from_valid_neighbor=child.valid
            )
        child.link_margin = max(0, rssi - self.config.noise_floor)
        if is_poll:
            self._data_poll(child, now, ack_fp)
            return
        if plain.frame_type != FrameType.DATA:
            self.counters["rx_mac_command_ignored"] += 1
            return
        if child.sleepy and child.version >= 3:
            child.last_heard = now  # enhanced keep-alive
        if not plain.payload:
            return
        dg = self.rx.receive(plain, LinkSecurity.MAC, now, rssi=rssi, lqi=lqi)
        if dg is None:
            return
        if is_mle_datagram(dg.packet):
            self._mle(dg, now)
        else:
            self._ip_in(dg.packet, now, child)

    # -- MLE ---------------------------------------------------------------------------------------

    def _mle(self, dg: RxDatagram, now: float) -> None:
        try:
            rm = open_mle(dg, self.keys)
        except Drop as d:
            self.counters[d.reason] += 1
            return
        self.counters["mle_rx"] += 1
        child = self.children_table.get(rm.sender)
        if child is not None and child.valid:
            verdict = child.counters.check(rm.key_sequence, rm.frame_counter, mle=True)
            if verdict != "ok":
                self.counters[f"mle_{verdict}"] += 1
                return
            child.counters.accept(rm.key_sequence, rm.frame_counter, mle=True)
        cmd = rm.message.command
        try:
            if cmd == MleCommand.PARENT_REQUEST:
                self._parent_request(rm, child, now)
            elif cmd == MleCommand.CHILD_ID_REQUEST:
                self._child_id_request(rm, child, now)
            elif cmd == MleCommand.CHILD_UPDATE_REQUEST:
                self._child_update_request(rm, child, now)
            elif cmd == MleCommand.CHILD_UPDATE_RESPONSE:
                self._child_update_response(rm, child, now)
            elif cmd == MleCommand.DATA_REQUEST:
                self._data_request(rm, child, now)
            else:
                self.counters["mle_ignored"] += 1
        except Drop as d:
            self.counters[d.reason] += 1

    def _peer_key_sequence(
        self, rm: ReceivedMle, now: float, *, authoritative: bool, valid: bool
    ) -> None:
        if rm.key_sequence != self.keys.key_sequence:
            self.keys.process_peer_key_sequence(
                rm.key_sequence, now, authoritative=authoritative, from_valid_neighbor=valid
            )

    def _send_mle(
        self,
        child: ChildEntry | None,
        dst: Addr,
        msg: MleMessage,
        what: str,
        *,
        indirect: bool = False,
        kind: str = "mle",
        now: float,
    ) -> None:
        if child is not None and child.queue.has_kind(kind) and kind == "cur":
            child.queue.remove_kind(kind)  # an outdated Child Update Request gives way
        packet = seal_mle(msg, self.keys, self.link_local, dst)
        mac_dst: ExtAddress | ShortAddress
        if dst.is_multicast:
            mac_dst = BROADCAST
        else:
            ext = ext_from_link_local(dst)
            if ext is None:
                raise InvalidArgument("MLE goes to a link-local address")
            mac_dst = ext
        frames = mle_frames(
            packet,
            src=self.ext_addr,
            dst=mac_dst,
            pan_id=self.pan_id,
            tags=self._tags,
            key_index=self.keys.mac_key_index,
        )
        self.counters["mle_tx"] += 1
        if indirect and child is not None:
            self._enqueue(child, frames, what, kind, now)
        else:
            for tx in frames:
                self._emit(tx, what, child)
            if child is not None:
                child.last_tx = now

    # Parent Request --------------------------------------------------------------------------

    def _parent_request(self, rm: ReceivedMle, child: ChildEntry | None, now: float) -> None:
        m = rm.message
        mode, version, scan = m.get(ModeTlv), m.get(VersionTlv), m.get(ScanMaskTlv)
        challenge = m.get(ChallengeTlv)
        if version is None or version.value < 2 or scan is None or mode is None:
            raise Drop("parent_request_malformed")
        if not scan.router:
            raise Drop("parent_request_not_for_routers")
        if challenge is None:
            raise Drop("parent_request_malformed")
        table = self.children_table
        if child is None:
            if table.is_full:
                self._table_full(now)
                raise Drop("parent_request_table_full")
            child = table.add(rm.sender, ChildState.PARENT_REQUEST, now, CHILD_ID_REQUEST_TIMEOUT)
            child.last_heard = now - 1.0  # not a duplicate of itself
        if now - child.last_heard < PARENT_REQUEST_DUPLICATE_TIMEOUT:
            raise Drop("parent_request_duplicate")
        if not (child.valid or child.state.restoring):
            child.state = ChildState.PARENT_REQUEST
            child.timeout = CHILD_ID_REQUEST_TIMEOUT
            child.mode = mode.value
            child.version = version.value
        child.last_heard = now
        child.rx_challenge = challenge.value[:MAX_CHALLENGE_LENGTH]
        child.link_margin = max(0, self._rssi - self.config.noise_floor)
        child.parent_response_all = scan.end_device
        top = (
            PARENT_RESPONSE_MAX_DELAY_ALL if scan.end_device else PARENT_RESPONSE_MAX_DELAY_ROUTERS
        )
        child.parent_response_due = now + self.rng.uniform(0.001, top)
        self.counters["parent_requests"] += 1

    def _table_full(self, now: float) -> None:
        self._table_full_refused += 1
        last = self._table_full_logged
        if last is None or now - last >= self.config.table_full_log_interval:
            self._events.append(
                ChildTableFullEvent(self.config.max_children, self._table_full_refused)
            )
            self._table_full_refused = 0
            self._table_full_logged = now

    def _send_parent_response(self, child: ChildEntry, now: float) -> None:
        child.parent_response_due = None
        child.challenge = self.rng.randbytes(CHALLENGE_LENGTH)
        child.challenge_time = now
        fc = self.keys.mle_frame_counter
        msg = MleMessage(
            MleCommand.PARENT_RESPONSE,
            (
                SourceAddressTlv(self.rloc16),
                self._leader_data(),
                LinkFrameCounterTlv(self.mac_frame_counter),
                MleFrameCounterTlv(fc),
                ResponseTlv(child.rx_challenge),
                ChallengeTlv(child.challenge),
                LinkMarginTlv(min(child.link_margin, 255)),
                self._connectivity(),
                VersionTlv(THREAD_VERSION),
            ),
        )
        dst = Addr(b"\xfe\x80" + bytes(6) + child.ext.iid())
        packet = seal_mle(
            msg, self.keys, self.link_local, dst, frame_counter=self.keys.next_mle_counter()
        )
        for tx in mle_frames(
            packet,
            src=self.ext_addr,
            dst=child.ext,
            pan_id=self.pan_id,
            tags=self._tags,
            key_index=self.keys.mac_key_index,
        ):
            self._emit(tx, "parent response", child)
        self.counters["parent_responses"] += 1
        self.counters["mle_tx"] += 1

    # Child ID Request ----------------------------------------------------------------------------

    def _child_id_request(self, rm: ReceivedMle, child: ChildEntry | None, now: float) -> None:
        m = rm.message
        if child is None:
            raise Drop("child_id_request_unknown")
        version = m.get(VersionTlv)
        if version is None or version.value < 2:
            raise Drop("child_id_request_malformed")
        response = m.get(ResponseTlv)
        fresh = child.challenge and now - child.challenge_time <= CHILD_ID_REQUEST_TIMEOUT
        if (
            response is None
            or len(response.value) != CHALLENGE_LENGTH
            or not fresh
            or response.value != child.challenge
        ):
            raise Drop("child_id_request_bad_response")
        link_fc = m.get(LinkFrameCounterTlv)
        mle_fc = m.get(MleFrameCounterTlv)
        mode, timeout, tlv_req = m.get(ModeTlv), m.get(TimeoutTlv), m.get(TlvRequestTlv)
        if link_fc is None or mode is None or timeout is None or tlv_req is None:
            raise Drop("child_id_request_malformed")
        requests = list(tlv_req.value)
        sup = m.get(SupervisionIntervalTlv)
        if sup is not None:
            requests.append(MleTlvType.SUPERVISION_INTERVAL)
        ats = m.get(ActiveTimestampTlv)
        if ats is None or ats.value != self._active_timestamp():
            requests.append(MleTlvType.ACTIVE_DATASET)
        if len(requests) > MAX_REQUEST_TLVS:
            raise Drop("child_id_request_too_many_tlvs")
        reg = m.get(AddressRegistrationTlv)
        if not mode.full_thread_device and reg is None:
            raise Drop("child_id_request_no_address_registration")
        self._peer_key_sequence(rm, now, authoritative=True, valid=child.valid)
        was_valid = child.valid
        dropped = child.queue.clear()
        self.counters["indirect_dropped_reattach"] += dropped
        child.counters.set(
            rm.key_sequence,
            mle=max(mle_fc.value if mle_fc else link_fc.value, rm.frame_counter + 1),
            mac=link_fc.value,
        )
        child.mode, child.version = mode.value, version.value
        child.timeout = float(timeout.value)
        child.link_margin = max(0, self._rssi - self.config.noise_floor)
        if sup is not None:
            child.supervision_interval = sup.value
        else:
            child.supervision_interval = SUPERVISION_INTERVAL_DEFAULT if version.value <= 4 else 0
        child.netdata_version = self.netdata.version_for(child.full_netdata)
        child.request_tlvs = tuple(requests)
        if reg is not None:
            self._register(child, reg)
        self.children_table.allocate_rloc16(child, self.router_id)
        child.state = ChildState.VALID
        child.last_heard = now
        child.attached_at = now
        child.challenge = b""
        child.use_short = False
        child.update_due = None
        child.parent_response_due = None
        self._send_child_id_response(child, now)
        self.counters["child_id_requests"] += 1
        assert child.rloc16 is not None
        if not was_valid:
            self.counters["children_attached"] += 1
            self._events.append(
                ChildAdded(child.ext, child.rloc16, mode_string(child.mode), child.timeout)
            )
        self._events.append(SnapshotChanged("child table"))

    def _register(self, child: ChildEntry, reg: AddressRegistrationTlv) -> None:
        """Replace the child's addresses ("last in wins" across children), at most 4 with the
        ML-EID (``OPENTHREAD_CONFIG_MLE_IP_ADDRS_PER_CHILD``)."""
        ml_iid, others = registered_addresses(reg, self.ml_prefix, self.netdata.contexts())
        child.ml_eid_iid = ml_iid
        child.addresses = others[: 3 if ml_iid is not None else 4]
        for a in child.addresses + ([child.ml_eid(self.ml_prefix)] if ml_iid else []):
            if a is None or a.is_multicast:
                continue
            self.resolver.remove(a)
            for other in self.children_table:
                if other is not child and a in other.addresses:
                    other.addresses.remove(a)

    def _registration_echo(self, child: ChildEntry) -> AddressRegistrationTlv:
        """The registered addresses other than the ML-EID (``AppendAddressRegistrationTlv``)."""
        full = address_registration(
            Addr(bytes(16)), child.addresses, contexts=self.netdata.contexts()
        )
        return AddressRegistrationTlv(full.entries[1:])

    def _network_data_tlv(self, full: bool) -> NetworkDataTlv:
        nd = self.netdata.full if full else self.netdata.stable
        return NetworkDataTlv(nd.to_bytes())

    def _child_dst(self, child: ChildEntry) -> Addr:
        return Addr(b"\xfe\x80" + bytes(6) + child.ext.iid())

    def _send_child_id_response(self, child: ChildEntry, now: float) -> None:
        assert child.rloc16 is not None
        tlvs: list[MleTlv | Tlv] = [SourceAddressTlv(self.rloc16), self._leader_data()]
        ts = self._active_timestamp()
        if ts is not None:
            tlvs.append(ActiveTimestampTlv(ts))
        tlvs.append(Address16Tlv(child.rloc16))
        for t in child.request_tlvs:
            if t == MleTlvType.NETWORK_DATA:
                tlvs.append(self._network_data_tlv(child.full_netdata))
            elif t == MleTlvType.ROUTE64:
                tlvs.append(self._route64())
            elif t == MleTlvType.ACTIVE_DATASET:
                tlvs.append(self._active_dataset_tlv())
            elif t == MleTlvType.SUPERVISION_INTERVAL:
                tlvs.append(SupervisionIntervalTlv(child.supervision_interval & 0xFFFF))
        if not child.ftd:
            tlvs.append(self._registration_echo(child))
        msg = MleMessage(MleCommand.CHILD_ID_RESPONSE, tuple(tlvs))
        self._send_mle(
            child, self._child_dst(child), msg, "child id response", indirect=child.sleepy, now=now
        )

    # Child Update Request / Response -----------------------------------------------------------

    def _child_update_request(self, rm: ReceivedMle, child: ChildEntry | None, now: float) -> None:
        m = rm.message
        mode = m.get(ModeTlv)
        if mode is None:
            raise Drop("child_update_request_malformed")
        challenge = m.get(ChallengeTlv)
        if child is None or child.state is ChildState.PARENT_REQUEST:
            if mode.rx_on_when_idle:
                self._send_update_reject(rm, challenge)
                raise Drop("child_update_request_unknown_rejected")
            raise Drop("child_update_request_unknown")
        if child.state.restoring:
            if mode.rx_on_when_idle:
                child.update_due = now + self.rng.uniform(REJECT_DELAY_MIN, REJECT_DELAY_MAX)
            raise Drop("child_update_request_restoring")
        if not child.valid:
            raise Drop("child_update_request_not_valid")
        self._peer_key_sequence(rm, now, authoritative=False, valid=True)
        old_rx_on = child.rx_on
        child.mode = mode.value
        reg = m.get(AddressRegistrationTlv)
        if reg is not None:
            self._register(child, reg)
        ld = m.get(LeaderDataTlv)
        if ld is not None:
            child.netdata_version = (
                ld.data_version if child.full_netdata else ld.stable_data_version
            )
        timeout = m.get(TimeoutTlv)
        sup = m.get(SupervisionIntervalTlv)
        if sup is not None:
            child.supervision_interval = sup.value
        if timeout is not None and timeout.value != 0:
            child.timeout = float(timeout.value)
        child.last_heard = now
        child.link_margin = max(0, self._rssi - self.config.noise_floor)
        tlvs: list[MleTlv | Tlv] = []
        if challenge is not None:
            tlvs.append(ResponseTlv(challenge.value[:MAX_CHALLENGE_LENGTH]))
        tlvs += [
            SourceAddressTlv(self.rloc16),
            ModeTlv(child.mode),
            LinkMarginTlv(min(child.link_margin, 255)),
            self._leader_data(),
        ]
        if challenge is not None:
            tlvs += [
                MleFrameCounterTlv(self.keys.mle_frame_counter),
                LinkFrameCounterTlv(self.mac_frame_counter),
            ]
        if reg is not None:
            tlvs.append(self._registration_echo(child))
        if timeout is not None:
            tlvs.append(TimeoutTlv(timeout.value))
        if sup is not None:
            tlvs.append(SupervisionIntervalTlv(sup.value))
        req = m.get(TlvRequestTlv)
        if req is not None and MleTlvType.NETWORK_DATA in req.value:
            tlvs.append(self._network_data_tlv(child.full_netdata))
            ts = self._active_timestamp()
            if ts is not None:
                tlvs.append(ActiveTimestampTlv(ts))
        msg = MleMessage(MleCommand.CHILD_UPDATE_RESPONSE, tuple(tlvs))
        sleepy = not child.rx_on
        if old_rx_on and sleepy:
            child.use_short = False
        self._send_mle(
            child, self._child_dst(child), msg, "child update response", indirect=sleepy, now=now
        )
        if not old_rx_on and child.rx_on:
            self._flush_queue_direct(child, now)
        self.counters["child_update_requests"] += 1
        if timeout is not None and timeout.value == 0:
            self._remove_child(child, "detached (timeout 0)", now)
        elif reg is not None or timeout is not None or old_rx_on != child.rx_on:
            self._events.append(SnapshotChanged("child table"))

    def _send_update_reject(self, rm: ReceivedMle, challenge: ChallengeTlv | None) -> None:
        tlvs: list[MleTlv | Tlv] = [SourceAddressTlv(self.rloc16), StatusTlv(STATUS_ERROR)]
        if challenge is not None:
            tlvs.append(ResponseTlv(challenge.value[:MAX_CHALLENGE_LENGTH]))
        msg = MleMessage(MleCommand.CHILD_UPDATE_RESPONSE, tuple(tlvs))
        packet = seal_mle(msg, self.keys, self.link_local, rm.src)
        for tx in mle_frames(
            packet,
            src=self.ext_addr,
            dst=rm.sender,
            pan_id=self.pan_id,
            tags=self._tags,
            key_index=self.keys.mac_key_index,
        ):
            self._emit(tx, "child update reject")
        self.counters["mle_tx"] += 1

    def _send_child_update_request(self, child: ChildEntry, now: float) -> None:
        """To a restored child (challenge, asks for Timeout and Address Registration) or to a
        valid sleepy child whose Network Data is outdated (§5.2)."""
        tlvs: list[MleTlv | Tlv] = [
            SourceAddressTlv(self.rloc16),
            self._leader_data(),
            self._network_data_tlv(child.full_netdata),
        ]
        ts = self._active_timestamp()
        if ts is not None:
            tlvs.append(ActiveTimestampTlv(ts))
        restoring = child.state.restoring
        if restoring:
            child.challenge = self.rng.randbytes(CHALLENGE_LENGTH)
            tlvs += [
                TlvRequestTlv((MleTlvType.TIMEOUT, MleTlvType.ADDRESS_REGISTRATION)),
                ChallengeTlv(child.challenge),
            ]
            child.state = ChildState.CHILD_UPDATE_REQUEST
        else:
            tlvs.append(LinkMarginTlv(min(child.link_margin, 255)))
        msg = MleMessage(MleCommand.CHILD_UPDATE_REQUEST, tuple(tlvs))
        self._send_mle(
            child,
            self._child_dst(child),
            msg,
            "child update request",
            indirect=child.sleepy,
            kind="cur",
            now=now,
        )
        self.counters["child_update_requests_sent"] += 1

    def _child_update_response(self, rm: ReceivedMle, child: ChildEntry | None, now: float) -> None:
        m = rm.message
        if child is None or child.state is ChildState.PARENT_REQUEST:
            raise Drop("child_update_response_unknown")
        response = m.get(ResponseTlv)
        if response is not None:
            if len(response.value) != CHALLENGE_LENGTH or response.value != child.challenge:
                raise Drop("child_update_response_bad_response")
        elif not child.valid:
            raise Drop("child_update_response_not_valid")
        self._peer_key_sequence(rm, now, authoritative=response is not None, valid=child.valid)
        src = m.get(SourceAddressTlv)
        status = m.get(StatusTlv)
        if src is not None and src.value != child.rloc16:
            self._remove_child(child, "answered with another RLOC16", now)
            return
        if status is not None and status.value == STATUS_ERROR:
            self._remove_child(child, "refused (status 1)", now)
            return
        restoring = not child.valid
        link_fc, mle_fc = m.get(LinkFrameCounterTlv), m.get(MleFrameCounterTlv)
        if link_fc is not None:
            child.counters.set(
                rm.key_sequence,
                mle=max(mle_fc.value if mle_fc else link_fc.value, rm.frame_counter + 1),
                mac=link_fc.value,
            )
        elif restoring:
            child.counters.set(rm.key_sequence, mle=rm.frame_counter + 1, mac=None)
        timeout, sup = m.get(TimeoutTlv), m.get(SupervisionIntervalTlv)
        if timeout is not None and timeout.value:
            child.timeout = float(timeout.value)
        if sup is not None:
            child.supervision_interval = sup.value
        reg = m.get(AddressRegistrationTlv)
        if reg is not None:
            self._register(child, reg)
        ld = m.get(LeaderDataTlv)
        if ld is not None:
            child.netdata_version = (
                ld.data_version if child.full_netdata else ld.stable_data_version
            )
        child.challenge = b""
        child.state = ChildState.VALID
        child.last_heard = now
        child.update_due = None
        if restoring:
            if child.attached_at is None:
                child.attached_at = now
            assert child.rloc16 is not None
            if child.supervision_interval == 0 and child.version <= 4:
                child.supervision_interval = SUPERVISION_INTERVAL_DEFAULT
            self._events.append(
                ChildAdded(
                    child.ext, child.rloc16, mode_string(child.mode), child.timeout, restored=True
                )
            )
            self._events.append(SnapshotChanged("child table"))
            self.counters["children_restored"] += 1
        if child.sleepy and child.netdata_version != self.netdata.version_for(child.full_netdata):
            child.update_due = now + NETDATA_SYNC_RETRY

    # Data Request -------------------------------------------------------------------------------

    def _data_request(self, rm: ReceivedMle, child: ChildEntry | None, now: float) -> None:
        if child is None or not child.valid:
            raise Drop("data_request_not_valid")
        self._peer_key_sequence(rm, now, authoritative=False, valid=True)
        req = rm.message.get(TlvRequestTlv)
        wanted = list(req.value) if req is not None else []
        ats = rm.message.get(ActiveTimestampTlv)
        if ats is None or ats.value != self._active_timestamp():
            wanted.append(MleTlvType.ACTIVE_DATASET)
        self._send_data_response(child, tuple(wanted), full=child.full_netdata, now=now)
        self.counters["data_requests"] += 1

    def _send_data_response(
        self, child: ChildEntry | None, wanted: tuple[int, ...], *, full: bool, now: float
    ) -> None:
        tlvs: list[MleTlv | Tlv] = [SourceAddressTlv(self.rloc16), self._leader_data()]
        ts = self._active_timestamp()
        if ts is not None:
            tlvs.append(ActiveTimestampTlv(ts))
        for t in wanted:
            if t == MleTlvType.NETWORK_DATA:
                tlvs.append(self._network_data_tlv(full))
            elif t == MleTlvType.ACTIVE_DATASET:
                tlvs.append(self._active_dataset_tlv())
            elif t == MleTlvType.ROUTE64:
                tlvs.append(self._route64())
        msg = MleMessage(MleCommand.DATA_RESPONSE, tuple(tlvs))
        if child is None:
            self._send_mle(None, LINK_LOCAL_ALL_NODES, msg, "data response (multicast)", now=now)
        else:
            self._send_mle(
                child, self._child_dst(child), msg, "data response", indirect=child.sleepy, now=now
            )

    def _send_advertisement(self, now: float) -> None:
        msg = MleMessage(
            MleCommand.ADVERTISEMENT,
            (SourceAddressTlv(self.rloc16), self._leader_data(), self._route64()),
        )
        self._send_mle(None, LINK_LOCAL_ALL_NODES, msg, "advertisement", now=now)
        self.counters["advertisements"] += 1

    # -- indirect transmission -------------------------------------------------------------------

    def _enqueue(
        self, child: ChildEntry, frames: list[TxFrame], what: str, kind: str, now: float
    ) -> None:
        msg = IndirectMessage(frames, what, now, kind)
        for gone in child.queue.push(msg):
            self.counters["indirect_dropped_queue_full"] += 1
            if gone is msg:
                return
        self.counters["indirect_queued"] += 1
        self._source_match(child)

    def _flush_queue_direct(self, child: ChildEntry, now: float) -> None:
        """A child that became rx-on gets what waited for its polls at once."""
        for msg in list(child.queue.messages):
            for tx in msg.frames[msg.cursor :]:
                self._emit(tx, msg.what, child)
        child.queue.clear()
        self._source_match(child)

    def _source_match(self, child: ChildEntry) -> None:
        pending = child.queue.pending
        if self._sm.get(child.ext, False) == pending:
            return
        self._sm[child.ext] = pending
        self._actions.append(SetSourceMatch(child.ext, pending))
        if child.rloc16 is not None:
            self._actions.append(SetSourceMatch(ShortAddress(child.rloc16), pending))

    def frame_pending_for(self, address: ExtAddress | ShortAddress) -> bool:
        """For a radio that asks per poll: does the ACK to ``address`` carry frame pending?"""
        if isinstance(address, ExtAddress):
            child = self.children_table.get(address)
        else:
            child = self.children_table.by_rloc16(address.value)
        return child is not None and child.queue.pending

    def _data_poll(self, child: ChildEntry, now: float, ack_fp: bool | None) -> None:
        """``DataPollHandler::HandleDataPoll``: refresh the child; if the ACK said frame
        pending, send the next queued frame, or an empty secured frame if none is queued."""
        child.last_heard = now
        child.link_failures = 0
        self.counters["data_polls"] += 1
        q = child.queue
        fp = ack_fp if ack_fp is not None else q.pending
        if q.in_flight is not None:  # polled again before the last frame was reported
            self._indirect_result(child, q.in_flight, False, now)
        if not fp:
            return
        msg = q.head()
        if msg is None:
            src, dst = self._child_link_addresses(child)
            self._emit(empty_data_frame(src=src, dst=dst, pan_id=self.pan_id), "empty frame")
            self.counters["empty_frames"] += 1
            child.last_tx = now
            return
        tx = msg.frames[msg.cursor]
        more = msg.cursor + 1 < len(msg.frames) or len(q) > 1
        tx = TxFrame(replace(tx.frame, frame_pending=more), tx.security)
        handle = self._new_handle(child, msg)
        q.in_flight = handle
        self._out.append(NetFrame(tx, self.keys.key_sequence, handle, msg.what))

    def _child_link_addresses(
        self, child: ChildEntry
    ) -> tuple[ExtAddress | ShortAddress, ExtAddress | ShortAddress]:
        if child.use_short and child.rloc16 is not None:
            return ShortAddress(self.rloc16), ShortAddress(child.rloc16)
        return self.ext_addr, child.ext

    def tx_done(self, handle: int, acked: bool, now: float) -> None:
        """The outcome of a :class:`NetFrame` that had a handle."""
        h = self._handles.pop(handle, None)
        if h is None or h.child is None:
            return
        child = h.child
        if self.children_table.get(child.ext) is not child:
            return
        if h.message is not None:
            self._indirect_result(child, handle, acked, now)
            return
        if acked:
            child.link_failures = 0
            child.last_tx = now
        else:
            child.link_failures += 1
            self.counters["tx_no_ack"] += 1

    def _indirect_result(self, child: ChildEntry, handle: int, acked: bool, now: float) -> None:
        q = child.queue
        if q.in_flight != handle:
            return
        q.in_flight = None
        self._handles.pop(handle, None)
        msg = q.head()
        if msg is None:
            return
        if acked:
            msg.cursor += 1
            msg.attempts = 0
            child.last_tx = now
            if msg.kind == "data":
                child.use_short = True
            if msg.done:
                q.messages.popleft()
                self.counters["indirect_delivered"] += 1
        else:
            msg.attempts += 1
            if msg.attempts >= MAX_TX_ATTEMPTS_INDIRECT_POLLS:
                q.messages.popleft()
                self.counters["indirect_dropped_tx_failed"] += 1
        self._source_match(child)

    def _remove_child(self, child: ChildEntry, reason: str, now: float) -> None:
        was = child.valid or child.state.restoring
        dropped = child.queue.clear()
        if dropped:
            self.counters["indirect_dropped_child_removed"] += dropped
        self.children_table.remove(child)
        for a in child.addresses:
            self.resolver.remove(a)
        ml = child.ml_eid(self.ml_prefix)
        if ml is not None:
            self.resolver.remove(ml)
        if self._sm.pop(child.ext, False):
            self._actions.append(SetSourceMatch(child.ext, False))
            if child.rloc16 is not None:
                self._actions.append(SetSourceMatch(ShortAddress(child.rloc16), False))
        if was:
            self.counters["children_removed"] += 1
            self._events.append(ChildRemoved(child.ext, child.rloc16, reason, dropped))
            self._events.append(SnapshotChanged("child table"))

    def remove_child(self, ext: ExtAddress, now: float) -> bool:
        """Remove a child (technician's command). True if it existed."""
        c = self.children_table.get(ext)
        if c is None:
            return False
        self._remove_child(c, "removed by request", now)
        return True

    # -- IPv6 ------------------------------------------------------------------------------------

    def _ip_in(self, packet: Ipv6Packet, now: float, child: ChildEntry | None) -> None:
        try:
            mpl, inner = strip_mpl(packet)
        except ParseError:
            self.counters["ip_malformed"] += 1
            return
        self.counters["ip_rx"] += 1
        if mpl is not None:
            seed = inner.src.packed if mpl.seed is None else mpl.seed.to_bytes(2, "big")
            if self.mpl.seen(seed, mpl.sequence, now):
                self.counters["mpl_duplicates"] += 1
                return
        dst = inner.dst
        if dst.is_multicast:
            if dst in self.addresses.multicast():
                self._local(inner, now)
            if multicast_scope(dst) >= 3 and child is not None:
                # children send multicast to their parent; the only router re-broadcasts it
                self._forward_multicast(packet, now, exclude=child)
            return
        if dst in self.addresses.unicast():
            self._local(inner, now)
            return
        if inner.hop_limit <= 1:
            self.counters["ip_hop_limit_exceeded"] += 1
            return
        fwd = replace(inner, hop_limit=inner.hop_limit - 1)
        target = self._child_for(dst)
        if target is not None:
            self._to_child(target, fwd, "forwarded", now)
            return
        if self.addresses.is_mesh_local(dst):
            self._resolve_and_send(fwd, now)
            return
        self._host.append(inner)

    def _child_for(self, addr: Addr) -> ChildEntry | None:
        table = self.children_table
        if addr.is_link_local:
            ext = ext_from_link_local(addr)
            c = table.get(ext) if ext is not None else None
            return c if c is not None and (c.valid or c.state.restoring) else None
        if self.addresses.is_mesh_local(addr) and is_locator_iid(addr.packed[8:]):
            c = table.by_rloc16(int.from_bytes(addr.packed[14:], "big"))
            return c if c is not None and c.valid else None
        c = table.find_by_address(addr, self.ml_prefix)
        return c if c is not None and c.valid else None

    def _local(self, packet: Ipv6Packet, now: float) -> None:
        try:
            echo = parse_echo(packet)
        except ParseError:
            self.counters["icmp_malformed"] += 1
            return
        if echo is not None:
            if echo.request:
                self.counters["echo_requests"] += 1
                src = (
                    packet.dst
                    if not packet.dst.is_multicast
                    else (self.link_local if packet.src.is_link_local else self.addresses.ml_eid)
                )
                reply = echo_packet(
                    src, packet.src, Echo(False, echo.identifier, echo.sequence, echo.data)
                )
                self._send_packet(reply, now)
            else:
                out = self._pings.pop((echo.identifier, echo.sequence), None)
                self._events.append(
                    PingReply(
                        packet.src,
                        echo.identifier,
                        echo.sequence,
                        len(echo.data),
                        packet.hop_limit,
                        None if out is None else now - out.sent,
                    )
                )
            return
        if packet.next_header == PROTO_UDP:
            try:
                udp = packet.udp_datagram()
            except ParseError:
                self.counters["udp_malformed"] += 1
                return
            if udp.dst_port == TMF_PORT and self._tmf(packet, udp.src_port, udp.payload, now):
                return
        self._host.append(packet)

    # TMF (address resolution) ----------------------------------------------------------------

    def _tmf(self, packet: Ipv6Packet, src_port: int, payload: bytes, now: float) -> bool:
        """Handle the address-resolution URIs; False for others (they go to the host)."""
        try:
            msg = TmfMessage.from_bytes(payload)
        except ParseError:
            self.counters["tmf_malformed"] += 1
            return True
        if msg.is_request and msg.tmf_uri not in (
            TmfUri.ADDRESS_QUERY,
            TmfUri.ADDRESS_NOTIFY,
            TmfUri.ADDRESS_ERROR,
        ):
            return False
        inc = self.coap.receive(msg, now)
        if inc.kind in ("response", "reset"):
            self._tmf_dst.pop(msg.token, None)
            return True
        if inc.kind == "duplicate":
            for r in inc.replies:
                self._send_tmf(packet.dst, packet.src, src_port, r, now)
            return True
        if inc.kind != "request":
            return True
        try:
            fields = parse_thread_tlvs(msg.payload)
        except ParseError:
            self.counters["tmf_malformed"] += 1
            if msg.mtype == MessageType.CON:
                for r in self.coap.respond(msg, code=CoapCode.BAD_REQUEST, now=now):
                    self._send_tmf(packet.dst, packet.src, src_port, r, now)
            return True
        uri = msg.tmf_uri
        if uri is TmfUri.ADDRESS_QUERY:
            self._address_query(packet.src, fields, now)
        elif uri is TmfUri.ADDRESS_NOTIFY:
            if fields.target is not None and fields.rloc16 is not None:
                self.counters["address_notifications"] += 1
                for p in self.resolver.notify(fields.target, fields.rloc16, fields.ml_eid_iid):
                    self._send_packet(p, now)
        elif uri is TmfUri.ADDRESS_ERROR:
            self._address_error(fields)
        if msg.mtype == MessageType.CON:
            reply_src = packet.dst if not packet.dst.is_multicast else self._rloc()
            for r in self.coap.respond(msg, now=now):
                self._send_tmf(reply_src, packet.src, src_port, r, now)
        return True

    def _rloc(self) -> Addr:
        return locator_address(self.ml_prefix, self.rloc16)

    def _address_query(self, querier: Addr, fields: AddressTlvs, now: float) -> None:
        """Answer for ourselves and for valid MTD children that registered the target
        (``HandleTmf<kUriAddressQuery>``); the RLOC16 is ours (the parent's)."""
        target = fields.target
        if target is None or querier in self.addresses.unicast():
            return
        self.counters["address_queries_rx"] += 1
        if target in self.addresses.unicast():
            self._notify(querier, target, self.ml_eid_iid, None, now)
        for c in self.children_table:
            if not c.valid or c.ftd or c.link_failures >= FAILED_CHILD_TRANSMISSIONS:
                continue
            if c.has_address(target, self.ml_prefix) and c.ml_eid_iid is not None:
                self._notify(querier, target, c.ml_eid_iid, int(now - c.last_heard), now)

    def _notify(self, dst: Addr, target: Addr, ml_iid: bytes, ltt: int | None, now: float) -> None:
        tlvs = AddressTlvs(
            target=target, ml_eid_iid=ml_iid, rloc16=self.rloc16, last_transaction_time=ltt
        ).to_tlvs()
        msg = self.coap.request(TmfUri.ADDRESS_NOTIFY, tlvs, now=now)
        self._tmf_dst[msg.token] = (self._rloc(), dst, TMF_PORT)
        self._send_tmf(self._rloc(), dst, TMF_PORT, msg, now)
        self.counters["address_notifications_tx"] += 1

    def _address_error(self, fields: AddressTlvs) -> None:
        target, iid = fields.target, fields.ml_eid_iid
        if target is None or iid is None:
            return
        for c in self.children_table:
            if target in c.addresses and c.ml_eid_iid != iid:
                c.addresses.remove(target)
                self.counters["address_errors_applied"] += 1

    def _send_tmf(self, src: Addr, dst: Addr, dst_port: int, msg: TmfMessage, now: float) -> None:
        packet = Ipv6Packet.udp(src, dst, TMF_PORT, dst_port, msg.to_bytes(), hop_limit=64)
        self._send_packet(packet, now)

    def _resolve_and_send(self, packet: Ipv6Packet, now: float) -> str:
        dst = packet.dst
        rloc = self.resolver.lookup(dst)
        if rloc is not None:
            c = self.children_table.by_rloc16(rloc)
            if c is not None and c.valid:
                self._to_child(c, packet, "to eid", now)
                return "sent"
            if rloc == self.rloc16:
                self._local(packet, now)
                return "local"
            self.resolver.remove(dst)
        if self.resolver.resolve(dst, packet, now):
            tlvs = AddressTlvs(target=dst).to_tlvs()
            q = self.coap.request(
                TmfUri.ADDRESS_QUERY, tlvs, now=now, confirmable=False, expect_response=False
            )
            self._send_tmf(self._rloc(), REALM_LOCAL_ALL_ROUTERS, TMF_PORT, q, now)
            self.counters["address_queries_tx"] += 1
        return "resolving"

    def _to_child(self, child: ChildEntry, packet: Ipv6Packet, what: str, now: float) -> None:
        src: ExtAddress | ShortAddress = (
            self.ext_addr if packet.src == self.link_local else ShortAddress(self.rloc16)
        )
        dst: ExtAddress | ShortAddress
        if child.rx_on or child.use_short:
            dst = ShortAddress(child.rloc16) if child.rloc16 is not None else child.ext
        else:
            dst = child.ext
        if isinstance(src, ExtAddress) and packet.dst.is_link_local:
            dst = child.ext
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
        self.counters["ip_tx"] += 1
        if child.sleepy:
            self._enqueue(child, frames, what, "data", now)
        else:
            for tx in frames:
                self._emit(tx, what, child)

    def _forward_multicast(
        self, packet: Ipv6Packet, now: float, exclude: ChildEntry | None
    ) -> None:
        """A realm-local (or wider) multicast: one MAC broadcast for the rx-on children, and
        copies for sleepy children that registered the group or for the all-Thread-nodes
        groups (ff02::1 and ff03::1 are not copied, ``Child::HasIp6Address``)."""
        try:
            _mpl, inner = strip_mpl(packet)
        except ParseError:
            return
        group = inner.dst
        self._broadcast(packet, now)
        atn = {all_thread_nodes(self.ml_prefix, 2), all_thread_nodes(self.ml_prefix, 3)}
        for c in self.children_table:
            if c is exclude or not c.valid or c.rx_on:
                continue
            if group in atn or group in c.addresses:
                self._to_child(c, packet, "multicast copy", now)

    def _broadcast(self, packet: Ipv6Packet, now: float) -> None:
        src: ExtAddress | ShortAddress = (
            self.ext_addr if packet.src == self.link_local else ShortAddress(self.rloc16)
        )
        try:
            frames = data_frames(
                packet,
                src=src,
                dst=BROADCAST,
                pan_id=self.pan_id,
                tags=self._tags,
                key_index=self.keys.mac_key_index,
                contexts=self._contexts(),
            )
        except InvalidArgument:
            self.counters["ip_too_big"] += 1
            return
        for tx in frames:
            self._emit(tx, "multicast")
        self.counters["ip_tx_multicast"] += 1

    def _send_packet(self, packet: Ipv6Packet, now: float) -> str:
        """Route a packet that starts here (or comes from the host)."""
        dst = packet.dst
        if dst.is_multicast:
            scope = multicast_scope(dst)
            if scope >= 3:
                seq = self._mpl_sequence
                self._mpl_sequence = (seq + 1) & 0xFF
                seed = None if packet.src == self._rloc() else self.rloc16
                self.mpl.seen(
                    packet.src.packed if seed is None else seed.to_bytes(2, "big"), seq, now
                )
                self._forward_multicast(add_mpl(packet, MplOption(seq, seed)), now, None)
            else:
                self._broadcast(packet, now)
                atn = all_thread_nodes(self.ml_prefix, 2)
                for c in self.children_table:
                    if c.valid and c.sleepy and (dst == atn or dst in c.addresses):
                        self._to_child(c, packet, "multicast copy", now)
            return "sent"
        if dst in self.addresses.unicast():
            self._local(packet, now)
            return "local"
        child = self._child_for(dst)
        if child is not None:
            self._to_child(child, packet, "unicast", now)
            return "sent"
        if self.addresses.is_mesh_local(dst):
            if is_locator_iid(dst.packed[8:]):
                self.counters["ip_no_route"] += 1
                return "no_route"
            return self._resolve_and_send(packet, now)
        self.counters["ip_no_route"] += 1
        return "no_route"

    def send_ip6(self, packet: Ipv6Packet, now: float) -> str:
        """An IPv6 packet from the host (the Thread interface) into the mesh: ``"sent"``,
        ``"local"``, ``"resolving"`` (waiting for an Address Notification) or
        ``"no_route"``."""
        if not self.attached:
            raise NotAttached("the Thread network is not up")
        return self._send_packet(packet, now)

    def ping(
        self,
        dst: Addr | str,
        now: float,
        *,
        size: int = 8,
        identifier: int = 1,
        sequence: int = 1,
        hop_limit: int = 64,
        src: Addr | None = None,
    ) -> str:
        """Send an ICMPv6 Echo Request; the reply arrives as a
        :class:`~gateway.thread.network.events.PingReply` event. Returns what
        :meth:`send_ip6` returns; raises :class:`AddressUnresolved` for an RLOC nobody has."""
        if not self.attached:
            raise NotAttached("the Thread network is not up")
        d = Addr(dst)
        if not 0 <= size <= 1232:
            raise InvalidArgument("ping size must be 0..1232 bytes")
        if src is None:
            if d.is_link_local or (d.is_multicast and multicast_scope(d) <= 2):
                src = self.link_local
            elif self.addresses.is_mesh_local(d) and is_locator_iid(d.packed[8:]):
                src = self._rloc()
            else:
                src = self.addresses.ml_eid
        data = bytes(i & 0xFF for i in range(size))
        pkt = echo_packet(
            src, d, Echo(True, identifier & 0xFFFF, sequence & 0xFFFF, data), hop_limit=hop_limit
        )
        self._pings[(identifier & 0xFFFF, sequence & 0xFFFF)] = _PingOut(now, d)
        if len(self._pings) > 256:
            self._pings.pop(next(iter(self._pings)))
        verdict = self._send_packet(pkt, now)
        if verdict == "no_route":
            raise AddressUnresolved(f"no route to {d}")
        return verdict

    # -- time ------------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        if not self.attached:
            return None
        times: list[float] = []
        for t in (
            self.trickle.next_timeout(),
            self._id_bump_due,
            self.keys.next_timeout(),
            self.netdata.next_timeout(),
            self.resolver.next_timeout(),
            self.coap.next_timeout(),
        ):
            if t is not None:
                times.append(t)
        for c in self.children_table:
            times.append(c.deadline)
            if c.parent_response_due is not None:
                times.append(c.parent_response_due)
            if c.update_due is not None:
                times.append(c.update_due)
            if c.valid and c.sleepy and c.supervision_interval and not c.queue.pending:
                times.append(c.last_tx + c.supervision_interval)
        return min(times, default=None)

    def poll(self, now: float) -> None:
        if not self.attached:
            return
        self.rx.expire(now)
        if self.keys.poll(now):
            self._key_events()
        if self.trickle.poll(now):
            self._send_advertisement(now)
        if self._id_bump_due is not None and now >= self._id_bump_due:
            self._bump_id_sequence(now)
        if self.netdata.poll(now):
            self._netdata_changed(now)
        self.resolver.poll(now)
        resend, gone = self.coap.poll(now)
        for m in resend:
            self.counters["tmf_retransmissions"] += 1
            where = self._tmf_dst.get(m.token)
            if where is not None:
                self._send_tmf(where[0], where[1], where[2], m, now)
        for p in gone:
            self._tmf_dst.pop(p.message.token, None)
        for c in self.children_table:
            if now >= c.deadline:
                if c.state is ChildState.PARENT_REQUEST:
                    self.children_table.remove(c)
                    self.counters["parent_request_entries_expired"] += 1
                else:
                    self._remove_child(c, "timed out", now)
                continue
            if c.parent_response_due is not None and now >= c.parent_response_due:
                self._send_parent_response(c, now)
            if c.update_due is not None and now >= c.update_due:
                self._child_update_due(c, now)
            if (
                c.valid
                and c.sleepy
                and c.supervision_interval
                and not c.queue.pending
                and now >= c.last_tx + c.supervision_interval
            ):
                src, dst = self._child_link_addresses(c)
                self._enqueue(
                    c,
                    [empty_data_frame(src=src, dst=dst, pan_id=self.pan_id)],
                    "supervision",
                    "supervision",
                    now,
                )
                c.last_tx = now
                self.counters["supervision_frames"] += 1

    def _child_update_due(self, c: ChildEntry, now: float) -> None:
        if c.state.restoring:
            self._send_child_update_request(c, now)
            c.update_due = now + c.update_retry
            c.update_retry = min(c.update_retry * 2, RESTORED_CHILD_UPDATE_RETRY_MAX)
        elif c.valid and c.sleepy and c.netdata_version != self.netdata.version_for(c.full_netdata):
            if not c.queue.has_kind("cur"):
                self._send_child_update_request(c, now)
            c.update_due = now + NETDATA_SYNC_RETRY
        else:
            c.update_due = None

    def _bump_id_sequence(self, now: float) -> None:
        """The leader increments the Router ID Sequence every 10 s (§7.7); the snapshot keeps
        a bound ``ID_SEQUENCE_RESERVE`` ahead so that a restart continues past it."""
        self.id_sequence = (self.id_sequence + 1) & 0xFF
        self._id_bump_due = now + ROUTER_ID_SEQUENCE_PERIOD
        if self.id_sequence == self._id_reserved:
            self._id_reserved = (self.id_sequence + ID_SEQUENCE_RESERVE) & 0xFF
            self._events.append(SnapshotChanged("router id sequence reserve"))

    # -- views -----------------------------------------------------------------------------------

    def status(self, now: float) -> dict[str, Any]:
        d, s = self.netdata.versions()
        a = self.addresses
        valid = [c for c in self.children_table if c.valid]
        return {
            "role": self.role,
            "rloc16": f"0x{self.rloc16:04x}",
            "router_id": self.router_id,
            "ext_addr": self.ext_addr.hex(),
            "partition_id": self.partition_id,
            "weighting": self.weighting,
            "leader_router_id": self.leader_router_id,
            "id_sequence": self.id_sequence,
            "data_version": d,
            "stable_data_version": s,
            "key_sequence": self.keys.key_sequence,
            "key_switch_guard_active": self.keys.guard_active(now),
            "mle_frame_counter": self.keys.mle_frame_counter,
            "addresses": {
                "link_local": str(a.link_local),
                "ml_eid": str(a.ml_eid),
                "rloc": str(a.rloc) if a.rloc is not None else None,
                "leader_aloc": str(a.leader_aloc) if a.leader_aloc is not None else None,
            },
            "children": {
                "attached": len(valid),
                "sleepy": sum(1 for c in valid if c.sleepy),
                "restoring": sum(1 for c in self.children_table if c.state.restoring),
                "max": self.config.max_children,
                "table_full": self.children_table.is_full,
            },
            "advertisement_interval_s": self.trickle.interval,
            "eid_cache": self.resolver.entries(),
            "counters": dict(self.counters),
            "link": self.rx.stats(),
        }

    def children(self, now: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for c in sorted(self.children_table, key=lambda c: c.rloc16 or 0xFFFF):
            if c.state is ChildState.PARENT_REQUEST:
                continue
            addrs = [str(x) for x in c.addresses]
            ml = c.ml_eid(self.ml_prefix)
            if ml is not None:
                addrs.insert(0, str(ml))
            out.append(
                {
                    "rloc16": None if c.rloc16 is None else f"0x{c.rloc16:04x}",
                    "ext_addr": c.ext.hex(),
                    "state": c.state.value,
                    "mode": mode_string(c.mode),
                    "version": c.version,
                    "timeout_s": int(c.timeout),
                    "age_s": round(now - c.last_heard, 1),
                    "link_margin_db": c.link_margin,
                    "lq_in": _lq(c.link_margin),
                    "netdata_version": c.netdata_version,
                    "supervision_interval_s": c.supervision_interval,
                    "queued_messages": len(c.queue),
                    "addresses": addrs,
                }
            )
        return out

    def netdata_view(self) -> dict[str, Any]:
        d, s = self.netdata.versions()
        return {"data_version": d, "stable_data_version": s, **self.netdata.full.describe()}


def _lq(margin: int) -> int:
    from gateway.thread.network.security import link_quality

    return link_quality(margin)
