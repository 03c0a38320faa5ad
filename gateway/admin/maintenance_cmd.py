"""``gwctl backup``, ``gwctl restore`` and ``gwctl factory-reset``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from drivers.errors import InvalidArgument
from gateway.cli import output
from gateway.cli.common import EXIT_CODES_HELP, confirm, guard, json_option, run, yes_option
from gateway.runtime.paths import Paths

KEEP_SAFE_WARNING = (
    "the backup is encrypted with your passphrase: keep the passphrase apart from the file; "
    "without it the backup cannot be restored, and nobody can recover it."
)
FILE_OPTION_HELP = "Read the backup's passphrase from FILE ('-': standard input); default: prompt."


def _passphrase(source: Path | None, confirm: bool) -> str:
    from gateway.runtime.secret_input import read_secret

    return read_secret(
        None if source is None else str(source), what="the backup's passphrase",
        option="--passphrase-file", confirm=confirm,
    )  # fmt: skip


@click.command("backup", epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=FILE_OPTION_HELP)  # fmt: skip
@json_option
def backup(file: Path, force: bool, passphrase_file: Path | None, as_json: bool) -> None:
    """Save the gateway's state (Thread network and its keys, frame counters, the gateway's
    identity and pairing, every JSON state file) and its configuration to FILE, encrypted with
    a passphrase (at least 8 characters; scrypt and AES-256-GCM), written 0600.

    The factory provisioning (serial, factory secret, claim code) is not in it: it stays on the
    box. Safe while the services run: state files are replaced atomically, and the frame
    counters on disk are ahead of those in use."""
    from gateway.admin.backup import collect, write_backup

    paths = Paths.from_env()

    def go() -> dict[str, Any]:
        if file.exists() and not force:
            raise InvalidArgument(f"{file} exists", hint="Pass --force to overwrite it.")
        passphrase = _passphrase(passphrase_file, confirm=True)
        doc, other = collect(paths)
        size = write_backup(file, doc, passphrase)
        contents = doc["contents"]
        tn = contents["summary"]["thread_network"]
        return {
            "ok": True,
            "file": str(file),
            "bytes": size,
            "format": doc["format"],
            "version": doc["version"],
            "encrypted": True,
            "created_at": doc["created_at"],
            "state_files": [f["path"] for f in contents["state_files"]],
            "config": contents["config"] is not None,
            "network_name": tn["network_name"] if tn else None,
            "skipped": other,
        }

    doc = guard(as_json, go)
    if as_json:
        output.emit_json(doc)
    else:
        print(f"backup written to {doc['file']} ({doc['bytes']} bytes)")
        print(f"  state files  {', '.join(doc['state_files']) or 'none (no state yet)'}")
        print(f"  config       {'included' if doc['config'] else 'none (defaults in use)'}")
        if doc["network_name"]:
            print(f"  network      '{doc['network_name']}'")
    for name in doc["skipped"]:
        output.warn(f"{name} is not a JSON state file and was not backed up")
    output.warn(KEEP_SAFE_WARNING)


@click.command("restore", epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@yes_option
@click.option("--skip-config", is_flag=True, help="Keep the current configuration file.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=FILE_OPTION_HELP)  # fmt: skip
@click.option(
    "--frame-counter-increment",
    type=click.IntRange(1000, 1 << 30),
    default=100_000,
    show_default=True,
    help="Added to every restored frame counter (more for an old backup of a busy gateway).",
)
@json_option
def restore(
    file: Path,
    yes: bool,
    skip_config: bool,
    passphrase_file: Path | None,
    frame_counter_increment: int,
    as_json: bool,
) -> None:
    """Replace the gateway's state (and configuration) with a backup's.

    Refuses a wrong passphrase, a file of another format, of a newer version or with a bad
    checksum (exit 9) without touching the state, and refuses while any service runs (stop
    them first). Frame counters are never lowered and are
    moved past anything used since the backup. The replaced state is kept aside in the state
    directory (.pre-restore-*)."""
    from gateway.admin.backup import decode, is_encrypted
    from gateway.admin.backup import restore as do_restore
    from gateway.admin.services import refuse_if_running

    paths = Paths.from_env()

    def load() -> Any:
        try:
            data = file.read_bytes()
        except PermissionError:
            from gateway.admin.errors import AdminPermissionDenied

            raise AdminPermissionDenied(f"no permission to read {file}") from None
        if not is_encrypted(data):
            return decode(data)
        return decode(data, _passphrase(passphrase_file, confirm=False))

    bk = guard(as_json, load)
    run(as_json, lambda: refuse_if_running(paths, "restore"))
    net = f", network '{bk.network_name}'" if bk.network_name else ""
    guard(
        as_json,
        lambda: confirm(
            f"Restore the state in {paths.state_dir} from {file} (taken {bk.created_at} on "
            f"{bk.hostname}{net})? The current state is replaced.",
            None,
            yes,
        ),
    )
    report = guard(
        as_json,
        lambda: do_restore(bk, paths, frame_counter_increment, include_config=not skip_config),
    )
    doc = {"ok": True, "file": str(file), "created_at": bk.created_at,
           "increment": frame_counter_increment, **report}  # fmt: skip
    if as_json:
        output.emit_json(doc)
    else:
        print(f"restored {len(report['restored'])} state file(s) from {file}")
        for rel, counters in report["frame_counters"].items():
            for key, v in counters.items():
                print(f"  frame counter {rel} {key}: {v['before']} -> {v['after']}")
        print(f"  configuration {'restored' if report['config_restored'] else 'kept'}")
        if report["moved_aside"]:
            print(f"  previous state kept in {report['moved_aside']}")
    for w in report["warnings"]:
        output.warn(w)
    output.info("start the services: systemctl start gateway-radio gateway-border-router "
                "gateway-group-owner")  # fmt: skip


@click.command("factory-reset", epilog=EXIT_CODES_HELP)
@yes_option
@click.option("--config", "include_config", is_flag=True,
              help="Also remove the configuration file.")  # fmt: skip
@json_option
def factory_reset(yes: bool, include_config: bool, as_json: bool) -> None:
    """Remove the gateway's state: Thread network and its keys, frame counters, identity.

    Asks to type 'reset' (or --yes); refuses while any service runs. The configuration file is
    kept unless --config. On the next start a new Thread network with a new random network key
    is created, which is why the frame counters may start again from 0."""
    from gateway.admin.backup import factory_reset as do_reset
    from gateway.admin.services import refuse_if_running

    paths = Paths.from_env()
    run(as_json, lambda: refuse_if_running(paths, "reset"))
    what = f"everything in {paths.state_dir}" + (f" and {paths.config}" if include_config else "")
    guard(as_json, lambda: confirm(f"This removes {what}.", "reset", yes))
    report = guard(as_json, lambda: do_reset(paths, include_config))
    if as_json:
        output.emit_json({"ok": True, "state_dir": str(paths.state_dir), **report})
    else:
        print(f"removed {len(report['removed'])} entr(y/ies) from {paths.state_dir}"
              + (f" and {paths.config}" if report["config_removed"] else ""))  # fmt: skip
        output.info("a new Thread network is created when the services next start")
