"""A newcomer's first ten minutes: the README's two commands on a freshly bootstrapped Debian 12.

The image has only what the README lists as prerequisites: ``make``, ``python3`` with ``venv``,
and ``sudo`` (a user with sudo rights, as on a fresh Raspberry Pi OS). A clean clone of this
repository goes in, and as that user:

- ``make demo`` installs what is missing (compiler, Python headers, ...) and runs the demo to
  success; its run folder holds the air capture, which tshark decodes, and the services' logs;
- ``make venv`` (the install step of ``make test``) installs the test tools too.

The machine's own trust settings for the package registries are carried into the image, as the
container tests carry its apt mirror: where pip here is told to trust a CA bundle (``PIP_CERT``,
for example a network that inspects TLS), the image gets that bundle and the same setting.

The base image is cached like the other container tests' (``nspawn.ensure_rootfs``), and so are
the Debian packages apt downloads; Python packages come fresh from the registry each time, so
spidev and systemd-python really compile. The container shares the host's network only for the
package registries (apt and pip) to be reached; the demo's simulated air uses port offset 1612,
which no other test uses. Duration on the 2-core machine (2026-12-07, while other jobs ran):
1 min 46 s from nothing (base image 47 s, ``make demo`` with its installs 53 s, ``make venv``
4 s), 59 s with the base image cached; the test prints its timings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.system import nspawn

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1800)]

PREREQUISITES = ("make", "python3", "python3-venv", "sudo")
USER = "newcomer"
HOME = f"/home/{USER}"
CLONE = f"{HOME}/gateway"
DEMO_OFFSET = 1612  # the main suite's offsets are 10-1609, the interop tests' 1620 on
APT_CACHE = nspawn.CACHE / "newcomer-apt-archives"


def _uid_gid(overlay: nspawn.Overlay, user: str) -> tuple[int, int]:
    for line in overlay.path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {user} in the image")


def _host_ca_bundle() -> Path | None:
    """The CA bundle pip on this machine is configured with (``PIP_CERT``), if any."""
    named = os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE")
    if not named:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"],
                              capture_output=True, text=True)  # fmt: skip
        named = proc.stdout.strip() if proc.returncode == 0 else ""
    return Path(named) if named and Path(named).is_file() else None


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(root)], check=True)


def test_readme_commands_on_a_fresh_debian_12() -> None:
    nspawn.require_root()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    rootfs = nspawn.ensure_rootfs(PREREQUISITES)
    timings["rootfs"] = time.monotonic() - t0
    if nspawn.debian_mirror() is None:
        pytest.skip("no Debian mirror in the host's apt sources for the image's apt")
    overlay = nspawn.Overlay(rootfs)
    try:
        run = nspawn.run_in_image
        proc = run(overlay, ["useradd", "--create-home", "--shell", "/bin/bash", USER])
        assert proc.returncode == 0, proc.stderr
        sudoers = overlay.path(f"/etc/sudoers.d/{USER}")
        sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        # the clean clone a newcomer makes (what is committed, nothing of this working tree)
        clone = overlay.path(CLONE)
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(nspawn.REPO),
                        str(clone)], check=True, capture_output=True)  # fmt: skip
        uid, gid = _uid_gid(overlay, USER)
        _chown_tree(overlay.path(HOME), uid, gid)
        APT_CACHE.mkdir(parents=True, exist_ok=True)
        env = {"LANG": "C.UTF-8", "HOME": HOME}
        ca = _host_ca_bundle()
        if ca is not None:
            inside = "/usr/local/share/gateway-test/ca-bundle.crt"
            overlay.path(inside).parent.mkdir(parents=True)
            shutil.copy(ca, overlay.path(inside))
            env["PIP_CERT"] = inside
        common = {
            "host_network": True,
            "user": USER,
            "chdir": CLONE,
            "setenv": env,
            "rw_binds": [(APT_CACHE, "/var/cache/apt/archives")],
        }

        t1 = time.monotonic()
        demo = run(overlay, ["make", "demo", f"DEMO_ARGS=--port-offset {DEMO_OFFSET}"],
                   timeout=1200, **common)  # type: ignore[arg-type]  # fmt: skip
        timings["make_demo"] = time.monotonic() - t1
        out = demo.stdout + demo.stderr
        assert demo.returncode == 0, f"make demo -> {demo.returncode}\n{out[-6000:]}"
        assert "Demo complete." in demo.stdout
        # quiet: one line per install step, no dpkg or pip chatter on the screen
        assert "Unpacking " not in out and "Setting up " not in out, out[:3000]
        assert "==> installing system packages:" in demo.stdout
        run_dir = clone / "demo-run"
        lines = demo.stdout.splitlines()
        title = [i for i, line in enumerate(lines) if "demo on the emulated radio" in line]
        assert title, lines[:10]
        assert f"{CLONE}/demo-run" in lines[title[0] + 1], lines[:10]  # named at the start
        assert f"{CLONE}/demo-run" in demo.stdout.strip().splitlines()[-1]  # and at the end
        logs = {p.name for p in (run_dir / "logs").iterdir()}
        assert {"radio.log", "border_router.log", "group_owner.log"} <= logs, logs
        assert "result: complete" in (run_dir / "summary.txt").read_text()
        pcap = run_dir / "air.pcap"
        assert pcap.stat().st_size > 1000
        tshark = run(overlay, ["tshark", "-r", f"{CLONE}/demo-run/air.pcap", "-T", "fields",
                               "-e", "wpan.fcs_ok"], **common)  # type: ignore[arg-type]  # fmt: skip
        assert tshark.returncode == 0, tshark.stderr
        oks = tshark.stdout.split()
        assert len(oks) > 50 and set(oks) == {"1"}, (len(oks), set(oks))

        t2 = time.monotonic()
        venv = run(overlay, ["make", "venv"], timeout=900, **common)  # type: ignore[arg-type]
        timings["make_venv"] = time.monotonic() - t2
        assert venv.returncode == 0, f"make venv -> {venv.returncode}\n{venv.stdout[-4000:]}"
        check = run(overlay, [f"{CLONE}/.venv/bin/python", "-c",
                              "import pytest, mypy, hypothesis, ruff, gateway, drivers"],
                    **common)  # type: ignore[arg-type]  # fmt: skip
        assert check.returncode == 0, check.stderr
        script = (
            "for t in shellcheck systemd-analyze debootstrap systemd-nspawn tshark gcc; do "
            'command -v "$t" >/dev/null || echo "missing $t"; done; echo "PATH=$PATH"'
        )
        tools = run(overlay, ["/bin/sh", "-c", script], **common)  # type: ignore[arg-type]
        assert "missing" not in tools.stdout and tools.returncode == 0, tools.stdout + tools.stderr
    finally:
        overlay.close()
    print(f"\nnewcomer timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    assert not overlay.mounted()
