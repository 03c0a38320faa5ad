"""Which radio a command uses: --radio, else the running radio service, else
$GATEWAY_RADIO_URL, else the configured URL (DESIGN §8)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from drivers.errors import ConfigError

DEFAULT_RADIO_URL = (
    "at86rf233:///dev/spidev0.0?gpiochip=/dev/gpiochip0&irq=23&reset=24&slp_tr=25&speed_hz=4000000"
)
DEFAULT_CONFIG = "/etc/gateway/gateway.toml"


def configured_radio_url() -> str:
    env = os.environ.get("GATEWAY_RADIO_URL")
    if env:
        return env
    path = Path(os.environ.get("GATEWAY_CONFIG", DEFAULT_CONFIG))
    try:
        text = path.read_text()
    except FileNotFoundError:
        return DEFAULT_RADIO_URL
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    url = data.get("radio", {}).get("url", DEFAULT_RADIO_URL)
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{path}: [radio] url must be a non-empty string")
    return url
