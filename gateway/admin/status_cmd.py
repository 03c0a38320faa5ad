"""``gwctl status``: services, radio, network (uplink), Thread network and sessions at a glance.

It answers with whatever services are running (DESIGN §8). Exit 0 when at least one service
answers (the missing ones are listed under ``not_running``), 8 when none does (4 when the only
obstacle is permission to the sockets)."""

from __future__ import annotations

import sys
from typing import Any

import click

from drivers.errors import GatewayError, ServiceUnavailable
from gateway import __version__
from gateway.admin.errors import AdminPermissionDenied
from gateway.admin.services import Answer, ask_all
from gateway.cli import output
from gateway.cli.common import EXIT_CODES_HELP, json_option, run
from gateway.runtime.jsonline import AccessDenied
from gateway.runtime.paths import SERVICES, Paths


def _thread_from_state(paths: Paths) -> dict[str, Any] | None:
    """The Thread network summary from the state file, when the border router does not run."""
    from gateway.runtime.network import load_network
    from gateway.runtime.settings import Settings

    try:
        ds = load_network(Settings(paths=paths))
    except GatewayError as exc:
        return {"source": "state", "error": exc.message}
    if ds is None:
        return None
    return {
        "source": "state",
        "network_name": ds.network_name,
        "channel": ds.channel,
        "pan_id": f"0x{ds.pan_id:04x}" if ds.pan_id is not None else None,
        "ext_pan_id": ds.ext_pan_id.hex() if ds.ext_pan_id else None,
    }


def build_status(paths: Paths, answers: dict[str, Answer]) -> dict[str, Any]:
    running = {s: a.status for s, a in answers.items() if a.status is not None}
    doc: dict[str, Any] = {
        "ok": bool(running),
        "gateway": {
            "version": __version__,
            "config": str(paths.config),
            "state_dir": str(paths.state_dir),
            "runtime_dir": str(paths.runtime_dir),
        },
        "services": running,
        "not_running": {
            s: (a.error.to_dict() if a.error else {"message": "no answer"})
            for s, a in answers.items()
            if a.status is None
        },
    }
    radio_st = running.get("radio", {})
    doc["radio"] = radio_st.get("radio") if isinstance(radio_st.get("radio"), dict) else None
    br = running.get("border-router", {})
    uplink = br.get("uplink")
    doc["network"] = {"uplink": uplink} if uplink is not None else None
    thread = br.get("thread")
    if isinstance(thread, dict):
        doc["thread"] = {"source": "border-router", **thread}
        role = br.get("network")
        if isinstance(role, dict):
            doc["thread"]["role"] = role
    else:
        doc["thread"] = _thread_from_state(paths)
    doc["guard"] = _guard(br)
    sessions: dict[str, Any] = {}
    for svc in ("border-router", "group-owner"):
        st = running.get(svc, {})
        if "sessions" in st:
            sessions[svc] = st["sessions"]
    doc["sessions"] = sessions
    return doc


@click.command("status", epilog=EXIT_CODES_HELP)
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for each service's answer.")  # fmt: skip
@json_option
def status(timeout: float, as_json: bool) -> None:
    """Services, radio, network and Thread network at a glance."""
    paths = Paths.from_env()

    async def go() -> dict[str, Answer]:
        return await ask_all(paths, timeout)

    answers = run(as_json, go)
    doc = build_status(paths, answers)
    if as_json:
        output.emit_json(doc)
    else:
        _print_status(doc)
    if not doc["services"]:
        errors = [a.error for a in answers.values() if a.error is not None]
        err: GatewayError
        if errors and all(isinstance(e, AccessDenied) for e in errors):
            err = AdminPermissionDenied("no permission to ask the services")
        else:
            err = ServiceUnavailable(
                "no gateway service is running",
                hint="systemctl start gateway-radio gateway-border-router gateway-group-owner",
            )
        output.error(err.message, err.hint)
        sys.exit(err.exit_code)


_GUARD_COUNTERS = (
    "pskc_wrong",
    "pskc_verdicts_withheld",
    "pskc_flights_held",
    "handshakes_throttled",
    "handshakes_evicted",
    "sessions_refused",
    "requests_refused",
    "dtls_bad_records",
)


def _guard(br: dict[str, Any]) -> dict[str, Any] | None:
    """What the border router held back from remote peers (issue 16): border agent limits and
    warnings kept out of the journal."""
    comm = br.get("commissioning")
    if not isinstance(comm, dict):
        return None
    counters = comm.get("border_agent", {}).get("counters", {})
    native = comm.get("native_commissioner") or {}
    return {
        "border_agent": {k: counters.get(k, 0) for k in _GUARD_COUNTERS},
        "wrong_pskd": (native.get("counters") or {}).get("wrong_pskd", 0),
        "pskd_rate_limited": (native.get("counters") or {}).get("rate_limited", 0),
        "discovery_throttled": comm.get("counters", {}).get("discovery_throttled", 0),
        "warnings_suppressed": comm.get("warnings_suppressed", {}),
    }


def _print_status(doc: dict[str, Any]) -> None:
    g = doc["gateway"]
    st = output.style
    print(st(f"gateway {g['version']}", output.BOLD)
          + f"   config {g['config']}   state {g['state_dir']}")  # fmt: skip
    print()
    print(st("services", output.BOLD))
    for name in SERVICES:
        s = doc["services"].get(name)
        if s is None:
            reason = doc["not_running"].get(name, {}).get("message", "")
            print(f"  {name:14} {st('not running', output.RED)}  {st(reason, output.DIM)}")
            continue
        phase = str(s.get("phase", "?"))
        colour = output.GREEN if phase == "ready" else output.YELLOW
        print(f"  {name:14} {st(f'{phase:11}', colour)} pid {s.get('pid', '?'):<7} "
              f"up {output.duration(float(s.get('uptime_s', 0)))}")  # fmt: skip
    print()
    r = doc["radio"]
    if r is not None:
        health = st("healthy", output.GREEN) if r.get("healthy") else st("NOT HEALTHY", output.RED)
        clients = doc["services"]["radio"].get("clients", 0)
        print(f"{st('radio', output.BOLD):8} {r.get('part')} rev {r.get('version_num')} "
              f"({r.get('backend')}), channel {r.get('channel')}, {health}, {clients} client(s)")  # fmt: skip
        c = r.get("counters", {})
        print(f"         tx {c.get('tx_frames', 0)} (no ack {c.get('tx_no_ack', 0)}, busy "
              f"{c.get('tx_channel_access_failure', 0)})  rx {c.get('rx_frames', 0)} "
              f"(crc errors {c.get('rx_crc_errors', 0)})  recoveries {c.get('recoveries', 0)}")  # fmt: skip
    else:
        print(f"{st('radio', output.BOLD):8} unknown (the radio service does not run)")
    t = doc["thread"]
    if t is None:
        print(f"{st('thread', output.BOLD):8} no network yet (created on first start)")
    elif "error" in t:
        print(f"{st('thread', output.BOLD):8} {st(t['error'], output.RED)}")
    else:
        src = "" if t["source"] == "border-router" else st("  (from the state file)", output.DIM)
        print(f"{st('thread', output.BOLD):8} '{t.get('network_name')}', channel "
              f"{t.get('channel')}, PAN ID {t.get('pan_id')}, ext PAN ID {t.get('ext_pan_id')}{src}")  # fmt: skip
        r = t.get("role")
        if isinstance(r, dict):
            full = st("  child table full", output.RED) if r.get("table_full") else ""
            print(f"{'':8} role {r.get('role')} ({r.get('rloc16')}), partition "
                  f"{r.get('partition_id')}, key sequence {r.get('key_sequence')}, "
                  f"{r.get('children')}/{r.get('max_children')} children{full}")  # fmt: skip
    n = doc["network"]
    if n is None:
        print(f"{st('uplink', output.BOLD):8} not reported")
    else:
        print(f"{st('uplink', output.BOLD):8} {_uplink_text(n['uplink'])}")
    g = doc.get("guard")
    if g is not None:
        b = g["border_agent"]
        suppressed = sum(g["warnings_suppressed"].values())
        print(f"{st('guard', output.BOLD):8} wrong PSKc {b['pskc_wrong']} (withheld "
              f"{b['pskc_verdicts_withheld']}, held {b['pskc_flights_held']}), handshakes "
              f"throttled {b['handshakes_throttled']}, evicted {b['handshakes_evicted']}, "
              f"refused requests {b['requests_refused']}, wrong PSKd {g['wrong_pskd']}, "
              f"warnings suppressed {suppressed}")  # fmt: skip
    s = doc["sessions"]
    if not s:
        print(f"{st('sessions', output.BOLD):8} none reported")
    else:
        for svc, v in s.items():
            print(f"{st('sessions', output.BOLD):8} {svc}: {_sessions_text(v)}")


def _uplink_text(u: Any) -> str:
    if not isinstance(u, dict):
        return str(u)
    parts = [str(u.get("interface") or u.get("ifname") or "?")]
    if "state" in u or "up" in u:
        parts.append(str(u.get("state", "up" if u.get("up") else "down")))
    addrs = u.get("addresses")
    if isinstance(addrs, list) and addrs:
        parts.append(", ".join(str(a) for a in addrs[:4]) + (" …" if len(addrs) > 4 else ""))
    return "  ".join(parts)


def _sessions_text(v: Any) -> str:
    if isinstance(v, list):
        return f"{len(v)} active"
    if isinstance(v, dict):
        return ", ".join(f"{k} {val}" for k, val in v.items()) or "none"
    return str(v)
