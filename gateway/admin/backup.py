"""The gateway backup file (format ``gateway-backup``, version 2) and restore, factory reset.

A backup is one JSON document, encrypted with a passphrase the technician gives (docs/gwctl.md
has the full description)::

    {"format": "gateway-backup", "version": 2, "created_at": "2026-…Z",
     "gateway_version": "0.1.0", "hostname": "…",
     "encryption": {"kdf": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<base64, 16 bytes>",
                    "aead": "AES-256-GCM", "nonce": "<base64, 12 bytes>"},
     "ciphertext": "<base64>"}

The key is scrypt(passphrase, salt, n, r, p) (32 bytes, ``cryptography``); the additional data
of AES-GCM is the canonical JSON of every field but ``ciphertext``, so no header field can be
changed either. The plaintext is the canonical JSON of::

    {"sha256": "<hex>",
     "contents": {
        "state_files": [{"path": "thread-network.json", "format": "gateway-thread-network",
                         "version": 1, "text": "<the file, verbatim>"}, …],
        "config": {"name": "gateway.toml", "text": "…"} | null,
        "summary": {"thread_network": {…, "active_dataset": "<hex TLVs>"} | null,
                    "frame_counters": {"radio-frame-counters.json": {"thread-mac": 1000}}}}}

``sha256`` is over the canonical JSON of ``contents`` (sorted keys, no spaces, UTF-8). Every
JSON file of the state directory is carried verbatim, so their own checksums travel with them;
``summary`` is informative (the active dataset as hex TLVs is what OpenThread's
``dataset set active <hex>`` takes). Version 1, the same document unencrypted (``sha256`` and
``contents`` at the top level), is still read.

Restore never lowers a frame counter: for every frame-counter file it takes, per key, the larger
of the backup's and the current value, then adds an increment (default 100000) so that counters
a copy of this state may have used after the backup was taken are never used again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from drivers.errors import ConfigError, StateError
from gateway import __version__
from gateway.admin.errors import AdminPermissionDenied, BackupError
from gateway.runtime.paths import Paths
from gateway.runtime.state import FrameCounterStore, JsonState, atomic_write, fsync_dir

FORMAT = "gateway-backup"
VERSION = 2  # encrypted; version 1 (the same contents in clear) is still read
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # 32 MiB, about 0.1 s on a Pi 4
MIN_PASSPHRASE = 8
FRAME_COUNTERS_FORMAT = "gateway-frame-counters"
# The newest version of each state format this release reads (gateway/runtime/network.py,
# gateway/runtime/state.py).
KNOWN_STATE_FORMATS = {"gateway-thread-network": 1, FRAME_COUNTERS_FORMAT: 1}
# The radio service's counter file (gateway/radio/service.py) and the key ids the gateway's own
# services register with it (gateway/border_router/service.py): restore raises these even when
# neither the backup nor the current state has used them yet.
RADIO_COUNTERS_FILE = "radio-frame-counters.json"
DEFAULT_INCREMENT = 100_000
MAX_BACKUP_BYTES = 16 * 1024 * 1024
MAX_STATE_FILES = 512
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum(contents: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(contents)).hexdigest()


@dataclass(frozen=True)
class StateFile:
    path: str  # relative to the state directory, POSIX separators
    format: str | None
    version: int | None
    text: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "version": self.version,
                "text": self.text}  # fmt: skip


@dataclass(frozen=True)
class Backup:
    version: int
    created_at: str
    gateway_version: str
    hostname: str
    files: tuple[StateFile, ...]
    config_name: str | None
    config_text: str | None = field(repr=False)
    summary: dict[str, Any] = field(repr=False)

    @property
    def network_name(self) -> str | None:
        tn = self.summary.get("thread_network")
        return tn.get("network_name") if isinstance(tn, dict) else None


# ------------------------------------------------------------------------------ reading state


def _state_doc(raw: str) -> dict[str, Any] | None:
    """The document when ``raw`` is a JsonState file (format/version/sha256/body), else None."""
    doc = json.loads(raw)
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("format"), str)
        and isinstance(doc.get("version"), int)
        and "sha256" in doc
        and "body" in doc
    ):
        return doc
    return None


def walk_state(state_dir: Path) -> tuple[list[Path], list[str]]:
    """The JSON state files under ``state_dir`` (hidden entries, ``*.bak`` and temporary files
    excluded) and the other files found there (not backed up, reported)."""
    files: list[Path] = []
    other: list[str] = []
    if not state_dir.exists():
        return files, other
    for dirpath, dirnames, filenames in os.walk(state_dir, onerror=_raise):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith(".") or name.endswith((".bak", ".tmp")):
                continue
            if name.endswith(".json") and p.is_file():
                files.append(p)
            else:
                other.append(p.relative_to(state_dir).as_posix())
    return files, other


def _raise(exc: OSError) -> None:
    raise exc


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except PermissionError:
        raise AdminPermissionDenied(f"no permission to read {path}") from None
    except UnicodeDecodeError:
        raise StateError(f"{path} is corrupt (not UTF-8)") from None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None


def validate_state_file(path: Path, text: str, where: str) -> tuple[str | None, int | None]:
    try:
        doc = _state_doc(text)
    except json.JSONDecodeError:
        raise StateError(f"{where} is corrupt (not JSON)") from None
    if doc is None:
        return None, None
    fmt, ver = doc["format"], doc["version"]
    newest = KNOWN_STATE_FORMATS.get(fmt)
    if newest is not None and ver > newest:
        raise StateError(f"{where} is {fmt} version {ver}; this release reads up to {newest}",
                         hint="Upgrade the gateway software.")  # fmt: skip
    JsonState(path, fmt, ver).load()  # verifies the checksum (StateError when corrupt)
    if fmt == FRAME_COUNTERS_FORMAT:
        FrameCounterStore(path)  # verifies the counters
    elif fmt == "gateway-thread-network":
        from gateway.runtime.network import FILE, load_network
        from gateway.runtime.settings import Settings

        if path.name == FILE:  # the loader checks that the dataset is complete
            load_network(Settings(paths=Paths(path, path.parent, path.parent)))
    return fmt, ver


def _summary(files: list[StateFile], state_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = {"thread_network": None, "frame_counters": {}}
    for f in files:
        if f.format is None:
            continue
        body = json.loads(f.text)["body"]
        if f.format == "gateway-thread-network" and isinstance(body.get("active_dataset"), str):
            from gateway.runtime.network import load_network
            from gateway.runtime.settings import Settings

            ds = load_network(Settings(paths=Paths(state_dir, state_dir, state_dir)))
            if ds is not None:
                summary["thread_network"] = {
                    "network_name": ds.network_name,
                    "channel": ds.channel,
                    "pan_id": f"0x{ds.pan_id:04x}" if ds.pan_id is not None else None,
                    "ext_pan_id": ds.ext_pan_id.hex() if ds.ext_pan_id else None,
                    "active_dataset": body["active_dataset"],
                }
        elif f.format == FRAME_COUNTERS_FORMAT:
            summary["frame_counters"][f.path] = dict(body.get("counters", {}))
    return summary


def collect(paths: Paths) -> tuple[dict[str, Any], list[str]]:
    """The backup document of the current state, and the files left out (not JSON state)."""
    try:
        found, other = walk_state(paths.state_dir)
    except PermissionError:
        raise AdminPermissionDenied(f"no permission to read {paths.state_dir}") from None
    files: list[StateFile] = []
    for p in found:
        rel = p.relative_to(paths.state_dir).as_posix()
        text = read_text(p)
        fmt, ver = validate_state_file(p, text, str(p))
        files.append(StateFile(rel, fmt, ver, text))
    config: dict[str, Any] | None = None
    if paths.config.exists():
        config = {"name": paths.config.name, "text": read_text(paths.config)}
    contents = {
        "state_files": [f.to_json() for f in files],
        "config": config,
        "summary": _summary(files, paths.state_dir),
    }
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gateway_version": __version__,
        "hostname": socket.gethostname(),
        "sha256": checksum(contents),
        "contents": contents,
    }
    return doc, other


class BackupPassphraseError(BackupError):
    code = "ADM007"
    exit_code = 9
    default_hint = (
        "Give the passphrase the backup was made with; without it the backup cannot be opened "
        "(nobody can recover it)."
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def seal(doc: dict[str, Any], passphrase: str) -> dict[str, Any]:
    """The encrypted (version 2) form of a document made by :func:`collect`."""
    if len(passphrase) < MIN_PASSPHRASE:
        from drivers.errors import InvalidArgument

        raise InvalidArgument(f"a backup passphrase has at least {MIN_PASSPHRASE} characters")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = {k: doc[k] for k in ("format", "created_at", "gateway_version", "hostname")}
    header["version"] = VERSION
    header["encryption"] = {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                            "salt": _b64(salt), "aead": "AES-256-GCM", "nonce": _b64(nonce)}  # fmt: skip
    key = _scrypt_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    plain = canonical({"sha256": doc["sha256"], "contents": doc["contents"]})
    ct = AESGCM(key).encrypt(nonce, plain, canonical(header))
    return {**header, "ciphertext": _b64(ct)}


def _unseal(doc: dict[str, Any], passphrase: str) -> dict[str, Any]:
    """The inner document (``sha256``, ``contents``) of a version-2 backup."""
    enc = doc.get("encryption")
    if not isinstance(enc, dict) or enc.get("kdf") != "scrypt" or enc.get("aead") != "AES-256-GCM":
        raise BackupError("the backup's encryption is not scrypt with AES-256-GCM")
    n, r, p = enc.get("n"), enc.get("r"), enc.get("p")
    # bounded: a hostile file must not make the restore allocate gigabytes or run for hours
    if not (
        isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
        and 2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4
        and 128 * n * r <= 256 * 1024 * 1024
    ):  # fmt: skip
        raise BackupError("the backup's scrypt parameters are out of range")
    try:
        salt = base64.b64decode(str(enc.get("salt")), validate=True)
        nonce = base64.b64decode(str(enc.get("nonce")), validate=True)
        ct = base64.b64decode(str(doc.get("ciphertext")), validate=True)
    except ValueError:
        raise BackupError("the backup is corrupt (bad base64)") from None
    if len(salt) < 8 or len(nonce) != 12 or len(ct) < 16:
        raise BackupError("the backup is corrupt (salt, nonce or ciphertext too short)")
    header = {k: v for k, v in doc.items() if k != "ciphertext"}
    try:
        plain = AESGCM(_scrypt_key(passphrase, salt, n, r, p)).decrypt(nonce, ct, canonical(header))
    except InvalidTag:
        raise BackupPassphraseError(
            "wrong passphrase, or the backup file was altered: nothing was restored"
        ) from None
    try:
        inner = json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError("the backup is corrupt (its contents are not JSON)") from None
    if not isinstance(inner, dict):
        raise BackupError("the backup is corrupt (its contents are not a JSON object)")
    return inner


def write_backup(path: Path, doc: dict[str, Any], passphrase: str) -> int:
    data = json.dumps(seal(doc, passphrase), indent=1, ensure_ascii=False).encode() + b"\n"
    try:
        atomic_write(path, data, mode=0o600)
    except PermissionError:
        raise AdminPermissionDenied(f"no permission to write {path}") from None
    return len(data)


# ------------------------------------------------------------------------------ decoding


def _safe_relpath(raw: Any) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= 255:
        raise BackupError("the backup names a state file with an invalid path")
    p = PurePosixPath(raw)
    if p.is_absolute() or str(p) != raw or p.suffix != ".json":
        raise BackupError(f"the backup names an unsafe state file path {raw!r}")
    for part in p.parts:
        if part in ("", ".", "..") or part.startswith(".") or not set(part) <= _NAME_CHARS:
            raise BackupError(f"the backup names an unsafe state file path {raw!r}")
    return raw


def is_encrypted(data: bytes) -> bool:
    """True for a version-2 backup (it needs its passphrase); any other file is left to
    :func:`decode` to judge."""
    with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError, ValueError):
        doc = json.loads(data) if len(data) <= MAX_BACKUP_BYTES else None
        return isinstance(doc, dict) and doc.get("format") == FORMAT and "ciphertext" in doc
    return False


def decode(data: bytes, passphrase: str | None = None) -> Backup:
    """A validated backup, or :class:`BackupError` (exit 9): another format, a newer version, a
    wrong passphrase, a corrupt checksum or an unsafe entry."""
    if len(data) > MAX_BACKUP_BYTES:
        raise BackupError(f"the file is larger than {MAX_BACKUP_BYTES} bytes: not a gateway backup")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError("the file is not a gateway backup (not JSON)") from None
    if not isinstance(doc, dict):
        raise BackupError("the file is not a gateway backup (not a JSON object)")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise BackupError(f"the file is not a gateway backup (format {fmt!r}, expected {FORMAT!r})")
    ver = doc.get("version")
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
        raise BackupError(f"the backup has an invalid version {ver!r}")
    if ver > VERSION:
        raise BackupError(
            f"the backup is version {ver}; this release reads up to version {VERSION}",
            hint="It was written by a newer release: upgrade the gateway software first.",
        )
    inner = doc
    if ver >= 2:
        if passphrase is None:
            raise BackupPassphraseError("the backup is encrypted: its passphrase is needed")
        inner = _unseal(doc, passphrase)
    contents = inner.get("contents")
    if not isinstance(contents, dict) or inner.get("sha256") != checksum(contents):
        raise BackupError("the backup is corrupt (checksum mismatch)",
                          hint="The file was truncated or edited; use another copy.")  # fmt: skip
    raw_files = contents.get("state_files")
    if not isinstance(raw_files, list) or len(raw_files) > MAX_STATE_FILES:
        raise BackupError("the backup's state_files must be a list")
    files: list[StateFile] = []
    seen: set[str] = set()
    for entry in raw_files:
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise BackupError("the backup has a malformed state file entry")
        rel = _safe_relpath(entry.get("path"))
        if rel in seen:
            raise BackupError(f"the backup holds {rel} twice")
        seen.add(rel)
        f_fmt, f_ver = entry.get("format"), entry.get("version")
        if f_fmt is not None and not isinstance(f_fmt, str):
            raise BackupError(f"the backup's entry {rel} has a malformed format")
        if f_ver is not None and (isinstance(f_ver, bool) or not isinstance(f_ver, int)):
            raise BackupError(f"the backup's entry {rel} has a malformed version")
        files.append(StateFile(rel, f_fmt, f_ver, entry["text"]))
    config = contents.get("config")
    cfg_name: str | None = None
    cfg_text: str | None = None
    if config is not None:
        if not isinstance(config, dict) or not isinstance(config.get("text"), str):
            raise BackupError("the backup's config entry is malformed")
        cfg_text = config["text"]
        name = config.get("name")
        cfg_name = name if isinstance(name, str) else None
    summary = contents.get("summary")
    return Backup(
        version=ver,
        created_at=str(doc.get("created_at", "?")),
        gateway_version=str(doc.get("gateway_version", "?")),
        hostname=str(doc.get("hostname", "?")),
        files=tuple(files),
        config_name=cfg_name,
        config_text=cfg_text,
        summary=summary if isinstance(summary, dict) else {},
    )


# ------------------------------------------------------------------------------ restore


def _owner_of(path: Path) -> tuple[int, int] | None:
    """Files root writes into the services' directories get the directory's owner (systemd's
    StateDirectory= belongs to the service user)."""
    if os.geteuid() != 0:
        return None
    st = path.stat()
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def _counters(path: Path) -> dict[str, int]:
    return FrameCounterStore(path).snapshot() if path.exists() else {}


def restore(
    backup: Backup, paths: Paths, increment: int = DEFAULT_INCREMENT, include_config: bool = True
) -> dict[str, Any]:
    """Replace the state with the backup's (services must be stopped). Everything is staged and
    validated before anything is replaced; the replaced files are kept aside."""
    state_dir = paths.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=state_dir))
    except PermissionError:
        raise AdminPermissionDenied(f"no permission to write {state_dir}") from None
    try:
        return _restore(backup, paths, staging, increment, include_config)
    except PermissionError as exc:
        raise AdminPermissionDenied(f"no permission: {exc.filename or state_dir}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _restore(
    backup: Backup, paths: Paths, staging: Path, increment: int, include_config: bool
) -> dict[str, Any]:
    state_dir = paths.state_dir
    report: dict[str, Any] = {"restored": [], "moved_aside": None, "frame_counters": {},
                              "config_restored": False, "warnings": []}  # fmt: skip
    # 1. stage and validate every file of the backup
    for f in backup.files:
        staged = staging / f.path
        staged.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(staged, f.text.encode(), mode=0o600)
        try:
            validate_state_file(staged, f.text, f.path)
        except StateError as exc:
            raise BackupError(f"the backup's {f.path} is unusable: {exc.message}") from None
    # 2. frame counters: never lower, then move past anything used since the backup
    current_files, _other = walk_state(state_dir)
    counter_files = {f.path for f in backup.files if f.format == FRAME_COUNTERS_FORMAT}
    for p in current_files:
        with contextlib.suppress(json.JSONDecodeError, StateError):
            doc = _state_doc(read_text(p))
            if doc is not None and doc["format"] == FRAME_COUNTERS_FORMAT:
                counter_files.add(p.relative_to(state_dir).as_posix())
    counter_files.add(RADIO_COUNTERS_FILE)
    for rel in sorted(counter_files):
        staged = staging / rel
        backed_up = _counters(staged)
        try:
            current = _counters(state_dir / rel)
        except StateError as exc:
            report["warnings"].append(
                f"the current {rel} is unreadable ({exc.message}); counters continue from the "
                "backup's values plus the increment"
            )
            current = {}
        merged = {k: max(backed_up.get(k, 0), current.get(k, 0)) for k in backed_up | current}
        staged.parent.mkdir(parents=True, exist_ok=True)
        JsonState(staged, FRAME_COUNTERS_FORMAT, 1).save({"counters": merged})
        store = FrameCounterStore(staged)
        store.bump(increment)
        after = store.snapshot()
        report["frame_counters"][rel] = {k: {"before": merged[k], "after": after[k]}
                                         for k in sorted(merged)}  # fmt: skip
    # 3. the configuration, validated by this release's parser
    cfg_staged: Path | None = None
    if include_config and backup.config_text is not None:
        from gateway.runtime.settings import parse_settings

        try:
            parse_settings(backup.config_text, "the backup's configuration", paths)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc.message}", hint="Restore with --skip-config and set the configuration anew."
            ) from None
        cfg_staged = staging / ".config"
        atomic_write(cfg_staged, backup.config_text.encode(), mode=0o600)
    # 4. put the current state aside, then move the staged files in
    restored = sorted({f.path for f in backup.files} | counter_files)
    if current_files:
        aside = state_dir / time.strftime(".pre-restore-%Y%m%dT%H%M%S", time.gmtime())
        n = 0
        while aside.exists():
            n += 1
            aside = aside.with_name(f"{aside.name.split('~')[0]}~{n}")
        aside.mkdir(mode=0o700)
        for p in current_files:
            for q in (p, p.with_name(p.name + ".bak")):
                if q.exists():
                    dest = aside / q.relative_to(state_dir)
                    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    os.replace(q, dest)
        report["moved_aside"] = str(aside)
    owner = _owner_of(state_dir)
    for rel in restored:
        dest = state_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        os.replace(staging / rel, dest)
        if owner is not None:
            for d in [dest, *dest.relative_to(state_dir).parents]:
                if d != Path("."):
                    os.chown(state_dir / d, *owner)
        fsync_dir(dest.parent)
    report["restored"] = restored
    if cfg_staged is not None:
        mode = paths.config.stat().st_mode & 0o777 if paths.config.exists() else 0o644
        atomic_write(paths.config, cfg_staged.read_bytes(), mode=mode)
        report["config_restored"] = True
    return report


# ------------------------------------------------------------------------------ factory reset


# A factory file an earlier release kept in the state directory: the maker's provisioning,
# which a factory reset must never take (the box could not register with the cloud again).
LEGACY_FACTORY_FILE = "cbsb-factory.json"


def factory_reset(paths: Paths, include_config: bool) -> dict[str, Any]:
    """Remove everything in the state directory (the directory itself stays: systemd owns it),
    and the configuration file with ``include_config``. The factory directory is never touched,
    nor a factory file an earlier release left in the state directory."""
    removed: list[str] = []
    try:
        if paths.state_dir.exists():
            for entry in sorted(paths.state_dir.iterdir()):
                if entry.name == LEGACY_FACTORY_FILE:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry.name)
            fsync_dir(paths.state_dir)
        config_removed = False
        if include_config and paths.config.exists():
            paths.config.unlink()
            config_removed = True
    except PermissionError as exc:
        raise AdminPermissionDenied(f"no permission to remove {exc.filename}") from None
    return {"removed": removed, "config_removed": config_removed}


__all__ = ["Backup", "collect", "decode", "factory_reset", "restore"]
