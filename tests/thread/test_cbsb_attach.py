"""A CBSB thing goes from bootstrapping to attached: the whole CBSB system as processes (cloud,
the three services, the user's app), the reference thing bootstraps through the group owner
(``python -m gateway.peers.thing cbsb --attach``), attaches to the gateway's Thread network
with the credentials it received, and the border router lists it as a child.

Port offset 1650 belongs to this module."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cbsb.stack import Stack, control_call, running_stack, wait_until

pytestmark = pytest.mark.timeout(240)
OFFSET = 1650


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("cbsb-attach"), OFFSET) as s:
        # a border agent port of its own: other system tests may hold the default 49191
        (s.root / "gw").mkdir(parents=True, exist_ok=True)
        (s.root / "gw" / "gateway.toml").write_text(
            f"[border_router]\nborder_agent_port = {20000 + OFFSET * 7 % 20000}\n"
            "advertise_mdns = false\n"
        )
        s.start_cloud()
        s.enrol_gateway()
        s.add_user("alice")
        s.start_services()
        st = s.wait_cloud_link(60)
        s.login("alice")
        rc, ev = s.app("alice", "claim", st["claim_code"])
        assert rc == 0, ev
        wait_until(lambda: s.go()["paired"], 20, "the gateway to learn its owner")
        yield s


def _role(s: Stack, name: str, role: str) -> dict[str, Any] | None:
    for e in s.events(name):
        if e.get("event") == "role" and e.get("role") == role:
            return e
    return None


def _br(s: Stack, method: str) -> Any:
    return control_call(s.control_socket("border-router"), method, 5.0)


def test_cbsb_thing_bootstraps_then_attaches_as_a_child(system: Stack) -> None:
    s = system
    dev = s.enrol_device("attach0")
    s.app_bg("alice", "app-attach", "bootstrap", "--listen", f"127.0.0.1:{s.app_port(1)}",
             "--qr", dev.qr, "--window", "60", "--timeout", "60")  # fmt: skip
    wait_until(lambda: any(e.get("event") == "window_open" for e in s.events("app-attach"))
               or s.procs["app-attach"].poll() is not None, 40, "the window to open")  # fmt: skip
    state = s.root / "attach0-thread.json"
    s.thing_bg("attach0", dev, 2, s.root / "attach0.json", "--timeout", "40", "--attach",
               "--state", str(state), "--child-timeout", "30")  # fmt: skip
    wait_until(lambda: _role(s, "attach0", "child") or s.procs["attach0"].poll() is not None,
               90, "the thing to attach")  # fmt: skip
    child = _role(s, "attach0", "child")
    assert child is not None, s.log("attach0")
    results = [e for e in s.events("attach0") if e.get("event") == "result"]
    assert results and results[0]["ok"] is True  # bootstrapped first, then attached
    net = _br(s, "thread_status")
    assert child["parent"]["ext_addr"] == net["ext_addr"]
    assert child["partition_id"] == net["partition_id"]

    def listed() -> bool:
        kids = _br(s, "thread_children")["children"]
        return any(c["ext_addr"] == child["ext_addr"] and c["state"] == "valid" for c in kids)

    wait_until(listed, 10, "the border router to list the CBSB thing as a child")
    assert s.stop("attach0", signal.SIGTERM, 20) == 0, s.log("attach0")
    assert state.stat().st_mode & 0o777 == 0o600
    s.stop("app-attach", signal.SIGINT, 20)
