"""gwctl with no service running: status, the radio fallback, logs, config, backup/restore,
factory reset and doctor; their JSON shapes and exit codes (DESIGN §8), and hostile backups."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.admin.cli import main
from gateway.runtime.network import load_or_create_network
from gateway.runtime.paths import Paths
from gateway.runtime.settings import load_settings
from gateway.runtime.state import FrameCounterStore, JsonState
from tests.runtime.test_gwctl_helpers import gateway_env, gwctl

PASSPHRASE = "correct horse battery staple"


class Box:
    """A gateway's directories in tmp_path, no service running."""

    def __init__(self, root: Path, offset: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.env_offset = offset
        self.env = gateway_env(root, offset)
        self.state = root / "state"
        self.config = root / "gateway.toml"
        self.runtime = root / "run"
        passfile = root / "backup-passphrase"
        passfile.write_text(f"{PASSPHRASE}\n")
        self.pw = ("--passphrase-file", str(passfile))

    def invoke(self, *args: str, input: str | None = None,
               env: dict[str, str] | None = None) -> Result:  # fmt: skip
        return CliRunner().invoke(main, list(args), env={**self.env, **(env or {})}, input=input)

    def json(self, *args: str, code: int = 0, input: str | None = None,
             env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        r = self.invoke(*args, "--json", input=input, env=env)
        assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr, r.exception)
        doc: dict[str, Any] = json.loads(r.stdout)  # exactly one document on stdout
        assert doc["schema_version"] == 1
        return doc

    def create_state(self, used: int = 5) -> tuple[str, int]:
        """A Thread network and some frame counters used, as the services would leave them."""
        settings = load_settings(Paths(self.config, self.state, self.runtime))
        ds = load_or_create_network(settings, channel=20)
        store = FrameCounterStore(self.state / "radio-frame-counters.json", reserve=1000)
        for _ in range(used):
            store.next("thread-mac")
        assert ds.network_name is not None
        return ds.network_name, store.peek("thread-mac")


@pytest.fixture
def box(tmp_path: Path, port_offset: int) -> Box:
    return Box(tmp_path, port_offset)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


# ----------------------------------------------------------------------------- status


def test_status_without_services_lists_none_and_exits_8(box: Box) -> None:
    doc = box.json("status", code=8)
    assert doc["ok"] is False and doc["services"] == {}
    assert set(doc["not_running"]) == {"radio", "border-router", "group-owner"}
    assert all(e["code"] == "GW002" for e in doc["not_running"].values())
    assert doc["radio"] is None and doc["thread"] is None


def test_status_reads_the_thread_network_from_state_when_stopped(box: Box) -> None:
    name, _ = box.create_state()
    # a stale socket (a crashed service) counts as not running
    (box.runtime / "radio").mkdir(parents=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(box.runtime / "radio" / "control.sock"))
    s.close()
    r = box.invoke("status")
    assert r.exit_code == 8
    assert "not running" in r.stdout and name in r.stdout and "from the state file" in r.stdout
    doc = box.json("status", code=8)
    assert doc["thread"]["source"] == "state" and doc["thread"]["network_name"] == name
    assert doc["thread"]["channel"] == 20


def test_status_through_the_console_script(box: Box) -> None:
    r = gwctl(box.env, "status", "--json")
    assert r.returncode == 8
    assert json.loads(r.stdout)["services"] == {}
    assert "no gateway service is running" in r.stderr


# ----------------------------------------------------------------------------- radio fallback


def test_radio_falls_back_to_the_configured_url_with_a_stale_socket(box: Box) -> None:
    (box.runtime / "radio").mkdir(parents=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(box.runtime / "radio" / "radio.sock"))
    s.close()
    doc = box.json("radio", "probe")
    assert doc["via"] == "direct" and doc["radio"]["url"] == box.env["GATEWAY_RADIO_URL"]


def test_radio_uses_the_config_file_without_the_environment(box: Box, port_offset: int) -> None:
    url = f"emulated:?node=2&port_offset={port_offset}"
    box.config.write_text(f'[radio]\nurl = "{url}"\n')
    r = CliRunner().invoke(main, ["radio", "probe", "--json"],
                           env={**box.env, "GATEWAY_RADIO_URL": None})  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["radio"]["url"] == url


def test_radio_with_a_bad_config_exits_9(box: Box) -> None:
    box.config.write_text("[radio]\nurl = 5\n")
    r = CliRunner().invoke(main, ["radio", "probe", "--json"],
                           env={**box.env, "GATEWAY_RADIO_URL": None})  # fmt: skip
    assert r.exit_code == 9
    assert json.loads(r.stdout)["error"]["code"] == "GW003"


def test_sniff_without_service_needs_a_channel(box: Box) -> None:
    doc = box.json("radio", "sniff", "--duration", "0.1", code=2)
    assert "--channel" in doc["error"]["message"]


# ----------------------------------------------------------------------------- logs


def _fake_journalctl(bin_dir: Path, script: str) -> dict[str, str]:
    """A fake ``journalctl`` in ``bin_dir``; returns the environment that puts it first on PATH
    for the command under test (without it the real journalctl, where there is one, answers)."""
    bin_dir.mkdir()
    p = bin_dir / "journalctl"
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_logs_without_journalctl_exits_1_with_hint(box: Box) -> None:
    empty = box.root / "bin"
    empty.mkdir()
    r = box.invoke("logs", env={"PATH": str(empty)})
    assert r.exit_code == 1
    assert "journalctl is not installed" in r.stderr and "hint:" in r.stderr


def test_logs_without_a_journal_exits_1(box: Box) -> None:
    # what journalctl 252 prints where journald never ran
    env = _fake_journalctl(
        box.root / "bin", 'echo "No journal files were found." >&2\necho "-- No entries --"\n'
    )
    doc = box.json("logs", code=1, env=env)
    assert doc["error"]["code"] == "ADM004" and "journald" in doc["error"]["message"]
    assert "stderr" in doc["error"]["hint"]


def test_logs_json_parses_journal_export_records(box: Box, tmp_path: Path) -> None:
    """Records as `journalctl -o json` writes them (systemd docs, JOURNAL_EXPORT_FORMATS: every
    field a string, __REALTIME_TIMESTAMP in microseconds, non-UTF-8 data as an array of byte
    values)."""
    args = tmp_path / "args"
    env = _fake_journalctl(
        box.root / "bin",
        f'echo "$@" >> {args}\n'
        'case " $* " in *" -n 0 "*) exit 0;; esac\n'
        "cat <<'EOF'\n"
        '{"__REALTIME_TIMESTAMP":"1700000000123456","PRIORITY":"6","_PID":"42",'
        '"_SYSTEMD_UNIT":"gateway-radio.service","SYSLOG_IDENTIFIER":"gateway-radio",'
        '"MESSAGE":"ready","PHASE":"ready"}\n'
        '{"__REALTIME_TIMESTAMP":"1700000001000000","PRIORITY":"3",'
        '"SYSLOG_IDENTIFIER":"gateway-radio","MESSAGE":[104,105,255]}\n'
        "EOF\n",
    )
    r = box.invoke("logs", "--service", "radio", "-n", "5", "--json", env=env)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["units"] == ["gateway-radio.service"] and doc["count"] == 2
    first, second = doc["entries"]
    assert first["time"] == "2023-11-14T22:13:20.123456Z"  # 1700000000 s is 2023-11-14 22:13:20 UTC
    assert first["unit"] == "gateway-radio.service" and first["pid"] == "42"
    assert first["priority"] == 6 and first["message"] == "ready"
    assert first["fields"] == {"PHASE": "ready"}
    assert second["priority"] == 3 and second["message"] == "hi\ufffd"
    call = args.read_text().splitlines()[-1].split()
    assert call[call.index("-u") + 1] == "gateway-radio.service"
    assert call[call.index("-n") + 1] == "5" and call[call.index("-o") + 1] == "json"
    assert "-f" not in call


# ----------------------------------------------------------------------------- config


def test_config_show_defaults_and_bad_file(box: Box) -> None:
    doc = box.json("config", "show")
    assert doc["config_file_exists"] is False
    assert doc["settings"]["border_router"]["border_agent_port"] == 49191
    assert doc["sources"]["border_router.border_agent_port"] == "default"
    box.config.write_text("[radio\n")
    doc = box.json("config", "show", code=9)
    assert doc["error"]["code"] == "GW003" and "TOML" in doc["error"]["message"]


def test_config_set_validates_and_names_services_to_restart(box: Box) -> None:
    doc = box.json("config", "set", "radio.tx_power_dbm", "-3")
    assert doc["value"] == -3.0 and doc["restart"] == ["radio"] and doc["running"] == []
    doc = box.json("config", "set", "thread.network_name", "1234")  # a string, not a number
    assert doc["value"] == "1234" and doc["restart"] == ["border-router", "group-owner"]
    assert "new Thread network" in doc["note"]
    before = box.config.read_bytes()
    bad = box.json("config", "set", "radio.tx_power_dbm", "30", code=9)
    assert "tx_power_dbm" in bad["error"]["message"]
    typo = box.json("config", "set", "radio.tx_powr", "3", code=9)
    assert "did you mean 'tx_power_dbm'" in typo["error"]["message"]
    assert box.config.read_bytes() == before  # refused changes write nothing
    settings = load_settings(Paths(box.config, box.state, box.runtime))
    assert settings.radio.tx_power_dbm == -3.0 and settings.thread.network_name == "1234"


def test_config_set_radio_url_warns_about_the_environment(box: Box) -> None:
    r = box.invoke("config", "set", "radio.url", "emulated:?node=3", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["overridden_by"] == "env:GATEWAY_RADIO_URL"
    assert "GATEWAY_RADIO_URL" in r.stderr


# ----------------------------------------------------------------------------- backup / restore


def _open_backup(doc: dict[str, Any], passphrase: str) -> dict[str, Any]:
    """Decrypt a version-2 backup as docs/gwctl.md specifies it, independently of the gateway's
    code: scrypt from its parameters, AES-256-GCM with the canonical header as additional data."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    enc = doc["encryption"]
    key = Scrypt(salt=base64.b64decode(enc["salt"]), length=32, n=enc["n"], r=enc["r"],
                 p=enc["p"]).derive(passphrase.encode())  # fmt: skip
    header = {k: v for k, v in doc.items() if k != "ciphertext"}
    aad = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    plain = AESGCM(key).decrypt(base64.b64decode(enc["nonce"]),
                                base64.b64decode(doc["ciphertext"]), aad)  # fmt: skip
    inner: dict[str, Any] = json.loads(plain)
    return inner


def test_backup_format_is_encrypted_and_checksummed(box: Box) -> None:
    name, _ = box.create_state()
    box.config.write_text("[thread]\nchannel = 20\n")
    out = box.root / "backup.json"
    r = box.invoke("backup", str(out), *box.pw, "--json")
    assert r.exit_code == 0, r.stderr
    assert "keep the passphrase apart" in r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    raw = out.read_text()
    doc = json.loads(raw)
    assert doc["format"] == "gateway-backup" and doc["version"] == 2
    assert doc["gateway_version"] and doc["created_at"].endswith("Z")
    assert doc["encryption"]["kdf"] == "scrypt" and doc["encryption"]["aead"] == "AES-256-GCM"
    network = json.loads((box.state / "thread-network.json").read_text())["body"]
    assert network["active_dataset"] not in raw and name not in raw  # nothing in clear
    inner = _open_backup(doc, PASSPHRASE)
    # the checksum as docs/gwctl.md specifies it, recomputed here with the standard library
    canon = json.dumps(inner["contents"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert inner["sha256"] == hashlib.sha256(canon.encode()).hexdigest()
    files = {f["path"]: f for f in inner["contents"]["state_files"]}
    assert set(files) == {"thread-network.json", "radio-frame-counters.json"}
    for f in files.values():  # verbatim copies of the state files
        assert f["text"] == (box.state / f["path"]).read_text()
    assert inner["contents"]["config"]["text"] == box.config.read_text()
    summary = inner["contents"]["summary"]
    assert summary["thread_network"]["network_name"] == name
    assert summary["thread_network"]["active_dataset"] == network["active_dataset"]


def test_restore_with_a_wrong_passphrase_changes_nothing(box: Box, tmp_path: Path) -> None:
    box.create_state()
    backup = tmp_path / "b.json"
    assert box.invoke("backup", str(backup), *box.pw).exit_code == 0
    box.config.write_text("[thread]\nchannel = 25\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("Correct horse battery staple\n")
    altered = json.loads(backup.read_text())
    altered["created_at"] = "2020-01-01T00:00:00Z"
    (tmp_path / "altered.json").write_text(json.dumps(altered))
    before = tree(box.root)
    doc = box.json("restore", str(backup), "--passphrase-file", str(wrong), "--yes", code=9)
    assert doc["error"]["code"] == "ADM007" and "wrong passphrase" in doc["error"]["message"]
    assert tree(box.root) == before
    # a changed header (here: the creation date) fails like a wrong passphrase
    doc = box.json("restore", str(tmp_path / "altered.json"), *box.pw, "--yes", code=9)
    assert doc["error"]["code"] == "ADM007"
    assert tree(box.root) == before
    # the right one, from standard input
    doc = box.json("restore", str(backup), "--passphrase-file", "-", "--yes",
                   input=f"{PASSPHRASE}\n")  # fmt: skip
    assert doc["ok"] is True and doc["config_restored"] is False  # the backup had no config


def test_backup_needs_a_passphrase_of_eight_characters(box: Box) -> None:
    box.create_state()
    short = box.root / "short"
    short.write_text("seven77\n")
    doc = box.json("backup", str(box.root / "b.json"), "--passphrase-file", str(short), code=2)
    assert "at least 8" in doc["error"]["message"]
    doc = box.json("backup", str(box.root / "b.json"), code=2)  # no terminal to prompt on
    assert "--passphrase-file" in doc["error"]["message"]
    assert not (box.root / "b.json").exists()


def test_a_version_1_backup_in_clear_is_still_restored(box: Box, tmp_path: Path) -> None:
    name, _ = box.create_state()
    network = (box.state / "thread-network.json").read_text()
    counters = (box.state / "radio-frame-counters.json").read_text()
    legacy = tmp_path / "v1.json"
    _write_backup(legacy, {"state_files": [
        {"path": "thread-network.json", "format": "gateway-thread-network", "version": 1,
         "text": network},
        {"path": "radio-frame-counters.json", "format": "gateway-frame-counters", "version": 1,
         "text": counters}], "config": None, "summary": {}})  # fmt: skip
    fresh = Box(tmp_path / "other", box.env_offset)
    doc = fresh.json("restore", str(legacy), "--yes")  # no passphrase asked
    assert doc["ok"] and (fresh.state / "thread-network.json").read_text() == network


def test_backup_restore_round_trip_bumps_frame_counters(box: Box, tmp_path: Path) -> None:
    name, used = box.create_state(used=5)
    box.config.write_text("[thread]\nchannel = 20\n")
    backup = tmp_path / "b.json"
    assert box.invoke("backup", str(backup), *box.pw).exit_code == 0
    network = (box.state / "thread-network.json").read_bytes()
    stored = json.loads((box.state / "radio-frame-counters.json").read_text())["body"]["counters"]
    # the box carries on after the backup: more frames, beyond the stored reserve
    store = FrameCounterStore(box.state / "radio-frame-counters.json", reserve=1000)
    for _ in range(1500):
        store.next("thread-mac")
    current = store.peek("thread-mac")
    box.config.write_text("[thread]\nchannel = 25\n")

    doc = box.json("restore", str(backup), *box.pw, "--yes")
    assert doc["ok"] and doc["config_restored"] is True and doc["increment"] == 100_000
    assert set(doc["restored"]) == {"thread-network.json", "radio-frame-counters.json"}
    assert (box.state / "thread-network.json").read_bytes() == network
    assert box.config.read_text() == "[thread]\nchannel = 20\n"
    after = FrameCounterStore(box.state / "radio-frame-counters.json").peek("thread-mac")
    # never lowered: above what was used after the backup, plus the increment
    assert after >= current + 100_000 > stored["thread-mac"] + 100_000 > used
    fc = doc["frame_counters"]["radio-frame-counters.json"]["thread-mac"]
    assert fc["after"] == after and fc["before"] >= current
    aside = Path(doc["moved_aside"])
    assert aside.parent == box.state and (aside / "thread-network.json").exists()
    # the restored state loads as the services load it
    assert (
        load_or_create_network(
            load_settings(Paths(box.config, box.state, box.runtime))
        ).network_name
        == name
    )


def test_restore_on_replacement_hardware_starts_above_the_backup(box: Box, tmp_path: Path) -> None:
    box.create_state(used=5)
    backup = tmp_path / "b.json"
    assert box.invoke("backup", str(backup), *box.pw).exit_code == 0
    stored = FrameCounterStore(box.state / "radio-frame-counters.json").peek("thread-mac")
    fresh = Box(tmp_path / "new", 0)
    doc = fresh.json(
        "restore", str(backup), *fresh.pw, "--yes", "--frame-counter-increment", "5000"
    )
    assert doc["moved_aside"] is None
    after = FrameCounterStore(fresh.state / "radio-frame-counters.json").peek("thread-mac")
    assert after == stored + 5000


def test_restore_of_a_backup_without_counters_still_reserves_the_thread_key(
    box: Box, tmp_path: Path
) -> None:
    settings = load_settings(Paths(box.config, box.state, box.runtime))
    load_or_create_network(settings, channel=20)  # a network, but no frame sent yet
    backup = tmp_path / "b.json"
    assert box.invoke("backup", str(backup), *box.pw).exit_code == 0
    fresh = Box(tmp_path / "new", 0)
    fresh.json("restore", str(backup), *fresh.pw, "--yes")
    assert (
        FrameCounterStore(fresh.state / "radio-frame-counters.json").peek("thread-mac") == 100_000
    )


def _write_backup(path: Path, contents: dict[str, Any], **top: Any) -> None:
    canon = json.dumps(contents, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    doc = {"format": "gateway-backup", "version": 1, "created_at": "2026-01-01T00:00:00Z",
           "gateway_version": "0.1.0", "hostname": "t",
           "sha256": hashlib.sha256(canon.encode()).hexdigest(), "contents": contents, **top}  # fmt: skip
    path.write_text(json.dumps(doc))


def _state_text(fmt: str, body: dict[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return json.dumps({"format": fmt, "version": 1, "body": body,
                       "sha256": hashlib.sha256(canon.encode()).hexdigest()})  # fmt: skip


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_bytes(b"\x00\xffnot json"), "not JSON"),
        (lambda p: p.write_text('{"format": "zigpy-backup", "version": 1}'), "not a gateway backup"),
        (lambda p: _write_backup(p, {"state_files": []}, version=3), "version 3"),
        (lambda p: _write_backup(p, {"state_files": []}, sha256="00" * 32), "checksum"),
        (lambda p: _write_backup(
            p, {"state_files": [{"path": "../escape.json", "text": "{}"}]}), "unsafe"),
        (lambda p: _write_backup(
            p, {"state_files": [{"path": "/etc/escape.json", "text": "{}"}]}), "unsafe"),
        (lambda p: _write_backup(p, {"state_files": [{
            "path": "thread-network.json", "format": "gateway-thread-network", "version": 1,
            "text": _state_text("gateway-thread-network", {"active_dataset": "zz"}).replace(
                '"zz"', '"00"')}]}), "corrupt"),
        (lambda p: _write_backup(p, {"state_files": [{
            "path": "radio-frame-counters.json", "format": "gateway-frame-counters", "version": 1,
            "text": _state_text("gateway-frame-counters", {"counters": {"k": -1}})}]}),
         "malformed"),
        (lambda p: _write_backup(p, {"state_files": [], "config": {"text": "[nope]\n"}}),
         "unknown section"),
    ],
    ids=["not-json", "other-format", "newer", "checksum", "traversal", "absolute",
         "inner-checksum", "bad-counters", "bad-config"],
)  # fmt: skip
def test_restore_refuses_incompatible_files_with_exit_9(box: Box, tmp_path: Path, make: Any,
                                                         needle: str) -> None:  # fmt: skip
    box.create_state()
    box.config.write_text("[thread]\nchannel = 20\n")
    bad = tmp_path / "bad-backup.json"
    make(bad)
    before = tree(box.root)
    doc = box.json("restore", str(bad), *box.pw, "--yes", code=9)
    assert needle in doc["error"]["message"], doc
    assert doc["error"]["hint"]
    assert tree(box.root) == before  # nothing changed, nothing written outside
    assert not (box.root / "escape.json").exists() and not Path("/etc/escape.json").exists()


def test_restore_without_confirmation_refuses(box: Box, tmp_path: Path) -> None:
    box.create_state()
    backup = tmp_path / "b.json"
    assert box.invoke("backup", str(backup), *box.pw).exit_code == 0
    before = tree(box.state)
    for answer in ("", "n\n"):
        doc = box.json("restore", str(backup), *box.pw, code=1, input=answer)
        assert doc["error"]["code"] == "ADM002"
    assert tree(box.state) == before
    assert box.json("restore", str(backup), *box.pw, input="y\n")["ok"] is True


# ----------------------------------------------------------------------------- factory reset


def test_factory_reset_needs_the_word_and_keeps_the_config(box: Box) -> None:
    box.create_state()
    box.config.write_text("[thread]\nchannel = 20\n")
    before = tree(box.state)
    for answer in ("", "yes\n", "RESET\n"):
        r = box.invoke("factory-reset", input=answer)
        assert r.exit_code == 1 and "not confirmed" in r.stderr
    assert tree(box.state) == before
    doc = box.json("factory-reset", input="reset\n")
    assert "thread-network.json" in doc["removed"] and doc["config_removed"] is False
    assert box.state.is_dir() and list(box.state.iterdir()) == []
    assert box.config.exists()


def test_factory_reset_with_config_then_a_new_network(box: Box) -> None:
    name, _ = box.create_state()
    old = json.loads((box.state / "thread-network.json").read_text())["body"]["active_dataset"]
    box.config.write_text("[thread]\nchannel = 20\n")
    doc = box.json("factory-reset", "--yes", "--config")
    assert doc["config_removed"] is True and not box.config.exists()
    # the next start creates a new network with a new key, so counters may restart at 0
    ds = load_or_create_network(load_settings(Paths(box.config, box.state, box.runtime)))
    assert ds.to_hex() != old and ds.network_key is not None
    assert ds.network_key.hex() not in old
    assert not (box.state / "radio-frame-counters.json").exists()


# ----------------------------------------------------------------------------- doctor


def test_doctor_offline_fails_on_services_and_a_closed_cloud_port(box: Box) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the kernel answers "port unreachable"
    box.config.write_text(f'[group_owner]\ncloud_url = "coaps://127.0.0.1:{port}"\n')
    doc = box.json("doctor", code=1)
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["service radio"]["status"] == "fail"
    assert "systemctl start gateway-radio" in checks["service radio"]["hint"]
    assert checks["cloud"]["status"] == "fail" and "unreachable" in checks["cloud"]["detail"]
    assert checks["state"]["status"] == "pass" and "no state yet" in checks["state"]["detail"]
    assert all(c["hint"] for c in doc["checks"] if c["status"] == "fail")


def test_doctor_checks_the_spi_device_of_a_real_radio_url(box: Box) -> None:
    box.config.write_text('[radio]\nurl = "at86rf233:///dev/spidev9.9?gpiochip=/dev/gpiochip9"\n'
                          '[group_owner]\ncloud_url = "coaps+tcp://127.0.0.1:9"\n')  # fmt: skip
    r = CliRunner().invoke(main, ["doctor", "--json"], env={**box.env, "GATEWAY_RADIO_URL": None})
    doc = json.loads(r.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert (
        checks["spi device"]["status"] == "fail"
        and "/dev/spidev9.9" in checks["spi device"]["detail"]
    )
    assert "dtparam=spi=on" in checks["spi device"]["hint"]
    assert checks["gpio chip"]["status"] == "fail"
    assert checks["cloud"]["status"] == "fail" and "TCP" in checks["cloud"]["detail"]
    assert r.exit_code == 1


def test_doctor_tcp_cloud_reachable_and_corrupt_state(box: Box) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        box.config.write_text(
            f'[group_owner]\ncloud_url = "coaps+tcp://localhost:{srv.getsockname()[1]}"\n'
        )
        box.create_state()
        path = box.state / "thread-network.json"
        path.write_text(path.read_text().replace('"active_dataset": "0', '"active_dataset": "1'))
        doc = box.json("doctor", code=1)
    finally:
        srv.close()
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["cloud"]["status"] == "pass"
    assert checks["state"]["status"] == "fail" and "checksum" in checks["state"]["detail"]
    assert "restore" in checks["state"]["hint"]


def test_doctor_with_a_bad_config_exits_9(box: Box) -> None:
    box.config.write_text("[radio]\ntx_power_dbm = 99\n")
    doc = box.json("doctor", code=9)
    assert doc["checks"][0]["name"] == "config" and doc["checks"][0]["status"] == "fail"
    assert "config" in doc["failed"]


def test_every_command_has_help_without_side_effects(box: Box) -> None:
    for cmd in (["status"], ["logs"], ["config", "show"], ["config", "set"], ["backup"],
                ["restore"], ["factory-reset"], ["doctor"], ["radio", "send"]):  # fmt: skip
        r = box.invoke(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.stdout and "Exit codes" in r.stdout
    assert not box.state.exists() and not box.config.exists()


def test_state_json_helper_matches_jsonstate(tmp_path: Path) -> None:
    """The hand-made state documents of the hostile-backup cases are real JsonState files."""
    p = tmp_path / "x.json"
    p.write_text(_state_text("gateway-frame-counters", {"counters": {"k": 1}}))
    assert JsonState(p, "gateway-frame-counters", 1).load() == {"counters": {"k": 1}}


# ----------------------------------------------------------------------------- radio service alone


def test_a_radio_service_without_clients_lends_its_channel(box: Box, port_offset: int) -> None:
    """With no other client, `--channel` moves the service's radio for the command and puts it
    back afterwards."""
    from drivers.emulator.tap import AirTap
    from drivers.fcs import append_fcs
    from tests.runtime.test_gwctl_helpers import Services, control_status

    services = Services(box.root, box.env)
    tap = AirTap(port_offset, channel=20)
    try:
        services.start(("radio",))
        home = control_status(box.runtime, "radio")["radio"]["channel"]  # type: ignore[index]
        assert home != 20
        r = gwctl(
            box.env, "radio", "send", "--channel", "20", "--hex", "4188073412ffff0100", "--json"
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["via"] == "radio-service" and doc["channel"] == 20 and doc["status"] == "success"
        seen = [p for _n, _c, p in tap.poll(2.0)]
        assert append_fcs(bytes.fromhex("4188073412ffff0100")) in seen
        assert control_status(box.runtime, "radio")["radio"]["channel"] == home  # type: ignore[index]
    finally:
        tap.close()
        services.stop()


def test_hostile_encryption_parameters_are_refused_at_once(box: Box, tmp_path: Path) -> None:
    """A backup asking scrypt for 2^30 iterations (or gigabytes) is refused before any work."""
    box.create_state()
    backup = tmp_path / "b.json"
    assert box.invoke("backup", str(backup), *box.pw).exit_code == 0
    good = json.loads(backup.read_text())
    for field, value in (("n", 2**30), ("n", 3000), ("r", 64), ("p", 100), ("kdf", "pbkdf2")):
        doc = json.loads(json.dumps(good))
        doc["encryption"][field] = value
        bad = tmp_path / f"bad-{field}-{value}.json"
        bad.write_text(json.dumps(doc))
        err = box.json("restore", str(bad), *box.pw, "--yes", code=9)["error"]
        assert err["code"] == "ADM003", err
