"""Talking to the services' control sockets (DESIGN §5): which services run, and their status.

A service "runs" when its control socket accepts a connection and answers. A socket file with
nobody behind it (a crashed service) is "not running"; a socket we may not connect to is
reported as such (it may well run: gwctl then needs root or the 'gateway' group).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from drivers.errors import GatewayError, ServiceUnavailable
from gateway.cli.control import UNITS, call
from gateway.runtime.jsonline import AccessDenied
from gateway.runtime.paths import SERVICES, Paths

# Field names that must never leave gwctl even if a service one day reports them.
_SECRET_FIELDS = frozenset(
    {
        "key",
        "network_key",
        "pskc",
        "pskd",
        "psk",
        "kek",
        "password",
        "passphrase",
        "secret",
        "master_key",
        "private_key",
        "credentials",
    }  # fmt: skip
)


@dataclass(frozen=True)
class Answer:
    service: str
    status: dict[str, Any] | None  # None: no answer
    error: GatewayError | None = None

    @property
    def running(self) -> bool:
        return self.status is not None

    @property
    def maybe_running(self) -> bool:
        """Running, or present but not ours to ask (permission denied): unsafe to assume it
        is stopped."""
        return self.running or isinstance(self.error, AccessDenied)


def redact(obj: Any) -> Any:
    """A copy of a status document without any field named like a secret."""
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items() if str(k).lower() not in _SECRET_FIELDS}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


async def ask(paths: Paths, service: str, timeout: float = 3.0) -> Answer:
    if not paths.control_socket(service).exists():
        return Answer(
            service,
            None,
            ServiceUnavailable(
                f"the {service} service is not running", hint=f"systemctl start {UNITS[service]}"
            ),
        )
    try:
        status = await call(paths, service, "status", timeout)
    except GatewayError as exc:
        return Answer(service, None, exc)
    if not isinstance(status, dict):
        return Answer(service, None, ServiceUnavailable(f"{service}: malformed status answer"))
    return Answer(service, redact(status))


async def ask_all(paths: Paths, timeout: float = 3.0) -> dict[str, Answer]:
    answers = await asyncio.gather(*(ask(paths, s, timeout) for s in SERVICES))
    return {a.service: a for a in answers}


async def refuse_if_running(paths: Paths, what: str) -> None:
    """Raise :class:`ServicesRunning` when any service runs (or might: socket not ours)."""
    from gateway.admin.errors import ServicesRunning

    answers = await ask_all(paths, timeout=2.0)
    live = [a.service for a in answers.values() if a.maybe_running]
    if live:
        raise ServicesRunning(
            f"refusing to {what} while services run ({', '.join(live)}): they hold the state in "
            "memory and would overwrite it"
        )
