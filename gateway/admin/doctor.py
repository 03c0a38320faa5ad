"""``gwctl doctor``: checks a technician runs first, each with a hint.

Statuses: ``pass``, ``warn`` (worth knowing, not a fault), ``skip`` (does not apply here) and
``fail``. Exit 0 when nothing fails, 9 when the configuration is invalid (the other checks then
use the defaults), 1 when any other check fails."""

from __future__ import annotations

import asyncio
import grp
import importlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from drivers.errors import GatewayError
from gateway.cli import output
from gateway.cli.common import EXIT_CODES_HELP, json_option, run
from gateway.runtime.paths import SERVICES, Paths

PASS, WARN, SKIP, FAIL = "pass", "warn", "skip", "fail"
USER = "gateway"
MIN_FREE = 20 * 1024 * 1024
LOW_FREE = 100 * 1024 * 1024
MIN_YEAR = 2025
TCP_SCHEMES = {"coap+tcp": 5683, "coaps+tcp": 5684, "coap+ws": 80, "coaps+ws": 443,
               "http": 80, "https": 443}  # fmt: skip
UDP_SCHEMES = {"coap": 5683, "coaps": 5684}
# Used when the distribution's metadata is not available (running from a source tree).
FALLBACK_MODULES = ("aiocoap", "click", "cryptography", "fastecdsa", "gpiod", "pyroute2",
                    "serial", "spidev", "systemd", "zeroconf")  # fmt: skip


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""


# ------------------------------------------------------------------------------ the checks


def check_config(paths: Paths) -> tuple[Check, Any]:
    from gateway.runtime.settings import Settings, load_settings

    try:
        settings = load_settings(paths)
    except GatewayError as exc:
        return Check("config", FAIL, exc.message, exc.hint), Settings(paths=paths)
    note = "" if paths.config.exists() else " (absent: every setting has its default)"
    return Check("config", PASS, f"{paths.config} is valid{note}"), settings


def _radio_devices(url: str) -> tuple[str, dict[str, str]] | None:
    from drivers.errors import RadioUrlError
    from drivers.radio import parse_radio_url

    try:
        p = parse_radio_url(url)
    except RadioUrlError:
        return None
    if p.scheme == "spinel+hdlc+uart":
        return p.scheme, {"serial": p.path[2:] if p.path.startswith("//") else p.path}
    if p.scheme != "at86rf233":
        return p.scheme, {}
    path = p.path[2:] if p.path.startswith("//") else p.path
    return p.scheme, {"spi": path, "gpio": p.params.get("gpiochip", "/dev/gpiochip0")}


def _describe_node(path: str) -> str:
    st = os.stat(path)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"{stat.filemode(st.st_mode)} {owner}:{group}"


def check_device(kind: str, url: str) -> Check:
    devs = _radio_devices(url)
    name = {"spi": "spi device", "gpio": "gpio chip", "serial": "serial device"}[kind]
    if devs is None:
        return Check(name, SKIP, "the configured radio URL is invalid (see the config check)")
    scheme, paths = devs
    if scheme == "emulated":
        return Check(name, SKIP, "not needed: the configured radio is emulated")
    if kind not in paths:
        return Check(name, SKIP, f"not needed by a {scheme}: radio")
    path = paths[kind]
    if not os.path.exists(path):
        hint = {
            "spi": "Enable SPI ('dtparam=spi=on' in /boot/firmware/config.txt, no at86rf233 "
            "overlay) and reboot; check the device in [radio] url.",
            "gpio": "The GPIO character device is missing; check the gpiochip= parameter of the "
            "URL.",
            "serial": "Plug in the RCP dongle; 'ls -l /dev/serial/by-id/' lists serial devices "
            "(the udev rules link known RCP dongles as /dev/gateway-rcp).",
        }[kind]
        return Check(name, FAIL, f"{path} does not exist", hint)
    if not os.access(path, os.R_OK | os.W_OK):
        return Check(name, FAIL, f"{path} ({_describe_node(path)}) is not accessible to gwctl",
                     "Run as root, or as a member of the device's group.")  # fmt: skip
    return Check(name, PASS, f"{path} present ({_describe_node(path)})")


def check_groups(url: str) -> Check:
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        return Check("groups", WARN, f"no '{USER}' user: the gateway is not installed as a system "
                     "service here (the services run as whoever starts them)",
                     "On the appliance, run deploy/install.sh.")  # fmt: skip
    groups = {g.gr_name for g in grp.getgrall() if USER in g.gr_mem}
    try:
        groups.add(grp.getgrgid(user.pw_gid).gr_name)
    except KeyError:
        pass
    problems: list[str] = []
    if USER not in {g.gr_name for g in grp.getgrall()}:
        problems.append(f"no '{USER}' group")
    devs = _radio_devices(url)
    if devs is not None and devs[0] in ("at86rf233", "spinel+hdlc+uart"):
        for path in devs[1].values():
            with_group = _node_group(path)
            if with_group and with_group not in groups and os.stat(path).st_uid != user.pw_uid:
                problems.append(f"'{USER}' is not in group '{with_group}' of {path}")
    me = os.geteuid()
    ggid = _gid(USER)
    if me != 0 and me != user.pw_uid and (ggid is None or ggid not in os.getgroups()):
        problems.append(f"you (uid {me}) are not in the '{USER}' group: gwctl cannot ask the "
                        "services")  # fmt: skip
    detail = f"'{USER}' is in: {', '.join(sorted(groups)) or 'no group'}"
    if problems:
        return Check("groups", FAIL, "; ".join(problems) + f" ({detail})",
                     f"usermod -aG <group> {USER} (then restart the services); re-run "
                     "deploy/install.sh to fix them all.")  # fmt: skip
    return Check("groups", PASS, detail)


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _node_group(path: str) -> str | None:
    try:
        return grp.getgrgid(os.stat(path).st_gid).gr_name
    except (KeyError, OSError):
        return None


def check_clock() -> Check:
    year = time.gmtime().tm_year
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    if year < MIN_YEAR:
        return Check("clock", FAIL, f"the clock says {now}",
                     "A Pi has no battery clock: check that NTP can reach a server "
                     "(timedatectl timesync-status); certificates fail with a wrong date.")  # fmt: skip
    tdc = shutil.which("timedatectl")
    if tdc is None:
        return Check("clock", PASS, f"{now} (NTP status unknown: no timedatectl)")
    try:
        r = subprocess.run([tdc, "show", "-p", "NTPSynchronized", "--value"],
                           capture_output=True, text=True, timeout=3, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return Check("clock", PASS, f"{now} (NTP status unknown)")
    value = r.stdout.strip()
    if r.returncode != 0 or value not in ("yes", "no"):
        return Check("clock", PASS, f"{now} (NTP status unknown: no systemd-timedated)")
    if value == "no":
        return Check("clock", WARN, f"{now}, not synchronised by NTP",
                     "timedatectl timesync-status; check the uplink and NTP servers.")  # fmt: skip
    return Check("clock", PASS, f"{now}, synchronised by NTP")


def check_disk(paths: Paths) -> Check:
    where = paths.state_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        du = shutil.disk_usage(where)
    except OSError as exc:
        return Check("disk", FAIL, f"cannot measure {where}: {exc.strerror}")
    free_mib = du.free // (1024 * 1024)
    detail = f"{free_mib} MiB free of {du.total // (1024 * 1024)} MiB at {where}"
    hint = "Free space: journalctl --vacuum-size=50M, apt-get clean, remove old files."
    if du.free < MIN_FREE:
        return Check("disk", FAIL, detail, "State can no longer be saved. " + hint)
    if du.free < LOW_FREE:
        return Check("disk", WARN, detail, hint)
    return Check("disk", PASS, detail)


def check_state(paths: Paths) -> Check:
    from gateway.admin.backup import read_text, validate_state_file, walk_state

    try:
        files, _other = walk_state(paths.state_dir)
        for p in files:
            validate_state_file(p, read_text(p), str(p))
    except PermissionError:
        return Check("state", FAIL, f"no permission to read {paths.state_dir}",
                     "Run as root or as the gateway user.")  # fmt: skip
    except GatewayError as exc:
        return Check("state", FAIL, exc.message, exc.hint)
    if not files:
        return Check("state", PASS, f"no state yet in {paths.state_dir} (created on first start)")
    names = ", ".join(p.relative_to(paths.state_dir).as_posix() for p in files)
    return Check("state", PASS, f"{len(files)} file(s) readable and intact: {names}")


def _requirements() -> list[tuple[str, list[str]]]:
    """(distribution, its top-level modules) for each runtime dependency."""
    from importlib import metadata

    try:
        reqs = metadata.requires("thing-gateway") or []
    except metadata.PackageNotFoundError:
        return [(m, [m]) for m in FALLBACK_MODULES]
    modules: dict[str, list[str]] = {}
    for mod, dists in metadata.packages_distributions().items():
        for d in dists:
            modules.setdefault(_norm(d), []).append(mod)
    out = []
    for req in reqs:
        if "extra ==" in req:
            continue
        m = re.match(r"[A-Za-z0-9._-]+", req)
        if m:
            name = m.group(0)
            mods = sorted(
                {x for x in modules.get(_norm(name), []) if x.isidentifier() and x[0] != "_"}
            )
            out.append((name, mods))
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_dependencies() -> Check:
    missing: list[str] = []
    for dist, mods in _requirements():
        if not mods:
            missing.append(f"{dist} (not installed)")
            continue
        for mod in mods:
            try:
                importlib.import_module(mod)
            except Exception as exc:  # noqa: BLE001 - any import failure is the finding
                missing.append(f"{dist} ({mod}: {type(exc).__name__}: {exc})")
    if missing:
        return Check("dependencies", FAIL, "not importable: " + "; ".join(missing),
                     "Reinstall: /opt/gateway/venv/bin/pip install --force-reinstall "
                     "thing-gateway (or re-run deploy/install.sh).")  # fmt: skip
    return Check("dependencies", PASS, f"{len(_requirements())} runtime dependencies import "
                 f"(Python {sys.version.split()[0]})")  # fmt: skip


def check_tun() -> Check:
    if os.path.exists("/dev/net/tun"):
        return Check("tun", PASS, "/dev/net/tun present")
    return Check("tun", WARN, "/dev/net/tun is missing",
                 "The border router's Thread interface needs the tun module: modprobe tun.")  # fmt: skip


async def check_border_routing(paths: Paths, settings: Any) -> list[Check]:
    """The LAN interface, the sysctls border routing needs, the Thread interface and the RAs
    (docs/border-routing.md)."""
    from gateway.border_router.linux import check_sysctls, describe_interface
    from gateway.cli.control import call

    br = settings.border_router
    if not br.infra_interface:
        return [Check("border routing", SKIP, "off: [border_router] infra_interface is empty",
                      "To let the LAN reach Thread devices: gwctl config set "
                      "border_router.infra_interface <LAN interface>, then restart the border "
                      "router.")]  # fmt: skip
    lan = describe_interface(br.infra_interface)
    out: list[Check] = []
    if not lan["exists"] or not lan["up"]:
        out.append(Check("border routing: LAN", FAIL,
                         f"{br.infra_interface} is {'down' if lan['exists'] else 'missing'}",
                         "Set [border_router] infra_interface to the interface of the LAN "
                         "(ip link), or bring it up."))  # fmt: skip
    problems = check_sysctls(br.infra_interface, fix=False)
    if problems:
        out.append(Check("border routing: sysctls", FAIL, "; ".join(problems),
                         "Install deploy/sysctl.d/60-gateway.conf in /etc/sysctl.d and run "
                         "systemctl restart systemd-sysctl (deploy/install.sh does both)."))  # fmt: skip
    else:
        out.append(Check("border routing: sysctls", PASS,
                         f"forwarding on, {br.infra_interface} accepts RAs and route information"))  # fmt: skip
    try:
        pre = await call(paths, "border-router", "thread_prefixes", timeout=3.0)
    except GatewayError as exc:
        out.append(Check("border routing: service", SKIP, f"no answer ({exc.message})",
                         "Start the border router to check the Thread interface and RAs."))  # fmt: skip
        return out
    tun = describe_interface(br.thread_interface)
    if not pre.get("enabled") or not tun["up"]:
        out.append(Check("border routing: Thread interface", FAIL,
                         f"{br.thread_interface} is {'down' if tun['exists'] else 'missing'}",
                         "gwctl logs --service border-router (CAP_NET_ADMIN, /dev/net/tun)."))  # fmt: skip
        return out
    out.append(Check("border routing: Thread interface", PASS,
                     f"{br.thread_interface} up with {len(pre.get('thread_addresses', []))} "
                     "addresses"))  # fmt: skip
    omr = pre.get("omr", {})
    if pre.get("ras_sent", 0) > 0 and omr.get("state") == "added":
        out.append(Check("border routing: LAN RA", PASS,
                         f"{pre['ras_sent']} RAs sent on {br.infra_interface}; OMR prefix "
                         f"{omr.get('local')}, route {pre.get('route') or 'none'}"))  # fmt: skip
    else:
        why = (
            "LAN interface down"
            if not pre.get("lan_up")
            else (f"router discovery {pre.get('router_discovery')}, OMR prefix {omr.get('state')}")
        )
        out.append(Check("border routing: LAN RA", WARN, f"no RA yet ({why})",
                         "RAs start about 10 s after the border router; gwctl thread "
                         "prefixes shows the state."))  # fmt: skip
    return out


async def check_services(paths: Paths) -> list[Check]:
    from gateway.admin.services import ask_all
    from gateway.cli.control import UNITS

    answers = await ask_all(paths, timeout=3.0)
    out = []
    for name in SERVICES:
        a = answers[name]
        if a.status is None:
            err = a.error
            out.append(Check(f"service {name}", FAIL, err.message if err else "no answer",
                             f"systemctl start {UNITS[name]}; gwctl logs --service {name}"))  # fmt: skip
            continue
        phase = str(a.status.get("phase", "?"))
        detail = f"{phase}, pid {a.status.get('pid')}"
        radio = a.status.get("radio")
        if name == "radio" and isinstance(radio, dict):
            detail += f", {radio.get('part')} on channel {radio.get('channel')}"
            rcp = radio.get("rcp")
            if isinstance(rcp, dict):
                detail += f", RCP firmware {str(rcp.get('firmware', '?')).split(';')[0]}"
            if not radio.get("healthy", False):
                wiring = "the RCP dongle" if isinstance(rcp, dict) else "the SPI wiring"
                out.append(Check(f"service {name}", FAIL, detail + ", radio NOT healthy",
                                 f"gwctl logs --service radio; check {wiring}."))  # fmt: skip
                continue
            faults = _rcp_faults(radio.get("counters"))
            if isinstance(rcp, dict) and faults:
                out.append(Check(f"service {name}", WARN, f"{detail}; the RCP {faults}",
                                 "An RCP that keeps needing resets: replug it, use a powered "
                                 "USB port or extension cable, or flash current RCP firmware; "
                                 "'gwctl radio probe' shows the counters."))  # fmt: skip
                continue
        status = PASS if phase == "ready" else WARN
        out.append(Check(f"service {name}", status, detail))
    return out


def _rcp_faults(counters: object) -> str:
    """'was reset and recovered 2 time(s) (1 no answer, ...)', or '' when all is well."""
    if not isinstance(counters, dict) or not counters.get("recoveries"):
        return ""
    kinds = [f"{counters[k]} {label}" for k, label in (
        ("rcp_timeouts", "without an answer"), ("rcp_unexpected_resets", "reset by itself"),
        ("rcp_lost_config", "lost its configuration"), ("rcp_link_lost", "link lost"),
        ("rcp_protocol_errors", "malformed answers"),
    ) if counters.get(k)]  # fmt: skip
    return f"was reset and recovered {counters['recoveries']} time(s) ({', '.join(kinds)})"


async def check_cloud(url: str, timeout: float = 3.0) -> Check:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default = TCP_SCHEMES.get(scheme, UDP_SCHEMES.get(scheme))
    hint = "Check the uplink (gwctl status), DNS and [group_owner] cloud_url."
    try:
        host = parts.hostname
        port = parts.port or default
    except ValueError:
        host, port = None, None
    if not host or port is None:
        return Check("cloud", FAIL, f"cannot use cloud_url {url!r}", hint)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        return Check("cloud", FAIL, f"cannot resolve {host}: {exc}", hint)
    # Every resolved address, in the resolver's order: "localhost" is ::1 first on a standard
    # Debian /etc/hosts while a server may listen on 127.0.0.1 only.
    addrs: list[tuple[int, Any]] = []
    for info in infos:
        if (info[0], info[4]) not in addrs:
            addrs.append((info[0], info[4]))
    where = f"{host}:{port}"
    errors: list[str] = []
    for family, addr in addrs:
        if scheme in TCP_SCHEMES:
            error = await _try_tcp(str(addr[0]), port, timeout)
        else:
            error = await _try_udp(family, addr, timeout)
        if error is None:
            if scheme in TCP_SCHEMES:
                return Check("cloud", PASS, f"{where} accepts TCP connections at {addr[0]}")
            return Check("cloud", PASS, f"{where} routable, no refusal at {addr[0]} (UDP: the "
                         "DTLS handshake is not attempted)")  # fmt: skip
        errors.append(f"{addr[0]}: {error}")
    kind = "TCP" if scheme in TCP_SCHEMES else "UDP"
    return Check("cloud", FAIL, f"{where} ({kind}): {'; '.join(errors)}", hint)


async def _try_tcp(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens, else what went wrong."""
    try:
        async with asyncio.timeout(timeout):
            _r, w = await asyncio.open_connection(host, port)
        w.close()
        await w.wait_closed()
    except (OSError, TimeoutError) as exc:
        return str(exc) or "timeout"
    return None


async def _try_udp(family: int, addr: Any, timeout: float) -> str | None:
    """None unless the address refuses: a connected UDP socket learns "port unreachable" from
    ICMP; a DTLS server stays silent."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(addr)
        sock.send(b"")
        try:
            async with asyncio.timeout(min(timeout, 0.5)):
                await loop.sock_recv(sock, 2048)
        except TimeoutError:
            pass
    except ConnectionRefusedError:
        return "nothing listens (port unreachable)"
    except OSError as exc:
        return str(exc.strerror or exc)
    finally:
        sock.close()
    return None


# ------------------------------------------------------------------------------ the command


def run_checks(paths: Paths) -> tuple[list[Check], bool]:
    cfg, settings = check_config(paths)
    url = settings.radio.url

    async def live() -> tuple[list[Check], Check, list[Check]]:
        svc, cloud, border = await asyncio.gather(
            check_services(paths), check_cloud(settings.group_owner.cloud_url),
            check_border_routing(paths, settings),
        )  # fmt: skip
        return svc, cloud, border

    svc, cloud, border = run(False, live)
    checks = [
        cfg,
        check_device("spi", url),
        check_device("gpio", url),
        check_device("serial", url),
        check_groups(url),
        *svc,
        check_clock(),
        check_disk(paths),
        check_state(paths),
        check_dependencies(),
        check_tun(),
        *border,
        cloud,
    ]
    return checks, cfg.status == FAIL


@click.command("doctor", epilog=EXIT_CODES_HELP)
@json_option
def doctor(as_json: bool) -> None:
    """Check the radio devices, groups, services, clock, disk, state, configuration,
    dependencies and cloud reachability, with a hint for each problem.

    Exit 0 when nothing fails, 9 when the configuration is invalid, 1 otherwise."""
    paths = Paths.from_env()
    checks, bad_config = run_checks(paths)
    failed = [c.name for c in checks if c.status == FAIL]
    if as_json:
        output.emit_json(
            {"ok": not failed, "failed": failed, "checks": [asdict(c) for c in checks]}
        )
    else:
        tags = {PASS: ("ok", output.GREEN), WARN: ("warn", output.YELLOW),
                SKIP: ("skip", output.DIM), FAIL: ("FAIL", output.RED)}  # fmt: skip
        for c in checks:
            tag, colour = tags[c.status]
            print(f"  {output.style(f'{tag:4}', colour)}  {c.name:22} {c.detail}")
            if c.hint and c.status in (FAIL, WARN):
                print(f"        {'':22} {output.style('hint: ' + c.hint, output.DIM)}")
        summary = "all checks passed" if not failed else f"{len(failed)} check(s) failed"
        output.info(summary)
    if bad_config:
        sys.exit(9)
    if failed:
        sys.exit(1)


__all__ = ["Check", "doctor", "run_checks"]
