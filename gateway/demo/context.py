"""What the runner (:mod:`gateway.demo.run`) hands each part of the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

__all__ = ["DemoContext"]


class DemoContext(Protocol):
    tmp: Path
    port_offset: int
    env: dict[str, str]

    def say(self, text: str) -> None: ...

    def step(self, title: str) -> None: ...
