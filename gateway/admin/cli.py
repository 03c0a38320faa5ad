"""gwctl: the technician's command line (DESIGN §8; docs/gwctl.md).

Exit codes: 0 success; 1 failure not listed here; 2 usage; 3 no such device; 4 permission denied;
5 wrong chip; 6 radio not responding; 7 transmission not acknowledged or channel busy; 8 service
not running or unreachable; 9 bad configuration or state.

Every command takes ``--json`` (one document on stdout with ``schema_version``; progress and logs
on stderr). Modules are imported lazily where they are heavy, so that ``gwctl radio sniff``
captures within a second.
"""

from __future__ import annotations

import importlib

import click

from gateway.admin.config_cmd import config
from gateway.admin.doctor import doctor
from gateway.admin.logs_cmd import logs
from gateway.admin.maintenance_cmd import backup, factory_reset, restore
from gateway.admin.radio_cmd import radio, radio_option
from gateway.admin.status_cmd import status
from gateway.cli.common import EXIT_CODES_HELP, fail, json_option, run

__all__ = ["EXIT_CODES_HELP", "fail", "json_option", "main", "radio_option", "run"]


class _LazyGroup(click.Group):
    """Commands that live with their service (Thread commissioning in the border router, CBSB in
    the group owner) are imported only when used, so that every other command stays quick."""

    LAZY = {
        "bootstrap": "gateway.group_owner.cli:bootstrap",
        "commissioner": "gateway.border_router.cli:commissioner",
        "dataset": "gateway.border_router.cli:dataset",
        "thread": "gateway.border_router.cli:thread",
        "srp": "gateway.border_router.cli:srp",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.LAZY.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(
    cls=_LazyGroup,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="thing-gateway", prog_name="gwctl")
def main() -> None:
    """Administer the thing-bootstrapping gateway.

    Paths follow the services: $GATEWAY_CONFIG (/etc/gateway/gateway.toml), $GATEWAY_STATE_DIR
    (/var/lib/gateway), $GATEWAY_RUNTIME_DIR (/run/gateway)."""


for _cmd in (status, radio, logs, config, backup, restore, factory_reset, doctor):
    main.add_command(_cmd)


if __name__ == "__main__":
    main()
