"""Suite-wide fixtures: every test must leave no task running and no port group in use."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import AsyncIterator

import pytest

# Each test that uses the simulated air gets its own OpenThread port offset so tests never share
# an air. Offsets 1..9 are left for humans running OpenThread nodes by hand; xdist workers get
# disjoint ranges.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_base = 10 + 200 * int(_worker.removeprefix("gw") or 0) + (os.getpid() % 97) * 2
_offsets = itertools.count(_base, 2)


@pytest.fixture
def port_offset() -> int:
    """A port offset (OpenThread PORT_OFFSET) no other test in this run uses."""
    return next(_offsets) % 1600 + 10


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
