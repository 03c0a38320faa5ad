"""``gwctl config show|set``: the effective settings with where each value comes from, and a
validated change of one setting (the file is only written when the result is valid)."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import fields
from typing import Any, get_type_hints

import click

from drivers.errors import ConfigError, GatewayError
from gateway.admin.errors import AdminPermissionDenied
from gateway.cli import output
from gateway.cli.common import EXIT_CODES_HELP, guard, json_option, run
from gateway.runtime.paths import SERVICES, Paths

# Which services read which section (a change takes effect when they restart).
RESTART: dict[str, tuple[str, ...]] = {
    "radio": ("radio",),
    "network": ("border-router",),
    "thread": ("border-router", "group-owner"),
    "border_router": ("border-router",),
    "group_owner": ("group-owner",),
    "logging": SERVICES,
}
NOTES: dict[str, str] = {
    "thread": "[thread] settings are used when a new Thread network is created (first start or "
    "after 'gwctl factory-reset'); the existing network keeps its name and channel.",
}
ENV_OVERRIDES = {"radio.url": "GATEWAY_RADIO_URL"}
PATH_ENV = {"config": "GATEWAY_CONFIG", "state_dir": "GATEWAY_STATE_DIR",
            "runtime_dir": "GATEWAY_RUNTIME_DIR"}  # fmt: skip


@click.group("config", epilog=EXIT_CODES_HELP)
def config() -> None:
    """Show or change the gateway's configuration (TOML)."""


def _file_keys(paths: Paths) -> set[str]:
    """``section.key`` names set in the configuration file (already known to be valid TOML)."""
    try:
        data = tomllib.loads(paths.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()
    return {f"{s}.{k}" for s, v in data.items() if isinstance(v, dict) for k in v}


def effective(paths: Paths) -> dict[str, Any]:
    from gateway.runtime.settings import load_settings

    settings = load_settings(paths)
    values = settings.as_dict()
    in_file = _file_keys(paths)
    sources: dict[str, str] = {}
    for section, kv in values.items():
        for key in kv:
            dotted = f"{section}.{key}"
            if section == "paths":
                env = PATH_ENV.get(key)
                sources[dotted] = f"env:{env}" if env and os.environ.get(env) else "default"
            elif dotted in ENV_OVERRIDES and os.environ.get(ENV_OVERRIDES[dotted]):
                sources[dotted] = f"env:{ENV_OVERRIDES[dotted]}"
            elif dotted in in_file:
                sources[dotted] = "file"
            else:
                sources[dotted] = "default"
    return {
        "config_file": str(paths.config),
        "config_file_exists": paths.config.exists(),
        "settings": values,
        "sources": sources,
    }


@config.command("show", epilog=EXIT_CODES_HELP)
@json_option
def config_show(as_json: bool) -> None:
    """The effective settings: file, environment overrides and defaults (exit 9 when invalid)."""
    paths = Paths.from_env()
    doc = guard(as_json, lambda: effective(paths))
    if as_json:
        output.emit_json(doc)
        return
    exists = "" if doc["config_file_exists"] else " (absent: every setting has its default)"
    print(output.style(f"# effective settings; file {doc['config_file']}{exists}", output.DIM))
    for section, kv in doc["settings"].items():
        print()
        print(f"[{section}]")
        for key, value in kv.items():
            src = doc["sources"][f"{section}.{key}"]
            line = f"{key} = {_toml_value(value)}"
            print(f"{line:60} " + output.style(f"# {src}", output.DIM))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(str(v))


def _field_type(dotted: str) -> Any:
    from gateway.runtime.settings import Settings

    section, _, key = dotted.partition(".")
    hints = get_type_hints(Settings)
    if section == "paths" or section not in hints:
        return None
    sec_hints = get_type_hints(hints[section])
    return sec_hints.get(key) if key in {f.name for f in fields(hints[section])} else None


@config.command("set", epilog=EXIT_CODES_HELP, context_settings={"ignore_unknown_options": True})
@click.argument("key", metavar="SECTION.KEY")
@click.argument("value")
@json_option
def config_set(key: str, value: str, as_json: bool) -> None:
    """Set one setting in the configuration file, e.g. 'gwctl config set radio.tx_power_dbm 3'.

    The new file is validated before it is written (exit 9 and no change when invalid). The
    services that read the setting must be restarted; gwctl says which. Comments in the file
    are not kept."""
    from gateway.runtime.settings import write_setting

    paths = Paths.from_env()
    raw = value
    if _field_type(key) is str and not (value.startswith('"') or value.startswith("'")):
        raw = json.dumps(value)  # a string setting: never let TOML read "16" as a number

    def write() -> Any:
        try:
            return write_setting(paths.config, key, raw)
        except PermissionError:
            raise AdminPermissionDenied(f"no permission to write {paths.config}") from None
        except OSError as exc:
            raise ConfigError(f"cannot write {paths.config}: {exc.strerror}") from None

    settings = guard(as_json, write)
    section, _, name = key.partition(".")
    new_value = getattr(getattr(settings, section), name)
    restart = list(RESTART.get(section, SERVICES))

    async def live() -> list[str]:
        from gateway.admin.services import ask_all

        answers = await ask_all(paths, timeout=2.0)
        return [s for s in restart if answers[s].running]

    running = run(as_json, live)
    env = ENV_OVERRIDES.get(key)
    overridden = bool(env and os.environ.get(env))
    doc: dict[str, Any] = {
        "ok": True,
        "key": key,
        "value": new_value,
        "file": str(paths.config),
        "restart": restart,
        "running": running,
    }
    if overridden:
        doc["overridden_by"] = f"env:{env}"
    if section in NOTES:
        doc["note"] = NOTES[section]
    if as_json:
        output.emit_json(doc)
    else:
        print(f"{key} = {_toml_value(new_value)}  (written to {paths.config})")
    if overridden:
        output.warn(f"${env} is set and overrides this setting in this environment")
    if section in NOTES:
        output.info(NOTES[section])
    if running:
        units = " ".join(f"gateway-{s}" for s in running)
        output.info(f"restart to apply: systemctl restart {units}")
    else:
        output.info(f"takes effect when {', '.join(restart)} next start(s)")


__all__ = ["config", "effective", "GatewayError"]
