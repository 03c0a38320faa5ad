"""Command-line options the reference things share (click only: importing this does not load
the Thread network core, which ``attach`` brings in when a thing attaches)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["attach_options"]


def attach_options(after: str, state_help: str) -> Callable[[Callable[..., Any]], Any]:
    """The ``--attach``, ``--sleepy``, ``--child-timeout``, ``--poll-period``, ``--state`` and
    ``--attach-for`` options both reference things share (``after``: "joining", ...)."""
    options = [
        click.option("--attach", is_flag=True,
                     help=f"after {after}, attach to the Thread network as a child and stay"),
        click.option("--sleepy", is_flag=True, help="attach as a sleepy child (rx-off, polling)"),
        click.option("--child-timeout", type=click.IntRange(6, 100000), default=240,
                     show_default=True, help="the child timeout asked of the parent (seconds)"),
        click.option("--poll-period", type=click.FloatRange(0.1, 100000),
                     help="sleepy: seconds between polls (default: timeout - 4 s)"),
        click.option("--state", type=click.Path(path_type=Path), help=state_help),
        click.option("--attach-for", type=click.FloatRange(0), default=0.0,
                     help="stay attached this many seconds (0: until SIGTERM/SIGINT)"),
        click.option("--ping", "ping_addr", metavar="ADDR",
                     help="once attached, ping this IPv6 address (from an OMR address when the "
                          "destination is off the mesh) and report the result"),
        click.option("--ping-count", type=click.IntRange(1, 10000), default=20, show_default=True),
        click.option("--ping-size", type=click.IntRange(0, 1232), default=8, show_default=True),
        click.option("--udp-echo", type=click.IntRange(1, 65535), metavar="PORT",
                     help="answer every UDP datagram to this port with the same payload"),
        click.option("--udp-send", metavar="[ADDR]:PORT",
                     help="once attached, send UDP datagrams here and count the echoes"),
        click.option("--udp-size", type=click.IntRange(0, 1232), default=1200, show_default=True),
        click.option("--udp-count", type=click.IntRange(1, 10000), default=20, show_default=True),
    ]  # fmt: skip

    def decorate(f: Callable[..., Any]) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate
