"""Key management, own frame counters, per-neighbour replay windows, and the MLE security
wrapper (fact sheet §3, §10.2, §10.3; OpenThread ``key_manager.cpp``, ``mle.cpp``
``ProcessMessageSecurity``/``ProcessKeySequence``, ``mac.cpp`` ``ProcessReceiveSecurity``).

* :class:`KeyManager` holds the network key (never shown), the current key sequence, the MLE
  and MAC keys derived from it (HMAC-SHA256(network key, BE32(seq) || "Thread"): MLE key the
  first half, MAC key the second), the node's own MLE frame counter and MAC frame counter (both
  reset to 0 on a key switch), the rotation timer of the Security Policy and the key switch
  guard (93 % of the rotation time). A persisted counter is passed in as the starting value:
  reserving ahead across restarts is the service's job.
* :class:`NeighborCounters` is one neighbour's replay state: its key sequence and the next MLE
  and MAC frame counters it may use. Same key sequence: a counter below the stored one is a
  replay (the one just below it a duplicate); a larger key sequence resets both windows; a
  smaller one is refused.
* :func:`seal_mle` / :func:`open_mle` wrap :mod:`gateway.wire.mle` for whole datagrams: UDP
  19788 both ways, hop limit 255, link-local source, security suite 0.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from gateway.crypto.thread_keys import mac_key_index, network_key_derivation
from gateway.errors import CryptoError, InvalidArgument, ParseError
from gateway.thread.link import RxDatagram
from gateway.thread.network.constants import (
    KEY_ROTATION_HOURS_DEFAULT,
    KEY_ROTATION_HOURS_MIN,
    KEY_SWITCH_GUARD_PERCENT,
)
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import ExtAddress
from gateway.wire.mle import (
    MLE_HOP_LIMIT,
    MLE_PORT,
    AuxSecurityHeader,
    MleMessage,
    SecuredMleFrame,
    encode_secured,
    parse_mle,
)

__all__ = [
    "Drop",
    "KeyManager",
    "NeighborCounters",
    "ReceivedMle",
    "link_cost",
    "link_quality",
    "open_mle",
    "seal_mle",
]

KEY_CACHE: Final = 4
COUNTER_LIMIT: Final = 0xFFFFFFFF


class Drop(Exception):
    """Internal: a received message is dropped; ``reason`` names the counter to bump."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def link_quality(margin: float) -> int:
    """Link quality from a link margin in dB, no hysteresis (a fresh value): > 20 -> 3,
    > 10 -> 2, > 2 -> 1, else 0 (``link_quality.cpp``)."""
    if margin > 20:
        return 3
    if margin > 10:
        return 2
    if margin > 2:
        return 1
    return 0


def link_cost(lq: int) -> int:
    """Link cost of a link quality: 1 / 2 / 4 / 16 (infinite) for 3 / 2 / 1 / 0."""
    return {3: 1, 2: 2, 1: 4}.get(lq, 16)


@dataclass
class KeyManager:
    """Keys, key sequence and this node's own frame counters. Time is passed in."""

    network_key: bytes = field(repr=False)
    key_sequence: int = 0
    mle_frame_counter: int = 0
    mac_frame_counter: int = 0
    rotation_hours: int = KEY_ROTATION_HOURS_DEFAULT
    guard_until: float | None = None  # key switch guard running until then (None: not running)
    rotation_due: float | None = None
    switches: list[int] = field(default_factory=list)  # key sequences switched to, not yet seen
    _cache: OrderedDict[int, tuple[bytes, bytes]] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if len(self.network_key) != 16:
            raise InvalidArgument("a network key is 16 bytes")
        for name in ("key_sequence", "mle_frame_counter", "mac_frame_counter"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= COUNTER_LIMIT:
                raise InvalidArgument(f"{name} must fit 32 bits")
        self.rotation_hours = max(KEY_ROTATION_HOURS_MIN, self.rotation_hours)

    def __repr__(self) -> str:
        return f"KeyManager(key_sequence={self.key_sequence}, mle_fc={self.mle_frame_counter})"

    # -- keys --------------------------------------------------------------------------------

    def keys_for(self, key_sequence: int) -> tuple[bytes, bytes]:
        """``(mle_key, mac_key)`` of ``key_sequence`` (a few are cached)."""
        hit = self._cache.get(key_sequence)
        if hit is not None:
            self._cache.move_to_end(key_sequence)
            return hit
        pair = network_key_derivation(self.network_key, key_sequence)
        if abs(key_sequence - self.key_sequence) > 1:
            return pair  # a foreign sequence (maybe hostile): computed, never cached
        self._cache[key_sequence] = pair
        while len(self._cache) > KEY_CACHE:
            self._cache.popitem(last=False)
        return pair

    @property
    def mle_key(self) -> bytes:
        return self.keys_for(self.key_sequence)[0]

    @property
    def mac_key(self) -> bytes:
        return self.keys_for(self.key_sequence)[1]

    @property
    def mac_key_index(self) -> int:
        return mac_key_index(self.key_sequence)

    def resolve_mac_key_index(self, key_index: int) -> int | None:
        """The key sequence (current, +1 or -1) that a received MAC key index names."""
        seq = self.key_sequence
        for cand in (seq, seq + 1, seq - 1):
            if 0 <= cand <= COUNTER_LIMIT and mac_key_index(cand) == key_index:
                return cand
        return None

    # -- own counters ------------------------------------------------------------------------

    def next_mle_counter(self) -> int:
        fc = self.mle_frame_counter
        self.mle_frame_counter = (fc + 1) & COUNTER_LIMIT
        return fc

    def next_mac_counter(self) -> int:
        fc = self.mac_frame_counter
        self.mac_frame_counter = (fc + 1) & COUNTER_LIMIT
        return fc

    # -- key sequence ------------------------------------------------------------------------

    @property
    def rotation_time(self) -> float:
        return self.rotation_hours * 3600.0

    @property
    def guard_time(self) -> float:
        return float(self.rotation_hours * KEY_SWITCH_GUARD_PERCENT // 100) * 3600.0

    def start(self, now: float) -> None:
        """``KeyManager::Start``: the guard is not running; the rotation timer starts."""
        self.guard_until = None
        self.rotation_due = now + self.rotation_time

    def guard_active(self, now: float) -> bool:
        return self.guard_until is not None and now < self.guard_until

    def set_key_sequence(
        self, key_sequence: int, now: float, *, apply_guard: bool = False, reset_guard: bool = True
    ) -> bool:
        """Switch to ``key_sequence``. With ``apply_guard`` (a peer's +1), refused while the
        guard runs. Own counters restart at 0 and the rotation timer restarts. Returns True when
        it switched."""
        if not 0 <= key_sequence <= COUNTER_LIMIT:
            return False
        if key_sequence == self.key_sequence:
            return False
        if apply_guard and self.guard_active(now):
            return False
        self.key_sequence = key_sequence
        self.mle_frame_counter = 0
        self.mac_frame_counter = 0
        self.rotation_due = now + self.rotation_time
        if reset_guard:
            self.guard_until = now + self.guard_time
        self.switches.append(key_sequence)
        return True

    def process_peer_key_sequence(
        self, key_sequence: int, now: float, *, authoritative: bool, from_valid_neighbor: bool
    ) -> str:
        """``Mle::ProcessKeySequence`` for an authenticated message: ``"same"``, ``"switched"``,
        ``"guarded"`` (a peer's +1 during the guard), ``"resync"`` (a larger jump from a valid
        neighbour by a peer message: re-synchronise with a challenge) or ``"ignored"``."""
        seq = self.key_sequence
        if key_sequence == seq:
            return "same"
        if key_sequence < seq:
            return "ignored"
        if authoritative:
            self.set_key_sequence(key_sequence, now)
            return "switched"
        if not from_valid_neighbor:
            return "ignored"
        if key_sequence == seq + 1:
            return (
                "switched"
                if self.set_key_sequence(key_sequence, now, apply_guard=True)
                else "guarded"
            )
        return "resync"

    def next_timeout(self) -> float | None:
        return self.rotation_due

    def poll(self, now: float) -> bool:
        """Rotate when the Security Policy's rotation time has passed. True when it did."""
        if self.rotation_due is not None and now >= self.rotation_due:
            return self.set_key_sequence(self.key_sequence + 1, now)
        return False

    def take_switches(self) -> list[int]:
        out, self.switches = self.switches, []
        return out


@dataclass
class NeighborCounters:
    """One neighbour's key sequence and the next frame counters it may use."""

    key_sequence: int = 0
    mle: int | None = None  # next acceptable MLE frame counter (None: any)
    mac: int | None = None  # next acceptable MAC frame counter (None: any)

    def check(self, key_sequence: int, counter: int, *, mle: bool) -> str:
        """``"ok"``, ``"duplicate"`` (MAC: the last counter again), ``"replay"`` or
        ``"old_key"``. Nothing is stored: call :meth:`accept` once the frame is taken."""
        if key_sequence < self.key_sequence:
            return "old_key"
        if key_sequence > self.key_sequence:
            return "ok"
        nxt = self.mle if mle else self.mac
        if nxt is None or counter >= nxt:
            return "ok"
        if not mle and counter == nxt - 1:
            return "duplicate"
        return "replay"

    def accept(self, key_sequence: int, counter: int, *, mle: bool) -> None:
        if key_sequence > self.key_sequence:
            self.key_sequence = key_sequence
            self.mle = None
            self.mac = None
        if mle:
            self.mle = counter + 1
        else:
            self.mac = counter + 1

    def set(self, key_sequence: int, *, mle: int | None, mac: int | None) -> None:
        """Counters announced in Link/MLE Frame Counter TLVs (authenticated)."""
        self.key_sequence = key_sequence
        self.mle = mle
        self.mac = mac


def seal_mle(
    message: MleMessage,
    keys: KeyManager,
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    *,
    frame_counter: int | None = None,
) -> Ipv6Packet:
    """The IPv6/UDP datagram of a secured MLE message (takes the next MLE frame counter)."""
    fc = keys.next_mle_counter() if frame_counter is None else frame_counter
    payload = encode_secured(
        message,
        mle_key=keys.mle_key,
        key_sequence=keys.key_sequence,
        frame_counter=fc,
        source=src,
        destination=dst,
    )
    return Ipv6Packet.udp(src, dst, MLE_PORT, MLE_PORT, payload, hop_limit=MLE_HOP_LIMIT)


@dataclass(frozen=True)
class ReceivedMle:
    """An authenticated MLE message and where it came from."""

    message: MleMessage
    aux: AuxSecurityHeader
    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    sender: ExtAddress
    datagram: RxDatagram

    @property
    def key_sequence(self) -> int:
        return self.aux.key_sequence

    @property
    def frame_counter(self) -> int:
        return self.aux.frame_counter


def is_mle_datagram(packet: Ipv6Packet) -> bool:
    """UDP 19788 -> 19788 (checked before the UDP checksum)."""
    p = packet.payload
    return (
        packet.next_header == 17
        and len(p) >= 8
        and int.from_bytes(p[0:2], "big") == MLE_PORT
        and int.from_bytes(p[2:4], "big") == MLE_PORT
    )


def open_mle(dg: RxDatagram, keys: KeyManager) -> ReceivedMle:
    """Authenticate and decode the MLE message of a received datagram. Raises :class:`Drop`
    (``mle_malformed``, ``mle_unsecured``, ``mle_bad_hop_limit``, ``mle_not_link_local``,
    ``mle_auth_failed``) and nothing else."""
    pkt = dg.packet
    if pkt.hop_limit != MLE_HOP_LIMIT:
        raise Drop("mle_bad_hop_limit")
    if not pkt.src.is_link_local:
        raise Drop("mle_not_link_local")
    udp = dg.udp()
    if udp is None or udp.src_port != MLE_PORT or udp.dst_port != MLE_PORT:
        raise Drop("mle_malformed")
    try:
        parsed = parse_mle(udp.payload)
    except ParseError:
        raise Drop("mle_malformed") from None
    if not isinstance(parsed, SecuredMleFrame):
        raise Drop("mle_unsecured")
    mle_key = keys.keys_for(parsed.aux.key_sequence)[0]
    try:
        msg = parsed.decrypt(mle_key, pkt.src, pkt.dst)
    except CryptoError:
        raise Drop("mle_auth_failed") from None
    except ParseError:
        raise Drop("mle_malformed") from None
    sender = ExtAddress.from_iid(pkt.src.packed[8:])
    return ReceivedMle(msg, parsed.aux, pkt.src, pkt.dst, sender, dg)
