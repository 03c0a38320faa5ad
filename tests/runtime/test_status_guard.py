"""``gwctl status`` shows what the border router held back from remote peers (issue 16). Fails
on the code before the fix: there was no ``guard`` section (text or JSON)."""

from __future__ import annotations

from pathlib import Path

from gateway.admin.services import Answer
from gateway.admin.status_cmd import build_status
from gateway.runtime.paths import Paths


def test_guard_counters_in_status_json(tmp_path: Path) -> None:
    br = {
        "phase": "ready",
        "commissioning": {
            "border_agent": {"counters": {"pskc_wrong": 5, "handshakes_evicted": 3}},
            "native_commissioner": {"counters": {"wrong_pskd": 2, "rate_limited": 1}},
            "counters": {"discovery_throttled": 7},
            "warnings_suppressed": {"border agent: failed": 9995},
        },
    }
    paths = Paths(config=tmp_path / "c.toml", state_dir=tmp_path, runtime_dir=tmp_path)
    doc = build_status(paths, {"border-router": Answer("border-router", br)})
    g = doc["guard"]
    assert g["border_agent"]["pskc_wrong"] == 5 and g["border_agent"]["handshakes_evicted"] == 3
    assert g["wrong_pskd"] == 2 and g["discovery_throttled"] == 7
    assert g["warnings_suppressed"] == {"border agent: failed": 9995}
