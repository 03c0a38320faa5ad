"""A factory reset keeps the maker's provisioning: afterwards the box registers with the cloud
again, as on its first start.

Before, ``gwctl factory-reset`` removed everything in the state directory, the factory file
(serial and factory secret) included, and the group owner could never register again."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cbsb.stack import REPO, Stack, wait_until

pytestmark = pytest.mark.timeout(240)

OFFSET = 263  # this module's air, cloud and app ports (CBSB tests use offsets 200-299)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path / "stack", OFFSET)
    try:
        s.start_cloud()
        s.enrol_gateway()
        s.start_services()
        s.wait_cloud_link(60)
        yield s
    finally:
        s.close()


def _gwctl(s: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.admin", *args], env=s.env(),
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip


def test_factory_reset_then_the_group_owner_registers_again(stack: Stack) -> None:
    s = stack
    factory = s.factory_dir / "cbsb-factory.json"
    provisioning = factory.read_bytes()
    first = s.go()
    serial = first["serial"]
    cert = (s.state_dir / "group-owner-cert.pem").read_bytes()
    for name in ("group-owner", "border-router", "radio"):
        assert s.stop(name) == 0
    r = _gwctl(s, "factory-reset", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "group-owner-identity.json" in doc["removed"]
    assert factory.read_bytes() == provisioning  # the maker's file, untouched
    assert not (s.state_dir / "group-owner-cert.pem").exists()
    s.start_services()
    st = s.wait_cloud_link(60)
    assert st["serial"] == serial and st["claim_code"]  # the box is new again, claimable
    new_cert = (s.state_dir / "group-owner-cert.pem").read_bytes()
    assert new_cert != cert  # registered anew: a new key, certified by the cloud
    wait_until(lambda: s.go()["cloud"]["state"] == "connected", 10, "the link to stay up")
