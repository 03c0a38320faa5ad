"""Fixtures for the opt-in interoperability tests against OpenThread simulation nodes.

They run only when ``OT_CLI_FTD`` names an ``ot-cli-ftd`` simulation binary (each test module
skips itself otherwise; see docs/interop.md); ``ot-cli-mtd`` nodes come from ``OT_CLI_MTD`` or
the binary of that name next to ``OT_CLI_FTD``. Each module gets its own air: port offset
``OT_INTEROP_PORT_OFFSET`` (default 1620) plus the module's ``PORT_OFFSET_STEP``.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.emulator.air import group_port
from drivers.emulator.tap import AirTap
from gateway.wire.mac802154 import ExtAddress
from tests.interop.otnode import (
    OtNode,
    form_leader,
    interop_port_offset,
    ot_cli_ftd,
    ot_cli_mtd,
)


def _require_binary(kind: Callable[[], tuple[str | None, str]] = ot_cli_ftd) -> str:
    path, reason = kind()
    if path is None:
        pytest.skip(reason)
    return path


def _check_node_port_free(port_offset: int, node_id: int) -> None:
    port = group_port(port_offset) + node_id
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            pytest.fail(
                f"node {node_id} at port offset {port_offset} (UDP {port}) is already in use: "
                "a left-over ot-cli process or another interop run? Stop it (by PID) or set "
                "OT_INTEROP_PORT_OFFSET to another offset (<= 1661)."
            )
        raise
    finally:
        s.close()


@pytest.fixture(scope="module")
def ot_port_offset(request: pytest.FixtureRequest) -> int:
    return interop_port_offset() + int(getattr(request.module, "PORT_OFFSET_STEP", 0))


@dataclass
class Leader:
    """A running OpenThread leader and what it reported about its network."""

    node: OtNode
    port_offset: int
    channel: int
    pan_id: int
    ext_addr: ExtAddress
    ext_pan_id: bytes
    network_name: str
    network_key: bytes = field(repr=False)
    key_sequence: int
    joiner_port: int
    seconds_to_leader: float


@pytest.fixture(scope="module")
def ot_leader(ot_port_offset: int) -> Iterator[Leader]:
    """Node 1: ``dataset init new``, ``dataset commit active``, ``ifconfig up``,
    ``thread start``, leader. Shared by the tests of a module (each computes counter deltas)."""
    binary = _require_binary()
    _check_node_port_free(ot_port_offset, 1)
    node = OtNode(binary, 1, ot_port_offset)
    try:
        took = form_leader(node)
        yield Leader(
            node=node,
            port_offset=ot_port_offset,
            channel=int(node.value("channel")),
            pan_id=int(node.value("panid"), 16),
            ext_addr=ExtAddress.from_hex(node.value("extaddr")),
            ext_pan_id=bytes.fromhex(node.value("extpanid")),
            network_name=node.value("networkname"),
            network_key=bytes.fromhex(node.value("networkkey")),
            key_sequence=int(node.value("keysequence counter")),
            joiner_port=int(node.value("joinerport")),
            seconds_to_leader=took,
        )
    finally:
        node.close()


@pytest.fixture
def ot_nodes(ot_port_offset: int) -> Iterator[Callable[[int], OtNode]]:
    """A factory of fresh OpenThread nodes (``ot-cli-ftd``) on this module's air; all are
    killed at teardown."""
    yield from _node_factory(_require_binary(ot_cli_ftd), ot_port_offset)


@pytest.fixture
def ot_mtd_nodes(ot_port_offset: int) -> Iterator[Callable[[int], OtNode]]:
    """The same with ``ot-cli-mtd`` (``OT_CLI_MTD``, or the one next to ``OT_CLI_FTD``)."""
    yield from _node_factory(_require_binary(ot_cli_mtd), ot_port_offset)


def _node_factory(binary: str, ot_port_offset: int) -> Iterator[Callable[[int], OtNode]]:
    started: list[OtNode] = []

    def start(node_id: int) -> OtNode:
        _check_node_port_free(ot_port_offset, node_id)
        node = OtNode(binary, node_id, ot_port_offset)
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in started:
            node.close()


class TapThread:
    """:class:`drivers.emulator.tap.AirTap` on a thread: every frame of the air into a pcap and
    into :attr:`frames` as (sender node id, channel, PSDU with FCS)."""

    def __init__(self, port_offset: int, pcap: Path) -> None:
        self.pcap = pcap
        self.frames: list[tuple[int, int, bytes]] = []
        self._tap = AirTap(port_offset, str(pcap))  # the socket is open from here on
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="air-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.frames.extend(self._tap.poll(0.05))

    def stop(self) -> list[tuple[int, int, bytes]]:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5)
            self.frames.extend(self._tap.poll(0.0))
            self._tap.close()
        return self.frames


@pytest.fixture
def air_tap(ot_port_offset: int, tmp_path: Path) -> Iterator[TapThread]:
    tap = TapThread(ot_port_offset, tmp_path / "air.pcap")
    try:
        yield tap
    finally:
        tap.stop()
