"""The one rate limiter of the gateway: a token bucket on an explicit clock (sans-IO).

Used by the Thread policer (frames per joiner and overall), the border agent (handshakes started
and wrong-PSKc verdicts, per source address and in all), the CBSB gateway session (solicited
beacons, join requests, enrollee reports), the reference cloud (enrollee reports per gateway)
and, through :class:`WarningLimiter`, the journal lines that remote peers can cause.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["BackoffBucket", "BucketTable", "TokenBucket", "WarningLimiter"]

_EPSILON = 1e-9  # refills are floating point: a token that is "almost" there is there


class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; it starts full.

    Time is whatever clock the caller passes as ``now`` (seconds). The clock starts at ``now``
    given here, or else at the first :meth:`take`. A ``now`` earlier than the last one neither
    refills the bucket nor moves its clock back, so a clock that steps backwards cannot mint
    tokens."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    @property
    def tokens(self) -> float:
        """Tokens left at the last call (without the refill since)."""
        return self._tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens at time ``now`` if there are enough; False (and nothing taken)
        otherwise."""
        if self._last is None:
            self._last = now
        elif now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= n - _EPSILON:
            self._tokens = max(0.0, self._tokens - n)
            return True
        return False

    def available(self, now: float, n: float = 1.0) -> bool:
        """Whether :meth:`take` would succeed at ``now`` (nothing taken)."""
        return self._refilled(now) >= n - _EPSILON

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds from ``now`` until ``n`` tokens are there (0 when they already are)."""
        missing = n - self._refilled(now)
        if missing <= _EPSILON:
            return 0.0
        return missing / self.rate if self.rate > 0 else float("inf")

    def _refilled(self, now: float) -> float:
        if self._last is None or now <= self._last:
            return self._tokens
        return min(self.burst, self._tokens + (now - self._last) * self.rate)


class BackoffBucket(TokenBucket):
    """A token bucket that backs off while its owner keeps emptying it (the PSKd limits'
    doubling, for wrong-PSKc verdicts).

    Once a take leaves less than one token, every further take must also wait a gap: ``1/rate``
    the first time, doubling at each take, capped at ``max_gap``. The back-off is forgotten after
    ``quiet_reset`` seconds without a take, or on :meth:`reset` (the owner showed it is
    legitimate)."""

    __slots__ = ("_gap", "_last_take", "_not_before", "max_gap", "quiet_reset")

    def __init__(
        self,
        rate: float,
        burst: float,
        max_gap: float,
        now: float | None = None,
        *,
        quiet_reset: float = 600.0,
    ) -> None:
        super().__init__(rate, burst, now)
        self.max_gap = max_gap
        self.quiet_reset = quiet_reset
        self._gap = 0.0
        self._not_before = float("-inf")
        self._last_take = float("-inf")

    @property
    def gap(self) -> float:
        """The current back-off gap (0 when not backing off)."""
        return self._gap

    def take(self, now: float, n: float = 1.0) -> bool:
        if now < self._not_before - _EPSILON:
            return False
        if self._gap and now - self._last_take >= self.quiet_reset:
            self._gap = 0.0
        if not super().take(now, n):
            return False
        self._last_take = now
        if self._gap or self.tokens < 1.0 - _EPSILON:
            first = 1.0 / self.rate if self.rate > 0 else self.max_gap
            self._gap = min(self.max_gap, 2 * self._gap if self._gap else first)
            self._not_before = now + self._gap
        return True

    def available(self, now: float, n: float = 1.0) -> bool:
        return now >= self._not_before - _EPSILON and super().available(now, n)

    def wait_time(self, now: float, n: float = 1.0) -> float:
        return max(super().wait_time(now, n), self._not_before - now, 0.0)

    def reset(self) -> None:
        """Forget the back-off (not the tokens)."""
        self._gap = 0.0
        self._not_before = float("-inf")


class BucketTable:
    """One :class:`TokenBucket` per key (a source address, a joiner), at most ``max_keys`` of
    them: the least recently used is forgotten first (its owner starts again with a full
    bucket, so keep ``max_keys`` above the number of sources a limit must hold)."""

    __slots__ = ("_buckets", "burst", "max_gap", "max_keys", "rate")

    def __init__(
        self, rate: float, burst: float, max_keys: int = 256, *, max_gap: float = 0.0
    ) -> None:
        """``max_gap`` > 0 makes every bucket a :class:`BackoffBucket` with that cap."""
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.max_gap = max_gap
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: Hashable) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = (
                BackoffBucket(self.rate, self.burst, self.max_gap)
                if self.max_gap > 0
                else TokenBucket(self.rate, self.burst)
            )
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def peek(self, key: Hashable) -> TokenBucket | None:
        return self._buckets.get(key)

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)


class WarningLimiter:
    """Bounds the journal lines a remote peer can cause: per category (e.g. "a DTLS handshake
    failed"), a burst of ``burst`` lines and then ``rate`` per second. A line that passes after
    some were held back says how many (:meth:`admit` returns that count); :attr:`suppressed`
    totals them per category for ``gwctl status``."""

    __slots__ = ("_buckets", "_held", "suppressed")

    def __init__(self, rate: float = 1 / 10, burst: float = 5, max_categories: int = 64) -> None:
        self._buckets = BucketTable(rate, burst, max_categories)
        self._held: dict[str, int] = {}
        self.suppressed: dict[str, int] = {}

    def admit(self, category: str, now: float) -> int | None:
        """``None``: hold this line back (counted); else the number held back since the last
        line of this category that passed (log it with the line)."""
        if self._buckets.get(category).take(now):
            return self._held.pop(category, 0)
        self._held[category] = self._held.get(category, 0) + 1
        self.suppressed[category] = self.suppressed.get(category, 0) + 1
        return None

    def pending(self) -> dict[str, int]:
        """Lines held back and not yet reported by a later line."""
        return dict(self._held)

    def take_pending(self) -> dict[str, int]:
        """:meth:`pending`, now reported (a summary line says so): the counts start again."""
        out, self._held = self._held, {}
        return out
