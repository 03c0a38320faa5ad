"""The issue's "Must show" on frame counters: after repeated ``kill -9`` of the radio service in
the middle of a burst of secured transmissions, no (key, source, frame counter) triple appears in
two different frames on the air. An unchanged retransmission (the same PSDU again, after a
missing ACK) is not a reuse.

The air is captured by a passive AirTap. Each frame's counter is read from its auxiliary security
header and its MIC is checked with an independent CCM* (``cryptography``'s AESCCM, nonce of IEEE
802.15.4-2006 §7.6.3.2 as OpenThread's ``Mac::GenerateNonce`` builds it: extended source address
‖ frame counter big-endian ‖ security level), so the counter in the header is the one that went
into the nonce.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from drivers.emulator.tap import AirTap
from drivers.fcs import fcs_ok
from tests.runtime.helpers import Install, LineClient, Services, temp_install

KEYS = {
    # name: (key, key id mode, key index); mode 0 is the implicit key (as the KEK is used)
    "mac": (bytes.fromhex("00112233445566778899aabbccddeeff"), 1, 1),
    "kek": (bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0"), 0, None),
}
ROUNDS = 7
LEVEL = 5  # ENC-MIC-32, as Thread uses
MIC = 4
RESERVE = 16  # the smallest reserve: the counter file is rewritten every 16 frames


class Capture(threading.Thread):
    """The air, captured in the background."""

    def __init__(self, port_offset: int) -> None:
        super().__init__(daemon=True)
        self.tap = AirTap(port_offset)
        self.frames: list[tuple[int, int, bytes]] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            self.frames += self.tap.poll(0.05)

    def stop(self) -> list[tuple[int, int, bytes]]:
        time.sleep(0.3)
        self.running = False
        self.join(5)
        self.frames += self.tap.poll(0.1)
        self.tap.close()
        return self.frames


def data_frame(src_ext: bytes, payload: bytes, ack_dst: int | None) -> bytes:
    """2006 data frame, PAN ID compression, short destination, extended source (no FCS)."""
    fcf = 0x0001 | 0x0040 | (2 << 10) | (1 << 12) | (3 << 14) | (0x0020 if ack_dst else 0)
    dst = ack_dst or 0xFFFF
    return (
        fcf.to_bytes(2, "little")
        + b"\x00\xff\xff"
        + dst.to_bytes(2, "little")
        + src_ext[::-1]
        + payload
    )


def burst(
    client: LineClient, ext: bytes, rnd: int, rng: random.Random, log: list[dict[str, Any]]
) -> int:
    """Transmit secured frames, 8 in flight, until the connection dies; returns requests sent."""
    inflight: dict[int, dict[str, Any]] = {}
    n = 0
    try:
        while True:
            while len(inflight) < 8:
                key = rng.choice(sorted(KEYS))
                # a payload no other request uses: two different frames always differ
                payload = (
                    b"\x01" + bytes((rnd,)) + n.to_bytes(4, "big") + bytes(rng.randrange(0, 40))
                )
                ack = n % 10 == 9  # now and then an unacknowledged frame: retransmitted as is
                params: dict[str, Any] = {
                    "frame": data_frame(ext, payload, 0x0002 if ack else None).hex(),
                    "security": {"key_id": key, "level": LEVEL},
                }
                if ack:
                    params["retries"] = 1
                rid = client.request("transmit", params)
                inflight[rid] = {"round": rnd, "key": key}
                n += 1
            msg = client.read_message(timeout=5)
            if msg is None:
                return n  # the service is gone
            if "event" in msg:
                continue
            entry = inflight.pop(msg["id"])
            entry.update(msg.get("result") or {"error": msg.get("error")})
            log.append(entry)
    except OSError:  # broken pipe, reset: killed mid-request
        return n


def key_of(aux: bytes) -> tuple[str, int] | None:
    """(key name, length of the auxiliary security header) from the aux header bytes."""
    control = aux[0]
    if control & 7 != LEVEL:
        return None
    mode = (control >> 3) & 3
    for name, (_key, kmode, index) in KEYS.items():
        if kmode == mode == 0:
            return name, 5
        if kmode == mode == 1 and aux[5] == index:
            return name, 6
    return None


@pytest.fixture
def inst(port_offset: int) -> Iterator[Install]:
    with temp_install(port_offset) as i:
        i.config.write_text(f"[radio]\nframe_counter_reserve = {RESERVE}\n")
        yield i


def test_no_frame_counter_reuse_across_kill9(inst: Install) -> None:
    rng = random.Random(20251126)
    capture = Capture(inst.port_offset)
    capture.start()
    replies: list[dict[str, Any]] = []
    sent = 0
    ext = b""
    try:
        with Services(inst) as svc:
            for rnd in range(ROUNDS):
                sp = svc.start("radio")
                with LineClient(inst.radio_socket) as c:
                    ext = bytes.fromhex(c.result("hello", client=f"burst-{rnd}")["ext_addr"])
                    for name, (key, mode, index) in KEYS.items():
                        params: dict[str, Any] = {
                            "key_id": name,
                            "key": key.hex(),
                            "key_id_mode": mode,
                        }
                        if index is not None:
                            params["key_index"] = index
                        c.result("register_key", **params)
                    killer = threading.Timer(rng.uniform(0.15, 0.6), sp.kill)
                    killer.start()
                    sent += burst(c, ext, rnd, rng, replies)
                    killer.join()
                assert not sp.alive()
            # after the last kill the service still starts (the counter file is intact)
            final = svc.start("radio")
            with LineClient(inst.control_socket("radio")) as ctl:
                assert ctl.result("status")["phase"] == "ready"
            final.stop()
    finally:
        frames = capture.stop()

    # ---- what went on the air
    seen: dict[tuple[str, bytes, int], set[bytes]] = defaultdict(set)
    per_round: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    copies = 0
    for node, _ch, psdu in frames:
        if node != 1 or not psdu[0] & 0x08:
            continue
        assert fcs_ok(psdu)
        src = psdu[7:15][::-1]
        assert src == ext
        found = key_of(psdu[15:])
        assert found is not None, psdu.hex()
        name, aux_len = found
        fc = int.from_bytes(psdu[16:20], "little")
        hdr = psdu[: 15 + aux_len]
        key = KEYS[name][0]
        nonce = src + fc.to_bytes(4, "big") + bytes((LEVEL,))
        try:
            plain = AESCCM(key, tag_length=MIC).decrypt(nonce, psdu[15 + aux_len : -2], hdr)
        except InvalidTag:  # pragma: no cover - would mean the header's counter is not the nonce's
            pytest.fail(f"MIC check failed for {name} counter {fc}")
        if psdu in seen[(name, src, fc)]:
            copies += 1  # an unchanged retransmission
        seen[(name, src, fc)].add(psdu)
        per_round[plain[1]][name].append(fc)

    reused = {k: v for k, v in seen.items() if len(v) > 1}
    assert not reused, f"frame counters reused by different frames: {sorted(reused)[:5]}"

    # the counters only move forward across restarts (reserve-ahead: each restart skips ahead)
    for name in KEYS:
        last = -1
        for rnd in range(ROUNDS):
            values = per_round[rnd][name]
            if values:
                assert min(values) > last, (name, rnd)
                last = max(values)

    # the test really exercised what it claims
    secured_frames = sum(len(v) for v in seen.values())
    ok = [r for r in replies if r.get("ok")]
    rounds_on_air = sum(1 for rnd in range(ROUNDS) if per_round[rnd])
    assert rounds_on_air == ROUNDS
    assert secured_frames >= 100, (secured_frames, sent)
    assert copies > 0  # retransmissions were captured and correctly not counted as reuse
    assert ok and {r["key"] for r in ok} == set(KEYS)
    acknowledged = {(r["key"], r["frame_counter"]) for r in ok}
    on_air = {(name, fc) for (name, _src, fc) in seen}
    assert len(acknowledged - on_air) <= len(acknowledged) // 20  # the tap saw what was sent
    print(
        f"{ROUNDS} kill -9 rounds, {sent} transmit requests, {len(ok)} acknowledged replies, "
        f"{secured_frames} distinct secured frames on the air, {copies} retransmitted copies, "
        f"no counter reused"
    )
