"""A virtual-time, in-memory air for the Thread network cores: the gateway's
:class:`RouterCore` (with a model of the radio service: MAC security with its own frame counter,
source match for the frame-pending bit or the AT86RF233's chip-wide "always pending") and any
number of :class:`ChildCore` things. Frames are delivered instantly with MAC address and PAN
filtering; a sleepy child only hears what arrives while its receiver is on; unicast frames are
acknowledged when the addressee heard them. Time jumps to the next deadline."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.fcs import append_fcs
from gateway.crypto.thread_keys import mac_key_index, network_key_derivation
from gateway.thread.link import LinkSecurity, secure_tx_frame
from gateway.thread.network.child import ChildConfig, ChildCore, ChildRole
from gateway.thread.network.events import Event, NetFrame, SetSourceMatch, Transmit
from gateway.thread.network.router import RouterConfig, RouterCore
from gateway.thread.network.snapshot import ChildNodeSnapshot, RouterSnapshot
from gateway.wire.dataset import ActiveDataset, new_active_dataset
from gateway.wire.mac802154 import (
    BROADCAST,
    ExtAddress,
    FrameType,
    MacCommand,
    MacFrame,
    ShortAddress,
)
from tests.thread.sim import VirtualTime

GATEWAY_EXT = ExtAddress.from_hex("12b4300000000001")


def dataset(seed: int = 1, channel: int = 15) -> ActiveDataset:
    return new_active_dataset(random.Random(seed), channel=channel, network_name="SimNet")


@dataclass
class Node:
    core: ChildCore
    alive: bool = True
    events: list[Event] = field(default_factory=list)

    @property
    def ext(self) -> ExtAddress:
        return self.core.ext_addr


@dataclass
class AirFrame:
    time: float
    sender: str
    psdu: bytes  # with FCS, as secured on air


class NetWorld(VirtualTime):
    def __init__(
        self,
        ds: ActiveDataset | None = None,
        *,
        seed: int = 7,
        config: RouterConfig | None = None,
        always_frame_pending: bool = False,
        saved: RouterSnapshot | None = None,
        mle_frame_counter: int | None = None,
        record: bool = False,
        start: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.ds = ds or dataset()
        self.now = 1000.0
        self.always_fp = always_frame_pending
        self.parent = RouterCore(
            self.ds,
            GATEWAY_EXT,
            rng=random.Random(self.rng.random()),
            config=config or RouterConfig(),
            saved=saved,
            mle_frame_counter=mle_frame_counter,
        )
        self.parent_alive = True
        self.mac_counter = 0
        self.source_match: dict[ExtAddress | ShortAddress, bool] = {}
        self.nodes: list[Node] = []
        self.parent_events: list[Event] = []
        self.air: list[AirFrame] = []
        self.record = record
        self.parent_rx_hook: Callable[[MacFrame], None] | None = None
        if start:
            self.parent.start(self.now)
            self._pump()

    # -- participants -----------------------------------------------------------------------------

    def add_child(
        self,
        *,
        rx_on: bool = True,
        timeout: int = 240,
        poll_period: float | None = None,
        ext: ExtAddress | None = None,
        saved: ChildNodeSnapshot | None = None,
        start: bool = True,
        full_network_data: bool = False,
        **kw: object,
    ) -> Node:
        cfg = ChildConfig(
            rx_on=rx_on,
            timeout=timeout,
            poll_period=poll_period,
            full_network_data=full_network_data,
        )
        core = ChildCore(
            self.ds,
            ext or ExtAddress(self.rng.randbytes(8)),
            rng=random.Random(self.rng.random()),
            config=cfg,
            saved=saved,
            **kw,  # type: ignore[arg-type]
        )
        node = Node(core)
        self.nodes.append(node)
        if start:
            core.start(self.now)
            self._pump()
        return node

    # -- the air ----------------------------------------------------------------------------------

    def _mac_key(self, seq: int) -> bytes:
        assert self.ds.network_key is not None
        return network_key_derivation(self.ds.network_key, seq)[1]

    def _pump(self) -> None:
        for _ in range(10_000):
            moved = False
            for a in self.parent.radio_actions():
                moved = True
                assert isinstance(a, SetSourceMatch)
                self.source_match[a.address] = a.pending
            out = self.parent.frames_to_send()
            for nf in out:
                moved = True
                self._parent_tx(nf)
            self.parent_events += self.parent.events()
            for node in self.nodes:
                acts = node.core.actions()
                node.events += node.core.events()
                for t in acts:
                    moved = True
                    if node.alive:
                        self._child_tx(node, t)
            if not moved:
                return
        raise AssertionError("the world does not settle")

    def _parent_tx(self, nf: NetFrame) -> None:
        if not self.parent_alive:
            return
        tx = nf.tx
        if tx.security is LinkSecurity.MAC:
            frame = secure_tx_frame(
                tx,
                key=self._mac_key(nf.key_sequence),
                frame_counter=self.mac_counter,
                ext_src=GATEWAY_EXT,
                key_index=mac_key_index(nf.key_sequence),
            )
            self.mac_counter += 1
            self.parent.set_mac_frame_counter(self.mac_counter)
        else:
            frame = tx.frame
        psdu = append_fcs(frame.to_bytes())
        if self.record:
            self.air.append(AirFrame(self.now, "gateway", psdu))
        heard = False
        for node in self.nodes:
            if not node.alive or not node.core.rx_on(self.now):
                continue
            if self._accepts(frame, node.core.ext_addr, node.core.rloc16):
                if frame.dst != BROADCAST:
                    heard = True
                node.core.frame_received(psdu, self.now)
        if nf.handle is not None:
            self.parent.tx_done(nf.handle, heard, self.now)

    def _accepts(self, frame: MacFrame, ext: ExtAddress, short: int | None) -> bool:
        if frame.dst_pan not in (self.parent.pan_id, 0xFFFF):
            return False
        if frame.dst == BROADCAST or frame.dst == ext:
            return True
        return short is not None and frame.dst == ShortAddress(short)

    def _child_tx(self, node: Node, t: Transmit) -> None:
        psdu = append_fcs(t.psdu)
        if self.record:
            self.air.append(AirFrame(self.now, str(node.ext), psdu))
        frame = MacFrame.from_bytes(t.psdu)
        acked = False
        fp = False
        if self.parent_alive and self._accepts(frame, GATEWAY_EXT, self.parent.rloc16):
            acked = frame.dst != BROADCAST
            is_poll = frame.frame_type == FrameType.COMMAND and frame.payload[:1] == bytes(
                (MacCommand.DATA_REQUEST,)
            )
            if is_poll:
                fp = self.always_fp or bool(
                    frame.src is not None and self.source_match.get(frame.src)
                )
            if self.parent_rx_hook is not None:
                self.parent_rx_hook(frame)
            self.parent.frame_received(
                frame,
                self.now,
                rssi=-20,
                ack_frame_pending=fp if is_poll and self.always_fp else None,
            )
        for other in self.nodes:  # other children hear broadcasts (and ignore them)
            if other is node or not other.alive or not other.core.rx_on(self.now):
                continue
            if frame.dst == BROADCAST or self._accepts(frame, other.ext, other.core.rloc16):
                other.core.frame_received(psdu, self.now)
        if t.ack_request:
            node.core.tx_done(t.handle, acked, self.now, frame_pending=fp)

    # -- the clock --------------------------------------------------------------------------------

    def next_time(self) -> float | None:
        times = [self.parent.next_timeout() if self.parent_alive else None]
        times += [n.core.next_timeout() for n in self.nodes]
        return min((t for t in times if t is not None), default=None)

    def step(self, limit: float) -> bool:
        self._pump()
        t = self.next_time()
        if t is None or t > limit:
            self.now = limit
            self._poll_all()
            return False
        self.now = max(self.now, t)
        self._poll_all()
        return True

    def _poll_all(self) -> None:
        if self.parent_alive:
            self.parent.poll(self.now)
        for n in self.nodes:
            n.core.poll(self.now)
        self._pump()

    # -- helpers ----------------------------------------------------------------------------------

    def attached(self) -> list[Node]:
        return [n for n in self.nodes if n.core.role is ChildRole.CHILD]

    def restart_parent(self, *, reserve: int = 1000) -> RouterSnapshot:
        """The border router service restarts: snapshot, new core from it (counters reserved
        ahead), same radio."""
        snap = RouterSnapshot.from_dict(self.parent.snapshot().to_dict())
        self.parent = RouterCore(
            self.ds,
            GATEWAY_EXT,
            rng=random.Random(self.rng.random()),
            config=self.parent.config,
            saved=snap,
            mle_frame_counter=snap.mle_frame_counter + reserve,
        )
        self.parent.set_mac_frame_counter(self.mac_counter)
        self.source_match.clear()
        self.parent.start(self.now)
        self._pump()
        return snap
