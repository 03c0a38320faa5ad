"""The gateway's configuration: TOML parsed once into typed, validated, frozen settings.

Every setting has a default, so a missing or empty file is a valid configuration. Unknown keys are
errors (a typo must not silently fall back to a default). ``GATEWAY_RADIO_URL`` overrides
``[radio] url``. ``gwctl config show --json`` prints the effective settings.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

from gateway.errors import ConfigError
from gateway.runtime.paths import Paths

_IFNAME = re.compile(r"[A-Za-z0-9._-]{1,15}")

DEFAULT_RADIO_URL = (
    "at86rf233:///dev/spidev0.0?gpiochip=/dev/gpiochip0&irq=23&reset=24&slp_tr=25&speed_hz=4000000"
)


@dataclass(frozen=True)
class RadioSettings:
    url: str = DEFAULT_RADIO_URL
    tx_power_dbm: float = 4.0
    # reserve this many frame counters ahead on disk (OpenThread stores 1000 ahead)
    frame_counter_reserve: int = 1000

    def validate(self) -> None:
        if not self.url:
            raise ConfigError("[radio] url must not be empty")
        if not -17.0 <= self.tx_power_dbm <= 4.0:
            raise ConfigError("[radio] tx_power_dbm must be within -17..4 dBm")
        if not 16 <= self.frame_counter_reserve <= 1_000_000:
            raise ConfigError("[radio] frame_counter_reserve must be within 16..1000000")


@dataclass(frozen=True)
class NetworkSettings:
    # the WLAN/LAN uplink: "auto" follows the interface holding the default route
    uplink: str = "auto"

    def validate(self) -> None:
        if not self.uplink or len(self.uplink) > 15:
            raise ConfigError("[network] uplink must be 'auto' or an interface name")


@dataclass(frozen=True)
class ThreadSettings:
    network_name: str = ""  # empty: generated on first start
    channel: int = 0  # 0: chosen on first start (quietest channel)
    # the commissioning passphrase is never in this file: `gwctl dataset passphrase`

    def validate(self) -> None:
        if self.channel and not 11 <= self.channel <= 26:
            raise ConfigError("[thread] channel must be 0 (automatic) or within 11..26")
        if len(self.network_name.encode()) > 16:
            raise ConfigError("[thread] network_name has at most 16 bytes")


@dataclass(frozen=True)
class BorderRouterSettings:
    # 49191 is the customary MeshCoP port; 0 lets the system choose (OpenThread's default).
    # Commissioners find the port through the _meshcop._udp DNS-SD advertisement either way.
    border_agent_port: int = 49191
    advertise_mdns: bool = True
    max_children: int = 32  # the child table's bound (RouterConfig; at most 511)
    # Border routing between the Thread network and this LAN interface (the installer sets it
    # to the uplink it finds); empty: no Thread interface, no RAs, no OMR prefix.
    infra_interface: str = ""
    thread_interface: str = "wpan0"  # the TUN device that carries the Thread network's IPv6
    srp_port: int = 53536  # the SRP server's UDP port (OpenThread's first unicast port)

    def validate(self) -> None:
        for key, name in (("infra_interface", self.infra_interface),
                          ("thread_interface", self.thread_interface)):  # fmt: skip
            if (key == "thread_interface" or name) and not _IFNAME.fullmatch(name):
                raise ConfigError(
                    f"[border_router] {key} must be a network interface name (1-15 of "
                    "letters, digits, '.', '-', '_')"
                )
        if self.infra_interface and self.infra_interface == self.thread_interface:
            raise ConfigError("[border_router] infra_interface and thread_interface must differ")
        if not 1024 <= self.srp_port <= 65535:
            raise ConfigError("[border_router] srp_port must be within 1024..65535")
        if not 1 <= self.max_children <= 511:
            raise ConfigError("[border_router] max_children must be within 1..511")
        if self.border_agent_port != 0 and not 1024 <= self.border_agent_port <= 65535:
            raise ConfigError(
                "[border_router] border_agent_port must be 0 (any free port) or within 1024..65535"
            )


@dataclass(frozen=True)
class GroupOwnerSettings:
    cloud_url: str = "coaps://127.0.0.1:5684"
    window_s: int = 120  # how long a bootstrapping window stays open

    def validate(self) -> None:
        if not 10 <= self.window_s <= 3600:
            raise ConfigError("[group_owner] window_s must be within 10..3600")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "info"

    def validate(self) -> None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("[logging] level must be debug, info, warning or error")


@dataclass(frozen=True)
class Settings:
    radio: RadioSettings = field(default_factory=RadioSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    thread: ThreadSettings = field(default_factory=ThreadSettings)
    border_router: BorderRouterSettings = field(default_factory=BorderRouterSettings)
    group_owner: GroupOwnerSettings = field(default_factory=GroupOwnerSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    paths: Paths = field(default_factory=Paths.from_env)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "paths":
                out["paths"] = {k: str(v) for k, v in value.__dict__.items()}
            else:
                out[f.name] = dict(value.__dict__)
        return out


def _coerce(section: str, key: str, value: Any, typ: Any) -> Any:
    where = f"[{section}] {key}"
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        return value
    raise ConfigError(f"{where}: unsupported type")


def _section(name: str, cls: type[Any], raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown setting '{key}' in [{name}]{hint}")
        kwargs[key] = _coerce(name, key, value, hints[key])
    obj = cls(**kwargs)
    obj.validate()
    return obj


def parse_settings(
    text: str, source: str = "configuration", paths: Paths | None = None
) -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    return _settings_from(data, source, paths)


def _settings_from(data: dict[str, Any], source: str, paths: Paths | None = None) -> Settings:
    kwargs: dict[str, Any] = {}
    known = {f.name: f for f in fields(Settings) if f.name != "paths"}
    hints = get_type_hints(Settings)
    for name, raw in data.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            raise ConfigError(f"unknown section [{name}] in {source}{hint}")
        kwargs[name] = _section(name, hints[name], raw)
    settings = Settings(**kwargs, paths=paths or Paths.from_env())
    for f in fields(settings):
        value = getattr(settings, f.name)
        if is_dataclass(value) and hasattr(value, "validate") and f.name not in kwargs:
            value.validate()
    return settings


def load_settings(paths: Paths | None = None) -> Settings:
    """The effective settings: the file (missing or empty is fine), then the environment."""
    paths = paths or Paths.from_env()
    try:
        text = paths.config.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except PermissionError:
        raise ConfigError(f"no permission to read {paths.config}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {paths.config}: {exc}") from None
    settings = parse_settings(text, str(paths.config), paths)
    url = os.environ.get("GATEWAY_RADIO_URL")
    if url:
        settings = replace(settings, radio=replace(settings.radio, url=url))
    return settings


def write_setting(path: Path, dotted: str, value: str) -> Settings:
    """Set ``section.key`` in the TOML file (validated before anything is written).

    The file is edited, not rewritten: through tomlkit, the operator's comments, blank lines,
    key order and formatting stay as they were; only the one value changes (or is appended to
    its table, or a new table at the end)."""
    import tomlkit
    import tomlkit.exceptions

    from gateway.runtime.state import atomic_write

    section, _, key = dotted.partition(".")
    if not section or not key:
        raise ConfigError(f"'{dotted}': use section.key, e.g. radio.tx_power_dbm")
    try:
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        data = tomllib.loads(before)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    parsed: Any
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word is a string
    table = data.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table")
    table[key] = parsed
    # validate the values themselves (a list or table must not slip through as its string form)
    settings = _settings_from(data, str(path))
    try:
        doc = tomlkit.parse(before)
        if section not in doc:
            doc.add(section, tomlkit.table())
        doc[section][key] = parsed
        text = tomlkit.dumps(doc)
    except (tomlkit.exceptions.TOMLKitError, TypeError, ValueError):
        text = ""
    try:
        written = parse_settings(text, str(path)) if text else None
    except ConfigError:
        written = None
    if written != settings:
        raise ConfigError(f"'{dotted}': this value cannot be written to the file")
    atomic_write(path, text.encode(), mode=0o644)
    return settings


def config_path_writable(path: Path) -> bool:
    return os.access(path.parent if not path.exists() else path, os.W_OK)


__all__ = ["Settings", "load_settings", "parse_settings", "write_setting", "Path"]
