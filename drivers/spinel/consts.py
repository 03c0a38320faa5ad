"""Spinel numbers the radio backend uses, from OpenThread's ``src/lib/spinel/spinel.h`` and
``include/openthread/platform/radio.h`` (OpenThread a93706fde1f2: protocol 4.3, RCP API 11)."""

from __future__ import annotations

import enum

# The Spinel protocol version an OpenThread host requires exactly (major, minor).
PROTOCOL_VERSION = (4, 3)
# The RCP API versions this backend works with: OpenThread's host accepts RCP API 4 and later
# (SPINEL_MIN_HOST_SUPPORTED_RCP_API_VERSION) and itself speaks 11 (SPINEL_RCP_API_VERSION),
# which is what it reports when an RCP asks for a newer host.
RCP_API_MIN = 4
RCP_API_MAX = 11
HOST_RCP_API_VERSION = 11

HEADER_FLAG = 0x80
TID_MAX = 15


class Cmd(enum.IntEnum):
    NOOP = 0
    RESET = 1
    PROP_VALUE_GET = 2
    PROP_VALUE_SET = 3
    PROP_VALUE_INSERT = 4
    PROP_VALUE_REMOVE = 5
    PROP_VALUE_IS = 6
    PROP_VALUE_INSERTED = 7
    PROP_VALUE_REMOVED = 8


# Commands whose frame carries a property id after the command.
PROP_COMMANDS = frozenset(range(Cmd.PROP_VALUE_GET, Cmd.PROP_VALUE_REMOVED + 1))


class ResetType(enum.IntEnum):
    PLATFORM = 1
    STACK = 2
    BOOTLOADER = 3


class Prop(enum.IntEnum):
    LAST_STATUS = 0
    PROTOCOL_VERSION = 1
    NCP_VERSION = 2
    INTERFACE_TYPE = 3
    VENDOR_ID = 4
    CAPS = 5
    HWADDR = 8
    PHY_ENABLED = 0x20
    PHY_CHAN = 0x21
    PHY_CHAN_SUPPORTED = 0x22
    PHY_CCA_THRESHOLD = 0x24
    PHY_TX_POWER = 0x25
    PHY_RSSI = 0x26
    PHY_RX_SENSITIVITY = 0x27
    PHY_CHAN_PREFERRED = 0x29
    MAC_SCAN_STATE = 0x30
    MAC_SCAN_MASK = 0x31
    MAC_SCAN_PERIOD = 0x32
    MAC_15_4_LADDR = 0x34
    MAC_15_4_SADDR = 0x35
    MAC_15_4_PANID = 0x36
    MAC_RAW_STREAM_ENABLED = 0x37
    MAC_PROMISCUOUS_MODE = 0x38
    MAC_ENERGY_SCAN_RESULT = 0x39
    MAC_RX_ON_WHEN_IDLE_MODE = 0x3B
    STREAM_DEBUG = 0x70
    STREAM_RAW = 0x71
    STREAM_LOG = 0x74
    RCP_API_VERSION = 0xB0
    RCP_MIN_HOST_API_VERSION = 0xB1
    RADIO_CAPS = 0x1200 + 11
    MAC_SRC_MATCH_ENABLED = 0x1300 + 3
    MAC_SRC_MATCH_SHORT_ADDRESSES = 0x1300 + 4
    MAC_SRC_MATCH_EXTENDED_ADDRESSES = 0x1300 + 5


def prop_name(prop: int) -> str:
    try:
        return Prop(prop).name
    except ValueError:
        return f"0x{prop:x}"


class Status(enum.IntEnum):
    OK = 0
    FAILURE = 1
    UNIMPLEMENTED = 2
    INVALID_ARGUMENT = 3
    INVALID_STATE = 4
    INVALID_COMMAND = 5
    INVALID_INTERFACE = 6
    INTERNAL_ERROR = 7
    SECURITY_ERROR = 8
    PARSE_ERROR = 9
    IN_PROGRESS = 10
    NOMEM = 11
    BUSY = 12
    PROP_NOT_FOUND = 13
    DROPPED = 14
    EMPTY = 15
    CMD_TOO_BIG = 16
    NO_ACK = 17
    CCA_FAILURE = 18
    ALREADY = 19
    ITEM_NOT_FOUND = 20
    INVALID_COMMAND_FOR_PROP = 21
    UNKNOWN_NEIGHBOR = 22
    NOT_CAPABLE = 23
    RESPONSE_TIMEOUT = 24
    RESET_POWER_ON = 112
    RESET_EXTERNAL = 113
    RESET_SOFTWARE = 114
    RESET_FAULT = 115
    RESET_CRASH = 116
    RESET_ASSERT = 117
    RESET_OTHER = 118
    RESET_UNKNOWN = 119
    RESET_WATCHDOG = 120


RESET_STATUSES = range(112, 128)  # SPINEL_STATUS_RESET__BEGIN .. __END
STACK_NATIVE_BASE = 16384  # an OpenThread error wrapped as a status (SPINEL_STATUS_STACK_NATIVE)


def status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        if STACK_NATIVE_BASE <= status < 81920:
            return f"OT_ERROR_{status - STACK_NATIVE_BASE}"
        return f"STATUS_{status}"


class Cap(enum.IntEnum):
    COUNTERS = 5
    UNSOL_UPDATE_FILTER = 12
    MAC_802_15_4_2450MHZ_OQPSK = 24
    CONFIG_FTD = 32
    CONFIG_MTD = 33
    CONFIG_RADIO = 34
    RCP_API_VERSION = 64
    RCP_MIN_HOST_API_VERSION = 65
    RCP_RESET_TO_BOOTLOADER = 66
    RCP_LOG_CRASH_DUMP = 67
    MAC_ALLOWLIST = 512
    MAC_RAW = 513
    OPENTHREAD_LOG_METADATA = 518
    MULTI_RADIO = 525


def cap_name(cap: int) -> str:
    try:
        return Cap(cap).name
    except ValueError:
        return str(cap)


class RadioCaps(enum.IntFlag):
    """``otRadioCaps`` (the value of PROP_RADIO_CAPS); names as ot-br-posix logs them."""

    ACK_TIMEOUT = 1 << 0
    ENERGY_SCAN = 1 << 1
    TRANSMIT_RETRIES = 1 << 2
    CSMA_BACKOFF = 1 << 3
    SLEEP_TO_TX = 1 << 4
    TRANSMIT_SEC = 1 << 5
    TRANSMIT_TIMING = 1 << 6
    RECEIVE_TIMING = 1 << 7
    RX_ON_WHEN_IDLE = 1 << 8
    TRANSMIT_FRAME_POWER = 1 << 9
    ALT_SHORT_ADDR = 1 << 10


RADIO_CAP_NAMES = {
    RadioCaps.ACK_TIMEOUT: "ack-timeout",
    RadioCaps.ENERGY_SCAN: "energy-scan",
    RadioCaps.TRANSMIT_RETRIES: "tx-retries",
    RadioCaps.CSMA_BACKOFF: "CSMA-backoff",
    RadioCaps.SLEEP_TO_TX: "sleep-to-tx",
    RadioCaps.TRANSMIT_SEC: "tx-security",
    RadioCaps.TRANSMIT_TIMING: "tx-timing",
    RadioCaps.RECEIVE_TIMING: "rx-timing",
    RadioCaps.RX_ON_WHEN_IDLE: "rx-on-when-idle",
    RadioCaps.TRANSMIT_FRAME_POWER: "tx-frame-power",
    RadioCaps.ALT_SHORT_ADDR: "alt-short-addr",
}


def radio_cap_names(value: int) -> list[str]:
    names = [name for flag, name in RADIO_CAP_NAMES.items() if value & flag]
    unknown = value & ~sum(RADIO_CAP_NAMES)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names


class ScanState(enum.IntEnum):
    IDLE = 0
    BEACON = 1
    ENERGY = 2
    DISCOVER = 3


class PromiscuousMode(enum.IntEnum):
    OFF = 0
    NETWORK = 1
    FULL = 2


# STREAM_RAW metadata flags (SPINEL_MD_FLAG_*)
MD_FLAG_TX = 0x0001
MD_FLAG_BAD_FCS = 0x0004
MD_FLAG_DUPE = 0x0008
MD_FLAG_ACKED_FP = 0x0010
MD_FLAG_ACKED_SEC = 0x0020
