"""Where the gateway keeps things (DESIGN §5), with the environment overrides tests and the demo
use to run unprivileged in a temporary directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/gateway/gateway.toml")
DEFAULT_STATE_DIR = Path("/var/lib/gateway")
DEFAULT_RUNTIME_DIR = Path("/run/gateway")
# Factory provisioning (serial, factory secret, cloud URL and CA, claim code): written at
# manufacturing, read-only for the services; no reset, restore or uninstall touches it.
DEFAULT_FACTORY_DIR = Path("/var/lib/gateway-factory")
SERVICES = ("radio", "border-router", "group-owner")


@dataclass(frozen=True)
class Paths:
    config: Path
    state_dir: Path
    runtime_dir: Path
    factory_dir: Path = DEFAULT_FACTORY_DIR

    @classmethod
    def from_env(cls) -> Paths:
        return cls(
            config=Path(os.environ.get("GATEWAY_CONFIG", DEFAULT_CONFIG)),
            state_dir=Path(os.environ.get("GATEWAY_STATE_DIR", DEFAULT_STATE_DIR)),
            runtime_dir=Path(os.environ.get("GATEWAY_RUNTIME_DIR", DEFAULT_RUNTIME_DIR)),
            factory_dir=Path(os.environ.get("GATEWAY_FACTORY_DIR", DEFAULT_FACTORY_DIR)),
        )

    def service_runtime(self, service: str) -> Path:
        """Each service keeps its own runtime subdirectory (a restart removes only its own)."""
        return self.runtime_dir / service

    def control_socket(self, service: str) -> Path:
        return self.service_runtime(service) / "control.sock"

    def radio_socket(self) -> Path:
        return self.service_runtime("radio") / "radio.sock"
