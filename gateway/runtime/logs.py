"""Logging for the services: structured fields to the journal under systemd, plain lines on a
terminal. Secrets are never logged on purpose; as a second line of defence a filter masks any
registered secret value that reaches a message."""

from __future__ import annotations

import logging
import os
import sys
import threading

_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def register_secret(value: bytes | str) -> None:
    """Mask this value (and its hex form) wherever it would appear in a log line."""
    if isinstance(value, bytes):
        if len(value) < 4:
            return
        forms = {value.hex(), value.hex().upper()}
        try:
            text = value.decode()
            if text.isprintable() and len(text) >= 4:
                forms.add(text)
        except UnicodeDecodeError:
            pass
    else:
        if len(value) < 4:
            return
        forms = {value}
    with _LOCK:
        _SECRETS.update(forms)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        msg = record.getMessage()
        masked = msg
        with _LOCK:
            for s in _SECRETS:
                if s in masked:
                    masked = masked.replace(s, "[redacted]")
        if masked != msg:
            record.msg = masked
            record.args = None
        return True


def under_journal() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup_logging(service: str, level: str = "info") -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if under_journal():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER=f"gateway-{service}")
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
