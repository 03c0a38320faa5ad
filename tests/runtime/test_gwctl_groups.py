"""gwctl carries the commands that live with their services (loaded only when used)."""

from __future__ import annotations

from click.testing import CliRunner

from gateway.admin.cli import main


def test_service_command_groups_are_reachable():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    for group, sub in (
        ("bootstrap", "sessions"),
        ("commissioner", "joiner"),
        ("dataset", "passphrase"),
    ):
        assert group in top.output
        r = runner.invoke(main, [group, "--help"])
        assert r.exit_code == 0, r.output
        assert sub in r.output


def test_unknown_command_is_a_usage_error():
    assert CliRunner().invoke(main, ["nosuch"]).exit_code == 2
