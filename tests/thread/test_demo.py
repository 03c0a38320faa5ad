"""The Thread step of ``make demo`` (gateway.demo.thread.demo_thread) against running
services: it must tell the whole story and leave the network locked down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.demo.thread import demo_thread
from tests.thread.stack import thread_stack

pytestmark = pytest.mark.timeout(120)


@dataclass
class Ctx:
    tmp: Path
    port_offset: int
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)

    def step(self, text: str) -> None:
        self.lines.append(f"== {text}")


async def test_demo_thread_tells_both_cases(tmp_path: Path) -> None:
    with thread_stack(tmp_path / "gw", 130, mdns=True) as stack:
        ctx = Ctx(tmp_path, 130, stack.env())
        await demo_thread(ctx)
        text = "\n".join(ctx.lines)
        assert "== Case 1: an external commissioner" in text
        assert "commissioner: petition accepted" in text
        assert (
            "thing 1: JOIN_ENT received" in text and "thing 1 holds the network credentials" in text
        )
        assert "the native commissioner is refused while the laptop is active" in text
        assert "== Case 2: the native commissioner" in text
        assert "thing 2 now holds: network_name" in text
        assert "locked down again" in text
        ds = stack.dataset()
        assert ds.network_key is not None and ds.network_key.hex() not in text
        leader = stack.status()["commissioning"]["leader"]
        assert leader["active_commissioner"] is None and not leader["joining_allowed"]
