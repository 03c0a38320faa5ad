"""Suite-wide fixtures: every test must leave no task running and no port group in use."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import AsyncIterator

import hypothesis.internal.observability  # noqa: F401  (see below)
import pytest

# Imported here, at collection, rather than by hypothesis's own pytest plugin in the terminal
# summary: a run of tests that never import hypothesis otherwise compiled it last, after tests
# that drive parsers into RecursionError, and CPython 3.11.7 then failed that compile with
# "SystemError: AST constructor recursion depth mismatch" (seen twice here), failing a run whose
# tests had all passed.

# Each test that uses the simulated air gets its own OpenThread port offset so tests never share
# an air. The generic fixture draws from 1000..1599; offsets below 1000 are for tests that pick
# their own (interop 40-99, Thread 100-199, CBSB 200-299, runtime 600-899) and for humans
# running OpenThread nodes by hand (0-9).
_FIRST, _SPAN = 1000, 600
_offsets = itertools.count((os.getpid() * 7) % _SPAN, 2)


@pytest.fixture
def port_offset() -> int:
    """A port offset (OpenThread PORT_OFFSET) no other test in this run uses."""
    return _FIRST + next(_offsets) % _SPAN


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if not leaked:
        return
    stacks = []
    for t in leaked:
        buf = io.StringIO()
        t.print_stack(file=buf)
        stacks.append(buf.getvalue())
        t.cancel()
    _done, pending = await asyncio.wait(leaked, timeout=5)
    note = f" ({len(pending)} ignored cancellation)" if pending else ""
    pytest.fail(f"test leaked {len(leaked)} task(s){note}:\n" + "\n".join(stacks))
