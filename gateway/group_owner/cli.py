"""``gwctl bootstrap ...``: the group owner's bootstrapping windows, things and errors.

A click group; gwctl attaches it with ``main.add_command(bootstrap)``. Every command takes
``--json`` (one JSON document with ``schema_version`` on stdout) and exits 8 when the group-owner
service is not running (DESIGN §8).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from typing import Any

import click

from gateway.cli import output
from gateway.cli.common import json_option
from gateway.errors import GatewayError, ServiceUnavailable
from gateway.runtime.jsonline import JsonLineClient
from gateway.runtime.paths import Paths

SERVICE = "group-owner"


async def _call(method: str, timeout: float = 5.0) -> dict[str, Any]:
    path = Paths.from_env().control_socket(SERVICE)
    if not path.exists():
        raise ServiceUnavailable(
            "the group-owner service is not running",
            hint="Start it: systemctl start gateway-group-owner (see 'gwctl status').",
        )
    client = JsonLineClient(path)
    try:
        await client.connect(timeout=1.0)
        result = await client.call(method, timeout=timeout)
    except TimeoutError:
        raise ServiceUnavailable("the group-owner service did not answer in time") from None
    finally:
        await client.close()
    if not isinstance(result, dict):
        raise ServiceUnavailable("the group-owner service sent a malformed answer")
    return result


def _fetch(method: str, as_json: bool) -> dict[str, Any]:
    try:
        return asyncio.run(_call(method))
    except GatewayError as exc:
        if as_json:
            output.emit_json({"ok": False, "error": exc.to_dict()})
        else:
            output.error(exc.message, exc.hint)
        sys.exit(exc.exit_code)


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _session_lines(s: dict[str, Any] | None, title: str) -> list[str]:
    if not s:
        return [f"{title}: none"]
    lines = [
        f"{title}: session {s['sid'][:8]}, {s['state']}, {'+'.join(s['mode']).lower()}, "
        f"epoch {s['epoch']}, {s['window_left_s']:.0f} s left, {len(s['allowed'])} allowed, "
        f"{s['failed_proofs']} failed proofs"
    ]
    for j in s.get("joins", []):
        lines.append(f"  thing {j['dev_id']}: {j['state']} (epoch {j['epoch']}, "
                     f"{j['chunks']} chunks, {j['retransmissions']} retransmissions)")  # fmt: skip
    for d in s.get("pending", []):
        lines.append(f"  thing {d}: found, waiting for the user's confirmation in the app")
    for d, n in s.get("bad_proofs", {}).items():
        lines.append(f"  thing {d}: {n} wrong proofs (not this device's key; it is still "
                     "admitted with the right one)")  # fmt: skip
    return lines


@click.group("bootstrap")
def bootstrap() -> None:
    """Cloud-based bootstrapping (CBSB): windows, things, errors."""


@bootstrap.command("status")
@json_option
def status_cmd(as_json: bool) -> None:
    """The group owner: cloud link, claim code, the open window."""
    doc = _fetch("bootstrap", as_json)
    if as_json:
        output.emit_json(doc)
        return
    cloud = doc.get("cloud") or {}
    click.echo(f"gateway {doc.get('serial') or '(not provisioned)'}, radio {doc.get('gw_id')}, "
               f"channel {doc.get('channel')}")  # fmt: skip
    state = cloud.get("state", "?")
    since = f" since {_ago(cloud.get('connected_since'))}" if state == "connected" else ""
    click.echo(f"cloud: {state}{since} ({cloud.get('url') or 'no URL'})")
    if cloud.get("last_error") and state != "connected":
        click.echo(f"  last error: {cloud['last_error']}")
    if doc.get("paired"):
        click.echo(f"owner: {doc.get('owner')} (the app is paired)")
    elif doc.get("claim_code"):
        click.echo(f"not claimed yet: claim code on the box {doc['claim_code']}")
    for line in _session_lines(doc.get("session"), "window"):
        click.echo(line)
    errs = doc.get("errors") or []
    if errs:
        e = errs[-1]
        click.echo(f"last error: {_ago(e.get('time'))} {e['status']} at step {e['step']} "
                   f"({e.get('step_name')}){' for ' + e['dev_id'] if e.get('dev_id') else ''}")  # fmt: skip


@bootstrap.command("sessions")
@json_option
def sessions_cmd(as_json: bool) -> None:
    """The open window and the last one."""
    doc = _fetch("bootstrap", as_json)
    body = {"session": doc.get("session"), "last_session": doc.get("last_session"),
            "results": doc.get("results", [])}  # fmt: skip
    if as_json:
        output.emit_json(body)
        return
    for line in _session_lines(body["session"], "open window"):
        click.echo(line)
    for line in _session_lines(body["last_session"], "last window"):
        click.echo(line)
    for r in body["results"]:
        click.echo(f"  {_ago(r.get('time'))} thing {r['dev_id']}: {r['result']}")


@bootstrap.command("pending")
@json_option
def pending_cmd(as_json: bool) -> None:
    """Things found but not yet confirmed by the user, and joins in progress."""
    doc = _fetch("bootstrap", as_json)
    s = doc.get("session") or {}
    body = {"sid": s.get("sid"), "pending": s.get("pending", []),
            "joins": [j for j in s.get("joins", []) if j.get("state") == "delivering"],
            "bad_proofs": s.get("bad_proofs", {})}  # fmt: skip
    if as_json:
        output.emit_json(body)
        return
    if not s:
        click.echo("no bootstrapping window is open")
        return
    if not (body["pending"] or body["joins"] or body["bad_proofs"]):
        click.echo("nothing pending")
    for d in body["pending"]:
        click.echo(f"thing {d}: waiting for the user's confirmation in the app")
    for j in body["joins"]:
        click.echo(f"thing {j['dev_id']}: receiving its credentials")
    for d, n in body["bad_proofs"].items():
        click.echo(f"thing {d}: {n} wrong proofs seen for it")


@bootstrap.command("errors")
@json_option
def errors_cmd(as_json: bool) -> None:
    """The last errors, each with the step of the bootstrap where it happened."""
    doc = _fetch("bootstrap_errors", as_json)
    errs = doc.get("errors", [])
    if as_json:
        output.emit_json({"errors": errs})
        return
    if not errs:
        click.echo("no errors")
    for e in errs:
        who = f"thing {e['dev_id']}" if e.get("dev_id") else "session"
        link = f" (RSSI {e['rssi']} dBm, LQI {e['lqi']})" if "rssi" in e else ""
        click.echo(f"{_ago(e.get('time'))} {who}: {e['status']} at step {e['step']} "
                   f"({e.get('step_name')}){link}")  # fmt: skip
        click.echo(f"    {e.get('hint', '')}")


@bootstrap.command("close")
@json_option
def close_cmd(as_json: bool) -> None:
    """Close the open bootstrapping window now."""
    doc = _fetch("bootstrap_close", as_json)
    if as_json:
        output.emit_json(doc)
    elif doc.get("closed"):
        click.echo(f"closed session {doc['closed'][:8]}")
    else:
        click.echo("no bootstrapping window was open")
