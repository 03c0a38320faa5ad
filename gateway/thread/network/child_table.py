"""The parent's child table: entries, their states, RLOC16 allocation, per-child indirect
queues, and the persisted form that lets attached children survive a service restart (fact sheet
§4.5, §5.4, §6; OpenThread ``child_table.cpp``, ``child.hpp``, ``neighbor.hpp``,
``indirect_sender.cpp``).

States (OpenThread's names): ``parent_request`` (a Parent Request created the entry; it lives
5 s), ``child_id_request`` (only a REED parent waiting for its upgrade uses it; the gateway is a
router, so it never does), ``valid`` (attached), ``restored`` (read back from the snapshot after
a restart) and ``child_update_request`` (restored, Child Update Request sent, answer awaited).

The table is bounded (``max_children``, default 32): a Parent Request from an unknown device
only takes a free entry, so nothing ever evicts an attached child. Indirect queues are bounded
per child in messages and bytes; overflow evicts the oldest message and counts it.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidArgument
from gateway.thread.link import TxFrame
from gateway.thread.network.addressing import mesh_local_address, rloc16_of, router_id_of
from gateway.thread.network.constants import (
    DEFAULT_INDIRECT_QUEUE_BYTES,
    DEFAULT_INDIRECT_QUEUE_MESSAGES,
    DEFAULT_MAX_CHILDREN,
    MAX_CHILD_ID,
    MIN_CHILD_ID,
)
from gateway.thread.network.errors import InvalidSnapshot
from gateway.thread.network.security import NeighborCounters
from gateway.wire.mac802154 import ExtAddress
from gateway.wire.mle import ModeTlv

__all__ = [
    "ChildEntry",
    "ChildSnapshot",
    "ChildState",
    "ChildTable",
    "IndirectMessage",
    "IndirectQueue",
    "mode_string",
]


class ChildState(enum.Enum):
    PARENT_REQUEST = "parent_request"
    CHILD_ID_REQUEST = "child_id_request"
    VALID = "valid"
    RESTORED = "restored"
    CHILD_UPDATE_REQUEST = "child_update_request"

    @property
    def restoring(self) -> bool:
        return self in (ChildState.RESTORED, ChildState.CHILD_UPDATE_REQUEST)


def mode_string(mode: int) -> str:
    """OpenThread's CLI mode letters: r (rx-on), d (FTD), n (full Network Data); ``-`` none."""
    out = ""
    if mode & ModeTlv.RX_ON_WHEN_IDLE:
        out += "r"
    if mode & ModeTlv.FULL_THREAD_DEVICE:
        out += "d"
    if mode & ModeTlv.FULL_NETWORK_DATA:
        out += "n"
    return out or "-"


# --- indirect queues ----------------------------------------------------------------------------


@dataclass
class IndirectMessage:
    """One message (its frames, fragments included) waiting for a sleepy child's polls."""

    frames: list[TxFrame]
    what: str
    created: float
    kind: str = "data"  # "mle" | "data" | "supervision"
    cursor: int = 0  # next frame to send
    attempts: int = 0  # failed poll-triggered tries of the current frame

    @property
    def size(self) -> int:
        return sum(len(f.frame.payload) for f in self.frames)

    @property
    def done(self) -> bool:
        return self.cursor >= len(self.frames)


@dataclass
class IndirectQueue:
    max_messages: int = DEFAULT_INDIRECT_QUEUE_MESSAGES
    max_bytes: int = DEFAULT_INDIRECT_QUEUE_BYTES
    messages: deque[IndirectMessage] = field(default_factory=deque)
    in_flight: int | None = None  # handle of the frame handed out and not yet reported

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def pending(self) -> bool:
        return bool(self.messages)

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.messages)

    def head(self) -> IndirectMessage | None:
        return self.messages[0] if self.messages else None

    def push(self, msg: IndirectMessage) -> list[IndirectMessage]:
        """Queue ``msg``; returns the messages evicted to make room (oldest first; a message
        whose frames are partly sent is never evicted)."""
        evicted: list[IndirectMessage] = []
        if msg.size > self.max_bytes:
            return [msg]
        while self.messages and (
            len(self.messages) >= self.max_messages or self.bytes + msg.size > self.max_bytes
        ):
            victim_index = 1 if self.messages[0].cursor > 0 or self.in_flight is not None else 0
            if victim_index >= len(self.messages):
                evicted.append(msg)
                return evicted
            victim = self.messages[victim_index]
            del self.messages[victim_index]
            evicted.append(victim)
        self.messages.append(msg)
        return evicted

    def has_kind(self, kind: str) -> bool:
        return any(m.kind == kind for m in self.messages)

    def remove_kind(self, kind: str) -> int:
        """Drop queued messages of ``kind`` that have not started; returns how many."""
        keep = deque(
            m
            for i, m in enumerate(self.messages)
            if m.kind != kind or (i == 0 and (m.cursor or self.in_flight is not None))
        )
        n = len(self.messages) - len(keep)
        self.messages = keep
        return n

    def clear(self) -> int:
        n = len(self.messages)
        self.messages.clear()
        self.in_flight = None
        return n


# --- entries ------------------------------------------------------------------------------------


@dataclass(eq=False)
class ChildEntry:
    ext: ExtAddress
    state: ChildState
    last_heard: float
    timeout: float
    mode: int = 0
    version: int = 0
    rloc16: int | None = None
    rx_challenge: bytes = b""  # the child's challenge, to echo in our Response TLV
    challenge: bytes = b""  # ours (Parent Response, restoring Child Update Request)
    challenge_time: float = 0.0  # when ``challenge`` was issued
    counters: NeighborCounters = field(default_factory=NeighborCounters)
    link_margin: int = 0
    supervision_interval: int = 0
    netdata_version: int | None = None
    ml_eid_iid: bytes | None = None
    addresses: list[ipaddress.IPv6Address] = field(default_factory=list)
    request_tlvs: tuple[int, ...] = ()
    parent_response_due: float | None = None
    parent_response_all: bool = False  # the Parent Request had the E (REED) bit
    update_due: float | None = None  # next Child Update Request from us
    update_retry: float = 0.0
    queue: IndirectQueue = field(default_factory=IndirectQueue)
    use_short: bool = False  # indirect data frames may use the short address
    last_tx: float = 0.0
    link_failures: int = 0
    attached_at: float | None = None

    @property
    def rx_on(self) -> bool:
        return bool(self.mode & ModeTlv.RX_ON_WHEN_IDLE)

    @property
    def sleepy(self) -> bool:
        return not self.rx_on

    @property
    def ftd(self) -> bool:
        return bool(self.mode & ModeTlv.FULL_THREAD_DEVICE)

    @property
    def full_netdata(self) -> bool:
        return bool(self.mode & ModeTlv.FULL_NETWORK_DATA)

    @property
    def valid(self) -> bool:
        return self.state is ChildState.VALID

    @property
    def deadline(self) -> float:
        return self.last_heard + self.timeout

    def ml_eid(self, ml_prefix: bytes) -> ipaddress.IPv6Address | None:
        return None if self.ml_eid_iid is None else mesh_local_address(ml_prefix, self.ml_eid_iid)

    def has_address(self, addr: ipaddress.IPv6Address, ml_prefix: bytes) -> bool:
        return addr in self.addresses or (self.ml_eid(ml_prefix) == addr)

    def __repr__(self) -> str:
        rloc = "-" if self.rloc16 is None else f"0x{self.rloc16:04x}"
        return f"ChildEntry({self.ext}, {rloc}, {self.state.value}, mode={mode_string(self.mode)})"


@dataclass(frozen=True)
class ChildSnapshot:
    """What OpenThread keeps of a child in its settings (``ChildInfo``): extended address,
    timeout, RLOC16, mode, version. Frame counters are not kept: a restored child proves
    itself by answering a Child Update Request with a challenge."""

    ext: str
    rloc16: int
    timeout: int
    mode: int
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "ext": self.ext,
            "rloc16": self.rloc16,
            "timeout": self.timeout,
            "mode": self.mode,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ChildSnapshot:
        if not isinstance(d, dict):
            raise InvalidSnapshot("a child record is not an object")
        try:
            ext = str(d["ext"])
            ExtAddress.from_hex(ext)
            vals = {k: d[k] for k in ("rloc16", "timeout", "mode", "version")}
        except (KeyError, InvalidArgument) as exc:
            raise InvalidSnapshot(f"a child record is incomplete or wrong: {exc}") from None
        for k, v in vals.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidSnapshot(f"a child record's {k} is not a non-negative integer")
        if vals["rloc16"] > 0xFFFF or vals["mode"] > 0xFF or vals["version"] > 0xFFFF:
            raise InvalidSnapshot("a child record holds an out-of-range value")
        return cls(ext, vals["rloc16"], vals["timeout"], vals["mode"], vals["version"])


# --- the table ----------------------------------------------------------------------------------


@dataclass
class ChildTable:
    max_children: int = DEFAULT_MAX_CHILDREN
    queue_messages: int = DEFAULT_INDIRECT_QUEUE_MESSAGES
    queue_bytes: int = DEFAULT_INDIRECT_QUEUE_BYTES
    next_child_id: int = MIN_CHILD_ID
    _by_ext: dict[ExtAddress, ChildEntry] = field(default_factory=dict)
    _by_rloc: dict[int, ChildEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.max_children <= MAX_CHILD_ID:
            raise InvalidArgument(f"max_children must be 1..{MAX_CHILD_ID}")

    def __len__(self) -> int:
        return len(self._by_ext)

    def __iter__(self) -> Iterator[ChildEntry]:
        return iter(list(self._by_ext.values()))

    @property
    def is_full(self) -> bool:
        return len(self._by_ext) >= self.max_children

    def get(self, ext: ExtAddress) -> ChildEntry | None:
        return self._by_ext.get(ext)

    def by_rloc16(self, rloc16: int) -> ChildEntry | None:
        return self._by_rloc.get(rloc16)

    def valid(self) -> list[ChildEntry]:
        return [c for c in self._by_ext.values() if c.valid]

    def add(self, ext: ExtAddress, state: ChildState, now: float, timeout: float) -> ChildEntry:
        if ext in self._by_ext:
            raise InvalidArgument("child already in the table")
        if self.is_full:
            raise InvalidArgument("child table full")
        c = ChildEntry(
            ext, state, now, timeout, queue=IndirectQueue(self.queue_messages, self.queue_bytes)
        )
        self._by_ext[ext] = c
        return c

    def remove(self, child: ChildEntry) -> None:
        self._by_ext.pop(child.ext, None)
        if child.rloc16 is not None and self._by_rloc.get(child.rloc16) is child:
            del self._by_rloc[child.rloc16]

    def set_rloc16(self, child: ChildEntry, rloc16: int) -> None:
        if child.rloc16 is not None and self._by_rloc.get(child.rloc16) is child:
            del self._by_rloc[child.rloc16]
        other = self._by_rloc.get(rloc16)
        if other is not None and other is not child:
            raise InvalidArgument(f"RLOC16 0x{rloc16:04x} is in use")
        child.rloc16 = rloc16
        self._by_rloc[rloc16] = child

    def allocate_rloc16(self, child: ChildEntry, router_id: int) -> int:
        """``AllocateNewChildRloc16``: keep the child's RLOC16 if it has our router ID and is
        free; otherwise the next child ID after the last one given (1..511, wrapping), skipping
        IDs in use."""
        prev = child.rloc16
        if prev is not None and router_id_of(prev) == router_id and prev & 0x1FF:
            holder = self._by_rloc.get(prev)
            if holder is None or holder is child:
                self.set_rloc16(child, prev)
                return prev
        for _ in range(MAX_CHILD_ID):
            cid = self.next_child_id
            self.next_child_id = cid + 1 if cid < MAX_CHILD_ID else MIN_CHILD_ID
            rloc = rloc16_of(router_id, cid)
            if rloc not in self._by_rloc:
                self.set_rloc16(child, rloc)
                return rloc
        raise InvalidArgument("no free child ID")  # pragma: no cover - the table is smaller

    def find_by_address(self, addr: ipaddress.IPv6Address, ml_prefix: bytes) -> ChildEntry | None:
        for c in self._by_ext.values():
            if c.state is ChildState.PARENT_REQUEST:
                continue
            if c.has_address(addr, ml_prefix):
                return c
        return None
