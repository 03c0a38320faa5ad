"""The GPIO seam: the radio's IRQ input (edge events on a pollable fd), RSTN and SLP_TR outputs.

Only edges are reported (the GPIO character device has no level interrupts), so the driver must
re-check :meth:`RadioGpio.irq_level` after clearing IRQ_STATUS to never lose an event.
"""

from __future__ import annotations

import abc
import errno
from typing import Any

from drivers.errors import NoSuchDevice, RadioNotResponding, RadioPermissionDenied


class RadioGpio(abc.ABC):
    async def open(self) -> None:  # noqa: B027 - optional hook
        """Request the lines (backends that need it)."""

    @property
    @abc.abstractmethod
    def irq_fd(self) -> int:
        """A file descriptor that becomes readable when IRQ edge events are pending."""

    @abc.abstractmethod
    def read_irq_edges(self) -> int:
        """Consume pending rising-edge events; return how many there were."""

    @abc.abstractmethod
    def irq_level(self) -> bool:
        """True while the IRQ line is asserted."""

    @abc.abstractmethod
    def set_reset(self, asserted: bool) -> None:
        """Drive RSTN (asserted = chip held in reset, physical low)."""

    @abc.abstractmethod
    def set_slp_tr(self, high: bool) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class GpiodLines(RadioGpio):
    """libgpiod v2 (the ``gpiod`` package): one line request holding IRQ, RSTN and SLP_TR."""

    def __init__(self, chip: str, irq: int, reset: int, slp_tr: int) -> None:
        self._chip = chip
        self._offsets = (irq, reset, slp_tr)
        self._req: Any = None

    async def open(self) -> None:
        import gpiod  # lazily: not needed on the emulated radio
        from gpiod.line import Direction, Edge, Value

        chip = self._chip
        irq, reset, slp_tr = self._offsets
        self._active = Value.ACTIVE
        self._inactive = Value.INACTIVE
        config: dict[Any, Any] = {
            irq: gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.RISING),
            reset: gpiod.LineSettings(
                direction=Direction.OUTPUT, active_low=True, output_value=Value.INACTIVE
            ),
            slp_tr: gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE),
        }
        try:
            self._req = gpiod.request_lines(
                chip, consumer="gateway-radio", config=config, event_buffer_size=64
            )
        except FileNotFoundError as exc:
            raise NoSuchDevice(f"no GPIO chip {chip}") from exc
        except PermissionError as exc:
            raise RadioPermissionDenied(f"no permission to use {chip}") from exc
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise RadioNotResponding(
                    f"GPIO lines {irq}/{reset}/{slp_tr} on {chip} are in use by another "
                    "program or the kernel's at86rf233 overlay",
                    hint="Remove 'dtoverlay=at86rf233' from config.txt and stop other users.",
                ) from exc
            raise NoSuchDevice(f"cannot request GPIO lines on {chip}: {exc.strerror}") from exc

    @property
    def irq_fd(self) -> int:
        return int(self._req.fd)

    def read_irq_edges(self) -> int:
        if not self._req.wait_edge_events(0):
            return 0
        return len(self._req.read_edge_events())

    def irq_level(self) -> bool:
        return bool(self._req.get_value(self._offsets[0]) == self._active)

    def set_reset(self, asserted: bool) -> None:
        self._req.set_value(self._offsets[1], self._active if asserted else self._inactive)

    def set_slp_tr(self, high: bool) -> None:
        self._req.set_value(self._offsets[2], self._active if high else self._inactive)

    async def close(self) -> None:
        if self._req is not None:
            self._req.release()
            self._req = None
