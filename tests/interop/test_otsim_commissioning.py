"""Thread commissioning against real OpenThread simulation nodes (opt-in: ``OT_CLI_FTD``).

Both directions of the issue's interoperability claim, on one simulated air:

* an OpenThread joiner (``joiner start <PSKd>``) prints ``Join success`` through the gateway: the
  radio and border router services (emulated AT86RF233 as node 1) are the joiner router, and
  the commissioner is the gateway's native one, or the reference external commissioner
  petitioning through the border agent on loopback;
* the reference joiner (``gateway.peers.thing join``) joins a network that an OpenThread leader
  and its native commissioner (``commissioner start``, ``commissioner joiner add``) run, and
  holds OpenThread's network key.

OpenThread CLI reference: ``src/cli/README_COMMISSIONER.md``, ``README_JOINER.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.crypto.thread_keys import joiner_id
from gateway.peers.commissioner import CommissionerPeer
from gateway.peers.thing.joiner import join
from gateway.thread.commissioning.joiner import JoinerState
from tests.interop.otnode import OtNode, form_leader, ot_cli_ftd
from tests.thread.stack import thread_stack

_BINARY, _SKIP_REASON = ot_cli_ftd()
pytestmark = [
    pytest.mark.skipif(_BINARY is None, reason=_SKIP_REASON),
    pytest.mark.timeout(180),
]

PORT_OFFSET_STEP = 2  # this module's air: OT_INTEROP_PORT_OFFSET + 2
PSKD = "J01NME"
NodeFactory = Callable[[int], OtNode]


def _ot_join(node: OtNode, pskd: str, timeout: float = 25.0) -> float:
    """``joiner start`` on a fresh node; seconds until ``Join success`` (fails otherwise)."""
    node.cmd("ifconfig up")
    mark = node.mark()
    t0 = time.monotonic()
    node.cmd(f"joiner start {pskd}")
    m = node.wait_for(r"Join (success|failed.*)", timeout, since=mark)
    took = time.monotonic() - t0
    assert m.group(0) == "Join success", node.transcript()[-3000:]
    return took


def test_openthread_joiner_joins_through_the_gateway_native_commissioner(
    ot_port_offset: int, ot_nodes: NodeFactory, tmp_path: Path
) -> None:
    with thread_stack(tmp_path, ot_port_offset) as stack:
        node = ot_nodes(2)
        eui64 = bytes.fromhex(node.value("eui64"))
        assert node.value("joiner id") == joiner_id(eui64).hex()
        stack.result("commissioner_start")
        stack.result("joiner_add", eui64=eui64.hex(), pskd=PSKD, timeout_s=120)
        took = _ot_join(node, PSKD)
        waited = stack.result("joiner_wait", eui64=eui64.hex(), wait_s=10)
        assert waited["result"] == "joined"
        st = stack.status()["commissioning"]
        assert st["joiner_router"]["entrusted"] >= 1  # OpenThread acknowledged JOIN_ENT
        assert st["policer"]["dropped_port"] == 0
        print(f"\nOpenThread joiner through the gateway (native commissioner): {took:.2f} s")
        stack.result("commissioner_stop")


async def test_openthread_joiner_joins_through_the_border_agent(
    ot_port_offset: int, ot_nodes: NodeFactory, tmp_path: Path
) -> None:
    with thread_stack(tmp_path, ot_port_offset) as stack:
        ds = stack.dataset()
        assert ds.pskc is not None
        node = ot_nodes(2)
        eui64 = bytes.fromhex(node.value("eui64"))
        peer = CommissionerPeer(("127.0.0.1", stack.ba_port), ds.pskc)
        await peer.start()
        try:
            await peer.add_joiner(PSKD, eui64=eui64)
            took = await asyncio.to_thread(_ot_join, node, PSKD)
            ev = await peer.wait_joiner(eui64, timeout=5)
            assert ev.joiner_id == joiner_id(eui64)
            print(f"\nOpenThread joiner through the border agent: {took:.2f} s")
        finally:
            await peer.close()


async def test_reference_joiner_joins_an_openthread_network(
    ot_port_offset: int, ot_nodes: NodeFactory
) -> None:
    leader = ot_nodes(3)
    await asyncio.to_thread(form_leader, leader)
    channel = int(leader.value("channel"))
    mark = leader.mark()
    leader.cmd("commissioner start")
    await asyncio.to_thread(leader.wait_for, "Commissioner: active", 10, mark)
    eui64 = bytes.fromhex("18b43000000000a5")
    leader.cmd(f"commissioner joiner add {eui64.hex()} {PSKD}")
    result = await join(
        f"emulated:?node=5&port_offset={ot_port_offset}", PSKD, eui64=eui64, channels=(channel,)
    )
    assert result.joiner.state is JoinerState.JOINED, result.joiner.log
    creds = result.credentials
    assert creds is not None
    assert creds.network_key.hex() == leader.value("networkkey")
    assert creds.dataset.pan_id == int(leader.value("panid"), 16)
    assert creds.dataset.ext_pan_id == bytes.fromhex(leader.value("extpanid"))
    assert creds.dataset.network_name == leader.value("networkname")
    await asyncio.to_thread(
        leader.wait_for, f"Commissioner: Joiner finalize {joiner_id(eui64).hex()}", 5, mark
    )
    print(f"\nreference joiner into an OpenThread network: {result.seconds:.2f} s (1 channel)")


async def test_reference_joiner_full_scan_into_an_openthread_network(
    ot_port_offset: int, ot_nodes: NodeFactory
) -> None:
    """The same, scanning all 16 channels as an OpenThread joiner does (the benchmark's
    comparison point)."""
    leader = ot_nodes(3)
    await asyncio.to_thread(form_leader, leader)
    mark = leader.mark()
    leader.cmd("commissioner start")
    await asyncio.to_thread(leader.wait_for, "Commissioner: active", 10, mark)
    leader.cmd(f"commissioner joiner add * {PSKD}")
    result = await join(f"emulated:?node=6&port_offset={ot_port_offset}", PSKD)
    assert result.joiner.state is JoinerState.JOINED, result.joiner.log
    assert result.discovery_seconds is not None and result.discovery_seconds >= 16 * 0.3
    print(f"\nreference joiner, full scan: {result.seconds:.2f} s")
