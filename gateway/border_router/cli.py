"""gwctl commands for Thread commissioning and the Thread network (attached to gwctl with
``main.add_command(commissioner)`` and ``main.add_command(dataset)``):

    gwctl commissioner start [--id NAME]
    gwctl commissioner joiner add EUI64|'*' PSKD [--timeout S] [--wait]
    gwctl commissioner joiner remove EUI64|'*'
    gwctl commissioner sessions
    gwctl commissioner stop
    gwctl dataset show [--hex] [--secrets]
    gwctl dataset set --file FILE|- [--yes]
    gwctl dataset passphrase [--file FILE|-]
    gwctl thread status|children|neighbors|netdata|prefixes
    gwctl thread ping ADDR [--size N] [--count N] [--interval S] [--timeout S]

The commissioner commands talk to the border router's control socket (the native commissioner
runs inside the border router service); the dataset commands read and write the shared Thread
network state (``gateway.runtime.network``) and ask a running border router to reload it. The
hex form is OpenThread's (``dataset active -x`` / ``dataset set active <hex>``). Every command
takes ``--json``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from drivers.errors import GatewayError, InvalidArgument, ServiceUnavailable, StateError
from gateway.cli import output
from gateway.cli.common import fail, guard, json_option, run
from gateway.errors import ParseError
from gateway.runtime.paths import Paths

__all__ = ["commissioner", "dataset", "thread"]

SERVICE = "border-router"


async def _call(method: str, timeout: float = 10.0, **params: Any) -> Any:
    import gateway.thread.errors  # noqa: F401  (registers the THR codes for error_class)
    import gateway.thread.network.errors  # noqa: F401  (and the THR1xx codes)
    from gateway.cli.control import call

    paths = Paths.from_env()
    if not paths.control_socket(SERVICE).exists():
        raise ServiceUnavailable(
            "the border router is not running",
            hint="systemctl start gateway-border-router (the native commissioner runs in it)",
        )
    return await call(paths, SERVICE, method, timeout=timeout, **params)


def _eui64(text: str) -> str:
    if text == "*":
        return text
    raw = text.replace(":", "").replace("-", "")
    try:
        if len(bytes.fromhex(raw)) == 8:
            return raw.lower()
    except ValueError:
        pass
    raise click.BadParameter(f"{text!r} is not an EUI-64 (16 hex digits) or '*'")


# ------------------------------------------------------------------------------ commissioner


@click.group()
def commissioner() -> None:
    """The native Thread commissioner on the gateway (admits joiners with their PSKd)."""


@commissioner.command("start")
@click.option("--id", "cid", default="Gateway native commissioner", help="Commissioner ID.")
@json_option
def commissioner_start(cid: str, as_json: bool) -> None:
    """Petition the leader and become the network's commissioner."""
    res = run(as_json, lambda: _call("commissioner_start", id=cid))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    click.echo(f"commissioner active: '{res['id']}', session ID {res['session_id']}")


@commissioner.command("stop")
@json_option
def commissioner_stop(as_json: bool) -> None:
    """Resign: nobody may join afterwards."""
    res = run(as_json, lambda: _call("commissioner_stop"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    click.echo(f"commissioner stopped (was {res['was']})")


@commissioner.command("sessions")
@click.option("--events", default=20, show_default=True, help="Recent events to show.")
@json_option
def commissioner_sessions(events: int, as_json: bool) -> None:
    """Border agent sessions, the native commissioner, its joiners and recent events."""
    res = run(as_json, lambda: _call("sessions", events=events))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    ba = res["border_agent"]
    click.echo(f"border agent: UDP {ba.get('port')}, {len(ba['sessions'])} session(s)")
    for s in ba["sessions"]:
        role = "active commissioner" if s["active"] else "connected"
        click.echo(f"  {s['peer']}: {s.get('commissioner_id') or '-'} ({role})")
    leader = res["leader"]
    act = leader["active_commissioner"]
    click.echo(
        "leader: "
        + (f"'{act['id']}' active, session {act['session_id']}" if act else "no commissioner")
        + (", joining allowed" if leader["joining_allowed"] else ", joining not allowed")
    )
    native = res["native_commissioner"]
    if native is not None:
        click.echo(f"native commissioner: {native['state']}")
        for j in native["joiners"]:
            note = f", last: {j['last_result']}" if j["last_result"] else ""
            blocked = f", blocked {j['blocked_for_s']} s" if j["blocked_for_s"] else ""
            click.echo(f"  joiner {j['joiner']}: joined {j['joined']}{note}{blocked}")
    for e in res["events"]:
        click.echo(f"  [{e['level']}] {e['text']}")


@commissioner.group("joiner")
def joiner() -> None:
    """Admit or remove joiners."""


@joiner.command("add")
@click.argument("eui64")
@click.argument("pskd", required=False, metavar="")
@click.option("--pskd-file", help="Read the joiner's PSKd from FILE ('-': standard input); "
              "default: a hidden prompt.")  # fmt: skip
@click.option("--timeout", default=120.0, show_default=True, help="Seconds the entry stays.")
@click.option("--wait", is_flag=True, help="Wait until the joiner joined (or failed).")
@click.option("--wait-timeout", default=120.0, show_default=True)
@json_option
def joiner_add(
    eui64: str,
    pskd: str | None,
    pskd_file: str | None,
    timeout: float,
    wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> None:
    """Admit the joiner EUI64 ('*': any joiner) with its joining code (PSKd), read from
    --pskd-file or a prompt: never from the command line, where other users could read it."""
    from gateway.runtime.secret_input import read_secret, refuse_secret_argument

    def secret() -> str:
        refuse_secret_argument(pskd, "the PSKd", "--pskd-file")
        return read_secret(pskd_file, what="the joiner's PSKd", option="--pskd-file")

    pskd = guard(as_json, secret)
    who = _eui64(eui64)

    async def go() -> dict[str, Any]:
        entry: dict[str, Any] = await _call("joiner_add", eui64=who, pskd=pskd, timeout_s=timeout)
        if not wait:
            return {"entry": entry}
        if not as_json:
            output.info(f"waiting up to {wait_timeout:.0f} s for joiner {who} ...")
        result = await _call("joiner_wait", timeout=wait_timeout + 5, eui64=who,
                             wait_s=wait_timeout)  # fmt: skip
        return {"entry": entry, "result": result}

    res = run(as_json, go)
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    click.echo(f"joiner {who} admitted for {timeout:.0f} s")
    if "result" in res:
        click.echo(f"joiner {res['result']['joiner_id']}: {res['result']['result']}")


@joiner.command("remove")
@click.argument("eui64")
@json_option
def joiner_remove(eui64: str, as_json: bool) -> None:
    """Remove the joiner EUI64 ('*': the wildcard entry)."""
    res = run(as_json, lambda: _call("joiner_remove", eui64=_eui64(eui64)))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    click.echo("removed" if res["removed"] else "no such joiner entry")


# ------------------------------------------------------------------------------ dataset


def _dataset_from(raw: bytes, cls: Any) -> Any:
    """A dataset from OpenThread's hex form (text) or from its TLVs (binary)."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if text and all(c in "0123456789abcdefABCDEF" for c in text):
        return cls.from_hex(text)
    return cls.from_bytes(raw)


def _settings() -> Any:
    from gateway.runtime.settings import load_settings

    return load_settings()


def _describe(ds: Any, secrets: bool) -> dict[str, Any]:
    def secret(v: bytes | None) -> str | None:
        if v is None:
            return None
        return v.hex() if secrets else "(redacted; --secrets shows it)"

    return {
        "active_timestamp": ds.active_timestamp.seconds if ds.active_timestamp else None,
        "channel": ds.channel,
        "channel_mask": sorted(ds.channel_mask.channels()) if ds.channel_mask else None,
        "ext_pan_id": ds.ext_pan_id.hex() if ds.ext_pan_id else None,
        "mesh_local_prefix": str(ds.mesh_local_network) if ds.mesh_local_prefix else None,
        "network_key": secret(ds.network_key),
        "network_name": ds.network_name,
        "pan_id": f"0x{ds.pan_id:04x}" if ds.pan_id is not None else None,
        "pskc": secret(ds.pskc),
        "security_policy": ds.security_policy.describe() if ds.security_policy else None,
    }


async def _reload_if_running() -> str:
    try:
        await _call("reload_dataset", timeout=5.0)
    except ServiceUnavailable:
        return "not running"
    except StateError as exc:
        output.warn(exc.message)
        return "restart needed"
    return "reloaded"


@click.group()
def dataset() -> None:
    """The gateway's Thread network (its active operational dataset)."""


@dataset.command("show")
@click.option("--hex", "as_hex", is_flag=True, help="OpenThread's hex form (holds the keys).")
@click.option("--secrets", is_flag=True, help="Show the network key and the PSKc.")
@json_option
def dataset_show(as_hex: bool, secrets: bool, as_json: bool) -> None:
    """Show the active dataset (keys redacted unless --secrets or --hex)."""
    from gateway.runtime.network import load_network

    def go() -> Any:
        ds = load_network(_settings())
        if ds is None:
            raise StateError(
                "no Thread network yet",
                hint="It is created when the border router or the group owner first starts.",
            )
        return ds

    try:
        ds = go()
    except GatewayError as exc:
        fail(exc, as_json)
    if as_json:
        doc: dict[str, Any] = {"ok": True, "dataset": _describe(ds, secrets or as_hex)}
        if as_hex:
            doc["hex"] = ds.to_hex()
        output.emit_json(doc)
        return
    if as_hex:
        click.echo(ds.to_hex())
        return
    names = {
        "active_timestamp": "Active Timestamp",
        "channel": "Channel",
        "channel_mask": "Channel Mask",
        "ext_pan_id": "Ext PAN ID",
        "mesh_local_prefix": "Mesh Local Prefix",
        "network_key": "Network Key",
        "network_name": "Network Name",
        "pan_id": "PAN ID",
        "pskc": "PSKc",
        "security_policy": "Security Policy",
    }
    for key, value in _describe(ds, secrets).items():
        click.echo(f"{names[key]}: {value}")


@dataset.command("set")
@click.argument("hexdata", required=False, metavar="")
@click.option("--file", "source", help="Read the dataset from FILE ('-': standard input): "
              "OpenThread's 'dataset active -x' hex form, or the TLVs themselves.")  # fmt: skip
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def dataset_set(hexdata: str | None, source: str | None, yes: bool, as_json: bool) -> None:
    """Replace the active dataset with the one in --file (it holds the network key and PSKc,
    so it never comes as a command-line argument)."""
    from gateway.cli.common import confirm
    from gateway.runtime.network import load_network, save_network
    from gateway.runtime.secret_input import read_secret_bytes, refuse_secret_argument
    from gateway.wire.dataset import ActiveDataset

    try:
        refuse_secret_argument(hexdata, "the dataset", "--file")
        if source is None:
            raise InvalidArgument("the dataset is needed: --file FILE, or --file - for "
                                  "standard input")  # fmt: skip
        raw = read_secret_bytes(source, option="--file")
        try:
            ds = _dataset_from(raw, ActiveDataset)
        except ParseError as exc:
            raise InvalidArgument(f"not a dataset: {exc.message}") from None
        if not ds.is_complete:
            raise InvalidArgument(f"the dataset lacks {', '.join(ds.missing())}")
        settings = _settings()
        old = load_network(settings)
        if old is not None and (old.network_key != ds.network_key or old.pan_id != ds.pan_id):
            confirm(
                "This moves the gateway to another Thread network; devices that joined the "
                "current one will no longer reach it.",
                None,
                yes or as_json,
            )
        save_network(settings, ds)
    except GatewayError as exc:
        fail(exc, as_json)
    state = run(as_json, _reload_if_running)
    if as_json:
        output.emit_json({"ok": True, "border_router": state, "dataset": _describe(ds, False)})
        return
    click.echo(f"active dataset set: network '{ds.network_name}' on channel {ds.channel}")
    if state == "restart needed":
        click.echo("restart the services to use it: systemctl restart gateway-border-router "
                   "gateway-group-owner")  # fmt: skip


@dataset.command("passphrase")
@click.argument("passphrase", required=False, metavar="")
@click.option("--file", "source", help="Read the passphrase from FILE ('-': standard input); "
              "default: a hidden prompt, asked twice.")  # fmt: skip
@json_option
def dataset_passphrase(passphrase: str | None, source: str | None, as_json: bool) -> None:
    """Set the commissioning passphrase: the PSKc becomes PBKDF2(passphrase, network name,
    extended PAN ID), what an external commissioner derives from the same passphrase."""
    from gateway.crypto.thread_keys import pskc as derive_pskc
    from gateway.crypto.thread_keys import validate_passphrase
    from gateway.runtime.logs import register_secret
    from gateway.runtime.network import load_network, save_network
    from gateway.runtime.secret_input import read_secret, refuse_secret_argument

    try:
        refuse_secret_argument(passphrase, "the passphrase", "--file")
        passphrase = read_secret(source, what="the commissioning passphrase", option="--file",
                                 confirm=True)  # fmt: skip
        validate_passphrase(passphrase)
        register_secret(passphrase.encode())
        settings = _settings()
        ds = load_network(settings)
        if ds is None or ds.network_name is None or ds.ext_pan_id is None:
            raise StateError("no Thread network yet",
                             hint="Start the border router once to create it.")  # fmt: skip
        new = replace(ds, pskc=derive_pskc(passphrase, ds.network_name, ds.ext_pan_id))
        save_network(settings, new)
    except GatewayError as exc:
        fail(exc, as_json)
    state = run(as_json, _reload_if_running)
    if as_json:
        output.emit_json({"ok": True, "border_router": state, "network_name": ds.network_name})
        return
    click.echo(
        f"PSKc set from the passphrase for network '{ds.network_name}' (border router: {state})"
    )


# ------------------------------------------------------------------------------ thread


@click.group()
def thread() -> None:
    """The gateway's Thread network: role, children, neighbours, Network Data, ping."""


@thread.command("status")
@json_option
def thread_status(as_json: bool) -> None:
    """Role, partition, key sequence, addresses and the child table's fill."""
    res = run(as_json, lambda: _call("thread_status"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    kids = res["children"]
    full = " (FULL: Parent Requests are not answered)" if kids["table_full"] else ""
    click.echo(f"role: {res['role']}, rloc16 {res['rloc16']}, router ID {res['router_id']}")
    click.echo(f"partition: {res['partition_id']}, weighting {res['weighting']}, "
               f"leader router ID {res['leader_router_id']}")  # fmt: skip
    click.echo(f"key sequence: {res['key_sequence']}"
               + (" (key switch guard active)" if res["key_switch_guard_active"] else ""))  # fmt: skip
    click.echo(f"network data: version {res['data_version']}, "
               f"stable {res['stable_data_version']}")  # fmt: skip
    click.echo(f"children: {kids['attached']} attached ({kids['sleepy']} sleepy), "
               f"{kids['restoring']} restoring, at most {kids['max']}{full}")  # fmt: skip
    for name, addr in res["addresses"].items():
        if addr:
            click.echo(f"  {name}: {addr}")


def _child_lines(children: list[dict[str, Any]]) -> None:
    if not children:
        click.echo("no children")
        return
    click.echo(f"{'rloc16':8} {'ext addr':17} {'state':10} {'mode':5} {'timeout':>7} "
               f"{'age':>6} {'lq':>2}  addresses")  # fmt: skip
    for c in children:
        click.echo(f"{c['rloc16'] or '-':8} {c['ext_addr']:17} {c['state']:10} {c['mode']:5} "
                   f"{c['timeout_s']:>6}s {c['age_s']:>5}s {c['lq_in']:>2}  "
                   f"{', '.join(c['addresses']) or '-'}")  # fmt: skip


@thread.command("children")
@json_option
def thread_children(as_json: bool) -> None:
    """The child table: mode, timeout, age, link quality and addresses of each child."""
    res = run(as_json, lambda: _call("thread_children"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    _child_lines(res["children"])


@thread.command("neighbors")
@json_option
def thread_neighbors(as_json: bool) -> None:
    """Every neighbour (children and routers)."""
    res = run(as_json, lambda: _call("thread_neighbors"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    if not res["neighbors"]:
        click.echo("no neighbours")
    for n in res["neighbors"]:
        click.echo(f"{n['role']:6} {n['rloc16'] or '-':8} {n['ext_addr']} {n['state']:10} "
                   f"mode {n['mode']:4} age {n['age_s']}s lq {n['lq_in']} "
                   f"margin {n['link_margin_db']} dB")  # fmt: skip


@thread.command("netdata")
@json_option
def thread_netdata(as_json: bool) -> None:
    """The leader's Network Data (full set), with its versions."""
    res = run(as_json, lambda: _call("thread_netdata"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    import json as _json

    click.echo(_json.dumps(res, indent=2, sort_keys=True))


@thread.command("prefixes")
@json_option
def thread_prefixes(as_json: bool) -> None:
    """Border routing: the OMR prefix, the on-link prefix, the route published for the LAN."""
    res = run(as_json, lambda: _call("thread_prefixes"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    if not res["enabled"]:
        click.echo(f"border routing is off: {res['why']}")
        return
    omr, onlink = res["omr"], res["on_link"]
    click.echo(f"LAN interface: {res['lan_interface']} ({'up' if res['lan_up'] else 'down'}), "
               f"Thread interface: {res['thread_interface']}")  # fmt: skip
    click.echo(f"OMR prefix: {omr['local']} ({omr['state']}); favored: {omr['favored'] or '-'}"
               + (f" ({omr['favored_preference']})" if omr["favored"] else ""))  # fmt: skip
    click.echo(f"on-link prefix: {onlink['local']} ({onlink['state']}); "
               f"favored on the LAN: {onlink['favored'] or '-'}")  # fmt: skip
    click.echo(f"route published for the LAN: {res['route'] or 'none'}")
    click.echo(f"router discovery: {res['router_discovery']}, RAs sent: {res['ras_sent']}")
    for r in res["lan_routers"]:
        click.echo(f"  LAN router {r['address']} (heard {r['age_s']} s ago): on-link "
                   f"{', '.join(r['on_link_prefixes']) or '-'}; routes {', '.join(r['routes']) or '-'}")  # fmt: skip
    for p in res["problems"]:
        click.echo(f"problem: {p}")


@thread.command("ping")
@click.argument("address")
@click.option("--size", type=click.IntRange(0, 1232), default=8, show_default=True,
              help="ICMPv6 echo payload bytes (above 80 the datagram is fragmented).")  # fmt: skip
@click.option("--count", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--interval", type=click.FloatRange(0, 10), default=0.2, show_default=True,
              help="Seconds between echoes.")  # fmt: skip
@click.option("--timeout", "wait", type=click.FloatRange(0.1, 60), default=3.0,
              show_default=True, help="Seconds to wait for each reply.")  # fmt: skip
@json_option
def thread_ping(
    address: str, size: int, count: int, interval: float, wait: float, as_json: bool
) -> None:
    """Ping ADDRESS from the gateway's mesh addresses. Exits 0 when every echo came back,
    7 otherwise."""
    import ipaddress
    import sys

    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise click.BadParameter(f"{address!r} is not an IPv6 address") from None
    res = run(as_json, lambda: _call("thread_ping", timeout=count * (wait + interval) + 10,
                                     address=address, size=size, count=count,
                                     interval_s=interval, timeout_s=wait))  # fmt: skip
    ok = res["received"] == res["transmitted"]
    if as_json:
        output.emit_json({"ok": ok, **res})
    else:
        for r in res["replies"]:
            if r["ok"]:
                click.echo(f"{r['size']} bytes from {r['from']}: icmp_seq={r['sequence']} "
                           f"hlim={r['hop_limit']} time={r['rtt_ms']}ms")  # fmt: skip
            else:
                click.echo(f"no reply to icmp_seq={r['sequence']}")
        lost = 100 * (res["transmitted"] - res["received"]) // res["transmitted"]
        click.echo(f"{res['transmitted']} packets transmitted, {res['received']} received, "
                   f"{lost}% packet loss")  # fmt: skip
    if not ok:
        sys.exit(7)


@click.group()
def srp() -> None:
    """The SRP server: the hosts and services Thread devices registered, and its bounds."""


@srp.command("hosts")
@json_option
def srp_hosts(as_json: bool) -> None:
    """Registered hosts: addresses, leases, services."""
    res = run(as_json, lambda: _call("srp_hosts"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    if not res["hosts"]:
        click.echo("no hosts")
    for h in res["hosts"]:
        click.echo(f"{h['name']}.default.service.arpa. deleted: {str(h['deleted']).lower()} "
                   f"addresses: [{', '.join(h['addresses'])}] lease: {h['lease']} "
                   f"key-lease: {h['key_lease']} remaining: {h['remaining_lease']}")  # fmt: skip


@srp.command("services")
@json_option
def srp_services(as_json: bool) -> None:
    """Registered services and whether the LAN sees them."""
    res = run(as_json, lambda: _call("srp_services"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    if not res["services"]:
        click.echo("no services")
    for s in res["services"]:
        subs = f" subtypes: {','.join(s['subtypes'])}" if s["subtypes"] else ""
        click.echo(f"{s['instance']}.{s['type']}.default.service.arpa. host: {s['host']} "
                   f"port: {s['port']} deleted: {str(s['deleted']).lower()} "
                   f"published: {str(s['published']).lower()}{subs}")  # fmt: skip


@srp.command("status")
@json_option
def srp_status(as_json: bool) -> None:
    """State, port, lease bounds, table bounds and the counters of refused input."""
    res = run(as_json, lambda: _call("srp_status"))
    if as_json:
        output.emit_json({"ok": True, **res})
        return
    if res["state"] != "running":
        click.echo(f"SRP server: {res['state']} ({res.get('why', '')})")
        return
    click.echo(
        f"SRP server: running on UDP {res['port']} ({res['address_mode']}), domain {res['domain']}"
    )
    click.echo(f"lease {res['lease_bounds'][0]}..{res['lease_bounds'][1]} s, key-lease "
               f"{res['key_lease_bounds'][0]}..{res['key_lease_bounds'][1]} s")  # fmt: skip
    click.echo(f"hosts {res['hosts']}, services {res['services']}")
    click.echo("bounds: " + ", ".join(f"{k}={v}" for k, v in res["bounds"].items()))
    click.echo("counters: " + ", ".join(f"{k}={v}" for k, v in res["counters"].items()))
