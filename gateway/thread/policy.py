"""Policing of unsecured IEEE 802.15.4 traffic at the joiner router (sans-IO).

The seed draft (§3): a Thread network is normally "locked down" and ignores unsecured 802.15.4
traffic; while joining is permitted, joiner routers must police it and treat it as untrusted
authentication traffic. :class:`UnsecuredPolicer` decides, frame by frame, before anything is
reassembled or parsed further:

* frames whose MAC payload starts with a NALP dispatch byte (``0x00``-``0x3F``, e.g. CBSB-1's
  ``0x3C``) are not 6LoWPAN: they belong to the group owner, which polices them itself
  (:attr:`Verdict.NOT_OURS`, counted apart, never "dropped");
* while joining is not permitted, every other unsecured frame is ignored
  (:attr:`Verdict.LOCKED`);
* while it is, only two things get through: an unfragmented MLE Discovery Request (UDP 19788,
  hop limit 255, suite 255, command 16) and datagrams to the joiner UDP port. A FRAG1 must show
  the joiner port in its header and opens a bounded slot (per joiner and globally); a FRAGN is
  let through only for a datagram whose FRAG1 was admitted;
* per-joiner (source extended address) and global token buckets bound the frame rate;
* everything else is dropped and counted by reason.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from gateway.errors import InvalidArgument, ParseError
from gateway.ratelimit import TokenBucket
from gateway.thread.link import peek_packet
from gateway.wire.fragment import parse_lowpan_frame
from gateway.wire.ipv6 import PROTO_UDP
from gateway.wire.lowpan import header_sizes
from gateway.wire.mac802154 import ExtAddress, FrameType, MacFrame
from gateway.wire.mle import MLE_HOP_LIMIT, MLE_PORT

__all__ = ["PolicerConfig", "UnsecuredPolicer", "Verdict"]

_MLE_DISCOVERY_REQUEST: Final = b"\xff\x10"  # suite 255, command 16


class Verdict(enum.Enum):
    ACCEPT = "accept"
    NOT_OURS = "not_ours"  # NALP dispatch (CBSB): the group owner's traffic
    LOCKED = "ignored_locked"  # joining not permitted
    NOT_DATA = "dropped_not_data"
    NOT_EXTENDED = "dropped_source_not_extended"
    MALFORMED = "dropped_malformed"
    PORT = "dropped_port"
    FRAGMENT = "dropped_fragment"  # FRAGN of no admitted datagram, or too many in flight
    RATE_JOINER = "dropped_rate_joiner"
    RATE_GLOBAL = "dropped_rate_global"


@dataclass(frozen=True)
class PolicerConfig:
    """Limits. A DTLS flight is at most ~7 frames (OpenThread's ServerHello flight is 708 bytes
    in 7 fragments), a whole join about 30 frames from the joiner."""

    joiner_rate: float = 25.0  # frames per second per joiner
    joiner_burst: float = 40.0
    global_rate: float = 150.0
    global_burst: float = 250.0
    max_joiners_tracked: int = 64
    max_datagrams_in_flight: int = 16  # admitted fragmented datagrams (FRAG1 seen)
    max_datagrams_per_joiner: int = 2
    fragment_timeout: float = 3.0

    def __post_init__(self) -> None:
        if min(self.joiner_rate, self.joiner_burst, self.global_rate, self.global_burst) <= 0:
            raise InvalidArgument("policer rates and bursts must be positive")
        if min(self.max_joiners_tracked, self.max_datagrams_in_flight) < 1:
            raise InvalidArgument("policer tables need room for at least one entry")


_FragKey = tuple[ExtAddress, int, int]  # source, datagram size, tag


@dataclass
class _Slot:
    started: float
    covered: int  # uncompressed bytes of the datagram seen so far


@dataclass
class UnsecuredPolicer:
    config: PolicerConfig = field(default_factory=PolicerConfig)
    counters: dict[str, int] = field(default_factory=lambda: {v.value: 0 for v in Verdict})
    _joiners: OrderedDict[ExtAddress, TokenBucket] = field(default_factory=OrderedDict)
    _global: TokenBucket | None = None
    _fragments: OrderedDict[_FragKey, _Slot] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        c = self.config
        self._global = TokenBucket(c.global_rate, c.global_burst)

    def _count(self, verdict: Verdict) -> Verdict:
        self.counters[verdict.value] += 1
        return verdict

    @property
    def dropped(self) -> int:
        return sum(v for k, v in self.counters.items() if k.startswith("dropped"))

    def _bucket(self, src: ExtAddress) -> TokenBucket:
        bucket = self._joiners.get(src)
        if bucket is None:
            bucket = TokenBucket(self.config.joiner_rate, self.config.joiner_burst)
            self._joiners[src] = bucket
            while len(self._joiners) > self.config.max_joiners_tracked:
                self._joiners.popitem(last=False)
        else:
            self._joiners.move_to_end(src)
        return bucket

    def _expire(self, now: float) -> None:
        limit = self.config.fragment_timeout
        for key in [k for k, t in self._fragments.items() if now - t.started >= limit]:
            del self._fragments[key]

    def check(
        self, frame: MacFrame, *, joining_allowed: bool, joiner_port: int, now: float
    ) -> Verdict:
        """The verdict for one received *unsecured* frame."""
        if frame.frame_type != FrameType.DATA or not frame.payload:
            return self._count(Verdict.NOT_DATA if joining_allowed else Verdict.LOCKED)
        if frame.payload[0] < 0x40:
            return self._count(Verdict.NOT_OURS)
        if not joining_allowed:
            return self._count(Verdict.LOCKED)
        src = frame.src
        if not isinstance(src, ExtAddress):
            return self._count(Verdict.NOT_EXTENDED)
        assert self._global is not None
        # The sender's own bucket first: one source flooding (Discovery or Parent Requests,
        # forged DTLS records) spends its own budget, not the one every joiner shares.
        if not self._bucket(src).take(now):
            return self._count(Verdict.RATE_JOINER)
        if not self._global.take(now):
            return self._count(Verdict.RATE_GLOBAL)
        self._expire(now)
        try:
            lf = parse_lowpan_frame(frame.payload)
            if lf.mesh is not None or lf.broadcast_seq is not None:
                return self._count(Verdict.PORT)  # joiners talk one hop, without mesh headers
            packet = peek_packet(frame.payload, frame.src, frame.dst)
        except (ParseError, InvalidArgument):
            return self._count(Verdict.MALFORMED)
        frag = lf.fragment
        if packet is None:  # a FRAGN
            assert frag is not None
            key = (src, frag.datagram_size, frag.tag)
            slot = self._fragments.get(key)
            if slot is None:
                return self._count(Verdict.FRAGMENT)
            slot.covered += len(lf.data)
            if slot.covered >= frag.datagram_size:  # complete: the slot is free again
                del self._fragments[key]
            return self._count(Verdict.ACCEPT)
        seg = packet.payload
        if packet.next_header != PROTO_UDP or len(seg) < 8:
            return self._count(Verdict.PORT)
        dport = int.from_bytes(seg[2:4], "big")
        if dport == MLE_PORT:
            if (
                frag is not None
                or packet.hop_limit != MLE_HOP_LIMIT
                or seg[8:10] != _MLE_DISCOVERY_REQUEST
            ):
                return self._count(Verdict.PORT)
            return self._count(Verdict.ACCEPT)
        if dport != joiner_port:
            return self._count(Verdict.PORT)
        if frag is not None:
            key = (src, frag.datagram_size, frag.tag)
            if key not in self._fragments:
                mine = sum(1 for k in self._fragments if k[0] == src)
                if (
                    mine >= self.config.max_datagrams_per_joiner
                    or len(self._fragments) >= self.config.max_datagrams_in_flight
                ):
                    return self._count(Verdict.FRAGMENT)
            try:
                compressed, uncompressed = header_sizes(lf.data)
            except ParseError:
                return self._count(Verdict.MALFORMED)
            covered = uncompressed + len(lf.data) - compressed
            self._fragments[key] = _Slot(now, covered)
        return self._count(Verdict.ACCEPT)

    def forget(self, src: ExtAddress) -> None:
        """Drop the state kept for one sender (e.g. after it joined)."""
        self._joiners.pop(src, None)
        for key in [k for k in self._fragments if k[0] == src]:
            del self._fragments[key]

    def stats(self) -> dict[str, int]:
        return {
            **self.counters,
            "joiners_tracked": len(self._joiners),
            "datagrams_in_flight": len(self._fragments),
        }
