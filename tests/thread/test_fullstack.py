"""Full stack on the emulated air: the radio and border router services as subprocesses, the
border agent on loopback, the reference joiner on its own emulated radio and the reference
external commissioner (as a library in this process, and as its command line).

(a) an external commissioner and (b) the native commissioner each admit the reference joiner
through the gateway; and each failure gives a clear, typed error at the commissioner: a wrong
PSKd, an unknown joiner, a second commissioner, a keep-alive timeout, a joiner that vanishes
mid-handshake, and PSKd brute force (rate-limited)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.radio import open_radio
from gateway.crypto.thread_keys import SteeringData, joiner_id
from gateway.peers.commissioner import CommissionerPeer
from gateway.peers.thing.joiner import join
from gateway.runtime.mdns import browse_border_agents
from gateway.thread.commissioning.commissioner import RateLimit
from gateway.thread.commissioning.joiner import Joiner, JoinerState, Transmit, Tune
from gateway.thread.errors import (
    AnotherCommissionerActive,
    JoinerVanished,
    KeepAliveTimeout,
    PskdRateLimited,
    UnknownJoiner,
    WrongPskd,
)
from tests.runtime.helpers import wait_until
from tests.thread.stack import ThreadStack, run_joiner, thread_stack

pytestmark = pytest.mark.timeout(120)

BASE_OFFSET = 100  # this module uses port offsets 100..109
PSKD = "J01NME"


def eui(n: int) -> bytes:
    return bytes.fromhex(f"18b43000000001{n:02x}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadStack]:
    with thread_stack(tmp_path_factory.mktemp("stack"), BASE_OFFSET, mdns=True) as s:
        yield s


def ba(stack: ThreadStack) -> tuple[str, int]:
    return ("127.0.0.1", stack.ba_port)


def pskc(stack: ThreadStack) -> bytes:
    ds = stack.dataset()
    assert ds.pskc is not None
    return ds.pskc


# -- (b) the native commissioner --------------------------------------------------------------


def test_native_commissioner_admits_the_reference_joiner(stack: ThreadStack, tmp_path: Path):
    started = stack.result("commissioner_start")
    try:
        assert started["state"] == "active"
        stack.result("joiner_add", eui64=eui(1).hex(), pskd=PSKD, timeout_s=60)
        out = tmp_path / "creds.json"
        proc = run_joiner(stack, 2, PSKD, "--eui64", eui(1).hex(), "--out", str(out))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "JOIN_ENT received" in proc.stdout
        waited = stack.result("joiner_wait", eui64=eui(1).hex(), wait_s=10)
        assert waited["result"] == "joined"
        assert waited["joiner_id"] == joiner_id(eui(1)).hex()
        # the credentials the thing holds are the gateway's network, file mode 0600
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        from gateway.wire.dataset import ActiveDataset

        held = ActiveDataset.from_hex(json.loads(out.read_text())["active_dataset"])
        ds = stack.dataset()
        assert held.network_key == ds.network_key and held.pskc == ds.pskc
        assert (held.pan_id, held.channel, held.ext_pan_id) == (
            ds.pan_id,
            ds.channel,
            ds.ext_pan_id,
        )
        assert ds.network_key is not None and ds.network_key.hex() not in proc.stdout

        # the joiner may exit before the border router has handled its ACK of JOIN_ENT
        def entrust_acknowledged() -> bool:
            texts = [e["text"] for e in stack.result("sessions")["events"]]
            return any("acknowledged JOIN_ENT" in t for t in texts)

        wait_until(entrust_acknowledged, 10, "the joiner's ACK of JOIN_ENT at the border router")
        st = stack.status()["commissioning"]
        assert st["joiner_router"]["entrusted"] >= 1
        assert st["tx"]["kek_frames"] >= 1
    finally:
        stack.result("commissioner_stop")


# -- (a) the external commissioner ------------------------------------------------------------


async def test_external_commissioner_found_by_dnssd_admits_the_reference_joiner(
    stack: ThreadStack,
):
    ds = stack.dataset()
    records = [r for r in await browse_border_agents(4.0, "lo") if r.ext_pan_id == ds.ext_pan_id]
    assert records, "the border agent is not advertised on lo"
    rec = records[0]
    assert rec.port == stack.ba_port and rec.network_name == ds.network_name
    assert rec.connection_mode == 1 and rec.thread_version == "1.4.0"
    lines: list[str] = []
    peer = CommissionerPeer(("127.0.0.1", rec.port), pskc(stack), say=lines.append)
    await peer.start()
    try:
        await peer.add_joiner(PSKD, eui64=eui(2), timeout=60)
        joining = asyncio.ensure_future(
            join(stack.radio_url(3), PSKD, eui64=eui(2), channels=(stack.channel,))
        )
        ev = await peer.wait_joiner(eui(2), timeout=30)
        result = await joining
        assert ev.kind == "finalize" and ev.joiner_id == joiner_id(eui(2))
        assert result.joiner.state is JoinerState.JOINED, result.joiner.error
        assert result.credentials is not None
        assert result.credentials.network_key == ds.network_key
        words = "\n".join(lines)
        assert "petition accepted" in words and "KEK sent" in words
        assert SteeringData.for_joiner_ids([joiner_id(eui(2))]).to_bytes().hex() in words
    finally:
        await peer.close()


# -- errors at the commissioner ---------------------------------------------------------------


async def test_wrong_pskd_is_reported_at_the_commissioner(stack: ThreadStack):
    peer = CommissionerPeer(ba(stack), pskc(stack))
    await peer.start()
    try:
        await peer.add_joiner(PSKD, eui64=eui(3), timeout=60)
        joining = asyncio.ensure_future(
            join(stack.radio_url(4), "WR0NGPSKD", eui64=eui(3), channels=(stack.channel,))
        )
        with pytest.raises(WrongPskd, match="different joining code"):
            await peer.wait_joiner(eui(3), timeout=30)
        result = await joining
        assert result.joiner.state is JoinerState.FAILED
        assert "wrong joining code" in str(result.joiner.error)
    finally:
        await peer.close()


async def test_pskd_brute_force_is_rate_limited(stack: ThreadStack):
    limit = RateLimit(max_failures=2, window=60, backoff=30)
    peer = CommissionerPeer(ba(stack), pskc(stack), rate_limit=limit)
    await peer.start()
    try:
        await peer.add_joiner(PSKD, eui64=eui(4), timeout=60)
        for guess in ("GUESS1", "GUESS2"):
            joining = asyncio.ensure_future(
                join(stack.radio_url(5), guess, eui64=eui(4), channels=(stack.channel,))
            )
            with pytest.raises(WrongPskd):
                await peer.wait_joiner(eui(4), timeout=30)
            await joining
        # the third guess is refused before any handshake
        joining = asyncio.ensure_future(
            join(
                stack.radio_url(5), "GUESS3", eui64=eui(4), channels=(stack.channel,), timeout=3
            )  # fmt: skip
        )
        with pytest.raises(PskdRateLimited, match="refused for"):
            await peer.wait_joiner(eui(4), timeout=30)
        result = await joining
        assert result.joiner.state is not JoinerState.JOINED
        assert peer.commissioner.counters["wrong_pskd"] == 2
        assert peer.commissioner.counters["rate_limited"] >= 1
        # even the right code waits out the back-off: no oracle for the attacker
        assert peer.commissioner.joiners[f"eui64 {eui(4).hex()}"].blocked_until > 0
    finally:
        await peer.close()


def _colliding_eui64(admitted: bytes) -> bytes:
    """An EUI-64 whose Joiner ID falls into the admitted joiner's 16-byte bloom filter (a false
    positive), so its handshake reaches the commissioner, which does not know it."""
    sd = SteeringData.empty().with_eui64(admitted)
    for n in range(1, 2_000_000):
        cand = (0x02AA000000000000 + n).to_bytes(8, "big")
        if sd.contains_eui64(cand):
            return cand
    raise AssertionError("no bloom-filter collision found")


async def test_unknown_joiner_is_reported_at_the_commissioner(stack: ThreadStack):
    stranger = _colliding_eui64(eui(5))
    peer = CommissionerPeer(ba(stack), pskc(stack))
    await peer.start()
    try:
        await peer.add_joiner(PSKD, eui64=eui(5), timeout=60)
        joining = asyncio.ensure_future(
            join(stack.radio_url(6), PSKD, eui64=stranger, channels=(stack.channel,), timeout=4)
        )
        with pytest.raises(UnknownJoiner, match=joiner_id(stranger).hex()):
            await peer.wait_joiner(None, timeout=30)
        result = await joining
        assert result.joiner.state is not JoinerState.JOINED
    finally:
        await peer.close()


async def test_second_commissioner_is_refused(stack: ThreadStack):
    first = CommissionerPeer(ba(stack), pskc(stack), commissioner_id="first")
    await first.start()
    try:
        second = CommissionerPeer(ba(stack), pskc(stack), commissioner_id="second")
        with pytest.raises(AnotherCommissionerActive, match="'first' is already active"):
            await second.start()
        # the native commissioner is refused the same way, through the control socket
        reply = stack.call("commissioner_start")
        assert reply["error"]["code"] == AnotherCommissionerActive.code
        assert "'first'" in reply["error"]["message"]
    finally:
        await first.close()
    # once the first resigned, a petition succeeds
    assert stack.result("commissioner_start")["state"] == "active"
    stack.result("commissioner_stop")


async def test_joiner_vanishing_mid_handshake_is_reported(stack: ThreadStack):
    peer = CommissionerPeer(ba(stack), pskc(stack), joiner_session_timeout=2.0)
    await peer.start()
    radio = open_radio(stack.radio_url(7))
    await radio.open()
    try:
        await peer.add_joiner(PSKD, eui64=eui(7), timeout=60)
        loop = asyncio.get_running_loop()
        j = Joiner(PSKD, eui(7), channels=(stack.channel,), scan_passes=3)  # a busy air
        heard = 0
        deadline = loop.time() + 15
        with radio.subscribe() as sub:
            j.start(loop.time())
            # drive the joiner until the server's answer to its second ClientHello (the one
            # with the cookie) arrives, then go silent, like a device switched off
            while heard < 2:
                assert loop.time() < deadline, j.log
                for a in j.actions():
                    if isinstance(a, Tune):
                        await radio.set_channel(a.channel)
                        await radio.set_addresses(pan_id=a.pan_id, ext_addr=a.ext_addr.octets)
                    elif isinstance(a, Transmit):
                        await radio.transmit(a.psdu)
                f = await sub.get(0.05)
                if f is not None:
                    if j.state is JoinerState.CONNECTING:
                        heard += 1  # the HelloVerifyRequest, then the ServerHello flight
                    j.receive_frame(f.psdu, loop.time(), channel=f.channel)
                j.poll(loop.time())
                assert j.state in (JoinerState.DISCOVER, JoinerState.CONNECTING), j.log
        await radio.close()
        with pytest.raises(JoinerVanished, match="vanished mid-handshake"):
            await peer.wait_joiner(eui(7), timeout=30)
    finally:
        await radio.close()
        await peer.close()


async def _first_error(peer: CommissionerPeer, timeout: float) -> object:
    for _ in range(int(timeout * 10)):
        if peer.error is not None:
            return peer.error
        await asyncio.sleep(0.1)
    return None


async def test_keep_alive_timeout_is_reported(tmp_path: Path):
    with thread_stack(
        tmp_path, BASE_OFFSET + 1, env_extra={"GATEWAY_THREAD_KEEPALIVE_TIMEOUT": "2"}
    ) as stack:
        peer = CommissionerPeer(ba(stack), pskc(stack), keep_alive_interval=0.5)
        await peer.start()
        try:
            await asyncio.sleep(2.5)  # keep-alives flow: the session survives its timeout
            assert peer.error is None
            peer.paused = True  # the commissioner falls silent
            error = await _first_error(peer, 10.0)
            assert isinstance(error, KeepAliveTimeout), error
            # the commissioner notices first (its keep-alive goes unanswered), then the leader
            wait_until(
                lambda: stack.status()["commissioning"]["leader"]["active_commissioner"] is None,
                10,
                "the leader to expire the session",
                0.2,
            )
            texts = [e["text"] for e in stack.result("sessions")["events"]]
            assert any("timed out" in t for t in texts), texts
        finally:
            await peer.close()


def test_external_commissioner_command_line(stack: ThreadStack):
    """The peer's command line: DNS-SD discovery on lo, a wildcard joiner, exit 0 when the
    reference joiner (another process) has joined."""
    ds = stack.dataset()
    assert ds.ext_pan_id is not None
    cmd = [
        sys.executable, "-m", "gateway.peers.commissioner",
        "--pskc-file", str(stack.secret_file(pskc(stack).hex())),
        "--uplink", "lo", "--xpanid", ds.ext_pan_id.hex(), "--joiner", "*",
        "--pskd-file", str(stack.secret_file(PSKD)), "--duration", "40", "--browse", "4",
    ]  # fmt: skip
    comm = subprocess.Popen(
        cmd, env=stack.peer_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:

        def commissioner_active() -> bool:
            leader = stack.status()["commissioning"]["leader"]
            return leader["active_commissioner"] is not None and leader["joining_allowed"]

        wait_until(commissioner_active, 30, "the external commissioner to become active", 0.2)
        proc = run_joiner(stack, 8, PSKD, "--eui64", eui(8).hex(), "--timeout", "20")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out, _ = comm.communicate(timeout=40)
        assert comm.returncode == 0, out
        assert "found 'Gateway BorderRouter #" in out
        assert "admitted 1/1" in out
    finally:
        if comm.poll() is None:
            comm.kill()
            comm.wait()


def test_gwctl_commissioner_commands(stack: ThreadStack, monkeypatch: pytest.MonkeyPatch):
    """gwctl commissioner start / joiner add --wait / sessions / joiner remove / stop."""
    import threading

    from click.testing import CliRunner

    from gateway.border_router.cli import commissioner

    for key in ("GATEWAY_CONFIG", "GATEWAY_STATE_DIR", "GATEWAY_RUNTIME_DIR"):
        monkeypatch.setenv(key, stack.env()[key])
    cli = CliRunner()
    r = cli.invoke(commissioner, ["start", "--id", "technician"])
    assert r.exit_code == 0 and "commissioner active: 'technician'" in r.output, r.output
    try:
        r = cli.invoke(commissioner, ["start"])
        assert r.exit_code == 2 and "already running" in r.output
        results: list[subprocess.CompletedProcess[str]] = []
        later = threading.Timer(
            0.5, lambda: results.append(run_joiner(stack, 9, PSKD, "--eui64", eui(9).hex()))
        )
        later.start()
        r = cli.invoke(
            commissioner,
            ["joiner", "add", eui(9).hex(), "--pskd-file", "-", "--wait", "--wait-timeout", "30"],
            input=f"{PSKD}\n",
        )
        later.join()
        assert r.exit_code == 0, r.output
        assert f"joiner {joiner_id(eui(9)).hex()}: joined" in r.output
        assert results[0].returncode == 0
        r = cli.invoke(commissioner, ["sessions", "--json"])
        doc = json.loads(r.output)
        native = doc["native_commissioner"]
        assert native["state"] == "active" and native["id"] == "technician"
        assert native["joiners"][0]["joined"] == 1
        assert PSKD not in r.output
        r = cli.invoke(commissioner, ["sessions"])
        assert (
            "joining allowed" in r.output and f"joiner eui64 {eui(9).hex()}: joined 1" in r.output
        )
        # a wrong joining code comes back as a typed error with --wait
        later = threading.Timer(
            0.5, lambda: results.append(run_joiner(stack, 9, "WR0NG9", "--eui64", eui(10).hex()))
        )
        later.start()
        r = cli.invoke(
            commissioner,
            [
                "joiner",
                "add",
                eui(10).hex(),
                "--pskd-file",
                "-",
                "--wait",
                "--wait-timeout",
                "30",
                "--json",
            ],
            input=f"{PSKD}\n",
        )
        later.join()
        assert r.exit_code == 1, r.output
        assert json.loads(r.output.splitlines()[0])["error"]["code"] == WrongPskd.code
        r = cli.invoke(commissioner, ["joiner", "remove", eui(9).hex()])
        assert r.exit_code == 0 and "removed" in r.output
    finally:
        r = cli.invoke(commissioner, ["stop"])
        assert r.exit_code == 0 and "commissioner stopped" in r.output
