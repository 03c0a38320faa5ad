"""The systemd units, checked offline: `systemd-analyze verify` has nothing to say about them,
`systemd-analyze security` rates each at an exposure of 2.5 or lower, and each carries the
properties DESIGN §5 and issue 4 ask for. No root and no running systemd needed (only the
systemd-analyze binary; reference/environment.md §6). test_nspawn.py runs them for real."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.runtime.paths import SERVICES, Paths

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
INTERPRETER = "/opt/gateway/venv/bin/python"
MODULES = {"radio": "radio", "border-router": "border_router", "group-owner": "group_owner"}
UNITS = {svc: f"gateway-{svc}.service" for svc in MODULES}
MAX_EXPOSURE = 2.5

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every assignment in order (systemd allows repeated keys)."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines, "").strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"assignment outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line}"
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def unit(svc: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((SYSTEMD_DIR / UNITS[svc]).read_text())


def one(u: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = u.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one assignment, got {values}"
    return values[0]


def words(u: dict[str, dict[str, list[str]]], section: str, key: str) -> set[str]:
    return {w for v in u.get(section, {}).get(key, []) for w in v.split()}


def unexpected_output(output: str, allowed: set[str]) -> list[str]:
    """Lines of systemd-analyze output other than the allowed ones. Unknown keys and bad values
    only warn (exit status 0), so any line at all is a finding."""
    return [line for line in output.splitlines() if line.strip() and line.strip() not in allowed]


def verify(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def interpreter_absent_lines(names: list[str]) -> set[str]:
    if Path(INTERPRETER).exists():
        return set()
    return {
        f"{n}: Command {INTERPRETER} is not executable: No such file or directory" for n in names
    }


# ---- systemd-analyze verify --------------------------------------------------------------------


def test_verify_reports_nothing_but_the_absent_interpreter() -> None:
    names = list(UNITS.values())
    proc = verify(*[str(SYSTEMD_DIR / n) for n in names])
    extra = unexpected_output(proc.stdout + proc.stderr, interpreter_absent_lines(names))
    assert extra == [], "systemd-analyze verify:\n" + "\n".join(extra)


def _image_with_units(tmp_path: Path, units: dict[str, str]) -> Path:
    """A root with the host's system units, ours where the installer puts them, and a stand-in
    for the venv's interpreter."""
    root = tmp_path / "root"
    for d in ("usr/lib/systemd/system", "lib/systemd/system"):
        host = Path("/") / d
        if host.is_dir() and not host.is_symlink() and not (root / d).exists():
            shutil.copytree(host, root / d, symlinks=True)
    dest = root / "usr/local/lib/systemd/system"
    dest.mkdir(parents=True)
    for name, text in units.items():
        (dest / name).write_text(text)
    python = root / INTERPRETER.lstrip("/")
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return root


def test_verify_installed_units_with_their_interpreter_is_silent(tmp_path: Path) -> None:
    texts = {n: (SYSTEMD_DIR / n).read_text() for n in UNITS.values()}
    root = _image_with_units(tmp_path, texts)
    proc = verify(f"--root={root}", *texts)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_verify_check_catches_warnings(tmp_path: Path) -> None:
    """Negative control: a misspelt key and a bad value only warn, and the check still fails."""
    name = UNITS["radio"]
    text = (SYSTEMD_DIR / name).read_text()
    bad = text.replace("WatchdogSec=", "WatchDogSec=").replace(
        "ProtectSystem=strict", "ProtectSystem=strictt"
    )
    assert bad != text
    root = _image_with_units(tmp_path, {name: bad})
    proc = verify(f"--root={root}", name)
    extra = unexpected_output(proc.stdout + proc.stderr, set())
    assert any("WatchDogSec" in line for line in extra), extra
    assert any("strictt" in line for line in extra), extra


# ---- systemd-analyze security ------------------------------------------------------------------


def exposure(path: Path) -> tuple[float, int]:
    proc = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1)), proc.returncode


@pytest.mark.parametrize("svc", sorted(UNITS))
def test_security_exposure(svc: str) -> None:
    level, rc = exposure(SYSTEMD_DIR / UNITS[svc])
    assert level <= MAX_EXPOSURE, f"{UNITS[svc]}: exposure {level}"
    assert rc == 0


def test_security_check_can_fail(tmp_path: Path) -> None:
    """Negative control: the same unit without its sandbox is rated far above the limit."""
    bare = tmp_path / "gateway-bare.service"
    bare.write_text(f"[Service]\nType=notify\nExecStart={INTERPRETER} -m gateway.radio\n")
    level, rc = exposure(bare)
    assert level > MAX_EXPOSURE
    assert rc != 0


# ---- what each unit must say -------------------------------------------------------------------


@pytest.mark.parametrize("svc", sorted(UNITS))
def test_supervision(svc: str) -> None:
    u = unit(svc)
    assert one(u, "Service", "Type") == "notify"
    assert one(u, "Service", "NotifyAccess") == "main"
    assert re.fullmatch(r"\d+s", one(u, "Service", "WatchdogSec"))
    assert int(one(u, "Service", "WatchdogSec")[:-1]) >= 5
    assert one(u, "Service", "Restart") == "on-failure"
    assert one(u, "Service", "RestartSec")
    assert one(u, "Unit", "StartLimitIntervalSec")
    assert int(one(u, "Unit", "StartLimitBurst")) >= 3
    assert one(u, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("svc", sorted(UNITS))
def test_runs_the_module_from_the_venv(svc: str) -> None:
    u = unit(svc)
    module = f"gateway.{MODULES[svc]}"
    assert one(u, "Service", "ExecStart") == f"{INTERPRETER} -m {module}"
    assert importlib.util.find_spec(f"{module}.__main__") is not None
    assert one(u, "Service", "EnvironmentFile") == "-/etc/default/gateway"


@pytest.mark.parametrize("svc", sorted(UNITS))
def test_identity_and_directories(svc: str) -> None:
    u = unit(svc)
    assert one(u, "Service", "User") == "gateway"
    assert one(u, "Service", "Group") == "gateway"
    assert "DynamicUser" not in u["Service"]
    assert one(u, "Service", "UMask") in ("0077", "0027")
    assert one(u, "Service", "StateDirectory") == "gateway"
    assert one(u, "Service", "ConfigurationDirectory") == "gateway"
    # each service its own runtime subdirectory, where the code looks for its sockets
    assert svc in SERVICES
    runtime = one(u, "Service", "RuntimeDirectory")
    assert runtime == f"gateway/{svc}"
    paths = Paths(config=Path("/etc/gateway/gateway.toml"), state_dir=Path("/var/lib/gateway"),
                  runtime_dir=Path("/run/gateway"))  # fmt: skip
    assert Path("/run") / runtime == paths.service_runtime(svc)
    assert u["Service"].get("RuntimeDirectoryPreserve", ["no"]) == ["no"]


def test_shared_directories_agree() -> None:
    """The three units share /var/lib/gateway and /etc/gateway: the same modes, or each start
    would change them back and forth. (Each runtime directory is the unit's own, /run/gateway/<svc>;
    the radio's is 0751 so that gateway-radio members reach radio.sock.)"""
    for key in ("StateDirectoryMode", "ConfigurationDirectoryMode"):
        modes = {one(unit(svc), "Service", key) for svc in UNITS}
        assert len(modes) == 1, f"{key} differs: {modes}"
    runtimes = {one(unit(svc), "Service", "RuntimeDirectory") for svc in UNITS}
    assert len(runtimes) == len(UNITS)
    # the group may enter the runtime directories (sockets are 0660 group gateway)
    assert one(unit("radio"), "Service", "RuntimeDirectoryMode") == "0751"


def test_radio_clients_order_after_radio_but_survive_its_restart() -> None:
    radio = unit("radio")
    for key in ("Wants", "Requires", "BindsTo", "PartOf", "After"):
        assert not any("gateway-" in v for v in radio.get("Unit", {}).get(key, []))
    for svc in ("border-router", "group-owner"):
        u = unit(svc)
        assert "gateway-radio.service" in words(u, "Unit", "Wants")
        assert "gateway-radio.service" in words(u, "Unit", "After")
        for key in ("Requires", "BindsTo", "PartOf", "Requisite"):
            assert "gateway-radio.service" not in words(u, "Unit", key), key


@pytest.mark.parametrize("svc", sorted(UNITS))
def test_no_condition_on_the_radio_device(svc: str) -> None:
    u = unit(svc)
    conditions = [k for k in u["Unit"] if k.startswith(("Condition", "Assert"))]
    assert conditions == []


@pytest.mark.parametrize("svc", sorted(UNITS))
def test_common_sandbox(svc: str) -> None:
    u = unit(svc)
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "RestrictNamespaces": "yes",
        "SystemCallArchitectures": "native",
        "ProcSubset": "pid",
    }
    for key, value in expected.items():
        assert one(u, "Service", key) == value, key
    assert u["Service"]["SystemCallFilter"][0] == "@system-service"
    assert words(u, "Service", "SystemCallFilter") >= {"@system-service", "~@privileged"}


def test_devices_capabilities_and_address_families() -> None:
    radio, br, go = unit("radio"), unit("border-router"), unit("group-owner")

    assert one(radio, "Service", "DevicePolicy") == "closed"
    assert radio["Service"]["DeviceAllow"] == [
        "char-spi rw",
        "char-gpiochip rw",
        "char-ttyACM rw",
        "char-ttyUSB rw",
    ]
    assert one(br, "Service", "DevicePolicy") == "closed"
    assert br["Service"]["DeviceAllow"] == ["/dev/net/tun rw"]
    assert one(go, "Service", "PrivateDevices") == "yes"
    assert "DeviceAllow" not in go["Service"]

    for u in (radio, go):
        assert words(u, "Service", "CapabilityBoundingSet") == set()
        assert words(u, "Service", "AmbientCapabilities") == set()
    assert one(go, "Service", "PrivateUsers") == "yes"
    # the radio service hands its socket to the group gateway-radio, which a private user
    # namespace would not map
    assert one(radio, "Service", "PrivateUsers") == "no"
    assert "gateway-radio" in words(radio, "Service", "SupplementaryGroups")
    caps = {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert words(br, "Service", "CapabilityBoundingSet") == caps
    assert words(br, "Service", "AmbientCapabilities") == caps
    # capabilities held in a user namespace would not reach the host's network
    assert "PrivateUsers" not in br["Service"]

    assert words(radio, "Service", "RestrictAddressFamilies") == {"AF_UNIX", "AF_INET"}
    for u in (br, go):
        assert words(u, "Service", "RestrictAddressFamilies") == {
            "AF_UNIX",
            "AF_INET",
            "AF_INET6",
            "AF_NETLINK",
        }
    # the radio talks to nothing but the loopback and the simulated air's multicast group
    assert words(radio, "Service", "IPAddressDeny") == {"any"}
    assert words(radio, "Service", "IPAddressAllow") == {"localhost", "224.0.0.116"}
