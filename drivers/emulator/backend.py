"""The ``emulated:`` radio: the real AT86RF233 driver over an emulated SPI bus and GPIO lines,
with the chip model attached to OpenThread's simulated air.

URL parameters (all optional): ``node`` (1..33, default 1), ``air=otsim``, ``port_offset``
(default 0), ``airtime`` (1: frames take their 250 kbit/s airtime, default), ``loss`` (0..1),
``rssi`` (dBm, default -60), ``air_config`` (TOML link file, see drivers.emulator.air),
``ack_timeout_ms`` (default 16, OpenThread's software ACK window), ``noise`` (dBm),
``interference`` (``15:-60,20:-75``: constant energy per channel), ``eui64`` (16 hex digits),
``seed``, ``pcap`` (capture this radio's air traffic), ``part`` (PART_NUM to report, to emulate
another chip), ``spi_ber`` and ``crc_error_rate`` (fault rates), ``dead=1`` (a chip that never
answers on SPI), ``frame_retries`` (the chip's, 0..15, default 3) and ``retry_rounds`` (0..8,
default 2: rounds of them, each after a pause in receive longer than a peer's retry cycle).
"""

from __future__ import annotations

import hashlib
import os
import time

from drivers.at86rf233.driver import At86rf233Radio
from drivers.emulator.air import AirPort, Link, LinkModel
from drivers.emulator.chip import At86rf233Emulator
from drivers.errors import RadioUrlError
from drivers.gpio import RadioGpio
from drivers.pcap import PcapWriter
from drivers.radio import RadioUrl
from drivers.spi import SpiBus

EMULATED_RETRY_ROUNDS = 2  # the real radio's driver makes 1


class EmulatedSpiBus(SpiBus):
    """Transfers are handled inline by the chip model: an in-memory call that never blocks."""

    def __init__(self, chip: At86rf233Emulator) -> None:
        super().__init__()
        self.chip = chip

    async def transfer(self, tx: bytes) -> bytes:
        t0 = time.thread_time_ns()  # CPU time: what the emulator itself costs this thread
        rx = self.chip.spi_transfer(tx)
        self.stats.busy_ns += time.thread_time_ns() - t0
        self.stats.transfers += 1
        self.stats.bytes += len(tx)
        return rx

    async def close(self) -> None:
        pass


class EmulatedGpio(RadioGpio):
    """IRQ edges arrive through an eventfd the event loop can watch, like a gpiod request fd."""

    def __init__(self, chip: At86rf233Emulator) -> None:
        self.chip = chip
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        chip.on_irq_edge = self._edge

    def _edge(self, _ts_ns: int) -> None:
        try:
            os.eventfd_write(self._efd, 1)
        except OSError:
            pass

    @property
    def irq_fd(self) -> int:
        return self._efd

    def read_irq_edges(self) -> int:
        try:
            return os.eventfd_read(self._efd)
        except BlockingIOError:
            return 0

    def irq_level(self) -> bool:
        return self.chip.irq_pin

    def set_reset(self, asserted: bool) -> None:
        self.chip.set_rstn(not asserted)

    def set_slp_tr(self, high: bool) -> None:
        self.chip.set_slp_tr(high)

    async def close(self) -> None:
        self.chip.on_irq_edge = None
        if self._efd >= 0:
            os.close(self._efd)
            self._efd = -1


def _interference(raw: str | None) -> dict[int, float]:
    out: dict[int, float] = {}
    if not raw:
        return out
    for item in raw.split(","):
        try:
            ch, dbm = item.split(":", 1)
            out[int(ch)] = float(dbm)
        except ValueError:
            raise RadioUrlError(f"interference={raw!r}: use 'channel:dBm,...'") from None
    return out


def default_eui64(node: int, port_offset: int) -> bytes:
    """A stable, locally administered EUI-64 for an emulated node."""
    h = hashlib.sha256(f"emulated-at86rf233/{port_offset}/{node}".encode()).digest()
    return bytes(((h[0] & 0xFC) | 0x02, *h[1:7], node))


def emulated_radio(url: str, p: RadioUrl) -> At86rf233Radio:
    node = p.get_int("node", 1, 1, 33)
    offset = p.get_int("port_offset", 0, 0)
    air_kind = p.params.get("air", "otsim")
    if air_kind not in ("otsim", "none"):
        raise RadioUrlError(f"air={air_kind!r} is not known (otsim, or none for no air)")
    link = Link(p.get_float("rssi", -60.0, -120.0, 10.0), p.get_float("loss", 0.0, 0.0, 1.0))
    links = (
        LinkModel.from_file(p.params["air_config"], link)
        if p.params.get("air_config")
        else LinkModel(link)
    )
    eui_raw = p.params.get("eui64")
    if eui_raw:
        try:
            eui64 = bytes.fromhex(eui_raw.replace(":", ""))
        except ValueError:
            eui64 = b""
        if len(eui64) != 8:
            raise RadioUrlError(f"eui64={eui_raw!r} is not 16 hex digits")
    else:
        eui64 = default_eui64(node, offset)
    seed_raw = p.params.get("seed")
    seed = p.get_int("seed", 0) if seed_raw else None
    pcap: PcapWriter | None = PcapWriter(p.params["pcap"]) if p.params.get("pcap") else None
    air = AirPort(node, offset) if air_kind == "otsim" else None

    def tap(channel: int, psdu: bytes, wall: float, _mine: bool) -> None:
        if pcap is not None:
            pcap.write(psdu, wall)

    try:
        chip = At86rf233Emulator(
            air,
            links=links,
            airtime=p.get_bool("airtime", True),
            ack_timeout_ms=p.get_float("ack_timeout_ms", 16.0, 0.5, 1000.0),
            noise_dbm=p.get_float("noise", -100.0, -130.0, 0.0),
            interference=_interference(p.params.get("interference")),
            part_num=p.get_int("part", 0x0B, 0, 255),
            seed=seed,
            on_air_frame=tap if pcap is not None else None,
        )
    except BaseException:
        if air is not None:
            air.close()
        if pcap is not None:
            pcap.close()
        raise
    chip.faults.spi_ber = p.get_float("spi_ber", 0.0, 0.0, 0.01)
    chip.faults.crc_error_rate = p.get_float("crc_error_rate", 0.0, 0.0, 1.0)
    chip.faults.dead = p.get_bool("dead", False)

    async def on_close() -> None:
        chip.close()
        if pcap is not None:
            pcap.close()

    radio = At86rf233Radio(
        url, EmulatedSpiBus(chip), EmulatedGpio(chip), eui64=eui64, backend="emulated",
        on_close=on_close,
    )  # fmt: skip
    # More retry rounds (each after a pause in receive) than the real radio's 1: with the 16 ms
    # ACK window and a Python driver that takes milliseconds to put its chip back into receive
    # on a loaded host, two radios sending to each other stay deaf to each other for longer
    # than on hardware (docs/radio.md, deviations).
    radio._cfg.max_frame_retries = p.get_int("frame_retries", 3, 0, 15)
    radio._cfg.retry_rounds = p.get_int("retry_rounds", EMULATED_RETRY_ROUNDS, 0, 8)
    # the pause outlasts a peer's retry cycle (ACK window + a full frame + back-off), so that a
    # peer still retrying to this radio is heard once
    ack_s = p.get_float("ack_timeout_ms", 16.0, 0.5, 1000.0) / 1000
    radio._cfg.retry_pause_s = (ack_s + 0.008, 0.008)
    radio.emulator = chip  # type: ignore[attr-defined]
    return radio
