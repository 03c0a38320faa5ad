"""The gateway's SRP server with a real OpenThread SRP client (opt-in: ``OT_CLI_MTD``, or the
``ot-cli-mtd`` next to ``OT_CLI_FTD``), in network namespaces (tests/thread/netns.py): the
``ot-cli-mtd`` child of the gateway runs in the gateway's namespace (the emulated air is on its
loopback), a python-zeroconf browser on the LAN host.

* ``srp client autostart enable``, ``srp client host name ot1``, ``srp client host address
  auto``, ``srp client service add ins1 _test._udp 12345``: OpenThread finds the gateway's
  entry in the Network Data, sends its signed UPDATE, and ``srp client service`` shows
  ``Registered``;
* the LAN host resolves ``ins1._test._udp.local.`` to the node's OMR address and port 12345;
* ``srp client service remove ins1 _test._udp`` withdraws it from the LAN (an mDNS goodbye) and
  the gateway keeps the name as deleted.

Needs root and ``ip netns`` as well (skipped with the reason otherwise). Port offset 80 belongs
to this module. OpenThread CLI reference: ``src/cli/README_SRP_CLIENT.md``.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.otnode import OtNode, attach_child, ot_cli_mtd
from tests.runtime.helpers import wait_until
from tests.thread.netns import GW_IF, LAN_BROWSER, LAN_IF, Net, namespace_fixture
from tests.thread.stack import Thing, ThreadStack

_MTD, _MTD_REASON = ot_cli_mtd()
pytestmark = [pytest.mark.skipif(_MTD is None, reason=_MTD_REASON), pytest.mark.timeout(300)]

OFFSET = 80
ATTACH_S = 60.0  # OpenThread attaches in ~1-2 s; a safety net for a loaded machine
INSTANCE = "ins1._test._udp.local."


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    yield from namespace_fixture("otsrp")


def _registered(node: OtNode) -> bool:
    out = node.cmd("srp client service")
    return any('instance:"ins1"' in line and "state:Registered" in line for line in out)


def test_openthread_srp_client_registers_and_the_lan_sees_it(net: Net, tmp_path: Path) -> None:
    assert _MTD is not None
    stack = ThreadStack(tmp_path / "gw", OFFSET, border_extra=f'infra_interface = "{GW_IF}"\n',
                        cmd_prefix=net.exec_prefix())  # fmt: skip
    node: OtNode | None = None
    browser: Thing | None = None
    try:
        stack.start_all()
        wait_until(net.lan_ready, 60, "the gateway's RA on the LAN host")
        omr = ipaddress.IPv6Network(stack.result("thread_prefixes")["omr"]["local"])
        browser = Thing([*net.exec_prefix(net.lan), sys.executable, "-c", LAN_BROWSER, LAN_IF,
                         "_test._udp.local."], stack, tmp_path / "browser.log")  # fmt: skip
        browser.wait_event(lambda d: d["event"] == "ready", 30, "the LAN browser")

        node = OtNode(_MTD, 2, OFFSET, prefix=net.exec_prefix())
        attach_child(node, stack.dataset().to_hex(), timeout=ATTACH_S)
        ot_omr = wait_until(lambda: node.address_in(omr), 60, "an OMR address on the node",
                            step=0.2)  # fmt: skip
        node.cmd("srp client host name ot1")
        node.cmd("srp client host address auto")
        node.cmd("srp client service add ins1 _test._udp 12345")
        node.cmd("srp client autostart enable")
        wait_until(lambda: _registered(node), 60, "Registered in 'srp client service'", step=0.5)
        server = node.value("srp client server")
        assert server.endswith("]:53536"), server

        seen = browser.wait_event(
            lambda d: d["event"] in ("added", "updated") and d["name"] == INSTANCE
            and ot_omr in d.get("addresses", []),
            60, f"{INSTANCE} resolved on the LAN",
        )  # fmt: skip
        assert seen["server"] == "ot1.local." and seen["port"] == 12345
        assert seen["addresses"] == [ot_omr]  # the OMR address only, never the ML-EID
        hosts = stack.result("srp_hosts")["hosts"]
        assert [(h["name"], h["deleted"]) for h in hosts] == [("ot1", False)]

        node.cmd("srp client service remove ins1 _test._udp")
        browser.wait_event(lambda d: d["event"] == "removed" and d["name"] == INSTANCE, 60,
                           f"{INSTANCE} withdrawn from the LAN")  # fmt: skip
        (svc,) = stack.result("srp_services")["services"]
        assert svc["instance"] == "ins1" and svc["deleted"] and not svc["published"]
        stack.stop()
    finally:
        if node is not None:
            node.close()
        if browser is not None:
            if browser.proc.poll() is None:
                browser.proc.kill()
            browser.stop()
        stack.cleanup()
    log = (tmp_path / "gw" / "border-router.log").read_text()
    assert "Traceback" not in log, log[-3000:]
