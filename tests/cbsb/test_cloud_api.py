"""The reference cloud's API in-process over real CoAP-over-TLS (aiocoap): gateway registration
and mutual authentication, logins, claims, sessions, discover-mode verification, binding and its
refusals (cloud-bootstrap.md §10.3, §10.6, §10.7, §10.8), and what the store keeps at rest."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.crypto import cbsb_keys as k
from gateway.group_owner.identity import Identity
from gateway.peers.cloud import pki
from gateway.peers.cloud.server import CloudServer
from gateway.peers.cloud.store import CloudStore
from gateway.runtime.coap_tls import CoapJsonClient, client_tls_context
from gateway.wire.cbsb import Beacon, BeaconFlags
from gateway.wire.cbsb_session import build_beacon, build_join_request
from gateway.wire.cloudapi import (
    CloudApiError,
    CloudUnreachable,
    new_claim_code,
    registration_mac,
    thing_qr,
)

OFFSET = 262  # this module's port offset (CBSB tests use 200-299)
PORT = 30000 + OFFSET
URL = f"coaps+tcp://127.0.0.1:{PORT}"
EUI64 = bytes.fromhex("0212345678abcdef")


@dataclass
class Cloud:
    store: CloudStore
    server: CloudServer
    root: Path
    ca: str
    clients: list[CoapJsonClient]

    def client(self, cert: Path | None = None, key: Path | None = None) -> CoapJsonClient:
        c = CoapJsonClient(URL, client_tls_context(self.ca, cert, key), timeout=10)
        self.clients.append(c)
        return c

    def device(self, k_dev: bytes | None = None) -> tuple[bytes, bytes, str]:
        dev_id = bytes([0x02]) + bytes.fromhex(hashlib.sha256(str(len(self.clients)).encode() +
                                                              (k_dev or b"")).hexdigest())[:7]  # fmt: skip
        k_dev = k_dev or bytes(range(32))
        code = new_claim_code()
        from gateway.wire.cloudapi import claim_digest

        self.store.add_device(dev_id, k_dev, claim_digest(code), "test")
        return dev_id, k_dev, code


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    store = CloudStore(tmp_path / "cloud")
    server = CloudServer(store, "127.0.0.1", PORT)
    await server.start()
    c = Cloud(store, server, tmp_path, store.ca_pem(), [])
    try:
        yield c
    finally:
        for cl in c.clients:
            await cl.close()
        await server.close()


async def _gateway(
    cloud: Cloud, serial: str = "GW-TEST", eui64: bytes = EUI64
) -> tuple[CoapJsonClient, str]:
    """Enrol, register (factory proof + CSR) and connect a gateway; returns its client and claim
    code."""
    secret = bytes(range(32, 64))
    code = new_claim_code()
    from gateway.wire.cloudapi import claim_digest

    cloud.store.add_gateway(serial, secret, claim_digest(code))
    ident = Identity(cloud.root / serial)
    ident.state_dir.mkdir()
    csr = ident.csr_pem(serial)
    anon = cloud.client()
    res = await anon.call("gw/register", {"serial": serial, "eui64": eui64.hex(),
                                          "csr": csr.decode(),
                                          "mac": registration_mac(secret, serial, eui64, csr).hex()})  # fmt: skip
    ident.save_certificate(serial, eui64, URL, res["cert"])
    gw = cloud.client(ident.cert_file, ident.key_file)
    hello = await gw.call("gw/hello", {"boot_id": "boot-1"})
    assert hello["serial"] == serial and hello["eui64"] == eui64.hex()
    return gw, code


async def _user(cloud: Cloud, name: str) -> tuple[CoapJsonClient, str]:
    cloud.store.add_user(name, "a long password")
    c = cloud.client()
    tok = (await c.call("login", {"user": name, "password": "a long password"}))["token"]
    return c, tok


async def test_registration_needs_the_factory_secret_and_gives_a_client_certificate(
    cloud: Cloud,
) -> None:
    cloud.store.add_gateway("GW-X", bytes(32), "0" * 64)
    ident = Identity(cloud.root)
    csr = ident.csr_pem("GW-X")
    anon = cloud.client()
    bad = registration_mac(bytes([1]) * 32, "GW-X", EUI64, csr)
    with pytest.raises(CloudApiError) as e:
        await anon.call("gw/register", {"serial": "GW-X", "eui64": EUI64.hex(),
                                        "csr": csr.decode(), "mac": bad.hex()})  # fmt: skip
    assert e.value.reason == "NOT_GENUINE"
    # Without a client certificate the gateway API refuses (mutual authentication).
    with pytest.raises(CloudApiError) as e:
        await anon.call("gw/hello", {"boot_id": "x"})
    assert e.value.reason == "UNAUTHORIZED"
    good = registration_mac(bytes(32), "GW-X", EUI64, csr)
    res = await anon.call("gw/register", {"serial": "GW-X", "eui64": EUI64.hex(),
                                          "csr": csr.decode(), "mac": good.hex()})  # fmt: skip
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(res["cert"].encode())
    assert cert.subject.rfc4514_string() == "CN=GW-X"
    ca = x509.load_pem_x509_certificate(cloud.ca.encode())
    cert.verify_directly_issued_by(ca)
    # The registration MAC is HMAC-SHA256 over the documented fields (RFC 2104 via hmac).
    msg = b"cbsb-gw-register\0GW-X\0" + EUI64 + hashlib.sha256(csr).digest()
    assert good == hmac.new(bytes(32), msg, hashlib.sha256).digest()


async def test_a_certificate_from_another_ca_is_refused_by_tls(cloud: Cloud) -> None:
    rogue_key, rogue_ca = pki.new_ca("rogue")
    key = pki.new_key()
    from cryptography import x509  # noqa: I001
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GW-TEST")]))
           .sign(key, hashes.SHA256()))  # fmt: skip
    cert = pki.sign_gateway_csr(rogue_key, rogue_ca,
                                csr.public_bytes(serialization.Encoding.PEM), "GW-TEST")  # fmt: skip
    (cloud.root / "r.pem").write_bytes(pki.cert_pem(cert))
    (cloud.root / "r.key").write_bytes(pki.key_pem(key))
    c = cloud.client(cloud.root / "r.pem", cloud.root / "r.key")
    with pytest.raises((CloudUnreachable, CloudApiError)):
        await c.call("gw/hello", {"boot_id": "x"})


async def test_the_app_does_not_trust_another_server(cloud: Cloud) -> None:
    _key, other = pki.new_ca("someone else")
    c = CoapJsonClient(URL, client_tls_context(pki.cert_pem(other).decode()), timeout=5)
    cloud.clients.append(c)
    with pytest.raises(CloudUnreachable, match="certificate verify failed"):
        await c.call("login", {"user": "a", "password": "b"})


async def test_targeted_session_scopes_psk_per_device_and_binding_needs_all_three(
    cloud: Cloud,
) -> None:
    gw, gw_code = await _gateway(cloud)
    alice, tok = await _user(cloud, "alice")
    claimed = await alice.call("gateways/claim", {"token": tok, "claim_code": gw_code})
    k_appgw = bytes.fromhex(claimed["k_appgw"])
    dev_id, k_dev, code = cloud.device()
    # A wrong claim code for the device: refused, no oracle about which part is wrong.
    with pytest.raises(CloudApiError) as e:
        await alice.call("sessions/open", {"token": tok, "gateway": "GW-TEST", "devices": [
            {"dev_id": dev_id.hex(), "claim_code": new_claim_code()}]})  # fmt: skip
    assert e.value.reason == "CLOUD_DENIED"
    s = await alice.call("sessions/open", {"token": tok, "gateway": "GW-TEST",
                                           "devices": [{"qr": thing_qr(dev_id, code)}],
                                           "window_s": 60})  # fmt: skip
    sid = bytes.fromhex(s["sid"])
    events = (await gw.call("gw/poll", {"after": 0}))["events"]
    kinds = [e["kind"] for e in events]
    assert kinds == ["paired", "grant"]
    assert bytes.fromhex(events[0]["k_appgw"]) == k_appgw
    grant = events[1]
    mode = BeaconFlags.TARGETED | BeaconFlags.PFS_REQUIRED
    assert grant["mode"] == mode and grant["exp"] == s["exp"]
    psk = bytes.fromhex(grant["devices"][0]["psk"])
    # PSK_T = HKDF(K_dev, sid, "cbsb1 psk" || gw_id || dev_id || exp || mode), re-derived here.
    assert psk == k.derive_psk_t(k_dev, sid, EUI64, dev_id, s["exp"], int(mode))
    assert psk != k_dev and k_dev.hex() not in str(events)

    # The thing's side of the join, enough to produce what the gateway reports.
    m0 = build_beacon(flags=mode, gw_id=EUI64, sid=sid, epoch=0, r_g=bytes(range(16)),
                      exp=s["exp"], window_left_s=60, channel=15, pan_id=0x1234,
                      k_bcn=bytes(16), steering=k.steering_build([dev_id], 8)).to_bytes()  # fmt: skip
    n_t = bytes(range(100, 116))
    bp = k.bind_proof(k.derive_k_bind(k_dev, sid, dev_id), sid, EUI64, dev_id, n_t,
                      bytes(range(16)), 0)  # fmt: skip
    forged = await gw.call("gw/joined", {"sid": sid.hex(), "dev_id": dev_id.hex(), "epoch": 0,
                                         "n_t": n_t.hex(), "bp": bytes(16).hex(), "caps": 0,
                                         "m0": m0.hex()})  # fmt: skip
    assert forged["result"] == "rejected"  # a gateway cannot forge the thing's bind proof
    ok = await gw.call("gw/joined", {"sid": sid.hex(), "dev_id": dev_id.hex(), "epoch": 0,
                                     "n_t": n_t.hex(), "bp": bp.hex(), "caps": 0, "m0": m0.hex()})  # fmt: skip
    assert ok["result"] == "ok"

    # Binding hijack from another account: refused and recorded.
    bob, btok = await _user(cloud, "bob")
    token = s["bind_tokens"][dev_id.hex()]
    with pytest.raises(CloudApiError) as e:
        await bob.call("sessions/bind", {"token": btok, "sid": sid.hex(), "dev_id": dev_id.hex(),
                                         "bind_token": token, "bp": bp.hex()})  # fmt: skip
    assert e.value.reason == "BIND_REJECTED"
    # The owner with a wrong bind proof or a wrong token: refused.
    for bad_tok, bad_bp in ((token, bytes(16)), ("x" * 22, bp)):
        with pytest.raises(CloudApiError) as e:
            await alice.call("sessions/bind", {"token": tok, "sid": sid.hex(),
                                               "dev_id": dev_id.hex(), "bind_token": bad_tok,
                                               "bp": bad_bp.hex()})  # fmt: skip
        assert e.value.reason == "BIND_REJECTED"
    done = await alice.call("sessions/bind", {"token": tok, "sid": sid.hex(),
                                              "dev_id": dev_id.hex(), "bind_token": token,
                                              "bp": bp.hex()})  # fmt: skip
    assert done["bound"] is True
    # The token is single use.
    with pytest.raises(CloudApiError) as e:
        await alice.call("sessions/bind", {"token": tok, "sid": sid.hex(), "dev_id": dev_id.hex(),
                                           "bind_token": token, "bp": bp.hex()})  # fmt: skip
    assert e.value.reason == "BIND_REJECTED"
    devices = (await alice.call("devices/list", {"token": tok}))["devices"]
    assert [d["dev_id"] for d in devices] == [dev_id.hex()]
    reports = cloud.store.summary()["reports"]
    assert any("another account" in r["detail"] for r in reports)
    # Bob cannot start a session for alice's device even with its label.
    with pytest.raises(CloudApiError) as e:
        await bob.call("sessions/open", {"token": btok, "gateway": "GW-TEST",
                                         "devices": [{"qr": thing_qr(dev_id, code)}]})  # fmt: skip
    assert e.value.reason == "NOT_YOUR_GATEWAY"
    _gw2, code2 = await _gateway(cloud, "GW-BOB", bytes.fromhex("02000000000000b0"))
    await bob.call("gateways/claim", {"token": btok, "claim_code": code2})
    with pytest.raises(CloudApiError) as e:
        await bob.call("sessions/open", {"token": btok, "gateway": "GW-BOB",
                                         "devices": [{"qr": thing_qr(dev_id, code)}]})  # fmt: skip
    assert e.value.reason == "OWNED_ELSEWHERE"


async def test_discover_mode_cloud_verifies_the_proof_then_asks_the_user(cloud: Cloud) -> None:
    gw, gw_code = await _gateway(cloud)
    alice, tok = await _user(cloud, "alice")
    await alice.call("gateways/claim", {"token": tok, "claim_code": gw_code})
    dev_id, k_dev, _code = cloud.device()
    s = await alice.call("sessions/open", {"token": tok, "gateway": "GW-TEST", "mode": "discover",
                                           "window_s": 60, "pfs": False})  # fmt: skip
    sid = bytes.fromhex(s["sid"])
    grant = [e for e in (await gw.call("gw/poll", {"after": 0}))["events"] if e["kind"] == "grant"]
    mode = BeaconFlags(grant[0]["mode"])
    assert grant[0]["devices"] == [] and mode & BeaconFlags.USER_CONFIRM
    m0 = build_beacon(flags=mode, gw_id=EUI64, sid=sid, epoch=0, r_g=bytes(16), exp=s["exp"],
                      window_left_s=60, channel=15, pan_id=0x1234, k_bcn=bytes(16)).to_bytes()  # fmt: skip
    psk = k.derive_psk_t(k_dev, sid, EUI64, dev_id, s["exp"], int(mode))
    bad = build_join_request(m0, 0, dev_id, bytes(32), bytes(16)).to_bytes()
    good = build_join_request(m0, 0, dev_id, psk, bytes(16)).to_bytes()
    body = {"sid": sid.hex(), "dev_id": dev_id.hex(), "epoch": 0, "m0": m0.hex()}
    assert (await gw.call("gw/enrollee", {**body, "m1": bad.hex()}))["result"] == "auth_failed"
    assert (await gw.call("gw/enrollee", {**body, "m1": good.hex()}))["result"] == "pending"
    # A beacon of another session is refused.
    other = Beacon.from_bytes(m0)
    m0x = build_beacon(flags=mode, gw_id=EUI64, sid=bytes(16), epoch=0, r_g=other.r_g,
                       exp=s["exp"], window_left_s=60, channel=15, pan_id=0x1234,
                       k_bcn=bytes(16)).to_bytes()  # fmt: skip
    with pytest.raises(CloudApiError) as e:
        await gw.call("gw/enrollee", {**body, "m0": m0x.hex(), "m1": good.hex()})
    assert e.value.reason == "BAD_BEACON"
    ev = (await alice.call("sessions/events", {"token": tok, "sid": sid.hex()}))["events"]
    assert [e["dev_id"] for e in ev if e["kind"] == "found"] == [dev_id.hex()]
    conf = await alice.call("sessions/confirm", {"token": tok, "sid": sid.hex(),
                                                 "dev_id": dev_id.hex(), "accept": True})  # fmt: skip
    assert conf["bind_token"]
    psk_ev = [e for e in (await gw.call("gw/poll", {"after": 0}))["events"] if e["kind"] == "psk"]
    assert bytes.fromhex(psk_ev[0]["psk"]) == psk


async def test_login_lockout_and_claim_codes(cloud: Cloud) -> None:
    cloud.store.add_user("carol", "a long password")
    c = cloud.client()
    for _ in range(5):
        with pytest.raises(CloudApiError) as e:
            await c.call("login", {"user": "carol", "password": "wrong"})
        assert e.value.reason == "BAD_LOGIN"
    with pytest.raises(CloudApiError) as e:
        await c.call("login", {"user": "carol", "password": "a long password"})
    assert e.value.reason == "LOCKED"
    _gw, code = await _gateway(cloud)
    alice, tok = await _user(cloud, "alice")
    with pytest.raises(CloudApiError) as e:
        await alice.call("gateways/claim", {"token": tok, "claim_code": "12345-67890"})
    assert e.value.reason in ("BAD_CLAIM_CODE", "UNKNOWN_GATEWAY")
    await alice.call("gateways/claim", {"token": tok, "claim_code": code.lower()})
    bob, btok = await _user(cloud, "bob")
    with pytest.raises(CloudApiError) as e:
        await bob.call("gateways/claim", {"token": btok, "claim_code": code})
    assert e.value.reason == "OWNED_ELSEWHERE"
    with pytest.raises(CloudApiError) as e:
        await bob.call("gateways/list", {"token": "forged"})
    assert e.value.reason == "UNAUTHORIZED"


async def test_parallel_guesses_get_no_more_tries_than_sequential_ones(cloud: Cloud) -> None:
    """The password hash runs off the event loop, so logins overlap: twenty guesses sent at once
    must not all be checked before the first failure counts. At most five are tried, the rest
    are refused unchecked, and the account is locked for the right password as well."""
    import asyncio

    cloud.store.add_user("dave", "a long password")
    clients = [cloud.client() for _ in range(20)]

    async def guess(c: CoapJsonClient, n: int) -> str:
        try:
            await c.call("login", {"user": "dave", "password": f"guess {n}"})
        except CloudApiError as exc:
            return exc.reason
        return "OK"

    reasons = await asyncio.gather(*(guess(c, n) for n, c in enumerate(clients)))
    assert "OK" not in reasons
    assert 1 <= reasons.count("BAD_LOGIN") <= 5, reasons
    assert reasons.count("LOCKED") == 20 - reasons.count("BAD_LOGIN")
    for _ in range(5 - reasons.count("BAD_LOGIN")):  # the tries the burst left, one by one
        reasons.append(await guess(clients[0], 99))
    assert reasons.count("BAD_LOGIN") == 5
    with pytest.raises(CloudApiError) as e:
        await clients[0].call("login", {"user": "dave", "password": "a long password"})
    assert e.value.reason == "LOCKED"


def test_store_is_wal_full_sync_and_keeps_secrets_sealed(tmp_path: Path) -> None:
    store = CloudStore(tmp_path)
    k_dev = bytes(range(200, 232))
    store.add_device(bytes(8), k_dev, "0" * 64, "m")
    store.add_user("dave", "a long password")
    jm, sync = store.one("PRAGMA journal_mode"), store.one("PRAGMA synchronous")
    assert jm is not None and jm[0] == "wal"
    assert sync is not None and sync[0] == 2  # FULL
    assert store.k_dev(bytes(8).hex()) == k_dev
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cloud.db"))
    assert k_dev not in raw and k_dev.hex().encode() not in raw
    assert b"a long password" not in raw
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    # A row moved to another device id does not decrypt (the row id is in the AAD).
    db = sqlite3.connect(tmp_path / "cloud.db")
    sealed = db.execute("SELECT k_dev FROM devices").fetchone()[0]
    db.close()
    store2 = CloudStore(tmp_path)
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        store2.unseal("devices", bytes([1] * 8).hex(), sealed)
    store2.close()


def _my_sockets_to(port: int) -> int:
    """How many of this process's TCP sockets are connected to ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port and cols[3] != "0A":
                    inodes.add(cols[9])
    mine = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            mine += 1
    return mine


async def test_a_closed_client_leaves_no_socket_open(cloud: Cloud) -> None:
    """aiocoap's client shutdown only sends a CoAP Release; close() must also close the TLS
    connection itself, or every client a long-running service replaces leaks a socket."""
    clients = [cloud.client() for _ in range(3)]
    for c in clients:
        with pytest.raises(CloudApiError):
            await c.call("login", {"user": "nobody", "password": "x"})
    assert _my_sockets_to(PORT) == 3
    for c in clients:
        await c.close()
    assert _my_sockets_to(PORT) == 0
    # A closed client reconnects on its next call.
    with pytest.raises(CloudApiError):
        await clients[0].call("login", {"user": "nobody", "password": "x"})
    assert _my_sockets_to(PORT) == 1
