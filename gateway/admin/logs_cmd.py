"""``gwctl logs``: the services' journal (``journalctl -u gateway-<service>``).

With --json and without -f: one document ``{"schema_version": 1, "entries": [...]}``. With -f and
--json the output is a stream: one JSON object per line, each with ``schema_version`` and
``entry`` (a follow never ends, so it cannot be one document)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from typing import Any

import click

from gateway.admin.errors import JournalUnavailable
from gateway.cli import output
from gateway.cli.common import EXIT_CODES_HELP, fail, json_option
from gateway.runtime.paths import SERVICES

# journald's own fields worth keeping; the services' structured fields (upper-case names without
# a leading underscore) are kept too.
_TRUSTED = {"_PID": "pid", "_SYSTEMD_UNIT": "unit", "SYSLOG_IDENTIFIER": "identifier"}
_SKIP = {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_TIMESTAMP",
         "SYSLOG_PID", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "MESSAGE_ID", "SYSLOG_RAW",
         "TID", "INVOCATION_ID", "_BOOT_ID"}  # fmt: skip


def _text(value: Any) -> str:
    if isinstance(value, list):  # journald exports non-UTF-8 data as an array of bytes
        try:
            return bytes(value).decode("utf-8", errors="replace")
        except (TypeError, ValueError):
            return str(value)
    return str(value) if value is not None else ""


def entry(raw: dict[str, Any]) -> dict[str, Any]:
    """A compact, stable view of one journal export record."""
    out: dict[str, Any] = {}
    try:
        usec = int(raw.get("__REALTIME_TIMESTAMP", 0))
        out["time"] = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(usec / 1e6))
                       + f".{usec % 1_000_000:06d}Z")  # fmt: skip
    except (TypeError, ValueError):
        out["time"] = None
    try:
        out["priority"] = int(raw.get("PRIORITY", 6))
    except (TypeError, ValueError):
        out["priority"] = 6
    for src, dst in _TRUSTED.items():
        if src in raw:
            out[dst] = _text(raw[src])
    out["message"] = _text(raw.get("MESSAGE"))
    fields = {k: _text(v) for k, v in raw.items()
              if not k.startswith("_") and k not in _SKIP}  # fmt: skip
    if fields:
        out["fields"] = fields
    return out


def journal_available(journalctl: str) -> str | None:
    """None when journald can be read, else the reason."""
    try:
        r = subprocess.run([journalctl, "-n", "0", "--no-pager"], capture_output=True,
                           text=True, timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"journalctl does not run: {exc}"
    if "No journal files were found" in r.stderr:
        return "there is no systemd journal on this machine (journald is not running)"
    if r.returncode != 0:
        return f"journalctl failed: {r.stderr.strip() or r.returncode}"
    return None


@click.command("logs", epilog=EXIT_CODES_HELP)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries.")
@click.option("--service", "services", type=click.Choice(SERVICES), multiple=True,
              help="Only this service (repeatable). Default: all three.")  # fmt: skip
@click.option("-n", "--lines", type=click.IntRange(0), default=50, show_default=True,
              help="How many recent entries.")  # fmt: skip
@click.option("--since", metavar="TIME", help="Entries since TIME (journalctl syntax).")
@json_option
def logs(follow: bool, services: tuple[str, ...], lines: int, since: str | None,
         as_json: bool) -> None:  # fmt: skip
    """Show the services' logs from the systemd journal."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        fail(JournalUnavailable("journalctl is not installed: no systemd journal to read"), as_json)
    reason = journal_available(journalctl)
    if reason is not None:
        fail(JournalUnavailable(reason), as_json)
    units = [f"gateway-{s}.service" for s in (services or SERVICES)]
    argv = [journalctl, "--no-pager", "-n", str(lines)]
    for u in units:
        argv += ["-u", u]
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("-f")
    argv += ["-o", "json" if as_json else "short-iso"]
    if not as_json:
        try:
            code = subprocess.call(argv)
        except KeyboardInterrupt:
            code = 130
        sys.exit(0 if code in (0, 130) and follow else code)
    if follow:
        _follow_json(argv)
        return
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        fail(JournalUnavailable(f"journalctl failed: {r.stderr.strip()}"), as_json)
    if r.stderr.strip():
        output.info(r.stderr.strip())  # e.g. "you are not seeing messages from other users"
    entries = []
    for line in r.stdout.splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(raw, dict):
            entries.append(entry(raw))
    output.emit_json({"ok": True, "units": units, "count": len(entries), "entries": entries})


def _follow_json(argv: list[str]) -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(raw, dict):
                output.emit_json({"entry": entry(raw)})
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait()
