"""The reference cloud's CoAP-over-TLS API (docs/cbsb-system.md §4).

Gateways authenticate with the client certificate this cloud issued at registration (the TLS
handshake checks it against the cloud CA; the handler maps its fingerprint to a gateway record),
apps with a login token in the body. Gateways receive commands by long polling ``gw/poll``: the
cloud holds the request until something is queued for that gateway (or ``wait_s`` passes). Secrets
(PSK_T, K_appgw) are computed or unsealed only when an event is handed to the gateway; the event
queue itself never holds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code

from gateway.crypto.cbsb_keys import bind_proof, ct_equal, derive_k_bind, derive_psk_t
from gateway.errors import ParseError
from gateway.peers.cloud import pki
from gateway.peers.cloud.store import CloudStore, token_digest, verify_password
from gateway.ratelimit import TokenBucket
from gateway.runtime.coap_tls import server_tls_context
from gateway.wire import cloudapi
from gateway.wire.cbsb import Beacon, BeaconFlags, JoinRequest, Status
from gateway.wire.cbsb_session import verify_join_request
from gateway.wire.cbsb_steps import STATUS_STEP, status_by_name
from gateway.wire.cloudapi import (
    BadClaimCode,
    claim_digest,
    decode_body,
    encode_body,
    hex_field,
    int_field,
    normalize_claim_code,
    parse_thing_qr,
    registration_mac,
    str_field,
)

LOG = logging.getLogger("cbsb.cloud")

BIND_GRACE_S = 60
TOKEN_LIFETIME_S = 24 * 3600
MAX_WAIT_S = 25
SESSIONS_PER_HOUR = 10
BIND_ATTEMPTS = 5
CLAIM_FAILURES = 5
LOGIN_FAILURES = 5  # wrong passwords in a row before a login is locked for a minute
MAX_DEVICES = 64


def peer_certificate(remote: object) -> bytes | None:
    """The DER certificate the TLS peer of an aiocoap request presented (None without one).

    aiocoap has no public accessor for it: its TCP transport keeps the asyncio transport of a
    connection on the remote object. This and :meth:`CloudServer._prune_pool` are the only places
    that reach into aiocoap's internals, both in this reference server (the gateway's side of the
    link uses only aiocoap's public API). The certificate was verified against the CA during the
    handshake."""
    transport = getattr(remote, "_transport", None)
    if transport is None:
        return None
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None
    der = obj.getpeercert(binary_form=True)
    return bytes(der) if der else None


class ApiError(Exception):
    def __init__(self, code: Code, reason: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.hint = hint


Handler = Callable[[aiocoap.Message, dict[str, Any]], Awaitable[dict[str, Any]]]


class _Endpoint(resource.Resource):  # type: ignore[misc]
    def __init__(self, name: str, fn: Handler) -> None:
        super().__init__()
        self.name = name
        self.fn = fn

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            body = decode_body(request.payload)
            doc = await self.fn(request, body)
            code = Code.CONTENT
        except ApiError as exc:
            code = exc.code
            doc = {"error": exc.reason, "message": exc.message}
            if exc.hint:
                doc["hint"] = exc.hint
            LOG.info("%s: %s %s", self.name, exc.reason, exc.message)
        except (ValueError, ParseError) as exc:
            code = Code.BAD_REQUEST
            doc = {"error": "BAD_REQUEST", "message": str(exc)[:200]}
        except Exception:  # a bug must not take the cloud down  # noqa: BLE001
            LOG.exception("%s failed", self.name)
            code = Code.INTERNAL_SERVER_ERROR
            doc = {"error": "INTERNAL", "message": "internal error"}
        msg = aiocoap.Message(code=code, payload=encode_body(doc))
        msg.opt.content_format = cloudapi.CONTENT_FORMAT_JSON
        return msg


def _mode_flags(mode: int) -> BeaconFlags:
    return BeaconFlags(mode)


class CloudServer:
    def __init__(self, store: CloudStore, host: str, port: int) -> None:
        self.store = store
        self.host = host
        self.port = port
        self._ctx: Any = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._enrollee_buckets: dict[str, TokenBucket] = {}
        self._claim_failures: dict[str, list[float]] = {}
        self._logins_in_flight: dict[str, int] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        site = resource.Site()
        routes: dict[str, Handler] = {
            "gw/register": self.gw_register,
            "gw/hello": self.gw_hello,
            "gw/poll": self.gw_poll,
            "gw/enrollee": self.gw_enrollee,
            "gw/joined": self.gw_joined,
            "gw/report": self.gw_report,
            "login": self.login,
            "gateways/claim": self.claim,
            "gateways/list": self.gateways,
            "sessions/open": self.session_open,
            "sessions/events": self.session_events,
            "sessions/confirm": self.session_confirm,
            "sessions/bind": self.session_bind,
            "sessions/close": self.session_close,
            "devices/list": self.devices,
        }
        for path, fn in routes.items():
            site.add_resource(list(cloudapi.api_path(path)), _Endpoint(path, fn))
        f = self.store.files
        tls = server_tls_context(f.server_cert, f.server_key, f.ca_cert)
        # aiocoap's TLS server listens on the given port + 1 (5684 for 5683): compensate.
        self._ctx = await aiocoap.Context.create_server_context(
            site, bind=(self.host, self.port - 1), transports=["tlsserver"], _ssl_context=tls
        )
        self._spawn(self._sweeper())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ctx is not None:
            self._prune_pool()
            with contextlib.suppress(Exception):
                await self._ctx.shutdown()
        self.store.close()

    def _prune_pool(self) -> None:
        """Drop server connections whose TLS handshake failed: aiocoap keeps them in its pool
        without addresses (they would grow without bound and break its shutdown)."""
        for tman in getattr(self._ctx, "request_interfaces", []):
            pool = getattr(getattr(tman, "token_interface", None), "_pool", None)
            if isinstance(pool, set):
                for conn in [c for c in pool if not hasattr(c, "_remote_hostinfo")]:
                    pool.discard(conn)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, deadline: float) -> None:
        ev = self._changed
        remaining = deadline - time.monotonic()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await ev.wait()

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._prune_pool()
            try:
                self._sweep(time.time())
            except Exception:  # noqa: BLE001
                LOG.exception("sweep failed")

    def _sweep(self, now: float) -> None:
        st = self.store
        stale = st.all(
            "SELECT * FROM sessions WHERE state IN ('open', 'ended') AND exp + ? < ?",
            BIND_GRACE_S,
            now,
        )
        if not stale:
            return
        with st.tx() as db:
            for s in stale:
                unbound = st.all(
                    "SELECT dev_id FROM session_devices WHERE sid = ? AND state = 'joined'",
                    s["sid"],
                )
                for d in unbound:
                    # Not bound by the deadline: the gateway removes the thing (§10.7 step 4).
                    st.gw_event(db, s["gateway"], "evict", sid=s["sid"], dev_id=d["dev_id"])
                    st.session_event(db, s["sid"], "evicted", dev_id=d["dev_id"])
                    db.execute(
                        "UPDATE session_devices SET state = 'evicted' WHERE sid = ? AND dev_id = ?",
                        (s["sid"], d["dev_id"]),
                    )
                db.execute(
                    "UPDATE sessions SET state = 'closed', closed_at = ?, "
                    "result = COALESCE(result, 'WINDOW_EXPIRED') WHERE sid = ?",
                    (now, s["sid"]),
                )
                st.gw_event(db, s["gateway"], "close", sid=s["sid"], reason="bind deadline")
                st.session_event(db, s["sid"], "closed", reason="bind deadline passed")
        self._wake()

    # --- authentication ----------------------------------------------------------------------

    def _gateway(self, request: aiocoap.Message) -> Any:
        der = peer_certificate(request.remote)
        if der is None:
            raise ApiError(Code.UNAUTHORIZED, "UNAUTHORIZED", "a gateway certificate is required")
        row = self.store.one("SELECT * FROM gateways WHERE cert_fpr = ?", pki.fingerprint(der))
        if row is None:
            raise ApiError(
                Code.FORBIDDEN, "UNKNOWN_GATEWAY", "this gateway certificate is not registered",
                "The gateway registers again by itself after its identity is reset.",
            )  # fmt: skip
        self.store.db.execute(
            "UPDATE gateways SET last_seen = ? WHERE serial = ?", (time.time(), row["serial"])
        )
        return row

    def _user(self, body: dict[str, Any]) -> str:
        token = body.get("token")
        if not isinstance(token, str) or len(token) > 128:
            raise ApiError(Code.UNAUTHORIZED, "UNAUTHORIZED", "log in first")
        row = self.store.one(
            "SELECT user FROM tokens WHERE digest = ? AND expires > ?",
            token_digest(token),
            time.time(),
        )
        if row is None:
            raise ApiError(Code.UNAUTHORIZED, "UNAUTHORIZED", "your login expired; log in again")
        return str(row["user"])

    def _session(self, sid_hex: str, *, user: str | None = None, gateway: str | None = None) -> Any:
        row = self.store.one("SELECT * FROM sessions WHERE sid = ?", sid_hex)
        if (
            row is None
            or (user is not None and row["owner"] != user)
            or (gateway is not None and row["gateway"] != gateway)
        ):
            raise ApiError(Code.FORBIDDEN, "NOT_YOUR_SESSION", "no such session for you")
        return row

    # --- gateway API -------------------------------------------------------------------------

    async def gw_register(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        """First start of a gateway: proves its factory secret, gets a certificate for its own
        key pair (the CSR signature proves possession of the private key)."""
        serial = str_field(body, "serial", 64)
        eui64 = hex_field(body, "eui64", 8)
        csr = str_field(body, "csr", 4096).encode()
        mac = hex_field(body, "mac", 32)
        secret = self.store.factory_secret(serial)
        if secret is None or not ct_equal(mac, registration_mac(secret, serial, eui64, csr)):
            raise ApiError(Code.FORBIDDEN, "NOT_GENUINE", "the factory identity did not verify")
        other = self.store.one(
            "SELECT serial FROM gateways WHERE eui64 = ? AND serial != ?", eui64.hex(), serial
        )
        if other is not None:
            raise ApiError(Code.CONFLICT, "EUI64_IN_USE", "another gateway uses this radio address")
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        f = self.store.files
        ca_key = pki.load_key(f.ca_key.read_bytes())
        ca = x509.load_pem_x509_certificate(f.ca_cert.read_bytes())
        try:
            cert = pki.sign_gateway_csr(ca_key, ca, csr, serial)
        except ValueError as exc:
            raise ApiError(Code.BAD_REQUEST, "BAD_CSR", str(exc)) from None
        der = cert.public_bytes(serialization.Encoding.DER)
        with self.store.tx() as db:
            db.execute(
                "UPDATE gateways SET eui64 = ?, cert_fpr = ?, registered_at = ?, last_seen = ? "
                "WHERE serial = ?",
                (eui64.hex(), pki.fingerprint(der), time.time(), time.time(), serial),
            )
        LOG.info("gateway %s registered (radio %s)", serial, eui64.hex())
        row = self.store.one("SELECT owner FROM gateways WHERE serial = ?", serial)
        return {"cert": pki.cert_pem(cert).decode(), "claimed": bool(row and row["owner"])}

    async def gw_hello(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        gw = self._gateway(request)
        boot_id = str_field(body, "boot_id", 64)
        if gw["boot_id"] != boot_id:
            now = time.time()
            with self.store.tx() as db:
                db.execute(
                    "UPDATE gateways SET boot_id = ? WHERE serial = ?", (boot_id, gw["serial"])
                )
                if gw["owner"] is not None and gw["k_appgw"] is not None:
                    self.store.gw_event(db, gw["serial"], "paired")
                for s in self.store.all(
                    "SELECT sid FROM sessions WHERE gateway = ? AND state = 'open' AND exp > ?",
                    gw["serial"],
                    now,
                ):
                    # The gateway restarted: it keeps sessions in RAM only, so grant again.
                    self.store.gw_event(db, gw["serial"], "grant", sid=s["sid"])
                    self.store.session_event(db, s["sid"], "gateway_restarted")
            self._wake()
        return {
            "serial": gw["serial"],
            "eui64": gw["eui64"],
            "claimed": gw["owner"] is not None,
            "time": int(time.time()),
        }

    def _render(self, gw: Any, ev: Any, now: float) -> dict[str, Any] | None:
        body = json.loads(ev["body"])
        kind = ev["kind"]
        out: dict[str, Any] = {"seq": ev["seq"], "kind": kind}
        if kind == "paired":
            k = self.store.k_appgw(gw["serial"])
            if k is None:
                return None
            return {**out, "owner": gw["owner"], "k_appgw": k.hex()}
        sid = body.get("sid")
        if kind in ("close", "evict", "report"):
            return {**out, **body}
        s = self.store.one(
            "SELECT * FROM sessions WHERE sid = ? AND gateway = ?", sid, gw["serial"]
        )
        if s is None or s["state"] != "open" or s["exp"] <= now:
            return None  # never hand out keys of a session that is over
        if kind == "grant":
            devices = [
                {"dev_id": d["dev_id"], "psk": self._psk(gw, s, d["dev_id"]).hex()}
                for d in self.store.all(
                    "SELECT dev_id FROM session_devices WHERE sid = ? "
                    "AND state IN ('allowed', 'confirmed')",
                    sid,
                )
            ]
            with self.store.tx() as db:
                self.store.session_event(db, sid, "delivered")
            return {
                **out, "sid": sid, "exp": s["exp"], "mode": s["mode"],
                "expires_in": max(0, int(s["exp"] - now)), "notify": s["notify"],
                "devices": devices,
            }  # fmt: skip
        if kind in ("psk", "deny"):
            dev = body["dev_id"]
            return {**out, "sid": sid, "dev_id": dev, "psk": self._psk(gw, s, dev).hex()}
        return None

    def _render_safe(self, gw: Any, ev: Any, now: float) -> dict[str, Any] | None:
        """One bad event (say, for a device deleted since) must not block the gateway's queue."""
        try:
            return self._render(gw, ev, now)
        except Exception:  # noqa: BLE001
            LOG.exception("dropping undeliverable event %s for %s", ev["kind"], gw["serial"])
            return None

    def _psk(self, gw: Any, s: Any, dev_id: str) -> bytes:
        k_dev = self.store.k_dev(dev_id)
        if k_dev is None:
            raise ApiError(Code.NOT_FOUND, "UNKNOWN_DEVICE", "unknown device")
        return derive_psk_t(
            k_dev, bytes.fromhex(s["sid"]), bytes.fromhex(gw["eui64"]), bytes.fromhex(dev_id),
            s["exp"], s["mode"],
        )  # fmt: skip

    async def gw_poll(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        gw = self._gateway(request)
        after = int_field(body, "after", 0, 2**62, 0)
        wait_s = int_field(body, "wait_s", 0, MAX_WAIT_S, 0)
        serial = gw["serial"]
        self.store.db.execute(
            "DELETE FROM gw_events WHERE gateway = ? AND seq <= ?", (serial, after)
        )
        deadline = time.monotonic() + wait_s
        while True:
            rows = self.store.all(
                "SELECT * FROM gw_events WHERE gateway = ? AND seq > ? ORDER BY seq LIMIT 32",
                serial,
                after,
            )
            if rows or time.monotonic() >= deadline:
                break
            await self._wait_change(deadline)
        gw = self.store.one("SELECT * FROM gateways WHERE serial = ?", serial)
        now = time.time()
        events = [e for e in (self._render_safe(gw, r, now) for r in rows) if e is not None]
        last = rows[-1]["seq"] if rows else after
        if events:
            self._wake()  # "delivered" session events
        return {"events": events, "last": last}

    def _gw_session(self, gw: Any, body: dict[str, Any]) -> Any:
        return self._session(hex_field(body, "sid", 16).hex(), gateway=gw["serial"])

    async def gw_enrollee(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        """Discover mode (§10.6): verify the thing's proof here, then ask its user."""
        gw = self._gateway(request)
        s = self._gw_session(gw, body)
        now = time.time()
        bucket = self._enrollee_buckets.setdefault(gw["serial"], TokenBucket(0.5, 5, now))
        if not bucket.take(now):
            raise ApiError(Code.TOO_MANY_REQUESTS, "RATE_LIMITED", "too many new devices")
        if s["state"] != "open" or s["exp"] <= now:
            return {"result": "closed"}
        dev_id = hex_field(body, "dev_id", 8)
        m0_raw, m1_raw = hex_field(body, "m0"), hex_field(body, "m1")
        m0, m1 = Beacon.from_bytes(m0_raw), JoinRequest.from_bytes(m1_raw)
        self._check_beacon(gw, s, m0)
        if m1.dev_id != dev_id or m1.epoch != m0.epoch:
            raise ApiError(Code.BAD_REQUEST, "BAD_REQUEST", "the request does not match")
        dev = self.store.one("SELECT * FROM devices WHERE dev_id = ?", dev_id.hex())
        if dev is None:
            return {"result": "unknown"}
        psk = self._psk(gw, s, dev_id.hex())
        if not verify_join_request(m0_raw, m1, psk):
            self._report(gw, s["sid"], dev_id.hex(), Status.AUTH_FAILED, 7,
                         "the cloud could not verify the device's proof")  # fmt: skip
            return {"result": "auth_failed"}
        if dev["owner"] is not None and dev["owner"] != s["owner"]:
            with self.store.tx() as db:
                self.store.session_event(db, s["sid"], "report", dev_id=dev_id.hex(),
                                         status="CLOUD_DENIED", step=3,
                                         detail="this device belongs to another account")  # fmt: skip
            self._wake()
            return {"result": "denied", "psk": psk.hex()}
        row = self.store.one(
            "SELECT state FROM session_devices WHERE sid = ? AND dev_id = ?", s["sid"], dev_id.hex()
        )
        if row is not None and row["state"] in ("allowed", "confirmed"):
            return {"result": "psk", "psk": psk.hex()}
        if row is not None and row["state"] == "rejected":
            return {"result": "denied", "psk": psk.hex()}
        if row is None:
            n = self.store.one("SELECT COUNT(*) AS n FROM session_devices WHERE sid = ?", s["sid"])
            if n is not None and n["n"] >= MAX_DEVICES:
                raise ApiError(Code.TOO_MANY_REQUESTS, "RATE_LIMITED", "too many devices")
            with self.store.tx() as db:
                db.execute(
                    "INSERT INTO session_devices (sid, dev_id, state) VALUES (?, ?, 'found')",
                    (s["sid"], dev_id.hex()),
                )
                self.store.session_event(db, s["sid"], "found", dev_id=dev_id.hex(),
                                         model=dev["model"])  # fmt: skip
            self._wake()
        return {"result": "pending"}

    def _check_beacon(self, gw: Any, s: Any, m0: Beacon) -> None:
        if (
            m0.sid.hex() != s["sid"]
            or m0.gw_id.hex() != gw["eui64"]
            or m0.exp != s["exp"]
            or int(m0.flags) != s["mode"]
        ):
            raise ApiError(Code.BAD_REQUEST, "BAD_BEACON", "the beacon is not this session's")

    async def gw_joined(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        """JoinComplete (§10.7): verify the thing's bind proof with K_bind, which only the cloud
        and the thing can compute."""
        gw = self._gateway(request)
        s = self._gw_session(gw, body)
        dev_id = hex_field(body, "dev_id", 8)
        n_t = hex_field(body, "n_t", 16)
        bp = hex_field(body, "bp", 16)
        m0 = Beacon.from_bytes(hex_field(body, "m0"))
        self._check_beacon(gw, s, m0)
        row = self.store.one(
            "SELECT * FROM session_devices WHERE sid = ? AND dev_id = ?", s["sid"], dev_id.hex()
        )
        if row is None or row["state"] not in ("allowed", "confirmed", "joined"):
            raise ApiError(Code.FORBIDDEN, "NOT_IN_SESSION", "this device is not in the session")
        if row["state"] == "joined":
            return {"result": "ok"}
        k_dev = self.store.k_dev(dev_id.hex())
        assert k_dev is not None
        sid = bytes.fromhex(s["sid"])
        expect = bind_proof(derive_k_bind(k_dev, sid, dev_id), sid, m0.gw_id, dev_id, n_t,
                            m0.r_g, m0.epoch)  # fmt: skip
        if not ct_equal(expect, bp):
            self._report(gw, s["sid"], dev_id.hex(), Status.BIND_REJECTED, 8,
                         "the thing's bind proof did not verify")  # fmt: skip
            return {"result": "rejected"}
        with self.store.tx() as db:
            db.execute(
                "UPDATE session_devices SET state = 'joined', epoch = ?, n_t = ?, bp = ?, "
                "joined_at = ? WHERE sid = ? AND dev_id = ?",
                (m0.epoch, n_t.hex(), bp.hex(), time.time(), s["sid"], dev_id.hex()),
            )
            # The owner's app may bind from this event alone when the LAN notification does not
            # reach it: BP is useless without the owner's login and the single-use bind token.
            self.store.session_event(db, s["sid"], "joined", dev_id=dev_id.hex(), epoch=m0.epoch,
                                     bp=bp.hex())  # fmt: skip
        self._wake()
        LOG.info("session %s: %s joined through %s", s["sid"][:8], dev_id.hex(), gw["serial"])
        return {"result": "ok"}

    def _report(
        self, gw: Any, sid: str | None, dev_id: str | None, status: Status, step: int, detail: str,
        *, to_gateway: bool = True,
    ) -> None:  # fmt: skip
        """A result record; session events tell the app, and failures the cloud itself saw go to
        the gateway too (its gwctl and journal show every error with its step)."""
        with self.store.tx() as db:
            if to_gateway and sid is not None and gw["serial"] != "?":
                self.store.gw_event(db, gw["serial"], "report", sid=sid, dev_id=dev_id,
                                    status=status.name, step=step, detail=detail)  # fmt: skip
            db.execute(
                "INSERT INTO reports (sid, gateway, dev_id, status, step, detail, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, gw["serial"], dev_id, status.name, step, detail, time.time()),
            )
            if sid is not None:
                self.store.session_event(db, sid, "report", dev_id=dev_id, status=status.name,
                                         step=step, detail=detail)  # fmt: skip
        self._wake()

    async def gw_report(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        gw = self._gateway(request)
        event = str_field(body, "event", 32)
        sid: str | None = None
        if body.get("sid") is not None:
            sid = self._gw_session(gw, body)["sid"]
        dev_id = hex_field(body, "dev_id", 8).hex() if body.get("dev_id") else None
        detail = str(body.get("detail", ""))[:300]
        if event == "window_open" and sid is not None:
            with self.store.tx() as db:
                self.store.session_event(db, sid, "window_open", channel=body.get("channel"))
            self._wake()
            return {}
        status = status_by_name(str_field(body, "status", 32))
        if status is None:
            raise ValueError("unknown status")
        step = int_field(body, "step", 0, 10, STATUS_STEP.get(status, 0))
        if event == "ended" and sid is not None:
            with self.store.tx() as db:
                db.execute(
                    "UPDATE sessions SET state = CASE WHEN state = 'open' THEN 'ended' "
                    "ELSE state END, result = ? WHERE sid = ?",
                    (status.name, sid),
                )
                self.store.session_event(db, sid, "ended", status=status.name, step=step,
                                         detail=detail)  # fmt: skip
            self._wake()
            return {}
        for k in ("rssi", "lqi", "epoch"):
            if isinstance(body.get(k), int):
                detail += f" {k}={body[k]}"
        self._report(gw, sid, dev_id, status, step, detail.strip(), to_gateway=False)
        return {}

    # --- app API -----------------------------------------------------------------------------

    async def login(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        user = str_field(body, "user", 64)
        password = str_field(body, "password", 256)
        now = time.time()
        row = self.store.one("SELECT failed, locked_until FROM users WHERE name = ?", user)
        if row is not None and row["locked_until"] > now:
            raise ApiError(Code.TOO_MANY_REQUESTS, "LOCKED", "too many wrong passwords",
                           "Wait a minute and try again.")  # fmt: skip
        # The scrypt runs off the event loop; attempts in flight count against the lockout, so
        # a burst of parallel guesses gets no more tries than guesses one after the other.
        in_flight = self._logins_in_flight.get(user, 0)
        if row is not None and row["failed"] + in_flight >= LOGIN_FAILURES:
            raise ApiError(Code.TOO_MANY_REQUESTS, "LOCKED", "too many logins at once",
                           "Wait a moment and try again.")  # fmt: skip
        self._logins_in_flight[user] = in_flight + 1
        try:
            record = self.store.password_record(user)
            ok = await asyncio.to_thread(verify_password, password, record)
        finally:
            left = self._logins_in_flight.pop(user) - 1
            if left:
                self._logins_in_flight[user] = left
        if not ok:
            row = self.store.one("SELECT failed FROM users WHERE name = ?", user)
            if row is not None:
                failed = row["failed"] + 1
                locked = failed >= LOGIN_FAILURES
                self.store.db.execute(
                    "UPDATE users SET failed = ?, locked_until = ? WHERE name = ?",
                    (0 if locked else failed, now + 60 if locked else 0, user),
                )
            raise ApiError(Code.UNAUTHORIZED, "BAD_LOGIN", "wrong user name or password")
        token = secrets.token_urlsafe(24)
        with self.store.tx() as db:
            db.execute("UPDATE users SET failed = 0 WHERE name = ?", (user,))
            db.execute("DELETE FROM tokens WHERE expires < ?", (now,))
            db.execute(
                "INSERT INTO tokens (digest, user, expires) VALUES (?, ?, ?)",
                (token_digest(token), user, now + TOKEN_LIFETIME_S),
            )
        return {"token": token, "expires": int(now + TOKEN_LIFETIME_S)}

    def _claim_limited(self, user: str) -> None:
        now = time.time()
        recent = [t for t in self._claim_failures.get(user, []) if now - t < 600]
        self._claim_failures[user] = recent
        if len(recent) >= CLAIM_FAILURES:
            raise ApiError(Code.TOO_MANY_REQUESTS, "RATE_LIMITED", "too many wrong codes",
                           "Wait ten minutes, then check the code on the label.")  # fmt: skip

    def _claim_failed(self, user: str) -> None:
        self._claim_failures.setdefault(user, []).append(time.time())

    async def claim(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        """The app claims a gateway with the code on its box; from then on the app and the
        gateway share K_appgw (the draft's premise: the app is bound to the group owner)."""
        user = self._user(body)
        self._claim_limited(user)
        try:
            digest = claim_digest(str_field(body, "claim_code", 32))
        except BadClaimCode as exc:
            raise ApiError(Code.BAD_REQUEST, "BAD_CLAIM_CODE", exc.message, exc.hint) from None
        gw = self.store.one("SELECT * FROM gateways WHERE claim_digest = ?", digest)
        if gw is None:
            self._claim_failed(user)
            raise ApiError(Code.NOT_FOUND, "UNKNOWN_GATEWAY", "no gateway has this claim code")
        if gw["owner"] is not None and gw["owner"] != user:
            raise ApiError(Code.CONFLICT, "OWNED_ELSEWHERE", "this gateway belongs to another account",
                           "Its owner must release it first.")  # fmt: skip
        if gw["owner"] is None:
            k = secrets.token_bytes(32)
            with self.store.tx() as db:
                db.execute(
                    "UPDATE gateways SET owner = ?, k_appgw = ?, claimed_at = ? WHERE serial = ?",
                    (
                        user,
                        self.store.seal("gateways/appgw", gw["serial"], k),
                        time.time(),
                        gw["serial"],
                    ),  # fmt: skip
                )
                self.store.gw_event(db, gw["serial"], "paired")
            self._wake()
            LOG.info("gateway %s claimed by %s", gw["serial"], user)
        k_appgw = self.store.k_appgw(gw["serial"])
        assert k_appgw is not None
        return {"serial": gw["serial"], "eui64": gw["eui64"], "k_appgw": k_appgw.hex()}

    async def gateways(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        now = time.time()
        return {
            "gateways": [
                {
                    "serial": g["serial"],
                    "eui64": g["eui64"],
                    "online": bool(g["last_seen"] and now - g["last_seen"] < 40),
                }  # fmt: skip
                for g in self.store.all("SELECT * FROM gateways WHERE owner = ?", user)
            ]
        }

    async def session_open(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        """Draft steps 2-3: the app notifies the cloud; the cloud scopes PSK_T per device and
        queues the JoinGrant for the gateway."""
        user = self._user(body)
        serial = str_field(body, "gateway", 64)
        mode_name = body.get("mode", "targeted")
        if mode_name not in ("targeted", "discover"):
            raise ValueError("'mode' must be targeted or discover")
        window_s = int_field(body, "window_s", 10, 900, 180)
        notify = str(body.get("notify", ""))[:80]
        pfs = body.get("pfs", True) is not False
        gw = self.store.one("SELECT * FROM gateways WHERE serial = ? AND owner = ?", serial, user)
        if gw is None:
            raise ApiError(Code.FORBIDDEN, "NOT_YOUR_GATEWAY", "this is not one of your gateways",
                           "Claim it first with the code on its box.")  # fmt: skip
        if gw["eui64"] is None:
            raise ApiError(Code.CONFLICT, "GATEWAY_NOT_REGISTERED",
                           "the gateway has not connected to the cloud yet",
                           "Check that the gateway is powered and online.")  # fmt: skip
        now = time.time()
        n = self.store.one(
            "SELECT COUNT(*) AS n FROM sessions WHERE owner = ? AND created_at > ?",
            user,
            now - 3600,
        )
        if n is not None and n["n"] >= SESSIONS_PER_HOUR:
            raise ApiError(Code.TOO_MANY_REQUESTS, "RATE_LIMITED", "too many sessions this hour")
        devices: list[bytes] = []
        if mode_name == "targeted":
            entries = body.get("devices")
            if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_DEVICES:
                raise ValueError(f"'devices' must list 1..{MAX_DEVICES} devices")
            self._claim_limited(user)
            for e in entries:
                dev_id, code = self._device_entry(e)
                dev = self.store.one("SELECT * FROM devices WHERE dev_id = ?", dev_id.hex())
                if dev is None or not cloudapi.claim_matches(code, dev["claim_digest"]):
                    self._claim_failed(user)
                    raise ApiError(Code.FORBIDDEN, "CLOUD_DENIED",
                                   f"device {dev_id.hex()} and its setup code do not match",
                                   "Scan the code on the device again.")  # fmt: skip
                if dev["owner"] is not None and dev["owner"] != user:
                    raise ApiError(Code.CONFLICT, "OWNED_ELSEWHERE",
                                   f"device {dev_id.hex()} belongs to another account",
                                   "Its owner must remove it first.")  # fmt: skip
                if dev_id not in devices:
                    devices.append(dev_id)
        mode = (
            BeaconFlags.TARGETED if devices else BeaconFlags.CLOUD_VERIFY | BeaconFlags.USER_CONFIRM
        )
        if pfs:
            mode |= BeaconFlags.PFS_REQUIRED
        sid = secrets.token_bytes(16).hex()
        exp = int(now) + window_s
        tokens = {d.hex(): secrets.token_urlsafe(16) for d in devices}
        with self.store.tx() as db:
            for old in self.store.all(
                "SELECT sid FROM sessions WHERE gateway = ? AND state = 'open'", serial
            ):
                # One open session per gateway: a new one replaces the last.
                db.execute(
                    "UPDATE sessions SET state = 'closed', closed_at = ?, result = 'SESSION_CLOSED' "
                    "WHERE sid = ?",
                    (now, old["sid"]),
                )
                self.store.gw_event(db, serial, "close", sid=old["sid"], reason="replaced")
                self.store.session_event(
                    db, old["sid"], "closed", reason="replaced by a new session"
                )
            db.execute(
                "INSERT INTO sessions (sid, gateway, owner, mode, exp, window_s, state, notify, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                (sid, serial, user, int(mode), exp, window_s, notify, now),
            )
            for d in devices:
                db.execute(
                    "INSERT INTO session_devices (sid, dev_id, state, token_digest) "
                    "VALUES (?, ?, 'allowed', ?)",
                    (sid, d.hex(), token_digest(tokens[d.hex()])),
                )
            self.store.gw_event(db, serial, "grant", sid=sid)
            self.store.session_event(db, sid, "opened", mode=mode_name, devices=len(devices))
        self._wake()
        LOG.info(
            "session %s opened on %s (%s, %d devices)", sid[:8], serial, mode_name, len(devices)
        )
        return {
            "sid": sid, "exp": exp, "window_s": window_s, "mode": int(mode),
            "gateway": serial, "eui64": gw["eui64"], "bind_tokens": tokens,
        }  # fmt: skip

    def _device_entry(self, e: Any) -> tuple[bytes, str]:
        if not isinstance(e, dict):
            raise ValueError("each device is an object with 'qr' or 'dev_id' and 'claim_code'")
        try:
            if isinstance(e.get("qr"), str):
                return parse_thing_qr(e["qr"])
            return hex_field(e, "dev_id", 8), normalize_claim_code(str_field(e, "claim_code", 32))
        except BadClaimCode as exc:
            raise ApiError(Code.BAD_REQUEST, "BAD_CLAIM_CODE", exc.message, exc.hint) from None

    async def session_events(
        self, request: aiocoap.Message, body: dict[str, Any]
    ) -> dict[str, Any]:
        user = self._user(body)
        s = self._session(hex_field(body, "sid", 16).hex(), user=user)
        after = int_field(body, "after", 0, 2**62, 0)
        wait_s = int_field(body, "wait_s", 0, MAX_WAIT_S, 0)
        deadline = time.monotonic() + wait_s
        while True:
            rows = self.store.all(
                "SELECT * FROM session_events WHERE sid = ? AND seq > ? ORDER BY seq LIMIT 64",
                s["sid"],
                after,
            )
            if rows or time.monotonic() >= deadline:
                break
            await self._wait_change(deadline)
        s = self.store.one("SELECT state, result FROM sessions WHERE sid = ?", s["sid"])
        return {
            "events": [{"seq": r["seq"], "kind": r["kind"], **json.loads(r["body"])} for r in rows],
            "last": rows[-1]["seq"] if rows else after,
            "state": s["state"] if s else "closed",
            "result": s["result"] if s else None,
        }

    async def session_confirm(
        self, request: aiocoap.Message, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Discover mode: the user confirmed (or rejected) a device the gateway found."""
        user = self._user(body)
        s = self._session(hex_field(body, "sid", 16).hex(), user=user)
        dev_id = hex_field(body, "dev_id", 8).hex()
        accept = body.get("accept") is True
        row = self.store.one(
            "SELECT state FROM session_devices WHERE sid = ? AND dev_id = ?", s["sid"], dev_id
        )
        if row is None or row["state"] != "found" or s["state"] != "open":
            raise ApiError(Code.CONFLICT, "NOT_PENDING", "this device is not waiting for you")
        token = secrets.token_urlsafe(16) if accept else None
        with self.store.tx() as db:
            db.execute(
                "UPDATE session_devices SET state = ?, token_digest = ? WHERE sid = ? AND dev_id = ?",
                (
                    "confirmed" if accept else "rejected",
                    token_digest(token) if token else None,
                    s["sid"],
                    dev_id,
                ),  # fmt: skip
            )
            self.store.gw_event(db, s["gateway"], "psk" if accept else "deny", sid=s["sid"],
                                dev_id=dev_id)  # fmt: skip
        self._wake()
        return {"bind_token": token} if token else {}

    async def session_bind(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        """Draft step 10 (§10.7 step 3): bind only with the session owner's login, the device's
        single-use bind token, and the thing's bind proof the cloud verified from the gateway's
        report."""
        user = self._user(body)
        sid = hex_field(body, "sid", 16).hex()
        dev_id = hex_field(body, "dev_id", 8).hex()
        token = str_field(body, "bind_token", 64)
        bp = hex_field(body, "bp", 16).hex()
        s = self.store.one("SELECT * FROM sessions WHERE sid = ?", sid)

        def reject(code: Code, message: str, reason: str = "BIND_REJECTED") -> ApiError:
            gw = {"serial": s["gateway"]} if s is not None else {"serial": "?"}
            self._report(gw, sid if s is not None else None, dev_id, Status.BIND_REJECTED, 10,
                         f"{message} (account {user})")  # fmt: skip
            return ApiError(code, reason, message, "Start again from the app on your account.")

        if s is None or s["owner"] != user:
            if s is not None:
                reject(Code.FORBIDDEN, "a bind attempt from another account was refused")
            raise ApiError(Code.FORBIDDEN, "BIND_REJECTED", "this session is not yours")
        if time.time() > s["exp"] + BIND_GRACE_S:
            raise reject(Code.FORBIDDEN, "the time to bind this thing is over")
        with self.store.tx() as db:
            row = db.execute(
                "SELECT * FROM session_devices WHERE sid = ? AND dev_id = ?", (sid, dev_id)
            ).fetchone()
            if row is None or row["state"] != "joined":
                err = "the thing has not joined in this session"
            elif row["bind_attempts"] >= BIND_ATTEMPTS:
                err = "too many bind attempts"
            else:
                err = ""
                db.execute(
                    "UPDATE session_devices SET bind_attempts = bind_attempts + 1 "
                    "WHERE sid = ? AND dev_id = ?",
                    (sid, dev_id),
                )
            if not err and not ct_equal(bytes.fromhex(bp), bytes.fromhex(row["bp"])):
                err = "the bind proof does not match the thing's"
            if not err:
                # The single-use token is consumed in the same transaction as the binding.
                cur = db.execute(
                    "UPDATE session_devices SET token_used = 1 WHERE sid = ? AND dev_id = ? "
                    "AND token_used = 0 AND token_digest = ?",
                    (sid, dev_id, token_digest(token)),
                )
                if cur.rowcount != 1:
                    err = "the bind token is wrong or was used already"
            dev = db.execute("SELECT owner FROM devices WHERE dev_id = ?", (dev_id,)).fetchone()
            if not err and dev is not None and dev["owner"] not in (None, user):
                err = "the thing belongs to another account"
            if not err:
                now = time.time()
                db.execute(
                    "UPDATE devices SET owner = ?, gateway = ?, bound_sid = ?, bound_at = ? "
                    "WHERE dev_id = ?",
                    (user, s["gateway"], sid, now, dev_id),
                )
                db.execute(
                    "UPDATE session_devices SET state = 'bound', bound_at = ? "
                    "WHERE sid = ? AND dev_id = ?",
                    (now, sid, dev_id),
                )
                self.store.session_event(db, sid, "bound", dev_id=dev_id)
        if err:
            raise reject(Code.FORBIDDEN, err)
        self._wake()
        LOG.info("device %s bound to %s", dev_id, user)
        return {"bound": True, "dev_id": dev_id, "gateway": s["gateway"]}

    async def session_close(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        s = self._session(hex_field(body, "sid", 16).hex(), user=user)
        if s["state"] in ("open", "ended"):
            with self.store.tx() as db:
                db.execute(
                    "UPDATE sessions SET state = 'closed', closed_at = ?, "
                    "result = COALESCE(result, 'SESSION_CLOSED') WHERE sid = ?",
                    (time.time(), s["sid"]),
                )
                self.store.gw_event(db, s["gateway"], "close", sid=s["sid"], reason="app")
                self.store.session_event(db, s["sid"], "closed", reason="closed by the app")
            self._wake()
        return {}

    async def devices(self, request: aiocoap.Message, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        return {
            "devices": [
                {
                    "dev_id": d["dev_id"],
                    "model": d["model"],
                    "gateway": d["gateway"],
                    "bound_at": d["bound_at"],
                }  # fmt: skip
                for d in self.store.all("SELECT * FROM devices WHERE owner = ?", user)
            ]
        }
