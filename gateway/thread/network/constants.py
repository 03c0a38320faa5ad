"""Constants of the Thread network core, as OpenThread's defaults of the snapshot the fact sheet
read (``reference/thread-mle-network.md`` §2). Times are in seconds (floats) unless a name says
otherwise; OpenThread's millisecond values are converted here once."""

from __future__ import annotations

from typing import Final

# --- addressing ----------------------------------------------------------------------------------
MAX_ROUTER_ID: Final = 62
INVALID_ROUTER_ID: Final = 63
MIN_CHILD_ID: Final = 1
MAX_CHILD_ID: Final = 511
INVALID_RLOC16: Final = 0xFFFE
LEADER_ALOC16: Final = 0xFC00
DHCP_AGENT_ALOC16_BASE: Final = 0xFC00  # + context ID (1..15)
SERVICE_ALOC16_BASE: Final = 0xFC10  # + service ID (0..15)
DEFAULT_MESH_LOCAL_PREFIX: Final = bytes.fromhex("fddead00beef0000")  # before a dataset says

# --- MLE ----------------------------------------------------------------------------------------
THREAD_VERSION: Final = 5  # Version TLV value of Thread 1.4 (OT_THREAD_VERSION "1.4")
CHALLENGE_LENGTH: Final = 8
MAX_CHALLENGE_LENGTH: Final = 8
MIN_CHALLENGE_LENGTH: Final = 4

# --- child table and attach, parent side ----------------------------------------------------------
DEFAULT_MAX_CHILDREN: Final = 32
CHILD_TIMEOUT_DEFAULT: Final = 240  # s, what a child asks for by default
CHILD_TIMEOUT_MIN: Final = 5
CHILD_TIMEOUT_MAX: Final = 8 * 3600
IP_ADDRS_PER_CHILD: Final = 4  # OPENTHREAD_CONFIG_MLE_IP_ADDRS_PER_CHILD (ML-EID + 3)
PARENT_RESPONSE_MAX_DELAY_ROUTERS: Final = 0.500
PARENT_RESPONSE_MAX_DELAY_ALL: Final = 1.000
PARENT_REQUEST_DUPLICATE_TIMEOUT: Final = 0.700
CHILD_ID_REQUEST_TIMEOUT: Final = 5.0  # life of a child entry created by a Parent Request
MAX_REQUEST_TLVS: Final = 6  # Child::kMaxRequestTlvs
SUPERVISION_INTERVAL_DEFAULT: Final = 129  # s, OT default / for children of Version <= 4
SUPERVISION_CHECK_TIMEOUT: Final = 190  # s, a SED's listen timeout
NETDATA_SYNC_RETRY: Final = 1.0  # sleepy children re-get the Child Update Request every second
RESTORED_CHILD_UPDATE_SPACING: Final = 0.015  # rx-on restored children, 15 +- 2 ms apart
RESTORED_CHILD_UPDATE_JITTER: Final = 0.002
RESTORED_CHILD_UPDATE_RETRY: Final = 2.0  # doubling up to 64 s
RESTORED_CHILD_UPDATE_RETRY_MAX: Final = 64.0
REJECT_DELAY_MIN: Final = 0.001  # restoring rx-on child: a Child Update Request after 1-10 ms
REJECT_DELAY_MAX: Final = 0.010

# --- indirect transmission ---------------------------------------------------------------------
MAX_TX_ATTEMPTS_INDIRECT_POLLS: Final = 4
DEFAULT_INDIRECT_QUEUE_MESSAGES: Final = 8  # per child (our bound; OT bounds by buffers)
DEFAULT_INDIRECT_QUEUE_BYTES: Final = 4 * 1280

# --- router / leader -------------------------------------------------------------------------
DEFAULT_LEADER_WEIGHT: Final = 64
ROUTER_ID_SEQUENCE_PERIOD: Final = 10.0
ROUTER_ID_REUSE_DELAY: Final = 100.0
NETWORK_ID_TIMEOUT: Final = 120.0
ID_SEQUENCE_RESERVE: Final = 16  # snapshot keeps this many ID sequence values ahead (ours)
ADV_INTERVAL_MIN: Final = 1.0
ADV_INTERVAL_MAX_LOW: Final = 12.0
ADV_INTERVAL_MAX_HIGH: Final = 32.0
ADV_INTERVAL_PER_NEIGHBOR: Final = 4.0
MAX_ROUTE_COST: Final = 16
SED_BUFFER_SIZE: Final = 1280
SED_DATAGRAM_COUNT: Final = 1

# --- link quality -------------------------------------------------------------------------------
NOISE_FLOOR_DEFAULT: Final = -100  # dBm; OT uses the radio's receive sensitivity
LINK_MARGIN_LQ3: Final = 20  # margin > 20 dB -> LQ 3
LINK_MARGIN_LQ2: Final = 10
LINK_MARGIN_LQ1: Final = 2

# --- key management ----------------------------------------------------------------------------
KEY_ROTATION_HOURS_DEFAULT: Final = 672
KEY_ROTATION_HOURS_MIN: Final = 2
KEY_SWITCH_GUARD_PERCENT: Final = 93
STORE_FRAME_COUNTER_AHEAD: Final = 1000

# --- child (MTD) side --------------------------------------------------------------------------
ATTACH_START_JITTER: Final = 0.750
PARENT_REQUEST_ROUTER_TIMEOUT: Final = 0.750
PARENT_REQUEST_REED_TIMEOUT: Final = 1.250
FIRST_CYCLE_PARENT_REQUESTS: Final = 6
FIRST_CYCLE_TO_ROUTERS: Final = 2
LATER_CYCLE_PARENT_REQUESTS: Final = 2
LATER_CYCLE_TO_ROUTERS: Final = 1
CHILD_ID_RESPONSE_TIMEOUT: Final = 1.250
CHILD_ID_RESPONSE_JITTER: Final = 0.125
MAX_CHILD_ID_REQUESTS: Final = 3
ATTACH_BACKOFF_MIN: Final = 0.251
ATTACH_BACKOFF_MAX: Final = 1200.0
ATTACH_BACKOFF_JITTER: Final = 2.0
MAX_CHILD_KEEP_ALIVE_ATTEMPTS: Final = 4
UNICAST_RETX_DELAY: Final = 1.0
UNICAST_RETX_JITTER: Final = 0.005
KEEP_ALIVE_MARGIN: Final = 4 * 1.005  # rx-on child: Child Update Request timeout - 4.02 s
ATTACH_DATA_POLL_PERIOD: Final = 0.100
RETX_POLL_PERIOD: Final = 1.0
FAILED_CHILD_TRANSMISSIONS: Final = 4
DATA_POLL_TIMEOUT: Final = 0.100  # wait for data after an ACK with frame pending
MAX_POLL_RETX: Final = 4
RESTORE_CHILD_UPDATE_ATTEMPTS: Final = 4
RESTORE_CHILD_UPDATE_TIMEOUTS: Final = (4.0, 8.0, 16.0, 1.0)  # rx-on (PrevRoleRestorer)
RESTORE_CHILD_UPDATE_TIMEOUT_SLEEPY: Final = 1.0

# --- address resolution -----------------------------------------------------------------------
ADDRESS_QUERY_TIMEOUT: Final = 3.0
ADDRESS_QUERY_INITIAL_RETRY_DELAY: Final = 15.0
ADDRESS_QUERY_MAX_RETRY_DELAY: Final = 120.0
EID_CACHE_ENTRIES: Final = 32
PENDING_PACKETS_PER_QUERY: Final = 4

# --- MPL (realm-local multicast) -------------------------------------------------------------
MPL_SEED_SET_ENTRIES: Final = 32
MPL_SEED_LIFETIME: Final = 5.0
