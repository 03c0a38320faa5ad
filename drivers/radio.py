"""The Radio interface every backend implements, and URL-based backend selection (DESIGN §3)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from drivers.errors import RadioUrlError

CHANNELS = range(11, 27)


class TxStatus(enum.Enum):
    SUCCESS = "success"
    SUCCESS_DATA_PENDING = "success_data_pending"
    NO_ACK = "no_ack"
    CHANNEL_ACCESS_FAILURE = "channel_access_failure"

    @property
    def ok(self) -> bool:
        return self in (TxStatus.SUCCESS, TxStatus.SUCCESS_DATA_PENDING)


@dataclass(frozen=True)
class TxResult:
    status: TxStatus
    frame_retries: int = 0
    csma_retries: int = 0
    timestamp_ns: int = 0  # monotonic clock at completion

    @property
    def ok(self) -> bool:
        return self.status.ok

    @property
    def frame_pending(self) -> bool:
        return self.status is TxStatus.SUCCESS_DATA_PENDING


@dataclass(frozen=True)
class RxFrame:
    psdu: bytes  # MHR + payload + FCS, as on the air
    channel: int
    lqi: int
    rssi_dbm: int
    crc_ok: bool
    timestamp_ns: int  # monotonic clock at the end of reception
    wall_time: float  # time.time() at the end of reception (for pcap)

    @property
    def payload_without_fcs(self) -> bytes:
        return self.psdu[:-2]


@dataclass(frozen=True)
class RadioInfo:
    backend: str
    url: str
    part: str
    part_num: int
    version_num: int
    man_id: int
    eui64: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "url": self.url,
            "part": self.part,
            "part_num": self.part_num,
            "version_num": self.version_num,
            "man_id": self.man_id,
            "eui64": self.eui64.hex(),
        }


@dataclass
class RadioCounters:
    tx_frames: int = 0
    tx_success: int = 0
    tx_no_ack: int = 0
    tx_channel_access_failure: int = 0
    tx_frame_retries: int = 0
    rx_frames: int = 0
    rx_crc_errors: int = 0
    rx_dropped_queue_full: int = 0
    irqs: int = 0
    irq_edges: int = 0
    irq_lost_recovered: int = 0
    spi_errors_detected: int = 0
    chip_resets_detected: int = 0
    recoveries: int = 0
    recovery_failures: int = 0
    stuck_irq_detected: int = 0
    pll_lock_failures: int = 0
    state_change_timeouts: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        d = {k: v for k, v in self.__dict__.items() if isinstance(v, int)}
        d.update(self.extra)
        return d


class Radio(abc.ABC):
    """An IEEE 802.15.4 radio. Every method is a coroutine; close() must always be awaited."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Reset, probe and initialise the radio; it then listens on its channel."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def reset(self) -> None:
        """Hardware reset and re-initialisation, keeping channel, addresses and power."""

    @property
    @abc.abstractmethod
    def info(self) -> RadioInfo: ...

    @property
    @abc.abstractmethod
    def counters(self) -> RadioCounters: ...

    @property
    @abc.abstractmethod
    def channel(self) -> int: ...

    @property
    def healthy(self) -> bool:
        """False once the radio failed beyond recovery (the owner should restart)."""
        return True

    @abc.abstractmethod
    async def set_channel(self, channel: int) -> None: ...

    @abc.abstractmethod
    async def set_tx_power(self, dbm: float) -> float:
        """Set the output power; returns the power actually configured (table step)."""

    @abc.abstractmethod
    async def set_addresses(
        self,
        *,
        pan_id: int | None = None,
        short_addr: int | None = None,
        ext_addr: bytes | None = None,
        coordinator: bool | None = None,
    ) -> None:
        """Address filter: ext_addr is given in canonical (big-endian) order."""

    @abc.abstractmethod
    async def set_promiscuous(self, on: bool) -> None: ...

    @abc.abstractmethod
    async def set_frame_pending(self, on: bool) -> None:
        """Frame Pending bit in auto-ACKs of Data Requests (chip-wide)."""

    @property
    def has_source_match(self) -> bool:
        """True when the radio sets the Frame Pending bit per source address (a source-match
        table, as OpenThread RCPs have); False when it can only set it for every Data Request
        (the AT86RF233's AACK_SET_PD)."""
        return False

    async def set_source_match(
        self, short_addrs: Iterable[int], ext_addrs: Iterable[bytes]
    ) -> None:
        """The sources whose Data Requests are acknowledged with Frame Pending set (extended
        addresses in canonical, big-endian order). This default, for radios without a
        source-match table, sets the bit in every Data Request's ACK while the set is not empty;
        the owner then answers a poll from a source outside the set with an empty data frame, as
        OpenThread does on such radios."""
        await self.set_frame_pending(bool(list(short_addrs)) or bool(list(ext_addrs)))

    @abc.abstractmethod
    async def transmit(
        self, frame: bytes, *, csma: bool = True, retries: int | None = None, basic: bool = False
    ) -> TxResult:
        """Send MHR + payload (without FCS; the radio appends it). ``basic`` bypasses CSMA-CA,
        ACK wait and retries (one frame on the air, no acknowledgement handling)."""

    @abc.abstractmethod
    def subscribe(self, maxsize: int = 256) -> RxSubscription:
        """A new receive stream (frames received from now on)."""

    @abc.abstractmethod
    async def energy_scan(
        self, channels: Iterable[int] = CHANNELS, duration_s: float = 0.05
    ) -> dict[int, int]:
        """Peak energy in dBm per channel over ``duration_s`` each; restores the channel."""

    @abc.abstractmethod
    async def sleep(self) -> None: ...

    @abc.abstractmethod
    async def wake(self) -> None: ...

    async def __aenter__(self) -> Radio:
        await self.open()
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class RxSubscription:
    """A bounded queue of received frames; the oldest frame is dropped (and counted) when full."""

    def __init__(self, owner: set[RxSubscription], maxsize: int = 256) -> None:
        self._q: asyncio.Queue[RxFrame | None] = asyncio.Queue(maxsize)
        self._owner = owner
        self.dropped = 0
        owner.add(self)

    def put(self, frame: RxFrame) -> bool:
        if self._q.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._q.get_nowait()
            self.dropped += 1
            self._q.put_nowait(frame)
            return False
        self._q.put_nowait(frame)
        return True

    def end(self) -> None:
        if self._q.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._q.get_nowait()
        self._q.put_nowait(None)

    async def get(self, timeout: float | None = None) -> RxFrame | None:
        """The next frame, or None on timeout or when the radio closed."""
        try:
            async with asyncio.timeout(timeout):
                frame = await self._q.get()
        except TimeoutError:
            return None
        if frame is None:
            self._q.put_nowait(None)  # keep reporting the end
        return frame

    def close(self) -> None:
        self._owner.discard(self)

    def __enter__(self) -> RxSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aiter__(self) -> AsyncIterator[RxFrame]:
        while True:
            frame = await self.get()
            if frame is None:
                return
            yield frame


@dataclass(frozen=True)
class RadioUrl:
    scheme: str
    path: str
    params: dict[str, str]

    def get_int(self, name: str, default: int | None = None, lo: int | None = None,
                hi: int | None = None) -> int:  # fmt: skip
        raw = self.params.get(name)
        if raw is None:
            if default is None:
                raise RadioUrlError(f"radio URL needs '{name}='")
            return default
        try:
            value = int(raw, 0)
        except ValueError:
            raise RadioUrlError(f"radio URL parameter {name}={raw!r} is not an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise RadioUrlError(f"radio URL parameter {name}={value} is outside {lo}..{hi}")
        return value

    def get_float(self, name: str, default: float, lo: float | None = None,
                  hi: float | None = None) -> float:  # fmt: skip
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise RadioUrlError(f"radio URL parameter {name}={raw!r} is not a number") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise RadioUrlError(f"radio URL parameter {name}={value} is outside {lo}..{hi}")
        return value

    def get_bool(self, name: str, default: bool) -> bool:
        raw = self.params.get(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise RadioUrlError(f"radio URL parameter {name}={raw!r} is not a boolean (0/1)")


def parse_radio_url(url: str) -> RadioUrl:
    parts = urlsplit(url)
    if not parts.scheme:
        raise RadioUrlError(f"radio URL {url!r} has no scheme")
    params: dict[str, str] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        params[key] = values[-1]
    path = parts.path
    if parts.netloc:
        path = "//" + parts.netloc + path
    return RadioUrl(parts.scheme.lower(), path, params)


def open_radio(url: str) -> Radio:
    """A radio for ``url`` (not yet opened: ``async with open_radio(url) as radio``)."""
    parsed = parse_radio_url(url)
    if parsed.scheme == "at86rf233":
        from drivers.at86rf233.backends import hardware_radio

        return hardware_radio(url, parsed)
    if parsed.scheme == "emulated":
        from drivers.emulator.backend import emulated_radio

        return emulated_radio(url, parsed)
    if parsed.scheme in ("spinel+hdlc+uart", "spinel+hdlc+forkpty"):
        from drivers.spinel.backend import spinel_radio

        return spinel_radio(url, parsed)
    raise RadioUrlError(
        f"unknown radio URL scheme {parsed.scheme!r} (at86rf233:, emulated:, "
        "spinel+hdlc+uart: or spinel+hdlc+forkpty:)"
    )
