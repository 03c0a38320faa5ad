"""The air tap's command line: a capture into a pcap, and clean errors for bad arguments."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from drivers.emulator.tap import main

# A port group of its own: the tap only listens, but it would count other tests' frames.
PORT_OFFSET = 1656


def test_capture_writes_a_pcap_header_and_stops_after_duration(tmp_path: Path) -> None:
    pcap = tmp_path / "air.pcap"
    assert main(["--port-offset", str(PORT_OFFSET), "--duration", "0.2", "--pcap", str(pcap)]) == 0
    head = pcap.read_bytes()[:24]
    magic, _major, _minor, _tz, _sig, _snap, linktype = struct.unpack("<IHHiIII", head)
    assert magic == 0xA1B2C3D4 and linktype == 195


@pytest.mark.parametrize(
    "argv",
    [["--channel", "5"], ["--port-offset", "99999"], ["--duration", "-1"], ["--bogus"]],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "Error" in capsys.readouterr().err


def test_unwritable_capture_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "air.pcap"
    assert main(["--port-offset", str(PORT_OFFSET), "--pcap", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "cannot open the air or the capture file" in err and "Traceback" not in err
