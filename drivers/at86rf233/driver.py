"""The AT86RF233 driver, over the :class:`~drivers.spi.SpiBus` and :class:`~drivers.gpio.RadioGpio`
seams. The same code drives the real chip (spidev + gpiod) and the emulator.

Concurrency: one asyncio task services the IRQ line; ``_op`` serialises every access sequence that
reads IRQ_STATUS, changes state or touches the frame buffer; ``_mode`` serialises whole operations
(transmit, energy scan, configuration, sleep) so they never interleave. A transmit waits for its
TRX_END *outside* ``_op`` so the IRQ task can report it.

Faults (SPI corruption, lost or stuck IRQ, unexpected chip reset, PLL that does not lock, a state
change that does not complete) raise :class:`_ChipFault` internally; :meth:`_guarded` then resets
and re-initialises the chip, restores channel, addresses, power and modes, counts it, and retries
the operation once. What cannot be recovered raises :class:`~drivers.errors.RadioNotResponding`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from drivers.at86rf233 import regs
from drivers.at86rf233.regs import Cmd, Irq, Reg, State, Trac
from drivers.errors import (
    InvalidArgument,
    RadioClosed,
    RadioNotResponding,
    RadioTransientError,
    WrongChip,
)
from drivers.fcs import fcs_ok
from drivers.gpio import RadioGpio
from drivers.radio import (
    CHANNELS,
    Radio,
    RadioCounters,
    RadioInfo,
    RxFrame,
    RxSubscription,
    TxResult,
    TxStatus,
)
from drivers.spi import SpiBus

LOG = logging.getLogger(__name__)
T = TypeVar("T")

IRQ_MASK = Irq.TRX_END | Irq.CCA_ED_DONE
FB_READ_LEN = 1 + 1 + regs.MAX_PSDU + 3  # command, PHR, PSDU, LQI, ED, RX_STATUS
MAX_RECOVERY_ATTEMPTS = 3
HEALTH_PERIOD_S = 0.5
# A non-forced state change waits while the chip is busy with a frame: a received frame lasts at
# most 4.3 ms (133 bytes at 250 kbit/s) and its ACK another 0.55 ms (turnaround + 11 bytes). The
# wait allows 3 times that: the chip only ACKs a frame it will hand over, so giving up (and
# resetting the chip) while it finishes one loses a frame its sender saw acknowledged. An
# emulated chip's thread shares the interpreter with this driver, so on a loaded host it can
# finish its frame many milliseconds late (a 2-core machine, 10 fragmented pings per second).
BUSY_WAIT_S = 0.015
_RNG = random.SystemRandom()
BUSY_POLL_S = 0.0002
BUSY_STATES = (State.BUSY_RX, State.BUSY_RX_AACK, State.BUSY_TX, State.BUSY_TX_ARET)
# a TX_ARET transaction lasts at most (retries + 1) × (CSMA back-offs + frame + ACK wait)
TX_POLL_S = 0.1
TX_HARD_LIMIT_S = 2.0

_TRAC_TO_STATUS = {
    Trac.SUCCESS: TxStatus.SUCCESS,
    Trac.SUCCESS_DATA_PENDING: TxStatus.SUCCESS_DATA_PENDING,
    Trac.NO_ACK: TxStatus.NO_ACK,
    Trac.CHANNEL_ACCESS_FAILURE: TxStatus.CHANNEL_ACCESS_FAILURE,
}


class _ChipFault(Exception):
    """Internal: the chip misbehaved; the caller recovers by reset."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class _Config:
    """What a reset must restore."""

    channel: int = 11
    tx_power_index: int = 0
    pan_id: int = 0xFFFF
    short_addr: int = 0xFFFF
    ext_addr: bytes = b"\x00" * 8
    coordinator: bool = False
    promiscuous: bool = False
    frame_pending: bool = False
    max_frame_retries: int = 3
    max_csma_retries: int = 4
    min_be: int = 3
    max_be: int = 5
    # After the chip's own retries end without an ACK (and the caller did not set its own retry
    # count): this many more rounds, each after a
    # random pause in receive (OpenThread's retransmission delay on radios that retry in
    # software). The chip is deaf in TX_ARET, so two nodes that send to each other at once
    # would otherwise spend every hardware retry on each other's deaf receivers.
    retry_rounds: int = 1
    retry_pause_s: tuple[float, float] = (0.002, 0.010)  # min, then up to this much per round


class At86rf233Radio(Radio):
    def __init__(
        self,
        url: str,
        spi: SpiBus,
        gpio: RadioGpio,
        *,
        eui64: bytes,
        backend: str,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self._spi = spi
        self._gpio = gpio
        self._eui64 = eui64
        self._backend = backend
        self._on_close = on_close
        self._cfg = _Config(ext_addr=eui64)
        self._counters = RadioCounters()
        self._subs: set[RxSubscription] = set()
        self._op = asyncio.Lock()
        self._mode = asyncio.Lock()
        self._irq_wake = asyncio.Event()
        self._tx_future: asyncio.Future[None] | None = None
        self._tx_edge: asyncio.Future[None] | None = None
        self._ed_future: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._info: RadioInfo | None = None
        self._opened = False
        self._closed = False
        self._asleep = False
        self._scanning = False
        self._suspect = False
        self._fatal: BaseException | None = None
        self._listen_state = State.RX_AACK_ON
        self._xah_current = 0
        self._recovery_gen = 0
        self._dedupe_next = False
        self._tx_queued = 0
        self._left_in_tx = False
        self._suspect_event = asyncio.Event()
        self._last_rx: tuple[bytes, int, int] | None = None

    # ------------------------------------------------------------------ public properties

    @property
    def info(self) -> RadioInfo:
        if self._info is None:
            raise RadioClosed("the radio is not open")
        return self._info

    @property
    def counters(self) -> RadioCounters:
        return self._counters

    @property
    def channel(self) -> int:
        return self._cfg.channel

    @property
    def healthy(self) -> bool:
        return self._opened and not self._closed and self._fatal is None

    @property
    def tx_power_dbm(self) -> float:
        return regs.TX_POWER_DBM[self._cfg.tx_power_index]

    @property
    def spi_stats(self) -> dict[str, int]:
        return self._spi.stats.as_dict()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._opened:
            return
        try:
            await self._spi.open()
            await self._gpio.open()
        except BaseException:
            await self._release_hw()
            raise
        loop = asyncio.get_running_loop()
        loop.add_reader(self._gpio.irq_fd, self._on_irq_fd)
        try:
            async with self._mode:
                self._info = await self._reset_and_init(probe_errors=True)
        except BaseException:
            loop.remove_reader(self._gpio.irq_fd)
            await self._release_hw()
            raise
        self._opened = True
        self._spawn(self._irq_loop(), "irq")
        self._spawn(self._health_loop(), "health")
        LOG.info(
            "radio %s ready: %s rev %d, channel %d",
            self._backend, self._info.part, self._info.version_num, self._cfg.channel,
        )  # fmt: skip

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            sub.end()
        for fut in (self._tx_future, self._ed_future):
            if fut is not None and not fut.done():
                fut.set_exception(RadioClosed("the radio was closed"))
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._opened:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._gpio.irq_fd)
            with contextlib.suppress(Exception):
                async with self._op:
                    await self._write(Reg.IRQ_MASK, 0)
                    await self._write(Reg.TRX_STATE, Cmd.FORCE_TRX_OFF)
        await self._release_hw()

    async def _release_hw(self) -> None:
        with contextlib.suppress(Exception):
            await self._gpio.close()
        with contextlib.suppress(Exception):
            await self._spi.close()
        if self._on_close is not None:
            await self._on_close()
            self._on_close = None

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"radio-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_usable(self) -> None:
        if self._closed:
            raise RadioClosed("the radio is closed")
        if self._fatal is not None:
            raise RadioNotResponding(f"the radio failed and could not be recovered: {self._fatal}")
        if not self._opened:
            raise RadioClosed("the radio is not open")

    # ------------------------------------------------------------------ SPI primitives

    async def _xfer(self, tx: bytes) -> bytes:
        rx = await self._spi.transfer(tx)
        # SPI_CMD_MODE=1 makes every first byte TRX_STATUS; 0x00 (P_ON) means the chip lost
        # its configuration (reset) or stopped answering
        if self._opened and not self._asleep and rx and rx[0] & 0x1F == 0:
            self._suspect = True
            self._suspect_event.set()
        return rx

    async def _read(self, reg: int) -> int:
        return (await self._xfer(bytes((regs.CMD_REG_READ | reg, 0))))[1]

    async def _write(self, reg: int, value: int) -> None:
        await self._xfer(bytes((regs.CMD_REG_WRITE | reg, value & 0xFF)))

    async def _read_stable(self, reg: int) -> int:
        """Read until two reads agree (a corrupted SPI byte does not pass twice)."""
        last = await self._read(reg)
        for _ in range(4):
            value = await self._read(reg)
            if value == last:
                return value
            self._counters.spi_errors_detected += 1
            last = value
        raise _ChipFault("spi", f"register 0x{reg:02x} reads back inconsistently")

    async def _write_checked(self, reg: int, value: int, mask: int = 0xFF) -> None:
        for _ in range(3):
            await self._write(reg, value)
            if (await self._read(reg)) & mask == value & mask:
                return
            self._counters.spi_errors_detected += 1
        raise _ChipFault("spi", f"register 0x{reg:02x} does not keep the value written")

    async def _update(self, reg: int, mask: int, value: int) -> None:
        cur = await self._read_stable(reg)
        await self._write_checked(reg, (cur & ~mask) | (value & mask))

    async def _state(self) -> int:
        return (await self._read(Reg.TRX_STATUS)) & 0x1F

    async def _set_state(self, target: State, timeout_s: float = 0.002) -> None:
        """Command a state and poll until the chip reports it (Linux's state-change engine)."""
        cmd = {State.TRX_OFF: Cmd.TRX_OFF, State.PLL_ON: Cmd.PLL_ON, State.RX_ON: Cmd.RX_ON,
               State.RX_AACK_ON: Cmd.RX_AACK_ON, State.TX_ARET_ON: Cmd.TX_ARET_ON}[target]  # fmt: skip
        # with SPI_CMD_MODE=1 the first byte answering the command is the state it found
        start = (await self._xfer(bytes((regs.CMD_REG_WRITE | Reg.TRX_STATE, cmd))))[0] & 0x1F
        if start == target:
            return
        if start == State.IN_PROGRESS:  # commands are ignored during a transition: repeat it
            await self._wait_state_not(State.IN_PROGRESS, timeout_s)
            start = (await self._xfer(bytes((regs.CMD_REG_WRITE | Reg.TRX_STATE, cmd))))[0] & 0x1F
            if start == target:
                return
        # BUSY_* states defer a non-forced command until the frame (+ ACK) is over; a transition
        # in progress (the PLL locking) is the chip at work too: an emulated chip's thread may
        # finish it late on a loaded host, so both get the longer wait
        busy = start in BUSY_STATES
        deadline = time.monotonic() + timeout_s + (BUSY_WAIT_S if busy else 0.0)
        while True:
            st = await self._state()
            if st == State.IN_PROGRESS and not busy:
                busy = True
                deadline += BUSY_WAIT_S
            if st == target or (target == State.RX_AACK_ON and st == State.BUSY_RX_AACK):
                return
            if st in (State.TRX_OFF, State.PLL_ON, State.RX_ON, State.RX_AACK_ON,
                      State.TX_ARET_ON) and st != target and st != start:  # fmt: skip
                # an idle state other than asked: the command was lost (SPI) - say it again
                await self._write(Reg.TRX_STATE, cmd)
            if time.monotonic() > deadline:
                pll = start in (State.TRX_OFF, State.P_ON) and target != State.TRX_OFF
                kind = "pll" if pll and st == State.IN_PROGRESS else "state"
                raise _ChipFault(
                    kind, f"state change 0x{start:02x} -> {target.name} stuck at 0x{st:02x}"
                )
            # a frame takes milliseconds: poll it at a gentle pace (a tight loop would keep an
            # emulated chip's thread from the interpreter for a whole switch interval)
            await asyncio.sleep(BUSY_POLL_S if st in BUSY_STATES or st == State.IN_PROGRESS else 0)

    async def _wait_state_not(self, state: State, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while await self._state() == state:
            if time.monotonic() > deadline:
                raise _ChipFault("state", f"chip stays in state 0x{state:02x}")
            await asyncio.sleep(0)

    async def _force_off(self) -> None:
        await self._write(Reg.TRX_STATE, Cmd.FORCE_TRX_OFF)
        deadline = time.monotonic() + 0.002
        while (await self._state()) != State.TRX_OFF:
            if time.monotonic() > deadline:
                raise _ChipFault("state", "FORCE_TRX_OFF did not reach TRX_OFF")
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ reset, probe, init

    async def _hw_reset(self) -> None:
        self._gpio.set_slp_tr(False)
        self._gpio.set_reset(True)
        await asyncio.sleep(0.0001)
        self._gpio.set_reset(False)
        await asyncio.sleep(0.0003)  # t_reset_to_off 26 µs; Linux waits 120-240 µs
        self._asleep = False
        deadline = time.monotonic() + 0.05
        while True:
            st = await self._state()
            if st == State.TRX_OFF:
                return
            if time.monotonic() > deadline:
                raise _ChipFault("reset", f"chip did not reach TRX_OFF after reset (0x{st:02x})")
            await asyncio.sleep(0.0005)

    async def _probe(self) -> RadioInfo:
        async def id_read(reg: int) -> int:
            return await self._read_stable(reg)

        try:
            man = await id_read(Reg.MAN_ID_0) | (await id_read(Reg.MAN_ID_1) << 8)
            part = await id_read(Reg.PART_NUM)
            version = await id_read(Reg.VERSION_NUM)
        except _ChipFault as exc:
            raise RadioNotResponding(
                f"the chip's identity reads back inconsistently ({exc})"
            ) from None
        if man in (0x0000, 0xFFFF) and part in (0x00, 0xFF):
            raise RadioNotResponding(
                "no answer on the SPI bus (identity registers read "
                f"0x{part:02x}); is the radio connected and powered?"
            )
        if man != regs.MAN_ID_ATMEL:
            raise WrongChip(f"the device answers with manufacturer 0x{man:04x}, not Atmel (0x001f)")
        if part != regs.PART_NUM_AT86RF233:
            name = regs.KNOWN_PARTS.get(part, "an unknown part")
            raise WrongChip(f"found {name} (PART_NUM 0x{part:02x}); this driver needs an AT86RF233")
        return RadioInfo(
            backend=self._backend, url=self.url, part="AT86RF233", part_num=part,
            version_num=version, man_id=man, eui64=self._eui64,
        )  # fmt: skip

    async def _init_registers(self) -> None:
        c = self._cfg
        await self._force_off()
        # TX_AUTO_CRC_ON, SPI_CMD_MODE=1 (TRX_STATUS in every first byte), IRQ_MASK_MODE=0,
        # active-high IRQ (the GPIO requests rising edges)
        await self._write_checked(
            Reg.TRX_CTRL_1, regs.TX_AUTO_CRC_ON | (1 << regs.SPI_CMD_MODE_SHIFT)
        )
        await self._write_checked(Reg.TRX_CTRL_2, regs.RX_SAFE_MODE | 0x20)
        await self._write_checked(Reg.IRQ_MASK, 0)
        seed = os.urandom(2)
        await self._write_checked(Reg.CSMA_SEED_0, seed[0])
        seed1 = (0x40 | (seed[1] & 0x07) | (regs.AACK_SET_PD if c.frame_pending else 0)
                 | (regs.AACK_I_AM_COORD if c.coordinator else 0)
                 | (regs.AACK_DIS_ACK if c.promiscuous else 0))  # fmt: skip
        await self._write_checked(Reg.CSMA_SEED_1, seed1)
        self._xah_current = (c.max_frame_retries << 4) | (c.max_csma_retries << 1)
        await self._write_checked(Reg.XAH_CTRL_0, self._xah_current)
        await self._write_checked(Reg.CSMA_BE, (c.max_be << 4) | c.min_be)
        await self._write_checked(Reg.XAH_CTRL_1, regs.AACK_PROM_MODE if c.promiscuous else 0)
        await self._write_checked(Reg.PHY_TX_PWR, c.tx_power_index)
        await self._write_checked(Reg.PHY_CC_CCA, 0x20 | c.channel)
        await self._write_addresses()
        await self._read(Reg.IRQ_STATUS)  # flush anything latched before the mask was set
        await self._write_checked(Reg.IRQ_MASK, IRQ_MASK)
        await self._set_state(self._listen_state)

    async def _write_addresses(self) -> None:
        c = self._cfg
        await self._write_checked(Reg.PAN_ID_0, c.pan_id & 0xFF)
        await self._write_checked(Reg.PAN_ID_1, c.pan_id >> 8)
        await self._write_checked(Reg.SHORT_ADDR_0, c.short_addr & 0xFF)
        await self._write_checked(Reg.SHORT_ADDR_1, c.short_addr >> 8)
        for i, b in enumerate(c.ext_addr[::-1]):  # IEEE_ADDR_0 holds the least significant byte
            await self._write_checked(Reg.IEEE_ADDR_0 + i, b)

    async def _reset_and_init(self, probe_errors: bool = False) -> RadioInfo:
        async with self._op:
            try:
                await self._hw_reset()
                info = await self._probe()
                await self._init_registers()
                await self._read(Reg.IRQ_STATUS)
                if self._gpio.irq_level():
                    raise _ChipFault("irq-stuck", "the IRQ line stays asserted after a reset")
            except _ChipFault as exc:
                if probe_errors:
                    raise RadioNotResponding(f"the radio did not initialise: {exc}") from exc
                raise
            self._suspect = False
            return info

    # ------------------------------------------------------------------ recovery

    async def _recover(self, fault: _ChipFault) -> None:
        """Reset and re-initialise; raise RadioNotResponding when that keeps failing."""
        kind = fault.kind
        c = self._counters
        if kind == "spi":
            c.spi_errors_detected += 1
        elif kind == "reset":
            c.chip_resets_detected += 1
        elif kind == "pll":
            c.pll_lock_failures += 1
        elif kind == "state":
            c.state_change_timeouts += 1
        elif kind == "irq-stuck":
            c.stuck_irq_detected += 1
        LOG.warning("radio fault (%s): %s; resetting the chip", kind, fault)
        last: BaseException = fault
        for attempt in range(1, MAX_RECOVERY_ATTEMPTS + 1):
            try:
                await self._reset_and_init()
            except (_ChipFault, RadioNotResponding, WrongChip) as exc:
                last = exc
                LOG.warning("radio recovery attempt %d failed: %s", attempt, exc)
                await asyncio.sleep(0.01 * attempt)
                continue
            c.recoveries += 1
            self._recovery_gen += 1
            self._asleep = False
            if self._tx_future is not None and not self._tx_future.done():
                self._tx_future.set_exception(_ChipFault("reset", "chip reset during transmit"))
            LOG.info("radio recovered after %s fault (attempt %d)", kind, attempt)
            return
        c.recovery_failures += 1
        err = RadioNotResponding(f"the radio could not be recovered after a {kind} fault: {last}")
        self._fatal = err
        for sub in list(self._subs):
            sub.end()
        raise err

    async def _guarded(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``; on a chip fault recover and run it once more."""
        self._check_usable()
        for attempt in (1, 2):
            try:
                return await op()
            except _ChipFault as fault:
                await self._recover(fault)
                if attempt == 2:
                    raise RadioTransientError(
                        f"the radio recovered from a fault but the operation failed twice ({fault})"
                    ) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ IRQ handling

    def _on_irq_fd(self) -> None:
        try:
            n = self._gpio.read_irq_edges()
        except OSError:
            n = 0
        self._counters.irq_edges += n
        self._irq_wake.set()
        if self._tx_edge is not None and not self._tx_edge.done():
            self._tx_edge.set_result(None)  # the transmit path reads IRQ_STATUS itself

    async def _irq_loop(self) -> None:
        while True:
            await self._irq_wake.wait()
            self._irq_wake.clear()
            if self._asleep or self._fatal is not None:
                continue
            gen = self._recovery_gen
            try:
                async with self._op:
                    await self._service_irq()
            except _ChipFault as fault:
                try:
                    async with self._mode:
                        if gen == self._recovery_gen:  # nobody recovered meanwhile
                            await self._recover(fault)
                except RadioNotResponding:
                    return
            except RadioNotResponding:
                return

    async def _service_irq(self) -> None:
        """Read IRQ_STATUS until the line is released (edge-only GPIO: never lose an event)."""
        empty_reads = 0
        for _ in range(16):
            status = await self._read(Reg.IRQ_STATUS)
            if status & ~IRQ_MASK & 0xFF:
                # IRQ_MASK_MODE=0 latches nothing else: this read was corrupted on the bus, and
                # a TRX_END may hide behind it, so look at the frame buffer (deduplicated)
                self._counters.spi_errors_detected += 1
                status &= IRQ_MASK
                if self._tx_future is None:
                    status |= Irq.TRX_END
                    self._dedupe_next = True
            if status:
                empty_reads = 0
                self._counters.irqs += 1
                await self._dispatch(status)
            else:
                empty_reads += 1
            if not self._gpio.irq_level():
                return
            if empty_reads >= 3:
                raise _ChipFault("irq-stuck", "IRQ line stays asserted with IRQ_STATUS empty")
        raise _ChipFault("irq-stuck", "IRQ line does not release")

    async def _dispatch(self, status: int) -> None:
        if status & Irq.CCA_ED_DONE and self._ed_future is not None and not self._ed_future.done():
            self._ed_future.set_result(None)
        if status & Irq.TRX_END:
            if self._tx_future is not None:  # a transmission is in flight: its TRX_END
                if not self._tx_future.done():
                    self._tx_future.set_result(None)
            else:
                await self._read_frame()

    async def _read_frame(self) -> None:
        for attempt in (1, 2):
            rx = await self._xfer(bytes((regs.CMD_FB_READ,)) + bytes(FB_READ_LEN - 1))
            phr = rx[1] & 0x7F
            if phr < 5 and phr != 0:
                self._counters.spi_errors_detected += 1
                continue
            if phr == 0:
                return  # buffer empty (stale IRQ)
            psdu = rx[2 : 2 + phr]
            lqi, ed, rx_status = rx[2 + phr], rx[3 + phr], rx[4 + phr]
            chip_crc = bool(rx_status & 0x80)
            crc = fcs_ok(psdu)
            key = (bytes(psdu), lqi, ed)
            if self._dedupe_next:
                self._dedupe_next = False
                if key == self._last_rx:
                    return
            self._last_rx = key
            if chip_crc and not crc:
                # the chip checked the FCS on the air; a mismatch here is SPI corruption
                self._counters.spi_errors_detected += 1
                if attempt == 1:
                    continue
            self._deliver(psdu, lqi, ed, crc)
            return

    def _deliver(self, psdu: bytes, lqi: int, ed: int, crc: bool) -> None:
        if self._scanning and not self._cfg.promiscuous:
            return
        c = self._counters
        c.rx_frames += 1
        if not crc:
            c.rx_crc_errors += 1
            if not self._cfg.promiscuous:
                return
        frame = RxFrame(
            psdu=bytes(psdu), channel=self._cfg.channel, lqi=lqi,
            rssi_dbm=regs.RSSI_BASE_DBM + min(ed, 84), crc_ok=crc,
            timestamp_ns=time.monotonic_ns(), wall_time=time.time(),
        )  # fmt: skip
        for sub in list(self._subs):
            if not sub.put(frame):
                c.rx_dropped_queue_full += 1

    async def _health_loop(self) -> None:
        """Catch what no IRQ reports: a lost edge, a chip that reset itself, a stuck state."""
        while True:
            # asyncio.timeout, not wait_for: wait_for can swallow a cancellation in 3.11
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEALTH_PERIOD_S):
                    await self._suspect_event.wait()
            self._suspect_event.clear()
            if self._asleep or self._mode.locked() or self._fatal is not None:
                continue
            try:
                async with self._mode:
                    await self._health_check()
            except RadioNotResponding:
                return

    async def _verify_config(self) -> None:
        """Raise a reset fault when the chip lost its configuration (read twice: one corrupted
        byte must not trigger a reset)."""
        for _ in range(2):
            mask = await self._read(Reg.IRQ_MASK)
            ctrl1 = await self._read(Reg.TRX_CTRL_1)
            if mask == IRQ_MASK and ctrl1 & 0x0C == 1 << regs.SPI_CMD_MODE_SHIFT:
                self._suspect = False
                return
        raise _ChipFault("reset", "the chip lost its configuration")

    async def _health_check(self) -> None:
        try:
            async with self._op:
                if self._gpio.irq_level():
                    self._counters.irq_lost_recovered += 1
                    await self._service_irq()
                await self._verify_config()
                st = await self._state()
                if st in (State.P_ON, State.TRX_OFF) and await self._state() == st:
                    raise _ChipFault("state", f"the chip left its listening state (0x{st:02x})")
                if st == State.IN_PROGRESS:
                    await self._wait_state_not(State.IN_PROGRESS, 0.005)
                self._suspect = False
        except _ChipFault as fault:
            await self._recover(fault)

    # ------------------------------------------------------------------ configuration

    async def reset(self) -> None:
        self._check_usable()
        async with self._mode:
            await self._recover(_ChipFault("requested", "reset requested"))

    async def set_channel(self, channel: int) -> None:
        if channel not in CHANNELS:
            raise InvalidArgument(f"channel {channel} is outside 11..26")

        async def op() -> None:
            async with self._op:
                await self._update(Reg.PHY_CC_CCA, regs.CHANNEL_MASK, channel)

        async with self._mode:
            self._cfg.channel = channel
            await self._guarded(op)

    async def set_tx_power(self, dbm: float) -> float:
        idx = regs.tx_power_index(dbm)

        async def op() -> None:
            async with self._op:
                await self._write_checked(Reg.PHY_TX_PWR, idx, 0x0F)

        async with self._mode:
            self._cfg.tx_power_index = idx
            await self._guarded(op)
        return regs.TX_POWER_DBM[idx]

    async def set_addresses(
        self,
        *,
        pan_id: int | None = None,
        short_addr: int | None = None,
        ext_addr: bytes | None = None,
        coordinator: bool | None = None,
    ) -> None:
        c = self._cfg
        if pan_id is not None and not 0 <= pan_id <= 0xFFFF:
            raise InvalidArgument(f"PAN ID {pan_id} is not a 16-bit value")
        if short_addr is not None and not 0 <= short_addr <= 0xFFFF:
            raise InvalidArgument(f"short address {short_addr} is not a 16-bit value")
        if ext_addr is not None and len(ext_addr) != 8:
            raise InvalidArgument("an extended address has 8 bytes")

        async def op() -> None:
            async with self._op:
                await self._write_addresses()
                await self._update(
                    Reg.CSMA_SEED_1, regs.AACK_I_AM_COORD,
                    regs.AACK_I_AM_COORD if c.coordinator else 0,
                )  # fmt: skip

        async with self._mode:
            if pan_id is not None:
                c.pan_id = pan_id
            if short_addr is not None:
                c.short_addr = short_addr
            if ext_addr is not None:
                c.ext_addr = bytes(ext_addr)
            if coordinator is not None:
                c.coordinator = coordinator
            await self._guarded(op)

    async def set_promiscuous(self, on: bool) -> None:
        async def op() -> None:
            async with self._op:
                await self._update(
                    Reg.XAH_CTRL_1, regs.AACK_PROM_MODE, regs.AACK_PROM_MODE if on else 0
                )
                await self._update(
                    Reg.CSMA_SEED_1, regs.AACK_DIS_ACK, regs.AACK_DIS_ACK if on else 0
                )

        async with self._mode:
            self._cfg.promiscuous = on
            await self._guarded(op)

    async def set_frame_pending(self, on: bool) -> None:
        async def op() -> None:
            async with self._op:
                await self._update(Reg.CSMA_SEED_1, regs.AACK_SET_PD, regs.AACK_SET_PD if on else 0)

        async with self._mode:
            self._cfg.frame_pending = on
            await self._guarded(op)

    async def set_retries(self, frame_retries: int = 3, csma_retries: int = 4) -> None:
        if not 0 <= frame_retries <= 15 or not 0 <= csma_retries <= 5:
            raise InvalidArgument("frame retries 0..15, CSMA retries 0..5")

        async def op() -> None:
            async with self._op:
                self._xah_current = (frame_retries << 4) | (csma_retries << 1)
                await self._write_checked(Reg.XAH_CTRL_0, self._xah_current)

        async with self._mode:
            self._cfg.max_frame_retries = frame_retries
            self._cfg.max_csma_retries = csma_retries
            await self._guarded(op)

    # ------------------------------------------------------------------ receive

    def subscribe(self, maxsize: int = 256) -> RxSubscription:
        return RxSubscription(self._subs, maxsize)

    # ------------------------------------------------------------------ transmit

    async def transmit(
        self, frame: bytes, *, csma: bool = True, retries: int | None = None, basic: bool = False
    ) -> TxResult:
        if not 3 <= len(frame) <= regs.MAX_PSDU - 2:
            raise InvalidArgument(f"a frame has 3..125 bytes before the FCS, not {len(frame)}")
        if retries is not None and not 0 <= retries <= 15:
            raise InvalidArgument("retries must be within 0..15")
        self._check_usable()
        if self._asleep:
            raise InvalidArgument("the radio is asleep; wake it first")
        self._tx_queued += 1
        try:
            async with self._mode:
                result = await self._guarded(lambda: self._tx_once(frame, csma, retries, basic))
            rounds = 0 if basic or retries is not None else self._cfg.retry_rounds
            spent = result.frame_retries
            for n in range(rounds):
                if result.status is not TxStatus.NO_ACK:
                    break
                async with self._mode:
                    await self._guarded(self._listen_op)  # hear (and ACK) a peer meanwhile
                low, span = self._cfg.retry_pause_s
                await asyncio.sleep(low + _RNG.random() * span * (n + 1))
                async with self._mode:
                    result = await self._guarded(lambda: self._tx_once(frame, csma, retries, basic))
                spent += 1 + result.frame_retries
            result = replace(result, frame_retries=spent)
        finally:
            self._tx_queued -= 1
            if self._tx_queued == 0 and self._left_in_tx and not self._closed:
                self._spawn(self._back_to_listen(), "listen")  # a queued transmit was cancelled
        c = self._counters
        c.tx_frames += 1
        c.tx_frame_retries += result.frame_retries
        if result.ok:
            c.tx_success += 1
        elif result.status is TxStatus.NO_ACK:
            c.tx_no_ack += 1
        else:
            c.tx_channel_access_failure += 1
        return result

    async def _tx_once(
        self, frame: bytes, csma: bool, retries: int | None, basic: bool
    ) -> TxResult:
        c = self._cfg
        loop = asyncio.get_running_loop()
        async with self._op:
            # stop receiving (a frame being received completes first), then drain its IRQ so the
            # frame buffer is read before it is overwritten
            await self._set_state(State.PLL_ON)
            if self._suspect:
                await self._verify_config()
            if self._gpio.irq_level():
                await self._service_irq()
            if not basic:
                frame_retries = c.max_frame_retries if retries is None else retries
                xah = (frame_retries << 4) | ((c.max_csma_retries if csma else 7) << 1)
                if xah != self._xah_current:
                    await self._write_checked(Reg.XAH_CTRL_0, xah)
                    self._xah_current = xah
                await self._set_state(State.TX_ARET_ON)
            # PHR counts the FCS; the chip computes it (TX_AUTO_CRC_ON)
            await self._xfer(bytes((regs.CMD_FB_WRITE, len(frame) + 2)) + frame)
            self._tx_future = loop.create_future()
            self._gpio.set_slp_tr(True)  # rising edge starts the transmission
            self._gpio.set_slp_tr(False)
        airtime = regs.airtime_us(len(frame) + 2) / 1e6
        try:
            await self._wait_tx(airtime)
        finally:
            self._tx_future = None
        async with self._op:
            if basic:
                status, frame_retries, csma_retries = TxStatus.SUCCESS, 0, 0
            else:
                trac = (await self._read_stable(Reg.TRX_STATE)) >> 5
                xah2 = await self._read_stable(Reg.XAH_CTRL_2)
                frame_retries, csma_retries = xah2 >> 4, (xah2 >> 1) & 0x7
                if trac not in _TRAC_TO_STATUS:
                    raise _ChipFault("spi", f"TX_ARET ended with TRAC_STATUS {trac}")
                status = _TRAC_TO_STATUS[Trac(trac)]
            self._left_in_tx = self._tx_queued > 1  # back-to-back frames stay in the TX state
            if not self._left_in_tx:
                await self._set_state(self._listen_state)
        return TxResult(status, frame_retries, csma_retries, time.monotonic_ns())

    async def _back_to_listen(self) -> None:
        async with self._mode:
            if self._left_in_tx and self._tx_queued == 0 and self._fatal is None:
                self._left_in_tx = False
                with contextlib.suppress(RadioNotResponding, RadioTransientError):
                    await self._guarded(self._listen_op)

    async def _listen_op(self) -> None:
        async with self._op:
            await self._set_state(self._listen_state)

    async def _wait_tx(self, airtime_s: float) -> None:
        fut = self._tx_future
        assert fut is not None
        deadline = time.monotonic() + TX_HARD_LIMIT_S
        wait = airtime_s + TX_POLL_S
        loop = asyncio.get_running_loop()
        while True:
            self._tx_edge = loop.create_future()
            done, _ = await asyncio.wait(
                (fut, self._tx_edge), timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if self._tx_edge in done and not fut.done():
                async with self._op:  # an IRQ edge: read IRQ_STATUS here, one task hop sooner
                    if not fut.done():
                        await self._service_irq()
            if fut.done():
                self._tx_edge = None
                fut.result()  # raises when a recovery or close ended the transmission
                return
            if done:
                continue
            # no TRX_END edge yet: look at the chip directly (a lost IRQ edge, or a reset)
            async with self._op:
                if not fut.done():
                    status = await self._read(Reg.IRQ_STATUS)
                    if status & Irq.TRX_END:
                        self._counters.irq_lost_recovered += 1
                        if not fut.done():
                            fut.set_result(None)
                        await self._dispatch(status & ~Irq.TRX_END)
                        return
                    if status:
                        await self._dispatch(status)
                    st = await self._state()
                    if st in (State.P_ON, State.TRX_OFF):
                        raise _ChipFault("reset", "the chip reset during a transmission")
                    if st in (State.TX_ARET_ON, State.PLL_ON) and not fut.done():
                        # the transaction is over but its TRX_END was lost (corrupted read)
                        self._counters.irq_lost_recovered += 1
                        fut.set_result(None)
                        return
                    if time.monotonic() > deadline:
                        raise _ChipFault("state", f"transmission never completed (0x{st:02x})")
            wait = TX_POLL_S

    # ------------------------------------------------------------------ energy detection

    async def energy_scan(
        self,
        channels: Iterable[int] = CHANNELS,
        duration_s: float = 0.05,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> dict[int, int]:
        chans = list(channels)
        for ch in chans:
            if ch not in CHANNELS:
                raise InvalidArgument(f"channel {ch} is outside 11..26")
        self._check_usable()
        results: dict[int, int] = {}
        async with self._mode:
            self._scanning = True
            try:
                for i, ch in enumerate(chans):
                    results[ch] = await self._guarded(partial(self._ed_channel, ch, duration_s))
                    if progress is not None:
                        progress(ch, i + 1, len(chans))
            finally:
                self._scanning = False
                with contextlib.suppress(_ChipFault):
                    await self._guarded(self._restore_listen)
        return results

    async def _restore_listen(self) -> None:
        async with self._op:
            await self._set_state(State.PLL_ON)
            await self._update(Reg.PHY_CC_CCA, regs.CHANNEL_MASK, self._cfg.channel)
            await self._set_state(self._listen_state)

    async def _ed_channel(self, channel: int, duration_s: float) -> int:
        loop = asyncio.get_running_loop()
        async with self._op:
            await self._set_state(State.PLL_ON)
            await self._update(Reg.PHY_CC_CCA, regs.CHANNEL_MASK, channel)
            await self._set_state(State.RX_ON)
        peak = 0
        end = time.monotonic() + duration_s
        while True:
            self._ed_future = loop.create_future()
            async with self._op:
                await self._write(Reg.PHY_ED_LEVEL, 0)
            try:
                done, _ = await asyncio.wait((self._ed_future,), timeout=0.05)
                if not done:
                    # lost CCA_ED_DONE edge: the value is there all the same after 140 µs
                    self._counters.irq_lost_recovered += 1
            finally:
                self._ed_future = None
            async with self._op:
                ed = await self._read(Reg.PHY_ED_LEVEL)
            if ed != 0xFF:
                peak = max(peak, min(ed, 84))
            if time.monotonic() >= end:
                return regs.RSSI_BASE_DBM + peak

    # ------------------------------------------------------------------ sleep

    async def sleep(self) -> None:
        self._check_usable()

        async def op() -> None:
            async with self._op:
                await self._force_off()
                self._asleep = True
                self._gpio.set_slp_tr(True)

        async with self._mode:
            if not self._asleep:
                await self._guarded(op)

    async def wake(self) -> None:
        self._check_usable()

        async def op() -> None:
            if not self._asleep:
                return  # a recovery (reset) already woke the chip
            async with self._op:
                self._gpio.set_slp_tr(False)
                deadline = time.monotonic() + 0.01
                await asyncio.sleep(0.0003)
                while (st := await self._state()) != State.TRX_OFF:
                    if time.monotonic() > deadline:
                        self._asleep = False
                        raise _ChipFault("state", f"no wake-up from SLEEP (0x{st:02x})")
                    await asyncio.sleep(0.0002)
                self._asleep = False
                await self._read(Reg.IRQ_STATUS)  # AWAKE_END
                await self._set_state(self._listen_state)

        async with self._mode:
            if self._asleep:
                await self._guarded(op)

    @property
    def asleep(self) -> bool:
        return self._asleep
