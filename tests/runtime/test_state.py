"""State that must survive a power cut (DESIGN §5): atomic writes, corruption detected (never a
silent reset), and frame counters that are never handed out twice, even across ``kill -9``."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StateError
from gateway.runtime.state import FrameCounterStore, JsonState, atomic_write

MAX_FC = 0xFFFFFFFF


def tmp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- atomic_write


def test_atomic_write_replaces_with_mode_and_backup(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.bin"
    atomic_write(path, b"one")  # creates the directory
    assert path.read_bytes() == b"one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # state is private by default
    ino = path.stat().st_ino
    atomic_write(path, b"two", keep_backup=True)
    assert path.read_bytes() == b"two"
    assert path.with_name("state.bin.bak").read_bytes() == b"one"
    assert path.stat().st_ino != ino  # a new file renamed over the old one, not rewritten in place
    atomic_write(path, b"three", mode=0o644, keep_backup=True)
    assert path.with_name("state.bin.bak").read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    atomic_write(path, b"four")
    assert path.with_name("state.bin.bak").read_bytes() == b"two"  # no backup unless asked
    assert tmp_files(path.parent) == []


def test_atomic_write_order_is_write_fsync_rename_fsync_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The durable-rename recipe: the data reaches the disk before the rename makes it visible,
    and the directory entry reaches the disk before the write is reported done."""
    path = tmp_path / "doc.json"
    path.write_bytes(b"old")
    calls: list[tuple[str, Any]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            calls.append(("fsync-dir", st.st_ino))
        else:
            with open(f"/proc/self/fd/{fd}", "rb") as f:  # what is on that file right now
                calls.append(("fsync-file", f.read()))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append(("rename", (Path(src).parent, Path(dst))))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write(path, b"new content")
    assert calls == [
        ("fsync-file", b"new content"),
        ("rename", (tmp_path, path)),  # the temporary file is in the same directory
        ("fsync-dir", tmp_path.stat().st_ino),
    ]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_atomic_write_failure_leaves_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "doc.json"
    atomic_write(path, b"old")

    def boom(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert tmp_files(tmp_path) == []  # the temporary file is removed


# ---------------------------------------------------------------- JsonState


def saved(tmp_path: Path, body: dict[str, Any] | None = None) -> JsonState:
    st = JsonState(tmp_path / "doc.json", "test-doc", 2)
    st.save(body or {"name": "gateway", "counters": {"a": 17, "b": 4096}, "ok": True})
    return st


def test_json_state_round_trip_and_backup(tmp_path: Path) -> None:
    st = JsonState(tmp_path / "doc.json", "test-doc", 1)
    assert st.load() is None and not st.exists()
    st.save({"x": 1})
    assert st.load() == {"x": 1}
    st.save({"x": 2})
    assert st.load() == {"x": 2}
    bak = JsonState(tmp_path / "doc.json.bak", "test-doc", 1)
    assert bak.load() == {"x": 1}  # the previous good version, loadable as such
    doc = json.loads(st.path.read_text())
    assert doc["format"] == "test-doc" and doc["version"] == 1 and doc["body"] == {"x": 2}


def test_truncation_is_detected(tmp_path: Path) -> None:
    st = saved(tmp_path)
    raw = st.path.read_bytes()
    body = st.load()
    assert raw.endswith(b"}\n")
    os.truncate(st.path, len(raw) - 1)  # only the final newline lost: the document is intact
    assert st.load() == body
    for n in reversed(range(len(raw) - 1)):  # every truncation that loses a byte of the document
        os.truncate(st.path, n)  # (in place: rewriting a file from scratch is slow on ext4)
        with pytest.raises(StateError, match="corrupt|not a test-doc file"):
            st.load()


def test_every_bit_flip_is_detected_or_harmless(tmp_path: Path) -> None:
    """A flipped bit never yields a *different* state: either StateError or the same body."""
    st = saved(tmp_path)
    raw = st.path.read_bytes()
    body = st.load()
    undetected = 0
    fd = os.open(st.path, os.O_WRONLY)
    try:
        for i in range(len(raw)):
            for bit in range(8):
                os.pwrite(fd, bytes((raw[i] ^ (1 << bit),)), i)  # flip one bit in place
                try:
                    got = st.load()
                except StateError:
                    continue
                finally:
                    os.pwrite(fd, raw[i : i + 1], i)
                assert got == body, f"byte {i} bit {bit}: silently read {got}"
                undetected += 1
    finally:
        os.close(fd)
    assert st.path.read_bytes() == raw
    assert undetected == 0


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (b"", "not JSON"),
        (b"\x00" * 64, "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[]", "not a test-doc file"),
        (b'{"format": "other", "version": 1, "body": {}}', "not a test-doc file"),
        (b'{"format": "test-doc", "version": "1", "body": {}}', "version '1'"),
        (b'{"format": "test-doc", "version": 1, "body": []}', "checksum"),
        (b'{"format": "test-doc", "version": 1, "body": {}}', "checksum"),
    ],
)
def test_malformed_documents(tmp_path: Path, doc: bytes, match: str) -> None:
    st = JsonState(tmp_path / "doc.json", "test-doc", 2)
    st.path.write_bytes(doc)
    with pytest.raises(StateError, match=match):
        st.load()
    assert st.path.read_bytes() == doc  # loading never repairs or replaces anything


def test_newer_version_is_refused_with_a_hint(tmp_path: Path) -> None:
    JsonState(tmp_path / "doc.json", "test-doc", 3).save({"x": 1})
    with pytest.raises(StateError) as info:
        JsonState(tmp_path / "doc.json", "test-doc", 2).load()
    assert "has version 3; this software reads up to 2" in info.value.message
    assert "upgrade" in info.value.hint
    assert info.value.exit_code == 9
    # an older version is read by newer software
    assert JsonState(tmp_path / "doc.json", "test-doc", 4).load() == {"x": 1}


# ---------------------------------------------------------------- FrameCounterStore


def test_counters_count_and_persist_ahead(tmp_path: Path) -> None:
    path = tmp_path / "fc.json"
    store = FrameCounterStore(path, reserve=100)
    assert [store.next("k") for _ in range(3)] == [0, 1, 2]
    assert store.writes == 1
    assert JsonState(path, "gateway-frame-counters", 1).load() == {"counters": {"k": 100}}
    for _ in range(250):
        store.next("k")
    assert store.peek("k") == 253
    assert store.writes == 3  # one write per reserve, not per frame
    assert store.next("other") == 0  # independent counters
    assert store.snapshot() == {"k": 253, "other": 1}


def test_restart_never_hands_out_a_value_twice(tmp_path: Path) -> None:
    rng = random.Random(4)
    path = tmp_path / "fc.json"
    handed: dict[str, list[int]] = {"a": [], "b": []}
    for _restart in range(15):
        store = FrameCounterStore(path, reserve=rng.choice([16, 50, 1000]))
        for _ in range(rng.randrange(0, 60)):
            key = rng.choice("ab")
            value = store.next(key)
            assert not handed[key] or value > handed[key][-1]
            handed[key].append(value)
    for values in handed.values():
        assert len(values) == len(set(values))
        assert values == sorted(values)


async def test_take_writes_in_a_worker_thread_and_hands_out_each_value_once(
    tmp_path: Path,
) -> None:
    """The radio service's path: the reserve's fsync runs off the event loop, concurrent
    takers never share a value, and nothing handed out is above the mark on disk."""
    import asyncio
    import threading

    path = tmp_path / "fc.json"
    store = FrameCounterStore(path, reserve=8)
    loop_thread = threading.get_ident()
    writers: list[int] = []
    original = store._state.save
    entered = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()

    def slow_save(body: dict[str, Any]) -> None:
        writers.append(threading.get_ident())
        loop.call_soon_threadsafe(entered.set)
        release.wait(30)  # held until the loop has shown it still runs
        original(body)

    store._state.save = slow_save  # type: ignore[method-assign]
    takers = [asyncio.create_task(store.take(k)) for k in "aabab" * 6]
    await asyncio.wait_for(entered.wait(), 30)  # the first write is in progress, the loop runs
    assert not any(t.done() for t in takers)  # nobody has a value that is not on disk yet
    release.set()
    values = await asyncio.gather(*takers)
    assert writers and loop_thread not in writers
    by_key: dict[str, list[int]] = {"a": [], "b": []}
    for k, v in zip("aabab" * 6, values, strict=True):
        by_key[k].append(v)
    on_disk = JsonState(path, "gateway-frame-counters", 1).load()
    assert on_disk is not None
    for k, got in by_key.items():
        assert got == list(range(len(got)))
        assert max(got) < on_disk["counters"][k]


def test_bump_moves_every_counter_past_a_restored_copy(tmp_path: Path) -> None:
    path = tmp_path / "fc.json"
    store = FrameCounterStore(path, reserve=16)
    for _ in range(5):
        store.next("a")
    store.next("b")
    store.bump(10_000)
    assert store.next("a") >= 5 + 10_000
    assert store.next("b") >= 1 + 10_000
    again = FrameCounterStore(path, reserve=16)  # the bump is on disk
    assert again.next("a") > 10_005
    assert again.next("b") > 10_001


def test_exhaustion_is_an_error_not_a_wrap(tmp_path: Path) -> None:
    path = tmp_path / "fc.json"
    JsonState(path, "gateway-frame-counters", 1).save({"counters": {"k": MAX_FC - 2, "x": 7}})
    store = FrameCounterStore(path, reserve=1000)
    # 0xffffffff is not a usable frame counter (IEEE 802.15.4-2015 9.2.2: the counter is exhausted)
    assert store.next("k") == MAX_FC - 2
    assert store.next("k") == MAX_FC - 1
    with pytest.raises(StateError, match="exhausted"):
        store.next("k")
    with pytest.raises(StateError, match="exhausted"):
        FrameCounterStore(path, reserve=1000).next("k")
    assert FrameCounterStore(path, reserve=1000).next("x") == 7  # other keys unaffected


def test_bump_near_the_top_exhausts_only_that_key(tmp_path: Path) -> None:
    path = tmp_path / "fc.json"
    JsonState(path, "gateway-frame-counters", 1).save({"counters": {"k": MAX_FC - 10, "x": 7}})
    FrameCounterStore(path, reserve=16).bump(1000)
    store = FrameCounterStore(path, reserve=16)  # still loads: the service can start
    with pytest.raises(StateError, match="exhausted"):
        store.next("k")
    assert store.next("x") >= 1007


@pytest.mark.parametrize(
    "counters",
    [[], {"k": -1}, {"k": MAX_FC + 1}, {"k": "12"}, {"k": 1.5}],
)
def test_malformed_counters_are_refused(tmp_path: Path, counters: object) -> None:
    path = tmp_path / "fc.json"
    JsonState(path, "gateway-frame-counters", 1).save({"counters": counters})
    before = path.read_bytes()
    with pytest.raises(StateError):
        FrameCounterStore(path)
    assert path.read_bytes() == before


def test_corrupt_counters_stop_instead_of_restarting_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "fc.json"
    store = FrameCounterStore(path, reserve=16)
    store.next("k")
    raw = bytearray(path.read_bytes())
    raw[raw.index(b'"k": 16') + 6] = ord("0")  # the mark 16 becomes 10: behind what was used
    path.write_bytes(bytes(raw))
    with pytest.raises(StateError, match="checksum"):
        FrameCounterStore(path, reserve=16)


# ---------------------------------------------------------------- kill -9 in the middle of saves


def _child(fn: Any, wfd: int) -> None:
    """Run ``fn(report)`` in a forked child until killed; ``report(n)`` tells the parent."""
    try:

        def report(n: int) -> None:
            os.write(wfd, f"{n}\n".encode())

        fn(report)
    finally:
        os._exit(0)


def _fork_and_kill(fn: Any, rng: random.Random, delay_hi: float) -> list[int]:
    """Fork a child running ``fn``, SIGKILL it after a random delay; the values it reported."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(fn, wfd)
    os.close(wfd)
    # let the child get going (a loaded machine may take a while to schedule it), then kill it
    # at a random point of its loop
    data = b""
    deadline = time.monotonic() + 10
    while b"\n" not in data and time.monotonic() < deadline:
        if select.select([rfd], [], [], 0.1)[0]:
            data += os.read(rfd, 65536)
    time.sleep(rng.uniform(0.0, delay_hi))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while select.select([rfd], [], [], 0)[0]:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(rfd)
    return [int(x) for x in data.split()]


def test_kill9_during_saves_leaves_old_or_new_content(tmp_path: Path) -> None:
    """A process killed at a random point of repeated saves leaves a document that loads and is
    the last save that returned or the one in flight: never a mix, never a reset."""
    rng = random.Random(9)
    st = JsonState(tmp_path / "doc.json", "test-doc", 1)
    st.save({"seq": 0, "pad": "x" * 3000})
    last = 0
    for _round in range(30):
        start = last

        def saves(report: Any, start: int = start) -> None:
            seq = start
            while True:
                seq += 1
                st.save({"seq": seq, "pad": "x" * (3000 + seq % 500)})
                report(seq)

        acked = _fork_and_kill(saves, rng, 0.03)
        body = st.load()
        assert body is not None
        done = max(acked, default=start)
        assert body["seq"] in (done, done + 1), (body["seq"], done)
        assert body["pad"] == "x" * (3000 + body["seq"] % 500)
        bak = JsonState(st.path.with_name("doc.json.bak"), "test-doc", 1).load()
        assert bak is not None and bak["seq"] <= body["seq"]
        last = body["seq"]
    assert last >= 30  # every child saved at least once before it was killed


def test_kill9_never_reuses_a_frame_counter(tmp_path: Path) -> None:
    rng = random.Random(16)
    path = tmp_path / "fc.json"
    handed: list[int] = []
    for _round in range(25):

        def counting(report: Any) -> None:
            store = FrameCounterStore(path, reserve=16)
            while True:
                report(store.next("mac"))

        values = _fork_and_kill(counting, rng, 0.02)
        if handed and values:
            assert values[0] > handed[-1]
        handed.extend(values)
    assert len(handed) >= 25
    assert len(handed) == len(set(handed))
    assert FrameCounterStore(path, reserve=16).next("mac") > handed[-1]
