"""The three units under a real systemd: a Debian 12 container booted with systemd-nspawn
(tests/system/nspawn.py; --private-network, so the host's network is never touched), the gateway
installed in it by deploy/install.sh from a wheelhouse built from this tree, the radio service on
the emulated radio (GATEWAY_RADIO_URL through /etc/default/gateway; the simulated air is UDP
multicast on the container's own loopback).

Checked: all three reach READY; their sandboxes hold what they need and refuse the rest (a probe
run under a copy of each unit); a member of the gateway group may use the control sockets and
nobody else may; a hung service (SIGSTOP) is restarted by the watchdog; `kill -9` of the radio
service is survived by its clients, which reconnect; an explicit radio restart leaves them alone.

Root only (debootstrap, overlayfs, nspawn); skipped with the reason otherwise. The first run
builds and caches the rootfs (about 1.5 min on 2 cores); later runs reuse it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system import nspawn

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = nspawn.REPO
SERVICES = ("radio", "border-router", "group-owner")
UNITS = {svc: f"gateway-{svc}.service" for svc in SERVICES}
RADIO_URL = "emulated:?node=1&port_offset=7"
VENV_PY = "/opt/gateway/venv/bin/python"
TEST_DIR = "/usr/local/share/gateway-test"
MAX_EXPOSURE = 2.5
# Shorter than shipped so the test is quick; a drop-in, as an administrator would write one.
WATCHDOG_S = 5
DROP_INS = {
    "radio": "[Service]\nRestartSec=1s\n",
    "border-router": "[Service]\nRestartSec=1s\n",
    "group-owner": f"[Service]\nRestartSec=1s\nWatchdogSec={WATCHDOG_S}s\n",
}

# A JSON-lines client written from the protocol (docs/sockets.md, v1): one request, one reply.
CTL_PY = """\
import json, socket, sys
svc, method = sys.argv[1], sys.argv[2]
path = sys.argv[3] if len(sys.argv) > 3 else f"/run/gateway/{svc}/control.sock"
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(path)
    s.sendall(json.dumps({"v": 1, "id": 1, "method": method, "params": {}}).encode() + b"\\n")
    buf = b""
    while not buf.endswith(b"\\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    print(buf.decode().strip() or json.dumps({"closed": True}))
except OSError as exc:
    print(json.dumps({"os_error": exc.__class__.__name__}))
"""


def probe_unit(unit_text: str, svc: str) -> str:
    """The service's own unit, sandbox untouched, running the probe instead of the service."""
    out = []
    for line in unit_text.splitlines():
        key = line.split("=", 1)[0]
        if line.strip() == "[Install]":
            break
        if key in ("Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec"):
            continue
        if key == "RestartPreventExitStatus":
            continue
        if key == "ExecStart":
            line = f"ExecStart={VENV_PY} {TEST_DIR}/sandbox_probe.py"
        if key == "RuntimeDirectory":
            line = f"RuntimeDirectory=gateway/probe-{svc}"  # never the service's own
        out.append(line)
    out.insert(out.index("[Service]") + 1, "Type=exec")
    return "\n".join(out) + "\n"


class System:
    def __init__(self, ct: nspawn.Container, install_log: str, timings: dict[str, float]):
        self.ct = ct
        self.install_log = install_log
        self.timings = timings

    def show(self, svc: str, *props: str) -> dict[str, str]:
        return self.ct.show(UNITS[svc], *props)

    def control(self, svc: str, method: str = "status", user: str | None = None) -> Any:
        out = self.ct.run(VENV_PY, f"{TEST_DIR}/ctl.py", svc, method, user=user).stdout
        return json.loads(out)

    def status(self, svc: str) -> dict[str, Any]:
        reply = self.control(svc)
        assert "result" in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    def main_pid(self, svc: str) -> int:
        return int(self.show(svc, "MainPID")["MainPID"])

    def journal(self, svc: str) -> str:
        return self.ct.run("journalctl", "-u", UNITS[svc], "--no-pager", "-o", "cat").stdout

    def wait(self, what: str, cond: Callable[[], bool], timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if cond():
                return time.monotonic() - t0
            time.sleep(0.1)
        logs = "\n".join(f"--- {s}\n{self.journal(s)[-1500:]}" for s in SERVICES)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")

    def running(self, svc: str) -> bool:
        p = self.show(svc, "ActiveState", "SubState")
        return (p["ActiveState"], p["SubState"]) == ("active", "running")


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    return nspawn.shared_wheelhouse()


@pytest.fixture(scope="module")
def system(wheelhouse: Path) -> Iterator[System]:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    rootfs = nspawn.ensure_rootfs()
    timings["rootfs"] = time.monotonic() - t0
    overlay = nspawn.Overlay(rootfs)
    try:
        for svc, text in DROP_INS.items():
            d = overlay.path(f"/etc/systemd/system/{UNITS[svc]}.d")
            d.mkdir(parents=True)
            (d / "50-test.conf").write_text(text)
            probe = overlay.path(f"/etc/systemd/system/gateway-probe-{svc}.service")
            probe.write_text(probe_unit((REPO / "systemd" / UNITS[svc]).read_text(), svc))
        test_dir = overlay.path(TEST_DIR)
        test_dir.mkdir(parents=True)
        (test_dir / "ctl.py").write_text(CTL_PY)
        (test_dir / "sandbox_probe.py").write_text(
            (Path(__file__).parent / "sandbox_probe.py").read_text()
        )
        t1 = time.monotonic()
        binds = [(REPO, "/run/gateway-src"), (wheelhouse, "/run/gateway-wheelhouse")]
        with nspawn.booted(overlay, binds) as ct:
            timings["boot"] = time.monotonic() - t1
            # udev's default rules make /dev/net/tun 0666; the container's copy is 0600
            ct.run("chmod", "0666", "/dev/net/tun")
            t2 = time.monotonic()
            proc = ct.run(
                "/run/gateway-src/deploy/install.sh",
                "--wheelhouse",
                "/run/gateway-wheelhouse",
                "--radio-url",
                RADIO_URL,
                check=False,
                timeout=300,
            )
            timings["install_and_start"] = time.monotonic() - t2
            assert proc.returncode == 0, f"install.sh:\n{proc.stdout[-5000:]}\n{proc.stderr}"
            yield System(ct, proc.stdout, timings)
            t3 = time.monotonic()
        timings["poweroff"] = time.monotonic() - t3
        print(f"\nnspawn timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    finally:
        overlay.close()
    # nothing left behind: no process in the container's root, no mount
    assert nspawn.processes_in(overlay.merged) == []
    assert not overlay.mounted()
    assert not overlay.base.exists()


# ---- up and ready ------------------------------------------------------------------------------


def test_installer_enabled_and_started_the_units(system: System) -> None:
    log = system.install_log
    assert re.search(r"(started|restarted) +gateway-radio.service", log), log
    assert re.search(r"install: \d+ changed, \d+ skipped, 0 failed", log)
    for unit in UNITS.values():
        assert system.ct.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"


def test_all_three_reach_ready_on_the_emulated_radio(system: System) -> None:
    for svc in SERVICES:
        props = system.show(svc, "ActiveState", "SubState", "StatusText", "NRestarts", "Result")
        assert props["ActiveState"] == "active", (svc, props)
        assert props["SubState"] == "running", (svc, props)
        assert props["StatusText"].startswith("ready"), (svc, props)
        assert props["NRestarts"] == "0", (svc, props)
        status = system.status(svc)
        assert status["service"] == svc
        assert status["phase"] == "ready"
        assert status["pid"] == system.main_pid(svc)
    radio = system.status("radio")
    assert radio["radio"]["backend"] == "emulated"
    assert radio["radio"]["url"] == RADIO_URL
    for svc in ("border-router", "group-owner"):
        assert system.status(svc)["radio_connected"] is True
    state = system.ct.run("systemctl", "is-system-running", check=False).stdout.strip()
    failed = system.ct.run("systemctl", "--failed", "--plain", "--no-legend").stdout
    assert state == "running", failed


def test_gwctl_status_reports_the_services(system: System) -> None:
    proc = system.ct.run("gwctl", "status", "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert set(doc["services"]) == set(SERVICES), doc["not_running"]
    assert all(s["phase"] == "ready" for s in doc["services"].values())


def test_directories_and_sockets(system: System) -> None:
    def stat(path: str) -> str:
        return system.ct.run("stat", "-c", "%a %U %G", path).stdout.strip()

    assert stat("/var/lib/gateway") == "750 gateway gateway"
    assert stat("/etc/gateway") == "755 root root"
    for svc in SERVICES:
        # the radio's: gateway-radio members pass through to radio.sock
        mode = "751" if svc == "radio" else "750"
        assert stat(f"/run/gateway/{svc}") == f"{mode} gateway gateway"
        assert stat(f"/run/gateway/{svc}/control.sock") == "660 gateway gateway"
    assert stat("/run/gateway/radio/radio.sock") == "660 gateway gateway-radio"
    assert stat("/var/lib/gateway-factory") == "750 root gateway"
    files = system.ct.run("find", "/var/lib/gateway", "-type", "f", "-printf", "%m %u %p\n")
    modes = {}
    for line in files.stdout.splitlines():
        mode, owner, path = line.split(" ", 2)
        assert owner == "gateway", line
        assert int(mode, 8) & 0o022 == 0, line  # nobody else may write
        modes[path] = mode
    assert modes.get("/var/lib/gateway/thread-network.json") == "600"  # holds the network key


def test_installed_units_verify_and_rate_as_shipped(system: System) -> None:
    """On the box, with the interpreter present and the drop-ins loaded: nothing to report."""
    proc = system.ct.run("systemd-analyze", "verify", *UNITS.values(), check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")
    for unit in UNITS.values():
        out = system.ct.run("systemd-analyze", "security", "--no-pager", unit).stdout
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
        assert m, out
        assert float(m.group(1)) <= MAX_EXPOSURE, (unit, m.group(1))


def test_installer_rerun_leaves_running_services_alone(system: System) -> None:
    pids = {svc: system.main_pid(svc) for svc in SERVICES}
    proc = system.ct.run(
        "/run/gateway-src/deploy/install.sh",
        "--wheelhouse",
        "/run/gateway-wheelhouse",
        "--radio-url",
        RADIO_URL,
        timeout=300,
    )
    assert "install: 0 changed" in proc.stdout, proc.stdout
    assert re.search(r"unchanged +services +running", proc.stdout)
    assert {svc: system.main_pid(svc) for svc in SERVICES} == pids


# ---- confinement -------------------------------------------------------------------------------


def proc_status(system: System, pid: int) -> dict[str, str]:
    text = system.ct.run("cat", f"/proc/{pid}/status").stdout
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


@pytest.mark.parametrize(
    ("svc", "cap_eff"),
    [("radio", 0), ("border-router", (1 << 12) | (1 << 13)), ("group-owner", 0)],
)
def test_service_process_is_confined(system: System, svc: str, cap_eff: int) -> None:
    st = proc_status(system, system.main_pid(svc))
    uid = system.ct.run("id", "-u", "gateway").stdout.strip()
    assert st["Uid"].split()[0] == uid  # real uid
    assert int(st["CapEff"], 16) == cap_eff  # CAP_NET_ADMIN=12, CAP_NET_RAW=13
    assert int(st["CapBnd"], 16) == cap_eff
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"


def run_probe(system: System, svc: str) -> dict[str, Any]:
    unit = f"gateway-probe-{svc}.service"
    system.ct.run("systemctl", "start", unit)
    system.wait(
        f"{unit} to finish",
        lambda: system.ct.show(unit, "ActiveState")["ActiveState"] in ("inactive", "failed"),
        timeout=30,
    )
    props = system.ct.show(unit, "Result", "ExecMainStatus")
    log = system.ct.run("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout
    assert props == {"Result": "success", "ExecMainStatus": "0"}, log
    line = [ln for ln in log.splitlines() if ln.startswith("PROBE ")][-1]
    report: dict[str, Any] = json.loads(line[len("PROBE ") :])
    return report


def cgroup_v2(system: System) -> bool:
    out = system.ct.run("stat", "-f", "-c", "%T", "/sys/fs/cgroup").stdout.strip()
    return out == "cgroup2fs"


def test_radio_sandbox(system: System) -> None:
    r = run_probe(system, "radio")
    assert r["user"] == "gateway"
    assert r["cap_eff"] == "0000000000000000"
    assert (r["no_new_privs"], r["seccomp"]) == ("1", "2")
    assert r["write_etc"] == "EROFS"
    assert r["write_state"] == "ok"
    assert r["wx_mapping"] == "EPERM"  # MemoryDenyWriteExecute
    assert r["multicast"] == "ok"  # the simulated air
    for fam in ("af_inet6", "af_netlink", "af_packet", "raw_icmpv6"):
        assert r[fam] == "EAFNOSUPPORT", fam
    if cgroup_v2(system):  # device and IP ACLs are cgroup-v2 BPF programs
        assert r["open_tun"] == "EPERM"  # DevicePolicy=closed: not its device
        assert r["multicast_other_group"] == "EPERM"  # IPAddressAllow: only the air's group


def test_border_router_sandbox(system: System) -> None:
    r = run_probe(system, "border-router")
    assert r["user"] == "gateway"
    assert int(r["cap_eff"], 16) == (1 << 12) | (1 << 13)
    assert r["write_etc"] == "EROFS"
    assert r["wx_mapping"] == "EPERM"
    assert r["tun"] == "ok"  # DeviceAllow=/dev/net/tun and CAP_NET_ADMIN
    assert r["netlink_dump"] == "ok"
    assert r["raw_icmpv6"] == "ok"  # CAP_NET_RAW
    assert r["af_packet"] == "EAFNOSUPPORT"
    assert r["crypto"] == "ok"  # DTLS and EC-JPAKE need these under MemoryDenyWriteExecute
    assert r["fastecdsa"] == "ok"
    assert r["ctypes_callback"] == "ok"
    assert r["multicast_other_group"] == "ok"


def test_group_owner_sandbox(system: System) -> None:
    r = run_probe(system, "group-owner")
    assert r["user"] == "gateway"
    assert r["cap_eff"] == "0000000000000000"
    assert r["write_etc"] == "EROFS"
    assert r["write_state"] == "ok"
    assert r["wx_mapping"] == "EPERM"
    assert r["crypto"] == "ok"
    assert r["fastecdsa"] == "ok"
    assert r["open_tun"] == "ENOENT"  # PrivateDevices: no such node at all
    assert r["raw_icmpv6"] == "EPERM"  # no CAP_NET_RAW
    assert r["af_inet6"] == "ok"
    assert r["af_packet"] == "EAFNOSUPPORT"


def test_no_dependency_needs_writable_executable_memory(wheelhouse: Path) -> None:
    """MemoryDenyWriteExecute=yes breaks cffi's old-style ``ffi.callback()`` (the probe sees
    MemoryError for it); nothing the gateway installs may rely on it."""
    offenders = []
    for whl in wheelhouse.glob("*.whl"):
        if whl.name.startswith("cffi-"):
            continue
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if name.endswith(".py") and b"ffi.callback(" in z.read(name):
                    offenders.append(f"{whl.name}:{name}")
    assert offenders == [], "drop MemoryDenyWriteExecute for the unit importing these"


def test_control_sockets_admit_the_gateway_group_only(system: System) -> None:
    system.ct.run("useradd", "--no-create-home", "--groups", "gateway", "technician")
    system.ct.run("useradd", "--no-create-home", "stranger")
    for svc in SERVICES:
        assert system.control(svc, "ping", user="technician").get("result") == {"pong": True}
        refused = system.control(svc, "ping", user="stranger")
        assert refused == {"os_error": "PermissionError"}, refused
        assert system.control(svc, "ping").get("result") == {"pong": True}  # root


def test_the_radio_socket_needs_the_radio_group(system: System) -> None:
    """Administration ('gateway') does not open the radio socket, which sees every frame and can
    transmit: that takes 'gateway-radio'."""
    system.ct.run("useradd", "--no-create-home", "--groups", "gateway", "admin-only")
    system.ct.run("useradd", "--no-create-home", "--groups", "gateway-radio", "radio-tech")
    sock = "/run/gateway/radio/radio.sock"

    def call(user: str | None) -> dict[str, Any]:
        out = system.ct.run(VENV_PY, f"{TEST_DIR}/ctl.py", "radio", "status", sock, user=user)
        return dict(json.loads(out.stdout))

    assert call("admin-only") == {"os_error": "PermissionError"}
    assert "result" in call("radio-tech") and "result" in call(None)
    rules = system.ct.run("cat", "/etc/udev/rules.d/60-gateway.rules").stdout
    assert 'GROUP="gateway-radio"' in rules and 'GROUP="gateway"' not in rules


# ---- failures ----------------------------------------------------------------------------------


def test_border_routing_comes_up_under_the_unit(system: System) -> None:
    """With [border_router] infra_interface set (a dummy LAN interface in the container), the
    border router under its real unit creates wpan0, installs its forwarding table and sends
    Router Advertisements; the sysctls come from the installed sysctl.d file (the unit cannot
    write /proc/sys)."""
    ct = system.ct
    # a veth pair stands for the LAN; the container cannot load the veth module, so a pair made
    # (and deleted) in a throwaway namespace of the host loads it first
    ns = f"gwveth-{os.getpid()}"
    for cmd in (["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "add", "a", "type", "veth",
                "peer", "name", "b"], ["ip", "netns", "del", ns]):  # fmt: skip
        subprocess.run(cmd, capture_output=True, check=False, timeout=30)
    ct.run("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lanpeer")
    for dev in ("lan0", "lanpeer"):
        ct.run("ip", "link", "set", dev, "up")
    ct.run("gwctl", "config", "set", "border_router.infra_interface", "lan0")
    ct.run("systemctl", "restart", UNITS["border-router"], timeout=120)

    def prefixes() -> dict[str, Any]:
        out = ct.run("gwctl", "thread", "prefixes", "--json", check=False).stdout
        try:
            doc: dict[str, Any] = json.loads(out)
        except ValueError:
            return {}
        return doc

    system.wait("border routing on lan0", lambda: prefixes().get("ras_sent", 0) >= 1, 90)
    doc = prefixes()
    assert doc["enabled"] and doc["lan_interface"] == "lan0" and doc["problems"] == [], doc
    assert doc["omr"]["state"] == "added", doc
    link = ct.run("ip", "-o", "link", "show", "wpan0").stdout
    assert "mtu 1280" in link and "UP" in link, link
    addrs = ct.run("ip", "-6", "-o", "addr", "show", "dev", "wpan0").stdout
    assert doc["omr"]["local"].split("::")[0] in addrs, addrs
    assert "gateway_border_router" in ct.run("nft", "list", "tables").stdout
    # back as shipped: no border routing, and the interface and table go with it
    ct.run("gwctl", "config", "set", "border_router.infra_interface", "")
    ct.run("systemctl", "restart", UNITS["border-router"], timeout=120)
    system.wait("the border router ready", lambda: system.running("border-router")
                and system.status("border-router").get("phase") == "ready", 60)  # fmt: skip
    assert ct.run("ip", "link", "show", "wpan0", check=False).returncode != 0
    assert "gateway_border_router" not in ct.run("nft", "list", "tables").stdout
    ct.run("ip", "link", "del", "lan0")


def test_watchdog_restarts_a_hung_service(system: System) -> None:
    others = {svc: system.main_pid(svc) for svc in ("radio", "border-router")}
    before = system.show("group-owner", "MainPID", "NRestarts")
    pid = int(before["MainPID"])
    host_pid = system.ct.host_pid(pid)
    t0 = time.monotonic()
    os.kill(host_pid, signal.SIGSTOP)  # alive but silent: only the watchdog can tell
    try:

        def restarted() -> bool:
            p = system.show("group-owner", "MainPID", "NRestarts", "ActiveState", "SubState")
            return (
                int(p["NRestarts"]) == int(before["NRestarts"]) + 1
                and int(p["MainPID"]) not in (0, pid)
                and (p["ActiveState"], p["SubState"]) == ("active", "running")
            )

        system.wait("the watchdog restart", restarted, timeout=WATCHDOG_S + 20)
    finally:
        if os.path.exists(f"/proc/{host_pid}"):
            os.kill(host_pid, signal.SIGCONT)
    elapsed = time.monotonic() - t0
    print(f"\nwatchdog: SIGSTOP to READY again in {elapsed:.1f} s (WatchdogSec={WATCHDOG_S}s)")
    assert "Watchdog timeout" in system.ct.run("journalctl", "--no-pager", "-b").stdout
    assert system.status("group-owner")["phase"] == "ready"
    assert {svc: system.main_pid(svc) for svc in others} == others


def test_kill_9_of_the_radio_is_survived_by_its_clients(system: System) -> None:
    clients = ("border-router", "group-owner")
    pids = {svc: system.main_pid(svc) for svc in clients}
    restarts = {svc: system.show(svc, "NRestarts")["NRestarts"] for svc in clients}
    reconnects = {svc: int(system.status(svc)["radio_reconnects"]) for svc in clients}
    radio_before = system.show("radio", "MainPID", "NRestarts")
    t0 = time.monotonic()
    os.kill(system.ct.host_pid(int(radio_before["MainPID"])), signal.SIGKILL)

    def radio_back() -> bool:
        for svc in clients:  # never stopped meanwhile
            assert system.running(svc), f"{svc} went down with the radio"
        p = system.show("radio", "MainPID", "NRestarts", "ActiveState", "SubState")
        return (
            int(p["NRestarts"]) == int(radio_before["NRestarts"]) + 1
            and (p["ActiveState"], p["SubState"]) == ("active", "running")
            and int(p["MainPID"]) != int(radio_before["MainPID"])
        )

    system.wait("the radio service to come back", radio_back, timeout=30)
    radio_s = time.monotonic() - t0

    def reconnected() -> bool:
        return all(
            system.status(svc)["radio_connected"] is True
            and system.status(svc)["radio_reconnects"] >= reconnects[svc] + 1
            for svc in clients
        )

    system.wait("the clients to reconnect", reconnected, timeout=30)
    print(f"\nkill -9 radio: back in {radio_s:.1f} s, clients in {time.monotonic() - t0:.1f} s")
    for svc in clients:
        assert system.main_pid(svc) == pids[svc], f"{svc} was restarted"
        assert system.show(svc, "NRestarts")["NRestarts"] == restarts[svc]
        assert system.status(svc)["radio_reconnects"] >= 1
    assert "status=9/KILL" in system.journal("radio")


def test_explicit_radio_restart_leaves_the_clients_running(system: System) -> None:
    clients = ("border-router", "group-owner")
    pids = {svc: system.main_pid(svc) for svc in clients}
    system.ct.run("systemctl", "restart", UNITS["radio"])
    assert system.running("radio")
    for svc in clients:
        assert system.main_pid(svc) == pids[svc]
    system.wait(
        "the clients to reconnect",
        lambda: all(system.status(svc)["radio_connected"] is True for svc in clients),
        timeout=30,
    )


def test_stop_is_clean(system: System) -> None:
    """SIGTERM: each service stops with exit 0 well within TimeoutStopSec."""
    for svc in reversed(SERVICES):
        t0 = time.monotonic()
        system.ct.run("systemctl", "stop", UNITS[svc], timeout=60)
        props = system.show(svc, "Result", "ExecMainStatus", "ActiveState")
        assert props == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}
        assert time.monotonic() - t0 < 10
    # a stopped service's runtime directory is gone, the others' are not touched by it
    assert system.ct.run("ls", "/run/gateway").stdout.split() == []


def gateway_processes(system: System) -> list[int]:
    """PIDs of `python -m gateway.*` processes in the container (minbase has no ps)."""
    code = (
        "import json, pathlib; print(json.dumps([int(p.parent.name) for p in"
        " pathlib.Path('/proc').glob('[0-9]*/cmdline') if b'-m\\x00gateway.' in p.read_bytes()]))"
    )
    pids: list[int] = json.loads(system.ct.run("python3", "-c", code).stdout)
    return pids


def test_uninstall_under_systemd_keeps_state_then_purges(system: System) -> None:
    system.ct.run("systemctl", "start", *UNITS.values(), timeout=120)
    assert all(system.running(svc) for svc in SERVICES)
    assert len(gateway_processes(system)) == 3
    out = system.ct.run("/run/gateway-src/deploy/uninstall.sh", timeout=120).stdout
    assert re.search(r"stopped +gateway-radio.service", out), out
    for unit in UNITS.values():
        state = system.ct.run("systemctl", "is-active", unit, check=False).stdout.strip()
        assert state in ("inactive", "unknown"), (unit, state)
        assert system.ct.run("systemctl", "cat", unit, check=False).returncode != 0
    assert gateway_processes(system) == []
    kept = system.ct.run("ls", "/var/lib/gateway").stdout.split()
    assert "thread-network.json" in kept
    assert system.ct.run("test", "-f", "/etc/gateway/gateway.toml", check=False).returncode == 0
    assert system.ct.run("test", "-e", "/opt/gateway", check=False).returncode != 0

    system.ct.run("/run/gateway-src/deploy/uninstall.sh", "--purge", timeout=120)
    for path in ("/var/lib/gateway", "/etc/gateway", "/etc/default/gateway"):
        assert system.ct.run("test", "-e", path, check=False).returncode != 0, path
    assert system.ct.run("getent", "passwd", "gateway", check=False).returncode != 0
