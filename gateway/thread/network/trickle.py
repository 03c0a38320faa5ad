"""The trickle timer MLE Advertisements run on (RFC 6206 as OpenThread uses it,
``common/trickle_timer.cpp``): redundancy constant infinite, so nothing is suppressed. Each
interval of length I fires once at a random time in [I/2, I); then I doubles up to Imax.
:meth:`Trickle.reset` ("inconsistency") goes back to Imin. Time and randomness are passed in."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from gateway.errors import InvalidArgument

__all__ = ["Trickle"]


@dataclass
class Trickle:
    imin: float
    imax: float
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    interval: float = 0.0
    fire_at: float | None = None
    interval_end: float | None = None
    running: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.imin <= self.imax:
            raise InvalidArgument("trickle needs 0 < Imin <= Imax")

    def start(self, now: float) -> None:
        self.running = True
        self.interval = self.imin
        self._begin(now)

    def reset(self, now: float) -> None:
        """An inconsistency: restart at Imin (unless already in a first Imin interval)."""
        if not self.running:
            return
        if self.interval == self.imin and self.fire_at is not None:
            return
        self.interval = self.imin
        self._begin(now)

    def stop(self) -> None:
        self.running = False
        self.fire_at = self.interval_end = None

    def set_imax(self, imax: float) -> None:
        self.imax = max(imax, self.imin)
        self.interval = min(self.interval, self.imax)

    def _begin(self, now: float) -> None:
        self.fire_at = now + self.rng.uniform(self.interval / 2, self.interval)
        self.interval_end = now + self.interval

    def next_timeout(self) -> float | None:
        if not self.running:
            return None
        if self.fire_at is not None:
            return self.fire_at
        return self.interval_end

    def poll(self, now: float) -> bool:
        """True when a transmission is due now."""
        if not self.running:
            return False
        fire = False
        if self.fire_at is not None and now >= self.fire_at:
            self.fire_at = None
            fire = True
        if self.interval_end is not None and now >= self.interval_end and self.fire_at is None:
            self.interval = min(self.interval * 2, self.imax)
            self._begin(now)
        return fire
