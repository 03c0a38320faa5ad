"""SRP and the advertising proxy end to end, in network namespaces (tests/thread/netns.py):

* the gateway (radio and border router services, ``infra_interface = "gw-eth0"``) publishes
  its SRP server in the Network Data; the reference thing attaches, takes an OMR address and
  registers ``_test._udp`` (its host name, that address, its UDP echo port);
* a LAN host resolves the service by mDNS (a python-zeroconf browser in the LAN namespace) to
  the thing's OMR address and port, and reaches it there (ping and UDP echoes);
* a second device claiming the same host name with another key is refused (YXDomain), and
  the LAN still sees the first one only;
* forged, truncated and oversized UPDATEs from an attached device are refused and counted in
  ``gwctl srp status`` (a record over its bound; a datagram over the Thread MTU is dropped
  and counted at the Thread interface before it reaches the server); the LAN cannot reach
  the SRP server's socket at all (it is bound to the Thread interface);
* when the thing stops renewing, its short lease (30 s) runs out and the service leaves the LAN
  (an mDNS goodbye) while the name stays held (``deleted``) until the key-lease.

Needs root and ``ip netns`` (skipped with the reason otherwise); the namespaces and every process
are removed in teardown, whatever happened. Port offsets 300-309 belong to this module."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.peers.thing.attach import ChildState, ChildStateStore
from tests.runtime.helpers import wait_until
from tests.thread.netns import LAN_BROWSER, LAN_IF, Net, namespace_fixture
from tests.thread.stack import Thing, ThreadStack

pytestmark = pytest.mark.timeout(420)
OFFSET = 300
GW_IF = "gw-eth0"
ECHO_PORT = 7000
HOST = "srp-thing"

# UDP from the LAN host: COUNT datagrams to [ADDR]:PORT, the number echoed back printed
LAN_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(3)
got = 0
for i in range(int(sys.argv[3])):
    s.sendto(b"srp%d" % i, (sys.argv[1], int(sys.argv[2])))
    try:
        got += s.recvfrom(2048)[0] == b"srp%d" % i
    except TimeoutError:
        pass
print(got)
"""


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    yield from namespace_fixture("srp")


class Procs:
    """Every subprocess a test starts, killed in teardown whatever happened."""

    def __init__(self) -> None:
        self.things: list[Thing] = []
        self.others: list[subprocess.Popen[str]] = []

    def thing(self, thing: Thing) -> Thing:
        self.things.append(thing)
        return thing

    def kill_all(self) -> None:
        for t in self.things:
            if t.proc.poll() is None:
                t.proc.kill()
            try:
                t.stop()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        for p in self.others:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def _credentials(stack: ThreadStack, path: Path) -> Path:
    st = stack.result("thread_status")
    asyncio.run(ChildStateStore(path).save(ChildState(stack.dataset(), st["key_sequence"])))
    return path


def _gwctl(net: Net, stack: ThreadStack, *args: str) -> dict[str, Any]:
    r = subprocess.run(
        [*net.exec_prefix(), sys.executable, "-m", "gateway.admin", *args, "--json"],
        env=stack.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def srp_unicast_servers_of(stack: ThreadStack) -> list[str]:
    """The SRP servers' addresses in the leader's Network Data (the unicast entries)."""
    return [
        str(ipaddress.IPv6Address(bytes.fromhex(server["data"][:32])))
        for s in stack.result("thread_netdata")["services"]
        if (s["enterprise_number"], s["service_data"]) == (44970, "5d")
        for server in s["servers"]
    ]


def _thing_cmd(stack: ThreadStack, node: int, state: Path, *extra: str) -> list[str]:
    return ["ip", "netns", "exec", stack.cmd_prefix[3], sys.executable, "-m",
            "gateway.peers.thing", "join", "--radio", stack.radio_url(node), "--state",
            str(state), "--json", "--quiet", "--child-timeout", "12", *extra]  # fmt: skip


def test_a_thread_service_registered_by_srp_is_seen_and_reached_from_the_lan(
    net: Net, tmp_path: Path
) -> None:
    stack = ThreadStack(tmp_path / "gw", OFFSET, border_extra=f'infra_interface = "{GW_IF}"\n',
                        cmd_prefix=net.exec_prefix())  # fmt: skip
    procs = Procs()
    try:
        stack.start_all()
        status = _gwctl(net, stack, "srp", "status")
        assert status["state"] == "running" and status["port"] == 53536
        services = stack.result("thread_netdata")["services"]
        assert [(s["enterprise_number"], s["service_data"]) for s in services] == [(44970, "5d")]
        wait_until(net.lan_ready, 60, "the gateway's RA on the LAN host")
        browser = procs.thing(
            Thing(
                [
                    *net.exec_prefix(net.lan),
                    sys.executable,
                    "-c",
                    LAN_BROWSER,
                    LAN_IF,
                    "_test._udp.local.",
                ],
                stack,
                tmp_path / "browser.log",
            )  # fmt: skip
        )
        browser.wait_event(lambda d: d["event"] == "ready", 30, "the LAN browser")

        # the thing attaches, takes an OMR address and registers its service
        thing = procs.thing(
            Thing(
                _thing_cmd(
                    stack,
                    2,
                    _credentials(stack, tmp_path / "thing.json"),
                    "--udp-echo",
                    str(ECHO_PORT),
                    "--srp-host",
                    HOST,
                    "--srp-lease",
                    "30",
                    "--srp-key-lease",
                    "600",
                ),
                stack,
                tmp_path / "thing.log",
            )  # fmt: skip
        )
        reg = thing.wait_event(
            lambda d: d["event"] == "srp" and d["result"]["state"] == "Registered",
            90, "the thing registered",
        )["result"]  # fmt: skip
        assert reg["granted"] == [30, 600]
        assert reg["server"] == f"[{srp_unicast_servers_of(stack)[0]}]:53536"  # the ML-EID
        thing_omr = reg["addresses"][0]
        prefixes = stack.result("thread_prefixes")
        assert ipaddress.IPv6Address(thing_omr) in ipaddress.IPv6Network(prefixes["omr"]["local"])

        # the LAN resolves it to the OMR address and the echo port, and reaches it there
        seen = browser.wait_event(
            lambda d: d["event"] in ("added", "updated") and d["name"].startswith(HOST),
            60, "the service on the LAN",
        )  # fmt: skip
        assert seen["name"] == f"{HOST}._test._udp.local."
        assert seen["server"] == f"{HOST}.local." and seen["port"] == ECHO_PORT
        assert seen["addresses"] == [thing_omr]  # the OMR address only: no ML-EID
        replies, _rtts = net.ping(thing_omr, count=5)
        assert replies == 5
        udp = net.run_in(net.lan, sys.executable, "-c", LAN_UDP, seen["addresses"][0],
                         str(seen["port"]), "5", timeout=60).stdout  # fmt: skip
        assert udp.strip() == "5"
        hosts = _gwctl(net, stack, "srp", "hosts")["hosts"]
        assert [(h["name"], h["deleted"]) for h in hosts] == [(HOST, False)]
        (svc,) = _gwctl(net, stack, "srp", "services")["services"]
        assert (svc["instance"], svc["type"], svc["port"], svc["published"]) == (
            HOST, "_test._udp", ECHO_PORT, True)  # fmt: skip

        human = subprocess.run(
            [*net.exec_prefix(), sys.executable, "-m", "gateway.admin", "srp", "services"],
            env=stack.env(), capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        assert (f"{HOST}._test._udp.default.service.arpa. host: {HOST} port: {ECHO_PORT} "
                "deleted: false published: true") in human, human  # fmt: skip

        # a second device claims the host name with its own key: refused, the first one stays
        rival = procs.thing(
            Thing(
                _thing_cmd(
                    stack,
                    3,
                    _credentials(stack, tmp_path / "rival.json"),
                    "--srp-host",
                    HOST,
                    "--srp-port",
                    "9999",
                ),
                stack,
                tmp_path / "rival.log",
            )  # fmt: skip
        )
        refused = rival.wait_event(
            lambda d: d["event"] == "srp" and d["result"]["state"] == "Refused", 90,
            "the rival refused",
        )["result"]  # fmt: skip
        assert refused["rcode"] == 6  # YXDomain
        assert rival.stop() == 0
        hosts = _gwctl(net, stack, "srp", "hosts")["hosts"]
        assert [(h["name"], h["addresses"]) for h in hosts] == [(HOST, reg["addresses"])]
        assert _gwctl(net, stack, "srp", "status")["counters"]["conflicts"] >= 1

        # hostile UPDATEs from an attached device: refused and counted
        before = _gwctl(net, stack, "srp", "status")["counters"]
        tun_before = stack.result("thread_prefixes")["packets"].get("tun_tx_dropped", 0)
        hostile = subprocess.run(
            [*net.exec_prefix(), sys.executable, "-m", "tests.thread.srp_hostile", "--radio",
             stack.radio_url(4), "--state", str(_credentials(stack, tmp_path / "hostile.json"))],
            env=stack.peer_env(), cwd=stack.root, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert hostile.returncode == 0, hostile.stderr[-3000:]
        answers = {d["kind"]: d["rcode"] for d in map(json.loads, hostile.stdout.splitlines())}
        assert answers == {"forged": 5, "truncated": 1, "oversized": None, "big_txt": 5}, answers
        after = _gwctl(net, stack, "srp", "status")["counters"]
        # forged: Refused; truncated: FormErr; the TXT beyond the bound: Refused, "oversized"
        for counter, more in (("forged", 1), ("formerr", 1), ("oversized", 1)):
            assert after[counter] - before[counter] == more, (counter, before, after)
        assert after["accepted"] - before["accepted"] <= 1  # the thing's own renewal, if due
        # the 1,300-byte datagram is over the Thread MTU: dropped at the Thread interface
        # (the SRP server's own 1,272-byte bound is shown by tests/thread/test_srp_server.py)
        tun_after = stack.result("thread_prefixes")["packets"].get("tun_tx_dropped", 0)
        assert tun_after - tun_before == 1
        assert "hostile" not in {h["name"] for h in _gwctl(net, stack, "srp", "hosts")["hosts"]}
        # the LAN cannot reach the SRP server's socket: it is bound to the Thread interface
        sockets = net.run_in(net.gw, "ss", "-Hulpn", "sport", "=", ":53536").stdout
        ml_eid = srp_unicast_servers_of(stack)[0]
        assert sockets.split()[3] == f"[{ml_eid}]%wpan0:53536", sockets

        # the thing stops renewing: its 30 s lease runs out, the LAN sees a goodbye
        thing.proc.send_signal(signal.SIGKILL)
        browser.wait_event(
            lambda d: d["event"] == "removed" and d["name"] == f"{HOST}._test._udp.local.",
            120, "the service withdrawn from the LAN at the end of its lease",
        )  # fmt: skip
        (host,) = _gwctl(net, stack, "srp", "hosts")["hosts"]
        assert host["name"] == HOST and host["deleted"] and host["remaining_key_lease"] > 0
        (svc,) = _gwctl(net, stack, "srp", "services")["services"]
        assert svc["deleted"] and not svc["published"]
        assert _gwctl(net, stack, "srp", "status")["counters"]["expired"] >= 1
        stack.stop()
    finally:
        procs.kill_all()
        stack.cleanup()
    log = (tmp_path / "gw" / "border-router.log").read_text()
    assert "Traceback" not in log, log[-3000:]
