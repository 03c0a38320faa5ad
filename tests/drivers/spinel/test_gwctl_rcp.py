"""gwctl on an RCP: ``radio probe`` shows the firmware, the versions against the range the
gateway supports, the capabilities and the fault counters; mismatches and missing devices exit
with DESIGN §8's codes; ``doctor`` checks the serial device and reports an RCP that needed
resets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.admin import doctor
from tests.drivers.spinel.test_links import fake_rcp_url


def gwctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_RUNTIME_DIR": str(tmp_path / "run"),
           "GATEWAY_CONFIG": str(tmp_path / "none.toml"), "GATEWAY_STATE_DIR": str(tmp_path)}  # fmt: skip
    env.pop("GATEWAY_RADIO_URL", None)
    return subprocess.run([sys.executable, "-m", "gateway.admin", *args], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip


def test_probe_shows_the_rcp(tmp_path: Path) -> None:
    url = fake_rcp_url("4")
    r = gwctl(tmp_path, "radio", "probe", "--radio", url, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rcp = doc["radio"]["rcp"]
    assert doc["radio"]["eui64"] == "18b4300000000004"
    assert rcp["firmware"].startswith("OPENTHREAD/") and rcp["protocol_version"] == "4.3"
    assert rcp["rcp_api_version"] == 11 and rcp["supported_rcp_api"] == "4..11"
    assert "MAC_RAW" in rcp["caps"] and "energy-scan" in rcp["radio_caps"]
    assert doc["counters"]["recoveries"] == 0
    text = gwctl(tmp_path, "radio", "probe", "--radio", url)
    assert text.returncode == 0, text.stderr
    for words in ("OpenThread RCP (SIMULATION)", "firmware  OPENTHREAD/",
                  "protocol 4.3, RCP API 11", "supports RCP API 4..11", "radiocaps ack-timeout",
                  "faults    none"):  # fmt: skip
        assert words in text.stdout, text.stdout


def test_probe_exit_codes(tmp_path: Path) -> None:
    wrong = gwctl(tmp_path, "radio", "probe", "--radio", fake_rcp_url("1", "--protocol", "4.2"),
                  "--json")  # fmt: skip
    assert wrong.returncode == 5, wrong.stderr
    err = json.loads(wrong.stdout)["error"]
    assert err["code"] == "RAD010" and "4.2" in err["message"] and "4.3" in err["message"]
    assert "Flash" in err["hint"]
    missing = gwctl(tmp_path, "radio", "probe", "--radio", "spinel+hdlc+uart:///dev/no-rcp-here")
    assert missing.returncode == 3
    assert "/dev/no-rcp-here" in missing.stderr
    dead = gwctl(tmp_path, "radio", "probe", "--radio", fake_rcp_url("1", "--exit-now"), "--json")
    assert dead.returncode == 6
    assert json.loads(dead.stdout)["error"]["code"] == "RAD011"


def test_doctor_checks_the_serial_device(tmp_path: Path) -> None:
    check = doctor.check_device(
        "serial", "spinel+hdlc+uart:///dev/no-rcp-here?uart-baudrate=460800"
    )
    assert check.status == doctor.FAIL and "/dev/no-rcp-here" in check.detail
    assert "/dev/serial/by-id" in check.hint
    dev = tmp_path / "ttyACM9"
    dev.write_text("")
    assert doctor.check_device("serial", f"spinel+hdlc+uart://{dev}").status == doctor.PASS
    assert doctor.check_device("spi", f"spinel+hdlc+uart://{dev}").status == doctor.SKIP
    assert doctor.check_device("serial", "emulated:?node=1").status == doctor.SKIP


def test_doctor_reports_rcp_recoveries() -> None:
    assert doctor._rcp_faults({"recoveries": 0}) == ""
    faults = doctor._rcp_faults({"recoveries": 2, "rcp_timeouts": 1, "rcp_unexpected_resets": 1})
    assert "recovered 2 time(s)" in faults and "1 without an answer" in faults
    assert "1 reset by itself" in faults


@pytest.mark.parametrize("scheme", ["spinel+hdlc+forkpty"])
def test_doctor_needs_no_device_for_a_simulated_rcp(scheme: str) -> None:
    check = doctor.check_device("serial", f"{scheme}:///opt/ot-rcp?forkpty-arg=1")
    assert check.status == doctor.SKIP
