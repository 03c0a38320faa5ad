"""What the network cores hand to their shells: frames to transmit, radio actions, and events
worth a journal line or a ``gwctl`` view. Every event has ``level`` and ``text`` (no key
material ever appears in them)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.thread.link import TxFrame
from gateway.wire.mac802154 import ExtAddress, ShortAddress

__all__ = [
    "ChildAdded",
    "ChildRemoved",
    "ChildTableFullEvent",
    "DatasetReceived",
    "Event",
    "KeySequenceChanged",
    "NetFrame",
    "NetworkDataChanged",
    "PingReply",
    "RoleChanged",
    "SetSourceMatch",
    "SnapshotChanged",
    "Transmit",
    "UdpReceived",
]


@dataclass(frozen=True)
class NetFrame:
    """A frame for the radio service (parent core): ``tx.frame`` is unprotected and
    ``tx.security`` says what to apply (MAC = level 5, key id mode 1 with the MAC key of
    ``key_sequence``). Report the outcome with ``tx_done(handle, acked)`` when ``handle`` is
    not None (indirect frames depend on it)."""

    tx: TxFrame
    key_sequence: int
    handle: int | None = None
    what: str = ""


@dataclass(frozen=True)
class Transmit:
    """A PSDU (no FCS) for a node that owns its radio (child core), already secured. Report
    ``tx_done(handle, acked, frame_pending)`` when ``ack_request``."""

    psdu: bytes
    ack_request: bool
    handle: int
    what: str = ""


@dataclass(frozen=True)
class SetSourceMatch:
    """Radio seam: set (or clear) the frame-pending bit in ACKs to polls from ``address``."""

    address: ExtAddress | ShortAddress
    pending: bool


@dataclass(frozen=True)
class RoleChanged:
    role: str
    rloc16: int | None
    partition_id: int | None = None
    parent: ExtAddress | None = None
    level: str = "info"

    @property
    def text(self) -> str:
        rloc = "-" if self.rloc16 is None else f"0x{self.rloc16:04x}"
        extra = f", parent {self.parent}" if self.parent is not None else ""
        part = f", partition {self.partition_id}" if self.partition_id is not None else ""
        return f"thread: role {self.role} (rloc16 {rloc}{part}{extra})"


@dataclass(frozen=True)
class ChildAdded:
    ext: ExtAddress
    rloc16: int
    mode: str
    timeout: float
    restored: bool = False
    level: str = "info"

    @property
    def text(self) -> str:
        how = "re-attached after restore" if self.restored else "attached"
        return (
            f"thread: child {self.ext} {how} as 0x{self.rloc16:04x} (mode {self.mode}, "
            f"timeout {int(self.timeout)} s)"
        )


@dataclass(frozen=True)
class ChildRemoved:
    ext: ExtAddress
    rloc16: int | None
    reason: str
    dropped_frames: int = 0
    level: str = "info"

    @property
    def text(self) -> str:
        rloc = "-" if self.rloc16 is None else f"0x{self.rloc16:04x}"
        drop = f", {self.dropped_frames} queued messages dropped" if self.dropped_frames else ""
        return f"thread: child {self.ext} ({rloc}) removed: {self.reason}{drop}"


@dataclass(frozen=True)
class ChildTableFullEvent:
    """Rate-limited: a Parent Request could not be answered because the table is full."""

    max_children: int
    refused: int  # Parent Requests refused since the last such event
    level: str = "warning"

    @property
    def text(self) -> str:
        return (
            f"thread: child table full ({self.max_children} entries): "
            f"{self.refused} Parent Request(s) not answered (THR101)"
        )


@dataclass(frozen=True)
class KeySequenceChanged:
    """The own key sequence moved: re-register the MAC key (key index ``(seq & 0x7F) + 1``)."""

    key_sequence: int
    reason: str
    level: str = "info"

    @property
    def text(self) -> str:
        return f"thread: key sequence now {self.key_sequence} ({self.reason})"


@dataclass(frozen=True)
class SnapshotChanged:
    """The persisted state changed: call ``snapshot()`` and write it (atomically)."""

    reason: str
    level: str = "debug"

    @property
    def text(self) -> str:
        return f"thread: state to save ({self.reason})"


@dataclass(frozen=True)
class NetworkDataChanged:
    data_version: int
    stable_data_version: int
    level: str = "info"

    @property
    def text(self) -> str:
        return (
            f"thread: network data version {self.data_version} (stable {self.stable_data_version})"
        )


@dataclass(frozen=True)
class PingReply:
    src: ipaddress.IPv6Address
    identifier: int
    sequence: int
    size: int
    hop_limit: int
    rtt: float | None
    level: str = "debug"

    @property
    def text(self) -> str:
        rtt = "" if self.rtt is None else f" time={self.rtt * 1000:.0f}ms"
        return f"{self.size} bytes from {self.src}: icmp_seq={self.sequence} hlim={self.hop_limit}{rtt}"


@dataclass(frozen=True)
class UdpReceived:
    """A UDP datagram for the node's application (child core)."""

    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    src_port: int
    dst_port: int
    payload: bytes
    level: str = "debug"

    @property
    def text(self) -> str:
        return (
            f"udp {self.src}:{self.src_port} -> {self.dst}:{self.dst_port} ({len(self.payload)} B)"
        )


@dataclass(frozen=True)
class DatasetReceived:
    """The parent sent an Active Dataset that differs from ours (child core): save it."""

    tlvs: bytes
    level: str = "info"

    def __repr__(self) -> str:  # holds the network key
        return f"DatasetReceived(len={len(self.tlvs)})"

    @property
    def text(self) -> str:
        return f"thread: active dataset received from the parent ({len(self.tlvs)} bytes)"


Event = (
    RoleChanged
    | ChildAdded
    | ChildRemoved
    | ChildTableFullEvent
    | KeySequenceChanged
    | SnapshotChanged
    | NetworkDataChanged
    | PingReply
    | UdpReceived
    | DatasetReceived
)
