"""Output conventions of gwctl: one JSON document on stdout with --json, everything else
(progress, logs, hints) on stderr; colour only on a terminal and never with NO_COLOR."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

SCHEMA_VERSION = 1


def use_color(stream: TextIO) -> bool:
    return (
        stream.isatty()
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM", "") not in ("", "dumb")
    )


def style(text: str, code: str, stream: TextIO = sys.stdout) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if use_color(stream) else text


def emit_json(doc: dict[str, Any]) -> None:
    out = {"schema_version": SCHEMA_VERSION, **doc}
    sys.stdout.write(json.dumps(out, sort_keys=False) + "\n")
    sys.stdout.flush()


def info(msg: str) -> None:
    """Progress and notes for a human: always stderr."""
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class Progress:
    """A one-line progress indicator on stderr, only when stderr is a terminal."""

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
