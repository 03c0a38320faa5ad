"""The draft's step 9 over IP, end to end in network namespaces: a CBSB thing that bootstrapped
through the gateway and attached to its Thread network reports its result to the user's app
itself, over UDP/CoAP through the border router, and the app takes it.

``gwrep-*`` holds the gateway: the reference cloud (on 0.0.0.0, its certificate also naming
10.77.0.1), the radio service, the group owner, the border router with ``infra_interface =
"gw-eth0"``, the emulated air on its loopback and the reference thing on it. ``lanrep-*`` is a LAN
host (10.77.0.2/24, and the address it takes from the gateway's PIO) running the user's app: it
logs in to the cloud through 10.77.0.1, claims the gateway and opens a session listening on its
PIO address, so the group owner puts item 0x80 (the app's address, its port and ``K_rep``) in the
session's delivery. The thing bootstraps, attaches, takes an OMR address and sends its sealed
report through ``wpan0`` and the veth to the app. Shown:

* the app logs one ``thing_report`` for the thing, naming its OMR address (the app takes a report
  only from the address it names), and exits 0 with the thing bound;
* the thing's report was acknowledged: the app's ack opened under the ``K_rep`` of the delivery,
  which the app derived itself from ``K_appgw`` and the session ID;
* reports that are not the thing's are refused, before the thing reports: one sealed correctly
  but sent from the LAN host (4.03), one under the notice key, one under another session's key
  and one unsealed (4.01 each); none of them becomes a ``thing_report`` and the app counts all
  four as refused.

How it fails: a timeout naming what it waited for (the cloud link, the gateway's RA on the LAN
host, the window, the thing's report), with the logs of the process concerned; or an assertion
on the events (a missing or extra ``thing_report``, an address outside the OMR prefix, a hostile
report answered 2.04, an unacknowledged report). Needs root and ``ip netns`` (skipped with the
reason otherwise); the namespaces are made per run, every process is stopped and the namespaces
deleted in teardown whatever happened. Port offset 270 belongs to this module."""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.wire import cbsb_notice as notice
from gateway.wire.coap import CoapCode, MessageType, TmfMessage
from tests.cbsb.stack import Stack, control_call, wait_until
from tests.thread.netns import GW_IF, LAN_IF, Net, namespaces, netns_unavailable, run

pytestmark = pytest.mark.timeout(600)
OFFSET = 270
GW_V4, LAN_V4 = "10.77.0.1", "10.77.0.2"
FORBIDDEN, UNAUTHORIZED = 0x83, 0x81  # CoAP 4.03, 4.01

# On the LAN host: sends each datagram (hex, one a line on stdin) to the app as a CON request,
# resends it like a CoAP client until the answer with its message ID comes, prints its code.
HOSTILE_CLIENT = """
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(2.0)
for line in sys.stdin:
    dgram, code = bytes.fromhex(line.strip()), None
    for _ in range(10):
        s.sendto(dgram, (dst, port))
        try:
            while code is None:
                data, _ = s.recvfrom(2048)
                if data[2:4] == dgram[2:4]:
                    code = data[1]
        except TimeoutError:
            continue
        break
    print(code, flush=True)
"""


@pytest.fixture
def net() -> Iterator[Net]:
    why = netns_unavailable()
    if why is not None:
        pytest.skip(why)
    with namespaces("rep") as n:
        for ns, dev, addr in ((n.gw, GW_IF, GW_V4), (n.lan, LAN_IF, LAN_V4)):
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        yield n


@pytest.fixture
def system(net: Net, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path / "cbsb", OFFSET, cmd_prefix=net.exec_prefix(),
              app_prefix=net.exec_prefix(net.lan), cloud_hostnames=(GW_V4,))  # fmt: skip
    s.cloud_listen = f"0.0.0.0:{s.cloud_port}"
    s.app_cloud_url = f"coaps+tcp://{GW_V4}:{s.cloud_port}"
    (s.root / "gw").mkdir(parents=True, exist_ok=True)
    (s.root / "gw" / "gateway.toml").write_text(
        '[network]\nuplink = "lo"\n'
        f"[border_router]\nborder_agent_port = {20000 + OFFSET * 7 % 20000}\n"
        f'advertise_mdns = false\ninfra_interface = "{GW_IF}"\n'
    )
    try:
        yield s
    finally:
        s.close()  # before the namespaces go


def _event(s: Stack, name: str, pred: Callable[[dict[str, Any]], bool],
           timeout: float, what: str) -> dict[str, Any]:  # fmt: skip
    """The first JSON event of ``name`` matching ``pred``; fails early if ``name`` exits."""

    def found() -> dict[str, Any] | None:
        hit = next((e for e in s.events(name) if pred(e)), None)
        if hit is None and s.procs[name].poll() is not None:
            raise AssertionError(f"{name} exited before {what}:\n{s.log(name)[-4000:]}")
        return hit

    try:
        return dict(wait_until(found, timeout, what, step=0.1))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- {name}:\n{s.log(name)[-4000:]}") from None


def _report(key: bytes, sid: bytes, body: dict[str, Any]) -> bytes:
    """A CON POST to /cbsb/v1/report carrying ``body`` sealed as a report under ``key``."""
    return _post(notice.seal_with(key, sid, body, notice.KIND_REPORT))


def _post(payload: bytes) -> bytes:
    return TmfMessage(MessageType.CON, CoapCode.POST, secrets.randbits(16), secrets.token_bytes(8),
                      notice.REPORT_PATH, payload).to_bytes()  # fmt: skip


def test_the_thing_reports_to_the_app_over_ip_through_the_border_router(
    net: Net, system: Stack
) -> None:
    s = system
    s.start_cloud()
    s.enrol_gateway()
    s.add_user("alice")
    s.start_services()
    st = s.wait_cloud_link(120)
    # the LAN host: an address from the gateway's PIO, the OMR route from its RIO
    wait_until(net.lan_ready, 120, "the gateway's RA (PIO and RIO) on the LAN host", step=0.2)
    lan_addr = net.lan_address()
    assert lan_addr is not None
    prefixes = control_call(s.control_socket("border-router"), "thread_prefixes", 10)
    omr = ipaddress.IPv6Network(prefixes["omr"]["local"])
    # the app, on the LAN host, reaches the cloud through the gateway's IPv4 address
    s.login("alice")
    rc, ev = s.app("alice", "claim", st["claim_code"], timeout=120)
    assert rc == 0, ev
    wait_until(lambda: s.go()["paired"], 60, "the gateway to learn its owner", step=0.2)
    dev = s.enrol_device("thing0")
    port = s.app_port(0)
    s.app_bg("alice", "app", "bootstrap", "--listen", f"[{lan_addr}]:{port}", "--qr", dev.qr,
             "--window", "240", "--timeout", "420")  # fmt: skip
    sid = bytes.fromhex(_event(s, "app", lambda e: e.get("event") == "session", 120,
                               "the app's session")["sid"])  # fmt: skip
    _event(s, "app", lambda e: e.get("event") == "window_open", 120, "the window to open")

    # before the thing reports: reports that are not its own
    app_state = json.loads((s.root / "app-alice" / "app.json").read_text())
    k_appgw = bytes.fromhex(next(iter(app_state["gateways"].values()))["k_appgw"])
    k_rep = notice.report_key(k_appgw, sid)
    claim = {"v": 1, "event": "attached", "dev_id": dev.dev_id, "role": "child",
             "address": str(omr[0x1234])}  # fmt: skip
    other = secrets.token_bytes(16)  # another session
    hostile = [
        (_report(k_rep, sid, {**claim, "id": "lan-replay"}), FORBIDDEN),  # not from the address
        (_post(notice.seal(k_appgw, sid, {**claim, "id": "k-note"})), UNAUTHORIZED),
        (_report(notice.report_key(k_appgw, other), other, {**claim, "id": "other"}), UNAUTHORIZED),
        (_post(secrets.token_bytes(80)), UNAUTHORIZED),
    ]
    out = subprocess.run(
        [*net.exec_prefix(net.lan), sys.executable, "-c", HOSTILE_CLIENT, lan_addr, str(port)],
        input="".join(d.hex() + "\n" for d, _ in hostile), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.stdout.split() == [str(c) for _, c in hostile], out.stdout + out.stderr

    # the thing: bootstraps, attaches, takes an OMR address, reports to the app through wpan0
    s.thing_bg("thing0", dev, 2, s.root / "thing0.json", "--timeout", "240", "--attach",
               "--state", str(s.root / "thing0-thread.json"), "--child-timeout", "30")  # fmt: skip
    reported = _event(s, "thing0", lambda e: e.get("event") == "reported", 360,
                      "the thing's report to the app")  # fmt: skip
    assert reported["result"]["acked"] is True, reported  # the app's ack opened under K_rep
    assert reported["result"]["dst"] == lan_addr and reported["result"]["port"] == port
    thing_omr = reported["addresses"]["omr"]
    assert thing_omr and ipaddress.IPv6Address(thing_omr[0]) in omr, reported

    rc = s.wait_exit("app", 120)
    events = s.events("app")
    assert rc == 0, s.log("app")[-4000:]
    reports = [e for e in events if e.get("event") == "thing_report"]
    assert [(e["dev_id"], e["address"]) for e in reports] == [(dev.dev_id, thing_omr[0])], events
    assert reports[0]["role"] == "child" and reports[0]["step"] == 9
    assert not any(e.get("event") == "report_missing" for e in events)
    refused = [e for e in events if e.get("event") == "refused"]
    assert len(refused) == 1 and refused[0]["reports"] == len(hostile), refused
    done = [e for e in events if e.get("event") == "done"]
    assert done and done[0]["bound"] == [dev.dev_id], events
