"""No secret of a full demo run leaks (issue: secrets off the command line and out of logs).

``python -m gateway.demo --keep`` runs with ``tests/system/audit_site`` on PYTHONPATH, so every
Python process it starts (the three services, the cloud, the app, the things, each gwctl call)
records its command line and copies its standard output and error into an audit folder; a thread
of the test also reads ``/proc/*/cmdline`` of every descendant of the demo while it runs (for the
processes that are not Python). After the run the test collects every secret the run created from
the kept state, things and cloud (network key and the MLE/MAC keys derived from it, PSKc, the
joiners' PSKd, CBSB link keys, device keys, app-gateway keys, the factory secret, the app's login
token and password, the private keys and the cloud's master key) and looks for each, in hex
(either case) and base64, in:

- the services' journal (their log files in the run folder) and the demo's own log;
- every process's standard error (error output) and standard output (``--json`` output included;
  the demo asks for none of the intended exports, such as ``gwctl dataset show --secrets``, so
  every output is checked);
- every command line.

Claim codes are not in the list: they are printed on the box and on the thing's QR label for the
user to type or scan, and the demo shows them as such.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.crypto.thread_keys import network_key_derivation
from gateway.wire.dataset import ActiveDataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
AUDIT_SITE = Path(__file__).resolve().parent / "audit_site"
OFFSET = 1614  # the main suite's offsets are 10-1609, the newcomer's demo 1612


@dataclass
class Secret:
    what: str
    value: bytes

    def forms(self) -> Iterator[bytes]:
        """The ways the value could be written out."""
        if len(self.value) >= 16 or not self.value.isascii():
            yield self.value.hex().encode()
            yield self.value.hex().upper().encode()
            yield base64.b64encode(self.value).rstrip(b"=")
            yield base64.urlsafe_b64encode(self.value).rstrip(b"=")
        if self.value.isascii() and self.value.decode().isprintable():
            yield self.value


@dataclass
class Watcher:
    """Reads ``/proc/*/cmdline`` of the demo's descendants until stopped."""

    root: int
    seen: dict[int, bytes] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.01):
            parents: dict[int, int] = {}
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        stat = Path(f"/proc/{entry.name}/stat").read_text()
                    except OSError:
                        continue
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            for pid in parents:
                p, hops = pid, 0
                while p in parents and p != self.root and hops < 64:
                    p, hops = parents[p], hops + 1
                if p == self.root and pid not in self.seen:
                    try:
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if cmd:
                        self.seen[pid] = cmd


def _json(path: Path) -> dict[str, object]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    body = doc.get("body")
    return body if isinstance(body, dict) else doc


def _pem_secret(path: Path, what: str) -> Secret:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Secret(what, key.private_numbers().private_value.to_bytes(32, "big"))


def collect_secrets(tmp: Path) -> list[Secret]:
    """Every secret the run created, read back from what the run kept."""
    from gateway.demo.thread import PSKD_1, PSKD_2

    found: list[Secret] = []
    ds = ActiveDataset.from_hex(str(_json(tmp / "state" / "thread-network.json")["active_dataset"]))
    assert ds.network_key is not None and ds.pskc is not None
    found += [Secret("network key", ds.network_key), Secret("PSKc", ds.pskc)]
    for seq in range(3):
        mle, mac = network_key_derivation(ds.network_key, seq)
        found += [Secret(f"MLE key {seq}", mle), Secret(f"MAC key {seq}", mac)]
    found += [Secret("PSKd 1", PSKD_1.encode()), Secret("PSKd 2", PSKD_2.encode())]
    for creds in sorted(tmp.glob("thing*-credentials.json")):
        doc = _json(creds)
        found.append(Secret(f"{creds.name} k_link", bytes.fromhex(str(doc["k_link"]))))
    for kdev in sorted(tmp.glob("thing*.kdev")):
        found.append(Secret(f"{kdev.name}", bytes.fromhex(kdev.read_text().strip())))
    pairing = _json(tmp / "state" / "group-owner-pairing.json")
    found.append(Secret("k_appgw", bytes.fromhex(str(pairing["k_appgw"]))))
    factory = _json(tmp / "factory" / "cbsb-factory.json")
    found.append(Secret("factory secret", bytes.fromhex(str(factory["factory_secret"]))))
    app = _json(tmp / "app-alice" / "app.json")
    found.append(Secret("app token", str(app["token"]).encode()))
    found.append(Secret("alice's password", (tmp / "alice.password").read_bytes().strip()))
    found.append(Secret("cloud master key", (tmp / "cbsb-cloud" / "master.key").read_bytes()))
    found.append(_pem_secret(tmp / "state" / "group-owner-key.pem", "gateway TLS key"))
    found.append(_pem_secret(tmp / "cbsb-cloud" / "ca.key", "cloud CA key"))
    found.append(_pem_secret(tmp / "cbsb-cloud" / "server.key", "cloud server key"))
    return found


def leaks(secrets: list[Secret], where: str, data: bytes) -> list[str]:
    out = []
    for s in secrets:
        for form in s.forms():
            if form and form in data:
                at = data.index(form)
                before = data[max(0, at - 40) : at].decode(errors="replace")
                out.append(f"{s.what} in {where}: ...{before}<here>")
                break
    return out


def test_no_secret_of_a_demo_run_leaks(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    run_dir = tmp_path / "run"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(AUDIT_SITE), str(REPO), env.get("PYTHONPATH", "")])
    env["GATEWAY_AUDIT_DIR"] = str(audit)
    env["NO_COLOR"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo", "--run-dir", str(run_dir), "--keep",
         "--port-offset", str(OFFSET)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    watcher = Watcher(proc.pid)
    t = threading.Thread(target=watcher.run, daemon=True)
    t.start()
    try:
        out, _ = proc.communicate(timeout=400)
    finally:
        watcher.stop.set()
        t.join(5)
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    kept = re.search(r"state and sockets kept in (\S+)", text)
    tmp = Path(kept.group(1)) if kept else None
    try:
        assert proc.returncode == 0, text[-3000:]
        assert tmp is not None and tmp.is_dir(), text[-3000:]
        secrets = collect_secrets(tmp)
        cmdlines = {int(p.stem): p.read_bytes() for p in audit.glob("*.cmdline")}
        assert len(cmdlines) >= 10, "the audit hook did not load in the demo's processes"
        assert any(b"gateway.border_router" in c for c in cmdlines.values())
        assert any(b"gateway.peers.app" in c for c in watcher.seen.values())
        found: list[str] = []
        for cmd in {**watcher.seen, **cmdlines}.values():
            shown = cmd.replace(b"\0", b" ")[:120]
            found += leaks(secrets, f"the command line of {shown!r}", cmd)
        for path in sorted(audit.glob("*.std*")):
            pid = int(path.stem)
            cmd = cmdlines.get(pid, b"?").replace(b"\0", b" ")
            found += leaks(secrets, f"{path.suffix[1:]} of {cmd[:120]!r}", path.read_bytes())
        for log in sorted((run_dir / "logs").iterdir()):
            found += leaks(secrets, f"the journal {log.name}", log.read_bytes())
        found += leaks(secrets, "the demo's own output", out)
        assert not found, "\n".join(found)
    finally:
        if tmp is not None and tmp.name.startswith("gateway-demo-"):
            shutil.rmtree(tmp, ignore_errors=True)
