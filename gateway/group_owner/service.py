"""The group owner service: cloud-server-based bootstrapping (CBSB) on the gateway's radio. This
module holds the service shell: it attaches to the radio service, shares the gateway's Thread
network (the credentials it delivers) and listens for CBSB frames (their own 6LoWPAN NALP
dispatch). The cloud link and the join exchange plug in here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.radio.client import RadioClient, RxEvent
from gateway.runtime.network import load_or_create_network
from gateway.runtime.service import Service, run_service
from gateway.wire.dataset import ActiveDataset

LOG = logging.getLogger(__name__)
CBSB_DISPATCH = 0x3C


class GroupOwnerService(Service):
    name = "group-owner"
    description = "group owner: cloud link, RandomKey broadcast, CBSB joins"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.radio = RadioClient(self.paths.radio_socket(), "group-owner")
        self.dataset: ActiveDataset | None = None
        self.cbsb_frames = 0

    async def start(self) -> None:
        self.set_phase("waiting for the radio service")
        await self.radio.start(timeout=60.0)
        self.set_phase("loading the Thread network")
        self.dataset = load_or_create_network(self.settings)
        queue = await self.radio.subscribe(dispatch=[CBSB_DISPATCH, CBSB_DISPATCH], secured=False)
        self.spawn(self._cbsb_rx(queue), "cbsb-rx")
        self.set_phase("idle: no bootstrapping window open")

    async def _cbsb_rx(self, queue: asyncio.Queue[RxEvent]) -> None:
        while True:
            await queue.get()
            self.cbsb_frames += 1

    async def stop(self) -> None:
        await self.radio.close()

    async def healthy(self) -> bool:
        return self.radio.connected or not self.radio.closing

    def status(self) -> dict[str, Any]:
        return {
            "radio_connected": self.radio.connected,
            "radio_reconnects": self.radio.reconnects,
            "cbsb_frames": self.cbsb_frames,
        }


def main() -> None:
    run_service(GroupOwnerService)
