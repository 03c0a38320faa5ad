"""Command-line options the reference things share (click only: importing this does not load
the Thread network core, which ``attach`` brings in when a thing attaches)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["attach_options"]


def _service_type(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    labels = value.split(".")
    if (
        len(labels) != 2
        or not all(x.startswith("_") and 1 < len(x) <= 63 for x in labels)
        or (labels[1] not in ("_udp", "_tcp"))
    ):
        raise click.BadParameter("a service type is _name._udp or _name._tcp")
    return value


def _label(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not 1 <= len(value.encode()) <= 63 or "." in value):
        raise click.BadParameter("one DNS label: 1 to 63 bytes, no dots")
    return value


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
        click.option("--srp/--no-srp", default=True, show_default=True,
                     help="once attached with an OMR address, register a host and a service "
                          "with the SRP server found in the Network Data"),
        click.option("--srp-host", metavar="NAME", callback=_label,
                     help="the SRP host name (default: thing- and the EUI-64)"),
        click.option("--srp-instance", metavar="NAME", callback=_label,
                     help="the service instance name (default: the host name)"),
        click.option("--srp-type", default="_test._udp", show_default=True,
                     callback=_service_type, help="the service type"),
        click.option("--srp-port", type=click.IntRange(1, 65535),
                     help="the service's port (default: the --udp-echo port, else 12345)"),
        click.option("--srp-lease", type=click.IntRange(0, 0xFFFFFFFF), default=7200,
                     show_default=True, help="the lease asked for (seconds)"),
        click.option("--srp-key-lease", type=click.IntRange(0, 0xFFFFFFFF), default=1209600,
                     show_default=True, help="the key-lease asked for (seconds)"),
    ]  # fmt: skip

    def decorate(f: Callable[..., Any]) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate
