"""The product's typed errors (the root lives in :mod:`drivers.errors`, the lowest layer)."""

from __future__ import annotations

from drivers.errors import (
    ConfigError,
    GatewayError,
    InvalidArgument,
    RadioError,
    ServiceUnavailable,
    StateError,
    error_class,
)

__all__ = [
    "ConfigError",
    "GatewayError",
    "InvalidArgument",
    "ParseError",
    "RadioError",
    "ServiceUnavailable",
    "StateError",
    "error_class",
]


class ParseError(GatewayError, ValueError):
    """The one error every sans-IO parser raises on malformed or hostile bytes."""

    code = "WIRE001"
    default_hint = "A malformed message was received and dropped."


class CryptoError(GatewayError):
    """Authentication or key-agreement failure (wrong password, bad MAC, invalid point)."""

    code = "CRY001"
    default_hint = "Check the passphrase / PSKd on both sides."
