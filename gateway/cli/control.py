"""Calling a service's control socket from a command line (gwctl and the commands that live with
their service): a typed :class:`ServiceUnavailable` when it does not answer, with the unit to look
at."""

from __future__ import annotations

from typing import Any

from drivers.errors import ServiceUnavailable
from gateway.runtime.jsonline import JsonLineClient
from gateway.runtime.paths import SERVICES, Paths

__all__ = ["UNITS", "call"]

UNITS = {name: f"gateway-{name}.service" for name in SERVICES}


async def call(paths: Paths, service: str, method: str, timeout: float = 3.0, **params: Any) -> Any:
    client = JsonLineClient(paths.control_socket(service))
    try:
        await client.connect(timeout=min(timeout, 1.0))
        try:
            return await client.call(method, timeout=timeout, **params)
        except TimeoutError:
            raise ServiceUnavailable(
                f"the {service} service accepted the connection but did not answer in {timeout} s",
                hint=f"It may be hung; see 'gwctl logs --service {service}' and consider "
                f"'systemctl restart {UNITS[service]}'.",
            ) from None
    finally:
        await client.close()
