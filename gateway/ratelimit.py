"""The one rate limiter of the gateway: a token bucket on an explicit clock (sans-IO).

Used by the Thread policer (frames per joiner and overall), the CBSB gateway session (solicited
beacons, join requests, enrollee reports) and the reference cloud (enrollee reports per gateway).
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


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
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False
