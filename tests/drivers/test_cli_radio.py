"""gwctl radio as a technician runs it: JSON shapes and exit codes of DESIGN §8, a sniffer
capture that Wireshark's dissectors decode with a correct FCS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from drivers.pcap import read_pcap

GWCTL = [sys.executable, "-m", "gateway.admin"]


def gwctl(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GWCTL, *args], capture_output=True, text=True, timeout=timeout, env=env)


def emu(node: int, offset: int, extra: str = "") -> str:
    return f"emulated:?node={node}&port_offset={offset}{extra}"


def test_help_has_no_side_effects():
    for cmd in ([], ["radio"], ["radio", "sniff"]):
        r = gwctl(*cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout


def test_probe_json(port_offset):
    r = gwctl("radio", "probe", "--radio", emu(1, port_offset), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1
    assert doc["radio"]["part"] == "AT86RF233"
    assert doc["radio"]["part_num"] == 11


def test_scan_json_shape(port_offset):
    r = gwctl(
        "radio",
        "scan",
        "--radio",
        emu(1, port_offset, "&interference=18:-66"),
        "--duration",
        "0.01",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1
    assert [c["channel"] for c in doc["channels"]] == list(range(11, 27))
    by = {c["channel"]: c["ed_dbm"] for c in doc["channels"]}
    assert by[18] == -66 and by[11] == -94
    assert "16/16" in r.stderr  # progress goes to stderr


def test_send_not_acknowledged_exits_7(port_offset):
    r = gwctl(
        "radio",
        "send",
        "--radio",
        emu(1, port_offset),
        "--hex",
        "4188013412020001006869",
        "--ack",
        "--json",
    )
    assert r.returncode == 7
    doc = json.loads(r.stdout)
    assert doc["status"] == "no_ack" and doc["error"]["code"] == "RAD007"


def test_send_channel_busy_exits_7(port_offset):
    r = gwctl(
        "radio",
        "send",
        "--radio",
        emu(1, port_offset, "&interference=11:-40"),
        "--hex",
        "41880134120200010068",
    )
    assert r.returncode == 7
    assert "channel busy" in r.stderr


def test_send_broadcast_succeeds(port_offset):
    r = gwctl(
        "radio",
        "send",
        "--radio",
        emu(1, port_offset),
        "--channel",
        "20",
        "--hex",
        "418801341 2ffff01006869".replace(" ", ""),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "success"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("at86rf233:///dev/spidev9.9?gpiochip=/dev/gpiochip9", 3),  # no such device
        ("emulated:?node=1&port_offset={o}&part=3", 5),  # wrong chip (AT86RF231)
        ("emulated:?node=1&port_offset={o}&dead=1", 6),  # not responding
        ("bogus:?", 9),  # bad configuration
    ],
)
def test_exit_codes(url, code, port_offset):
    r = gwctl("radio", "probe", "--radio", url.format(o=port_offset), "--json")
    assert r.returncode == code, r.stderr
    doc = json.loads(r.stdout)  # even errors are one JSON document
    assert doc["ok"] is False and doc["error"]["hint"]


def test_permission_denied_exits_4(tmp_path, monkeypatch):
    """A device node the user may not open (root bypasses file modes, so the kernel's answer is
    simulated at the os.open boundary; everything above it is the real code path)."""
    from click.testing import CliRunner

    from gateway.admin.cli import main

    dev = tmp_path / "spidev0.0"
    dev.touch(mode=0o000)
    real_open = os.open

    def deny(path, flags, *a, **kw):
        if str(path) == str(dev):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", deny)
    r = CliRunner().invoke(main, ["radio", "probe", "--radio", f"at86rf233://{dev}", "--json"])
    assert r.exit_code == 4, r.output
    assert json.loads(r.stdout)["error"]["code"] == "RAD003"


def test_usage_error_exits_2():
    assert gwctl("radio", "scan", "--channels", "9").returncode == 2
    assert gwctl("radio", "nosuch").returncode == 2


def test_sniff_captures_to_pcap_that_tshark_decodes(port_offset, tmp_path):
    pcap = tmp_path / "sniff.pcap"
    sniffer = subprocess.Popen(
        [*GWCTL, "radio", "sniff", "--radio", emu(3, port_offset), "--channel", "15", "--pcap", str(pcap), "--duration", "20", "--count", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        assert sniffer.stderr is not None
        line = sniffer.stderr.readline()
        assert "capturing on channel 15" in line
        assert time.monotonic() - t0 < 5  # starts quickly (the promise is within a second on a Pi)
        frames = [
            "41d8013412ffff112233445566778801aabbcc",
            "4188023412ffff010002ddee",
            "618803341202000100030405",
        ]
        for hexf in frames:
            r = gwctl(
                "radio", "send", "--radio", emu(1, port_offset), "--channel", "15", "--hex", hexf
            )
            assert r.returncode in (0, 7), (
                r.stderr
            )  # the unicast one is not acknowledged by a sniffer
        out, err = sniffer.communicate(timeout=30)
    finally:
        sniffer.kill()
    assert sniffer.returncode == 0, err
    assert "captured" in err
    got = [psdu for _t, psdu in read_pcap(pcap)]
    # the unicast frame with AR set is retransmitted (nobody ACKs a sniffer): count distinct ones
    assert {g[:-2].hex() for g in got} >= {frames[0], frames[1]}
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    t = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-e", "wpan.fcs_ok", "-e", "wpan.seq_no", "-e", "_ws.expert.message"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rows = [line.split("\t") for line in t.stdout.strip().splitlines()]
    assert rows and all(r[0] == "1" for r in rows), t.stdout  # FCS correct on every frame
    assert {r[1] for r in rows} >= {"1", "2", "3"}
    assert not any("Malformed" in r[2] for r in rows if len(r) > 2)
