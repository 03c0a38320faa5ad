"""DTLS 1.2 with TLS_ECJPAKE_WITH_AES_128_CCM_8 (0xC0FF), client and server, sans-IO.

This is the secure transport of Thread commissioning (commissioner <-> border agent with the
PSKc, joiner <-> commissioner with the PSKd), built to interoperate with OpenThread's Mbed TLS
configuration (``reference/thread-meshcop.md`` §6; ``docs/dtls.md``).

Use::

    client = DtlsClient(b"J01NME")
    client.start(now)
    for datagram in client.datagrams_to_send(): sock.send(datagram)
    ...
    client.receive_datagram(data, now)           # never raises for anything the peer sends
    for event in client.events(): ...             # HandshakeComplete, ApplicationData, ...
    deadline = client.next_timeout()              # call handle_timeout(now) when it passes

A :class:`DtlsServer` is one session with one peer (``transport_id`` = the peer's address, bound
into the HelloVerifyRequest cookie). It answers ClientHellos without a valid cookie statelessly;
a listener that wants to allocate nothing before the cookie exchange can call
:func:`check_client_hello` itself and create the server only for a verified ClientHello.

What the handshake looks like (RFC 6347 §4.2, Mbed TLS's EC-JPAKE framing)::

    ClientHello(ext 256 = round one)           -->
                                               <--  HelloVerifyRequest(cookie)
    ClientHello(cookie, same ext 256)          -->
                                               <--  ServerHello(ext 256), ServerKeyExchange
                                                    (03 00 17 + round two), ServerHelloDone
    ClientKeyExchange(round two), CCS, Finished -->
                                               <--  CCS, Finished

Master secret = PRF(pms, "master secret", client_random + server_random), no extended master
secret (neither OpenThread's nor ot-commissioner's Mbed TLS configuration enables it).
"""

from __future__ import annotations

import enum
import hmac as _consttime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes, hmac

from gateway.crypto.dtls_handshake import (
    CIPHER_SUITE_ECJPAKE_AES_128_CCM_8,
    CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV,
    EXT_EC_POINT_FORMATS,
    EXT_ECJPAKE_KEY_KP_PAIR,
    EXT_EXTENDED_MASTER_SECRET,
    EXT_RENEGOTIATION_INFO,
    EXT_SUPPORTED_GROUPS,
    GROUP_SECP256R1,
    HANDSHAKE_HEADER_LEN,
    HS_CLIENT_HELLO,
    HS_CLIENT_KEY_EXCHANGE,
    HS_FINISHED,
    HS_HELLO_REQUEST,
    HS_HELLO_VERIFY_REQUEST,
    HS_SERVER_HELLO,
    HS_SERVER_HELLO_DONE,
    HS_SERVER_KEY_EXCHANGE,
    POINT_FORMAT_UNCOMPRESSED,
    AddResult,
    ClientHello,
    Extension,
    HandshakeFragment,
    HandshakeMessage,
    HandshakeReassembler,
    HelloVerifyRequest,
    ServerHello,
    encode_ec_point_formats,
    encode_supported_groups,
    fragment_message,
    full_message,
    parse_ec_point_formats,
    parse_fragments,
    parse_supported_groups,
)
from gateway.crypto.dtls_record import (
    CCM8_OVERHEAD,
    CONTENT_ALERT,
    CONTENT_APPLICATION_DATA,
    CONTENT_CHANGE_CIPHER_SPEC,
    CONTENT_HANDSHAKE,
    DTLS_1_0,
    DTLS_1_2,
    MAX_PLAINTEXT_LEN,
    MAX_SEQUENCE_NUMBER,
    RECORD_HEADER_LEN,
    BadRecordMac,
    CcmRecordCipher,
    DtlsRecord,
    ReplayWindow,
    parse_datagram_prefix,
)
from gateway.crypto.ecjpake import EcJpake
from gateway.crypto.thread_keys import kek_from_key_block
from gateway.crypto.tls_prf import finished_verify_data, key_block, master_secret
from gateway.errors import CryptoError, InvalidArgument, ParseError

__all__ = [
    "ALERT_BAD_RECORD_MAC",
    "ALERT_CLOSE_NOTIFY",
    "ALERT_DECODE_ERROR",
    "ALERT_DECRYPT_ERROR",
    "ALERT_HANDSHAKE_FAILURE",
    "ALERT_ILLEGAL_PARAMETER",
    "ALERT_LEVEL_FATAL",
    "ALERT_LEVEL_WARNING",
    "ALERT_PROTOCOL_VERSION",
    "ALERT_UNEXPECTED_MESSAGE",
    "ALERT_UNSUPPORTED_EXTENSION",
    "KEY_BLOCK_LEN",
    "AlertReceived",
    "ApplicationData",
    "ConnectionClosed",
    "ConnectionFailed",
    "CookieJar",
    "DtlsAuthenticationError",
    "DtlsClient",
    "DtlsConfig",
    "DtlsError",
    "DtlsEvent",
    "DtlsHandshakeError",
    "DtlsNotConnected",
    "DtlsPeerAlert",
    "DtlsProtocolError",
    "DtlsServer",
    "DtlsState",
    "DtlsTimeoutError",
    "HandshakeComplete",
    "HelloCheck",
    "KeyBlock",
    "check_client_hello",
]

# -- alerts (RFC 5246 §7.2) --------------------------------------------------------------------

ALERT_LEVEL_WARNING: Final[int] = 1
ALERT_LEVEL_FATAL: Final[int] = 2
ALERT_CLOSE_NOTIFY: Final[int] = 0
ALERT_UNEXPECTED_MESSAGE: Final[int] = 10
ALERT_BAD_RECORD_MAC: Final[int] = 20
ALERT_HANDSHAKE_FAILURE: Final[int] = 40
ALERT_ILLEGAL_PARAMETER: Final[int] = 47
ALERT_DECODE_ERROR: Final[int] = 50
ALERT_DECRYPT_ERROR: Final[int] = 51
ALERT_PROTOCOL_VERSION: Final[int] = 70
ALERT_UNSUPPORTED_EXTENSION: Final[int] = 110

#: client_write_key(16) || server_write_key(16) || client_write_IV(4) || server_write_IV(4).
KEY_BLOCK_LEN: Final[int] = 40
_KEY_LEN: Final[int] = 16
_IV_LEN: Final[int] = 4
_RANDOM_LEN: Final[int] = 32
_MAX_CLIENT_HELLO_SEQ: Final[int] = 255
_MAX_CLIENT_HELLO_RECORD_SEQ: Final[int] = 1 << 32

# -- errors ------------------------------------------------------------------------------------


class DtlsError(CryptoError):
    """A DTLS session failed. ``alert`` is the alert description sent or received, if any."""

    code = "DTL001"
    default_hint = "The secure session with the peer failed; it may be retried."

    def __init__(self, message: str, *, alert: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.alert = alert

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(super().to_dict())
        out["alert"] = self.alert
        return out


class DtlsAuthenticationError(DtlsError):
    """The Finished check failed: the two sides do not share the password (or an attack)."""

    code = "DTL002"
    default_hint = (
        "The peer used a different password: check the PSKd (joiner) or the commissioner "
        "passphrase / PSKc on both sides."
    )


class DtlsTimeoutError(DtlsError):
    """The handshake did not complete after the last retransmission."""

    code = "DTL003"
    default_hint = "The peer did not answer; check that it is reachable and listening."


class DtlsPeerAlert(DtlsError):
    """The peer ended the session with an alert."""

    code = "DTL004"
    default_hint = "The peer aborted the session; its logs say why."


class DtlsProtocolError(DtlsError):
    """The peer sent a malformed or unexpected handshake message."""

    code = "DTL005"
    default_hint = "The peer does not follow DTLS 1.2 as expected; check its version."


class DtlsHandshakeError(DtlsError):
    """No common parameters, or the EC-JPAKE exchange failed."""

    code = "DTL006"
    default_hint = (
        "The peer must offer TLS_ECJPAKE_WITH_AES_128_CCM_8 (0xC0FF) over DTLS 1.2 with valid "
        "EC-JPAKE messages."
    )


class DtlsNotConnected(DtlsError):
    """Application data was passed to a session that is not (or no longer) connected."""

    code = "DTL007"
    default_hint = "Wait for the HandshakeComplete event before sending."


class _Abort(Exception):
    """Internal: ends the session; ``alert`` is the fatal alert to send (None: send nothing)."""

    def __init__(self, error: DtlsError, alert: int | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.alert = alert


def _handshake_abort(message: str, alert: int) -> _Abort:
    """Abort the handshake with a fatal ``alert`` and a DtlsHandshakeError saying why."""
    return _Abort(DtlsHandshakeError(message, alert=alert), alert)


# -- configuration, events, keys ---------------------------------------------------------------


@dataclass(frozen=True)
class DtlsConfig:
    """Tunables; the defaults interoperate with OpenThread.

    ``mtu`` bounds every datagram we send (default: IPv6 minimum MTU 1280 minus the IPv6 and UDP
    headers). ``max_record_plaintext`` bounds the plaintext of every record we send; OpenThread's
    Mbed TLS rejects records over ``MBEDTLS_SSL_MAX_CONTENT_LEN`` = 768. Retransmission starts at
    ``retransmit_initial`` seconds and doubles up to ``retransmit_max``; the handshake fails when
    a timeout of ``retransmit_max`` expires (8 s / 60 s as OpenThread: 8+16+32+60 = 116 s).
    A fatal alert (or close_notify) that arrives unprotected during the handshake may be forged
    by anyone who can send to us, so it ends the handshake only if ``alert_grace`` seconds pass
    without the peer's handshake going on; a real peer that gave up sends nothing more.
    """

    mtu: int = 1232
    max_record_plaintext: int = 768
    retransmit_initial: float = 8.0
    retransmit_max: float = 60.0
    max_handshake_message: int = 4096
    max_reassembly_bytes: int = 16384
    max_early_records: int = 16
    max_hello_verify_requests: int = 4
    cookie_lifetime: float = 60.0
    alert_grace: float = 2.0

    def __post_init__(self) -> None:
        if not 64 <= self.mtu <= 65527:
            raise InvalidArgument("DTLS mtu must be between 64 and 65527")
        if not 64 <= self.max_record_plaintext <= MAX_PLAINTEXT_LEN:
            raise InvalidArgument("DTLS max_record_plaintext must be between 64 and 16384")
        if not 0 < self.retransmit_initial <= self.retransmit_max:
            raise InvalidArgument("DTLS retransmission timeouts must satisfy 0 < initial <= max")
        if not 0 < self.alert_grace <= self.retransmit_max:
            raise InvalidArgument("DTLS alert_grace must be positive and at most retransmit_max")
        if self.max_handshake_message < 1024 or self.max_reassembly_bytes < 1024:
            raise InvalidArgument("DTLS handshake buffers must be at least 1024 bytes")

    def max_fragment(self, epoch: int) -> int:
        """Handshake body bytes per record so the record fits both limits."""
        overhead = RECORD_HEADER_LEN + (CCM8_OVERHEAD if epoch else 0)
        return min(self.max_record_plaintext, self.mtu - overhead) - HANDSHAKE_HEADER_LEN

    @property
    def max_application_data(self) -> int:
        return min(self.max_record_plaintext, self.mtu - RECORD_HEADER_LEN - CCM8_OVERHEAD)


class DtlsState(enum.Enum):
    IDLE = "idle"  # client not started yet
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True)
class HandshakeComplete:
    cipher_suite: int = CIPHER_SUITE_ECJPAKE_AES_128_CCM_8


@dataclass(frozen=True)
class ApplicationData:
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class AlertReceived:
    """A warning alert other than close_notify (informational; the session continues)."""

    level: int
    description: int


@dataclass(frozen=True)
class ConnectionClosed:
    by_peer: bool


@dataclass(frozen=True)
class ConnectionFailed:
    error: DtlsError


DtlsEvent = (
    HandshakeComplete | ApplicationData | AlertReceived | ConnectionClosed | ConnectionFailed
)


@dataclass(frozen=True)
class KeyBlock:
    """The 40-byte TLS key block of the suite (RFC 5246 §6.3, no MAC keys for an AEAD)."""

    client_write_key: bytes = field(repr=False)
    server_write_key: bytes = field(repr=False)
    client_write_iv: bytes = field(repr=False)
    server_write_iv: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if (
            len(self.client_write_key) != _KEY_LEN
            or len(self.server_write_key) != _KEY_LEN
            or len(self.client_write_iv) != _IV_LEN
            or len(self.server_write_iv) != _IV_LEN
        ):
            raise InvalidArgument("key block parts have the wrong length")

    def to_bytes(self) -> bytes:
        return (
            self.client_write_key
            + self.server_write_key
            + self.client_write_iv
            + self.server_write_iv
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyBlock:
        if len(data) != KEY_BLOCK_LEN:
            raise InvalidArgument(f"key block must be {KEY_BLOCK_LEN} bytes")
        return cls(data[0:16], data[16:32], data[32:36], data[36:40])

    @property
    def kek(self) -> bytes:
        """Thread's Joiner Router KEK: SHA-256(key block)[:16] (``thread-meshcop.md`` §5.2)."""
        return kek_from_key_block(self.to_bytes())


# -- stateless cookies -------------------------------------------------------------------------


class CookieJar:
    """Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1).

    ``cookie = t(4) || HMAC-SHA256(secret, t || transport_id || ClientHello-without-cookie)[:28]``
    where ``t`` is the whole-second time the cookie was made. A cookie is valid for ``lifetime``
    seconds. The secret is replaced every ``lifetime`` seconds and the previous one kept, so every
    cookie that is still young enough can be checked.
    """

    COOKIE_LEN: Final[int] = 32
    _MAC_LEN: Final[int] = 28

    def __init__(
        self, *, rng: Callable[[int], bytes] | None = None, lifetime: float = 60.0
    ) -> None:
        if lifetime <= 0:
            raise InvalidArgument("cookie lifetime must be positive")
        self._rng = rng if rng is not None else os.urandom
        self._lifetime = lifetime
        self._current = self._rng(32)
        self._previous: bytes | None = None
        self._rotated_at: float | None = None

    def __repr__(self) -> str:
        return f"CookieJar(lifetime={self._lifetime})"

    def _rotate(self, now: float) -> None:
        if self._rotated_at is None:
            self._rotated_at = now
        elif now - self._rotated_at >= self._lifetime:
            self._previous = self._current if now - self._rotated_at < 2 * self._lifetime else None
            self._current = self._rng(32)
            self._rotated_at = now

    @staticmethod
    def _mac(secret: bytes, stamp: bytes, transport_id: bytes, hello: ClientHello) -> bytes:
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(stamp)
        mac.update(len(transport_id).to_bytes(2, "big") + transport_id)
        mac.update(hello.cookie_input())
        return mac.finalize()[: CookieJar._MAC_LEN]

    def make(self, transport_id: bytes, hello: ClientHello, now: float) -> bytes:
        self._rotate(now)
        stamp = (int(now) & 0xFFFFFFFF).to_bytes(4, "big")
        return stamp + self._mac(self._current, stamp, transport_id, hello)

    def check(self, transport_id: bytes, hello: ClientHello, now: float) -> bool:
        self._rotate(now)
        cookie = hello.cookie
        if len(cookie) != self.COOKIE_LEN:
            return False
        stamp = cookie[:4]
        age = (int(now) - int.from_bytes(stamp, "big")) & 0xFFFFFFFF
        if age > self._lifetime:
            return False
        for secret in (self._current, self._previous):
            if secret is not None and _consttime.compare_digest(
                cookie[4:], self._mac(secret, stamp, transport_id, hello)
            ):
                return True
        return False


@dataclass(frozen=True)
class HelloCheck:
    """What a stateless listener should do with a datagram (see :func:`check_client_hello`)."""

    verdict: Literal["verified", "hello_verify_request", "drop"]
    reply: bytes = b""


def _hello_verify_datagram(cookie: bytes, message_seq: int, record_seq: int) -> bytes:
    # RFC 6347 §4.2.1: HelloVerifyRequest.server_version SHOULD be DTLS 1.0; its record reuses
    # the ClientHello's record sequence number and its message_seq the ClientHello's.
    body = HelloVerifyRequest(DTLS_1_0, cookie).to_bytes()
    frag = full_message(HS_HELLO_VERIFY_REQUEST, message_seq, body)
    return DtlsRecord(CONTENT_HANDSHAKE, DTLS_1_2, 0, record_seq, frag).to_bytes()


def check_client_hello(
    datagram: bytes, transport_id: bytes, cookies: CookieJar, now: float
) -> HelloCheck:
    """Stateless front door of a DTLS server.

    ``verified``: the datagram holds a ClientHello with a valid cookie; create a
    :class:`DtlsServer` sharing ``cookies`` and feed it the datagram. ``hello_verify_request``:
    send ``reply`` back and keep nothing. ``drop``: not an (unfragmented) ClientHello.
    """
    records, _ = parse_datagram_prefix(datagram)
    for rec in records:
        if rec.content_type != CONTENT_HANDSHAKE or rec.epoch != 0:
            continue
        try:
            frags = parse_fragments(rec.fragment)
        except ParseError:
            continue
        for frag in frags:
            if frag.msg_type != HS_CLIENT_HELLO or not frag.is_complete:
                continue
            try:
                hello = ClientHello.from_bytes(frag.fragment)
            except ParseError:
                continue
            if cookies.check(transport_id, hello, now):
                return HelloCheck("verified")
            cookie = cookies.make(transport_id, hello, now)
            return HelloCheck(
                "hello_verify_request",
                _hello_verify_datagram(cookie, frag.message_seq, rec.sequence_number),
            )
    return HelloCheck("drop")


# -- the connection ----------------------------------------------------------------------------


class _Stage(enum.Enum):
    C_IDLE = enum.auto()
    C_WAIT_SERVER_HELLO = enum.auto()
    C_WAIT_SERVER_KEY_EXCHANGE = enum.auto()
    C_WAIT_SERVER_HELLO_DONE = enum.auto()
    C_WAIT_CCS = enum.auto()
    C_WAIT_FINISHED = enum.auto()
    S_LISTEN = enum.auto()
    S_WAIT_CLIENT_KEY_EXCHANGE = enum.auto()
    S_WAIT_CCS = enum.auto()
    S_WAIT_FINISHED = enum.auto()
    DONE = enum.auto()
    ENDED = enum.auto()


_WAITING_FOR_FINISHED: Final = frozenset({_Stage.C_WAIT_FINISHED, _Stage.S_WAIT_FINISHED})
_AFTER_OUR_FINISHED: Final = frozenset({_Stage.C_WAIT_CCS, _Stage.C_WAIT_FINISHED})


@dataclass(frozen=True)
class _FlightItem:
    epoch: int
    content_type: int
    msg_type: int = 0
    message_seq: int = 0
    body: bytes = field(default=b"", repr=False)


class _WriteState:
    __slots__ = ("cipher", "next_seq")

    def __init__(self, cipher: CcmRecordCipher | None, next_seq: int = 0) -> None:
        self.cipher = cipher
        self.next_seq = next_seq


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


_MESSAGE_NAMES: Final[dict[int, str]] = {
    HS_CLIENT_HELLO: "ClientHello",
    HS_SERVER_HELLO: "ServerHello",
    HS_HELLO_VERIFY_REQUEST: "HelloVerifyRequest",
    HS_SERVER_KEY_EXCHANGE: "ServerKeyExchange",
    HS_SERVER_HELLO_DONE: "ServerHelloDone",
    HS_CLIENT_KEY_EXCHANGE: "ClientKeyExchange",
    HS_FINISHED: "Finished",
}


class _DtlsConnection:
    """What client and server share: records, epochs, flights, timers, alerts, events."""

    _role: Literal["client", "server"]

    def __init__(
        self,
        password: bytes,
        config: DtlsConfig | None,
        rng: Callable[[int], bytes] | None,
        stage: _Stage,
    ) -> None:
        self._config = config if config is not None else DtlsConfig()
        self._rng: Callable[[int], bytes] = rng if rng is not None else os.urandom
        # EcJpake validates the password (InvalidArgument) and keeps it out of its repr.
        self._jpake = EcJpake(self._role, bytes(password), rng=self._rng)
        self._stage = stage
        self._state = DtlsState.IDLE if stage is _Stage.C_IDLE else DtlsState.HANDSHAKING
        self._out: list[bytes] = []
        self._events: list[DtlsEvent] = []
        # record layer
        self._write: dict[int, _WriteState] = {0: _WriteState(None)}
        self._write_epoch = 0
        self._read_epoch = 0
        self._read_cipher: CcmRecordCipher | None = None
        self._pending_read_cipher: CcmRecordCipher | None = None
        self._replay = ReplayWindow(64)
        self._early_records: list[DtlsRecord] = []
        # True from the moment the read epoch switches while a datagram's own records are being
        # read until that datagram's next protected record: that record is where the peer's
        # Finished is (the Finished follows the CCS in one datagram, in Mbed TLS and here).
        self._finished_slot = False
        self.bad_records = 0  # protected records dropped because they did not authenticate
        self.unauthenticated_alerts = 0  # plaintext handshake alerts held (maybe forged)
        # A plaintext fatal alert held during the handshake: (description, deadline).
        self._held_alert: tuple[int, float] | None = None
        self._early_app_data: list[bytes] = []
        self._ccs_pending = False
        # handshake layer
        self._reasm = HandshakeReassembler(
            0,
            max_message_len=self._config.max_handshake_message,
            max_buffered=self._config.max_reassembly_bytes,
        )
        self._processing = False
        self._next_send_seq = 0
        self._peer_flight_start = 0
        self._transcript = bytearray()
        self._client_random = b""
        self._server_random = b""
        self._master: bytes | None = None
        self._keys: KeyBlock | None = None
        self._handshake_done = False
        # flights and timers
        self._flight: list[_FlightItem] = []
        self._timeout = self._config.retransmit_initial
        self._deadline: float | None = None
        self._last_flight_tx: float | None = None
        self._retransmit_wanted = False
        self._flight_sent = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state={self._state.value}, stage={self._stage.name})"

    # -- public API ----------------------------------------------------------------------------

    @property
    def state(self) -> DtlsState:
        return self._state

    @property
    def config(self) -> DtlsConfig:
        return self._config

    @property
    def is_connected(self) -> bool:
        return self._state is DtlsState.CONNECTED

    @property
    def key_block(self) -> KeyBlock | None:
        """The session's key block once the handshake is complete (secret; never log it)."""
        return self._keys if self._handshake_done else None

    @property
    def kek(self) -> bytes | None:
        """Thread KEK = SHA-256(key block)[:16], once the handshake is complete."""
        keys = self.key_block
        return keys.kek if keys is not None else None

    def _active(self) -> bool:
        return self._state in (DtlsState.HANDSHAKING, DtlsState.CONNECTED)

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[DtlsEvent]:
        out, self._events = self._events, []
        return out

    def next_timeout(self) -> float | None:
        if self._held_alert is not None:
            held = self._held_alert[1]
            return held if self._deadline is None else min(held, self._deadline)
        return self._deadline

    def handle_timeout(self, now: float) -> None:
        if self._held_alert is not None and now >= self._held_alert[1]:
            # Nothing from the peer's handshake since its plaintext alert: take it as real.
            abort = self._alert_abort(self._held_alert[0])
            self._end_failed(abort.error, abort.alert)
            return
        if self._deadline is None or now < self._deadline:
            return
        if self._timeout >= self._config.retransmit_max:
            if self._held_alert is not None:  # the peer's alert says more than a timeout
                abort = self._alert_abort(self._held_alert[0])
                self._end_failed(abort.error, abort.alert)
                return
            self._end_failed(
                DtlsTimeoutError(
                    f"DTLS handshake timed out in {_stage_text(self._stage)}",
                ),
                None,
            )
            return
        self._timeout = min(2 * self._timeout, self._config.retransmit_max)
        try:
            self._transmit_flight(now)
        except _Abort as abort:  # pragma: no cover - only at 2**48 records
            self._end_failed(abort.error, None)
            return
        self._deadline = now + self._timeout

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Process one datagram from the peer. Peer misbehaviour never raises: it is dropped or
        ends the session with a :class:`ConnectionFailed` event."""
        if self._state in (DtlsState.IDLE, DtlsState.CLOSED, DtlsState.FAILED):
            return
        records, _ = parse_datagram_prefix(bytes(data))
        self._retransmit_wanted = False
        self._flight_sent = False
        self._finished_slot = False
        try:
            for rec in records:
                if not self._active():
                    break
                self._receive_record(rec, now)
        except _Abort as abort:
            self._end_failed(abort.error, abort.alert)
            return
        if self._retransmit_wanted and not self._flight_sent and self._flight and self._active():
            min_gap = self._config.retransmit_initial / 8
            if self._last_flight_tx is None or now - self._last_flight_tx >= min_gap:
                self._transmit_flight(now)

    def send(self, data: bytes) -> None:
        """Send one application-data record (one datagram)."""
        if self._state is not DtlsState.CONNECTED:
            raise DtlsNotConnected(f"DTLS session is {self._state.value}, not connected")
        if len(data) > self._config.max_application_data:
            raise InvalidArgument(
                f"application data of {len(data)} bytes exceeds the record limit of "
                f"{self._config.max_application_data}"
            )
        try:
            record = self._record(CONTENT_APPLICATION_DATA, self._write_epoch, bytes(data))
        except _Abort as abort:  # pragma: no cover - only at 2**48 records
            self._end_failed(abort.error, None)
            raise abort.error from None
        self._out.append(record)

    def close(self) -> None:
        """Send close_notify and end the session (no-op if it has already ended)."""
        if self._state in (DtlsState.CLOSED, DtlsState.FAILED):
            return
        if self._state is not DtlsState.IDLE and self._stage is not _Stage.S_LISTEN:
            self._send_alert(ALERT_LEVEL_WARNING, ALERT_CLOSE_NOTIFY)
        self._end(DtlsState.CLOSED)
        self._events.append(ConnectionClosed(by_peer=False))

    # -- record layer --------------------------------------------------------------------------

    def _record(self, content_type: int, epoch: int, plaintext: bytes) -> bytes:
        ws = self._write[epoch]
        seq = ws.next_seq
        if seq > MAX_SEQUENCE_NUMBER:  # pragma: no cover - 2**48 records
            raise _Abort(DtlsProtocolError("DTLS sequence number space exhausted"), None)
        ws.next_seq = seq + 1
        fragment = (
            plaintext
            if ws.cipher is None
            else ws.cipher.encrypt(content_type, DTLS_1_2, epoch, seq, plaintext)
        )
        return DtlsRecord(content_type, DTLS_1_2, epoch, seq, fragment).to_bytes()

    def _send_alert(self, level: int, description: int) -> None:
        self._out.append(
            self._record(CONTENT_ALERT, self._write_epoch, bytes([level, description]))
        )

    def _receive_record(self, rec: DtlsRecord, now: float) -> None:
        if rec.epoch == self._read_epoch:
            plaintext = self._unprotect(rec)
            if plaintext is not None:
                self._dispatch(rec, plaintext, now)
        elif rec.epoch == 1 and self._read_epoch == 0:
            # Protected records that overtook the peer's ChangeCipherSpec: keep a few for later.
            if self._stage is not _Stage.S_LISTEN and (
                len(self._early_records) < self._config.max_early_records
            ):
                self._early_records.append(rec)
        elif (
            rec.epoch < self._read_epoch
            and rec.content_type == CONTENT_HANDSHAKE
            and self._stage is _Stage.DONE
        ):
            # The peer retransmits a flight that began in an older epoch: our last flight (the
            # server's CCS + Finished) was lost.
            self._retransmit_wanted = True

    def _unprotect(self, rec: DtlsRecord) -> bytes | None:
        if self._stage is _Stage.S_LISTEN:
            # Stateless until the cookie is verified: a restarted client begins again at
            # record 0, and a replayed ClientHello only earns another HelloVerifyRequest.
            return rec.fragment if len(rec.fragment) <= MAX_PLAINTEXT_LEN else None
        if not self._replay.is_fresh(rec.sequence_number):
            return None
        cipher = self._read_cipher
        if cipher is None:
            if rec.version not in (DTLS_1_0, DTLS_1_2) or len(rec.fragment) > MAX_PLAINTEXT_LEN:
                return None
            plaintext = rec.fragment
        else:
            if rec.version != DTLS_1_2:
                return None
            finished_slot, self._finished_slot = self._finished_slot, False
            try:
                plaintext = cipher.decrypt(rec)
            except BadRecordMac:
                if (
                    finished_slot
                    and self._stage in _WAITING_FOR_FINISHED
                    and rec.content_type == CONTENT_HANDSHAKE
                ):
                    # The record that follows the peer's CCS in the same datagram is its
                    # Finished; a bad MAC there means the keys differ (as Mbed TLS decides).
                    raise _Abort(
                        DtlsAuthenticationError(
                            "the peer's Finished record failed authentication (wrong password?)",
                            alert=ALERT_BAD_RECORD_MAC,
                        ),
                        ALERT_BAD_RECORD_MAC,
                    ) from None
                # Anything else that does not authenticate -- records that arrived before the
                # epoch began, or in a datagram of their own -- may be forged by anyone who can
                # send to us (joiner traffic is unsecured on the air): dropped, never an end.
                self.bad_records += 1
                return None
            # Only authenticated records move the replay window (RFC 6347 §4.1.2.6): a forged
            # plaintext record with a high sequence number must not make the peer's real ones
            # look old. Epoch 0 duplicates are the handshake layer's to discard.
            self._replay.mark(rec.sequence_number)
        return plaintext

    def _dispatch(self, rec: DtlsRecord, plaintext: bytes, now: float) -> None:
        ctype = rec.content_type
        if ctype == CONTENT_HANDSHAKE:
            self._on_handshake_record(rec, plaintext, now)
            self._held_alert = None  # the peer's handshake goes on: a held alert was not its
        elif ctype == CONTENT_CHANGE_CIPHER_SPEC:
            if plaintext == b"\x01" and rec.epoch == 0:
                self._on_change_cipher_spec(now)
                self._held_alert = None
        elif ctype == CONTENT_ALERT:
            if len(plaintext) == 2 and self._stage is not _Stage.S_LISTEN:
                self._on_alert(plaintext[0], plaintext[1], protected=rec.epoch > 0, now=now)
        elif ctype == CONTENT_APPLICATION_DATA and rec.epoch > 0:
            if self._stage is _Stage.DONE:
                self._events.append(ApplicationData(plaintext))
            elif len(self._early_app_data) < self._config.max_early_records:
                self._early_app_data.append(plaintext)

    def _switch_read_epoch(self, now: float) -> None:
        assert self._pending_read_cipher is not None
        self._read_cipher = self._pending_read_cipher
        self._pending_read_cipher = None
        self._read_epoch += 1
        self._replay = ReplayWindow(64)
        self._ccs_pending = False
        self._stage = _Stage.C_WAIT_FINISHED if self._role == "client" else _Stage.S_WAIT_FINISHED
        early, self._early_records = self._early_records, []
        # Records buffered before the epoch began are verified now; one that does not
        # authenticate is dropped (it cannot be the Finished of this datagram's CCS).
        for rec in early:
            if self._stage not in (_Stage.C_WAIT_FINISHED, _Stage.S_WAIT_FINISHED, _Stage.DONE):
                break
            self._finished_slot = False
            self._receive_record(rec, now)
        self._finished_slot = self._stage in _WAITING_FOR_FINISHED

    # -- handshake layer -----------------------------------------------------------------------

    def _on_handshake_record(self, rec: DtlsRecord, plaintext: bytes, now: float) -> None:
        try:
            frags = parse_fragments(plaintext)
        except ParseError:
            if rec.epoch > 0:
                raise _Abort(
                    DtlsProtocolError("malformed handshake record", alert=ALERT_DECODE_ERROR),
                    ALERT_DECODE_ERROR,
                ) from None
            return  # unauthenticated garbage: drop
        for frag in frags:
            if self._stage is _Stage.S_LISTEN:
                self._listen_fragment(frag, rec, now)
                continue
            result = self._reasm.add(frag, rec.epoch)
            if result is AddResult.OLD and frag.message_seq < self._peer_flight_start:
                self._retransmit_wanted = True  # the peer lost our last flight
        self._process_messages(now)

    def _process_messages(self, now: float) -> None:
        if self._processing:
            return  # the outer loop picks the new messages up
        self._processing = True
        try:
            while self._active():
                msg = self._reasm.pop()
                if msg is None:
                    break
                if self._stage is _Stage.DONE or msg.msg_type == HS_HELLO_REQUEST:
                    continue  # no renegotiation: HelloRequest and post-handshake messages ignored
                self._handle_message_checked(msg, now)
        finally:
            self._processing = False

    def _handle_message_checked(self, msg: HandshakeMessage, now: float) -> None:
        name = _MESSAGE_NAMES.get(msg.msg_type, f"handshake message {msg.msg_type}")
        if (msg.msg_type == HS_FINISHED) != (msg.epoch > 0):
            raise _Abort(
                DtlsProtocolError(f"{name} in epoch {msg.epoch}", alert=ALERT_UNEXPECTED_MESSAGE),
                ALERT_UNEXPECTED_MESSAGE,
            )
        try:
            self._handle_message(msg, now)
        except _Abort:
            raise
        except ParseError as exc:
            raise _Abort(
                DtlsProtocolError(f"malformed {name}: {exc.message}", alert=ALERT_DECODE_ERROR),
                ALERT_DECODE_ERROR,
            ) from None
        except CryptoError as exc:
            raise _handshake_abort(f"{name}: {exc.message}", ALERT_HANDSHAKE_FAILURE) from None

    def _handle_message(self, msg: HandshakeMessage, now: float) -> None:
        raise NotImplementedError

    def _unexpected(self, msg: HandshakeMessage) -> _Abort:
        name = _MESSAGE_NAMES.get(msg.msg_type, f"handshake message {msg.msg_type}")
        return _Abort(
            DtlsProtocolError(
                f"unexpected {name} in {_stage_text(self._stage)}", alert=ALERT_UNEXPECTED_MESSAGE
            ),
            ALERT_UNEXPECTED_MESSAGE,
        )

    def _on_change_cipher_spec(self, now: float) -> None:
        raise NotImplementedError

    def _on_alert(self, level: int, description: int, *, protected: bool, now: float) -> None:
        fatal = level != ALERT_LEVEL_WARNING or description == ALERT_CLOSE_NOTIFY
        if fatal and not protected and self._stage is not _Stage.DONE:
            # Unprotected during the handshake: anyone who can send to us may have forged it
            # (joiner traffic is unsecured on the air). Hold it; it ends the handshake only if
            # the peer's handshake does not go on within the grace (handle_timeout).
            self.unauthenticated_alerts += 1
            if self._held_alert is None:
                self._held_alert = (description, now + self._config.alert_grace)
            return
        if description == ALERT_CLOSE_NOTIFY and self._stage is _Stage.DONE:
            self._send_alert(ALERT_LEVEL_WARNING, ALERT_CLOSE_NOTIFY)
            self._end(DtlsState.CLOSED)
            self._events.append(ConnectionClosed(by_peer=True))
            return
        if not fatal:
            self._events.append(AlertReceived(level, description))
            return
        raise self._alert_abort(description)

    def _alert_abort(self, description: int) -> _Abort:
        """How a fatal alert from the peer ends the session (no alert is sent in answer)."""
        if description == ALERT_CLOSE_NOTIFY:
            return _Abort(
                DtlsPeerAlert("the peer closed the session during the handshake", alert=0), None
            )
        if self._stage in _AFTER_OUR_FINISHED and description in (
            ALERT_BAD_RECORD_MAC,
            ALERT_DECRYPT_ERROR,
        ):
            return _Abort(
                DtlsAuthenticationError(
                    f"the peer rejected our Finished with alert {description} (wrong password?)",
                    alert=description,
                ),
                None,
            )
        return _Abort(
            DtlsPeerAlert(f"the peer sent fatal alert {description}", alert=description), None
        )

    def _add_transcript(self, msg_type: int, message_seq: int, body: bytes) -> None:
        self._transcript += full_message(msg_type, message_seq, body)

    def _take_send_seq(self) -> int:
        seq = self._next_send_seq
        self._next_send_seq += 1
        return seq

    def _derive_keys(self, pre_master: bytes) -> KeyBlock:
        self._master = master_secret(pre_master, self._client_random, self._server_random)
        keys = KeyBlock.from_bytes(
            key_block(self._master, self._client_random, self._server_random, KEY_BLOCK_LEN)
        )
        self._keys = keys
        return keys

    def _verify_data(self, *, from_client: bool) -> bytes:
        assert self._master is not None
        return finished_verify_data(
            self._master, from_client=from_client, handshake_hash=_sha256(bytes(self._transcript))
        )

    def _check_finished(self, msg: HandshakeMessage) -> None:
        expected = self._verify_data(from_client=self._role == "server")
        if len(msg.body) != len(expected):
            raise ParseError("Finished: wrong verify_data length")
        if not _consttime.compare_digest(msg.body, expected):
            raise _Abort(
                DtlsAuthenticationError(
                    "the peer's Finished does not verify (wrong password?)",
                    alert=ALERT_DECRYPT_ERROR,
                ),
                ALERT_DECRYPT_ERROR,
            )
        self._add_transcript(HS_FINISHED, msg.message_seq, msg.body)

    def _complete(self) -> None:
        self._handshake_done = True
        self._held_alert = None
        self._stage = _Stage.DONE
        self._state = DtlsState.CONNECTED
        self._peer_flight_start = self._reasm.next_seq
        self._events.append(HandshakeComplete())
        early, self._early_app_data = self._early_app_data, []
        self._events.extend(ApplicationData(data) for data in early)

    # -- flights and timers --------------------------------------------------------------------

    def _send_flight(self, items: list[_FlightItem], now: float, *, expect_reply: bool) -> None:
        self._flight = items
        self._timeout = self._config.retransmit_initial
        self._transmit_flight(now)
        self._deadline = now + self._timeout if expect_reply else None

    def _transmit_flight(self, now: float) -> None:
        records: list[bytes] = []
        for item in self._flight:
            if item.content_type == CONTENT_CHANGE_CIPHER_SPEC:
                records.append(self._record(CONTENT_CHANGE_CIPHER_SPEC, item.epoch, b"\x01"))
                continue
            for frag in fragment_message(
                item.msg_type, item.message_seq, item.body, self._config.max_fragment(item.epoch)
            ):
                records.append(self._record(CONTENT_HANDSHAKE, item.epoch, frag.to_bytes()))
        datagram = b""
        for rec in records:
            if datagram and len(datagram) + len(rec) > self._config.mtu:
                self._out.append(datagram)
                datagram = b""
            datagram += rec
        if datagram:
            self._out.append(datagram)
        self._last_flight_tx = now
        self._flight_sent = True

    def _end(self, state: DtlsState) -> None:
        self._state = state
        self._stage = _Stage.ENDED
        self._deadline = None
        self._held_alert = None
        self._flight = []
        self._early_records = []
        self._early_app_data = []

    def _end_failed(self, error: DtlsError, alert: int | None) -> None:
        if alert is not None:
            try:
                self._send_alert(ALERT_LEVEL_FATAL, alert)
            except _Abort:  # pragma: no cover - sequence numbers exhausted: say nothing
                pass
        self._end(DtlsState.FAILED)
        self._events.append(ConnectionFailed(error))

    def _listen_fragment(self, frag: HandshakeFragment, rec: DtlsRecord, now: float) -> None:
        raise NotImplementedError


def _stage_text(stage: _Stage) -> str:
    return stage.name.lower().replace("_", " ")


# -- client ------------------------------------------------------------------------------------


class DtlsClient(_DtlsConnection):
    """The DTLS client (a Thread joiner, or a commissioner towards a border agent)."""

    _role = "client"

    def __init__(
        self,
        password: bytes,
        *,
        config: DtlsConfig | None = None,
        rng: Callable[[int], bytes] | None = None,
    ) -> None:
        super().__init__(password, config, rng, _Stage.C_IDLE)
        self._cookie = b""
        self._hello_verify_count = 0
        self._round_one = b""

    def start(self, now: float) -> None:
        """Send the first ClientHello."""
        if self._state is not DtlsState.IDLE:
            raise InvalidArgument("DTLS client already started")
        self._state = DtlsState.HANDSHAKING
        self._client_random = self._rng(_RANDOM_LEN)
        if len(self._client_random) != _RANDOM_LEN:
            raise InvalidArgument("rng returned the wrong number of bytes")
        self._round_one = self._jpake.write_round_one()
        self._stage = _Stage.C_WAIT_SERVER_HELLO
        self._send_client_hello(now)

    def _client_hello(self) -> ClientHello:
        return ClientHello(
            client_version=DTLS_1_2,
            random=self._client_random,
            session_id=b"",
            cookie=self._cookie,
            cipher_suites=(
                CIPHER_SUITE_ECJPAKE_AES_128_CCM_8,
                CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV,
            ),
            compression_methods=b"\x00",
            extensions=(
                Extension(EXT_SUPPORTED_GROUPS, encode_supported_groups((GROUP_SECP256R1,))),
                Extension(EXT_EC_POINT_FORMATS, encode_ec_point_formats((0,))),
                Extension(EXT_ECJPAKE_KEY_KP_PAIR, self._round_one),
            ),
        )

    def _send_client_hello(self, now: float) -> None:
        body = self._client_hello().to_bytes()
        seq = self._take_send_seq()
        self._transcript = bytearray()
        self._add_transcript(HS_CLIENT_HELLO, seq, body)
        self._peer_flight_start = self._reasm.next_seq
        self._send_flight(
            [_FlightItem(0, CONTENT_HANDSHAKE, HS_CLIENT_HELLO, seq, body)], now, expect_reply=True
        )

    def _handle_message(self, msg: HandshakeMessage, now: float) -> None:
        stage = self._stage
        if stage is _Stage.C_WAIT_SERVER_HELLO:
            if msg.msg_type == HS_HELLO_VERIFY_REQUEST:
                self._on_hello_verify_request(msg, now)
            elif msg.msg_type == HS_SERVER_HELLO:
                self._on_server_hello(msg)
            else:
                raise self._unexpected(msg)
        elif stage is _Stage.C_WAIT_SERVER_KEY_EXCHANGE:
            if msg.msg_type != HS_SERVER_KEY_EXCHANGE:
                raise self._unexpected(msg)
            self._jpake.read_round_two(msg.body)
            self._add_transcript(msg.msg_type, msg.message_seq, msg.body)
            self._stage = _Stage.C_WAIT_SERVER_HELLO_DONE
        elif stage is _Stage.C_WAIT_SERVER_HELLO_DONE:
            if msg.msg_type != HS_SERVER_HELLO_DONE:
                raise self._unexpected(msg)
            if msg.body:
                raise ParseError("ServerHelloDone is not empty")
            self._add_transcript(msg.msg_type, msg.message_seq, msg.body)
            self._send_final_flight(now)
        elif stage is _Stage.C_WAIT_FINISHED and msg.msg_type == HS_FINISHED:
            self._check_finished(msg)
            self._flight = []
            self._deadline = None
            self._complete()
        else:
            raise self._unexpected(msg)

    def _on_hello_verify_request(self, msg: HandshakeMessage, now: float) -> None:
        hvr = HelloVerifyRequest.from_bytes(msg.body)
        if hvr.server_version not in (DTLS_1_0, DTLS_1_2):
            raise _handshake_abort(
                f"HelloVerifyRequest version {hvr.server_version:#06x}", ALERT_PROTOCOL_VERSION
            )
        self._hello_verify_count += 1
        if self._hello_verify_count > self._config.max_hello_verify_requests:
            raise _Abort(
                DtlsProtocolError("too many HelloVerifyRequests", alert=ALERT_HANDSHAKE_FAILURE),
                ALERT_HANDSHAKE_FAILURE,
            )
        self._cookie = hvr.cookie
        # The server keeps no state: its next records may reuse sequence numbers it used in the
        # HelloVerifyRequest, so epoch 0 replay detection starts afresh.
        self._replay.reset()
        self._send_client_hello(now)

    def _on_server_hello(self, msg: HandshakeMessage) -> None:
        hello = ServerHello.from_bytes(msg.body)
        if hello.server_version != DTLS_1_2:
            raise _handshake_abort(
                f"server chose version {hello.server_version:#06x}, not DTLS 1.2",
                ALERT_PROTOCOL_VERSION,
            )
        if hello.cipher_suite != CIPHER_SUITE_ECJPAKE_AES_128_CCM_8 or hello.compression_method:
            raise _handshake_abort(
                f"server chose cipher suite {hello.cipher_suite:#06x} / compression "
                f"{hello.compression_method}, which were not offered",
                ALERT_ILLEGAL_PARAMETER,
            )
        if hello.extension(EXT_EXTENDED_MASTER_SECRET) is not None:
            raise _handshake_abort(
                "server sent extended_master_secret, which was not offered",
                ALERT_UNSUPPORTED_EXTENSION,
            )
        reneg = hello.extension(EXT_RENEGOTIATION_INFO)
        if reneg is not None and reneg != b"\x00":
            raise _handshake_abort(
                "non-empty renegotiation_info in the initial handshake", ALERT_HANDSHAKE_FAILURE
            )
        formats = hello.extension(EXT_EC_POINT_FORMATS)
        if formats is not None and POINT_FORMAT_UNCOMPRESSED not in parse_ec_point_formats(formats):
            raise _handshake_abort(
                "server does not accept uncompressed points", ALERT_ILLEGAL_PARAMETER
            )
        round_one = hello.extension(EXT_ECJPAKE_KEY_KP_PAIR)
        if round_one is None:
            raise _handshake_abort(
                "ServerHello lacks the ecjpake_key_kp_pair extension", ALERT_HANDSHAKE_FAILURE
            )
        self._jpake.read_round_one(round_one)
        self._server_random = hello.random
        self._add_transcript(msg.msg_type, msg.message_seq, msg.body)
        self._stage = _Stage.C_WAIT_SERVER_KEY_EXCHANGE

    def _send_final_flight(self, now: float) -> None:
        cke = self._jpake.write_round_two()
        pre_master = self._jpake.derive_secret()
        cke_seq = self._take_send_seq()
        self._add_transcript(HS_CLIENT_KEY_EXCHANGE, cke_seq, cke)
        keys = self._derive_keys(pre_master)
        verify = self._verify_data(from_client=True)
        fin_seq = self._take_send_seq()
        self._add_transcript(HS_FINISHED, fin_seq, verify)
        self._write[1] = _WriteState(CcmRecordCipher(keys.client_write_key, keys.client_write_iv))
        self._write_epoch = 1
        self._pending_read_cipher = CcmRecordCipher(keys.server_write_key, keys.server_write_iv)
        self._stage = _Stage.C_WAIT_CCS
        self._peer_flight_start = self._reasm.next_seq
        self._send_flight(
            [
                _FlightItem(0, CONTENT_HANDSHAKE, HS_CLIENT_KEY_EXCHANGE, cke_seq, cke),
                _FlightItem(0, CONTENT_CHANGE_CIPHER_SPEC),
                _FlightItem(1, CONTENT_HANDSHAKE, HS_FINISHED, fin_seq, verify),
            ],
            now,
            expect_reply=True,
        )

    def _on_change_cipher_spec(self, now: float) -> None:
        if self._stage is _Stage.C_WAIT_CCS:
            self._switch_read_epoch(now)


# -- server ------------------------------------------------------------------------------------


class DtlsServer(_DtlsConnection):
    """The DTLS server side of one session (a border agent, or a commissioner towards a joiner).

    ``transport_id`` identifies the peer for the cookie (OpenThread uses the peer's IPv6
    address). Several servers may share one :class:`CookieJar`.
    """

    _role = "server"

    def __init__(
        self,
        password: bytes,
        *,
        transport_id: bytes,
        cookies: CookieJar | None = None,
        config: DtlsConfig | None = None,
        rng: Callable[[int], bytes] | None = None,
    ) -> None:
        super().__init__(password, config, rng, _Stage.S_LISTEN)
        self._transport_id = bytes(transport_id)
        self._cookies = (
            cookies
            if cookies is not None
            else CookieJar(rng=self._rng, lifetime=self._config.cookie_lifetime)
        )
        self._listen_reasm: HandshakeReassembler | None = None

    def _listen_fragment(self, frag: HandshakeFragment, rec: DtlsRecord, now: float) -> None:
        if frag.msg_type != HS_CLIENT_HELLO or rec.epoch != 0:
            return
        if frag.message_seq > _MAX_CLIENT_HELLO_SEQ:
            return  # a real client is at most a few HelloVerifyRequests into the exchange
        if frag.is_complete:
            body = frag.fragment
        else:
            reasm = self._listen_reasm
            if reasm is None or reasm.next_seq != frag.message_seq:
                reasm = HandshakeReassembler(
                    frag.message_seq,
                    max_message_len=self._config.max_handshake_message,
                    window=1,
                    max_buffered=self._config.max_handshake_message,
                )
                self._listen_reasm = reasm
            reasm.add(frag, 0)
            msg = reasm.pop()
            if msg is None:
                return
            self._listen_reasm = None
            body = msg.body
        try:
            hello = ClientHello.from_bytes(body)
        except ParseError:
            return
        if not self._cookies.check(self._transport_id, hello, now):
            cookie = self._cookies.make(self._transport_id, hello, now)
            self._out.append(_hello_verify_datagram(cookie, frag.message_seq, rec.sequence_number))
            return
        if rec.sequence_number > _MAX_CLIENT_HELLO_RECORD_SEQ:
            return  # a real client starts at record 0; do not inherit an exhausted space
        # Like Mbed TLS: continue the client's record and message sequence numbers.
        self._write[0].next_seq = rec.sequence_number
        self._next_send_seq = frag.message_seq
        self._reasm.reset(frag.message_seq + 1)
        self._accept_client_hello(hello, frag.message_seq, body, now)

    def _accept_client_hello(
        self, hello: ClientHello, message_seq: int, body: bytes, now: float
    ) -> None:
        try:
            server_hello = self._negotiate(hello)
        except ParseError as exc:
            raise _Abort(
                DtlsProtocolError(
                    f"malformed ClientHello: {exc.message}", alert=ALERT_DECODE_ERROR
                ),
                ALERT_DECODE_ERROR,
            ) from None
        except _Abort:
            raise
        except CryptoError as exc:
            raise _handshake_abort(f"ClientHello: {exc.message}", ALERT_HANDSHAKE_FAILURE) from None
        self._transcript = bytearray()
        self._add_transcript(HS_CLIENT_HELLO, message_seq, body)
        ske = self._jpake.write_round_two()
        items = []
        for msg_type, msg_body in (
            (HS_SERVER_HELLO, server_hello.to_bytes()),
            (HS_SERVER_KEY_EXCHANGE, ske),
            (HS_SERVER_HELLO_DONE, b""),
        ):
            seq = self._take_send_seq()
            self._add_transcript(msg_type, seq, msg_body)
            items.append(_FlightItem(0, CONTENT_HANDSHAKE, msg_type, seq, msg_body))
        self._stage = _Stage.S_WAIT_CLIENT_KEY_EXCHANGE
        self._peer_flight_start = self._reasm.next_seq
        self._send_flight(items, now, expect_reply=True)

    def _negotiate(self, hello: ClientHello) -> ServerHello:
        # DTLS versions count down: a client_version numerically above 1.2's is an older DTLS.
        if hello.client_version > DTLS_1_2:
            raise _handshake_abort(
                f"client offers only DTLS version {hello.client_version:#06x}",
                ALERT_PROTOCOL_VERSION,
            )
        if CIPHER_SUITE_ECJPAKE_AES_128_CCM_8 not in hello.cipher_suites or (
            0 not in hello.compression_methods
        ):
            raise _handshake_abort(
                "client does not offer TLS_ECJPAKE_WITH_AES_128_CCM_8 without compression",
                ALERT_HANDSHAKE_FAILURE,
            )
        groups = hello.extension(EXT_SUPPORTED_GROUPS)
        if groups is not None and GROUP_SECP256R1 not in parse_supported_groups(groups):
            raise _handshake_abort("client does not support secp256r1", ALERT_HANDSHAKE_FAILURE)
        formats = hello.extension(EXT_EC_POINT_FORMATS)
        if formats is not None and POINT_FORMAT_UNCOMPRESSED not in parse_ec_point_formats(formats):
            raise _handshake_abort(
                "client does not accept uncompressed points", ALERT_ILLEGAL_PARAMETER
            )
        reneg = hello.extension(EXT_RENEGOTIATION_INFO)
        if reneg is not None and reneg != b"\x00":
            raise _handshake_abort(
                "non-empty renegotiation_info in the initial handshake", ALERT_HANDSHAKE_FAILURE
            )
        round_one = hello.extension(EXT_ECJPAKE_KEY_KP_PAIR)
        if round_one is None:
            raise _handshake_abort(
                "ClientHello lacks the ecjpake_key_kp_pair extension", ALERT_HANDSHAKE_FAILURE
            )
        self._jpake.read_round_one(round_one)
        self._client_random = hello.random
        self._server_random = self._rng(_RANDOM_LEN)
        if len(self._server_random) != _RANDOM_LEN:
            raise InvalidArgument("rng returned the wrong number of bytes")
        extensions: list[Extension] = []
        if reneg is not None or CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV in hello.cipher_suites:
            extensions.append(Extension(EXT_RENEGOTIATION_INFO, b"\x00"))  # RFC 5746 §3.6
        if formats is not None:
            extensions.append(Extension(EXT_EC_POINT_FORMATS, encode_ec_point_formats((0,))))
        extensions.append(Extension(EXT_ECJPAKE_KEY_KP_PAIR, self._jpake.write_round_one()))
        return ServerHello(
            server_version=DTLS_1_2,
            random=self._server_random,
            session_id=b"",  # no session cache, no resumption
            cipher_suite=CIPHER_SUITE_ECJPAKE_AES_128_CCM_8,
            compression_method=0,
            extensions=tuple(extensions),
        )

    def _handle_message(self, msg: HandshakeMessage, now: float) -> None:
        stage = self._stage
        if stage is _Stage.S_WAIT_CLIENT_KEY_EXCHANGE and msg.msg_type == HS_CLIENT_KEY_EXCHANGE:
            self._jpake.read_round_two(msg.body)
            pre_master = self._jpake.derive_secret()
            self._add_transcript(msg.msg_type, msg.message_seq, msg.body)
            keys = self._derive_keys(pre_master)
            self._pending_read_cipher = CcmRecordCipher(keys.client_write_key, keys.client_write_iv)
            self._write[1] = _WriteState(
                CcmRecordCipher(keys.server_write_key, keys.server_write_iv)
            )
            self._stage = _Stage.S_WAIT_CCS
            if self._ccs_pending:
                self._switch_read_epoch(now)
        elif stage is _Stage.S_WAIT_FINISHED and msg.msg_type == HS_FINISHED:
            self._check_finished(msg)
            verify = self._verify_data(from_client=False)
            fin_seq = self._take_send_seq()
            self._add_transcript(HS_FINISHED, fin_seq, verify)
            self._write_epoch = 1
            self._send_flight(
                [
                    _FlightItem(0, CONTENT_CHANGE_CIPHER_SPEC),
                    _FlightItem(1, CONTENT_HANDSHAKE, HS_FINISHED, fin_seq, verify),
                ],
                now,
                expect_reply=False,
            )
            self._complete()
        else:
            raise self._unexpected(msg)

    @property
    def awaiting_final_flight(self) -> bool:
        """The ServerHello flight is out and the client's ClientKeyExchange, CCS and Finished
        -- the flight that earns the client its verdict on the password -- are due."""
        return self._stage in (
            _Stage.S_WAIT_CLIENT_KEY_EXCHANGE,
            _Stage.S_WAIT_CCS,
            _Stage.S_WAIT_FINISHED,
        )

    def _on_change_cipher_spec(self, now: float) -> None:
        if self._stage is _Stage.S_WAIT_CCS:
            self._switch_read_epoch(now)
        elif self._stage is _Stage.S_WAIT_CLIENT_KEY_EXCHANGE:
            self._ccs_pending = True  # reordered ahead of the ClientKeyExchange
