"""Output conventions of every command line (gwctl, the services, the peers): one JSON document on stdout with --json, everything else
(progress, logs, warnings, hints) on stderr; colour only on a terminal, never with NO_COLOR or
TERM=dumb."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

SCHEMA_VERSION = 1

GREEN = "32"
RED = "31;1"
YELLOW = "33"
DIM = "2"
BOLD = "1"


def use_color(stream: TextIO) -> bool:
    return (
        stream.isatty()
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM", "") not in ("", "dumb")
    )


def style(text: str, code: str, stream: TextIO | None = None) -> str:
    stream = sys.stdout if stream is None else stream
    return f"\x1b[{code}m{text}\x1b[0m" if use_color(stream) else text


def emit_json(doc: dict[str, Any]) -> None:
    """The one JSON document of a command (``schema_version`` first)."""
    out = {"schema_version": SCHEMA_VERSION, **doc}
    sys.stdout.write(json.dumps(out, sort_keys=False) + "\n")
    sys.stdout.flush()


def info(msg: str) -> None:
    """Progress and notes for a human: always stderr."""
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def warn(msg: str) -> None:
    info(style("warning:", YELLOW, sys.stderr) + f" {msg}")


def error(msg: str, hint: str | None = None) -> None:
    info(style("error:", RED, sys.stderr) + f" {msg}")
    if hint:
        info(style("hint:", YELLOW, sys.stderr) + f" {hint}")


def duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class Progress:
    """A one-line progress indicator on stderr: a bar on a terminal, plain lines otherwise."""

    def __init__(self, label: str, total: int, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        if self.tty:
            width = 20
            filled = width * done // max(self.total, 1)
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\r{self.label} [{bar}] {done}/{self.total} {note}   ")
            if done >= self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(f"{self.label}: {done}/{self.total} {note}\n")
        sys.stderr.flush()
