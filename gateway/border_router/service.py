"""The border router service: the gateway's Thread side (Leader for commissioning, Border Agent on
the WLAN, Joiner Router on its own radio). This module holds the service shell: it attaches to
the radio service, brings up the gateway's Thread network (created on first start) and keeps the
radio configured for it. The commissioning roles plug in here."""

from __future__ import annotations

import logging
from typing import Any

from gateway.crypto.thread_keys import mac_key_index, network_key_derivation
from gateway.radio.client import RadioClient
from gateway.runtime.network import load_or_create_network
from gateway.runtime.service import Service, run_service
from gateway.wire.dataset import ActiveDataset

LOG = logging.getLogger(__name__)
KEY_SEQUENCE = 0


class BorderRouterService(Service):
    name = "border-router"
    description = "Thread border router: border agent, joiner router, commissioning"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.radio = RadioClient(self.paths.radio_socket(), "border-router")
        self.dataset: ActiveDataset | None = None

    async def start(self) -> None:
        self.set_phase("waiting for the radio service")
        await self.radio.start(timeout=60.0)
        self.radio.on_reconnect = lambda: LOG.info("radio service back; configuration restored")
        self.set_phase("loading the Thread network")
        self.dataset = load_or_create_network(self.settings)
        ds = self.dataset
        assert ds.channel is not None and ds.pan_id is not None and ds.network_key is not None
        await self.radio.set_channel(ds.channel)
        await self.radio.set_addresses(pan_id=ds.pan_id, short_addr=0x0000)
        _mle_key, mac_key = network_key_derivation(ds.network_key, KEY_SEQUENCE)
        await self.radio.register_key(
            "thread-mac", mac_key, key_id_mode=1, key_index=mac_key_index(KEY_SEQUENCE)
        )
        self.set_phase(f"serving Thread network '{ds.network_name}' on channel {ds.channel}")

    async def stop(self) -> None:
        await self.radio.close()

    async def healthy(self) -> bool:
        return self.radio.connected or not self.radio.closing

    def status(self) -> dict[str, Any]:
        ds = self.dataset
        out: dict[str, Any] = {"radio_connected": self.radio.connected,
                               "radio_reconnects": self.radio.reconnects}  # fmt: skip
        if ds is not None:
            out["thread"] = {
                "network_name": ds.network_name,
                "channel": ds.channel,
                "pan_id": f"0x{ds.pan_id:04x}" if ds.pan_id is not None else None,
                "ext_pan_id": ds.ext_pan_id.hex() if ds.ext_pan_id else None,
            }
        return out


def main() -> None:
    run_service(BorderRouterService)
