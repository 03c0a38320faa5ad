"""The OpenThread RCP as a :class:`~drivers.radio.Radio`: Spinel over HDLC-lite on a
:mod:`~drivers.spinel.link`.

URLs (as ot-br-posix spells them; docs/radio-rcp.md):

- ``spinel+hdlc+uart:///dev/ttyACM0?uart-baudrate=460800`` (``uart-flow-control=1`` for RTS/CTS)
- ``spinel+hdlc+forkpty:///path/to/ot-rcp?forkpty-arg=1`` (``forkpty-arg`` repeats for more
  arguments; the child inherits the environment, so ``PORT_OFFSET`` places a simulated RCP on
  the simulated air)

Start-up follows OpenThread's host (``RadioSpinel::Init``): RESET and its reset notice, protocol
version, firmware version, EUI-64, capabilities, RCP API version and the RCP's minimum host API
version, radio capabilities; a mismatch raises :class:`~drivers.errors.RcpIncompatible` (exit 5)
naming what the RCP reported, the range this gateway supports and what to flash.

Concurrency: ``_mode`` serialises whole operations (configuration, transmit, energy scan, the
health probe, recovery), so at most one request is outstanding; TIDs still rotate through 1..15 so
that a late answer to a request that timed out is recognised as stale. Received frames and other
unsolicited notices are handled as they arrive, from the link's reader callback.

Faults, recovered like the AT86RF233's (reset and re-initialise, restore channel, addresses,
power, modes and the source-match table, count, retry the operation once): no answer within
``response_timeout_s`` (or no transmit result within ``tx_timeout_s``), an unexpected reset notice
(the RCP rebooted: during a transmission, the transmission is sent again), a malformed answer, the
link lost (device unplugged or RCP process exited: it is reopened or started again), and an RCP
that answers but lost its configuration (the idle health probe notices). When three attempts to
reset fail, the radio is unhealthy and operations raise :class:`~drivers.errors.RcpNotResponding`
(exit 6), so the radio service ends and systemd restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from drivers.errors import (
    InvalidArgument,
    RadioClosed,
    RadioError,
    RadioNotResponding,
    RadioTransientError,
    RadioUrlError,
    RcpIncompatible,
    RcpNotResponding,
)
from drivers.fcs import fcs, fcs_ok
from drivers.radio import (
    CHANNELS,
    Radio,
    RadioCounters,
    RadioInfo,
    RadioUrl,
    RxFrame,
    RxSubscription,
    TxResult,
    TxStatus,
)
from drivers.spinel import rcp
from drivers.spinel.codec import SpinelFrame, SpinelParseError, decode_frame, pack, unpack
from drivers.spinel.consts import (
    RESET_STATUSES,
    TID_MAX,
    Cap,
    Cmd,
    PromiscuousMode,
    Prop,
    ResetType,
    ScanState,
    Status,
    prop_name,
    status_name,
)
from drivers.spinel.hdlc import HdlcDecoder, encode_frame
from drivers.spinel.link import FdLink, ForkPtyLink, LinkLost, SerialLink

LOG = logging.getLogger(__name__)
T = TypeVar("T")
MAX_RECOVERY_ATTEMPTS = 3


@dataclass(frozen=True)
class Timeouts:
    """OpenThread's host waits 2 s for an answer (kMaxWaitTime) and 5 s for a transmission to
    complete (OPENTHREAD_SPINEL_CONFIG_RCP_TX_WAIT_TIME_SECS)."""

    response_s: float = 2.0
    reset_s: float = 2.0
    tx_s: float = 5.0
    health_period_s: float = 1.0
    scan_extra_s: float = 2.0


@dataclass(frozen=True)
class RcpRadioInfo(RadioInfo):
    rcp: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "rcp": dict(self.rcp)}


class _RcpFault(Exception):
    """Internal: the RCP misbehaved; the caller recovers by reset."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class _StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status_name(status))
        self.status = status


@dataclass
class _Config:
    """What a reset must restore."""

    channel: int = 11
    tx_power_dbm: int = 0
    pan_id: int = 0xFFFF
    short_addr: int = 0xFFFF
    ext_addr: bytes = b"\x00" * 8
    coordinator: bool = False
    promiscuous: bool = False
    frame_pending: bool = False  # every Data Request is ACKed with Frame Pending (no table)
    src_short: set[int] = field(default_factory=set)
    src_ext: set[bytes] = field(default_factory=set)  # canonical (big-endian) order
    src_match_usable: bool = True  # the RCP took every entry (False: table full, chip-wide FP)
    asleep: bool = False
    max_frame_retries: int = 3
    max_csma_backoffs: int = 4


def _spinel_order(ext: bytes) -> bytes:
    """Spinel carries MAC extended addresses (LADDR, the source-match table) in canonical,
    big-endian order: OpenThread's posix host reverses the radio platform's little-endian
    address before sending it (src/posix/platform/radio.cpp), and the RCP's core reverses it
    again for its own radio platform."""
    return bytes(ext)


class SpinelRadio(Radio):
    def __init__(
        self,
        url: str,
        link: FdLink,
        *,
        backend: str = "spinel",
        timeouts: Timeouts | None = None,
    ) -> None:
        self.url = url
        self.link = link
        self._backend = backend
        self.timeouts = timeouts or Timeouts()
        self._cfg = _Config()
        self._counters = RadioCounters()
        self._decoder = HdlcDecoder()
        self._subs: set[RxSubscription] = set()
        self._mode = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._info: RcpRadioInfo | None = None
        self._identity: rcp.RcpIdentity | None = None
        self._pending: dict[int, tuple[asyncio.Future[SpinelFrame], int, int | None]] = {}
        self._next_tid = 1
        self._reset_waiter: asyncio.Future[int] | None = None
        self._scan_waiter: asyncio.Future[tuple[int, int]] | None = None
        self._opened = False
        self._closed = False
        self._scanning = False
        self._fatal: RadioNotResponding | None = None
        self._recovery_gen = 0
        self._last_heard = 0.0
        self._resets_seen = 0
        self._initializing = False
        self.last_reset_status: int | None = None
        link.on_data = self._on_data
        link.on_lost = self._on_lost
        for name in ("rcp_timeouts", "rcp_unexpected_resets", "rcp_protocol_errors",
                     "rcp_link_lost", "rcp_lost_config", "spinel_malformed",
                     "spinel_stale_responses", "spinel_unhandled", "rx_errors_reported",
                     "rx_fcs_rewritten", "src_match_fallbacks"):  # fmt: skip
            self._counters.extra[name] = 0

    # ------------------------------------------------------------------ public properties

    @property
    def info(self) -> RcpRadioInfo:
        if self._info is None:
            raise RadioClosed("the radio is not open")
        return self._info

    @property
    def identity(self) -> rcp.RcpIdentity:
        if self._identity is None:
            raise RadioClosed("the radio is not open")
        return self._identity

    @property
    def counters(self) -> RadioCounters:
        extra = self._counters.extra
        for k, v in self._decoder.stats.as_dict().items():
            extra[f"hdlc_{k}"] = v
        return self._counters

    @property
    def channel(self) -> int:
        return self._cfg.channel

    @property
    def healthy(self) -> bool:
        return self._opened and not self._closed and self._fatal is None

    @property
    def tx_power_dbm(self) -> float:
        return float(self._cfg.tx_power_dbm)

    @property
    def has_source_match(self) -> bool:
        return True

    @property
    def asleep(self) -> bool:
        return self._cfg.asleep

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._opened:
            return
        await self.link.open()
        try:
            async with self._mode:
                try:
                    await self._reset_and_init(probe=True, fresh=self.link.can_hard_reset)
                except _RcpFault as fault:
                    raise RcpNotResponding(
                        f"the RCP did not initialise ({fault.kind}): {fault.detail}"
                    ) from None
                except _StatusError as exc:
                    raise RcpIncompatible(
                        f"the RCP refused an initialisation request: {status_name(exc.status)}"
                    ) from None
        except BaseException:
            await self._shutdown()
            raise
        self._opened = True
        self._spawn(self._health_loop(), "health")
        ident = self.identity
        LOG.info(
            "radio %s ready: %s, RCP API %s, channel %d",
            self._backend, ident.firmware, ident.rcp_api_version, self._cfg.channel,
        )  # fmt: skip
        for warning in ident.warnings:
            LOG.warning("RCP: %s", warning)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            sub.end()
        self._fail_waiters(RadioClosed("the radio was closed"))
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._opened and self.link.alive:
            with contextlib.suppress(Exception):
                # stop receiving; the RCP keeps its other settings until the next reset
                self._send(SpinelFrame(Cmd.PROP_VALUE_SET, Prop.MAC_RAW_STREAM_ENABLED,
                                       pack("b", False), tid=0))  # fmt: skip
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._fail_waiters(RadioClosed("the radio was closed"))
        await self.link.close()

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"rcp-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_usable(self) -> None:
        if self._closed:
            raise RadioClosed("the radio is closed")
        if self._fatal is not None:
            raise RcpNotResponding(f"the RCP failed and could not be recovered: {self._fatal}")
        if not self._opened:
            raise RadioClosed("the radio is not open")

    # ------------------------------------------------------------------ link events

    def _on_data(self, data: bytes) -> None:
        self._last_heard = time.monotonic()
        for payload in self._decoder.feed(data):
            try:
                frame = decode_frame(payload)
            except SpinelParseError as exc:
                self._counters.extra["spinel_malformed"] += 1
                LOG.debug("dropped a malformed Spinel frame (%s): %s", exc, payload.hex())
                continue
            self._dispatch(frame)

    def _on_lost(self, why: str) -> None:
        self._counters.extra["rcp_link_lost"] += 1
        LOG.warning("RCP link lost: %s", why)
        fault = _RcpFault("link", why)
        if self._reset_waiter is not None and not self._reset_waiter.done():
            self._reset_waiter.set_exception(fault)
        if not self._fail_pending(fault) and self._opened and not self._closed:
            self._spawn(self._recover_in_background(fault, self._recovery_gen), "recover")

    def _dispatch(self, frame: SpinelFrame) -> None:
        if frame.iid != 0:
            self._counters.extra["spinel_unhandled"] += 1
            return
        if frame.tid != 0:
            entry = self._pending.pop(frame.tid, None)
            if entry is None or entry[0].done():
                self._counters.extra["spinel_stale_responses"] += 1
                LOG.debug("stale RCP answer %s", frame)
                return
            entry[0].set_result(frame)
            return
        if frame.command != Cmd.PROP_VALUE_IS:
            self._counters.extra["spinel_unhandled"] += 1
            return
        prop = frame.prop
        if prop == Prop.STREAM_RAW:
            self._on_raw_frame(frame.value)
        elif prop == Prop.LAST_STATUS:
            try:
                status = rcp.parse_last_status(frame.value)
            except SpinelParseError:
                self._counters.extra["spinel_malformed"] += 1
                return
            if status in RESET_STATUSES:
                self._on_reset_notice(status)
            else:
                LOG.debug("RCP last status: %s", status_name(status))
        elif prop == Prop.MAC_ENERGY_SCAN_RESULT:
            try:
                channel, rssi = unpack("Cc", frame.value)
            except SpinelParseError:
                self._counters.extra["spinel_malformed"] += 1
                return
            if self._scan_waiter is not None and not self._scan_waiter.done():
                self._scan_waiter.set_result((channel, rssi))
        elif prop in (Prop.STREAM_DEBUG, Prop.STREAM_LOG):
            text = frame.value.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
            if text:
                LOG.debug("RCP says: %s", text)
        elif prop == Prop.MAC_SCAN_STATE:
            pass
        else:
            self._counters.extra["spinel_unhandled"] += 1

    def _on_reset_notice(self, status: int) -> None:
        self.last_reset_status = status
        self._resets_seen += 1
        waiter = self._reset_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(status)
            return
        if not self._opened or self._closed or self._initializing:
            return  # initialisation notices it (and starts over)
        self._counters.extra["rcp_unexpected_resets"] += 1
        fault = _RcpFault("reset", f"the RCP reset itself ({status_name(status)})")
        LOG.warning("unexpected RCP reset: %s", status_name(status))
        if not self._fail_pending(fault):
            self._spawn(self._recover_in_background(fault, self._recovery_gen), "recover")

    def _fail_pending(self, exc: BaseException) -> bool:
        """Fail what waits for the RCP; True when something did."""
        failed = False
        for fut, _cmd, _prop in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
                failed = True
        self._pending.clear()
        if self._scan_waiter is not None and not self._scan_waiter.done():
            self._scan_waiter.set_exception(exc)
            failed = True
        return failed

    def _fail_waiters(self, exc: BaseException) -> None:
        self._fail_pending(exc)
        if self._reset_waiter is not None and not self._reset_waiter.done():
            self._reset_waiter.set_exception(exc)

    def _on_raw_frame(self, value: bytes) -> None:
        c = self._counters
        try:
            raw = rcp.parse_raw_frame(value)
        except SpinelParseError:
            c.extra["spinel_malformed"] += 1
            return
        if raw.rx_error or not raw.psdu:
            c.extra["rx_errors_reported"] += 1
            return
        if len(raw.psdu) < 5:
            c.extra["spinel_malformed"] += 1
            return
        if self._scanning and not self._cfg.promiscuous:
            return
        psdu = raw.psdu
        crc = not raw.bad_fcs
        if crc and not fcs_ok(psdu):
            # the RCP checked the FCS on the air; some platforms do not hand its bytes over
            psdu = psdu[:-2] + fcs(psdu[:-2])
            c.extra["rx_fcs_rewritten"] += 1
        c.rx_frames += 1
        if not crc:
            c.rx_crc_errors += 1
            if not self._cfg.promiscuous:
                return
        frame = RxFrame(
            psdu=psdu, channel=raw.channel or self._cfg.channel, lqi=raw.lqi,
            rssi_dbm=raw.rssi, crc_ok=crc, timestamp_ns=time.monotonic_ns(),
            wall_time=time.time(),
        )  # fmt: skip
        for sub in list(self._subs):
            if not sub.put(frame):
                c.rx_dropped_queue_full += 1

    # ------------------------------------------------------------------ requests

    def _send(self, frame: SpinelFrame) -> None:
        try:
            self.link.write(encode_frame(frame.to_bytes()))
        except LinkLost as exc:
            raise _RcpFault("link", str(exc)) from None

    def _tid(self) -> int:
        for _ in range(TID_MAX):
            tid = self._next_tid
            self._next_tid = tid % TID_MAX + 1
            if tid not in self._pending:
                return tid
        raise _RcpFault("protocol", "no free transaction id")

    async def _request(
        self,
        command: int,
        prop: int,
        value: bytes = b"",
        timeout: float | None = None,
        check: bool = True,
    ) -> SpinelFrame:
        """One command and its answer (PROP_VALUE_IS/INSERTED/REMOVED of ``prop``); a
        LAST_STATUS answer other than OK raises :class:`_StatusError` (without ``check``, the
        answer is returned as it is)."""
        if not self.link.alive:
            raise _RcpFault("link", self.link.explain("the link is down"))
        tid = self._tid()
        fut: asyncio.Future[SpinelFrame] = asyncio.get_running_loop().create_future()
        self._pending[tid] = (fut, command, prop)
        try:
            self._send(SpinelFrame(command, prop, value, tid=tid))
            wait = self.timeouts.response_s if timeout is None else timeout
            try:
                async with asyncio.timeout(wait):
                    answer = await fut
            except TimeoutError:
                self._counters.extra["rcp_timeouts"] += 1
                raise _RcpFault(
                    "timeout",
                    f"no answer to {Cmd(command).name} {prop_name(prop)} within {wait:g} s",
                ) from None
        finally:
            self._pending.pop(tid, None)
        return self._check_answer(answer, command, prop) if check else answer

    def _check_answer(self, answer: SpinelFrame, command: int, prop: int) -> SpinelFrame:
        if answer.command == Cmd.PROP_VALUE_IS and answer.prop == Prop.LAST_STATUS:
            try:
                status = rcp.parse_last_status(answer.value)
            except SpinelParseError:
                self._protocol_error(f"a malformed status answering {prop_name(prop)}")
            if prop == Prop.LAST_STATUS or status == Status.OK:
                return answer
            raise _StatusError(status)
        expected = {
            Cmd.PROP_VALUE_INSERT: Cmd.PROP_VALUE_INSERTED,
            Cmd.PROP_VALUE_REMOVE: Cmd.PROP_VALUE_REMOVED,
        }.get(Cmd(command), Cmd.PROP_VALUE_IS)
        if answer.command != expected or answer.prop != prop:
            self._protocol_error(f"{answer} answering {Cmd(command).name} {prop_name(prop)}")
        return answer

    def _protocol_error(self, detail: str) -> Any:
        self._counters.extra["rcp_protocol_errors"] += 1
        raise _RcpFault("protocol", detail)

    async def _get(self, prop: int, fmt: str) -> tuple[Any, ...]:
        answer = await self._request(Cmd.PROP_VALUE_GET, prop)
        try:
            return unpack(fmt, answer.value)
        except SpinelParseError as exc:
            return self._protocol_error(f"{prop_name(prop)} = {answer.value.hex()}: {exc}")  # type: ignore[no-any-return]

    async def _set(self, prop: int, fmt: str, *values: Any) -> bytes:
        try:
            answer = await self._request(Cmd.PROP_VALUE_SET, prop, pack(fmt, *values))
        except _StatusError as exc:
            raise RadioError(
                f"the RCP refused {prop_name(prop)} = {values!r}: {status_name(exc.status)}"
            ) from None
        return answer.value

    # ------------------------------------------------------------------ reset, probe, init

    async def _hard_reset(self) -> bool:
        """Start the RCP anew where the link can (the simulated RCP's process: True), else
        reopen a link that went down (a serial device: False)."""
        hard = self.link.can_hard_reset
        if not hard and self.link.alive:
            return False
        self._decoder.reset()
        try:
            await self.link.restart()
        except (LinkLost, OSError, RadioError) as exc:
            raise _RcpFault("link", self.link.explain(f"cannot reopen: {exc}")) from None
        return hard

    async def _reset(self, fresh: bool = False) -> int | None:
        """Reset the RCP and wait for its reset notice: a software RESET, or a new RCP process
        (``fresh``: one was just started; also when the link is down or a RESET got no notice,
        where the link can). The notice's status, or None without one."""
        self._decoder.reset()
        loop = asyncio.get_running_loop()
        if not self.link.alive:
            fresh = await self._hard_reset()
        for attempt in (1, 2):
            self._reset_waiter = loop.create_future()
            try:
                if not fresh:
                    self._send(SpinelFrame(Cmd.RESET, None, bytes((ResetType.STACK,))))
                try:
                    async with asyncio.timeout(self.timeouts.reset_s):
                        return await self._reset_waiter
                except TimeoutError:
                    LOG.warning("no reset notice from the RCP within %g s", self.timeouts.reset_s)
                except _RcpFault as fault:
                    if fault.kind != "link":
                        raise
                    LOG.warning("the RCP link went down during a reset: %s", fault.detail)
            finally:
                self._reset_waiter = None
            if attempt == 2 or not self.link.can_hard_reset:
                break
            fresh = await self._hard_reset()
        return None

    async def _reset_and_init(self, probe: bool = False, fresh: bool = False) -> None:
        for fut, _c, _p in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        self._initializing = True
        try:
            for _round in range(3):
                status = await self._reset(fresh)
                fresh = False
                if status is None and not self.link.alive:
                    raise _RcpFault("link", self.link.explain("the link is down"))
                seen = self._resets_seen
                ident = await self._probe(got_reset=status is not None)
                self._adopt(ident, probe)
                await self._configure()
                if self._resets_seen == seen:
                    return
                LOG.warning("the RCP reset again during its initialisation; once more")
            raise _RcpFault("reset", "the RCP keeps resetting during its initialisation")
        finally:
            self._initializing = False

    def _adopt(self, ident: rcp.RcpIdentity, probe: bool) -> None:
        if probe:
            self._identity = ident
            self._cfg.ext_addr = ident.eui64
            self._info = RcpRadioInfo(
                backend=self._backend, url=self.url, part=f"OpenThread RCP ({ident.platform})",
                part_num=0, version_num=ident.rcp_api_version or 0, man_id=0, eui64=ident.eui64,
                rcp=ident.as_dict(),
            )  # fmt: skip
        elif self._identity is not None and ident.eui64 != self._identity.eui64:
            raise RcpIncompatible(
                f"after a reset the RCP reports EUI-64 {ident.eui64.hex()}, not "
                f"{self._identity.eui64.hex()}: another device answers on {self.link.description}"
            )

    async def _probe(self, got_reset: bool) -> rcp.RcpIdentity:
        try:
            (major, minor) = await self._get(Prop.PROTOCOL_VERSION, "ii")
        except _RcpFault as fault:
            if fault.kind == "timeout":
                what = "to RESET nor to" if not got_reset else "to"
                raise RcpNotResponding(
                    f"no answer {what} a Spinel request on {self.link.description}"
                    + (
                        "; is it an OpenThread RCP, at this baud rate?"
                        if isinstance(self.link, SerialLink)
                        else ""
                    )
                ) from None
            raise
        except _StatusError as exc:
            raise RcpIncompatible(
                f"the device refuses the Spinel protocol version query ({status_name(exc.status)})"
            ) from None
        (ncp_version,) = await self._get(Prop.NCP_VERSION, "U")
        rcp.check_protocol_version((major, minor), ncp_version)
        (eui64,) = await self._get(Prop.HWADDR, "E")
        (caps,) = await self._get(Prop.CAPS, "A(i)")
        caps = tuple(caps)
        rcp.check_caps(caps, ncp_version)
        api = min_host = None
        if Cap.RCP_API_VERSION in caps:
            (api,) = await self._get(Prop.RCP_API_VERSION, "i")
        if Cap.RCP_MIN_HOST_API_VERSION in caps:
            (min_host,) = await self._get(Prop.RCP_MIN_HOST_API_VERSION, "i")
        warnings = rcp.check_api_versions(api, min_host, ncp_version)
        (radio_caps,) = await self._get(Prop.RADIO_CAPS, "i")
        rcp.check_radio_caps(radio_caps, ncp_version)
        sensitivity: int | None = None
        with contextlib.suppress(_StatusError):
            (sensitivity,) = await self._get(Prop.PHY_RX_SENSITIVITY, "c")
        if not got_reset:
            warnings.append("the RCP sent no reset notice after RESET")
        return rcp.RcpIdentity(
            protocol_version=(major, minor), ncp_version=ncp_version, eui64=bytes(eui64),
            caps=caps, rcp_api_version=api, min_host_api_version=min_host,
            radio_caps=radio_caps, rx_sensitivity=sensitivity, warnings=tuple(warnings),
        )  # fmt: skip

    async def _configure(self) -> None:
        c = self._cfg
        await self._set(Prop.PHY_ENABLED, "b", True)
        await self._set(Prop.MAC_15_4_PANID, "S", c.pan_id)
        await self._set(Prop.MAC_15_4_SADDR, "S", c.short_addr)
        await self._set(Prop.MAC_15_4_LADDR, "E", _spinel_order(c.ext_addr))
        await self._set(Prop.PHY_CHAN, "C", c.channel)
        c.tx_power_dbm = await self._set_power(c.tx_power_dbm)
        await self._set(Prop.MAC_PROMISCUOUS_MODE, "C",
                        PromiscuousMode.FULL if c.promiscuous else PromiscuousMode.OFF)  # fmt: skip
        await self._write_src_match_table()
        await self._set(Prop.MAC_RAW_STREAM_ENABLED, "b", not c.asleep)

    async def _set_power(self, dbm: int) -> int:
        value = await self._set(Prop.PHY_TX_POWER, "c", dbm)
        try:
            (actual,) = unpack("c", value)
        except SpinelParseError:
            return dbm  # answered with LAST_STATUS OK: no read-back
        return int(actual)

    async def _write_src_match_table(self) -> None:
        """The whole table, then enable it (or not: chip-wide Frame Pending)."""
        c = self._cfg
        await self._set(Prop.MAC_SRC_MATCH_SHORT_ADDRESSES, "A(S)", sorted(c.src_short))
        await self._set(Prop.MAC_SRC_MATCH_EXTENDED_ADDRESSES, "A(E)",
                        [_spinel_order(e) for e in sorted(c.src_ext)])  # fmt: skip
        c.src_match_usable = True
        await self._apply_src_match_enabled()

    async def _apply_src_match_enabled(self) -> None:
        """Source match disabled makes an OpenThread RCP set Frame Pending in every ACK of a
        Data Request; enabled, only for the sources in its table."""
        c = self._cfg
        if c.frame_pending:
            enabled = False
        elif not c.src_match_usable:
            enabled = not (c.src_short or c.src_ext)
        else:
            enabled = True
        await self._set(Prop.MAC_SRC_MATCH_ENABLED, "b", enabled)

    # ------------------------------------------------------------------ recovery

    async def _recover(self, fault: _RcpFault) -> None:
        """Reset and re-initialise; raise RcpNotResponding when that keeps failing."""
        c = self._counters
        if fault.kind == "reset":
            c.chip_resets_detected += 1
        LOG.warning("RCP fault (%s): %s; resetting the RCP", fault.kind, fault.detail)
        self._fail_pending(_RcpFault("reset", "the RCP is being reset"))
        last: BaseException = fault
        for attempt in range(1, MAX_RECOVERY_ATTEMPTS + 1):
            try:
                await self._reset_and_init()
            except (_RcpFault, RadioError) as exc:
                if isinstance(exc, RcpIncompatible):
                    last = exc
                    break
                last = exc
                LOG.warning("RCP recovery attempt %d failed: %s", attempt, exc)
                await asyncio.sleep(0.05 * attempt)
                continue
            except _StatusError as exc:
                last = exc
                continue
            c.recoveries += 1
            self._recovery_gen += 1
            LOG.info("RCP recovered after a %s fault (attempt %d)", fault.kind, attempt)
            return
        c.recovery_failures += 1
        detail = last.detail if isinstance(last, _RcpFault) else str(last)
        err = RcpNotResponding(
            f"the RCP could not be recovered after a {fault.kind} fault ({fault.detail}): {detail}"
        )
        self._fatal = err
        for sub in list(self._subs):
            sub.end()
        raise err

    async def _recover_in_background(self, fault: _RcpFault, gen: int) -> None:
        with contextlib.suppress(RadioNotResponding):
            async with self._mode:
                if gen == self._recovery_gen and self._fatal is None and not self._closed:
                    await self._recover(fault)

    async def _guarded(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``; on an RCP fault recover and run it once more."""
        self._check_usable()
        for attempt in (1, 2):
            try:
                return await op()
            except _RcpFault as fault:
                if fault.kind == "protocol":
                    pass  # counted where it was found
                await self._recover(fault)
                if attempt == 2:
                    raise RadioTransientError(
                        f"the RCP recovered from a fault but the operation failed twice ({fault})"
                    ) from None
        raise AssertionError("unreachable")

    async def _health_loop(self) -> None:
        """An idle RCP is asked for its channel now and then: a silent one is reset, and one
        that answers with another channel lost its configuration (it reset without a notice)."""
        period = self.timeouts.health_period_s
        while True:
            await asyncio.sleep(period)
            if self._fatal is not None or self._closed:
                return
            if self._mode.locked() or time.monotonic() - self._last_heard < period:
                continue
            try:
                async with self._mode:
                    await self._guarded(self._health_probe)
            except RadioNotResponding:
                return
            except (RadioError, _StatusError) as exc:
                LOG.warning("RCP health probe: %s", exc)

    async def _health_probe(self) -> None:
        (channel,) = await self._get(Prop.PHY_CHAN, "C")
        if channel != self._cfg.channel and not self._scanning:
            self._counters.extra["rcp_lost_config"] += 1
            raise _RcpFault("reset", f"the RCP is on channel {channel}, not {self._cfg.channel}")

    # ------------------------------------------------------------------ configuration

    async def reset(self) -> None:
        self._check_usable()
        async with self._mode:
            await self._recover(_RcpFault("requested", "reset requested"))

    async def _configured(self, op: Callable[[], Awaitable[T]]) -> T:
        self._check_usable()
        async with self._mode:
            return await self._guarded(op)

    async def set_channel(self, channel: int) -> None:
        if channel not in CHANNELS:
            raise InvalidArgument(f"channel {channel} is outside 11..26")

        async def op() -> None:
            await self._set(Prop.PHY_CHAN, "C", channel)

        self._check_usable()
        async with self._mode:
            self._cfg.channel = channel
            await self._guarded(op)

    async def set_tx_power(self, dbm: float) -> float:
        value = max(-128, min(127, round(dbm)))

        async def op() -> int:
            return await self._set_power(value)

        self._check_usable()
        async with self._mode:
            self._cfg.tx_power_dbm = value
            self._cfg.tx_power_dbm = await self._guarded(op)
        return float(self._cfg.tx_power_dbm)

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
            if pan_id is not None:
                await self._set(Prop.MAC_15_4_PANID, "S", c.pan_id)
            if short_addr is not None:
                await self._set(Prop.MAC_15_4_SADDR, "S", c.short_addr)
            if ext_addr is not None:
                await self._set(Prop.MAC_15_4_LADDR, "E", _spinel_order(c.ext_addr))

        self._check_usable()
        async with self._mode:
            if pan_id is not None:
                c.pan_id = pan_id
            if short_addr is not None:
                c.short_addr = short_addr
            if ext_addr is not None:
                c.ext_addr = bytes(ext_addr)
            if coordinator is not None:
                c.coordinator = coordinator  # an RCP filters on its addresses only
            await self._guarded(op)

    async def set_promiscuous(self, on: bool) -> None:
        async def op() -> None:
            mode = PromiscuousMode.FULL if on else PromiscuousMode.OFF
            await self._set(Prop.MAC_PROMISCUOUS_MODE, "C", mode)

        self._check_usable()
        async with self._mode:
            self._cfg.promiscuous = on
            await self._guarded(op)

    async def set_frame_pending(self, on: bool) -> None:
        self._check_usable()
        async with self._mode:
            self._cfg.frame_pending = on
            await self._guarded(self._apply_src_match_enabled)

    async def set_source_match(
        self, short_addrs: Iterable[int], ext_addrs: Iterable[bytes]
    ) -> None:
        """Per-address Frame Pending: the changes go to the RCP's source-match table entry by
        entry (PROP_VALUE_INSERT / REMOVE, as OpenThread's host does). When the RCP's table is
        full, source match is switched off, so every Data Request is answered with Frame
        Pending (the owner then sends an empty frame to a poller with nothing queued)."""
        shorts = set()
        for s in short_addrs:
            if not 0 <= s <= 0xFFFF:
                raise InvalidArgument(f"short address {s} is not a 16-bit value")
            shorts.add(int(s))
        exts = set()
        for e in ext_addrs:
            if len(e) != 8:
                raise InvalidArgument("an extended address has 8 bytes")
            exts.add(bytes(e))
        c = self._cfg

        async def op() -> None:
            was_usable = c.src_match_usable
            await self._update_src_match(Prop.MAC_SRC_MATCH_SHORT_ADDRESSES, "S", c.src_short,
                                         shorts, lambda a: a)  # fmt: skip
            await self._update_src_match(Prop.MAC_SRC_MATCH_EXTENDED_ADDRESSES, "E", c.src_ext,
                                         exts, _spinel_order)  # fmt: skip
            if not c.src_match_usable and not (c.src_short or c.src_ext):
                await self._write_src_match_table()  # empty again: back to the table
            elif c.src_match_usable != was_usable:
                await self._apply_src_match_enabled()

        self._check_usable()
        async with self._mode:
            await self._guarded(op)

    async def _update_src_match(self, prop: int, fmt: str, current: set[Any], wanted: set[Any],
                                conv: Callable[[Any], Any]) -> None:  # fmt: skip
        c = self._cfg
        for addr in sorted(current - wanted):
            try:
                await self._request(Cmd.PROP_VALUE_REMOVE, prop, pack(fmt, conv(addr)))
            except _StatusError as exc:
                if exc.status not in (Status.ITEM_NOT_FOUND, Status.OK):
                    LOG.warning("the RCP refused to remove a source-match entry: %s",
                                status_name(exc.status))  # fmt: skip
            current.discard(addr)
        for addr in sorted(wanted - current):
            current.add(addr)
            if not c.src_match_usable:
                continue  # the table is full: every Data Request gets Frame Pending
            try:
                await self._request(Cmd.PROP_VALUE_INSERT, prop, pack(fmt, conv(addr)))
            except _StatusError as exc:
                if exc.status == Status.ALREADY:
                    continue
                if exc.status != Status.NOMEM:
                    raise RadioError(
                        f"the RCP refused a source-match entry: {status_name(exc.status)}"
                    ) from None
                c.src_match_usable = False
                self._counters.extra["src_match_fallbacks"] += 1
                LOG.warning("the RCP's source-match table is full; Frame Pending is now set in "
                            "the ACK of every Data Request")  # fmt: skip

    # ------------------------------------------------------------------ receive

    def subscribe(self, maxsize: int = 256) -> RxSubscription:
        return RxSubscription(self._subs, maxsize)

    # ------------------------------------------------------------------ transmit

    async def transmit(
        self, frame: bytes, *, csma: bool = True, retries: int | None = None, basic: bool = False
    ) -> TxResult:
        if not 3 <= len(frame) <= rcp.MAX_PSDU - 2:
            raise InvalidArgument(f"a frame has 3..125 bytes before the FCS, not {len(frame)}")
        if retries is not None and not 0 <= retries <= 15:
            raise InvalidArgument("retries must be within 0..15")
        self._check_usable()
        if self._cfg.asleep:
            raise InvalidArgument("the radio is asleep; wake it first")
        async with self._mode:
            result = await self._guarded(lambda: self._tx_once(frame, csma, retries, basic))
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
        cfg = self._cfg
        use_csma = csma and not basic
        request = rcp.TxRequest(
            psdu=bytes(frame) + b"\x00\x00",  # the RCP fills in the FCS
            channel=cfg.channel,
            max_csma_backoffs=cfg.max_csma_backoffs if use_csma else 0,
            max_frame_retries=0
            if basic
            else (cfg.max_frame_retries if retries is None else retries),
            csma=use_csma,
        )
        answer = await self._request(
            Cmd.PROP_VALUE_SET,
            Prop.STREAM_RAW,
            rcp.encode_tx_request(request),
            timeout=self.timeouts.tx_s,
            check=False,
        )
        if answer.command != Cmd.PROP_VALUE_IS or answer.prop != Prop.LAST_STATUS:
            self._protocol_error(f"{answer} answering a transmission")
        try:
            status = rcp.parse_last_status(answer.value)
            pending = status == Status.OK and rcp.parse_tx_done(answer.value).frame_pending
        except SpinelParseError as exc:
            return self._protocol_error(f"a malformed transmit result: {exc}")  # type: ignore[no-any-return]
        if status == Status.OK:
            tx = TxStatus.SUCCESS_DATA_PENDING if pending else TxStatus.SUCCESS
        elif status == Status.NO_ACK:
            tx = TxStatus.SUCCESS if basic else TxStatus.NO_ACK
        elif status == Status.CCA_FAILURE:
            tx = TxStatus.CHANNEL_ACCESS_FAILURE
        elif status in (Status.INVALID_STATE, Status.BUSY):
            # the RCP is not receiving or still busy: it lost its state (a silent reset)
            self._counters.extra["rcp_lost_config"] += 1
            raise _RcpFault("reset", f"the RCP cannot transmit now ({status_name(status)})")
        else:
            raise RadioTransientError(f"the RCP could not transmit: {status_name(status)}")
        return TxResult(tx, 0, 0, time.monotonic_ns())

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
        period_ms = max(1, min(0xFFFF, round(duration_s * 1000)))
        results: dict[int, int] = {}
        async with self._mode:
            self._scanning = True
            try:
                for i, ch in enumerate(chans):
                    results[ch] = await self._guarded(partial(self._ed_channel, ch, period_ms))
                    if progress is not None:
                        progress(ch, i + 1, len(chans))
            finally:
                self._scanning = False
        return results

    async def _ed_channel(self, channel: int, period_ms: int) -> int:
        loop = asyncio.get_running_loop()
        await self._set(Prop.MAC_SCAN_MASK, "D", bytes((channel,)))
        await self._set(Prop.MAC_SCAN_PERIOD, "S", period_ms)
        self._scan_waiter = loop.create_future()
        try:
            await self._set(Prop.MAC_SCAN_STATE, "C", ScanState.ENERGY)
            wait = period_ms / 1000 + self.timeouts.scan_extra_s
            try:
                async with asyncio.timeout(wait):
                    got_channel, rssi = await self._scan_waiter
            except TimeoutError:
                self._counters.extra["rcp_timeouts"] += 1
                raise _RcpFault("timeout", f"no energy scan result within {wait:g} s") from None
        finally:
            self._scan_waiter = None
        if got_channel != channel:
            self._protocol_error(f"energy scan result for channel {got_channel}, not {channel}")
        if rssi == rcp.RSSI_INVALID:
            sensitivity = self._identity.rx_sensitivity if self._identity else None
            return -100 if sensitivity is None else sensitivity
        return int(rssi)

    # ------------------------------------------------------------------ sleep

    async def sleep(self) -> None:
        self._check_usable()
        async with self._mode:
            if not self._cfg.asleep:
                self._cfg.asleep = True
                await self._guarded(lambda: self._set(Prop.MAC_RAW_STREAM_ENABLED, "b", False))

    async def wake(self) -> None:
        self._check_usable()
        async with self._mode:
            if self._cfg.asleep:
                self._cfg.asleep = False
                await self._guarded(lambda: self._set(Prop.MAC_RAW_STREAM_ENABLED, "b", True))


# ---------------------------------------------------------------------- URLs


def _query_list(url: str, name: str) -> list[str]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True).get(name, [])


def _device_path(p: RadioUrl, scheme: str) -> str:
    path = p.path
    if path.startswith("//"):
        # spinel+hdlc+uart://dev/ttyACM0 (a host part) is taken as a path too
        path = "/" + path[2:].lstrip("/") if not path[2:].startswith("/") else path[2:]
    if not path or path == "/":
        raise RadioUrlError(f"{scheme}: needs a path, e.g. {scheme}:///dev/ttyACM0")
    return path


def spinel_radio(url: str, p: RadioUrl) -> SpinelRadio:
    if p.scheme == "spinel+hdlc+uart":
        device = _device_path(p, p.scheme)
        baud = p.get_int("uart-baudrate", 460800, 1200, 4_000_000)
        flow = p.get_bool("uart-flow-control", False)
        return SpinelRadio(url, SerialLink(device, baud, flow), backend="spinel-uart")
    if p.scheme == "spinel+hdlc+forkpty":
        program = _device_path(p, p.scheme)
        args = _query_list(url, "forkpty-arg")
        return SpinelRadio(
            url, ForkPtyLink(program, args, dict(os.environ)), backend="spinel-forkpty"
        )
    raise RadioUrlError(f"unknown Spinel radio URL scheme {p.scheme!r}")
