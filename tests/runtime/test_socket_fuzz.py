"""Fuzzed messages to the radio socket and to every control socket (the issue's "Must show"):
the services stay up, answer every line with a result or an error, and log no traceback.

A seeded generator (bounded, reproducible) mixes raw garbage, JSON that is not a request, broken
envelopes, and well-formed requests for every method with hostile parameters, including mutated
MAC frames for ``transmit``. Connection-level abuse follows: lines past the limit, half-written
requests, connections dropped mid-request, many connections at once.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.fcs import append_fcs
from tests.runtime.helpers import Install, LineClient, ServiceProcess, Services, temp_install

SEED = 4_2026
MESSAGES = 250  # per socket

RADIO_METHODS: dict[str, list[str]] = {
    "hello": ["client"],
    "subscribe": ["frame_types", "dispatch", "secured", "include_tx"],
    "unsubscribe": ["sub"],
    "transmit": ["frame", "csma", "retries", "auto_seq", "security"],
    "set_channel": ["channel"],
    "set_addresses": ["pan_id", "short_addr", "ext_addr", "coordinator"],
    "set_tx_power": ["dbm"],
    "set_frame_pending": ["on"],
    "energy_scan": ["channels", "duration"],
    "register_key": ["key_id", "key", "key_id_mode", "key_index", "key_source"],
    "remove_key": ["key_id"],
    "status": [],
}
CONTROL_METHODS: dict[str, dict[str, list[str]]] = {
    "radio": {"status": [], "ping": [], "counters": []},
    "border-router": {
        "status": [],
        "ping": [],
        "commissioner_start": ["id", "keep_alive_interval", "joiner_session_timeout", "rate_limit"],
        "commissioner_stop": [],
        "joiner_add": ["eui64", "pskd", "timeout", "discerner"],
        "joiner_remove": ["eui64"],
        "sessions": [],
        "reload_dataset": [],
        "thread_status": [],
        "thread_children": [],
        "thread_neighbors": [],
        "thread_netdata": [],
        # without an address: a valid one would make a ping wait for its replies
        "thread_ping": ["size", "count", "interval_s", "timeout_s"],
        # joiner_wait is a long poll (it may rightly wait an hour for a joiner): left out
    },
    "group-owner": {
        "status": [],
        "ping": [],
        "bootstrap": [],
        "bootstrap_errors": [],
        "bootstrap_close": [],
    },
}
WEIRD: list[Any] = [
    None, True, False, 0, 1, -1, 2, 7, 11, 15, 26, 27, 255, 256, 0xFFFF, 0x10000, 2**31, 2**63,
    -(2**63), 10**30, 0.5, 1.5, -0.0, 1e308, "", "x", "*", "zz", "00", "0" * 7, "ff" * 8,
    "00" * 16, "41d8", "é" * 10, "\u0000", "a" * 300, [], [1], [0, 255], [5, 3], [60, 60],
    [[[]]], [1, "2", None], {}, {"a": 1}, {"key_id": "k", "level": 5}, {"key_id": "k"},
]  # fmt: skip


def valid_frame(rng: random.Random) -> bytes:
    """A broadcast 2006 data frame (no FCS) with a random payload."""
    payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
    return bytes.fromhex("41d800ffffffff") + bytes(8) + payload


def mutated_frame(rng: random.Random) -> bytes:
    f = bytearray(valid_frame(rng))
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(3)
        if op == 0 and f:
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
        elif op == 1 and f:
            del f[rng.randrange(len(f)) :]
        else:
            f += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(f)


def weird(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.6:
        return rng.choice(WEIRD)
    if r < 0.75:
        return rng.randrange(-(2**33), 2**33)
    if r < 0.9:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20))).hex()
    return mutated_frame(rng).hex()


def params_for(rng: random.Random, method: str, names: list[str]) -> dict[str, Any]:
    p: dict[str, Any] = {}
    for _ in range(rng.randrange(0, len(names) + 2)):
        name = rng.choice([*names, "extra", ""]) if names else rng.choice(["extra", "x"])
        p[name] = weird(rng)
    if method == "transmit" and rng.random() < 0.7:
        p["frame"] = (valid_frame(rng) if rng.random() < 0.3 else mutated_frame(rng)).hex()
    if method == "energy_scan":
        # keep scans short: a fuzzer is not a load test (16 channels x 10 s is a valid request)
        d = p.get("duration")
        if isinstance(d, int | float) and not isinstance(d, bool) and d > 0.002:
            p["duration"] = 0.002
        if "duration" not in p:
            p["duration"] = 0.002
    if method == "register_key" and rng.random() < 0.5:
        p.update(key_id="k", key="00" * 16, key_id_mode=rng.choice([0, 1, 2]), key_index=1)
    return p


NO_CHECK = object()


def message(rng: random.Random, methods: dict[str, list[str]], rid: int) -> tuple[bytes, Any]:
    """One line (without the newline) and the id its answer must carry (NO_CHECK when the
    envelope is broken: the server may not be able to tell)."""
    kind = rng.random()
    if kind < 0.1:  # raw garbage
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        return raw.replace(b"\n", b" "), NO_CHECK
    if kind < 0.2:  # JSON, not a request object
        value = rng.choice([[1, 2], "text", 42, None, 1.5, [{"v": 1}], "[" * 2000, '{"v": 1'])
        text = value if isinstance(value, str) and value[:1] in "[{" else json.dumps(value)
        return text.encode(), NO_CHECK
    method = rng.choice(list(methods))
    if kind < 0.35:  # a broken envelope
        msg: dict[str, Any] = {"v": 1, "id": rid, "method": method, "params": {}}
        field = rng.choice(["v", "id", "method", "params"])
        if rng.random() < 0.3:
            del msg[field]
        else:
            msg[field] = rng.choice([v for v in WEIRD if v != msg[field]])
        text = json.dumps(msg)
        if rng.random() < 0.2:  # Python's JSON extensions a client might send
            text = text.replace('"params": {}', '"params": {"dbm": NaN, "x": Infinity}')
        mid = msg.get("id")
        ok = msg.get("v") == 1 and isinstance(mid, int | str) and not isinstance(mid, bool)
        ok = ok and isinstance(msg.get("method"), str) and isinstance(msg.get("params", {}), dict)
        return text.encode(), mid if ok else NO_CHECK
    if kind < 0.45:  # an unknown method
        name = rng.choice(["", "STATUS", "x" * 100, "__init__"])
        return json.dumps({"v": 1, "id": rid, "method": name}).encode(), rid
    params = params_for(rng, method, methods[method])
    request = json.dumps({"v": 1, "id": rid, "method": method, "params": params}).encode()
    if kind < 0.5:  # a valid request, bytes mutated
        line = bytearray(request)
        for _ in range(rng.randrange(1, 4)):
            line[rng.randrange(len(line))] = rng.randrange(32, 127)
        return bytes(line), NO_CHECK
    return request, rid


def fuzz_socket(
    client: LineClient, methods: dict[str, list[str]], rng: random.Random
) -> dict[str, int]:
    """Send MESSAGES lines, each answered before the next; count results and errors."""
    counts = {"result": 0, "error": 0}
    for rid in range(1, MESSAGES + 1):
        line, expect = message(rng, methods, rid)
        client.send_raw(line + b"\n")
        if not line.strip():
            continue  # a blank line is skipped by the server
        while True:
            msg = client.read_message(timeout=10)
            assert msg is not None, f"no answer to {line[:200]!r}"
            if "event" not in msg:
                break
        assert msg["v"] == 1
        assert ("result" in msg) != ("error" in msg), msg
        if expect is not NO_CHECK:
            assert msg["id"] == expect, (line[:200], msg)
        if "error" in msg:
            err = msg["error"]
            assert isinstance(err["code"], str) and isinstance(err["message"], str), msg
            counts["error"] += 1
        else:
            counts["result"] += 1
    return counts


def abuse_connections(path: Any, rng: random.Random) -> None:
    """Half-written requests, drops mid-request, oversize lines, many connections at once."""
    socks = []
    for i in range(40):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        socks.append(s)
        what = i % 4
        if what == 0:
            s.sendall(b'{"v": 1, "id": 1, "method": "sta')  # never finished
        elif what == 1:
            s.sendall(b'{"v": 1, "id": 1, "method": "status", "params": {}}\n')  # never read
        elif what == 2:
            try:
                s.sendall(bytes(rng.randrange(256) for _ in range(300_000)))  # no newline, too long
            except OSError:
                pass
    for s in socks:
        if rng.random() < 0.5:
            # close with unread data: a reset rather than an orderly close
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()


@pytest.fixture
def inst(port_offset: int) -> Iterator[Install]:
    with temp_install(port_offset) as i:
        yield i


def check_alive(sp: ServiceProcess, inst: Install) -> None:
    assert sp.alive(), sp.stderr()
    with LineClient(inst.control_socket(sp.service)) as c:
        assert c.result("status")["phase"] == "ready"


def test_fuzzed_sockets_get_answers_and_the_services_stay_up(inst: Install) -> None:
    rng = random.Random(SEED)
    with Services(inst) as svc:
        procs = svc.start_all()
        totals: dict[str, dict[str, int]] = {}
        with LineClient(inst.radio_socket, timeout=10) as c:
            totals["radio socket"] = fuzz_socket(c, RADIO_METHODS, rng)
            assert c.result("status")["radio"]["healthy"] is True  # the same connection works
        for name, methods in CONTROL_METHODS.items():
            with LineClient(inst.control_socket(name), timeout=10) as c:
                totals[f"{name} control"] = fuzz_socket(c, methods, rng)
        for path in (inst.radio_socket, *(inst.control_socket(n) for n in CONTROL_METHODS)):
            abuse_connections(path, rng)
        for sp in procs.values():
            check_alive(sp, inst)
        with LineClient(inst.radio_socket) as c:
            assert c.result("hello", client="after-fuzz")["protocol"] == 1
            frame = append_fcs(valid_frame(rng))[:-2]
            assert c.result("transmit", frame=frame.hex())["ok"] is True
        for name, counts in totals.items():
            # both kinds of answer really happened on every socket
            assert counts["error"] > MESSAGES // 4, (name, counts)
            assert counts["result"] > 10, (name, counts)
        for sp in reversed(list(procs.values())):
            sp.stop()  # exit 0, and no traceback anywhere in the log
        print({k: v for k, v in totals.items()})


def hostile_frame(rng: random.Random) -> bytes:
    """A mostly well-formed frame (so it gets past the parser into security processing) with
    random damage: the radio's receive path must take anything the air carries."""
    level = rng.randrange(8)
    mode = rng.choice([0, 1, 1, 2, 3])
    fcf = 0x0001 | 0x0040 | (2 << 10) | (rng.choice([0, 1, 1, 2]) << 12) | (3 << 14)
    if rng.random() < 0.8:
        fcf |= 0x0008
    key_id = b"" if mode == 0 else bytes(rng.randrange(256) for _ in range((0, 1, 5, 9)[mode]))
    if mode == 1 and rng.random() < 0.7:
        key_id = b"\x01"  # the registered key's index: the MIC check runs
    aux = bytes((level | mode << 3,)) + rng.randrange(2**32).to_bytes(4, "little") + key_id
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    f = bytearray(
        fcf.to_bytes(2, "little") + b"\x07\xff\xff\xff\xff" + bytes(range(8)) + aux + body
    )
    for _ in range(rng.randrange(0, 3)):
        op = rng.randrange(3)
        if op == 0:
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
        elif op == 1 and len(f) > 1:
            del f[rng.randrange(1, len(f)) :]
        else:
            f[rng.randrange(len(f))] = rng.randrange(256)
    return bytes(f[:125])


def test_hostile_frames_on_the_air(inst: Install) -> None:
    """The air is an input too: damaged and forged frames reach the parser, the key lookup and
    the MIC check; the radio service keeps serving."""
    from drivers.emulator.air import AirPort

    rng = random.Random(SEED + 1)
    peer = AirPort(2, inst.port_offset)
    try:
        with Services(inst) as svc:
            radio = svc.start("radio")
            with LineClient(inst.radio_socket) as c:
                c.result("register_key", key_id="k", key="00" * 16, key_id_mode=1, key_index=1)
                c.result("subscribe")
                for i in range(600):
                    peer.send(11, append_fcs(hostile_frame(rng)))
                    time.sleep(0.002)  # one frame at a time on the air: no collisions
                    if i % 50 == 49:
                        c.drain_events(0.02)
                        assert radio.alive(), radio.stderr()
                events = c.drain_events(0.5)
                mac = c.result("status")["mac"]
                assert c.result("status")["radio"]["healthy"] is True
            assert mac["rx_delivered"] > 200, mac  # many frames passed the chip's filter
            assert mac["rx_mic_failures"] > 0, mac  # and forged ones reached the MIC check
            assert all(isinstance(e["psdu"], str) for e in events)
            radio.stop()  # exit 0, no traceback
    finally:
        peer.close()
