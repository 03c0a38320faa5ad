"""The SPI seam: one chip-select window per :meth:`SpiBus.transfer` call.

The spidev backend runs every ioctl on one dedicated single-thread executor that owns the file
descriptor, so a transfer never blocks the event loop and transactions never interleave.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drivers.errors import NoSuchDevice, RadioNotResponding, RadioPermissionDenied


@dataclass
class SpiStats:
    transfers: int = 0
    bytes: int = 0
    busy_ns: int = 0  # time spent inside transfers (wall clock)

    def as_dict(self) -> dict[str, int]:
        return {"transfers": self.transfers, "bytes": self.bytes, "busy_ns": self.busy_ns}


class SpiBus(abc.ABC):
    """Full-duplex SPI: every byte clocked out returns one byte."""

    def __init__(self) -> None:
        self.stats = SpiStats()

    @abc.abstractmethod
    async def transfer(self, tx: bytes) -> bytes:
        """One access: CS low, clock ``tx`` out, return what came back, CS high."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Open the device (backends that need it)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class SpidevBus(SpiBus):
    """``/dev/spidevB.C`` through the ``spidev`` module (mode 0, 8 bits, MSB first)."""

    def __init__(self, path: str, speed_hz: int = 4_000_000) -> None:
        super().__init__()
        self.path = path
        self.speed_hz = speed_hz
        self._dev: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spi")

    def _open_sync(self) -> None:
        import spidev  # imported lazily: not needed on the emulated radio

        name = self.path.rsplit("/", 1)[-1]
        bus_s, _, cs_s = name.removeprefix("spidev").partition(".")
        if not name.startswith("spidev") or not bus_s.isdigit() or not cs_s.isdigit():
            raise NoSuchDevice(f"{self.path} is not a spidev device path (/dev/spidevB.C)")
        # check access on the path itself first: spidev opens /dev/spidevB.C by number
        try:
            os.close(os.open(self.path, os.O_RDWR))
        except FileNotFoundError as exc:
            raise NoSuchDevice(f"no SPI device {self.path}") from exc
        except PermissionError as exc:
            raise RadioPermissionDenied(f"no permission to open {self.path}") from exc
        except OSError as exc:
            raise NoSuchDevice(f"cannot open {self.path}: {exc.strerror}") from exc
        if self.path != f"/dev/spidev{bus_s}.{cs_s}":
            raise NoSuchDevice(f"{self.path}: the SPI device must be /dev/spidev{bus_s}.{cs_s}")
        dev = spidev.SpiDev()
        try:
            dev.open(int(bus_s), int(cs_s))
        except FileNotFoundError as exc:
            raise NoSuchDevice(f"no SPI device {self.path}") from exc
        except PermissionError as exc:
            raise RadioPermissionDenied(f"no permission to open {self.path}") from exc
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise NoSuchDevice(f"no SPI device {self.path}") from exc
            raise RadioNotResponding(f"cannot open {self.path}: {exc.strerror}") from exc
        dev.mode = 0
        dev.bits_per_word = 8
        dev.max_speed_hz = self.speed_hz
        self._dev = dev

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)

    def _xfer(self, tx: bytes) -> tuple[bytes, int]:
        t0 = time.perf_counter_ns()
        try:
            rx = bytes(self._dev.xfer2(list(tx)))
        except OSError as exc:
            raise RadioNotResponding(f"SPI transfer on {self.path} failed: {exc.strerror}") from exc
        return rx, time.perf_counter_ns() - t0

    async def transfer(self, tx: bytes) -> bytes:
        if self._dev is None:
            raise RadioNotResponding(f"{self.path} is not open")
        loop = asyncio.get_running_loop()
        rx, busy = await loop.run_in_executor(self._executor, self._xfer, tx)
        self.stats.transfers += 1
        self.stats.bytes += len(tx)
        self.stats.busy_ns += busy
        return rx

    async def close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, dev.close)
        self._executor.shutdown(wait=True)
