"""Persistable state of the network cores: plain dataclasses to and from JSON-able dicts, for the
service to write atomically (DESIGN §5). ``from_dict`` validates everything and raises
:class:`~gateway.thread.network.errors.InvalidSnapshot` on anything it cannot trust: corrupt
state stops the service with a clear error instead of being reset silently.

* :class:`RouterSnapshot` -- the gateway's role (router ID, partition ID, weighting, leader
  router ID, the Router ID Sequence *reserved ahead*, Network Data versions), its key sequence
  and MLE frame counter, its ML-EID IID, and the child table as OpenThread keeps it.
* :class:`ChildNodeSnapshot` -- a reference thing's attachment: parent, RLOC16, mode, timeout,
  key sequence, frame counters, ML-EID IID.

Frame counters in a snapshot are the values at snapshot time. Reserving ahead (OpenThread adds
1000 after a reboot) is the caller's job: pass ``counter + reserve`` when restoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import InvalidArgument
from gateway.thread.network.child_table import ChildSnapshot
from gateway.thread.network.constants import MAX_ROUTER_ID
from gateway.thread.network.errors import InvalidSnapshot
from gateway.wire.mac802154 import ExtAddress

__all__ = ["SNAPSHOT_VERSION", "ChildNodeSnapshot", "RouterSnapshot"]

SNAPSHOT_VERSION: Final = 1


def _int(d: dict[str, Any], key: str, bits: int) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << bits):
        raise InvalidSnapshot(f"'{key}' must be an integer in 0..{(1 << bits) - 1}")
    return v


def _hex(d: dict[str, Any], key: str, size: int) -> str:
    v = d.get(key)
    try:
        if not isinstance(v, str) or len(bytes.fromhex(v)) != size:
            raise ValueError
    except ValueError:
        raise InvalidSnapshot(f"'{key}' must be {size} bytes in hex") from None
    return v.lower()


def _check_version(d: Any, kind: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise InvalidSnapshot(f"the {kind} snapshot is not an object")
    if d.get("version") != SNAPSHOT_VERSION:
        raise InvalidSnapshot(
            f"the {kind} snapshot has version {d.get('version')!r}, not {SNAPSHOT_VERSION}"
        )
    return d


@dataclass(frozen=True)
class RouterSnapshot:
    role: str
    router_id: int
    partition_id: int
    weighting: int
    leader_router_id: int
    id_sequence: int  # the reserved bound: a restored leader continues after it
    data_version: int
    stable_data_version: int
    key_sequence: int
    mle_frame_counter: int
    ml_eid_iid: str
    children: tuple[ChildSnapshot, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "role": self.role,
            "router_id": self.router_id,
            "partition_id": self.partition_id,
            "weighting": self.weighting,
            "leader_router_id": self.leader_router_id,
            "id_sequence": self.id_sequence,
            "data_version": self.data_version,
            "stable_data_version": self.stable_data_version,
            "key_sequence": self.key_sequence,
            "mle_frame_counter": self.mle_frame_counter,
            "ml_eid_iid": self.ml_eid_iid,
            "children": [c.to_dict() for c in self.children],
        }

    @classmethod
    def from_dict(cls, data: Any) -> RouterSnapshot:
        d = _check_version(data, "router")
        role = d.get("role")
        if role not in ("leader", "router"):
            raise InvalidSnapshot(f"unknown saved role {role!r}")
        router_id = _int(d, "router_id", 8)
        if router_id > MAX_ROUTER_ID:
            raise InvalidSnapshot(f"saved router ID {router_id} is above {MAX_ROUTER_ID}")
        kids = d.get("children", [])
        if not isinstance(kids, list):
            raise InvalidSnapshot("'children' must be a list")
        children = tuple(ChildSnapshot.from_dict(c) for c in kids)
        if len({c.ext for c in children}) != len(children) or len(
            {c.rloc16 for c in children}
        ) != len(children):
            raise InvalidSnapshot("two saved children share an address")
        return cls(
            role=str(role),
            router_id=router_id,
            partition_id=_int(d, "partition_id", 32),
            weighting=_int(d, "weighting", 8),
            leader_router_id=_int(d, "leader_router_id", 8),
            id_sequence=_int(d, "id_sequence", 8),
            data_version=_int(d, "data_version", 8),
            stable_data_version=_int(d, "stable_data_version", 8),
            key_sequence=_int(d, "key_sequence", 32),
            mle_frame_counter=_int(d, "mle_frame_counter", 32),
            ml_eid_iid=_hex(d, "ml_eid_iid", 8),
            children=children,
        )


@dataclass(frozen=True)
class ChildNodeSnapshot:
    """A reference child's attachment (OpenThread's ``NetworkInfo`` + ``ParentInfo``)."""

    ext: str
    parent_ext: str
    parent_rloc16: int
    rloc16: int
    mode: int
    timeout: int
    key_sequence: int
    mle_frame_counter: int
    mac_frame_counter: int
    ml_eid_iid: str

    def __post_init__(self) -> None:
        for v in (self.ext, self.parent_ext):
            try:
                ExtAddress.from_hex(v)
            except InvalidArgument:
                raise InvalidSnapshot(
                    "an extended address in the child snapshot is wrong"
                ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "ext": self.ext,
            "parent_ext": self.parent_ext,
            "parent_rloc16": self.parent_rloc16,
            "rloc16": self.rloc16,
            "mode": self.mode,
            "timeout": self.timeout,
            "key_sequence": self.key_sequence,
            "mle_frame_counter": self.mle_frame_counter,
            "mac_frame_counter": self.mac_frame_counter,
            "ml_eid_iid": self.ml_eid_iid,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ChildNodeSnapshot:
        d = _check_version(data, "child")
        return cls(
            ext=_hex(d, "ext", 8),
            parent_ext=_hex(d, "parent_ext", 8),
            parent_rloc16=_int(d, "parent_rloc16", 16),
            rloc16=_int(d, "rloc16", 16),
            mode=_int(d, "mode", 8),
            timeout=_int(d, "timeout", 32),
            key_sequence=_int(d, "key_sequence", 32),
            mle_frame_counter=_int(d, "mle_frame_counter", 32),
            mac_frame_counter=_int(d, "mac_frame_counter", 32),
            ml_eid_iid=_hex(d, "ml_eid_iid", 8),
        )
