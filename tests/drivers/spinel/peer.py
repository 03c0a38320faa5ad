"""A Spinel RCP peer for the backend's tests, on the other end of a socket pair (or a pty, or a
process's standard input and output: see fake_rcp.py).

It answers as OpenThread's ``NcpBase`` does for an RCP (``ncp_base.cpp``, ``ncp_base_radio.cpp``):
GET with PROP_VALUE_IS, SET with PROP_VALUE_IS of the new value (LAST_STATUS OK where the property
has no value to read back), INSERT/REMOVE with PROP_VALUE_INSERTED/REMOVED, unknown properties
with LAST_STATUS PROP_NOT_FOUND, RESET with the unsolicited notice LAST_STATUS RESET_POWER_ON, and a
raw-stream transmission with LAST_STATUS (status, frame pending, header updated, ACK) on the
request's TID once it is done.

Every byte the host writes is kept (:attr:`RcpModel.rx_bytes`, decoded in :attr:`RcpModel.frames`)
and the tests can send any bytes they like (:meth:`RcpModel.inject`); hooks change the answers
(:attr:`RcpModel.on_request`, :attr:`RcpModel.tx_results`, :attr:`RcpModel.mute`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.spinel import rcp
from drivers.spinel.codec import SpinelFrame, SpinelParseError, decode_frame, pack, unpack
from drivers.spinel.consts import Cap, Cmd, Prop, Status
from drivers.spinel.hdlc import HdlcDecoder, encode_frame
from drivers.spinel.link import FdLink

SIM_VERSION = "OPENTHREAD/thread-reference-20250612-1434-ga93706fde-dirty; SIMULATION; Dec  7 2026"
SIM_CAPS = [5, 12, 24, 34, 513, 64, 65, 518]  # what ot-rcp (simulation) reports
SIM_RADIO_CAPS = 0x7F


@dataclass
class RcpState:
    protocol: tuple[int, int] = (4, 3)
    version: str = SIM_VERSION
    eui64: bytes = bytes.fromhex("18b4300000000001")
    caps: list[int] = field(default_factory=lambda: list(SIM_CAPS))
    api: int = 11
    min_host: int = 4
    radio_caps: int = SIM_RADIO_CAPS
    rx_sensitivity: int = -100
    phy_enabled: bool = False
    channel: int = 11
    tx_power: int = 0
    max_tx_power: int = 8
    pan_id: int = 0xFFFF
    short: int = 0xFFFE
    laddr: bytes = bytes(8)
    promiscuous: int = 0
    raw_stream: bool = False
    src_match_enabled: bool = False
    src_short: list[int] = field(default_factory=list)
    src_ext: list[bytes] = field(default_factory=list)  # big-endian, as Spinel carries them
    src_capacity: int = 32
    scan_mask: bytes = b""
    scan_period: int = 0
    ed_rssi: int = -70


Answer = list[bytes] | None  # raw Spinel frames to send instead of the normal answer


class RcpModel:
    """The RCP: bytes in, bytes out, through ``write`` (set by the transport)."""

    def __init__(self, state: RcpState | None = None) -> None:
        self.state = state or RcpState()
        self.decoder = HdlcDecoder()
        self.rx_bytes = bytearray()
        self.frames: list[SpinelFrame] = []
        self.write: Callable[[bytes], None] = lambda _b: None
        self.mute = False  # no answer to anything
        self.on_request: Callable[[SpinelFrame], Answer] | None = None
        # per transmission: (status, frame pending) or a callable taking the request frame
        self.tx_results: deque[tuple[int, bool] | Callable[[SpinelFrame], None]] = deque()
        self.tx_delay_s = 0.0
        self.transmitted: list[rcp.TxRequest] = []
        self.resets = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- bytes ---------------------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        self.rx_bytes += data
        for payload in self.decoder.feed(data):
            try:
                frame = decode_frame(payload)
            except SpinelParseError:
                continue
            self.frames.append(frame)
            self.handle(frame)

    def send(self, frame: SpinelFrame) -> None:
        self.write(encode_frame(frame.to_bytes()))

    def inject(self, raw: bytes) -> None:
        """Bytes as they are (a corrupted frame, noise, half a frame)."""
        self.write(raw)

    def notify(self, prop: int, value: bytes) -> None:
        self.send(SpinelFrame(Cmd.PROP_VALUE_IS, prop, value))

    def reset_notice(self, status: int = Status.RESET_POWER_ON) -> None:
        self.notify(Prop.LAST_STATUS, pack("i", status))

    def reboot(self, status: int = Status.RESET_POWER_ON) -> None:
        """The RCP resets by itself: its configuration is lost, it says so."""
        self._power_on()
        self.reset_notice(status)

    def _power_on(self) -> None:
        s = self.state
        self.resets += 1
        s.phy_enabled = s.raw_stream = s.src_match_enabled = False
        s.channel, s.pan_id, s.short, s.promiscuous = 11, 0xFFFF, 0xFFFE, 0
        s.src_short.clear()
        s.src_ext.clear()

    def received_frame(self, psdu: bytes, rssi: int = -60, lqi: int = 200) -> None:
        """The RCP received a frame on the air (PSDU with its FCS)."""
        raw = rcp.RawFrame(psdu, rssi, -128, 0, self.state.channel, lqi, 123456, 0)
        self.notify(Prop.STREAM_RAW, rcp.encode_raw_frame(raw))

    def requests(self, prop: int | None = None) -> list[SpinelFrame]:
        return [f for f in self.frames if prop is None or f.prop == prop]

    # -- answers -------------------------------------------------------------------------------

    def answer(self, req: SpinelFrame, command: int, prop: int, value: bytes) -> None:
        self.send(SpinelFrame(command, prop, value, tid=req.tid))

    def status(self, req: SpinelFrame, status: int) -> None:
        self.answer(req, Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, pack("i", status))

    def handle(self, req: SpinelFrame) -> None:
        if self.mute:
            return
        if self.on_request is not None:
            raw = self.on_request(req)
            if raw is not None:
                for r in raw:
                    self.write(encode_frame(r) if not r.startswith(b"\x7e") else r)
                return
        if req.command == Cmd.RESET:
            self._power_on()
            self.reset_notice()
            return
        if req.command == Cmd.NOOP:
            self.status(req, Status.OK)
            return
        if req.prop is None:
            self.status(req, Status.INVALID_COMMAND)
            return
        try:
            if req.command == Cmd.PROP_VALUE_GET:
                self._get(req)
            elif req.command == Cmd.PROP_VALUE_SET:
                self._set(req)
            elif req.command in (Cmd.PROP_VALUE_INSERT, Cmd.PROP_VALUE_REMOVE):
                self._insert_remove(req)
            else:
                self.status(req, Status.INVALID_COMMAND)
        except SpinelParseError:
            self.status(req, Status.PARSE_ERROR)

    def _value(self, prop: int) -> bytes | None:
        s = self.state
        values: dict[int, Callable[[], bytes]] = {
            Prop.PROTOCOL_VERSION: lambda: pack("ii", *s.protocol),
            Prop.NCP_VERSION: lambda: pack("U", s.version),
            Prop.HWADDR: lambda: s.eui64,
            Prop.CAPS: lambda: pack("A(i)", s.caps),
            Prop.RCP_API_VERSION: lambda: pack("i", s.api),
            Prop.RCP_MIN_HOST_API_VERSION: lambda: pack("i", s.min_host),
            Prop.RADIO_CAPS: lambda: pack("i", s.radio_caps),
            Prop.PHY_RX_SENSITIVITY: lambda: pack("c", s.rx_sensitivity),
            Prop.PHY_ENABLED: lambda: pack("b", s.phy_enabled),
            Prop.PHY_CHAN: lambda: pack("C", s.channel),
            Prop.PHY_TX_POWER: lambda: pack("c", s.tx_power),
            Prop.MAC_15_4_PANID: lambda: pack("S", s.pan_id),
            Prop.MAC_15_4_SADDR: lambda: pack("S", s.short),
            Prop.MAC_15_4_LADDR: lambda: s.laddr,
            Prop.MAC_PROMISCUOUS_MODE: lambda: pack("C", s.promiscuous),
            Prop.MAC_RAW_STREAM_ENABLED: lambda: pack("b", s.raw_stream),
            Prop.MAC_SRC_MATCH_ENABLED: lambda: pack("b", s.src_match_enabled),
            Prop.MAC_SCAN_PERIOD: lambda: pack("S", s.scan_period),
        }
        if prop == Prop.RCP_API_VERSION and Cap.RCP_API_VERSION not in s.caps:
            return None
        if prop == Prop.RCP_MIN_HOST_API_VERSION and Cap.RCP_MIN_HOST_API_VERSION not in s.caps:
            return None
        getter = values.get(prop)
        return None if getter is None else getter()

    def _get(self, req: SpinelFrame) -> None:
        assert req.prop is not None
        value = self._value(req.prop)
        if value is None:
            self.status(req, Status.PROP_NOT_FOUND)
        else:
            self.answer(req, Cmd.PROP_VALUE_IS, req.prop, value)

    def _set(self, req: SpinelFrame) -> None:
        s = self.state
        prop, v = req.prop, req.value
        if prop == Prop.STREAM_RAW:
            self._transmit(req)
            return
        if prop == Prop.PHY_ENABLED:
            (s.phy_enabled,) = unpack("b", v)
        elif prop == Prop.PHY_CHAN:
            (ch,) = unpack("i", v)  # NcpBase reads a packed uint
            if not 11 <= ch <= 26:
                self.status(req, Status.INVALID_ARGUMENT)
                return
            s.channel = ch
        elif prop == Prop.PHY_TX_POWER:
            (p,) = unpack("c", v)
            s.tx_power = min(p, s.max_tx_power)
        elif prop == Prop.MAC_15_4_PANID:
            (s.pan_id,) = unpack("S", v)
        elif prop == Prop.MAC_15_4_SADDR:
            (s.short,) = unpack("S", v)
        elif prop == Prop.MAC_15_4_LADDR:
            (s.laddr,) = unpack("E", v)
        elif prop == Prop.MAC_PROMISCUOUS_MODE:
            (s.promiscuous,) = unpack("C", v)
        elif prop == Prop.MAC_RAW_STREAM_ENABLED:
            (s.raw_stream,) = unpack("b", v)
        elif prop == Prop.MAC_SRC_MATCH_ENABLED:
            (s.src_match_enabled,) = unpack("b", v)
        elif prop == Prop.MAC_SRC_MATCH_SHORT_ADDRESSES:
            (s.src_short,) = unpack("A(S)", v)
            self.status(req, Status.OK)
            return
        elif prop == Prop.MAC_SRC_MATCH_EXTENDED_ADDRESSES:
            (s.src_ext,) = unpack("A(E)", v)
            self.status(req, Status.OK)
            return
        elif prop == Prop.MAC_SCAN_MASK:
            s.scan_mask = v
            self.status(req, Status.OK)
            return
        elif prop == Prop.MAC_SCAN_PERIOD:
            (s.scan_period,) = unpack("S", v)
        elif prop == Prop.MAC_SCAN_STATE:
            (state,) = unpack("C", v)
            self.answer(req, Cmd.PROP_VALUE_IS, prop, v)
            if state == 2:
                self._later(s.scan_period / 1000, self._scan_done)
            return
        else:
            self.status(req, Status.PROP_NOT_FOUND)
            return
        assert prop is not None
        self.answer(req, Cmd.PROP_VALUE_IS, prop, self._value(prop) or b"")

    def _scan_done(self) -> None:
        channel = self.state.scan_mask[0] if self.state.scan_mask else 0
        self.notify(Prop.MAC_ENERGY_SCAN_RESULT, pack("Cc", channel, self.state.ed_rssi))
        self.notify(Prop.MAC_SCAN_STATE, pack("C", 0))

    def _insert_remove(self, req: SpinelFrame) -> None:
        s = self.state
        insert = req.command == Cmd.PROP_VALUE_INSERT
        table: list[int] | list[bytes]
        if req.prop == Prop.MAC_SRC_MATCH_SHORT_ADDRESSES:
            table, (entry,) = s.src_short, unpack("S", req.value)
        elif req.prop == Prop.MAC_SRC_MATCH_EXTENDED_ADDRESSES:
            table, (entry,) = s.src_ext, unpack("E", req.value)
        else:
            self.status(req, Status.PROP_NOT_FOUND)
            return
        if insert:
            if entry not in table:
                if len(s.src_short) + len(s.src_ext) >= s.src_capacity:
                    self.status(req, Status.NOMEM)
                    return
                table.append(entry)
            cmd = Cmd.PROP_VALUE_INSERTED
        else:
            if entry not in table:
                self.status(req, Status.ITEM_NOT_FOUND)
                return
            table.remove(entry)
            cmd = Cmd.PROP_VALUE_REMOVED
        self.answer(req, cmd, req.prop, req.value)

    def _transmit(self, req: SpinelFrame) -> None:
        s = self.state
        if not s.phy_enabled or not s.raw_stream:
            self.status(req, Status.INVALID_STATE)
            return
        tx = rcp.parse_tx_request(req.value)
        self.transmitted.append(tx)
        result = self.tx_results.popleft() if self.tx_results else None
        if callable(result):
            result(req)
            return

        def done() -> None:
            status, pending = result if result is not None else (Status.OK, False)
            ack = None
            if status == Status.OK and tx.psdu[0] & 0x20:
                ack_psdu = bytes((0x12 if pending else 0x02, 0x00, tx.psdu[2], 0, 0))
                ack = rcp.RawFrame(ack_psdu, -40, -128, 0, tx.channel, 255, 0, 0)
            value = rcp.encode_tx_done(rcp.TxDone(status, pending, False, ack))
            self.answer(req, Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, value)

        self._later(self.tx_delay_s, done)

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            fn()

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class SocketPeer:
    """The model on one end of a socket pair; :attr:`link` is the backend's end."""

    def __init__(self, model: RcpModel, restartable: bool = False) -> None:
        self.model = model
        self.link = PeerLink(self, restartable)
        self.fd = -1
        self.closed_by_host = 0
        model.write = self._write

    def attach(self) -> int:
        """A new socket pair: the host's descriptor (the peer keeps the other)."""
        self.detach()
        ours, theirs = socket.socketpair()
        self.fd = ours.detach()
        os.set_blocking(self.fd, False)
        asyncio.get_running_loop().add_reader(self.fd, self._readable)
        return theirs.detach()

    def detach(self) -> None:
        if self.fd >= 0:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            self.closed_by_host += 1
            self.detach()
            return
        self.model.received(data)

    def _write(self, data: bytes) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.fd, data)

    def unplug(self) -> None:
        """The device goes away (the host reads the end of the stream)."""
        self.detach()

    async def close(self) -> None:
        self.detach()
        await self.model.close()


class PeerLink(FdLink):
    """The host's end; with ``restartable`` a restart is a new RCP (as a new ot-rcp process)."""

    def __init__(self, peer: SocketPeer, restartable: bool) -> None:
        super().__init__(-1, "test RCP")
        self.peer = peer
        self.can_hard_reset = restartable
        self.opens = 0
        self.power_on_notice = True
        self.fail_open: Exception | None = None

    async def open(self) -> None:
        if self.fail_open is not None:
            raise self.fail_open
        self.opens += 1
        fd = self.peer.attach()
        self._start(fd)
        if self.can_hard_reset and self.power_on_notice:
            self.peer.model._power_on()
            self.peer.model.reset_notice()  # a new process says hello
