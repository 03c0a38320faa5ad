"""The gateway as a Thread parent of real OpenThread nodes (opt-in: ``OT_CLI_FTD``, and
``OT_CLI_MTD`` or the ``ot-cli-mtd`` next to it).

The radio and border router services (emulated AT86RF233 as node 1, the Leader) run once for the
module; each test starts fresh OpenThread simulation nodes on the same air:

* an ``ot-cli-mtd`` given the gateway's Active Dataset attaches as a rx-on child (its ``parent``
  is the gateway), and pings go both ways between the two ML-EIDs, 8-byte and 1232-byte
  (6LoWPAN-fragmented); tshark, given the network key, decodes the whole capture with no
  malformed packet;
* a sleepy ``ot-cli-mtd`` (``mode -``, ``pollperiod 1000``) attaches and answers the gateway's
  pings from the parent's indirect queue;
* an OpenThread joiner that printed ``Join success`` through the gateway (native commissioner,
  or the reference external commissioner through the border agent) runs ``thread start`` and
  becomes the gateway's child with the credentials it was given;
* an ``ot-cli-ftd`` (``routerupgradethreshold 0``: a REED that stays a child) attaches as a
  child with full Network Data and pings work.

OpenThread CLI reference: ``src/cli/README.md`` (``dataset``, ``mode``, ``pollperiod``,
``parent``, ``ping``, ``routerupgradethreshold``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.peers.commissioner import CommissionerPeer
from tests.interop.conftest import TapThread
from tests.interop.otnode import OtNode, attach_child, ot_cli_ftd, ot_cli_mtd
from tests.runtime.helpers import wait_until
from tests.thread.stack import ThreadStack, thread_stack

_FTD, _FTD_REASON = ot_cli_ftd()
_MTD, _MTD_REASON = ot_cli_mtd()
pytestmark = [
    pytest.mark.skipif(_FTD is None, reason=_FTD_REASON),
    pytest.mark.skipif(_MTD is None, reason=_MTD_REASON),
    pytest.mark.timeout(240),
]

PORT_OFFSET_STEP = 3  # this module's air: OT_INTEROP_PORT_OFFSET + 3
PSKD = "N3TW0RK"
TSHARK = shutil.which("tshark")
ATTACH_S = 30.0  # a safety net: an OpenThread child attaches in ~1-2 s (first Parent Request
# after up to 750 ms, the gateway's Parent Response after up to 500 ms)
LARGE = 1232  # the largest payload in a 1280-byte IPv6 packet: 11 6LoWPAN fragments
NodeFactory = Callable[[int], OtNode]


@pytest.fixture(scope="module")
def stack(ot_port_offset: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadStack]:
    with thread_stack(tmp_path_factory.mktemp("otnet"), ot_port_offset) as s:
        yield s


def _gateway(stack: ThreadStack) -> dict[str, Any]:
    st: dict[str, Any] = stack.result("thread_status")
    assert st["role"] == "leader"
    return st


def _child_entry(stack: ThreadStack, ext: str) -> dict[str, Any] | None:
    for c in stack.result("thread_children")["children"]:
        if c["ext_addr"] == ext and c["state"] == "valid":
            return dict(c)
    return None


def _listed(stack: ThreadStack, node: OtNode) -> dict[str, Any]:
    """The gateway's valid child entry for ``node``, once the gateway lists it."""
    ext = node.value("extaddr")
    wait_until(lambda: _child_entry(stack, ext) is not None, 10, f"the gateway to list {ext}")
    entry = _child_entry(stack, ext)
    assert entry is not None
    return entry


def _parent(node: OtNode) -> dict[str, str]:
    """``parent`` as a dict: ``Ext Addr``, ``Rloc`` (hex without 0x), ``Link Quality In``..."""
    out: dict[str, str] = {}
    for line in node.cmd("parent"):
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def _check_child_of_gateway(stack: ThreadStack, node: OtNode, mode: str) -> dict[str, Any]:
    """``node`` says the gateway is its parent, and the gateway lists it with its RLOC16, mode
    and ML-EID; the gateway's entry."""
    gw = _gateway(stack)
    parent = _parent(node)
    assert parent["Ext Addr"] == gw["ext_addr"], parent
    assert int(parent["Rloc"], 16) == int(gw["rloc16"], 16), parent
    assert node.value("mode") == mode
    entry = _listed(stack, node)
    assert int(entry["rloc16"], 16) == int(node.value("rloc16"), 16)
    assert entry["mode"] == mode
    ml_eid = ipaddress.IPv6Address(node.value("ipaddr mleid"))
    if "d" in mode:
        # an FTD child registers no address (mle.cpp SendChildIdRequest, SendChildUpdateRequest):
        # its parent finds it by address resolution
        assert entry["addresses"] == [], entry
    else:
        assert ml_eid in {ipaddress.IPv6Address(a) for a in entry["addresses"]}, entry
    # the child's ML-EID is in the gateway's mesh-local /64
    gw_ml = ipaddress.IPv6Address(gw["addresses"]["ml_eid"])
    assert ml_eid.packed[:8] == gw_ml.packed[:8]
    return entry


def _gateway_ping(
    stack: ThreadStack, address: str, count: int, size: int = 8, timeout_s: float = 5.0
) -> dict[str, Any]:
    res: dict[str, Any] = stack.result(
        "thread_ping", timeout=count * timeout_s + 30, address=address, count=count, size=size,
        timeout_s=timeout_s,
    )  # fmt: skip
    return res


def _ping_both_ways(stack: ThreadStack, node: OtNode, count: int, size: int) -> None:
    gw_ml_eid = _gateway(stack)["addresses"]["ml_eid"]
    child_ml_eid = node.value("ipaddr mleid")
    ot = node.ping(gw_ml_eid, size=size, count=count, interval=0.1, timeout=10)
    assert (ot.transmitted, ot.received) == (count, count), (size, ot)
    gw = _gateway_ping(stack, child_ml_eid, count, size)
    assert (gw["transmitted"], gw["received"]) == (count, count), (size, gw)
    assert all(r["size"] == size for r in gw["replies"])


def test_mtd_attaches_to_the_gateway_and_pings_both_ways(
    stack: ThreadStack, ot_mtd_nodes: NodeFactory, air_tap: TapThread, tmp_path: Path
) -> None:
    ds = stack.dataset()
    node = ot_mtd_nodes(2)
    took = attach_child(node, ds.to_hex(), timeout=ATTACH_S)
    _check_child_of_gateway(stack, node, "r")
    _ping_both_ways(stack, node, 20, 8)
    _ping_both_ways(stack, node, 10, LARGE)
    assert node.value("state") == "child"
    print(f"\nOpenThread MTD attached to the gateway in {took:.2f} s")
    frames = air_tap.stop()
    if TSHARK is not None:
        _tshark_check(stack, air_tap.pcap, len(frames), tmp_path)


def _tshark_check(stack: ThreadStack, pcap: Path, n_frames: int, tmp_path: Path) -> None:
    """tshark, given the network key, decodes every frame of the capture: MLE attach commands
    (Parent Request 9 ... Child ID Response 12), echoes both ways, reassembled fragments, no
    malformed packet, nothing it could not decrypt."""
    assert TSHARK is not None
    ds = stack.dataset()
    assert ds.network_key is not None and ds.mesh_local_prefix is not None
    seq = _gateway(stack)["key_sequence"]
    ml = ipaddress.IPv6Network((ds.mesh_local_prefix + bytes(8), 64))
    fields = ["wpan.fcs_ok", "mle.cmd", "icmpv6.type", "6lowpan.reassembled.length",
              "_ws.malformed", "_ws.expert.message"]  # fmt: skip
    cmd = [TSHARK, "-r", str(pcap), "-o", f'uat:ieee802154_keys:"{ds.network_key.hex()}","{seq}",'
           '"Thread hash"', "-o", f"6lowpan.context0:{ml}", "-T", "fields", "-E",
           "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]  # fmt: skip
    for f in fields:
        cmd += ["-e", f]
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, env=env)
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.stdout.splitlines()]
    assert len(rows) == n_frames
    bad = [
        (i + 1, r)
        for i, r in enumerate(rows)
        if r["_ws.malformed"]
        or r["wpan.fcs_ok"] not in ("1", "True")
        or "decrypt" in r["_ws.expert.message"].lower()
    ]
    assert not bad, bad[:5]
    cmds = {c for r in rows for c in r["mle.cmd"].split(",") if c}
    assert {"9", "10", "11", "12"} <= cmds, cmds
    icmp = [t for r in rows for t in r["icmpv6.type"].split(",") if t]
    assert icmp.count("128") >= 60 and icmp.count("129") >= 60, icmp  # 2 x (20 + 10) each
    assert sum(1 for r in rows if r["6lowpan.reassembled.length"]) >= 40  # 1232-byte echoes


def test_sleepy_mtd_attaches_and_answers_pings_through_indirect_transmission(
    stack: ThreadStack, ot_mtd_nodes: NodeFactory
) -> None:
    node = ot_mtd_nodes(3)
    took = attach_child(node, stack.dataset().to_hex(), mode="-", poll_period_ms=1000,
                        timeout=ATTACH_S)  # fmt: skip
    entry = _check_child_of_gateway(stack, node, "-")
    assert int(node.value("pollperiod")) == 1000
    polls0 = _gateway(stack)["counters"].get("data_polls", 0)
    # each echo waits in the gateway's indirect queue for the child's next poll (<= 1 s)
    res = _gateway_ping(stack, node.value("ipaddr mleid"), 10, timeout_s=5.0)
    assert res["received"] == 10, res
    assert _gateway(stack)["counters"].get("data_polls", 0) > polls0
    assert _gateway(stack)["children"]["sleepy"] >= 1
    assert entry["mode"] == "-"
    print(f"\nOpenThread SED attached to the gateway in {took:.2f} s")


def _join_then_start(node: OtNode, stack: ThreadStack) -> float:
    """``joiner start`` until ``Join success``, then ``thread start``; seconds to ``child``."""
    node.cmd("ifconfig up")
    mark = node.mark()
    node.cmd(f"joiner start {PSKD}")
    m = node.wait_for(r"Join (success|failed.*)", 40, since=mark)
    assert m.group(0) == "Join success", node.transcript()[-3000:]
    ds = stack.dataset()
    assert ds.network_key is not None
    assert node.value("networkkey") == ds.network_key.hex()
    t0 = time.monotonic()
    node.cmd("thread start")
    node.wait_state("child", ATTACH_S)
    return time.monotonic() - t0


def test_openthread_joiner_through_the_native_commissioner_becomes_a_child(
    stack: ThreadStack, ot_mtd_nodes: NodeFactory
) -> None:
    node = ot_mtd_nodes(4)
    eui64 = node.value("eui64")
    stack.result("commissioner_start")
    try:
        stack.result("joiner_add", eui64=eui64, pskd=PSKD, timeout_s=120)
        took = _join_then_start(node, stack)
        assert stack.result("joiner_wait", eui64=eui64, wait_s=10)["result"] == "joined"
    finally:
        stack.result("commissioner_stop")
    _check_child_of_gateway(stack, node, "r")
    res = _gateway_ping(stack, node.value("ipaddr mleid"), 3)
    assert res["received"] == 3, res
    print(f"\nOpenThread joiner (native commissioner) attached {took:.2f} s after thread start")


async def test_openthread_joiner_through_the_border_agent_becomes_a_child(
    stack: ThreadStack, ot_mtd_nodes: NodeFactory
) -> None:
    ds = stack.dataset()
    assert ds.pskc is not None
    node = ot_mtd_nodes(5)
    eui64 = bytes.fromhex(node.value("eui64"))
    peer = CommissionerPeer(("127.0.0.1", stack.ba_port), ds.pskc)
    await peer.start()
    try:
        await peer.add_joiner(PSKD, eui64=eui64)
        took = await asyncio.to_thread(_join_then_start, node, stack)
        await peer.wait_joiner(eui64, timeout=10)
    finally:
        await peer.close()
    await asyncio.to_thread(_check_child_of_gateway, stack, node, "r")
    res = await asyncio.to_thread(_gateway_ping, stack, node.value("ipaddr mleid"), 3)
    assert res["received"] == 3, res
    print(f"\nOpenThread joiner (border agent) attached {took:.2f} s after thread start")


def test_ftd_attaches_as_a_reed_child_and_pings_both_ways(
    stack: ThreadStack, ot_nodes: NodeFactory
) -> None:
    node = ot_nodes(6)
    # a REED that never asks to become a router: it upgrades only while the partition has
    # fewer routers than this threshold (mle_ftd.cpp RoleTransitioner)
    node.cmd("routerupgradethreshold 0")
    took = attach_child(node, stack.dataset().to_hex(), timeout=ATTACH_S)
    entry = _check_child_of_gateway(stack, node, "rdn")
    assert node.value("routereligible") == "Enabled"
    # a full Network Data child holds the leader's full set, in the gateway's partition
    gw, leader = _gateway(stack), _leader_data(node)
    assert int(leader["Partition ID"]) == gw["partition_id"], leader
    assert int(leader["Data Version"]) == gw["data_version"], leader
    assert int(leader["Leader Router ID"]) == gw["router_id"], leader
    _ping_both_ways(stack, node, 10, 8)
    _ping_both_ways(stack, node, 3, LARGE)
    assert node.value("state") == "child"
    assert entry["mode"] == "rdn"
    print(f"\nOpenThread FTD (REED) attached to the gateway in {took:.2f} s")


def _leader_data(node: OtNode) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in node.cmd("leaderdata"):
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out
