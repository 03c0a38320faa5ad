"""After `gwctl dataset passphrase`, the next thing bootstrapped receives the new PSKc.
Before, the group owner built the credentials it hands out once, at its start. (A module of its
own: the system module's cloud already counts many sessions against this hour's limit.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cbsb.stack import REPO, Stack, wait_until

pytestmark = pytest.mark.timeout(240)

OFFSET = 264  # this module's air, cloud and app ports (CBSB tests use offsets 200-299)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path / "stack", OFFSET)
    try:
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
    finally:
        s.close()


def test_a_new_passphrase_reaches_the_next_thing(system: Stack) -> None:
    from gateway.crypto.thread_keys import pskc as derive_pskc
    from gateway.wire.dataset import ActiveDataset

    s = system
    passphrase = "a brand new commissioning passphrase"
    r = subprocess.run([sys.executable, "-m", "gateway.admin", "dataset", "passphrase",
                        "--file", "-"], input=passphrase + "\n", env=s.env(), text=True,
                       capture_output=True, timeout=60, cwd=REPO)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    dev = s.enrol_device("newpskc")
    s.app_bg("alice", "app-pskc", "bootstrap", "--listen", f"127.0.0.1:{s.app_port(1)}",
             "--qr", dev.qr, "--window", "60", "--timeout", "60")  # fmt: skip
    s.thing_bg("newpskc", dev, 15, s.root / "newpskc.json", "--timeout", "40")
    assert s.wait_exit("newpskc", 60) == 0, s.log("newpskc")
    cred = json.loads((s.root / "newpskc.json").read_text())
    held = ActiveDataset.from_hex(cred["active_dataset"])
    assert held.network_name is not None and held.ext_pan_id is not None
    assert held.pskc == derive_pskc(passphrase, held.network_name, held.ext_pan_id)
    state = json.loads((s.state_dir / "thread-network.json").read_text())
    assert held.to_hex() == state["body"]["active_dataset"]
