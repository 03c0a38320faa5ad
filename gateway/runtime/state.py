"""State that must survive a power cut, written atomically.

Files are written write → fsync → rename → fsync(directory), so a reader sees the old or the new
content, never a mix. JSON state documents carry a format name, a schema version and a SHA-256
over their body: a torn or edited file is *detected* and the service stops with a clear error
(:class:`~gateway.errors.StateError`); state is never silently reset. The previous good version is
kept as ``<name>.bak`` for `gwctl restore`-style recovery by a technician.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gateway.errors import StateError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o600, keep_backup: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically and durably; with ``keep_backup`` the previous
    content is first saved (the same way) as ``<name>.bak``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_backup:
        with contextlib.suppress(FileNotFoundError):
            _replace(path.with_name(path.name + ".bak"), path.read_bytes(), mode)
    _replace(path, data, mode)


def _digest(body: Any) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canon).hexdigest()


class JsonState:
    """One versioned JSON document in the state directory."""

    def __init__(self, path: Path, fmt: str, version: int) -> None:
        self.path = Path(path)
        self.fmt = fmt
        self.version = version

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict[str, Any] | None:
        """The body, None when the file does not exist; StateError when it is corrupt."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StateError(f"{self.path} is corrupt (not JSON)") from None
        if not isinstance(doc, dict) or doc.get("format") != self.fmt:
            raise StateError(f"{self.path} is not a {self.fmt} file")
        ver = doc.get("version")
        if isinstance(ver, int) and not isinstance(ver, bool) and ver < 1:
            # versions start at 1: a 0 is a flipped bit, not a document to read
            raise StateError(f"{self.path} is corrupt (version {ver})")
        if not isinstance(ver, int) or ver > self.version:
            raise StateError(
                f"{self.path} has version {ver!r}; this software reads up to {self.version}",
                hint="It was written by a newer release; upgrade the gateway software.",
            )
        body = doc.get("body")
        if not isinstance(body, dict) or doc.get("sha256") != _digest(body):
            raise StateError(f"{self.path} is corrupt (checksum mismatch)")
        return body

    def save(self, body: dict[str, Any]) -> None:
        doc = {"format": self.fmt, "version": self.version, "sha256": _digest(body), "body": body}
        data = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
        atomic_write(self.path, data, keep_backup=True)


FLOOR_KEY = "*"
FLOOR_CAP = 0xC0000000


class FrameCounterStore:
    """Outgoing frame counters that are never reused, even after ``kill -9`` or a power cut.

    As OpenThread does, the counter on disk is kept *ahead* of the counter in use by a reserve:
    the disk is written only when the in-use counter reaches the stored mark, and after a crash
    counting resumes from the stored mark (skipping at most ``reserve`` values, reusing none).
    """

    def __init__(self, path: Path, reserve: int = 1000) -> None:
        self._state = JsonState(path, "gateway-frame-counters", 1)
        self.reserve = reserve
        body = self._state.load() or {"counters": {}}
        counters = body.get("counters")
        if not isinstance(counters, dict) or not all(
            isinstance(v, int) and 0 <= v <= 0xFFFFFFFF for v in counters.values()
        ):
            raise StateError(f"{path}: frame counters are malformed")
        self._stored: dict[str, int] = dict(counters)
        self._next: dict[str, int] = dict(counters)  # resume from the stored (reserved) mark
        self.writes = 0
        self._lock: asyncio.Lock | None = None

    @property
    def floor(self) -> int:
        """Where a key never used before starts (raised by :meth:`bump` after a restore, so a
        key a restored backup did not know about cannot reuse counters either)."""
        return self._stored.get(FLOOR_KEY, 0)

    def next(self, key_id: str) -> int:
        """Take the next counter value for ``key_id`` (persisting a new reserve when needed)."""
        value, stored = self._claim(key_id)
        if stored is not None:
            self._state.save({"counters": stored})
        return self._commit(key_id, value, stored)

    async def take(self, key_id: str) -> int:
        """:meth:`next` for an event loop: a new reserve is written (and fsynced) in a worker
        thread, and the value is handed out only once it is on disk. Takers queue behind a write
        in progress, so no two take the same value."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            value, stored = self._claim(key_id)
            if stored is not None:
                await asyncio.to_thread(self._state.save, {"counters": stored})
            return self._commit(key_id, value, stored)

    def _claim(self, key_id: str) -> tuple[int, dict[str, int] | None]:
        """The next value of ``key_id`` and, when it reaches the stored mark, the counters to
        store first."""
        if key_id == FLOOR_KEY:
            raise StateError(f"'{FLOOR_KEY}' is not a key id")
        value = self._next.get(key_id, self.floor)
        if value > 0xFFFFFFFE:
            raise StateError(f"frame counter for {key_id} is exhausted; the key must change")
        if value < self._stored.get(key_id, 0):
            return value, None
        return value, {**self._stored, key_id: min(value + self.reserve, 0xFFFFFFFF)}

    def _commit(self, key_id: str, value: int, stored: dict[str, int] | None) -> int:
        if stored is not None:
            self._stored = stored
            self.writes += 1
        self._next[key_id] = value + 1
        return value

    def peek(self, key_id: str) -> int:
        return self._next.get(key_id, self.floor)

    def bump(self, amount: int) -> None:
        """After a restore: move every counter past anything a copy of this state may have used,
        keys it does not list included (through the floor)."""
        # the floor stays well below exhaustion: one worn-out key must not exhaust every new one
        top = min(max([self.floor, *self._stored.values(), *self._next.values()]), FLOOR_CAP)
        self._stored[FLOOR_KEY] = self._next[FLOOR_KEY] = top
        for k in set(self._stored) | set(self._next):
            # capped at the exhausted value: that key then refuses to count, while a larger
            # number would make the whole file unloadable and stop the service
            v = min(max(self._stored.get(k, 0), self._next.get(k, 0)) + amount, 0xFFFFFFFF)
            self._next[k] = v
            self._stored[k] = v
        self._state.save({"counters": self._stored})

    def snapshot(self) -> dict[str, int]:
        return dict(self._next)
