"""The ``at86rf233:`` radio: the real chip through spidev and the GPIO character device."""

from __future__ import annotations

import hashlib
from pathlib import Path

from drivers.at86rf233.driver import At86rf233Radio
from drivers.errors import RadioUrlError
from drivers.gpio import GpiodLines
from drivers.radio import RadioUrl
from drivers.spi import SpidevBus


def machine_eui64() -> bytes:
    """A stable, locally administered EUI-64 derived from the machine id (the AT86RF233 has no
    EUI-64 of its own)."""
    try:
        mid = Path("/etc/machine-id").read_text().strip()
    except OSError:
        mid = "no-machine-id"
    h = hashlib.sha256(f"gateway-radio-eui64/{mid}".encode()).digest()
    return bytes(((h[0] & 0xFC) | 0x02,)) + h[1:8]


def hardware_radio(url: str, p: RadioUrl) -> At86rf233Radio:
    dev = p.path or "/dev/spidev0.0"
    if dev.startswith("//"):
        dev = dev[2:]
    spi = SpidevBus(dev, p.get_int("speed_hz", 4_000_000, 100_000, 7_500_000))
    gpio = GpiodLines(
        p.params.get("gpiochip", "/dev/gpiochip0"),
        p.get_int("irq", 23, 0, 511),
        p.get_int("reset", 24, 0, 511),
        p.get_int("slp_tr", 25, 0, 511),
    )
    eui_raw = p.params.get("eui64")
    eui64 = bytes.fromhex(eui_raw.replace(":", "")) if eui_raw else machine_eui64()
    if len(eui64) != 8:
        raise RadioUrlError(f"eui64={eui_raw!r} is not 16 hex digits")
    return At86rf233Radio(url, spi, gpio, eui64=eui64, backend="at86rf233")
