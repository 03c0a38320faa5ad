"""The gwctl commands of gateway.border_router.cli (``commissioner`` and ``dataset``) through
click's CliRunner. The dataset commands work on the shared network state alone; the commissioner
commands are exercised against running services in tests/thread/test_fullstack.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.border_router.cli import commissioner, dataset
from gateway.runtime.network import load_network, save_network
from gateway.runtime.settings import load_settings
from gateway.wire.dataset import ActiveDataset, new_active_dataset

# espressif/esp-matter docs "Light + OTBR" README, `dataset active -x` of an OpenThread border
# router (the same vector tests/wire/test_tshark_all_kinds.py uses)
OT_DATASET_HEX = (
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c3901546"
    "0510874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a"
    "0f60ca6dd3af116bdefd2a21270c0402a0f7f8"
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "GATEWAY_CONFIG": str(tmp_path / "gateway.toml"),
        "GATEWAY_STATE_DIR": str(tmp_path / "state"),
        "GATEWAY_RUNTIME_DIR": str(tmp_path / "run"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def test_dataset_set_and_show_round_trip_openthreads_hex(env: dict[str, str]) -> None:
    r = CliRunner().invoke(dataset, ["set", "--file", "-", "--yes"], input=OT_DATASET_HEX + "\n")
    assert r.exit_code == 0, r.output
    assert "network 'OpenThread-8a63' on channel 13" in r.output
    r = CliRunner().invoke(dataset, ["show", "--hex"])
    assert r.exit_code == 0 and r.output.strip() == OT_DATASET_HEX
    r = CliRunner().invoke(dataset, ["show"])
    assert r.exit_code == 0
    assert "Network Name: OpenThread-8a63" in r.output and "PAN ID: 0x8a63" in r.output
    assert "874e399792fcb276c571dee6f71c260a" not in r.output  # the network key stays hidden
    r = CliRunner().invoke(dataset, ["show", "--json", "--secrets"])
    doc = json.loads(r.output)
    assert doc["schema_version"] == 1 and doc["ok"] is True
    assert doc["dataset"]["network_key"] == "874e399792fcb276c571dee6f71c260a"
    assert doc["dataset"]["mesh_local_prefix"] == "fd9a:e261:c390:1546::/64"


def test_dataset_set_takes_the_tlvs_themselves_from_a_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    f = tmp_path / "dataset.tlv"
    f.write_bytes(bytes.fromhex(OT_DATASET_HEX))
    r = CliRunner().invoke(dataset, ["set", "--file", str(f), "--yes"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(dataset, ["show", "--hex"])
    assert r.output.strip() == OT_DATASET_HEX


def test_secrets_as_arguments_are_refused_with_where_they_go_now(env: dict[str, str]) -> None:
    """The old forms put the network key, the passphrase or the PSKd on the command line, where
    every user reads it in /proc/<pid>/cmdline: exit 2, naming the option to use instead, and
    never repeating the secret."""
    for cmd, argv, option in (
        (dataset, ["set", OT_DATASET_HEX], "--file"),
        (dataset, ["passphrase", "12SECRETPASSWORD34"], "--file"),
        (commissioner, ["joiner", "add", "*", "J01NME"], "--pskd-file"),
    ):
        r = CliRunner().invoke(cmd, [*argv, "--json"])
        assert r.exit_code == 2, r.output
        err = json.loads(r.output.splitlines()[0])["error"]
        assert err["code"] == "GW005" and option in err["message"], err
        assert argv[-1] not in r.output
    assert load_network(load_settings()) is None  # nothing was set


def test_dataset_set_refuses_bad_or_incomplete_data(env: dict[str, str]) -> None:
    r = CliRunner().invoke(dataset, ["set", "--file", "-"], input="0e08zz\n")
    assert r.exit_code == 2 and "not a dataset" in r.output
    partial = ActiveDataset(network_name="x", channel=15).to_hex()
    r = CliRunner().invoke(dataset, ["set", "--file", "-", "--json"], input=partial)
    assert r.exit_code == 2
    assert json.loads(r.output.splitlines()[0])["error"]["code"] == "GW001"


def test_dataset_show_without_a_network(env: dict[str, str]) -> None:
    r = CliRunner().invoke(dataset, ["show", "--json"])
    assert r.exit_code == 9
    assert json.loads(r.output.splitlines()[0])["ok"] is False


def test_passphrase_sets_the_pskc_openthread_derives(env: dict[str, str]) -> None:
    # OpenThread tests/unit/test_pskc.cpp (fact sheet §5.1): passphrase 12SECRETPASSWORD34,
    # network name "Test Network", extended PAN ID 0001020304050607 -> PSKc
    # c3f59368445a1b6106be420a706d4cc9
    ds = new_active_dataset(
        random.Random(2), network_name="Test Network", ext_pan_id=bytes.fromhex("0001020304050607")
    )
    save_network(load_settings(), ds)
    r = CliRunner().invoke(dataset, ["passphrase", "--file", "-"], input="12SECRETPASSWORD34\n")
    assert r.exit_code == 0, r.output
    assert "border router: not running" in r.output
    assert "12SECRETPASSWORD34" not in r.output
    after = load_network(load_settings())
    assert after is not None and after.pskc == bytes.fromhex("c3f59368445a1b6106be420a706d4cc9")
    assert after.network_key == ds.network_key  # nothing else changed
    r = CliRunner().invoke(dataset, ["passphrase", "--file", "-"], input="short\n")
    assert r.exit_code == 2


def test_commissioner_commands_need_the_border_router(env: dict[str, str]) -> None:
    r = CliRunner().invoke(commissioner, ["start", "--json"])
    assert r.exit_code == 8
    assert json.loads(r.output.splitlines()[0])["error"]["code"] == "GW002"
    r = CliRunner().invoke(commissioner, ["joiner", "add", "not-hex", "--pskd-file", "-"],
                           input="J01NME\n")  # fmt: skip
    assert r.exit_code == 2 and "not an EUI-64" in r.output


@pytest.mark.parametrize(
    "argv",
    [
        ["gateway.peers.commissioner", "--help"],
        ["gateway.peers.thing", "join", "--help"],
        ["gateway.border_router", "--help"],
    ],
)
def test_help_prints_usage_and_exits_0(argv: list[str], tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, timeout=30, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
             "GATEWAY_STATE_DIR": str(tmp_path / "nothing-here")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lower().startswith("usage:")
    assert not (tmp_path / "nothing-here").exists()  # no side effects
