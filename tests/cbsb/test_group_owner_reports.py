"""Every result and error of cloud-bootstrap.md §10.9 leaves the group owner three ways, each with
the step of the draft's Figure 2 where the bootstrap stopped: a sealed LAN notification to the
app, a report queued for the cloud, and a journal entry (plus `gwctl bootstrap errors`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.group_owner.bootstrap import RadioParams
from gateway.group_owner.service import GroupOwnerService
from gateway.runtime.paths import Paths
from gateway.runtime.settings import parse_settings
from gateway.wire import cbsb_notice as notice
from gateway.wire.cbsb import Status
from gateway.wire.cbsb_steps import STATUS_STEP

SID = bytes(range(16))
DEV = bytes.fromhex("0011223344556677")
K_APPGW = bytes(range(32))

# cloud-bootstrap.md §10.9, in its order.
SECTION_10_9 = [
    Status.OK, Status.WINDOW_EXPIRED, Status.NO_JOIN_ATTEMPT, Status.DEVICE_NOT_ALLOWED,
    Status.AUTH_FAILED, Status.PENDING_USER_CONFIRM, Status.CLOUD_UNREACHABLE,
    Status.CLOUD_DENIED, Status.THING_NO_CONFIRM, Status.RADIO_ERROR, Status.RATE_LIMITED,
    Status.BIND_REJECTED,
]  # fmt: skip


class FakeCloud:
    factory = None

    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []

    def status(self) -> dict[str, Any]:
        return {"state": "connected"}

    def post(self, path: str, body: dict[str, Any]) -> None:
        self.posted.append((path, body))


class FakePairing:
    k_appgw = K_APPGW
    owner = "alice"


class FakeBoot:
    params = RadioParams(bytes(8), 15, 0x1234, b"")

    def snapshot(self) -> dict[str, Any]:
        return {"session": None}


async def test_every_status_reaches_app_cloud_journal_and_gwctl_with_its_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = parse_settings("", paths=Paths(tmp_path / "c.toml", tmp_path / "s", tmp_path / "r"))
    svc = GroupOwnerService(settings)
    cloud = FakeCloud()
    sent: list[tuple[str, bytes]] = []

    async def fake_notify(target: str, k: bytes, sid: bytes, body: dict[str, Any]) -> bool:
        sent.append((target, notice.seal(k, sid, body)))
        return True

    svc.cloud = cloud  # type: ignore[assignment]
    svc.pairing = FakePairing()  # type: ignore[assignment]
    svc.boot = FakeBoot()  # type: ignore[assignment]
    svc.lan.notify = fake_notify  # type: ignore[method-assign,assignment]
    svc._notify_targets[SID] = "127.0.0.1:5683"
    caplog.set_level(logging.INFO)
    for status in SECTION_10_9:
        svc.report(SID, status, DEV, 3, {"rssi": -61, "lqi": 190})
    await asyncio.sleep(0)
    await asyncio.gather(*svc._tasks)
    step_of = {st: STATUS_STEP[st] for st in SECTION_10_9}
    # the app: one sealed notification per status, readable only with K_appgw
    bodies = [notice.open_sealed(K_APPGW, SID, raw)[1] for _t, raw in sent]
    assert [(b["status"], b["step"], b["dev_id"]) for b in bodies] == [
        (st.name, step_of[st], DEV.hex()) for st in SECTION_10_9
    ]
    assert all(b["rssi"] == -61 and b["lqi"] == 190 for b in bodies)
    # the cloud
    reports = [b for p, b in cloud.posted if p == "gw/report"]
    assert [(r["status"], r["step"]) for r in reports] == [
        (st.name, step_of[st]) for st in SECTION_10_9
    ]
    # gwctl bootstrap errors and status
    errs = svc.bootstrap_status()["errors"] + []
    doc_errors = list(svc.errors)
    assert [(e["status"], e["step"]) for e in doc_errors] == [
        (st.name, step_of[st]) for st in SECTION_10_9
    ]
    assert all(e["step_name"] and e["hint"] for e in doc_errors)
    assert len(errs) == 10  # status shows the last ten
    # the journal: the status, the step and its words, with structured fields
    for st in SECTION_10_9:
        rec = next(r for r in caplog.records if getattr(r, "CBSB_STATUS", None) == st.name)
        assert getattr(rec, "CBSB_STEP", None) == step_of[st]
        assert f"at step {step_of[st]}" in rec.getMessage()
        assert K_APPGW.hex() not in rec.getMessage()


async def test_cloud_reported_failures_reach_gwctl_and_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = parse_settings("", paths=Paths(tmp_path / "c.toml", tmp_path / "s", tmp_path / "r"))
    svc = GroupOwnerService(settings)
    svc.boot = FakeBoot()  # type: ignore[assignment]
    svc.pairing = FakePairing()  # type: ignore[assignment]
    caplog.set_level(logging.INFO)
    await svc._on_cloud_event({"kind": "report", "sid": SID.hex(), "dev_id": DEV.hex(),
                               "status": "BIND_REJECTED", "step": 10,
                               "detail": "a bind attempt from another account was refused"})  # fmt: skip
    e = svc.errors[-1]
    assert (e["status"], e["step"], e["source"]) == ("BIND_REJECTED", 10, "cloud")
    assert any("BIND_REJECTED" in r.getMessage() and "step 10" in r.getMessage()
               for r in caplog.records)  # fmt: skip
