"""The log redaction filter masks registered secrets in everything a handler emits.

Before, only the message was masked: a secret inside an exception (a ``ValueError`` quoting a
key, say) reached the traceback in the log line, and the journal handler, which sends every
attribute of a record as a field, got it in the record's arguments and exception text too."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from gateway.runtime.logs import RedactingFilter, redact, register_secret

SECRET = bytes.fromhex("5ec2e7000102030405060708090a0b0c")


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, list[logging.LogRecord]]]:
    register_secret(SECRET)
    out = io.StringIO()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    stream = logging.StreamHandler(out)
    stream.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.redaction")
    log.propagate = False
    for h in (stream, Keep()):
        h.addFilter(RedactingFilter())
        log.addHandler(h)
    log.setLevel(logging.DEBUG)
    yield log, out, records
    log.handlers.clear()
    log.propagate = True


def _leaks(text: str) -> bool:
    return SECRET.hex() in text or SECRET.hex().upper() in text


def test_traceback_is_masked(
    captured: tuple[logging.Logger, io.StringIO, list[logging.LogRecord]],
) -> None:
    log, out, records = captured
    try:
        raise ValueError(f"bad key {SECRET.hex()}")
    except ValueError:
        log.exception("loading the dataset failed")
    text = out.getvalue()
    assert "Traceback" in text and "ValueError: bad key [redacted]" in text
    assert not _leaks(text)
    # what a journal handler would send: every attribute of the record
    assert records and not any(_leaks(str(v)) for v in records[0].__dict__.values())


def test_arguments_extra_fields_and_stack_are_masked(
    captured: tuple[logging.Logger, io.StringIO, list[logging.LogRecord]],
) -> None:
    log, out, records = captured
    log.warning("key %s from %s", SECRET.hex().upper(), "peer", extra={"KEY_FIELD": SECRET.hex()},
                stack_info=True)  # fmt: skip
    text = out.getvalue()
    assert "key [redacted] from peer" in text and not _leaks(text)
    rec = records[-1]
    assert rec.args is None and not any(_leaks(str(v)) for v in rec.__dict__.values())


def test_redact_masks_every_form() -> None:
    register_secret(SECRET)
    assert redact(f"a {SECRET.hex()} b {SECRET.hex().upper()}") == "a [redacted] b [redacted]"
