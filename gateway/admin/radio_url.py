"""Which radio a ``gwctl radio`` command uses (DESIGN §8): ``--radio URL``, else the running
radio service, else ``$GATEWAY_RADIO_URL``, else the configured ``[radio] url``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.runtime.paths import Paths
from gateway.runtime.settings import DEFAULT_RADIO_URL, load_settings

if TYPE_CHECKING:
    from drivers.radio import Radio
    from gateway.admin.remote_radio import RemoteRadio

__all__ = ["DEFAULT_RADIO_URL", "configured_radio_url", "open_target"]


def configured_radio_url() -> str:
    """``$GATEWAY_RADIO_URL``, else ``[radio] url`` of the configuration (ConfigError, exit 9,
    when the file is invalid), else the default (the real chip on the Pi's SPI bus)."""
    return load_settings().radio.url


async def open_target(radio_url: str | None) -> Radio | RemoteRadio:
    """The radio to use, not yet opened for a direct radio (``async with`` opens it)."""
    from drivers.radio import open_radio

    if radio_url:
        return open_radio(radio_url)
    from gateway.admin.remote_radio import RemoteRadio

    remote = await RemoteRadio.connect_if_running(Paths.from_env().radio_socket())
    if remote is not None:
        return remote
    return open_radio(configured_radio_url())
