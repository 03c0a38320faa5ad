"""OpenThread's simulation air: UDP multicast on loopback (reference: openthread-sim-air.md).

Group 224.0.0.116, group port P = 9000 + 34 × offset; node N sends from 127.0.0.1:(P + N); each
datagram is one channel byte followed by the PSDU including its FCS. On top of it this module keeps
the link model the emulator adds: per-link loss and RSSI, from URL parameters or a shared air
configuration file (TOML):

    [defaults]
    rssi = -60       # dBm at the receiver
    loss = 0.0       # probability a frame is lost on a link

    [[link]]         # directed unless symmetric = true
    from = 1
    to = 2
    rssi = -85
    loss = 0.3
    symmetric = true
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from drivers.errors import RadioNotResponding, RadioUrlError

GROUP = "224.0.0.116"
PORT_BASE = 9000
MAX_NODES = 33
MAX_OFFSET = (65535 - PORT_BASE) // (MAX_NODES + 1) - 1
# Linux <asm-generic/socket.h> SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); Python does not export it. The
# cmsg carries a struct timespec of CLOCK_REALTIME (two native longs).
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")


def group_port(port_offset: int) -> int:
    return PORT_BASE + port_offset * (MAX_NODES + 1)


@dataclass(frozen=True)
class Link:
    rssi_dbm: float
    loss: float


@dataclass
class LinkModel:
    """Receiver-side view: what a frame from node ``src`` looks like at this node."""

    default: Link = field(default_factory=lambda: Link(-60.0, 0.0))
    links: dict[tuple[int, int], Link] = field(default_factory=dict)

    def link(self, src: int, dst: int) -> Link:
        return self.links.get((src, dst), self.default)

    @classmethod
    def from_file(cls, path: str | Path, default: Link) -> LinkModel:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise RadioUrlError(f"cannot read air configuration {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise RadioUrlError(f"air configuration {path} is not valid TOML: {exc}") from exc
        d = data.get("defaults", {})
        try:
            dflt = Link(float(d.get("rssi", default.rssi_dbm)), float(d.get("loss", default.loss)))
            links: dict[tuple[int, int], Link] = {}
            for entry in data.get("link", []):
                a, b = int(entry["from"]), int(entry["to"])
                lk = Link(
                    float(entry.get("rssi", dflt.rssi_dbm)), float(entry.get("loss", dflt.loss))
                )
                links[(a, b)] = lk
                if entry.get("symmetric", False):
                    links[(b, a)] = lk
        except (KeyError, TypeError, ValueError) as exc:
            raise RadioUrlError(f"air configuration {path}: bad link entry ({exc})") from exc
        for lk in (dflt, *links.values()):
            if not 0.0 <= lk.loss <= 1.0:
                raise RadioUrlError(f"air configuration {path}: loss must be within 0..1")
        return cls(dflt, links)


def open_rx_socket(port_offset: int, interface: str = "127.0.0.1") -> socket.socket:
    """A socket receiving every datagram of the port group (as every OpenThread node does)."""
    port = group_port(port_offset)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * 1024 * 1024)
        rx.bind((GROUP, port))
        mreq = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(interface))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        if sys.platform == "linux":  # kernel receive timestamps, see AirPort.recv_timed
            with contextlib.suppress(OSError):
                rx.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        rx.setblocking(False)
    except OSError as exc:
        rx.close()
        raise RadioNotResponding(
            f"cannot join the simulated air {GROUP}:{port}: {exc.strerror}",
            hint="Multicast on the loopback interface must work (is 'lo' up?).",
        ) from exc
    return rx


class AirPort:
    """One node's sockets on the simulated air."""

    def __init__(self, node_id: int, port_offset: int, interface: str = "127.0.0.1") -> None:
        if not 1 <= node_id <= MAX_NODES:
            raise RadioUrlError(f"node id {node_id} is outside 1..{MAX_NODES}")
        if not 0 <= port_offset <= MAX_OFFSET:
            raise RadioUrlError(f"port_offset {port_offset} is outside 0..{MAX_OFFSET}")
        self.node_id = node_id
        self.port_offset = port_offset
        self.group_port = group_port(port_offset)
        self._dest = (GROUP, self.group_port)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.bind((interface, self.group_port + node_id))
        except OSError as exc:
            tx.close()
            if exc.errno == errno.EADDRINUSE:
                raise RadioUrlError(
                    f"node {node_id} is already on the air at port offset {port_offset}",
                    hint="Pick another node= (1..33) or port_offset= in the radio URL.",
                ) from exc
            raise RadioNotResponding(f"cannot open the simulated air: {exc.strerror}") from exc
        self.tx = tx
        try:
            self.rx = open_rx_socket(port_offset, interface)
        except BaseException:
            tx.close()
            raise

    def send(self, channel: int, psdu: bytes) -> None:
        try:
            self.tx.sendto(bytes((channel,)) + psdu, self._dest)
        except OSError:
            pass  # a full socket buffer is a lost frame, as on a real air

    def recv(self) -> tuple[int, int, bytes] | None:
        """(sender node id, channel, PSDU with FCS), None when nothing is pending; own frames
        and malformed datagrams are skipped."""
        item = self.recv_timed()
        return None if item is None else item[:3]

    def recv_timed(self) -> tuple[int, int, bytes, int | None] | None:
        """:meth:`recv` plus when the datagram reached the socket, on the ``time.monotonic_ns``
        scale (from the kernel's receive timestamp; None where there is none). On loopback that
        is when it was sent, however late the reader gets to it."""
        while True:
            try:
                data, anc, _flags, addr = self.rx.recvmsg(256, socket.CMSG_SPACE(_TIMESPEC.size))
            except BlockingIOError:
                return None
            except OSError:
                return None
            sender = addr[1] - self.group_port
            if sender == self.node_id or len(data) < 2 or len(data) > 128:
                continue
            at: int | None = None
            for level, kind, value in anc:
                stamp = (level, kind) == (socket.SOL_SOCKET, _SO_TIMESTAMPNS)
                if stamp and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    age = time.time_ns() - (sec * 1_000_000_000 + nsec)
                    at = time.monotonic_ns() - max(0, age)
            return sender, data[0], data[1:], at

    def close(self) -> None:
        self.tx.close()
        self.rx.close()
