"""The Leader's router ID table as a sans-IO object: allocation for Address Solicit ``a/as``,
release for Address Release ``a/ar``, the reuse delay and the Router ID Sequence (fact sheet
§7.2, §7.3; OpenThread ``router_table.cpp`` ``Allocate``/``Release``, ``mle_ftd.cpp``
``ProcessAddressSolicit``).

It decides only; the TMF/CoAP handling that carries the TLVs is the caller's. Times are the
caller's monotonic seconds. The table is bounded by construction (63 IDs), so a flood of
solicits from forged extended addresses can at most fill it; each allocation counts, and the
caller rate-limits per source.

Not wired into :class:`~gateway.thread.network.router.RouterCore` yet (issue 12).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from gateway.errors import InvalidArgument, ParseError
from gateway.thread.network.constants import (
    MAX_ROUTER_ID,
    ROUTER_ID_REUSE_DELAY,
)
from gateway.thread.network.tmf_tlvs import AddressTlvs, parse_thread_tlvs
from gateway.wire.tlv import encode_tlvs

__all__ = [
    "LEADER_UPGRADE_THRESHOLD",
    "MAX_ALLOCATED_ROUTERS",
    "SolicitReason",
    "SolicitResult",
    "SolicitStatus",
    "RouterIdTable",
    "address_release_payload",
    "address_solicit_payload",
]

MAX_ALLOCATED_ROUTERS: Final = 32  # OPENTHREAD_CONFIG_MLE_MAX_ROUTERS
LEADER_UPGRADE_THRESHOLD: Final = 16  # mLeaderUpgradeThreshold


class SolicitReason(IntEnum):
    """Status TLV of an Address Solicit request."""

    TOO_FEW_ROUTERS = 2
    HAVE_CHILD_ID_REQUEST = 3
    PARENT_PARTITION_CHANGE = 4
    BORDER_ROUTER_REQUEST = 5


class SolicitStatus(IntEnum):
    """Status TLV of an Address Solicit response."""

    SUCCESS = 0
    NO_ADDRESS_AVAILABLE = 1
    UNRECOGNIZED_REASON = 6


@dataclass(frozen=True, slots=True)
class SolicitResult:
    status: SolicitStatus
    router_id: int | None = None  # on success


class RouterIdTable:
    """Router IDs 0..62: allocated (with the owner's extended address), or free since a time
    (reusable once :data:`ROUTER_ID_REUSE_DELAY` has passed)."""

    def __init__(
        self,
        rng: random.Random,
        id_sequence: int,
        *,
        reuse_delay: float = ROUTER_ID_REUSE_DELAY,
        max_routers: int = MAX_ALLOCATED_ROUTERS,
        upgrade_threshold: int = LEADER_UPGRADE_THRESHOLD,
    ) -> None:
        if not 0 <= id_sequence <= 0xFF:
            raise InvalidArgument("ID sequence must be 0..255")
        self._rng = rng
        self.id_sequence = id_sequence
        self.reuse_delay = reuse_delay
        self.max_routers = max_routers
        self.upgrade_threshold = upgrade_threshold
        self._owner: dict[int, bytes] = {}  # router ID -> extended address
        self._released_at: dict[int, float] = {}  # router ID -> release time
        self.counters: dict[str, int] = {
            "allocated": 0,
            "released": 0,
            "refused_full": 0,
            "refused_reason": 0,
            "refused_threshold": 0,
            "release_mismatch": 0,
        }

    # --- queries -------------------------------------------------------------------------------
    def allocated(self) -> tuple[int, ...]:
        return tuple(sorted(self._owner))

    def owner(self, router_id: int) -> bytes | None:
        return self._owner.get(router_id)

    def id_of(self, ext_addr: bytes) -> int | None:
        for rid, ext in self._owner.items():
            if ext == ext_addr:
                return rid
        return None

    def mask(self) -> bytes:
        """The 8-byte Router ID Mask (bit ``0x80 >> id % 8`` of byte ``id // 8``)."""
        out = bytearray(8)
        for rid in self._owner:
            out[rid // 8] |= 0x80 >> (rid % 8)
        return bytes(out)

    def is_free(self, router_id: int, now: float) -> bool:
        if router_id in self._owner or not 0 <= router_id <= MAX_ROUTER_ID:
            return False
        released = self._released_at.get(router_id)
        return released is None or now - released >= self.reuse_delay

    # --- changes -------------------------------------------------------------------------------
    def bump_sequence(self) -> None:
        self.id_sequence = (self.id_sequence + 1) & 0xFF

    def allocate(self, ext_addr: bytes, now: float, requested: int | None = None) -> int | None:
        """The requested ID if free and out of its reuse delay, else a uniformly random free
        one; ``None`` when none is free or ``max_routers`` are allocated. Bumps the ID sequence."""
        if len(ext_addr) != 8:
            raise InvalidArgument("an extended address has 8 bytes")
        if len(self._owner) >= self.max_routers:
            return None
        if requested is not None and self.is_free(requested, now):
            rid = requested
        else:
            free = [r for r in range(MAX_ROUTER_ID + 1) if self.is_free(r, now)]
            if not free:
                return None
            rid = self._rng.choice(free)
        self._owner[rid] = ext_addr
        self._released_at.pop(rid, None)
        self.bump_sequence()
        self.counters["allocated"] += 1
        return rid

    def release(self, router_id: int, now: float, ext_addr: bytes | None = None) -> bool:
        """Free an ID (``a/ar`` passes the requester's ext address, which must own it). The ID
        is not reusable for the reuse delay; the ID sequence is bumped."""
        owner = self._owner.get(router_id)
        if owner is None or (ext_addr is not None and owner != ext_addr):
            self.counters["release_mismatch"] += 1
            return False
        del self._owner[router_id]
        self._released_at[router_id] = now
        self.bump_sequence()
        self.counters["released"] += 1
        return True

    def solicit(
        self,
        ext_addr: bytes,
        reason: int,
        now: float,
        requested: int | None = None,
        border_routers_as_routers: int = 0,
    ) -> SolicitResult:
        """``ProcessAddressSolicit``: a known ext address gets its ID again; otherwise the
        reason decides (2 below the upgrade threshold, 3 and 4 always, 5 unless the threshold
        is reached and two border routers are routers already) and an ID is allocated."""
        known = self.id_of(ext_addr)
        if known is not None:
            return SolicitResult(SolicitStatus.SUCCESS, known)
        active = len(self._owner)
        if reason == SolicitReason.TOO_FEW_ROUTERS:
            if active >= self.upgrade_threshold:
                self.counters["refused_threshold"] += 1
                return SolicitResult(SolicitStatus.NO_ADDRESS_AVAILABLE)
        elif reason == SolicitReason.BORDER_ROUTER_REQUEST:
            if active >= self.upgrade_threshold and border_routers_as_routers >= 2:
                self.counters["refused_threshold"] += 1
                return SolicitResult(SolicitStatus.NO_ADDRESS_AVAILABLE)
        elif reason not in (
            SolicitReason.HAVE_CHILD_ID_REQUEST,
            SolicitReason.PARENT_PARTITION_CHANGE,
        ):
            self.counters["refused_reason"] += 1
            return SolicitResult(SolicitStatus.UNRECOGNIZED_REASON)
        if requested is not None and not 0 <= requested <= MAX_ROUTER_ID:
            requested = None
        rid = self.allocate(ext_addr, now, requested)
        if rid is None:
            self.counters["refused_full"] += 1
            return SolicitResult(SolicitStatus.NO_ADDRESS_AVAILABLE)
        return SolicitResult(SolicitStatus.SUCCESS, rid)


def address_solicit_payload(table: RouterIdTable, request: bytes, now: float) -> bytes:
    """The 2.04 payload answering an ``a/as`` request: Status, and on success RLOC16 and
    Router Mask (§7.2). A request without Ext MAC Address or Status is a :class:`ParseError`
    (OpenThread drops it)."""
    req = parse_thread_tlvs(request)
    if req.ext_mac is None or req.status is None:
        raise ParseError("Address Solicit needs Ext MAC Address and Status")
    previous = None if req.rloc16 is None else req.rloc16 >> 10
    res = table.solicit(req.ext_mac, req.status, now, previous)
    if res.router_id is None:
        return encode_tlvs(AddressTlvs(status=res.status).to_tlvs())
    reply = AddressTlvs(
        rloc16=res.router_id << 10,
        status=res.status,
        router_mask=bytes((table.id_sequence,)) + table.mask(),
    )
    return encode_tlvs(reply.to_tlvs())


def address_release_payload(table: RouterIdTable, request: bytes, now: float) -> bool:
    """Handle an ``a/ar`` request (RLOC16 + Ext MAC Address, §7.3); True when an ID was freed.
    OpenThread answers an empty 2.04 either way."""
    req = parse_thread_tlvs(request)
    if req.ext_mac is None or req.rloc16 is None or req.rloc16 & 0x1FF:
        raise ParseError("Address Release needs a router RLOC16 and Ext MAC Address")
    return table.release(req.rloc16 >> 10, now, req.ext_mac)
