"""python -m gateway.peers.thing {cbsb,join} ... : a thing on an emulated radio.

The two bootstrapping methods live in their own modules and are imported only when used."""

from __future__ import annotations

import importlib

import click

from gateway.cli.common import invoke

METHODS = {
    "cbsb": ("gateway.peers.thing.cbsb", "bootstrap through the gateway's group owner (CBSB-1)"),
    "join": ("gateway.peers.thing.joiner", "join the gateway's Thread network with a PSKd"),
}


class _Methods(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(METHODS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in METHODS:
            return None
        cmd = importlib.import_module(METHODS[cmd_name][0]).command
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Methods"):
            formatter.write_dl([(name, text) for name, (_mod, text) in sorted(METHODS.items())])


@click.group(cls=_Methods, context_settings={"help_option_names": ["-h", "--help"]})
def thing() -> None:
    """A thing on an emulated radio. Run 'python -m gateway.peers.thing METHOD --help' for the
    options of each."""


def main(argv: list[str] | None = None) -> int:
    return invoke(thing, argv, "python -m gateway.peers.thing")


if __name__ == "__main__":
    raise SystemExit(main())
