"""A register-level model of the AT86RF233, below the SPI and GPIO seams.

The real driver talks to it through :class:`drivers.emulator.backend.EmulatedSpiBus` and
:class:`~drivers.emulator.backend.EmulatedGpio` exactly as it talks to the chip through spidev and
gpiod. The model holds the register file with its reset values, the 128-byte frame buffer (SRAM),
the TRX state machine with the datasheet's transition times, IRQ_STATUS (clear on read) and the IRQ
pin, TX_ARET (CSMA-CA, retries, ACK wait), RX_AACK (address filter, auto-ACK with frame pending),
ED/RSSI/LQI, RX_SAFE_MODE frame-buffer protection, SLP_TR and RSTN, and fault injection.

Everything time-driven (airtime, ACKs, CSMA back-offs, IRQs) runs on the chip's own thread, never
on an asyncio loop. Deviations from the datasheet forced by running over loopback UDP and a Python
scheduler are listed in docs/radio.md ("Emulator deviations").
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import random
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from drivers.at86rf233 import regs
from drivers.at86rf233.regs import Cmd, Irq, Reg, State, Trac
from drivers.emulator.air import AirPort, LinkModel
from drivers.fcs import fcs, fcs_ok
from drivers.mac_header import (
    ADDR_EXT,
    ADDR_NONE,
    ADDR_SHORT,
    BROADCAST_PAN,
    BROADCAST_SHORT,
    FT_ACK,
    FT_BEACON,
    FT_COMMAND,
    FT_DATA,
    HeaderError,
    imm_ack,
    parse_header,
)

US = 1_000
MS = 1_000_000
SPIN_NS = 150 * US
SPIN_TIGHT_NS = 40 * US

ACTIVE_RX = (State.RX_ON, State.RX_AACK_ON)
PLL_STATES = (State.PLL_ON, State.RX_ON, State.RX_AACK_ON, State.TX_ARET_ON)
BUSY = (State.BUSY_RX, State.BUSY_TX, State.BUSY_RX_AACK, State.BUSY_TX_ARET)
DATA_REQUEST = 0x04


@dataclass
class Faults:
    """Fault injection knobs; tests set them directly, the URL sets the rates.

    Counts (``*_next``) are consumed as faults happen; ``*_permanent`` faults survive a reset.
    """

    spi_ber: float = 0.0  # probability that a MISO bit is flipped
    spi_corrupt_next: int = 0  # next N transfers each get one flipped MISO bit (after byte 0)
    lose_irq_next: int = 0  # next N IRQ edges never reach the GPIO line
    irq_stuck: bool = False  # IRQ pin stuck asserted until the next chip reset
    irq_stuck_permanent: bool = False  # ... and across resets
    pll_fail_next: int = 0  # next N PLL lock-ins never complete
    pll_fail_permanent: bool = False
    state_stuck_next: int = 0  # next N state changes never complete (any target)
    crc_error_rate: float = 0.0  # probability a received frame arrives with a bad FCS
    rx_late_us: int = 0  # a reception ends this much after its airtime (a late chip thread)
    dead: bool = False  # the chip does not answer on SPI (MISO reads 0x00)


@dataclass
class _OnAir:
    channel: int
    start_ns: int
    end_ns: int
    rssi_dbm: float


@dataclass
class _Aret:
    psdu: bytes
    seq: int | None
    wants_ack: bool
    be: int
    csma_tries: int = 0  # busy CCAs in the current attempt
    csma_total: int = 0
    frame_retries: int = 0
    phase: str = "backoff"  # backoff -> cca -> tx -> ackwait
    tx_end_ns: int = 0  # when the current attempt's frame ends on the air


class At86rf233Emulator:
    """One emulated chip, optionally attached to the simulated air."""

    def __init__(
        self,
        air: AirPort | None = None,
        *,
        links: LinkModel | None = None,
        airtime: bool = True,
        ack_timeout_ms: float = 16.0,
        noise_dbm: float = -100.0,
        interference: dict[int, float] | None = None,
        part_num: int = regs.PART_NUM_AT86RF233,
        version_num: int = 0x02,
        seed: int | None = None,
        on_air_frame: Callable[[int, bytes, float, bool], None] | None = None,
    ) -> None:
        self.air = air
        self.links = links or LinkModel()
        self.airtime = airtime
        self.ack_timeout_ns = int(ack_timeout_ms * MS)
        self.noise_dbm = noise_dbm
        self.interference = dict(interference or {})
        self.part_num = part_num
        self.version_num = version_num
        self.faults = Faults()
        self.on_air_frame = on_air_frame  # (channel, psdu, wall time, sent_by_me) -> None
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closing = False
        self._wake_pending = False
        # pins
        self._rstn = True  # released
        self._slp_tr = False
        self._deep = False
        self._pin = False  # physical IRQ pin level
        self.on_irq_edge: Callable[[int], None] | None = None  # GPIO edge sink
        # statistics of the model itself
        self.stats = {"frames_sent": 0, "frames_received": 0, "acks_sent": 0, "rx_overruns": 0,
                      "rx_filtered": 0, "collisions": 0, "irq_edges_lost": 0}  # fmt: skip
        self._energy: deque[_OnAir] = deque(maxlen=256)
        self._rx_current: tuple[_OnAir, bytes, float, bool] | None = None
        self._rx_finish: Callable[[], None] | None = None  # ends _rx_current's reception
        self._power_on()
        self._thread = threading.Thread(target=self._run, name="at86rf233-emulator", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ power and reset

    def _power_on(self) -> None:
        self._regs = bytearray(64)
        for addr, value in regs.RESET_VALUES.items():
            self._regs[addr] = value
        self._regs[Reg.PART_NUM] = self.part_num
        self._regs[Reg.VERSION_NUM] = self.version_num
        self._state = State.TRX_OFF
        self._pending: tuple[State, int, str] | None = None  # (target, due_ns, kind)
        self._deferred: State | None = None  # non-forced command waiting for a busy phase
        self._fb = bytearray(regs.FRAME_BUFFER_SIZE)
        self._fb_meta = (0, 0, 0)  # LQI, ED, RX_STATUS after the PSDU
        self._fb_locked = False
        self._tx_gen = 0  # bumps to cancel TX/RX timers after an abort
        self._aret: _Aret | None = None
        self._irq_status = 0
        self._cca_done_at: int | None = None
        self._cca_idle = True
        self._ed_due: int | None = None
        self._stuck = self.faults.irq_stuck_permanent
        self._update_pin()

    def _chip_reset(self) -> None:
        """RSTN pulse or spontaneous reset: registers to defaults, TRX_OFF, AWAKE_END latched."""
        self._rx_current = None
        self._power_on()
        self._state = State.IN_PROGRESS
        self._pending = (State.TRX_OFF, self._now() + regs.T_RESET_TO_OFF_US * US, "wake")
        self._schedule(self._pending[1], self._settle)

    def inject_reset(self) -> None:
        """Fault: the chip resets by itself (brown-out, ESD)."""
        with self._lock:
            self._chip_reset()

    # ------------------------------------------------------------------ pins

    def set_rstn(self, level: bool) -> None:
        with self._lock:
            if not level and self._rstn:
                self._rstn = False
                self._rx_current = None
                self._power_on()
                self._state = State.P_ON
            elif level and not self._rstn:
                self._rstn = True
                self._chip_reset()

    def set_slp_tr(self, level: bool) -> None:
        with self._lock:
            rising = level and not self._slp_tr
            self._slp_tr = level
            self._settle()
            st = self._state
            if rising and st in (State.PLL_ON, State.TX_ARET_ON):
                self._command(Cmd.TX_START)
            elif level and st == State.TRX_OFF:
                self._state = State.SLEEP
                self._fb[:] = bytes(len(self._fb))
                self._fb_locked = False
            elif level and st == State.PREP_DEEP_SLEEP:
                self._state = State.SLEEP  # deep sleep: registers are lost on wake (see docs)
                self._deep = True
            elif not level and st == State.SLEEP:
                deep, self._deep = self._deep, False
                if deep:
                    self._power_on()
                self._state = State.IN_PROGRESS
                due = self._now() + regs.T_SLEEP_TO_OFF_US * US
                self._pending = (State.TRX_OFF, due, "wake")
                self._schedule(due, self._settle)

    @property
    def irq_pin(self) -> bool:
        with self._lock:
            return self._pin

    @property
    def state(self) -> State:
        with self._lock:
            self._settle()
            return self._state

    def _update_pin(self) -> None:
        level = bool(self._irq_status & self._regs[Reg.IRQ_MASK]) or self._stuck
        if self._regs[Reg.TRX_CTRL_1] & regs.IRQ_POLARITY:
            level = not level
        rising = level and not self._pin
        self._pin = level
        if rising:
            if self.faults.lose_irq_next > 0:
                self.faults.lose_irq_next -= 1
                self.stats["irq_edges_lost"] += 1
            elif self.on_irq_edge is not None:
                self.on_irq_edge(time.monotonic_ns())

    def _raise(self, irq: int) -> None:
        mask = self._regs[Reg.IRQ_MASK]
        if not (self._regs[Reg.TRX_CTRL_1] & regs.IRQ_MASK_MODE):
            irq &= mask
        if irq & (Irq.PLL_LOCK | Irq.PLL_UNLOCK):
            self._irq_status &= ~((Irq.PLL_LOCK | Irq.PLL_UNLOCK) & ~irq)
        self._irq_status |= irq
        self._update_pin()

    def stick_irq(self, permanent: bool = False) -> None:
        with self._lock:
            self.faults.irq_stuck_permanent = permanent
            self._stuck = True
            self._update_pin()

    # ------------------------------------------------------------------ time and timers

    @staticmethod
    def _now() -> int:
        return time.monotonic_ns()

    def _schedule(self, due_ns: int, fn: Callable[[], None]) -> None:
        earliest = not self._timers or due_ns < self._timers[0][0]
        heapq.heappush(self._timers, (due_ns, next(self._timer_seq), fn))
        # the chip thread re-reads its timers after every event; another thread wakes it only
        # when the new timer is earlier than anything it is already waiting for
        if earliest and threading.get_ident() != self._thread.ident and not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"x")

    def _settle(self) -> None:
        """Apply a state transition whose time has come (lazily, so SPI reads are exact)."""
        p = self._pending
        if p is None:
            return
        target, due, kind = p
        if self._now() < due:
            return
        self._pending = None
        self._state = target
        if kind == "pll":
            self._raise(Irq.PLL_LOCK)
        elif kind == "wake":
            self._raise(regs.AWAKE_END)

    # ------------------------------------------------------------------ SPI

    def spi_transfer(self, mosi: bytes) -> bytes:
        with self._lock:
            if self.faults.dead or not self._rstn:
                return bytes(len(mosi))
            self._settle()
            if self._state == State.SLEEP:
                return bytes(len(mosi))
            out = self._decode(mosi)
            f = self.faults
            if f.spi_ber > 0.0 or f.spi_corrupt_next > 0:
                buf = bytearray(out)
                if f.spi_ber > 0.0:
                    for i in range(len(buf)):
                        for bit in range(8):
                            if self._rng.random() < f.spi_ber:
                                buf[i] ^= 1 << bit
                if f.spi_corrupt_next > 0 and len(buf) > 1:
                    f.spi_corrupt_next -= 1
                    buf[self._rng.randrange(1, len(buf))] ^= 1 << self._rng.randrange(8)
                out = bytes(buf)
            return out

    def _phy_status(self) -> int:
        mode = (self._regs[Reg.TRX_CTRL_1] >> regs.SPI_CMD_MODE_SHIFT) & 0x3
        if mode == 1:
            return self._trx_status()
        if mode == 2:
            return self._phy_rssi()
        if mode == 3:
            return self._irq_status  # mirrored without clearing
        return 0x00

    def _decode(self, mosi: bytes) -> bytes:
        if not mosi:
            return b""
        cmd = mosi[0]
        n = len(mosi)
        out = bytearray(n)
        out[0] = self._phy_status()
        if cmd & 0x80:  # register access
            addr = cmd & regs.CMD_REG_MASK
            if n >= 2:
                if cmd & 0x40:
                    self._write_reg(addr, mosi[1])
                else:
                    out[1] = self._read_reg(addr)
            return bytes(out)
        if cmd & 0x20:  # frame buffer
            if cmd & 0x40:
                data = mosi[1:]
                self._fb[: len(data)] = data[: regs.FRAME_BUFFER_SIZE]
            else:
                phr = self._fb[0] & 0x7F
                stream = bytes(self._fb[: 1 + phr]) + bytes(self._fb_meta)
                k = min(n - 1, len(stream))
                out[1 : 1 + k] = stream[:k]
                self._fb_locked = False  # the /SEL rising edge after a FB read releases the lock
            return bytes(out)
        # SRAM
        if n >= 2:
            start = mosi[1] & 0x7F
            if cmd & 0x40:
                data = mosi[2:]
                end = min(start + len(data), regs.FRAME_BUFFER_SIZE)
                self._fb[start:end] = data[: end - start]
            else:
                k = min(n - 2, regs.FRAME_BUFFER_SIZE - start)
                out[2 : 2 + k] = self._fb[start : start + k]
        return bytes(out)

    def _trx_status(self) -> int:
        st = int(self._state)
        if self._cca_done_at is not None and self._now() >= self._cca_done_at:
            st |= regs.CCA_DONE | (regs.CCA_STATUS if self._cca_idle else 0)
        return st

    def _phy_rssi(self) -> int:
        crc = self._regs[Reg.PHY_RSSI] & regs.RX_CRC_VALID
        rnd = self._rng.getrandbits(2) << 5
        dbm = self._energy_dbm(self._channel(), self._now() - 2 * US, self._now())
        rssi = 0 if dbm < regs.RSSI_BASE_DBM else min(28, int((dbm - regs.RSSI_BASE_DBM) / 3) + 1)
        return crc | rnd | rssi

    def _read_reg(self, addr: int) -> int:
        if addr == Reg.TRX_STATUS:
            return self._trx_status()
        if addr == Reg.TRX_STATE:
            return (self._regs[Reg.TRX_STATE] & 0xE0) | 0x00
        if addr == Reg.IRQ_STATUS:
            value = self._irq_status
            self._irq_status = 0
            self._update_pin()
            return value
        if addr == Reg.PHY_RSSI:
            return self._phy_rssi()
        if addr == Reg.PHY_CC_CCA:
            return self._regs[addr] & ~regs.CCA_REQUEST
        return self._regs[addr]

    def _write_reg(self, addr: int, value: int) -> None:
        if addr in regs.READ_ONLY:
            return
        if addr == Reg.TRX_STATE:
            self._regs[addr] = (self._regs[addr] & 0xE0) | (value & 0x1F)
            self._command(value & 0x1F)
            return
        if addr == Reg.PHY_ED_LEVEL:
            self._start_ed()
            return
        if addr == Reg.PHY_CC_CCA:
            old_ch = self._channel()
            self._regs[addr] = value & ~regs.CCA_REQUEST
            if value & regs.CCA_REQUEST:
                self._start_cca()
            if self._channel() != old_ch and self._state in PLL_STATES:
                self._raise(Irq.PLL_LOCK)  # re-lock on the new channel (11 µs)
            return
        self._regs[addr] = value
        if addr in (Reg.IRQ_MASK, Reg.TRX_CTRL_1):
            self._update_pin()

    def _channel(self) -> int:
        return self._regs[Reg.PHY_CC_CCA] & regs.CHANNEL_MASK

    # ------------------------------------------------------------------ state machine

    def _goto(self, target: State, delay_us: int, pll: bool = False) -> None:
        f = self.faults
        if f.state_stuck_next > 0:
            f.state_stuck_next -= 1
            self._state = State.IN_PROGRESS
            self._pending = None
            return
        if pll and (f.pll_fail_permanent or f.pll_fail_next > 0):
            if f.pll_fail_next > 0:
                f.pll_fail_next -= 1
            self._state = State.IN_PROGRESS
            self._pending = None
            self._raise(Irq.PLL_UNLOCK)
            return
        self._state = State.IN_PROGRESS
        due = self._now() + delay_us * US
        self._pending = (target, due, "pll" if pll else "plain")
        self._schedule(due, self._settle)

    def _abort(self) -> None:
        self._tx_gen += 1
        self._aret = None
        self._rx_current = None
        self._deferred = None

    def _command(self, cmd: int) -> None:
        st = self._state
        if st in (State.SLEEP, State.P_ON) and cmd not in (Cmd.TRX_OFF, Cmd.FORCE_TRX_OFF):
            return
        if cmd == Cmd.NOP:
            return
        if cmd == Cmd.FORCE_TRX_OFF:
            if st == State.SLEEP:
                return
            self._abort()
            self._goto(State.TRX_OFF, regs.T_FAST_US)
            return
        if cmd == Cmd.FORCE_PLL_ON:
            if st in (State.SLEEP, State.P_ON, State.TRX_OFF, State.IN_PROGRESS):
                return
            self._abort()
            self._goto(State.PLL_ON, regs.T_FAST_US)
            return
        if cmd == Cmd.TX_START:
            if st == State.PLL_ON:
                self._start_basic_tx()
            elif st == State.TX_ARET_ON:
                self._start_aret()
            return
        if cmd == Cmd.PREP_DEEP_SLEEP:
            if st == State.TRX_OFF:
                self._state = State.PREP_DEEP_SLEEP
            return
        targets = {
            Cmd.RX_ON: State.RX_ON,
            Cmd.TRX_OFF: State.TRX_OFF,
            Cmd.PLL_ON: State.PLL_ON,
            Cmd.RX_AACK_ON: State.RX_AACK_ON,
            Cmd.TX_ARET_ON: State.TX_ARET_ON,
        }
        target = targets.get(cmd)  # type: ignore[call-overload]
        if target is None:
            return  # reserved values act as NOP
        if st == State.IN_PROGRESS:
            return  # the datasheet forbids commands during a transition; they are ignored
        if st in BUSY:
            self._deferred = target  # non-forced: applied when the busy phase ends
            return
        if st == target:
            return
        if st in (State.TRX_OFF, State.P_ON):
            if target == State.TRX_OFF:
                self._goto(State.TRX_OFF, regs.T_FAST_US)
            else:
                self._goto(target, regs.T_OFF_TO_ON_US, pll=True)
            return
        self._goto(target, regs.T_FAST_US)

    def _end_busy(self, idle: State) -> None:
        """A busy phase finished: return to ``idle`` or apply the deferred command."""
        deferred, self._deferred = self._deferred, None
        self._state = idle
        if deferred is not None and deferred != idle:
            self._command({State.TRX_OFF: Cmd.TRX_OFF, State.PLL_ON: Cmd.PLL_ON,
                           State.RX_ON: Cmd.RX_ON, State.RX_AACK_ON: Cmd.RX_AACK_ON,
                           State.TX_ARET_ON: Cmd.TX_ARET_ON}[deferred])  # fmt: skip

    # ------------------------------------------------------------------ transmit

    def _frame_from_fb(self) -> bytes:
        phr = self._fb[0] & 0x7F
        psdu = bytes(self._fb[1 : 1 + phr])
        if len(psdu) >= 2 and self._regs[Reg.TRX_CTRL_1] & regs.TX_AUTO_CRC_ON:
            psdu = psdu[:-2] + fcs(psdu[:-2])
        return psdu

    def _radiate(self, psdu: bytes, at_ns: int | None = None) -> int:
        """Put ``psdu`` on the air (physically from ``at_ns``, default now); returns when it
        ends (ns). The datagram leaves when the thread gets here; the timeline stays physical."""
        now = self._now() if at_ns is None else at_ns
        dur = regs.airtime_us(len(psdu)) * US
        ch = self._channel()
        self._energy.append(_OnAir(ch, now, now + dur, 0.0))  # own energy (ignored by CCA)
        self.stats["frames_sent"] += 1
        if self.air is not None:
            self.air.send(ch, psdu)
        if self.on_air_frame is not None:
            self.on_air_frame(ch, psdu, time.time(), True)
        return now + (dur if self.airtime else 0)

    def _start_basic_tx(self) -> None:
        psdu = self._frame_from_fb()
        self._state = State.BUSY_TX
        self._tx_gen += 1
        gen = self._tx_gen
        start = self._now() + regs.T_TX_START_US * US

        def go() -> None:
            if gen != self._tx_gen:
                return
            end = self._radiate(psdu, start)
            self._schedule(end, done)

        def done() -> None:
            if gen != self._tx_gen:
                return
            self._regs[Reg.TRX_STATE] = (Trac.SUCCESS << 5) | (self._regs[Reg.TRX_STATE] & 0x1F)
            self._raise(Irq.TRX_END)
            self._end_busy(State.PLL_ON)

        self._schedule(start, go)

    def _start_aret(self) -> None:
        psdu = self._frame_from_fb()
        try:
            hdr = parse_header(psdu)
            seq, wants_ack = hdr.seq, hdr.ack_request and hdr.frame_type != FT_ACK
        except HeaderError:
            seq, wants_ack = None, False
        be = self._regs[Reg.CSMA_BE] & 0x0F
        self._aret = _Aret(psdu, seq, wants_ack, be)
        self._state = State.BUSY_TX_ARET
        self._regs[Reg.TRX_STATE] = (Trac.INVALID << 5) | (self._regs[Reg.TRX_STATE] & 0x1F)
        self._tx_gen += 1
        self._aret_step(self._tx_gen)

    def _aret_step(self, gen: int) -> None:
        a = self._aret
        if a is None or gen != self._tx_gen:
            return
        max_csma = (self._regs[Reg.XAH_CTRL_0] >> 1) & 0x7
        if a.phase == "backoff":
            if max_csma == 7:
                a.phase = "tx"
                self._aret_step(gen)
                return
            slots = self._rng.randrange(1 << a.be) if a.be else 0
            a.phase = "cca"
            self._schedule(self._now() + slots * regs.BACKOFF_PERIOD_US * US,
                           lambda: self._aret_step(gen))  # fmt: skip
            return
        if a.phase == "cca":
            now = self._now()
            busy = self._cca_busy(now, now + 128 * US)
            if busy:
                a.csma_tries += 1
                if a.csma_tries > max_csma:
                    self._aret_finish(Trac.CHANNEL_ACCESS_FAILURE)
                    return
                a.csma_total += 1  # a CSMA retry follows
                max_be = self._regs[Reg.CSMA_BE] >> 4
                a.be = min(a.be + 1, max_be)
                a.phase = "backoff"
                self._schedule(now + 128 * US, lambda: self._aret_step(gen))
                return
            a.phase = "tx"
            self._schedule(now + 128 * US, lambda: self._aret_step(gen))
            return
        if a.phase == "tx":
            end = a.tx_end_ns = self._radiate(a.psdu)
            a.phase = "ackwait" if a.wants_ack else "sent"
            self._schedule(end, lambda: self._aret_step(gen))
            return
        if a.phase == "sent":
            self._aret_finish(Trac.SUCCESS)
            return
        if a.phase == "ackwait":
            a.phase = "ackwait-armed"
            self._schedule(self._now() + self.ack_timeout_ns, lambda: self._aret_step(gen))
            return
        if a.phase == "ackwait-armed":  # timeout: no ACK
            max_retries = self._regs[Reg.XAH_CTRL_0] >> 4
            if a.frame_retries >= max_retries:
                self._aret_finish(Trac.NO_ACK)
                return
            a.frame_retries += 1
            a.csma_tries = 0
            a.be = self._regs[Reg.CSMA_BE] & 0x0F
            a.phase = "backoff"
            self._aret_step(gen)

    def _aret_ack(self, seq: int, pending: bool) -> None:
        a = self._aret
        if a is None or not a.phase.startswith("ackwait") or a.seq != seq:
            return
        self._aret_finish(Trac.SUCCESS_DATA_PENDING if pending else Trac.SUCCESS)

    def _aret_finish(self, trac: Trac) -> None:
        a = self._aret
        self._aret = None
        self._tx_gen += 1
        if a is not None:
            self._regs[Reg.XAH_CTRL_2] = (min(a.frame_retries, 15) << 4) | (
                min(a.csma_total, 7) << 1
            )
        self._regs[Reg.TRX_STATE] = (int(trac) << 5) | (self._regs[Reg.TRX_STATE] & 0x1F)
        self._end_busy(State.TX_ARET_ON)
        self._raise(Irq.TRX_END)

    # ------------------------------------------------------------------ energy, ED and CCA

    def _energy_dbm(self, channel: int, t0: int, t1: int) -> float:
        level = self.interference.get(channel, self.noise_dbm)
        for e in self._energy:
            if e.channel == channel and e.start_ns < t1 and e.end_ns > t0 and e.rssi_dbm != 0.0:
                level = max(level, e.rssi_dbm)
        return level

    def _cca_busy(self, t0: int, t1: int) -> bool:
        thres = regs.RSSI_BASE_DBM + 2 * (self._regs[Reg.CCA_THRES] & 0x0F)
        return self._energy_dbm(self._channel(), t0, t1) > thres

    def _start_ed(self) -> None:
        if self._state not in (State.RX_ON, State.BUSY_RX):
            return
        now = self._now()
        due = now + regs.T_ED_US * US
        dbm = self._energy_dbm(self._channel(), now, due)
        ed = 0 if dbm <= regs.RSSI_BASE_DBM else min(84, round(dbm - regs.RSSI_BASE_DBM))
        self._ed_due = due

        def done() -> None:
            self._regs[Reg.PHY_ED_LEVEL] = ed
            self._ed_due = None
            self._raise(Irq.CCA_ED_DONE)

        self._schedule(due, done)

    def _start_cca(self) -> None:
        now = self._now()
        due = now + regs.T_CCA_US * US
        idle = True
        if self._state in (State.RX_ON, State.BUSY_RX):
            idle = not self._cca_busy(now, due)
        self._cca_idle = idle
        self._cca_done_at = due

        def done() -> None:
            self._raise(Irq.CCA_ED_DONE)

        self._schedule(due, done)

    # ------------------------------------------------------------------ receive

    def deliver(self, sender: int, channel: int, psdu: bytes, at_ns: int | None = None) -> None:
        """A frame arrived from the air (chip thread); ``at_ns`` is when it reached the socket
        (monotonic ns), which is earlier than now when this thread runs late."""
        link = self.links.link(sender, self.air.node_id if self.air else 0)
        if link.loss > 0.0 and self._rng.random() < link.loss:
            return
        now = self._now()
        if at_ns is not None:
            now = min(now, at_ns)
        dur = regs.airtime_us(len(psdu)) * US
        rx = _OnAir(channel, now, now + dur, link.rssi_dbm)
        self._energy.append(rx)
        cur = self._rx_current
        if cur is not None and cur[0].end_ns <= now and self._rx_finish is not None:
            # read in one batch with an earlier frame that had ended before this one started:
            # finish that reception first rather than call the two a collision
            self._rx_finish()
        if channel != self._channel():
            return
        # an ACK for our TX_ARET transaction
        if len(psdu) == 5 and (psdu[0] & 0x7) == FT_ACK and self._aret is not None:
            if fcs_ok(psdu):
                seq, pend = psdu[2], bool(psdu[0] & 0x10)
                if self.airtime:
                    gen = self._tx_gen
                    end = rx.end_ns
                    if now < self._aret.tx_end_ns:
                        # heard while our frame is still on the air: the peer does not model
                        # airtime (OpenThread's simulation ACKs the moment the datagram reaches
                        # it), so the ACK is put where it physically is, a turnaround after
                        # the frame, and ends its own airtime later
                        end = (
                            self._aret.tx_end_ns
                            + (regs.TURNAROUND_US + regs.airtime_us(len(psdu))) * US
                        )

                    def ack_end() -> None:
                        if gen == self._tx_gen:
                            self._aret_ack(seq, pend)

                    self._schedule(end, ack_end)
                else:
                    self._aret_ack(seq, pend)
            return
        if self._state not in ACTIVE_RX and not (self._state in BUSY and self._rx_current):
            return
        corrupt = self.faults.crc_error_rate > 0 and self._rng.random() < self.faults.crc_error_rate
        if corrupt and len(psdu) >= 2:
            psdu = psdu[:-1] + bytes((psdu[-1] ^ 0x5A,))
        if self._rx_current is not None:
            # a second frame while receiving: a collision; the first one is garbled
            cur_air, cur_psdu, cur_rssi, _ = self._rx_current
            self._rx_current = (cur_air, cur_psdu, cur_rssi, True)
            self.stats["collisions"] += 1
            return
        if not self.airtime:
            self._receive_frame(psdu, link.rssi_dbm, garbled=False)
            return
        self._rx_current = (rx, psdu, link.rssi_dbm, False)
        idle = self._state
        self._state = State.BUSY_RX if idle == State.RX_ON else State.BUSY_RX_AACK
        gen = self._tx_gen

        def rx_start() -> None:
            if gen == self._tx_gen and self._rx_current is not None:
                self._raise(Irq.RX_START)

        def rx_end() -> None:
            if gen != self._tx_gen or self._rx_current is None or self._rx_current[0] is not rx:
                return
            _air, frame, rssi, garbled = self._rx_current
            self._rx_current = None
            self._rx_finish = None
            self._state = idle
            self._receive_frame(frame, rssi, garbled)
            if self._state == idle:
                self._end_busy(idle)

        self._rx_finish = rx_end
        self._schedule(now + regs.SHR_PHR_US * US, rx_start)
        self._schedule(rx.end_ns + self.faults.rx_late_us * US, rx_end)

    def _lqi(self, rssi: float) -> int:
        return max(0, min(255, round((rssi - regs.MIN_RX_SENSITIVITY_DBM) * 255 / 40)))

    def _receive_frame(self, psdu: bytes, rssi: float, garbled: bool) -> None:
        if garbled and len(psdu) >= 2:
            psdu = psdu[:-2] + bytes((psdu[-2] ^ 0xFF, psdu[-1]))
        crc_valid = fcs_ok(psdu)
        promiscuous = bool(self._regs[Reg.XAH_CTRL_1] & regs.AACK_PROM_MODE)
        extended = self._state == State.RX_AACK_ON
        passed = True
        hdr = None
        if extended:
            try:
                hdr = parse_header(psdu)
            except HeaderError:
                hdr = None
            passed = hdr is not None and self._filter(hdr)
            if not promiscuous and (not passed or not crc_valid):
                self.stats["rx_filtered"] += 1
                return
            if hdr is not None and hdr.frame_type == FT_ACK and not promiscuous:
                return
        if self._fb_locked and self._regs[Reg.TRX_CTRL_2] & regs.RX_SAFE_MODE:
            self.stats["rx_overruns"] += 1
            return
        if self.on_air_frame is not None:
            self.on_air_frame(self._channel(), psdu, time.time(), False)
        self.stats["frames_received"] += 1
        ed = 0 if rssi <= regs.RSSI_BASE_DBM else min(84, round(rssi - regs.RSSI_BASE_DBM))
        trac = Trac.SUCCESS
        self._fb[0] = len(psdu)
        self._fb[1 : 1 + len(psdu)] = psdu
        self._fb_meta = (self._lqi(rssi), ed, (0x80 if crc_valid else 0) | (trac << 4))
        self._regs[Reg.PHY_RSSI] = 0x80 if crc_valid else 0
        if self._regs[Reg.TRX_CTRL_2] & regs.RX_SAFE_MODE and (crc_valid or extended):
            self._fb_locked = True
        if extended and passed:
            self._raise(Irq.AMI)
        self._raise(Irq.TRX_END)
        if (
            extended
            and passed
            and crc_valid
            and hdr is not None
            and hdr.ack_request
            and not hdr.is_broadcast
            and hdr.frame_type != FT_ACK
            and not self._regs[Reg.CSMA_SEED_1] & regs.AACK_DIS_ACK
            and hdr.version <= self._fvn_limit()
        ):
            pending = bool(self._regs[Reg.CSMA_SEED_1] & regs.AACK_SET_PD) and (
                hdr.frame_type == FT_COMMAND and (hdr.security or hdr.command_id == DATA_REQUEST)
            )
            self._send_ack(hdr.seq or 0, pending)

    def _fvn_limit(self) -> int:
        mode = self._regs[Reg.CSMA_SEED_1] >> 6
        return {0: 0, 1: 1, 2: 2, 3: 3}[mode]

    def _send_ack(self, seq: int, pending: bool) -> None:
        ack = imm_ack(seq, pending)
        psdu = ack + fcs(ack)
        self.stats["acks_sent"] += 1
        if self.air is not None:
            self.air.send(self._channel(), psdu)
        if self.on_air_frame is not None:
            self.on_air_frame(self._channel(), psdu, time.time(), True)

    def _filter(self, h: object) -> bool:
        from drivers.mac_header import MacHeader

        assert isinstance(h, MacHeader)
        r = self._regs
        pan = r[Reg.PAN_ID_0] | (r[Reg.PAN_ID_1] << 8)
        short = r[Reg.SHORT_ADDR_0] | (r[Reg.SHORT_ADDR_1] << 8)
        ext = bytes(r[Reg.IEEE_ADDR_0 : Reg.IEEE_ADDR_7 + 1])[::-1]
        if h.frame_type not in (FT_BEACON, FT_DATA, FT_ACK, FT_COMMAND):
            return False
        if h.frame_type == FT_BEACON:
            return pan == BROADCAST_PAN or h.src_pan == pan
        if h.dst_pan is not None and h.dst_pan not in (pan, BROADCAST_PAN):
            return False
        if h.dst_mode == ADDR_SHORT and h.dst_addr not in (short, BROADCAST_SHORT):
            return False
        if h.dst_mode == ADDR_EXT and h.dst_addr != ext:
            return False
        if h.dst_mode == ADDR_NONE and h.frame_type in (FT_DATA, FT_COMMAND):
            coord = bool(r[Reg.CSMA_SEED_1] & regs.AACK_I_AM_COORD)
            return coord and h.src_pan == pan
        return True

    # ------------------------------------------------------------------ the chip thread

    def _run(self) -> None:
        rx_fd = self.air.rx.fileno() if self.air is not None else None
        fds = [self._wake_r] + ([rx_fd] if rx_fd is not None else [])
        while not self._closing:
            with self._lock:
                timeout = None
                due = None
                if self._timers:
                    due = self._timers[0][0]
                    # wake early and spin the last stretch: select() has ~50-100 µs of slack
                    timeout = max(0.0, (due - self._now() - SPIN_NS) / 1e9)
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
                if due is not None and not ready:
                    # yield the GIL while spinning (other chips in this process keep running),
                    # except for the very last stretch
                    while self._now() < due - SPIN_TIGHT_NS:
                        time.sleep(0)
                    while self._now() < due:
                        pass
            except (OSError, ValueError):
                return  # descriptors closed under us: the chip is being closed
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
                self._wake_pending = False
            with self._lock:
                if self._is_closing():
                    return
                if rx_fd is not None and rx_fd in ready and self.air is not None:
                    while (item := self.air.recv_timed()) is not None:
                        self.deliver(*item)
                now = self._now()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn = heapq.heappop(self._timers)
                    fn()
                    now = self._now()

    def _is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._abort()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.air is not None:
            self.air.close()
