"""AT86RF233 register map, command bytes and field values (datasheet family facts; see docs/radio.md)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

# SPI command bytes (first MOSI byte of an access)
CMD_REG_READ = 0x80
CMD_REG_WRITE = 0xC0
CMD_REG_MASK = 0x3F
CMD_FB_READ = 0x20
CMD_FB_WRITE = 0x60
CMD_SRAM_READ = 0x00
CMD_SRAM_WRITE = 0x40

FRAME_BUFFER_SIZE = 128
MAX_PSDU = 127
RSSI_BASE_DBM = -94
MIN_RX_SENSITIVITY_DBM = -101


class Reg(IntEnum):
    TRX_STATUS = 0x01
    TRX_STATE = 0x02
    TRX_CTRL_0 = 0x03
    TRX_CTRL_1 = 0x04
    PHY_TX_PWR = 0x05
    PHY_RSSI = 0x06
    PHY_ED_LEVEL = 0x07
    PHY_CC_CCA = 0x08
    CCA_THRES = 0x09
    RX_CTRL = 0x0A
    SFD_VALUE = 0x0B
    TRX_CTRL_2 = 0x0C
    ANT_DIV = 0x0D
    IRQ_MASK = 0x0E
    IRQ_STATUS = 0x0F
    VREG_CTRL = 0x10
    BATMON = 0x11
    XOSC_CTRL = 0x12
    CC_CTRL_0 = 0x13
    CC_CTRL_1 = 0x14
    RX_SYN = 0x15
    TRX_RPC = 0x16
    XAH_CTRL_1 = 0x17
    FTN_CTRL = 0x18
    XAH_CTRL_2 = 0x19
    PLL_CF = 0x1A
    PLL_DCU = 0x1B
    PART_NUM = 0x1C
    VERSION_NUM = 0x1D
    MAN_ID_0 = 0x1E
    MAN_ID_1 = 0x1F
    SHORT_ADDR_0 = 0x20
    SHORT_ADDR_1 = 0x21
    PAN_ID_0 = 0x22
    PAN_ID_1 = 0x23
    IEEE_ADDR_0 = 0x24
    IEEE_ADDR_7 = 0x2B
    XAH_CTRL_0 = 0x2C
    CSMA_SEED_0 = 0x2D
    CSMA_SEED_1 = 0x2E
    CSMA_BE = 0x2F
    TST_CTRL_DIGI = 0x36
    PHY_TX_TIME = 0x3B
    TST_AGC = 0x3C
    TST_SDM = 0x3D


# Reset values the emulator loads (AT86RF233 where known, family values elsewhere; docs/radio.md
# lists which are inferred).
RESET_VALUES: dict[int, int] = {
    Reg.TRX_STATUS: 0x08,
    Reg.TRX_STATE: 0x00,
    Reg.TRX_CTRL_0: 0x09,
    Reg.TRX_CTRL_1: 0x22,
    Reg.PHY_TX_PWR: 0x00,
    Reg.PHY_ED_LEVEL: 0xFF,
    Reg.PHY_CC_CCA: 0x2B,
    Reg.CCA_THRES: 0xC7,
    Reg.RX_CTRL: 0x37,
    Reg.SFD_VALUE: 0xA7,
    Reg.TRX_CTRL_2: 0x20,
    Reg.ANT_DIV: 0x00,
    Reg.IRQ_MASK: 0x00,
    Reg.IRQ_STATUS: 0x00,
    Reg.VREG_CTRL: 0x44,
    Reg.BATMON: 0x20,
    Reg.XOSC_CTRL: 0xF0,
    Reg.RX_SYN: 0x00,
    Reg.TRX_RPC: 0xC1,
    Reg.XAH_CTRL_1: 0x00,
    Reg.FTN_CTRL: 0x58,
    Reg.PLL_CF: 0x57,
    Reg.PLL_DCU: 0x20,
    Reg.PART_NUM: 0x0B,
    Reg.VERSION_NUM: 0x02,
    Reg.MAN_ID_0: 0x1F,
    Reg.MAN_ID_1: 0x00,
    Reg.SHORT_ADDR_0: 0xFF,
    Reg.SHORT_ADDR_1: 0xFF,
    Reg.PAN_ID_0: 0xFF,
    Reg.PAN_ID_1: 0xFF,
    Reg.XAH_CTRL_0: 0x38,
    Reg.CSMA_SEED_0: 0xEA,
    Reg.CSMA_SEED_1: 0x42,
    Reg.CSMA_BE: 0x53,
}

READ_ONLY = frozenset(
    {
        Reg.TRX_STATUS,
        Reg.PHY_RSSI,
        Reg.IRQ_STATUS,
        Reg.XAH_CTRL_2,
        Reg.PART_NUM,
        Reg.VERSION_NUM,
        Reg.MAN_ID_0,
        Reg.MAN_ID_1,
        Reg.PHY_TX_TIME,
    }
)

PART_NUM_AT86RF233 = 0x0B
MAN_ID_ATMEL = 0x001F
KNOWN_PARTS = {
    0x02: "AT86RF230",
    0x03: "AT86RF231",
    0x07: "AT86RF212",
    0x0A: "AT86RF232",
    0x0B: "AT86RF233",
}


class State(IntEnum):
    """TRX_STATUS state codes (register 0x01 bits 4:0)."""

    P_ON = 0x00
    BUSY_RX = 0x01
    BUSY_TX = 0x02
    RX_ON = 0x06
    TRX_OFF = 0x08
    PLL_ON = 0x09
    SLEEP = 0x0F
    PREP_DEEP_SLEEP = 0x10
    BUSY_RX_AACK = 0x11
    BUSY_TX_ARET = 0x12
    RX_AACK_ON = 0x16
    TX_ARET_ON = 0x19
    IN_PROGRESS = 0x1F


class Cmd(IntEnum):
    """TRX_STATE.TRX_CMD values."""

    NOP = 0x00
    TX_START = 0x02
    FORCE_TRX_OFF = 0x03
    FORCE_PLL_ON = 0x04
    RX_ON = 0x06
    TRX_OFF = 0x08
    PLL_ON = 0x09
    PREP_DEEP_SLEEP = 0x10
    RX_AACK_ON = 0x16
    TX_ARET_ON = 0x19


class Trac(IntEnum):
    SUCCESS = 0
    SUCCESS_DATA_PENDING = 1
    SUCCESS_WAIT_FOR_ACK = 2
    CHANNEL_ACCESS_FAILURE = 3
    NO_ACK = 5
    INVALID = 7


class Irq(IntFlag):
    PLL_LOCK = 0x01
    PLL_UNLOCK = 0x02
    RX_START = 0x04
    TRX_END = 0x08
    CCA_ED_DONE = 0x10  # also AWAKE_END
    AMI = 0x20
    TRX_UR = 0x40
    BAT_LOW = 0x80


AWAKE_END = Irq.CCA_ED_DONE

# TRX_CTRL_1
TX_AUTO_CRC_ON = 0x20
IRQ_MASK_MODE = 0x02
IRQ_POLARITY = 0x01
SPI_CMD_MODE_SHIFT = 2
# TRX_CTRL_2
RX_SAFE_MODE = 0x80
# PHY_CC_CCA
CCA_REQUEST = 0x80
CHANNEL_MASK = 0x1F
# TRX_STATUS
CCA_DONE = 0x80
CCA_STATUS = 0x40
# PHY_RSSI
RX_CRC_VALID = 0x80
# XAH_CTRL_1
AACK_PROM_MODE = 0x02
AACK_ACK_TIME = 0x04
# CSMA_SEED_1
AACK_SET_PD = 0x20
AACK_DIS_ACK = 0x10
AACK_I_AM_COORD = 0x08
# RX_SYN
RX_PDT_DIS = 0x80

# PHY_TX_PWR.TX_PWR index -> output power in dBm (AT86RF233)
TX_POWER_DBM: tuple[float, ...] = (
    4.0, 3.7, 3.4, 3.0, 2.5, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, -12.0, -17.0,
)  # fmt: skip

# Timing (µs), AT86RF233 values where known (reference/at86rf233.md §3.5 and §8)
T_RESET_TO_OFF_US = 26
T_OFF_TO_ON_US = 80  # TRX_OFF -> PLL_ON / RX_ON / RX_AACK_ON / TX_ARET_ON (PLL lock-in)
T_FAST_US = 1  # PLL_ON <-> RX states, forced transitions
T_SLEEP_TO_OFF_US = 210
T_TX_START_US = 16  # PLL_ON -> BUSY_TX
T_TX_END_TO_PLL_US = 32
T_CHANNEL_SWITCH_US = 11
T_ED_US = 140
T_CCA_US = 140
SYMBOL_US = 16
OCTET_US = 32
SHR_PHR_US = 192  # 5 octets SHR + 1 octet PHR
BACKOFF_PERIOD_US = 320  # aUnitBackoffPeriod, 20 symbols
TURNAROUND_US = 192


def airtime_us(psdu_len: int) -> int:
    """Time on air of a PSDU of ``psdu_len`` octets (incl. FCS) with SHR and PHR: (6 + n) × 32 µs."""
    return (6 + psdu_len) * OCTET_US


def tx_power_index(dbm: float) -> int:
    """The PHY_TX_PWR index whose power is the highest not above ``dbm`` (clamped to the table)."""
    for idx, p in enumerate(TX_POWER_DBM):
        if p <= dbm + 1e-9:
            return idx
    return len(TX_POWER_DBM) - 1
