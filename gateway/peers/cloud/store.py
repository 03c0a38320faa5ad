"""The reference cloud's embedded store: one SQLite file in WAL mode with full sync, plus the files
of its PKI and its master key in the same state directory.

Secrets at rest (device keys ``K_dev``, gateway factory secrets, app-gateway keys) are sealed with
AES-256-GCM under ``master.key`` (AAD = table and row id), standing in for the HSM/KMS a production
cloud would use; claim codes, passwords, login and bind tokens are stored only as digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.peers.cloud import pki
from gateway.runtime.state import atomic_write

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, salt BLOB NOT NULL, pw_hash BLOB NOT NULL, created_at REAL NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    dev_id TEXT PRIMARY KEY, k_dev BLOB NOT NULL, claim_digest TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '', enrolled_at REAL NOT NULL,
    owner TEXT REFERENCES users(name), gateway TEXT, bound_sid TEXT, bound_at REAL);
CREATE TABLE IF NOT EXISTS gateways (
    serial TEXT PRIMARY KEY, factory_secret BLOB NOT NULL, claim_digest TEXT NOT NULL,
    eui64 TEXT UNIQUE, cert_fpr TEXT, owner TEXT REFERENCES users(name), k_appgw BLOB,
    enrolled_at REAL NOT NULL, registered_at REAL, claimed_at REAL, last_seen REAL, boot_id TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY, gateway TEXT NOT NULL REFERENCES gateways(serial),
    owner TEXT NOT NULL REFERENCES users(name), mode INTEGER NOT NULL, exp INTEGER NOT NULL,
    window_s INTEGER NOT NULL, state TEXT NOT NULL, notify TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, closed_at REAL, result TEXT);
CREATE TABLE IF NOT EXISTS session_devices (
    sid TEXT NOT NULL REFERENCES sessions(sid), dev_id TEXT NOT NULL, state TEXT NOT NULL,
    token_digest TEXT, token_used INTEGER NOT NULL DEFAULT 0, epoch INTEGER, n_t TEXT, bp TEXT,
    joined_at REAL, bound_at REAL, bind_attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, dev_id));
CREATE TABLE IF NOT EXISTS gw_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, gateway TEXT NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS session_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT, gateway TEXT NOT NULL, dev_id TEXT,
    status TEXT NOT NULL, step INTEGER, detail TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS gw_events_by_gateway ON gw_events(gateway, seq);
CREATE INDEX IF NOT EXISTS session_events_by_sid ON session_events(sid, seq);
"""


def token_digest(token: str) -> str:
    return hashlib.sha256(b"cbsb token " + token.encode()).hexdigest()


def password_hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)


def verify_password(password: str, record: tuple[bytes, bytes] | None) -> bool:
    if record is None:
        password_hash(password, b"0" * 16)  # same cost either way
        return False
    salt, expected = record
    return hmac.compare_digest(password_hash(password, salt), expected)


@dataclass(frozen=True)
class CloudFiles:
    state_dir: Path

    @property
    def db(self) -> Path:
        return self.state_dir / "cloud.db"

    @property
    def master_key(self) -> Path:
        return self.state_dir / "master.key"

    @property
    def ca_cert(self) -> Path:
        return self.state_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.state_dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.state_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.state_dir / "server.key"


class CloudStore:
    """The cloud's persistent state. Every method is one transaction."""

    def __init__(self, state_dir: Path, hostnames: list[str] | None = None) -> None:
        self.files = CloudFiles(Path(state_dir))
        self.files.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._init_keys(hostnames or ["localhost", "127.0.0.1", "::1"])
        self.db = sqlite3.connect(self.files.db, isolation_level=None, timeout=10.0)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(SCHEMA)  # idempotent (IF NOT EXISTS)

    # --- files -------------------------------------------------------------------------------

    def _init_keys(self, hostnames: list[str]) -> None:
        f = self.files
        if not f.master_key.exists():
            atomic_write(f.master_key, secrets.token_bytes(32), mode=0o600)
        self._aead = AESGCM(f.master_key.read_bytes())
        if not f.ca_cert.exists():
            ca_key, ca = pki.new_ca("CBSB reference cloud CA")
            atomic_write(f.ca_key, pki.key_pem(ca_key), mode=0o600)
            atomic_write(f.ca_cert, pki.cert_pem(ca), mode=0o644)
        if not f.server_cert.exists():
            self.reissue_server_cert(hostnames)

    def reissue_server_cert(self, hostnames: list[str]) -> None:
        from cryptography import x509

        f = self.files
        ca_key = pki.load_key(f.ca_key.read_bytes())
        ca = x509.load_pem_x509_certificate(f.ca_cert.read_bytes())
        key, cert = pki.server_cert(ca_key, ca, hostnames)
        atomic_write(f.server_key, pki.key_pem(key), mode=0o600)
        atomic_write(f.server_cert, pki.cert_pem(cert), mode=0o644)

    def ca_pem(self) -> str:
        return self.files.ca_cert.read_text()

    def seal(self, table: str, row: str, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret, f"{table}/{row}".encode())

    def unseal(self, table: str, row: str, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], f"{table}/{row}".encode())

    # --- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: other processes (the enrol commands) wait, never interleave."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, args).fetchone()
        return row

    def all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return list(self.db.execute(sql, args).fetchall())

    def close(self) -> None:
        self.db.close()

    # --- enrolment ---------------------------------------------------------------------------

    def add_device(self, dev_id: bytes, k_dev: bytes, claim_digest: str, model: str) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO devices (dev_id, k_dev, claim_digest, model, enrolled_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    dev_id.hex(),
                    self.seal("devices", dev_id.hex(), k_dev),
                    claim_digest,
                    model,
                    time.time(),
                ),  # fmt: skip
            )

    def k_dev(self, dev_id: str) -> bytes | None:
        row = self.one("SELECT k_dev FROM devices WHERE dev_id = ?", dev_id)
        return None if row is None else self.unseal("devices", dev_id, row["k_dev"])

    def add_gateway(self, serial: str, factory_secret: bytes, claim_digest: str) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO gateways (serial, factory_secret, claim_digest, enrolled_at) "
                "VALUES (?, ?, ?, ?)",
                (serial, self.seal("gateways", serial, factory_secret), claim_digest, time.time()),
            )

    def factory_secret(self, serial: str) -> bytes | None:
        row = self.one("SELECT factory_secret FROM gateways WHERE serial = ?", serial)
        return None if row is None else self.unseal("gateways", serial, row["factory_secret"])

    def k_appgw(self, serial: str) -> bytes | None:
        row = self.one("SELECT k_appgw FROM gateways WHERE serial = ?", serial)
        if row is None or row["k_appgw"] is None:
            return None
        return self.unseal("gateways/appgw", serial, row["k_appgw"])

    def add_user(self, name: str, password: str) -> None:
        salt = secrets.token_bytes(16)
        with self.tx() as db:
            db.execute(
                "INSERT INTO users (name, salt, pw_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, salt, password_hash(password, salt), time.time()),
            )

    def check_password(self, name: str, password: str) -> bool:
        return verify_password(password, self.password_record(name))

    def password_record(self, name: str) -> tuple[bytes, bytes] | None:
        """``(salt, hash)`` of ``name``, for :func:`verify_password` (which may run in a worker
        thread: the scrypt is the slow part, the database stays on its own thread)."""
        row = self.one("SELECT salt, pw_hash FROM users WHERE name = ?", name)
        return None if row is None else (bytes(row["salt"]), bytes(row["pw_hash"]))

    # --- events ------------------------------------------------------------------------------

    def gw_event(self, db: sqlite3.Connection, gateway: str, kind: str, **body: Any) -> None:
        db.execute(
            "INSERT INTO gw_events (gateway, kind, body, created_at) VALUES (?, ?, ?, ?)",
            (gateway, kind, json.dumps(body, sort_keys=True), time.time()),
        )

    def session_event(self, db: sqlite3.Connection, sid: str, kind: str, **body: Any) -> None:
        db.execute(
            "INSERT INTO session_events (sid, kind, body, created_at) VALUES (?, ?, ?, ?)",
            (sid, kind, json.dumps(body, sort_keys=True), time.time()),
        )

    def summary(self) -> dict[str, Any]:
        """Everything but secrets, for `python -m gateway.peers.cloud show`."""
        return {
            "users": [r["name"] for r in self.all("SELECT name FROM users ORDER BY name")],
            "gateways": [
                {
                    k: r[k]
                    for k in (
                        "serial",
                        "eui64",
                        "owner",
                        "registered_at",
                        "claimed_at",
                        "last_seen",
                    )
                }  # fmt: skip
                for r in self.all("SELECT * FROM gateways ORDER BY serial")
            ],
            "devices": [
                {
                    k: r[k]
                    for k in ("dev_id", "model", "owner", "gateway", "bound_sid", "bound_at")
                }  # fmt: skip
                for r in self.all("SELECT * FROM devices ORDER BY dev_id")
            ],
            "sessions": [
                {k: r[k] for k in ("sid", "gateway", "owner", "mode", "exp", "state", "result")}
                for r in self.all("SELECT * FROM sessions ORDER BY created_at")
            ],
            "session_devices": [
                {k: r[k] for k in ("sid", "dev_id", "state", "token_used", "epoch", "bound_at")}
                for r in self.all("SELECT * FROM session_devices ORDER BY sid, dev_id")
            ],
            "reports": [
                {k: r[k] for k in ("sid", "gateway", "dev_id", "status", "step", "detail")}
                for r in self.all("SELECT * FROM reports ORDER BY id")
            ],
        }
