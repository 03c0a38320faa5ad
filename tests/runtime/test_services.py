"""The three services as real processes (DESIGN §5, §8): they start on an emulated radio with no
configuration file or an empty one, create their state on first start, tell systemd READY only
once they are ready (STATUS at each phase, WATCHDOG, STOPPING), answer on their control sockets,
stop cleanly on SIGTERM, and refuse bad configuration or corrupt state with a clear message and
exit 9 (never a silent reset)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.border_router.service import BorderRouterService
from gateway.group_owner.service import GroupOwnerService
from gateway.radio.service import RadioService
from gateway.runtime.service import Service, run_service
from tests.runtime.helpers import (
    MODULES,
    Install,
    LineClient,
    Services,
    running,
    temp_install,
    wait_until,
)

SERVICES = ("radio", "border-router", "group-owner")


@pytest.fixture
def inst(port_offset: int) -> Iterator[Install]:
    with temp_install(port_offset) as i:
        yield i


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("config", [None, ""])
def test_three_services_start_with_no_or_empty_config(inst: Install, config: str | None) -> None:
    if config is not None:
        inst.config.write_text(config)
    assert not inst.state_dir.exists()
    with Services(inst) as svc:
        procs = svc.start_all()
        # state created on first start: the shared Thread network, private, created once
        net = inst.state_dir / "thread-network.json"
        assert net.exists()
        assert stat.S_IMODE(net.stat().st_mode) == 0o600
        assert not (inst.state_dir / "thread-network.json.bak").exists()  # written once only
        doc = json.loads(net.read_text())
        assert doc["format"] == "gateway-thread-network"
        for name, sp in procs.items():
            st = sp.status()
            assert st["service"] == name
            assert st["phase"] == "ready"
            assert st["pid"] == sp.pid
            assert isinstance(st["version"], str) and st["uptime_s"] >= 0
            with LineClient(inst.control_socket(name)) as c:
                assert c.result("ping") == {"pong": True}
        radio = procs["radio"].status()
        assert radio["radio"]["backend"] == "emulated"
        assert radio["radio"]["url"] == inst.radio_url
        assert radio["clients"] == 2  # the border router and the group owner
        br = procs["border-router"].status()
        assert br["radio_connected"] is True
        assert br["thread"]["network_name"]
        assert procs["group-owner"].status()["radio_connected"] is True
        # the radio was set to the Thread network's channel by the border router
        assert radio["radio"]["channel"] == br["thread"]["channel"]
        for name in reversed(SERVICES):
            procs[name].stop()
            assert not inst.control_socket(name).exists()  # removed on the way out
        assert not inst.radio_socket.exists()
    # nothing written outside the installation's three places (and the test's own files)
    assert {p.split("/")[0] for p in tree(inst.root)} <= {
        "state",
        "run",
        "logs",
        *(p.name for p in inst.root.iterdir() if p.name.startswith("notify-")),
    } | ({"gateway.toml"} if config is not None else set())


def test_restart_keeps_the_state(inst: Install) -> None:
    with running(inst, "radio", "border-router") as procs:
        first = procs["border-router"].status()["thread"]
    net = (inst.state_dir / "thread-network.json").read_bytes()
    with running(inst, "radio", "border-router") as procs:
        assert procs["border-router"].status()["thread"] == first
    assert (inst.state_dir / "thread-network.json").read_bytes() == net


def test_notify_protocol(inst: Install) -> None:
    """STATUS for each phase, READY=1 only after start, WATCHDOG=1 at half WATCHDOG_USEC,
    STOPPING=1 on SIGTERM."""
    with Services(inst) as svc:
        radio = svc.start("radio", env={"WATCHDOG_USEC": "200000"})
        assert radio.notify_socket is not None
        seen = radio.notify_socket.assignments()
        ready = seen.index("READY=1")
        statuses = [s for s in seen[:ready] if s.startswith("STATUS=")]
        assert statuses[0] == "STATUS=starting"
        assert any("opening radio" in s for s in statuses)
        assert seen[ready + 1].startswith("STATUS=ready")
        # when READY arrives, the radio socket answers
        with LineClient(inst.radio_socket) as c:
            assert c.result("hello", client="test")["protocol"] == 1
        # WATCHDOG_USEC=200 ms: fed every 100 ms while healthy
        wait_until(
            lambda: radio.notify_socket.assignments().count("WATCHDOG=1") >= 3,
            5,
            "three WATCHDOG=1",
        )
        assert "WATCHDOG=1" not in seen[:ready]
        radio.stop()
        after = radio.notify_socket.assignments()
        assert "STOPPING=1" in after[ready:]
        assert after.index("STOPPING=1") > after.index("READY=1")


def test_watchdog_is_only_for_the_named_pid(inst: Install) -> None:
    with Services(inst) as svc:
        radio = svc.start("radio", env={"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
        time.sleep(0.4)
        assert radio.notify_socket is not None
        assert "WATCHDOG=1" not in radio.notify_socket.assignments()
        radio.stop()


def test_no_crash_without_systemd_or_journald(inst: Install) -> None:
    """A notify socket that does not exist and a journal that is not there (JOURNAL_STREAM set,
    no journald) are not fatal: the service runs, feeds nobody, and stops cleanly."""
    bogus = {
        "NOTIFY_SOCKET": str(inst.root / "no-such-dir" / "notify"),
        "WATCHDOG_USEC": "100000",
        "JOURNAL_STREAM": "8:12345",
        "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
    }
    with Services(inst) as svc:
        radio = svc.start("radio", notify=False, env=bogus)  # ready: its control socket says so
        time.sleep(0.3)  # a few watchdog rounds into the void
        assert radio.status()["phase"] == "ready"
        radio.stop()


def test_ready_only_once_the_radio_service_answers(inst: Install) -> None:
    """The border router and group owner wait for the radio service: no READY before it."""
    with Services(inst) as svc:
        br = svc.start("border-router", wait=False)
        go = svc.start("group-owner", wait=False)
        for sp in (br, go):
            wait_until(lambda sp=sp: inst.control_socket(sp.service).exists(), 10, "control socket")
        time.sleep(0.5)
        for sp in (br, go):
            assert sp.notify_socket is not None
            lines = sp.notify_socket.assignments()
            assert "READY=1" not in lines
            assert "STATUS=waiting for the radio service" in lines
            st = sp.status()  # the control socket already answers (gwctl sees "starting")
            assert st["phase"] == "waiting for the radio service"
        assert not (inst.state_dir / "thread-network.json").exists()
        radio = svc.start("radio")
        br.wait_ready()
        go.wait_ready()
        for sp in (go, br, radio):
            sp.stop()


def test_clients_survive_kill9_of_the_radio_service(inst: Install) -> None:
    with Services(inst) as svc:
        procs = svc.start_all()
        procs["radio"].kill()
        radio = svc.start("radio")

        def back() -> bool:
            return all(
                procs[n].status()["radio_connected"] and procs[n].status()["radio_reconnects"] >= 1
                for n in ("border-router", "group-owner")
            )

        try:
            wait_until(back, 45, "clients to reconnect")  # a safety net: ~1-3 s when idle
        except AssertionError:
            for n in ("border-router", "group-owner", "radio"):
                sp = radio if n == "radio" else procs[n]
                print(n, json.dumps(sp.status(), default=str)[:3000], sp.stderr()[-3000:])
            raise
        assert radio.status()["clients"] == 2
        # the border router restored its channel on the new radio service
        br = procs["border-router"].status()
        assert radio.status()["radio"]["channel"] == br["thread"]["channel"]
        # a restart of one service did not remove another's sockets
        assert inst.control_socket("border-router").exists()
        for sp in (procs["group-owner"], procs["border-router"], radio):
            sp.stop()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "[radio]\ntx_power = 3\n",
            "unknown setting 'tx_power' in [radio]; did you mean 'tx_power_dbm'?",
        ),
        ("[radio\n", "is not valid TOML"),
    ],
)
def test_bad_config_exits_9_with_the_reason(inst: Install, config: str, message: str) -> None:
    inst.config.write_text(config)
    with Services(inst) as svc:
        procs = [svc.start(name, wait=False) for name in SERVICES]  # all three at once
        for sp in procs:
            rc = sp.wait(10)
            err = sp.stderr()
            assert rc == 9, err
            assert err.startswith(f"{sp.service}: ") and message in err
            assert "hint: " in err and "Traceback" not in err
            assert sp.notify_socket is not None
            assert "READY=1" not in sp.notify_socket.assignments()
    assert not inst.state_dir.exists() and not inst.runtime_dir.exists()


def test_bad_radio_url_exits_9(inst: Install) -> None:
    with Services(inst) as svc:
        sp = svc.start("radio", wait=False, env={"GATEWAY_RADIO_URL": "emulated:?node=99"})
        assert sp.wait(10) == 9
        err = sp.stderr()
        assert "node=99 is outside 1..33" in err and "Traceback" not in err


@pytest.mark.parametrize("service", ["border-router", "group-owner"])
def test_corrupt_network_state_stops_the_service(inst: Install, service: str) -> None:
    with running(inst, "radio", "border-router"):
        pass
    net = inst.state_dir / "thread-network.json"
    raw = bytearray(net.read_bytes())
    raw[raw.index(b'"active_dataset": "') + 25] ^= 0x01  # one flipped bit in the dataset
    net.write_bytes(bytes(raw))
    with Services(inst) as svc:
        svc.start("radio")
        sp = svc.start(service, wait=False)
        rc = sp.wait(15)
        err = sp.stderr()
        assert rc == 9, err
        assert f"{net} is corrupt (checksum mismatch)" in err
        assert "gwctl restore" in err  # the hint a technician can act on
        assert "Traceback" not in err
        assert sp.notify_socket is not None
        assert "READY=1" not in sp.notify_socket.assignments()
        assert "STOPPING=1" in sp.notify_socket.assignments()
    assert net.read_bytes() == bytes(raw)  # not replaced, not "repaired"


def test_corrupt_frame_counters_stop_the_radio_service(inst: Install) -> None:
    inst.state_dir.mkdir(parents=True)
    fc = inst.state_dir / "radio-frame-counters.json"
    fc.write_text('{"format": "gateway-frame-counters", "version": 1, "body": {"counters": {}}')
    with Services(inst) as svc:
        sp = svc.start("radio", wait=False)
        assert sp.wait(10) == 9
        err = sp.stderr()
        assert f"{fc} is corrupt (not JSON)" in err and "Traceback" not in err
    assert fc.read_text().endswith("{}}")
    assert not inst.radio_socket.exists()


def test_state_from_a_newer_release_is_refused(inst: Install) -> None:
    inst.state_dir.mkdir(parents=True)
    fc = inst.state_dir / "radio-frame-counters.json"
    fc.write_text('{"format": "gateway-frame-counters", "version": 99, "body": {}, "sha256": ""}')
    with Services(inst) as svc:
        sp = svc.start("radio", wait=False)
        assert sp.wait(10) == 9
        err = sp.stderr()
        assert "has version 99" in err and "upgrade the gateway software" in err


def test_help_prints_usage_and_creates_nothing(inst: Install) -> None:
    before = tree(inst.root)
    env = inst.environ(NOTIFY_SOCKET=str(inst.root / "no-such-notify"))
    runs = {
        (service, arg): subprocess.Popen(
            [sys.executable, "-m", MODULES[service], arg],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for service in SERVICES
        for arg in ("--help", "--version")
    }
    for (service, arg), proc in runs.items():
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        if arg == "--version":
            assert out.startswith(f"python -m {MODULES[service]} ")
        else:
            assert out.lower().startswith(f"usage: python -m {MODULES[service]}")
            assert "GATEWAY_CONFIG" in out and "GATEWAY_RADIO_URL" in out
        assert err == ""
    assert tree(inst.root) == before  # no state, no sockets, no logs


def test_unknown_argument_is_a_usage_error(inst: Install) -> None:
    runs = {
        service: subprocess.Popen(
            [sys.executable, "-m", MODULES[service], "--frobnicate"],
            env=inst.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for service in SERVICES
    }
    for proc in runs.values():
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2  # DESIGN §8: usage
        assert "No such option '--frobnicate'" in err
    assert not inst.state_dir.exists()


def test_sigint_and_sigterm_during_start(inst: Install) -> None:
    """A stop request while the border router still waits for the radio service: exit 0."""
    with Services(inst) as svc:
        br = svc.start("border-router", wait=False)
        wait_until(lambda: inst.control_socket("border-router").exists(), 10, "control socket")
        assert br.proc is not None
        br.proc.send_signal(signal.SIGINT)
        assert br.wait(10) == 0
        assert "Traceback" not in br.stderr()
        assert not inst.control_socket("border-router").exists()


def test_runtime_directories_are_per_service(inst: Install) -> None:
    with running(inst, "radio", "border-router", "group-owner"):
        for name in SERVICES:
            d = inst.runtime_dir / name
            assert d.is_dir()
            assert stat.S_IMODE(d.stat().st_mode) & 0o007 == 0  # nothing for other users
            sock = inst.control_socket(name)
            assert stat.S_ISSOCK(sock.stat().st_mode)
            # no 'gateway' group on the test machine: owner only (DESIGN §8)
            if os.system("getent group gateway >/dev/null") != 0:
                assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(inst.radio_socket.stat().st_mode) in (0o600, 0o660)


def _fork_as_nobody(inst: Install, cls: type[Service], log: Path) -> int:
    """Run a service in a forked child that dropped to nobody/nogroup (the interpreter lives in
    a directory nobody may not enter, so the child reuses this process's loaded modules)."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 2)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.environ.update(inst.environ())
            run_service(cls, [])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    return pid


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_services_run_as_an_unprivileged_user(inst: Install) -> None:
    """DESIGN §8: the services run under their own user, not only as root (here: nobody)."""
    # preload what the services import lazily, before the children lose access to it
    import pyroute2  # noqa: F401  (the uplink follower's netlink)
    import pyroute2.netlink.exceptions  # noqa: F401

    import drivers.emulator.backend  # noqa: F401

    try:
        import systemd.daemon  # noqa: F401
    except ImportError:
        pass
    # forked children share this network namespace: a port of its own for the border agent
    port = 20000 + inst.port_offset
    inst.config.write_text(f"[border_router]\nborder_agent_port = {port}\nadvertise_mdns = false\n")
    os.chown(inst.root, NOBODY, NOBODY)
    inst.root.chmod(0o755)
    log = inst.root / "nobody.log"
    pids: dict[str, int] = {}
    try:
        pids["radio"] = _fork_as_nobody(inst, RadioService, log)
        wait_until(inst.radio_socket.exists, 10, "the radio socket")
        for name, cls in (
            ("border-router", BorderRouterService),
            ("group-owner", GroupOwnerService),
        ):
            pids[name] = _fork_as_nobody(inst, cls, log)

        def ready(name: str) -> bool:
            try:
                with LineClient(inst.control_socket(name), timeout=1) as c:
                    return bool(c.result("status")["phase"] == "ready")
            except OSError:
                return False

        for name in SERVICES:
            wait_until(lambda name=name: ready(name), 15, f"{name} ready as nobody")
        for path in (
            inst.state_dir / "thread-network.json",
            inst.radio_socket,
            inst.control_socket("border-router"),
        ):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), path
            assert stat.S_IMODE(st.st_mode) == 0o600, path  # no 'gateway' group: owner only
        with LineClient(inst.control_socket("radio")) as c:
            assert c.result("status")["clients"] == 2  # the two other services, as nobody
    finally:
        codes = {}
        for name in reversed(list(pids)):
            os.kill(pids[name], signal.SIGTERM)
            _pid, status = os.waitpid(pids[name], 0)
            codes[name] = os.waitstatus_to_exitcode(status)
        text = log.read_text() if log.exists() else ""
    assert codes == dict.fromkeys(pids, 0), text
    assert "Traceback" not in text and "ERROR" not in text, text
