"""The gateway's identity towards the cloud (draft premise: the group owner can connect to the
cloud server) and its pairing with the user's app (premise: the app is bound to the group owner).

* Factory file (``cbsb-factory.json`` in the factory directory, ``/var/lib/gateway-factory``
  or ``$GATEWAY_FACTORY_DIR``, written at manufacturing by
  ``python -m gateway.peers.cloud enrol-gateway``): serial number, factory secret, the claim
  code printed on the box, the cloud's URL and CA certificate. Read only; no factory reset,
  restore or uninstall touches it. A file left in the state directory by an earlier release is
  still read there (and a factory reset keeps it).
* Identity, created on first start: a P-256 key pair (``group-owner-key.pem``, 0600) and, after
  registration, the client certificate the cloud issued for it (``group-owner-cert.pem``), with a
  checksummed record (``group-owner-identity.json``). Each file is written atomically; the key is
  written before the record that names it, so a power cut leaves either nothing or a usable key.
* Pairing (``group-owner-pairing.json``, 0600): the owner and ``K_appgw`` from the cloud after the
  app claimed the gateway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.errors import StateError
from gateway.runtime.logs import register_secret
from gateway.runtime.state import JsonState, atomic_write
from gateway.wire.cloudapi import FACTORY_FORMAT

FACTORY_FILE = "cbsb-factory.json"
KEY_FILE = "group-owner-key.pem"
CERT_FILE = "group-owner-cert.pem"
IDENTITY_FILE = "group-owner-identity.json"
PAIRING_FILE = "group-owner-pairing.json"


@dataclass(frozen=True)
class Factory:
    serial: str
    factory_secret: bytes = field(repr=False)
    claim_code: str
    cloud_url: str
    cloud_ca: str = field(repr=False)


def factory_path(factory_dir: Path, state_dir: Path | None = None) -> Path:
    """The factory file: in the factory directory, or where an earlier release kept it (the
    state directory) when only that one exists."""
    path = factory_dir / FACTORY_FILE
    if state_dir is not None and not path.exists() and (state_dir / FACTORY_FILE).exists():
        return state_dir / FACTORY_FILE
    return path


def load_factory(path: Path) -> Factory | None:
    """The factory record; None when the file does not exist; StateError when it is unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the factory file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != FACTORY_FORMAT:
            raise ValueError("not a gateway factory file")
        secret = bytes.fromhex(doc["factory_secret"])
        if len(secret) != 32:
            raise ValueError("factory secret must be 32 bytes")
        f = Factory(
            serial=str(doc["serial"]),
            factory_secret=secret,
            claim_code=str(doc["claim_code"]),
            cloud_url=str(doc["cloud_url"]),
            cloud_ca=str(doc["cloud_ca"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"the factory file {path} is corrupt ({exc})") from None
    register_secret(f.factory_secret)
    return f


class Identity:
    """The gateway's key pair and cloud certificate in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.key_file = self.state_dir / KEY_FILE
        self.cert_file = self.state_dir / CERT_FILE
        self._record = JsonState(self.state_dir / IDENTITY_FILE, "gateway-cloud-identity", 1)

    def load_or_create_key(self) -> ec.EllipticCurvePrivateKey:
        if not self.key_file.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            atomic_write(self.key_file, pem, mode=0o600)
        try:
            loaded = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise StateError(f"the gateway key {self.key_file} is corrupt ({exc})") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise StateError(f"{self.key_file} is not an EC key")
        return loaded

    def csr_pem(self, serial: str) -> bytes:
        key = self.load_or_create_key()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
            .sign(key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM)

    def record(self) -> dict[str, Any] | None:
        return self._record.load()

    def registered_for(self, serial: str, eui64: bytes, cloud_url: str) -> bool:
        rec = self.record()
        return bool(
            rec
            and rec.get("serial") == serial
            and rec.get("eui64") == eui64.hex()
            and rec.get("cloud_url") == cloud_url
            and self.cert_file.exists()
            and self.key_file.exists()
        )

    def save_certificate(self, serial: str, eui64: bytes, cloud_url: str, cert_pem: str) -> None:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = self.load_or_create_key()
        if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
            raise StateError("the cloud issued a certificate for another key")
        atomic_write(self.cert_file, cert_pem.encode(), mode=0o644)
        self._record.save({"serial": serial, "eui64": eui64.hex(), "cloud_url": cloud_url,
                           "not_after": cert.not_valid_after_utc.isoformat()})  # fmt: skip


class Pairing:
    """The app-gateway binding: owner name and K_appgw (0600, checksummed)."""

    def __init__(self, state_dir: Path) -> None:
        self._state = JsonState(Path(state_dir) / PAIRING_FILE, "gateway-app-pairing", 1)
        self.owner: str | None = None
        self._k_appgw: bytes | None = None
        body = self._state.load()
        if body is not None:
            try:
                k = bytes.fromhex(str(body["k_appgw"]))
                if len(k) != 32:
                    raise ValueError("bad key length")
            except (KeyError, ValueError) as exc:
                raise StateError(f"{self._state.path} is corrupt ({exc})") from None
            self.owner = str(body.get("owner") or "")
            self._k_appgw = k
            register_secret(k)

    @property
    def k_appgw(self) -> bytes | None:
        return self._k_appgw

    def save(self, owner: str, k_appgw: bytes) -> None:
        if self._k_appgw == k_appgw and self.owner == owner:
            return
        register_secret(k_appgw)
        self._state.save({"owner": owner, "k_appgw": k_appgw.hex()})
        self.owner, self._k_appgw = owner, k_appgw
