"""A Debian 12 system container for the installer and unit tests (root only).

- :func:`ensure_rootfs` builds a minbase Debian rootfs with debootstrap from the mirror the host's
  apt is configured with, and caches it under ``/var/cache/gateway-test-rootfs`` (rebuilt only
  when missing or incomplete).
- :class:`Overlay` puts a throwaway overlayfs on top of the cached rootfs, so every test starts from
  the pristine image and nothing it does reaches the cache.
- :class:`Container` boots an overlay with ``systemd-nspawn --boot --private-network`` (PID 1 is
  the container's systemd; the host's network is never touched) and runs commands in it with
  ``nsenter``; :func:`run_in_image` runs one command in an image that is not booted.
- :func:`shared_wheelhouse` runs ``deploy/build-wheelhouse.sh`` with the test's own interpreter,
  once per test run.

Facts this relies on are in reference/environment.md §6: nspawn needs ``--keep-unit`` without a
host systemd, there is no machined, so ``machinectl`` cannot be used and ``nsenter`` is.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path("/var/cache/gateway-test-rootfs")
SUITE = "bookworm"
# iproute2 and nftables: the border router's Thread interface and forwarding table
INCLUDE = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2", "nftables")
STAMP = ".gateway-test-rootfs-ok"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Skip(Exception):
    """The machine cannot run container tests (the reason says why)."""


# ---- prerequisites ------------------------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, overlayfs mounts and systemd-nspawn)")


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key] = value.strip().strip('"')
    return out


def debian_mirror(etc_apt: Path = Path("/etc/apt")) -> str | None:
    """The Debian archive URI the host's apt uses for the main suite (never a built-in host).

    Reads one-line ``sources.list`` files and deb822 ``*.sources`` files; skips disabled entries,
    ``deb-src`` and the security archive.
    """
    candidates: list[tuple[str, list[str]]] = []  # (uri, suites)
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for f in files:
        with contextlib.suppress(OSError):
            for raw in f.read_text().splitlines():
                line = raw.split("#", 1)[0].strip()
                line = re.sub(r"\[[^\]]*\]", " ", line)  # [arch=... signed-by=...]
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb":
                    candidates.append((parts[1], [parts[2]]))
    for f in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", f.read_text()):
                fields: dict[str, str] = {}
                for raw in stanza.splitlines():
                    if raw.startswith("#") or ":" not in raw:
                        continue
                    key, _, value = raw.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    candidates.append((uri, fields.get("suites", "").split()))
    for uri, suites in candidates:
        if SUITE in suites and uri.startswith(("http://", "https://", "file:/")):
            return uri.rstrip("/")
    return None


def ensure_tools() -> None:
    """systemd-nspawn and debootstrap, installed with apt when missing (skip when impossible)."""
    missing = [
        pkg
        for tool, pkg in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap"))
        if shutil.which(tool) is None
    ]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"{', '.join(missing)} missing and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    ok = subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    if not ok:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        ok = subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    if not ok or shutil.which("systemd-nspawn") is None or shutil.which("debootstrap") is None:
        pytest.skip(f"cannot install {' '.join(missing)} with apt")


def _rootfs_ok(root: Path, include: Sequence[str]) -> bool:
    return (
        (root / STAMP).is_file()
        and ("systemd" not in include or (root / "lib/systemd/systemd").exists())
        and (root / "usr/bin/python3").exists()
        and (root / "usr/lib/python3.11/venv").is_dir()
    )


def ensure_rootfs(include: Sequence[str] = INCLUDE) -> Path:
    """The cached Debian 12 minbase rootfs with ``include`` (built on first use, ~1.5 min on
    2 cores; one cache entry per package set)."""
    require_root()
    os_release = _os_release()
    if os_release.get("ID") != "debian" or os_release.get("VERSION_CODENAME") != SUITE:
        pytest.skip(f"the container tests build a Debian {SUITE} rootfs on a Debian {SUITE} host")
    ensure_tools()
    key = hashlib.sha256(f"{SUITE} minbase {' '.join(include)}".encode()).hexdigest()[:10]
    root = CACHE / f"{SUITE}-minbase-{key}"
    CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _rootfs_ok(root, include):
            return root
        mirror = debian_mirror()
        if mirror is None:
            pytest.skip(f"no Debian {SUITE} mirror in the host's apt sources")
        shutil.rmtree(root, ignore_errors=True)
        tmp = CACHE / f"{root.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        # dpkg fsyncs every file: on a tmpfs that costs nothing (65 s instead of 90-160 s on
        # the CI disk); the finished tree is then copied to the cache in about a second.
        build = CACHE / f"build-{os.getpid()}"
        build.mkdir(exist_ok=True)
        in_tmpfs = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=2g,mode=0755", "gateway-rootfs", str(build)],
                capture_output=True,
            ).returncode
            == 0
        )
        target = build / "root" if in_tmpfs else tmp
        debs = CACHE / "debs"  # downloaded packages, kept for a rebuild
        debs.mkdir(exist_ok=True)
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(include)}",
            f"--cache-dir={debs}",
            SUITE,
            str(target),
            mirror,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                pytest.fail(f"debootstrap failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
            for deb in (target / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            (target / "etc/hostname").write_text("gateway-test\n")
            if in_tmpfs:
                subprocess.run(["cp", "-a", str(target), str(tmp)], check=True)
        finally:
            if in_tmpfs:
                subprocess.run(["umount", str(build)], capture_output=True)
            shutil.rmtree(build, ignore_errors=True)
        (tmp / STAMP).write_text(f"{SUITE} {' '.join(include)}\n")
        tmp.rename(root)
        return root


# ---- wheelhouse ----------------------------------------------------------------------------------


_wheelhouse: Path | None = None


def shared_wheelhouse() -> Path:
    """One wheelhouse for the whole test run (removed when the run ends)."""
    global _wheelhouse
    require_root()
    if _wheelhouse is None or not _wheelhouse.is_dir():
        path = Path(tempfile.mkdtemp(prefix="gateway-wheelhouse-"))
        atexit.register(shutil.rmtree, path, True)
        _wheelhouse = build_wheelhouse(path)
    return _wheelhouse


def build_wheelhouse(dest: Path) -> Path:
    """Wheels of the gateway (this working tree) and its dependencies, built with the interpreter
    running the tests (3.11 like Debian 12's: cp311 wheels install there)."""
    require_root()
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the wheelhouse must be built by a Python 3.11 (the container's python3)")
    proc = subprocess.run(
        [str(REPO / "deploy/build-wheelhouse.sh"), "--python", sys.executable, str(dest)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"build-wheelhouse.sh failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return dest


# ---- overlay and containers ----------------------------------------------------------------------


class Overlay:
    """A writable overlayfs on the cached rootfs, in a temporary directory."""

    def __init__(self, lower: Path) -> None:
        # The writable layer lives in a tmpfs: deleting a freshly written venv from ext4 takes
        # seconds, unmounting a tmpfs takes none.
        self.base = Path(tempfile.mkdtemp(prefix="gateway-ct-", dir="/var/tmp"))
        self.layer = self.base / "layer"
        self.merged = self.base / "merged"
        self.layer.mkdir()
        self.merged.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "mode=0755,size=2g", "gateway-ct", str(self.layer)],
            check=True,
            capture_output=True,
        )
        self.upper = self.layer / "upper"
        work = self.layer / "work"
        self.upper.mkdir()
        work.mkdir()
        opts = f"lowerdir={lower},upperdir={self.upper},workdir={work}"
        proc = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            self.close()
            raise AssertionError(f"cannot mount the overlay: {proc.stderr}")

    def mounted(self) -> bool:
        mounts = Path("/proc/self/mounts").read_text()
        return f" {self.merged} " in mounts or f" {self.layer} " in mounts

    def close(self) -> None:
        for target in (self.merged, self.layer):
            for _ in range(20):
                if f" {target} " not in Path("/proc/self/mounts").read_text():
                    break
                if subprocess.run(["umount", str(target)], capture_output=True).returncode:
                    time.sleep(0.25)
            else:
                subprocess.run(["umount", "-l", str(target)], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def path(self, inside: str) -> Path:
        return self.merged / inside.lstrip("/")


def _fs_type(path: str) -> str:
    best = ("", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and path.startswith(parts[1]) and len(parts[1]) >= len(best[0]):
            best = (parts[1], parts[2])
    return best[1]


def processes_in(root: Path) -> list[int]:
    """PIDs whose root directory is ``root`` (leftovers after a container stopped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "root") == str(root):
                found.append(int(entry.name))
    return found


def run_in_image(
    overlay: Overlay,
    argv: Sequence[str],
    binds: Sequence[tuple[Path, str]] = (),
    timeout: float = 300,
    *,
    host_network: bool = False,
    user: str | None = None,
    chdir: str | None = None,
    setenv: dict[str, str] | None = None,
    rw_binds: Sequence[tuple[Path, str]] = (),
) -> subprocess.CompletedProcess[str]:
    """Run one command in the (not booted) image, as a chroot with /proc, /dev and /run.

    ``host_network`` shares the host's network namespace (for apt and pip to reach the package
    registries); otherwise the container has a private network with loopback only."""
    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        *([] if host_network else ["--private-network"]),
        f"--directory={overlay.merged}",
        *[f"--bind-ro={src}:{dst}" for src, dst in binds],
        *[f"--bind={src}:{dst}" for src, dst in rw_binds],
        *([f"--user={user}"] if user else []),
        *([f"--chdir={chdir}"] if chdir else []),
        *[f"--setenv={k}={v}" for k, v in (setenv or {}).items()],
        *argv,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    proc.stderr = without_nspawn_noise(proc.stderr)
    return proc


# On a host whose /run is not a tmpfs, systemd-nspawn refuses to rm -rf its propagation
# directory there and says so on exit; the directory is empty and removed anyway.
_NSPAWN_NOISE = re.compile(
    r'^Attempted to remove disk file system under "/run/systemd/nspawn/.*\n?', re.M
)


def without_nspawn_noise(text: str) -> str:
    return _NSPAWN_NOISE.sub("", text)


class Container:
    """A booted system container on an overlay (PID 1 = the container's systemd)."""

    def __init__(self, overlay: Overlay, binds: Sequence[tuple[Path, str]] = ()) -> None:
        self.overlay = overlay
        self.name = f"gwtest{os.getpid() % 100000}"
        self.log_path = overlay.base / "console.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in poweroff)
        # The container's systemd on the unified cgroup hierarchy, allowed to load BPF programs:
        # DeviceAllow= and IPAddressDeny= are then enforced as on a Pi (cgroup v2), also on a
        # host whose own hierarchy is hybrid.
        env = dict(os.environ)
        if Path("/sys/fs/cgroup/unified").is_dir() or _fs_type("/sys/fs/cgroup") == "cgroup2":
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        cmd = [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--system-call-filter=bpf",
            "--boot",
            "--console=pipe",
            f"--machine={self.name}",
            f"--directory={overlay.merged}",
            *[f"--bind-ro={src}:{dst}" for src, dst in binds],
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        self.pid1 = self._find_pid1(timeout=30)

    def _find_pid1(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited:\n{self.console()}")
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    status = (entry / "status").read_text()
                    ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
                    nspid = re.search(r"^NSpid:\s+(.*)$", status, re.M)
                    if (
                        ppid
                        and nspid
                        and int(ppid.group(1)) == self.proc.pid
                        and nspid.group(1).split()[-1] == "1"
                    ):
                        return int(entry.name)
            time.sleep(0.05)
        raise AssertionError(f"no container PID 1 after {timeout} s:\n{self.console()}")

    def console(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces, a clean environment)."""
        prefix = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", f"PATH={CONTAINER_PATH}"]
        prefix += ["LANG=C.UTF-8", "HOME=/root"]
        if user is not None:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        proc = subprocess.run(
            [*prefix, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} -> {proc.returncode}\nstdout: {proc.stdout[-3000:]}\n"
                f"stderr: {proc.stderr[-3000:]}"
            )
        return proc

    def wait_booted(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", check=False, timeout=10).stdout
            state = state.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        raise AssertionError(f"container not up after {timeout} s ({state}):\n{self.console()}")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *[f"--property={p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def host_pid(self, container_pid: int) -> int:
        """The host's PID of a process of this container (to signal it like `kill` would)."""
        pidns = os.readlink(f"/proc/{self.pid1}/ns/pid")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns/pid") != pidns:
                    continue
                nspid = re.search(r"^NSpid:\s+(.*)$", (entry / "status").read_text(), re.M)
                if nspid and int(nspid.group(1).split()[-1]) == container_pid:
                    return int(entry.name)
        raise AssertionError(f"no process {container_pid} in the container")

    def poweroff(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=10)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def booted(overlay: Overlay, binds: Sequence[tuple[Path, str]] = ()) -> Iterator[Container]:
    ct = Container(overlay, binds)
    try:
        ct.wait_booted()
        yield ct
    finally:
        ct.poweroff()
