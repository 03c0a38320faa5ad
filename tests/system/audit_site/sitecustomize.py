"""Loaded by every Python process of a test run that puts this folder on PYTHONPATH (see
tests/system/test_demo_secrets.py): with ``GATEWAY_AUDIT_DIR`` set, the process records its own
command line and copies everything it writes to standard output and standard error, at the file
descriptor level, into that folder. Test-only: never installed."""

from __future__ import annotations

import os
import subprocess
import sys


def _tee(fd: int, path: str) -> None:
    original = os.dup(fd)
    tee = subprocess.Popen(["tee", "-a", path], stdin=subprocess.PIPE, stdout=original,
                           stderr=subprocess.DEVNULL, close_fds=True)  # fmt: skip
    assert tee.stdin is not None
    os.dup2(tee.stdin.fileno(), fd)
    tee.stdin.close()
    os.close(original)


def _audit(folder: str) -> None:
    pid = os.getpid()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    with open(os.path.join(folder, f"{pid}.cmdline"), "wb") as f:
        f.write(cmdline)
    sys.stdout.flush()
    sys.stderr.flush()
    _tee(1, os.path.join(folder, f"{pid}.stdout"))
    _tee(2, os.path.join(folder, f"{pid}.stderr"))


if os.environ.get("GATEWAY_AUDIT_DIR"):
    _audit(os.environ["GATEWAY_AUDIT_DIR"])
