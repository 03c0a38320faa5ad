"""What the border router keeps of its Thread network role across restarts: the network core's
:class:`~gateway.thread.network.snapshot.RouterSnapshot` and a reserved bound on its MLE frame
counter, in one atomically written JSON document (``thread-router.json`` in the state
directory, :class:`~gateway.runtime.state.JsonState`).

The MLE frame counter is reserved ahead as :class:`~gateway.runtime.state.FrameCounterStore`
does for MAC counters: the file holds a *bound* for the key sequence in use, every counter the
service hands to the air is below it, and a restart (``kill -9`` or a power cut included)
resumes counting at the bound, so no counter is ever used twice with one key. The shell
moves the bound forward (and waits for it to be on disk) before it transmits a frame whose
counter would reach it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.errors import StateError
from gateway.thread.network.snapshot import RouterSnapshot

__all__ = ["MLE_COUNTER_RESERVE", "NetworkStateStore", "SavedNetwork"]

MLE_COUNTER_RESERVE: Final = 1000
FORMAT: Final = "gateway-thread-router"
COUNTER_LIMIT: Final = 0xFFFFFFFF


@dataclass(frozen=True)
class SavedNetwork:
    snapshot: RouterSnapshot
    key_sequence: int  # the key sequence the bound belongs to
    mle_counter_bound: int

    def start_counter(self) -> int:
        """Where the MLE frame counter resumes: the bound when it is for the snapshot's key
        sequence, else past anything the snapshot shows (plus the reserve)."""
        if self.key_sequence == self.snapshot.key_sequence:
            return max(self.mle_counter_bound, self.snapshot.mle_frame_counter)
        return min(self.snapshot.mle_frame_counter + MLE_COUNTER_RESERVE, COUNTER_LIMIT)


class NetworkStateStore:
    """Load and save :class:`SavedNetwork`; writes happen in a worker thread, one at a time."""

    def __init__(self, path: Path, reserve: int = MLE_COUNTER_RESERVE) -> None:
        from gateway.runtime.state import JsonState

        self._state = JsonState(path, FORMAT, 1)
        self.reserve = reserve
        self.key_sequence: int | None = None
        self.bound = 0  # MLE counters below it (for key_sequence) may be used
        self.writes = 0
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._state.path

    def load(self) -> SavedNetwork | None:
        """The saved state, None on first start. Corrupt state raises (StateError, or THR102
        InvalidSnapshot): the service stops rather than forming a new network silently."""
        body = self._state.load()
        if body is None:
            return None
        snap = RouterSnapshot.from_dict(body.get("router"))
        seq, bound = body.get("key_sequence"), body.get("mle_counter_bound")
        for name, v in (("key_sequence", seq), ("mle_counter_bound", bound)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= COUNTER_LIMIT:
                raise StateError(f"{self.path}: '{name}' is malformed")
        assert isinstance(seq, int) and isinstance(bound, int)
        saved = SavedNetwork(snap, seq, bound)
        self.key_sequence, self.bound = seq, bound
        return saved

    def covers(self, key_sequence: int, next_counter: int) -> bool:
        """Whether every MLE counter below ``next_counter`` is below the bound on disk."""
        return self.key_sequence == key_sequence and next_counter <= self.bound

    async def save(self, snapshot: RouterSnapshot, next_counter: int) -> None:
        """Write the snapshot, with the bound moved to ``next_counter + reserve`` when the
        bound on disk does not cover ``next_counter`` (or is for another key sequence)."""
        async with self._lock:
            seq = snapshot.key_sequence
            bound = self.bound
            if self.key_sequence != seq or next_counter + self.reserve // 2 > bound:
                bound = min(next_counter + self.reserve, COUNTER_LIMIT)
            body: dict[str, Any] = {
                "router": snapshot.to_dict(),
                "key_sequence": seq,
                "mle_counter_bound": bound,
            }
            await asyncio.to_thread(self._state.save, body)
            self.key_sequence, self.bound = seq, bound
            self.writes += 1
