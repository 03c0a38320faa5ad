"""Typed errors shared by the whole product.

Every error carries a stable ``code`` (never reused, never renumbered), the process exit code
``gwctl`` uses for it (DESIGN §8), and a ``hint`` a technician can act on. Messages never contain
key material: callers pass identifiers, not secrets.
"""

from __future__ import annotations

from typing import Any, ClassVar

_REGISTRY: dict[str, type[GatewayError]] = {}


class GatewayError(Exception):
    """Root of every error the product raises on purpose."""

    code: ClassVar[str] = "GW000"
    exit_code: ClassVar[int] = 1
    default_hint: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            other = _REGISTRY.get(cls.code)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise TypeError(f"error code {cls.code} used by {other.__qualname__} and {cls}")
            _REGISTRY[cls.code] = cls

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return self.message


def error_class(code: str) -> type[GatewayError]:
    """The registered class for a stable code (``GatewayError`` when unknown)."""
    return _REGISTRY.get(code, GatewayError)


_REGISTRY[GatewayError.code] = GatewayError


# --- radio ------------------------------------------------------------------------------------


class RadioError(GatewayError):
    code = "RAD000"
    default_hint = "Run 'gwctl radio probe' and 'gwctl doctor' to check the radio."


class RadioUrlError(RadioError):
    code = "RAD001"
    exit_code = 9
    default_hint = (
        "Radio URLs look like 'at86rf233:///dev/spidev0.0?gpiochip=/dev/gpiochip0&irq=23&reset=24"
        "&slp_tr=25', 'emulated:?node=1&port_offset=0', "
        "'spinel+hdlc+uart:///dev/ttyACM0?uart-baudrate=460800' or "
        "'spinel+hdlc+forkpty:///path/to/ot-rcp?forkpty-arg=1'."
    )


class NoSuchDevice(RadioError):
    code = "RAD002"
    exit_code = 3
    default_hint = (
        "Check that SPI is enabled ('dtparam=spi=on' in config.txt), that the at86rf233 overlay is "
        "not loaded, and that the device path in the radio URL exists."
    )


class RadioPermissionDenied(RadioError):
    code = "RAD003"
    exit_code = 4
    default_hint = "Run as root or add the user to the 'spi' and 'gpio' groups."


class WrongChip(RadioError):
    code = "RAD004"
    exit_code = 5
    default_hint = "The device on this SPI bus is not an AT86RF233; check the wiring and the URL."


class RadioNotResponding(RadioError):
    code = "RAD005"
    exit_code = 6
    default_hint = (
        "The chip did not answer or could not be recovered by a reset. Check the SPI wiring, the "
        "RSTN/IRQ/SLP_TR pins and the power supply."
    )


class RadioTransientError(RadioError):
    """A fault that a reset recovered from; the operation may be retried."""

    code = "RAD006"
    exit_code = 6


class TxNoAck(RadioError):
    code = "RAD007"
    exit_code = 7
    default_hint = (
        "The destination did not acknowledge; is it powered, in range and on this channel?"
    )


class TxChannelBusy(RadioError):
    code = "RAD008"
    exit_code = 7
    default_hint = "The channel stayed busy (CSMA-CA failed); try another channel or retry later."


class RadioClosed(RadioError):
    code = "RAD009"
    default_hint = "The radio was closed while the operation ran."


class InvalidArgument(GatewayError):
    code = "GW001"
    exit_code = 2


class ServiceUnavailable(GatewayError):
    code = "GW002"
    exit_code = 8
    default_hint = "Start the service (systemctl start gateway-radio) or check 'gwctl status'."


class ConfigError(GatewayError):
    code = "GW003"
    exit_code = 9
    default_hint = "Check /etc/gateway/gateway.toml (or $GATEWAY_CONFIG)."


class StateError(GatewayError):
    code = "GW004"
    exit_code = 9
    default_hint = (
        "The gateway's saved state is unreadable. Restore a backup with 'gwctl restore' or, "
        "as a last resort, 'gwctl factory-reset'."
    )


# --- OpenThread RCP (Spinel) ------------------------------------------------------------------


class RcpIncompatible(WrongChip):
    """The device answers Spinel but is not an RCP this gateway can drive (protocol or RCP API
    version out of range, or a missing capability). The message names what the RCP reported and
    what the gateway supports."""

    code = "RAD010"
    exit_code = 5
    default_hint = (
        "Flash the dongle with an OpenThread RCP firmware (ot-rcp) built from a recent "
        "OpenThread: Spinel protocol 4.3, RCP API 4 or newer (see docs/radio-rcp.md). An NCP "
        "firmware (ot-ncp) or a Zigbee firmware does not work as a radio."
    )


class RcpNotResponding(RadioNotResponding):
    """The RCP did not answer, or kept failing after being reset and re-initialised."""

    code = "RAD011"
    exit_code = 6
    default_hint = (
        "Unplug and replug the USB dongle; check the baud rate in the radio URL "
        "(uart-baudrate=460800 for most RCP firmware, 115200 for some) and that no other "
        "program (otbr-agent, zigbee2mqtt) holds the serial port. 'gwctl radio probe' shows the "
        "RCP's fault counters."
    )
