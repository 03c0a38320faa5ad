"""The appliance's files cover RCP dongles: udev gives them to the radio service's group only and
links them as /dev/gateway-rcp; the radio unit may open USB serial devices."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_udev_rules_for_rcp_dongles() -> None:
    rules = [
        line
        for line in (REPO / "deploy/udev/60-gateway.rules").read_text().splitlines()
        if line.startswith('SUBSYSTEM=="tty"')
    ]
    ids = {tuple(re.findall(r'ATTRS\{id(?:Vendor|Product)\}=="([0-9a-f]{4})"', r)) for r in rules}
    assert ("1915", "cafe") in ids and ("10c4", "ea60") in ids
    for rule in rules:
        assert 'GROUP="gateway-radio"' in rule and 'MODE="0660"' in rule
        assert 'SYMLINK+="gateway-rcp"' in rule
        if "10c4" in rule:  # a generic USB bridge: only with the dongle's product string
            assert "ATTRS{product}==" in rule


def test_radio_unit_allows_usb_serial() -> None:
    unit = (REPO / "systemd/gateway-radio.service").read_text()
    assert "DeviceAllow=char-ttyACM rw" in unit and "DeviceAllow=char-ttyUSB rw" in unit
    assert "--subsystem-match=tty" in (REPO / "deploy/install.sh").read_text()
