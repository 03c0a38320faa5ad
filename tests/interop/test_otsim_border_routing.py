"""Border routing with a real OpenThread node (opt-in: ``OT_CLI_MTD``, or the ``ot-cli-mtd``
next to ``OT_CLI_FTD``): a LAN host and an OpenThread child of the gateway reach each other.

``gw`` holds the gateway (radio and border router services, ``infra_interface = "gw-eth0"``)
and the emulated air on its loopback, so the ``ot-cli-mtd`` runs inside it too
(``ip netns exec``); ``lan`` is a LAN host on a veth pair (tests/thread/netns.py). Shown:

* the OpenThread child forms an OMR address (SLAAC from the gateway's OMR prefix in the Network
  Data) and registers it with the gateway;
* the LAN host, with the route from the gateway's RA, pings that address 20/20;
* ``udp open`` / ``udp bind :: <port>`` / ``udp send <lan host> <port> ...`` on the OpenThread
  node: small and 1,200-byte datagrams (6LoWPAN-fragmented) reach a UDP echo on the LAN host
  and come back (the CLI prints ``<n> bytes from <peer> <port> <payload>``, src/cli/cli_udp.cpp).

Needs root and ``ip netns`` as well (skipped with the reason otherwise); namespaces are made per
run and deleted in teardown. Port offset 1659 belongs to this module (its air lives in the
namespace, so the host's ports are not involved).

OpenThread CLI reference: ``src/cli/README.md`` (``ipaddr``), ``src/cli/README_UDP.md``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.otnode import OtNode, attach_child, ot_cli_mtd
from tests.runtime.helpers import wait_until
from tests.thread.netns import GW_IF, LAN_ECHO_SERVER, Net, netns_unavailable
from tests.thread.stack import ThreadStack

_MTD, _MTD_REASON = ot_cli_mtd()
pytestmark = [pytest.mark.skipif(_MTD is None, reason=_MTD_REASON), pytest.mark.timeout(300)]

OFFSET = 1659
LAN_ECHO = 7001
OT_PORT = 7100
ATTACH_S = 60.0  # OpenThread attaches in ~1-2 s; a safety net for a loaded machine
UDP_RX = re.compile(r"^(\d+) bytes from (\S+) (\d+) (.*)$")


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    why = netns_unavailable()
    if why is not None:
        pytest.skip(why)
    n = Net(str(os.getpid()), kind="ot")
    try:
        n.up()
        yield n
    finally:
        n.down()
        assert n.gone()


@pytest.fixture
def stack(net: Net, tmp_path: Path) -> Iterator[ThreadStack]:
    s = ThreadStack(tmp_path / "gw", OFFSET, border_extra=f'infra_interface = "{GW_IF}"\n',
                    cmd_prefix=net.exec_prefix())  # fmt: skip
    try:
        s.start_all()
        yield s
        s.stop()
    finally:
        s.cleanup()
    log = (tmp_path / "gw" / "border-router.log").read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def lan_echo(net: Net) -> Iterator[None]:
    p = subprocess.Popen(
        [*net.exec_prefix(net.lan), sys.executable, "-c", LAN_ECHO_SERVER, str(LAN_ECHO)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield
    finally:
        p.kill()
        p.wait(5)
        assert p.stdout is not None
        p.stdout.close()


@pytest.fixture
def ot_child(net: Net, stack: ThreadStack) -> Iterator[OtNode]:
    assert _MTD is not None
    node = OtNode(_MTD, 2, OFFSET, prefix=net.exec_prefix())
    try:
        yield node
    finally:
        node.close()


def _omr_address(node: OtNode, omr: ipaddress.IPv6Network) -> str | None:
    for line in node.cmd("ipaddr"):
        try:
            a = ipaddress.IPv6Address(line.strip())
        except ValueError:
            continue
        if a in omr:
            return str(a)
    return None


def _registered(stack: ThreadStack, ext: str, address: str) -> bool:
    for c in stack.result("thread_children")["children"]:
        if c["ext_addr"] == ext and c["state"] == "valid":
            return address in c["addresses"]
    return False


def _diag(stack: ThreadStack, node: OtNode) -> str:
    return repr(
        (
            stack.result("thread_prefixes")["packets"],
            stack.result("thread_status")["counters"],
            stack.result("thread_children"),
            node.transcript()[-3000:],
        )
    )


def test_lan_host_and_openthread_child_reach_each_other(
    net: Net, stack: ThreadStack, lan_echo: None, ot_child: OtNode
) -> None:
    wait_until(net.lan_ready, 60, "the gateway's RA on the LAN host (route and address)")
    lan_addr = net.lan_address()
    assert lan_addr is not None
    prefixes: dict[str, Any] = stack.result("thread_prefixes")
    omr = ipaddress.IPv6Network(prefixes["omr"]["local"])
    assert prefixes["omr"]["state"] == "added", prefixes

    node = ot_child
    attach_child(node, stack.dataset().to_hex(), timeout=ATTACH_S)
    # SLAAC: the OMR prefix is stable Network Data with the "a" flag, so an rx-on MTD (stable
    # data only) forms an address in it and registers it in a Child Update Request
    ot_omr = wait_until(lambda: _omr_address(node, omr), 60, f"an address in {omr} on the OT node",
                        step=0.2)  # fmt: skip
    ext = node.value("extaddr")
    wait_until(lambda: _registered(stack, ext, ot_omr), 30,
               f"the gateway to list {ot_omr} for the child", step=0.2)  # fmt: skip

    # the LAN host -> the OpenThread child, through the gateway
    received, _ = net.ping(ot_omr, count=20)
    assert received == 20, _diag(stack, node)

    # the OpenThread child -> a UDP echo on the LAN host, and back
    node.cmd("udp open")
    try:
        node.cmd(f"udp bind :: {OT_PORT}")
        sends = [f"-t hello-{i}" for i in range(10)] + ["-s 1200"] * 10
        for i, what in enumerate(sends):
            mark = node.mark()
            node.cmd(f"udp send {lan_addr} {LAN_ECHO} {what}")
            m = node.wait_for(r"^\d+ bytes from \S+ \d+ ", 30, since=mark)
            got = UDP_RX.match(m.string)
            assert got is not None, m.string
            n, peer, port, payload = int(got[1]), got[2], int(got[3]), got[4]
            assert ipaddress.IPv6Address(peer) == ipaddress.IPv6Address(lan_addr), (i, m.string)
            assert port == LAN_ECHO, (i, m.string)
            if what.startswith("-t "):
                assert (n, payload) == (len(what) - 3, what[3:]), (i, m.string)
            else:
                assert n == 1200 and len(payload) == 1200, (i, n, len(payload))
    finally:
        node.cmd("udp close")
    assert node.value("state") == "child"
    packets = stack.result("thread_prefixes")["packets"]
    assert packets.get("from_host_sent", 0) >= 40, packets  # 20 echo requests, 20 UDP echoes
