"""deploy/install.sh and deploy/uninstall.sh.

Without root: the scripts parse, refuse bad arguments, the config.txt rewrite (deploy/pi-config.awk)
does what docs/install.md says and is idempotent, and the configuration template documents the
real defaults.

As root: the installer runs for real in a throwaway Debian 12 image (an overlay on the cached
debootstrap rootfs of tests/system/nspawn.py, entered with `install.sh --root`, i.e. through
systemd-nspawn), offline from a wheelhouse built from this tree. A second run changes no file at
all; an updated wheel is picked up; the uninstaller keeps state, configuration and the user,
and --purge removes them. Reinstalled on a Raspberry Pi-like image (config.txt, spi and gpio groups),
it turns SPI on and the kernel's at86rf233 overlay off. test_nspawn.py boots an image and runs the services.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.runtime.settings import Settings, parse_settings
from tests.system import nspawn

REPO = nspawn.REPO
DEPLOY = REPO / "deploy"
INSTALL = DEPLOY / "install.sh"
UNINSTALL = DEPLOY / "uninstall.sh"
UNITS = ("gateway-radio.service", "gateway-border-router.service", "gateway-group-owner.service")
UNIT_DIR = "usr/local/lib/systemd/system"
URL1 = "emulated:?node=1&port_offset=3"
URL2 = "emulated:?node=2&port_offset=5&airtime=0"
SCRIPTS = ("install.sh", "uninstall.sh", "build-wheelhouse.sh")


def sh(*argv: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# ---- without root --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["install.sh", "uninstall.sh", "build-wheelhouse.sh"])
def test_scripts_parse_and_have_help(script: str) -> None:
    path = DEPLOY / script
    assert os.access(path, os.X_OK)
    assert sh("bash", "-n", path).returncode == 0
    proc = sh(path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    proc = sh("shellcheck", *[DEPLOY / s for s in SCRIPTS])
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", ["install.sh", "uninstall.sh", "build-wheelhouse.sh"])
def test_unknown_argument_is_a_usage_error(script: str) -> None:
    proc = sh(DEPLOY / script, "--no-such-option")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_installer_help_names_its_flags() -> None:
    text = sh(INSTALL, "--help").stdout
    for flag in ("--wheelhouse", "--no-start", "--radio-url", "--root"):
        assert flag in text
    assert "--purge" in sh(UNINSTALL, "--help").stdout


def test_installer_refuses_before_touching_anything() -> None:
    """Checked before any change: not root, or (as root) a radio URL that would break the
    EnvironmentFile quoting, or a wheelhouse that does not exist."""
    if os.geteuid() != 0:
        proc = sh(INSTALL, "--radio-url", URL1)
        assert proc.returncode == 1
        assert "run as root" in proc.stderr
        return
    for url in ('emulated:?node=1"', "emulated:?node=1 x", "emulated:?node=$X", "a\\b"):
        proc = sh(INSTALL, "--radio-url", url, "--root", "/nonexistent")
        assert proc.returncode == 1, url
        assert "--radio-url" in proc.stderr
    proc = sh(INSTALL, "--wheelhouse", "/nonexistent/wheels", "--root", "/nonexistent")
    assert proc.returncode == 1
    assert "no such directory" in proc.stderr


def pi_config(text: str) -> str:
    proc = subprocess.run(
        ["awk", "-f", str(DEPLOY / "pi-config.awk")],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def active(text: str) -> list[str]:
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


# Raspberry Pi OS Bookworm's stock config.txt comments SPI out ("#dtparam=spi=on") near the top,
# before conditional sections such as [cm4] and a final [all].
STOCK = """# For more options and information see
# http://rptl.io/configtxt
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[all]
"""


@pytest.mark.parametrize(
    ("before", "expected_active"),
    [
        # the stock file: the commented line is switched on where it stands
        (STOCK, ["dtparam=spi=on", "dtparam=audio=on"]),
        # explicitly off becomes on
        ("dtparam=spi=off\n", ["dtparam=spi=on"]),
        # already on (also as part of a parameter list): untouched
        ("dtparam=spi=on\n", ["dtparam=spi=on"]),
        ("dtparam=i2c_arm=on,spi=on\n", ["dtparam=i2c_arm=on,spi=on"]),
        # absent: appended in an [all] section, so no conditional section swallows it
        ("[cm4]\notg_mode=1\n", ["[cm4]", "otg_mode=1", "[all]", "dtparam=spi=on"]),
        # the kernel driver's overlay is commented out
        (
            "dtparam=spi=on\ndtoverlay=at86rf233,speed=6000000\n",
            ["dtparam=spi=on"],
        ),
    ],
)
def test_pi_config_rewrite(before: str, expected_active: list[str]) -> None:
    after = pi_config(before)
    got = active(after)
    for line in expected_active:
        assert line in got, (line, after)
    assert not any(ln.startswith("dtoverlay=at86rf23") for ln in got)
    assert sum(1 for ln in got if re.search(r"\bspi=on\b", ln)) == 1
    assert "dtparam=spi=off" not in got
    assert pi_config(after) == after  # a second run changes nothing
    # nothing else is lost: every original line is still there (maybe commented out)
    for ln in before.splitlines():
        switched_on = ln.lstrip("#").replace("spi=off", "spi=on")
        assert ln in after or "#" + ln in after or switched_on in active(after), ln


def test_pi_config_keeps_order_of_stock_file() -> None:
    after = pi_config(STOCK)
    assert after.splitlines()[:4] == STOCK.splitlines()[:4]
    assert after.splitlines()[4] == "dtparam=spi=on"
    assert after.splitlines()[5:] == STOCK.splitlines()[5:]


def test_config_template_documents_the_defaults() -> None:
    """The template parses as is, and uncommenting every setting in it gives exactly the
    defaults, so the values it shows are the real ones (and every key is a known one)."""
    text = (DEPLOY / "gateway.toml.example").read_text()
    defaults = Settings()
    assert parse_settings(text) == defaults
    uncommented = re.sub(r"(?m)^#(\w+ = )", r"\1", text)
    settings = [ln for ln in uncommented.splitlines() if re.match(r"\w+ = ", ln)]
    assert len(settings) >= 10
    assert parse_settings(uncommented) == defaults
    documented = {ln.split(" = ")[0] for ln in settings}
    for section in dataclasses.fields(Settings):
        if section.name != "paths":
            for f in dataclasses.fields(getattr(Settings(), section.name)):
                assert f.name in documented, f"{section.name}.{f.name} missing from the template"


def test_environment_template_sets_nothing() -> None:
    text = (DEPLOY / "gateway.default").read_text()
    assert [ln for ln in text.splitlines() if ln and not ln.startswith("#")] == []
    assert "#GATEWAY_RADIO_URL=" in text


def test_mirror_is_read_from_the_apt_sources(tmp_path: Path) -> None:
    """The container tests take their Debian mirror from apt's configuration, in either format,
    skipping deb-src, disabled stanzas and the security archive."""
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
    )
    (d / "a.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb deb-src\n# a comment\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert nspawn.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (d / "a.sources").unlink()
    assert nspawn.debian_mirror(tmp_path) is None
    (d / "b.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/d bookworm main\n"
    )
    assert nspawn.debian_mirror(tmp_path) == "http://one.example/d"


# ---- as root, in a throwaway Debian 12 image -----------------------------------------------------


@pytest.fixture(scope="module")
def rootfs() -> Path:
    return nspawn.ensure_rootfs()


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    return nspawn.shared_wheelhouse()


@pytest.fixture
def image(rootfs: Path) -> Iterator[nspawn.Overlay]:
    overlay = nspawn.Overlay(rootfs)
    try:
        yield overlay
    finally:
        overlay.close()
    assert not overlay.mounted()
    assert nspawn.processes_in(overlay.merged) == []


def install(image: nspawn.Overlay, *args: str | Path) -> str:
    proc = sh(INSTALL, "--root", image.merged, *args)
    assert proc.returncode == 0, f"install.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert re.search(r"install: \d+ changed, \d+ skipped, 0 failed", proc.stdout), proc.stdout
    return proc.stdout


def uninstall(image: nspawn.Overlay, *args: str) -> str:
    proc = sh(UNINSTALL, "--root", image.merged, *args)
    assert proc.returncode == 0, f"uninstall.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def changed(summary: str) -> int:
    m = re.search(r"install: (\d+) changed", summary)
    assert m, summary
    return int(m.group(1))


def snapshot(root: Path) -> dict[str, tuple[int, ...]]:
    """Every file, directory and link of the overlay's upper layer with its times, size, mode
    and owner: whatever an install wrote, even identical bytes, shows up here."""
    out: dict[str, tuple[int, ...]] = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_size,
                st.st_mode,
                st.st_uid,
                st.st_gid,
            )
    return out


def passwd_entry(image: nspawn.Overlay, name: str) -> list[str] | None:
    for line in image.path("/etc/passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


def group_members(image: nspawn.Overlay, group: str) -> list[str] | None:
    for line in image.path("/etc/group").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == group:
            return [m for m in parts[3].split(",") if m]
    return None


def in_image(image: nspawn.Overlay, *argv: str) -> subprocess.CompletedProcess[str]:
    return nspawn.run_in_image(image, argv, timeout=120)


def modified_wheelhouse(src: Path, dest: Path, marker: str) -> Path:
    """A copy of the wheelhouse whose gateway wheel carries one changed file (RECORD updated),
    as a newer build of the same version would."""
    dest.mkdir()
    for whl in src.glob("*.whl"):
        if not whl.name.startswith("thing_gateway-"):
            shutil.copy2(whl, dest / whl.name)
            continue
        with zipfile.ZipFile(whl) as zin, zipfile.ZipFile(dest / whl.name, "w") as zout:
            record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
            new = zin.read("gateway/__init__.py") + f"# {marker}\n".encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(new).digest()).rstrip(b"=").decode()
            rows = list(csv.reader(io.TextIOWrapper(zin.open(record_name))))
            for row in rows:
                if row and row[0] == "gateway/__init__.py":
                    row[1:] = [f"sha256={digest}", str(len(new))]
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            for item in zin.infolist():
                if item.filename == "gateway/__init__.py":
                    zout.writestr(item, new)
                elif item.filename == record_name:
                    zout.writestr(item, buf.getvalue())
                else:
                    zout.writestr(item, zin.read(item))
    return dest


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_install_rerun_update_uninstall_reinstall_purge(
    image: nspawn.Overlay, wheelhouse: Path, tmp_path: Path
) -> None:
    # 1. a fresh install, offline
    out = install(image, "--wheelhouse", wheelhouse, "--radio-url", URL1)
    user = passwd_entry(image, "gateway")
    assert user is not None
    assert int(user[2]) < 1000, "a system user"
    assert user[6] in ("/usr/sbin/nologin", "/bin/false")
    assert group_members(image, "gateway") is not None
    assert re.search(r"skipped +supplementary group spi +no 'spi' group", out)
    assert re.search(r"skipped +config.txt .*not a Raspberry Pi", out)
    assert re.search(r"skipped +starting the services .*systemd is not running", out)
    # the example, with border routing turned on for the uplink when the machine has a default
    # route (the installer says which interface it took)
    installed = image.path("/etc/gateway/gateway.toml").read_text()
    example = (DEPLOY / "gateway.toml.example").read_text()
    took = re.search(r"border routing on (\S+) \(\[border_router\] infra_interface\)", out)
    if took is None:
        assert installed == example
    else:
        lines = [ln for ln in installed.splitlines() if not ln.startswith("infra_interface = ")]
        assert lines == [ln for ln in example.splitlines() if not ln.startswith("#infra_interface")]
        assert f'infra_interface = "{took.group(1)}"' in installed
    env = image.path("/etc/default/gateway").read_text()
    assert [ln for ln in env.splitlines() if ln.startswith("GATEWAY_RADIO_URL=")] == [
        f'GATEWAY_RADIO_URL="{URL1}"'
    ]
    for u in UNITS:
        assert image.path(f"/{UNIT_DIR}/{u}").read_text() == (REPO / "systemd" / u).read_text()
        link = image.path(f"/etc/systemd/system/multi-user.target.wants/{u}")
        assert os.readlink(link) == f"/{UNIT_DIR}/{u}"
    for f in (
        "/etc/udev/rules.d/60-gateway.rules",
        "/etc/sysctl.d/60-gateway.conf",
        "/etc/modprobe.d/gateway-at86rf230.conf",
    ):
        assert image.path(f).is_file(), f
    probe = in_image(image, "/opt/gateway/venv/bin/python", "-m", "gateway.radio", "--help")
    assert probe.returncode == 0, probe.stderr
    assert in_image(image, "/usr/local/bin/gwctl", "--help").returncode == 0
    # the installed units with their interpreter present: systemd-analyze has nothing to say
    verify = in_image(image, "systemd-analyze", "verify", *UNITS)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")

    # 2. the same again: nothing is written at all
    before = snapshot(image.upper)
    out = install(image, "--wheelhouse", wheelhouse, "--radio-url", URL1)
    assert changed(out) == 0, out
    after = snapshot(image.upper)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == set()

    # 3. the technician's configuration is never overwritten; a new radio URL replaces the old
    image.path("/etc/gateway/gateway.toml").write_text('[logging]\nlevel = "debug"\n')
    out = install(image, "--wheelhouse", wheelhouse, "--radio-url", URL2)
    assert changed(out) == 1, out
    assert image.path("/etc/gateway/gateway.toml").read_text() == '[logging]\nlevel = "debug"\n'
    env = image.path("/etc/default/gateway").read_text()
    assert [ln for ln in env.splitlines() if "GATEWAY_RADIO_URL=" in ln and ln[0] != "#"] == [
        f'GATEWAY_RADIO_URL="{URL2}"'
    ]

    # 4. a rebuilt wheel of the same version is installed (the version alone would hide it)
    newer = modified_wheelhouse(wheelhouse, tmp_path / "newer", "rebuilt-for-the-test")
    out = install(image, "--wheelhouse", newer)
    assert re.search(r"installed +thing-gateway", out), out
    site = next(image.path("/opt/gateway/venv/lib").glob("python3*/site-packages"))
    assert "rebuilt-for-the-test" in (site / "gateway/__init__.py").read_text()
    assert changed(install(image, "--wheelhouse", newer)) == 0

    # 5. uninstall keeps state, configuration and the user
    state = image.path("/var/lib/gateway/thread-network.json")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text('{"kept": true}\n')
    out = uninstall(image)
    for gone in (
        "/opt/gateway",
        "/usr/local/bin/gwctl",
        "/etc/udev/rules.d/60-gateway.rules",
        "/etc/sysctl.d/60-gateway.conf",
        "/etc/modprobe.d/gateway-at86rf230.conf",
        *[f"/{UNIT_DIR}/{u}" for u in UNITS],
        *[f"/etc/systemd/system/multi-user.target.wants/{u}" for u in UNITS],
    ):
        assert not os.path.lexists(image.path(gone)), gone
    assert state.read_text() == '{"kept": true}\n'
    assert image.path("/etc/gateway/gateway.toml").is_file()
    assert image.path("/etc/default/gateway").is_file()
    assert passwd_entry(image, "gateway") is not None
    assert re.search(r"kept +/var/lib/gateway", out)

    # 6. a reinstall over the kept state and configuration, the image now looking like Raspberry
    #    Pi OS: config.txt under /boot/firmware with the kernel's overlay active, groups spi, gpio
    boot = image.path("/boot/firmware/config.txt")
    boot.parent.mkdir(parents=True)
    original = STOCK.replace("[cm4]", "dtoverlay=at86rf233\n\n[cm4]")
    boot.write_text(original)
    for g in ("spi", "gpio"):
        assert in_image(image, "groupadd", "--system", g).returncode == 0
    out = install(image, "--wheelhouse", wheelhouse)
    assert re.search(r"unchanged +user gateway", out)
    assert state.read_text() == '{"kept": true}\n'
    assert image.path("/etc/gateway/gateway.toml").read_text() == '[logging]\nlevel = "debug"\n'
    assert re.search(r"edited +/boot/firmware/config.txt .*reboot", out), out
    assert "Reboot to apply" in out
    got = active(boot.read_text())
    assert "dtparam=spi=on" in got
    assert not any(ln.startswith("dtoverlay=at86rf23") for ln in got)
    assert image.path("/boot/firmware/config.txt.gateway-orig").read_text() == original
    assert re.search(r"added +supplementary group spi", out)
    assert group_members(image, "spi") == ["gateway"]
    assert group_members(image, "gpio") == ["gateway"]
    edited = boot.read_text()
    assert changed(install(image, "--wheelhouse", wheelhouse)) == 0
    assert boot.read_text() == edited

    # 7. --purge removes everything, the user and group included; SPI stays on in config.txt
    out = uninstall(image, "--purge")
    for gone in ("/var/lib/gateway", "/etc/gateway", "/etc/default/gateway", "/opt/gateway"):
        assert not os.path.lexists(image.path(gone)), gone
    assert passwd_entry(image, "gateway") is None
    assert group_members(image, "gateway") is None
    assert group_members(image, "spi") == []
    assert boot.read_text() == edited
    assert re.search(r"kept +/boot/firmware/config.txt", out)
