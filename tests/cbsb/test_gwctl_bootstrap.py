"""`gwctl bootstrap ...` (gateway.group_owner.cli) through click's CliRunner, against a control
socket served by the runtime's own JSON-lines server with the group owner's status shapes."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.group_owner.cli import bootstrap
from gateway.runtime.jsonline import Connection, JsonLineServer

SESSION = {
    "sid": "9bdd557b9353626bbd7eba1565b9c3e6", "state": "open", "mode": ["TARGETED", "PFS_REQUIRED"],
    "epoch": 1, "window_left_s": 41.5, "allowed": ["0ab383d4da774963", "d298c6cd5db72cf2"],
    "joins": [{"dev_id": "0ab383d4da774963", "state": "delivering", "epoch": 1, "chunks": 2,
               "retransmissions": 1}],
    "pending": ["1122334455667788"], "bad_proofs": {"d298c6cd5db72cf2": 3}, "denied": [],
    "failed_proofs": 3, "counters": {"beacons_sent": 9},
}  # fmt: skip
ERROR = {"time": 1_700_000_000.0, "sid": SESSION["sid"], "dev_id": "d298c6cd5db72cf2",
         "status": "AUTH_FAILED", "step": 7, "step_name": "the thing proves Func(PSK, RandomKey)",
         "epoch": 1, "hint": "The thing's proof was wrong.", "rssi": -60, "lqi": 200}  # fmt: skip
STATUS = {
    "gw_id": "7646abadd3567f01", "channel": 22, "serial": "GW-6E6BE093",
    "claim_code": "VEYP1-NXRT9", "paired": False, "owner": None,
    "cloud": {"state": "unreachable", "url": "coaps+tcp://127.0.0.1:30250", "last_error": "refused",
              "connected_since": None},
    "errors": [ERROR], "results": [], "session": SESSION, "last_session": None, "counters": {},
}  # fmt: skip


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A group-owner control socket in a thread; yields the list of methods called."""
    calls: list[str] = []
    sock = tmp_path / "run" / "group-owner" / "control.sock"
    monkeypatch.setenv("GATEWAY_RUNTIME_DIR", str(tmp_path / "run"))
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def handler(name: str, result: dict[str, Any]) -> Any:
        async def h(_c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
            calls.append(name)
            return result

        return h

    server = JsonLineServer(sock, {
        "bootstrap": handler("bootstrap", STATUS),
        "bootstrap_errors": handler("bootstrap_errors", {"errors": [ERROR]}),
        "bootstrap_close": handler("bootstrap_close", {"closed": SESSION["sid"]}),
    })  # fmt: skip

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.close())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(5)
    try:
        yield calls
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


def test_status_human_and_json(control: list[str]) -> None:
    r = CliRunner().invoke(bootstrap, ["status"])
    assert r.exit_code == 0, r.output
    assert "not claimed yet: claim code on the box VEYP1-NXRT9" in r.output
    assert "cloud: unreachable" in r.output and "last error: refused" in r.output
    assert "thing 1122334455667788: found, waiting for the user's confirmation" in r.output
    assert "thing d298c6cd5db72cf2: 3 wrong proofs" in r.output
    assert "AUTH_FAILED at step 7" in r.output
    r = CliRunner().invoke(bootstrap, ["status", "--json"])
    doc = json.loads(r.output)
    assert doc["schema_version"] == 1 and doc["session"]["sid"] == SESSION["sid"]


def test_pending_errors_sessions_close(control: list[str]) -> None:
    r = CliRunner().invoke(bootstrap, ["pending", "--json"])
    doc = json.loads(r.output)
    assert doc["pending"] == ["1122334455667788"] and doc["bad_proofs"] == {"d298c6cd5db72cf2": 3}
    assert [j["dev_id"] for j in doc["joins"]] == ["0ab383d4da774963"]
    r = CliRunner().invoke(bootstrap, ["errors"])
    assert "thing d298c6cd5db72cf2: AUTH_FAILED at step 7" in r.output
    assert "RSSI -60 dBm, LQI 200" in r.output
    r = CliRunner().invoke(bootstrap, ["sessions", "--json"])
    assert json.loads(r.output)["session"]["state"] == "open"
    r = CliRunner().invoke(bootstrap, ["close"])
    assert r.exit_code == 0 and "closed session 9bdd557b" in r.output
    assert control == ["bootstrap", "bootstrap_errors", "bootstrap", "bootstrap_close"]


def test_not_running_exits_8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_RUNTIME_DIR", str(tmp_path))
    r = CliRunner().invoke(bootstrap, ["status"])
    assert r.exit_code == 8
    assert "group-owner service is not running" in r.output
    r = CliRunner().invoke(bootstrap, ["errors", "--json"])
    assert r.exit_code == 8
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["error"]["code"] == "GW002"  # ServiceUnavailable
