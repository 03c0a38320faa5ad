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


def redact(text: str) -> str:
    """``text`` with every registered secret masked."""
    with _LOCK:
        for s in _SECRETS:
            if s in text:
                text = text.replace(s, "[redacted]")
    return text


_EXC_FORMATTER = logging.Formatter()
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Masks registered secrets in everything a handler can emit from a record: the message
    with its arguments, the traceback and stack, and extra fields. The journal handler sends
    every attribute of the record as a field, so the record itself is rewritten: the message is
    formatted once and its arguments dropped, the exception is kept only as masked text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        record.exc_info = None  # the text form stays (formatters append exc_text)
        if not _SECRETS:
            return True
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value))
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
