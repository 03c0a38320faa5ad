"""gwctl against the three real services, started once for this module in a temporary directory
on an emulated radio: status, radio commands through the radio service, config, backup, and
the commands that must refuse while services run. Each command runs as the console script does
(a subprocess) and is checked for its JSON shape and exit code (DESIGN §8)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.emulator.tap import AirTap
from drivers.fcs import append_fcs
from drivers.pcap import read_pcap
from gateway.wire.dataset import ActiveDataset
from tests.runtime.test_gwctl_helpers import GWCTL, Services, control_status, gateway_env, gwctl

# This module's own air: offsets 600..898 are the gwctl tests' range (DESIGN §4).
OFFSET = 600 + (os.getpid() % 150) * 2
THREAD_CHANNEL = 15
INTERFERENCE = "&interference=18:-66"  # a Wi-Fi-like carrier on channel 18 (emulator URL param)


class Live:
    def __init__(self, root: Path, env: dict[str, str], cloud_port: int) -> None:
        self.root = root
        self.env = env
        self.cloud_port = cloud_port

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return gwctl(self.env, *args, **kw)

    def json(self, *args: str, code: int = 0) -> dict[str, Any]:
        r = self.run(*args, "--json")
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        doc: dict[str, Any] = json.loads(r.stdout)  # exactly one document
        assert doc["schema_version"] == 1
        return doc


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("gw")
    cloud = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a stand-in cloud endpoint (UDP)
    cloud.bind(("127.0.0.1", 0))
    port = cloud.getsockname()[1]
    (root / "gateway.toml").write_text(
        f'[thread]\nchannel = {THREAD_CHANNEL}\n\n[group_owner]\ncloud_url = "coaps://127.0.0.1:{port}"\n'
    )
    env = gateway_env(root, OFFSET, INTERFERENCE)
    services = Services(root, env)
    try:
        services.start()
        yield Live(root, env, port)
    finally:
        services.stop()
        cloud.close()


def test_status_json_lists_running_services_without_secrets(live: Live) -> None:
    doc = live.json("status")
    assert doc["ok"] is True
    assert set(doc["services"]) == {"radio", "border-router", "group-owner"}
    assert doc["not_running"] == {}
    assert all(s["phase"] == "ready" for s in doc["services"].values())
    assert doc["radio"]["part"] == "AT86RF233" and doc["radio"]["healthy"] is True
    # the Thread summary matches the network file, decoded independently of gwctl
    state = json.loads((live.root / "state" / "thread-network.json").read_text())
    ds = ActiveDataset.from_hex(state["body"]["active_dataset"])
    assert doc["thread"]["source"] == "border-router"
    assert doc["thread"]["network_name"] == ds.network_name
    assert doc["thread"]["channel"] == ds.channel == THREAD_CHANNEL
    assert doc["thread"]["pan_id"] == f"0x{ds.pan_id:04x}"
    assert ds.network_key is not None and ds.pskc is not None
    r = live.run("status", "--json")
    for secret in (ds.network_key, ds.pskc):
        assert secret.hex() not in r.stdout.lower() and secret.hex() not in r.stderr.lower()
    assert doc["sessions"] == {}
    # the border router follows the uplink ("auto": the interface with the default route)
    uplink = doc["network"]["uplink"]
    assert uplink["configured"] == "auto" and "monitor" in uplink


def test_status_human_view_is_plain_when_not_a_terminal(live: Live) -> None:
    r = live.run("status")
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout  # never colour into a pipe (and NO_COLOR is set)
    for name in ("radio", "border-router", "group-owner"):
        assert any(line.split()[:2] == [name, "ready"] for line in r.stdout.splitlines())
    assert f"channel {THREAD_CHANNEL}" in r.stdout


def test_probe_goes_through_the_radio_service(live: Live) -> None:
    doc = live.json("radio", "probe")
    assert doc["via"] == "radio-service"
    assert doc["radio"]["part"] == "AT86RF233" and doc["radio"]["part_num"] == 11
    radio_pid = control_status(live.root / "run", "radio")["pid"]  # type: ignore[index]
    assert doc["service"]["pid"] == radio_pid and doc["service"]["phase"] == "ready"
    assert doc["channel"] == THREAD_CHANNEL


def test_scan_through_the_service_sees_the_interferer(live: Live) -> None:
    r = live.run("radio", "scan", "--duration", "0.01", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["via"] == "radio-service"
    by = {c["channel"]: c["ed_dbm"] for c in doc["channels"]}
    assert sorted(by) == list(range(11, 27))
    assert by[18] == -66 and by[11] == -94  # the carrier set in the service's radio URL
    assert "16/16" in r.stderr  # progress on stderr, one request per channel
    # the service went back to its own channel after the scan
    assert control_status(live.root / "run", "radio")["radio"]["channel"] == THREAD_CHANNEL  # type: ignore[index]


def test_send_through_the_service_reaches_the_air(live: Live) -> None:
    frame = "4188423412ffff01006869"  # data, broadcast, PAN 0x1234, seq 0x42
    tap = AirTap(OFFSET, channel=THREAD_CHANNEL)
    try:
        doc = live.json("radio", "send", "--hex", frame)
        deadline = time.monotonic() + 5
        seen: list[bytes] = []
        while time.monotonic() < deadline and not seen:
            seen = [p for node, _ch, p in tap.poll(0.2) if node == 1]
    finally:
        tap.close()
    assert doc["via"] == "radio-service" and doc["status"] == "success" and doc["ok"] is True
    assert doc["channel"] == THREAD_CHANNEL
    # the frame as given (sequence number kept), with the FCS the radio appended
    assert append_fcs(bytes.fromhex(frame)) in seen


def test_send_not_acknowledged_through_the_service_exits_7(live: Live) -> None:
    doc = live.json("radio", "send", "--hex", "41880134120200010068", "--ack", code=7)
    assert doc["status"] == "no_ack" and doc["error"]["code"] == "RAD007"
    assert doc["via"] == "radio-service"


def test_moving_the_network_channel_is_refused(live: Live) -> None:
    doc = live.json("radio", "send", "--channel", "20", "--hex", "4188013412ffff0100", code=1)
    assert doc["error"]["code"] == "ADM006"
    st = control_status(live.root / "run", "radio")
    assert st is not None and st["radio"]["channel"] == THREAD_CHANNEL


def test_sniff_through_the_service_captures_air_and_own_tx(live: Live, tmp_path: Path) -> None:
    pcap = tmp_path / "svc.pcap"
    sniffer = subprocess.Popen(
        [*GWCTL, "radio", "sniff", "--pcap", str(pcap), "--duration", "30", "--json"],
        env=live.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        assert sniffer.stderr is not None
        line = sniffer.stderr.readline()
        assert f"capturing on channel {THREAD_CHANNEL} through the radio service" in line
        assert time.monotonic() - t0 < 5  # the promise is within a second on a Pi
        # a frame from another node on the air (broadcast PAN: passes the address filter) ...
        other = gwctl(live.env, "radio", "send", "--radio", f"emulated:?node=5&port_offset={OFFSET}",
                      "--channel", str(THREAD_CHANNEL), "--hex", "418809ffffffff0500ccdd")  # fmt: skip
        assert other.returncode == 0, other.stderr
        # ... and one the radio service transmits
        own = gwctl(live.env, "radio", "send", "--hex", "41880a3412ffff0100aabb")
        assert own.returncode == 0, own.stderr
        time.sleep(0.3)
        sniffer.send_signal(signal.SIGINT)  # Ctrl-C ends the capture cleanly
        out, err = sniffer.communicate(timeout=20)
    finally:
        sniffer.kill()
    assert sniffer.returncode == 0, err
    doc = json.loads(out)
    assert doc["via"] == "radio-service" and doc["count"] == len(doc["frames"]) >= 2
    rows = {f["psdu"][:-4]: f for f in doc["frames"]}
    assert rows["418809ffffffff0500ccdd"]["tx"] is False
    assert rows["418809ffffffff0500ccdd"]["rssi_dbm"] is not None
    assert rows["41880a3412ffff0100aabb"]["tx"] is True
    got = [psdu for _t, psdu in read_pcap(pcap)]
    assert [g.hex() for g in got] == [f["psdu"] for f in doc["frames"]]
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    t = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "wpan.fcs_ok",
                        "-e", "wpan.seq_no"], capture_output=True, text=True, timeout=60)  # fmt: skip
    fields = [ln.split("\t") for ln in t.stdout.strip().splitlines()]
    assert all(f[0] == "1" for f in fields), t.stdout  # Wireshark finds every FCS correct
    assert {f[1] for f in fields} >= {"9", "10"}  # sequence numbers as given


def test_config_show_reports_sources(live: Live) -> None:
    doc = live.json("config", "show")
    assert doc["settings"]["thread"]["channel"] == THREAD_CHANNEL
    assert doc["sources"]["thread.channel"] == "file"
    assert doc["sources"]["radio.url"] == "env:GATEWAY_RADIO_URL"
    assert doc["sources"]["radio.tx_power_dbm"] == "default"
    assert doc["settings"]["radio"]["url"] == live.env["GATEWAY_RADIO_URL"]


def test_backup_while_running(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "live-backup.json"
    pw = tmp_path / "passphrase"
    pw.write_text("a long enough passphrase\n")
    doc = live.json("backup", str(out), "--passphrase-file", str(pw))
    assert doc["ok"] and "thread-network.json" in doc["state_files"] and doc["config"] is True
    assert out.stat().st_mode & 0o777 == 0o600
    r = live.run("backup", str(out))
    assert r.returncode == 2 and "--force" in r.stderr  # never overwrite silently


def test_restore_and_factory_reset_refuse_while_services_run(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    pw = tmp_path / "passphrase"
    pw.write_text("a long enough passphrase\n")
    live.json("backup", str(out), "--passphrase-file", str(pw))
    before = sorted(p.name for p in (live.root / "state").iterdir())
    doc = live.json("restore", str(out), "--yes", "--passphrase-file", str(pw), code=1)
    assert doc["error"]["code"] == "ADM001" and "systemctl stop" in doc["error"]["hint"]
    doc = live.json("factory-reset", "--yes", code=1)
    assert doc["error"]["code"] == "ADM001"
    assert sorted(p.name for p in (live.root / "state").iterdir()) == before


def test_doctor_with_services_running(live: Live) -> None:
    r = live.run("doctor", "--json")
    doc = json.loads(r.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    for name in ("service radio", "service border-router", "service group-owner", "config",
                 "state", "disk"):  # fmt: skip
        assert checks[name]["status"] == "pass", checks[name]
    assert checks["spi device"]["status"] == "skip" and "emulated" in checks["spi device"]["detail"]
    assert checks["cloud"]["status"] == "pass", checks["cloud"]  # the UDP stand-in listens
    assert str(live.cloud_port) in checks["cloud"]["detail"]
    assert doc["failed"] == [c["name"] for c in doc["checks"] if c["status"] == "fail"]
    assert r.returncode == (0 if not doc["failed"] else 1)
