"""A virtual-time, in-memory world for the sans-IO Thread pieces: the gateway's
:class:`BorderRouterCore` on one channel, any number of :class:`Joiner` state machines on the
same "air" (frames delivered instantly, with MAC address filtering), and external commissioners
whose DTLS datagrams reach the border agent directly. No sockets, no threads, no sleeping: time
jumps to the next deadline."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.fcs import append_fcs
from gateway.crypto.thread_keys import mac_key_index, network_key_derivation
from gateway.thread.commissioning.commissioner import Commissioner
from gateway.thread.commissioning.core import BorderRouterCore
from gateway.thread.commissioning.ext_commissioner import ExternalCommissioner
from gateway.thread.commissioning.joiner import Joiner, Transmit, Tune
from gateway.thread.link import LinkSecurity, secure_tx_frame
from gateway.wire.dataset import ActiveDataset, new_active_dataset
from gateway.wire.mac802154 import ExtAddress, MacFrame, ShortAddress

GATEWAY_EXT = ExtAddress.from_hex("12b4300000000001")


def dataset(seed: int = 1, channel: int = 15) -> ActiveDataset:
    return new_active_dataset(random.Random(seed), channel=channel, network_name="SimNet")


@dataclass
class AirLog:
    """Every frame that went over the air: (time, sender, channel, PSDU with FCS)."""

    frames: list[tuple[float, str, int, bytes]] = field(default_factory=list)


@dataclass
class _JoinerNode:
    joiner: Joiner
    channel: int = 0
    pan: int = 0
    ext: ExtAddress | None = None
    drop_rx: bool = False  # "vanish": stop hearing and sending
    rx_budget: int | None = None  # vanish after hearing this many frames from the gateway


@dataclass
class _ExtNode:
    ext: ExternalCommissioner
    peer: tuple[str, int]
    drop: bool = False


class VirtualTime:
    """Running a virtual-time world: ``step(end)`` advances ``now`` to the next deadline (no
    later than ``end``) and returns False when there is none."""

    now: float

    def step(self, limit: float) -> bool:
        raise NotImplementedError

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.step(end):
            pass

    def run_until(self, pred: Callable[[], bool], timeout: float = 60.0) -> float:
        start = self.now
        end = self.now + timeout
        while not pred():
            if not self.step(end) and not pred():
                raise AssertionError(f"condition not met within {timeout} s of virtual time")
        return self.now - start


class World(VirtualTime):
    def __init__(self, ds: ActiveDataset | None = None, *, seed: int = 7, **core_kw: object):
        self.rng = random.Random(seed)
        self.ds = ds or dataset()
        self.now = 1000.0
        self.core = BorderRouterCore(self.ds, GATEWAY_EXT, rng=self.rng, **core_kw)  # type: ignore[arg-type]
        assert self.ds.network_key is not None
        self.mac_key = network_key_derivation(self.ds.network_key, 0)[1]
        self.kek_counter = 0
        self.joiners: list[_JoinerNode] = []
        self.externals: list[_ExtNode] = []
        self.air = AirLog()
        self.verdicts: list[object] = []

    @property
    def channel(self) -> int:
        assert self.ds.channel is not None
        return self.ds.channel

    # -- participants -----------------------------------------------------------------------------

    def add_joiner(self, pskd: str, eui64: bytes, **kw: object) -> _JoinerNode:
        kw.setdefault("channels", (self.channel,))
        j = Joiner(pskd, eui64, rng=random.Random(self.rng.random()), **kw)  # type: ignore[arg-type]
        node = _JoinerNode(j)
        self.joiners.append(node)
        return node

    def add_external(self, cid: str = "ext-commissioner", pskc: bytes | None = None,
                     **kw: object) -> ExternalCommissioner:  # fmt: skip
        c = Commissioner(cid, rng=random.Random(self.rng.random()), **kw)  # type: ignore[arg-type]
        assert self.ds.pskc is not None
        ext = ExternalCommissioner(c, pskc or self.ds.pskc)
        node = _ExtNode(ext, ("127.0.0.1", 40000 + len(self.externals)))
        self.externals.append(node)
        ext.connect(self.now)
        self._pump()
        return ext

    # -- the world's clock ------------------------------------------------------------------------

    def _pump(self) -> None:
        for _ in range(200):
            moved = False
            for n in self.externals:
                for d in n.ext.datagrams_to_send():
                    moved = True
                    if not n.drop:
                        tid = bytes(map(int, n.peer[0].split("."))) + n.peer[1].to_bytes(2, "big")
                        self.core.ba_datagram_received(n.peer, tid, d, self.now)
            for peer, d in self.core.ba_datagrams():
                moved = True
                for n in self.externals:
                    if n.peer == peer and not n.drop:
                        n.ext.datagram_received(d, self.now)
            for jn in self.joiners:
                for a in jn.joiner.actions():
                    moved = True
                    if isinstance(a, Tune):
                        jn.channel, jn.pan, jn.ext = a.channel, a.pan_id, a.ext_addr
                    elif isinstance(a, Transmit) and not jn.drop_rx:
                        self._joiner_tx(jn, a.psdu)
            for of in self.core.frames_to_send():
                moved = True
                tx = of.tx
                if tx.security is LinkSecurity.NONE:
                    psdu = tx.frame.to_bytes()
                elif tx.security is LinkSecurity.KEK:
                    assert of.kek is not None
                    psdu = secure_tx_frame(
                        tx, key=of.kek, frame_counter=self.kek_counter, ext_src=GATEWAY_EXT
                    ).to_bytes()
                    self.kek_counter += 1
                else:
                    psdu = secure_tx_frame(
                        tx, key=self.mac_key, frame_counter=self.kek_counter,
                        ext_src=GATEWAY_EXT, key_index=mac_key_index(0),
                    ).to_bytes()  # fmt: skip
                self._gateway_tx(psdu)
            if not moved:
                return
        raise AssertionError("the world does not settle")

    def _joiner_tx(self, jn: _JoinerNode, psdu: bytes) -> None:
        self.air.frames.append((self.now, "joiner", jn.channel, append_fcs(psdu)))
        for other in self.joiners:  # joiners hear each other's broadcasts (and ignore them)
            if other is not jn and other.channel == jn.channel and not other.drop_rx:
                other.joiner.receive_frame(append_fcs(psdu), self.now, channel=jn.channel)
        if jn.channel != self.channel:
            return
        frame = MacFrame.from_bytes(psdu)
        dst_ok = frame.dst == GATEWAY_EXT or frame.dst == ShortAddress(0xFFFF)
        pan_ok = frame.dst_pan in (self.core.pan_id, 0xFFFF)
        if dst_ok and pan_ok:
            self.verdicts.append(self.core.frame_received(frame, self.now, channel=self.channel))

    def _gateway_tx(self, psdu: bytes) -> None:
        self.air.frames.append((self.now, "gateway", self.channel, append_fcs(psdu)))
        frame = MacFrame.from_bytes(psdu)
        for jn in self.joiners:
            if jn.channel != self.channel or jn.drop_rx:
                continue
            if frame.dst == jn.ext and frame.dst_pan == jn.pan:
                if jn.rx_budget is not None:
                    if jn.rx_budget <= 0:
                        jn.drop_rx = True
                        continue
                    jn.rx_budget -= 1
                jn.joiner.receive_frame(append_fcs(psdu), self.now, channel=self.channel)

    def next_time(self) -> float | None:
        times = [self.core.next_timeout()]
        times += [n.joiner.next_timeout() for n in self.joiners]
        times += [n.ext.next_timeout() for n in self.externals]
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
        self.core.poll(self.now)
        for n in self.joiners:
            n.joiner.poll(self.now)
        for e in self.externals:
            e.ext.poll(self.now)
        self._pump()
