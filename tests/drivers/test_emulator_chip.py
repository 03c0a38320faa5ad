"""The chip model through raw SPI bytes, as the datasheet describes the interface
(reference/at86rf233.md §1-§5)."""

from __future__ import annotations

import time

import pytest

from drivers.at86rf233 import regs
from drivers.at86rf233.regs import Cmd, Irq, Reg, State
from drivers.emulator.chip import At86rf233Emulator
from drivers.fcs import fcs, fcs_ok


@pytest.fixture
def emu():
    chip = At86rf233Emulator(None, airtime=False, seed=1)
    edges: list[int] = []
    chip.on_irq_edge = edges.append
    chip.edges = edges  # type: ignore[attr-defined]
    yield chip
    chip.close()


def rd(chip: At86rf233Emulator, reg: int) -> int:
    return chip.spi_transfer(bytes((0x80 | reg, 0)))[1]


def wr(chip: At86rf233Emulator, reg: int, value: int) -> None:
    chip.spi_transfer(bytes((0xC0 | reg, value)))


def wait_state(chip: At86rf233Emulator, state: State, timeout: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while rd(chip, Reg.TRX_STATUS) & 0x1F != state:
        assert time.monotonic() < end, f"chip never reached {state.name}"


def test_identity_and_reset_values(emu):
    assert rd(emu, Reg.PART_NUM) == 0x0B
    assert rd(emu, Reg.MAN_ID_0) == 0x1F and rd(emu, Reg.MAN_ID_1) == 0x00
    assert rd(emu, Reg.TRX_CTRL_1) == 0x22
    assert rd(emu, Reg.CSMA_BE) == 0x53
    assert rd(emu, Reg.XAH_CTRL_0) == 0x38
    assert rd(emu, Reg.PHY_CC_CCA) & 0x1F == 11
    assert rd(emu, Reg.TRX_STATUS) & 0x1F == State.TRX_OFF


def test_read_only_registers_ignore_writes(emu):
    wr(emu, Reg.PART_NUM, 0x55)
    wr(emu, Reg.MAN_ID_0, 0x00)
    assert rd(emu, Reg.PART_NUM) == 0x0B
    assert rd(emu, Reg.MAN_ID_0) == 0x1F


def test_phy_status_byte_follows_spi_cmd_mode(emu):
    assert emu.spi_transfer(bytes((0x80 | Reg.PART_NUM, 0)))[0] == 0x00
    wr(emu, Reg.TRX_CTRL_1, regs.TX_AUTO_CRC_ON | (1 << regs.SPI_CMD_MODE_SHIFT))
    assert emu.spi_transfer(bytes((0x80 | Reg.PART_NUM, 0)))[0] & 0x1F == State.TRX_OFF


def test_pll_transition_takes_time_and_raises_pll_lock(emu):
    wr(emu, Reg.TRX_CTRL_1, 0x20)  # IRQ_MASK_MODE=0: only enabled IRQs latch
    wr(emu, Reg.IRQ_MASK, Irq.PLL_LOCK)
    t0 = time.monotonic()
    wr(emu, Reg.TRX_STATE, Cmd.PLL_ON)
    first = rd(emu, Reg.TRX_STATUS) & 0x1F
    t1 = time.monotonic()
    # 80 µs lock-in: a read right after the command sees the transition in progress (a loaded
    # host may read later than that, when PLL_ON is already reached), and it never ends sooner
    if t1 - t0 < 60e-6:
        assert first == State.IN_PROGRESS
    assert first in (State.IN_PROGRESS, State.PLL_ON)
    wait_state(emu, State.PLL_ON)
    assert time.monotonic() - t0 >= 80e-6
    assert emu.irq_pin
    assert rd(emu, Reg.IRQ_STATUS) == Irq.PLL_LOCK
    assert rd(emu, Reg.IRQ_STATUS) == 0  # cleared on read
    assert not emu.irq_pin
    assert len(emu.edges) == 1


def test_masked_irq_latched_only_in_mask_mode(emu):
    wr(emu, Reg.TRX_CTRL_1, 0x22)  # IRQ_MASK_MODE=1
    wr(emu, Reg.IRQ_MASK, 0)
    wr(emu, Reg.TRX_STATE, Cmd.PLL_ON)
    wait_state(emu, State.PLL_ON)
    assert not emu.irq_pin  # masked: no pin
    assert rd(emu, Reg.IRQ_STATUS) & Irq.PLL_LOCK  # but recorded for polling


def test_frame_buffer_and_sram_access(emu):
    psdu = b"\x41\x88\x01\x34\x12\xff\xff\x01\x00hello"
    emu.spi_transfer(bytes((0x60, len(psdu) + 2)) + psdu)
    # SRAM read from address 0 returns PHR then the PSDU
    out = emu.spi_transfer(bytes((0x00, 0x00)) + bytes(1 + len(psdu)))
    assert out[2] == len(psdu) + 2
    assert out[3 : 3 + len(psdu)] == psdu
    # SRAM write into the middle, read back through the frame buffer
    emu.spi_transfer(bytes((0x40, 10, ord("J"))))
    fb = emu.spi_transfer(bytes((0x20,)) + bytes(1 + len(psdu) + 2 + 3))
    assert fb[1] == len(psdu) + 2
    assert fb[2 + 9] == ord("J")


def test_basic_tx_appends_fcs_and_raises_trx_end(emu):
    sent: list[bytes] = []
    emu.on_air_frame = lambda ch, psdu, t, mine: sent.append(psdu)
    wr(emu, Reg.IRQ_MASK, Irq.TRX_END)
    wr(emu, Reg.TRX_STATE, Cmd.PLL_ON)
    wait_state(emu, State.PLL_ON)
    frame = b"\x41\x88\x05\x34\x12\xff\xff\x01\x00abc"
    emu.spi_transfer(bytes((0x60, len(frame) + 2)) + frame)
    emu.set_slp_tr(True)
    emu.set_slp_tr(False)
    end = time.monotonic() + 1
    while not emu.irq_pin:
        assert time.monotonic() < end
    assert rd(emu, Reg.IRQ_STATUS) & Irq.TRX_END
    assert sent == [frame + fcs(frame)]
    assert fcs_ok(sent[0])
    wait_state(emu, State.PLL_ON)


def test_reserved_commands_are_nops_and_sleep_blocks_spi(emu):
    wr(emu, Reg.TRX_STATE, 0x1B)
    assert rd(emu, Reg.TRX_STATUS) & 0x1F == State.TRX_OFF
    emu.set_slp_tr(True)
    assert emu.state == State.SLEEP
    assert rd(emu, Reg.PART_NUM) == 0x00  # registers not accessible in SLEEP
    emu.set_slp_tr(False)
    wait_state(emu, State.TRX_OFF)
    assert rd(emu, Reg.IRQ_STATUS) & Irq.CCA_ED_DONE  # AWAKE_END latched (mask mode 1)


def test_reset_pin_restores_defaults(emu):
    wr(emu, Reg.PHY_TX_PWR, 0x0F)
    wr(emu, Reg.SHORT_ADDR_0, 0x12)
    emu.set_rstn(False)
    assert rd(emu, Reg.PART_NUM) == 0x00  # held in reset
    emu.set_rstn(True)
    wait_state(emu, State.TRX_OFF)
    assert rd(emu, Reg.PHY_TX_PWR) == 0x00
    assert rd(emu, Reg.SHORT_ADDR_0) == 0xFF


def test_rx_safe_mode_locks_until_fb_read(emu):
    wr(emu, Reg.TRX_CTRL_2, regs.RX_SAFE_MODE | 0x20)
    wr(emu, Reg.TRX_STATE, Cmd.RX_ON)
    wait_state(emu, State.RX_ON)
    f1 = b"\x41\x88\x01\x34\x12\xff\xff\x01\x00one"
    f2 = b"\x41\x88\x02\x34\x12\xff\xff\x01\x00two"
    with emu._lock:
        emu.deliver(9, 11, f1 + fcs(f1))
        emu.deliver(9, 11, f2 + fcs(f2))  # arrives while the first is still unread: dropped
    fb = emu.spi_transfer(bytes((0x20,)) + bytes(1 + len(f1) + 2 + 3))
    assert fb[2 : 2 + len(f1)] == f1
    rx_status = fb[2 + len(f1) + 2 + 2]
    assert rx_status & 0x80  # CRC valid
    assert emu.stats["rx_overruns"] == 1
    with emu._lock:
        emu.deliver(9, 11, f2 + fcs(f2))  # now the lock is released
    fb = emu.spi_transfer(bytes((0x20,)) + bytes(1 + len(f2) + 2 + 3))
    assert fb[2 : 2 + len(f2)] == f2


def test_ed_measurement_reports_interference():
    chip = At86rf233Emulator(None, airtime=False, interference={20: -70.0}, seed=2)
    try:
        wr(chip, Reg.PHY_CC_CCA, 0x20 | 20)
        wr(chip, Reg.TRX_STATE, Cmd.RX_ON)
        wait_state(chip, State.RX_ON)
        wr(chip, Reg.PHY_ED_LEVEL, 0)
        end = time.monotonic() + 0.5
        while not rd(chip, Reg.IRQ_STATUS) & Irq.CCA_ED_DONE:
            assert time.monotonic() < end
        assert rd(chip, Reg.PHY_ED_LEVEL) == 24  # -70 dBm = -94 + 24
    finally:
        chip.close()
