"""DTLS 1.2 / TLS_ECJPAKE_WITH_AES_128_CCM_8 client and server: handshake, cookies, timers,
fragmentation, failures, alerts, fuzzing, and tshark as an independent decoder.

Lossy-network runs are in ``test_dtls_sim.py``; record-protection known answers (OpenSSL capture,
published PRF vector) in ``test_dtls_vectors.py``.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto.dtls import (
    ALERT_BAD_RECORD_MAC,
    ALERT_HANDSHAKE_FAILURE,
    ALERT_ILLEGAL_PARAMETER,
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    CookieJar,
    DtlsAuthenticationError,
    DtlsClient,
    DtlsConfig,
    DtlsHandshakeError,
    DtlsNotConnected,
    DtlsPeerAlert,
    DtlsServer,
    DtlsState,
    DtlsTimeoutError,
    HandshakeComplete,
    KeyBlock,
    check_client_hello,
)
from gateway.crypto.dtls_handshake import (
    EXT_ECJPAKE_KEY_KP_PAIR,
    HS_CLIENT_HELLO,
    HS_CLIENT_KEY_EXCHANGE,
    HS_FINISHED,
    HS_HELLO_VERIFY_REQUEST,
    HS_SERVER_HELLO,
    HS_SERVER_HELLO_DONE,
    HS_SERVER_KEY_EXCHANGE,
    ClientHello,
    Extension,
    HelloVerifyRequest,
    full_message,
    parse_fragments,
)
from gateway.crypto.dtls_record import (
    CONTENT_ALERT,
    CONTENT_APPLICATION_DATA,
    CONTENT_CHANGE_CIPHER_SPEC,
    CONTENT_HANDSHAKE,
    DtlsRecord,
    parse_datagram,
)
from gateway.crypto.thread_keys import kek_from_key_block
from gateway.crypto.tls_prf import key_block
from gateway.errors import InvalidArgument
from tests.crypto.test_dtls_sim import (
    CLIENT_ADDR,
    PASSWORD,
    SERVER_ADDR,
    Trace,
    make_pair,
    run_lossless,
    seeded_rng,
    shuttle,
)


def _records(trace: Trace, direction: str) -> list[DtlsRecord]:
    return [r for d, dg in trace.datagrams if d == direction for r in parse_datagram(dg)]


def _handshake_types(records: list[DtlsRecord]) -> list[int]:
    return [
        f.msg_type
        for r in records
        if r.content_type == CONTENT_HANDSHAKE and r.epoch == 0
        for f in parse_fragments(r.fragment)
    ]


# -- the happy path ------------------------------------------------------------------------------


def test_handshake_and_application_data_both_ways() -> None:
    client, server = make_pair()
    trace = run_lossless(client, server)
    assert trace.client_events == [HandshakeComplete()]
    assert trace.server_events == [HandshakeComplete()]
    assert client.state is server.state is DtlsState.CONNECTED

    client.send(b"COAP JOIN_FIN.req")
    server.send(b"COAP JOIN_FIN.rsp")
    shuttle(client, server, trace, 1.0)
    assert trace.server_events[-1] == ApplicationData(b"COAP JOIN_FIN.req")
    assert trace.client_events[-1] == ApplicationData(b"COAP JOIN_FIN.rsp")
    # application data is protected: the plaintext is nowhere on the wire
    assert not any(b"JOIN_FIN" in dg for _, dg in trace.datagrams)
    assert all(
        r.epoch == 1 for r in _records(trace, "c2s") if r.content_type == CONTENT_APPLICATION_DATA
    )


def test_message_flow_matches_rfc6347_and_mbedtls_framing() -> None:
    client, server = make_pair()
    trace = run_lossless(client, server)
    c2s, s2c = _records(trace, "c2s"), _records(trace, "s2c")
    assert _handshake_types(c2s) == [HS_CLIENT_HELLO, HS_CLIENT_HELLO, HS_CLIENT_KEY_EXCHANGE]
    assert _handshake_types(s2c) == [
        HS_HELLO_VERIFY_REQUEST,
        HS_SERVER_HELLO,
        HS_SERVER_KEY_EXCHANGE,
        HS_SERVER_HELLO_DONE,
    ]
    assert [r.content_type for r in c2s][-2:] == [CONTENT_CHANGE_CIPHER_SPEC, CONTENT_HANDSHAKE]
    assert [(r.content_type, r.epoch) for r in s2c][-2:] == [
        (CONTENT_CHANGE_CIPHER_SPEC, 0),
        (CONTENT_HANDSHAKE, 1),
    ]
    frags = {
        f.msg_type: f
        for r in c2s + s2c
        if r.content_type == CONTENT_HANDSHAKE and r.epoch == 0
        for f in parse_fragments(r.fragment)
    }
    # thread-meshcop.md §6.2/§6.3: EC-JPAKE round one 330 bytes in ext 256; ServerKeyExchange is
    # 03 00 17 + 165 bytes; ClientKeyExchange 165 bytes with no extra length prefix.
    hello = ClientHello.from_bytes(frags[HS_CLIENT_HELLO].fragment)
    ext = hello.extension(EXT_ECJPAKE_KEY_KP_PAIR)
    assert ext is not None and len(ext) == 330
    assert hello.cipher_suites == (0xC0FF, 0x00FF)
    assert hello.extension(10) == bytes.fromhex("00020017")  # supported_groups: secp256r1
    assert hello.extension(11) == bytes.fromhex("0100")  # ec_point_formats: uncompressed
    ske = frags[HS_SERVER_KEY_EXCHANGE].fragment
    assert ske[:3] == b"\x03\x00\x17" and len(ske) == 168
    assert len(frags[HS_CLIENT_KEY_EXCHANGE].fragment) == 165
    assert frags[HS_SERVER_HELLO_DONE].fragment == b""
    # message_seq: HVR copies CH1's (0); ServerHello copies CH2's (1), as Mbed TLS does.
    seqs = [
        (f.msg_type, f.message_seq)
        for r in s2c
        if r.content_type == CONTENT_HANDSHAKE and r.epoch == 0
        for f in parse_fragments(r.fragment)
    ]
    assert seqs == [(3, 0), (2, 1), (12, 2), (14, 3)]
    # HVR record reuses CH1's record sequence number; later server records continue CH2's.
    assert s2c[0].sequence_number == c2s[0].sequence_number
    assert s2c[1].sequence_number == c2s[1].sequence_number
    # Every record fits OpenThread's MBEDTLS_SSL_MAX_CONTENT_LEN (768) and every datagram the
    # IPv6 minimum MTU minus headers.
    assert all(len(r.fragment) <= 768 for r in c2s + s2c)
    assert all(len(dg) <= 1232 for _, dg in trace.datagrams)


def test_key_export_and_kek() -> None:
    client, server = make_pair()
    assert (client.key_block, client.kek) == (None, None)  # nothing before the handshake
    run_lossless(client, server)
    keys = client.key_block
    assert keys is not None and keys == server.key_block
    assert len(keys.to_bytes()) == 40 and KeyBlock.from_bytes(keys.to_bytes()) == keys
    # key block = PRF(master, "key expansion", server_random + client_random)[:40]
    assert keys.to_bytes() == key_block(
        client._master or b"", client._client_random, client._server_random, 40
    )
    assert client.kek == kek_from_key_block(keys.to_bytes()) == server.kek
    assert client.kek is not None and len(client.kek) == 16
    for secret in (keys.client_write_key, keys.server_write_key):
        assert secret.hex() not in repr(keys)


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    password = b"SECRETPSKD123"
    client, server = make_pair(client_password=password, server_password=b"OTHERPSKD456")
    trace = run_lossless(client, server)
    texts = [repr(client), repr(server), repr(trace.client_events), repr(trace.server_events)]
    for ev in trace.client_events + trace.server_events:
        if isinstance(ev, ConnectionFailed):
            texts += [str(ev.error), repr(ev.error.to_dict())]
    assert not any("SECRETPSKD" in t or password.hex() in t for t in texts)
    assert "secret" not in repr(ApplicationData(b"secret"))


# -- failures ------------------------------------------------------------------------------------


def test_wrong_password_fails_cleanly_on_both_sides() -> None:
    client, server = make_pair(client_password=b"J01NME", server_password=b"J01NMF")
    trace = run_lossless(client, server)
    (s_fail,) = trace.server_events  # the server verified the client's Finished: at once
    # The client hears the server's plaintext alert; it holds it for the grace (it could be
    # forged), and with nothing more from the server takes it as the verdict.
    assert trace.client_events == [] and client.unauthenticated_alerts == 1
    assert client.next_timeout() == DtlsConfig().alert_grace
    client.handle_timeout(DtlsConfig().alert_grace)
    (c_fail,) = client.events()
    assert isinstance(c_fail, ConnectionFailed) and isinstance(s_fail, ConnectionFailed)
    assert isinstance(c_fail.error, DtlsAuthenticationError)
    assert isinstance(s_fail.error, DtlsAuthenticationError)
    assert c_fail.error.code == s_fail.error.code == "DTL002"
    assert s_fail.error.alert == c_fail.error.alert == ALERT_BAD_RECORD_MAC
    assert client.state is server.state is DtlsState.FAILED
    assert client.next_timeout() is None and server.next_timeout() is None
    # the server's fatal alert (plaintext: it never switched its write epoch) is the last datagram
    direction, last = trace.datagrams[-1]
    (alert,) = parse_datagram(last)
    assert direction == "s2c" and alert.content_type == CONTENT_ALERT
    assert alert.epoch == 0 and alert.fragment == bytes([2, ALERT_BAD_RECORD_MAC])
    with pytest.raises(DtlsNotConnected):
        client.send(b"x")


def test_wrong_finished_with_good_mac_is_decrypt_error() -> None:
    """A Finished that decrypts but whose verify_data is wrong (here: the server's, corrupted in
    our own code path by patching the master secret after the client derived its keys)."""
    client, server = make_pair()
    client.start(0.0)
    for _ in range(2):  # CH1 -> HVR -> CH2 -> server flight
        for d in client.datagrams_to_send():
            server.receive_datagram(d, 0.0)
        for d in server.datagrams_to_send():
            client.receive_datagram(d, 0.0)
    flight3 = client.datagrams_to_send()
    assert client._master is not None
    client._master = bytes(48)  # the server's Finished can no longer verify on the client
    for d in flight3:
        server.receive_datagram(d, 0.0)
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.0)
    (fail,) = client.events()
    assert isinstance(fail, ConnectionFailed) and isinstance(fail.error, DtlsAuthenticationError)
    assert fail.error.alert == 51  # decrypt_error (RFC 5246 §7.4.9)


def test_retransmission_backoff_and_timeout() -> None:
    client = DtlsClient(PASSWORD, rng=seeded_rng(7))  # OpenThread's 8 s / 60 s
    client.start(100.0)
    sends = [100.0] if client.datagrams_to_send() else []
    deadlines = []
    while client.next_timeout() is not None:
        t = client.next_timeout()
        assert t is not None
        deadlines.append(t)
        client.handle_timeout(t - 0.001)  # not yet due: nothing happens
        assert not client.datagrams_to_send()
        client.handle_timeout(t)
        if client.datagrams_to_send():
            sends.append(t)
    assert sends == [100.0, 108.0, 124.0, 156.0]  # 8, 16, 32 s
    assert deadlines[-1] == 216.0  # then 60 s (capped), then give up
    (fail,) = client.events()
    assert isinstance(fail, ConnectionFailed) and isinstance(fail.error, DtlsTimeoutError)


def test_every_retransmission_repeats_the_same_client_hello() -> None:
    client = DtlsClient(PASSWORD, rng=seeded_rng(8), config=DtlsConfig(retransmit_initial=1.0))
    client.start(0.0)
    first = parse_datagram(client.datagrams_to_send()[0])[0]
    client.handle_timeout(1.0)
    again = parse_datagram(client.datagrams_to_send()[0])[0]
    assert again.sequence_number == first.sequence_number + 1  # new record number
    assert again.fragment == first.fragment  # same message, same message_seq


def test_peer_fatal_alert_during_handshake() -> None:
    client, server = make_pair()
    client.start(0.0)
    client.datagrams_to_send()
    client.receive_datagram(DtlsRecord(CONTENT_ALERT, 0xFEFD, 0, 0, b"\x02\x28").to_bytes(), 0.1)
    assert client.events() == [] and client.next_timeout() == 0.1 + DtlsConfig().alert_grace
    client.handle_timeout(0.1 + DtlsConfig().alert_grace)  # the peer said nothing more
    (fail,) = client.events()
    assert isinstance(fail, ConnectionFailed) and isinstance(fail.error, DtlsPeerAlert)
    assert fail.error.alert == ALERT_HANDSHAKE_FAILURE
    assert not client.datagrams_to_send()  # no alert in answer to an alert


@pytest.mark.parametrize("alert", [b"\x02\x28", b"\x02\x14", b"\x01\x00", b"\x02\x33"])
@pytest.mark.parametrize("victim", ["client", "server"])
def test_forged_plaintext_alerts_do_not_end_a_handshake(alert: bytes, victim: str) -> None:
    """Plaintext fatal alerts and close_notify, forged in between every flight of a correct
    handshake (as anyone in radio range can send to a joiner's handshake), do not end it: both
    sides connect. Fails on the code before issue 16, which ended the handshake at the first
    plaintext fatal alert."""
    client, server = make_pair()
    client.start(0.0)
    target = client if victim == "client" else server
    forged = 0
    for _ in range(6):
        for d in client.datagrams_to_send():
            server.receive_datagram(d, 0.0)
        if target.state is DtlsState.HANDSHAKING:
            rec = DtlsRecord(CONTENT_ALERT, 0xFEFD, 0, 1000 + forged, alert)
            target.receive_datagram(rec.to_bytes(), 0.0)
            forged += 1
        for d in server.datagrams_to_send():
            client.receive_datagram(d, 0.0)
    assert client.is_connected and server.is_connected
    assert target.unauthenticated_alerts >= 1 and client.next_timeout() is None
    assert not [e for e in client.events() + server.events() if isinstance(e, ConnectionFailed)]


def test_warning_alert_is_reported_and_ignored() -> None:
    client, server = make_pair()
    run_lossless(client, server)
    server._send_alert(1, 100)  # no_renegotiation, a warning
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 1.0)
    assert client.events() == [AlertReceived(1, 100)]
    assert client.is_connected


def test_server_rejects_client_without_ecjpake_suite_or_extension() -> None:
    jar = CookieJar(rng=seeded_rng(1))
    for suites, extensions, alert in (
        ((0xC0A8,), (Extension(EXT_ECJPAKE_KEY_KP_PAIR, b"x"),), ALERT_HANDSHAKE_FAILURE),
        ((0xC0FF,), (Extension(10, bytes.fromhex("00020018")),), ALERT_HANDSHAKE_FAILURE),
        ((0xC0FF,), (), ALERT_HANDSHAKE_FAILURE),
        ((0xC0FF,), (Extension(EXT_ECJPAKE_KEY_KP_PAIR, b"\x41" * 5),), 50),  # decode_error
    ):
        hello = ClientHello(0xFEFD, bytes(32), b"", b"", suites, b"\x00", extensions)
        hello = ClientHello(
            0xFEFD,
            bytes(32),
            b"",
            jar.make(CLIENT_ADDR, hello, 0.0),
            suites,
            b"\x00",
            extensions,
        )
        server = DtlsServer(PASSWORD, transport_id=CLIENT_ADDR, cookies=jar, rng=seeded_rng(2))
        record = DtlsRecord(
            CONTENT_HANDSHAKE, 0xFEFD, 0, 1, full_message(HS_CLIENT_HELLO, 1, hello.to_bytes())
        )
        server.receive_datagram(record.to_bytes(), 0.0)
        (fail,) = server.events()
        assert isinstance(fail, ConnectionFailed)
        assert fail.error.alert == alert
        (sent,) = parse_datagram(server.datagrams_to_send()[0])
        assert sent.content_type == CONTENT_ALERT and sent.fragment == bytes([2, alert])


def test_client_rejects_server_hello_with_other_suite() -> None:
    client, server = make_pair()
    client.start(0.0)
    for d in client.datagrams_to_send():
        server.receive_datagram(d, 0.0)
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.0)  # HVR
    for d in client.datagrams_to_send():
        server.receive_datagram(d, 0.0)
    (flight,) = server.datagrams_to_send()
    tampered = flight.replace(b"\x00\xc0\xff\x00", b"\x00\xc0\xa8\x00", 1)
    assert tampered != flight
    client.receive_datagram(tampered, 0.0)
    (fail,) = client.events()
    assert isinstance(fail, ConnectionFailed) and isinstance(fail.error, DtlsHandshakeError)
    (alert,) = parse_datagram(client.datagrams_to_send()[0])
    assert alert.fragment == bytes([2, ALERT_ILLEGAL_PARAMETER])


# -- cookies -------------------------------------------------------------------------------------


def test_cookie_exchange_resends_identical_round_one() -> None:
    client, server = make_pair()
    trace = run_lossless(client, server)
    c2s = [r for r in _records(trace, "c2s") if r.content_type == CONTENT_HANDSHAKE]
    ch1_frag = parse_fragments(c2s[0].fragment)[0]
    ch2_frag = parse_fragments(c2s[1].fragment)[0]
    ch1 = ClientHello.from_bytes(ch1_frag.fragment)
    ch2 = ClientHello.from_bytes(ch2_frag.fragment)
    (hvr_rec,) = parse_datagram(trace.datagrams[1][1])
    hvr = HelloVerifyRequest.from_bytes(parse_fragments(hvr_rec.fragment)[0].fragment)
    assert ch1.cookie == b"" and ch2.cookie == hvr.cookie and len(hvr.cookie) == 32
    assert hvr.server_version == 0xFEFF  # RFC 6347 §4.2.1 SHOULD
    assert (ch1_frag.message_seq, ch2_frag.message_seq) == (0, 1)
    assert ch2.random == ch1.random
    assert ch2.extension(EXT_ECJPAKE_KEY_KP_PAIR) == ch1.extension(EXT_ECJPAKE_KEY_KP_PAIR)
    assert ch2.cookie_input() == ch1.cookie_input()


def _client_hello_datagram(seed: int = 1) -> tuple[DtlsClient, bytes]:
    client = DtlsClient(PASSWORD, rng=seeded_rng(seed))
    client.start(0.0)
    (datagram,) = client.datagrams_to_send()
    return client, datagram


def test_stateless_listener_with_shared_cookie_jar() -> None:
    jar = CookieJar(rng=seeded_rng(9))
    client, ch1 = _client_hello_datagram()
    first = check_client_hello(ch1, CLIENT_ADDR, jar, 10.0)
    assert first.verdict == "hello_verify_request"
    client.receive_datagram(first.reply, 10.0)
    (ch2,) = client.datagrams_to_send()
    assert check_client_hello(ch2, CLIENT_ADDR, jar, 11.0).verdict == "verified"
    # the cookie is bound to the client's address ...
    assert check_client_hello(ch2, SERVER_ADDR, jar, 11.0).verdict == "hello_verify_request"
    # ... and garbage is dropped without an answer
    assert check_client_hello(b"\x16\xfe\xfd garbage", CLIENT_ADDR, jar, 11.0).verdict == "drop"
    server = DtlsServer(PASSWORD, transport_id=CLIENT_ADDR, cookies=jar, rng=seeded_rng(3))
    server.receive_datagram(ch2, 11.0)
    trace = Trace()
    shuttle(client, server, trace, 11.0)
    assert client.is_connected and server.is_connected


def test_cookie_lifetime_and_rotation() -> None:
    jar = CookieJar(rng=seeded_rng(4), lifetime=60.0)
    hello = ClientHello(0xFEFD, bytes(32), b"", b"", (0xC0FF,), b"\x00", None)

    def with_cookie(t: float) -> ClientHello:
        return ClientHello(
            0xFEFD, bytes(32), b"", jar.make(CLIENT_ADDR, hello, t), (0xC0FF,), b"\x00", None
        )

    h = with_cookie(1000.0)
    assert jar.check(CLIENT_ADDR, h, 1000.0)
    assert jar.check(CLIENT_ADDR, h, 1059.0)  # 59 s old: still valid, secret not rotated yet
    h2 = with_cookie(1059.0)
    assert jar.check(CLIENT_ADDR, h2, 1070.0)  # rotated at 1070: still valid via the old secret
    assert not jar.check(CLIENT_ADDR, h, 1070.0)  # too old
    assert not jar.check(CLIENT_ADDR, h2, 1200.0)
    tampered = ClientHello(0xFEFD, bytes(31) + b"\x01", b"", h2.cookie, (0xC0FF,), b"\x00", None)
    assert not jar.check(CLIENT_ADDR, tampered, 1070.0)  # other random: other cookie
    assert not jar.check(CLIENT_ADDR, hello, 1070.0)  # no cookie


def test_server_answers_every_cookieless_hello_without_state() -> None:
    server = DtlsServer(PASSWORD, transport_id=CLIENT_ADDR, rng=seeded_rng(1))
    for seed in range(3):
        _, ch1 = _client_hello_datagram(seed)
        server.receive_datagram(ch1, 0.0)
        (hvr,) = server.datagrams_to_send()
        assert _handshake_types(parse_datagram(hvr)) == [HS_HELLO_VERIFY_REQUEST]
    assert server.state is DtlsState.HANDSHAKING and server.next_timeout() is None


def test_server_ignores_client_hello_at_absurd_record_number() -> None:
    """Mbed TLS continues the client's record numbers; a hostile client must not make us start
    next to the end of the 48-bit space."""
    client, server = make_pair()
    client.start(0.0)
    (ch1,) = client.datagrams_to_send()
    server.receive_datagram(ch1, 0.0)
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.0)
    (ch2,) = client.datagrams_to_send()
    (rec,) = parse_datagram(ch2)
    hostile = DtlsRecord(rec.content_type, rec.version, 0, (1 << 48) - 1, rec.fragment)
    server.receive_datagram(hostile.to_bytes(), 0.0)
    assert not server.datagrams_to_send() and server.next_timeout() is None
    server.receive_datagram(ch2, 0.0)  # the genuine one still works
    shuttle(client, server, Trace(), 0.0)
    assert client.is_connected and server.is_connected


def test_client_follows_a_second_hello_verify_request() -> None:
    """A server whose secret rotated answers the cookie-carrying ClientHello with a new HVR."""
    client, server = make_pair()
    client.start(0.0)
    (ch1,) = client.datagrams_to_send()
    server.receive_datagram(ch1, 0.0)
    (hvr1,) = server.datagrams_to_send()
    client.receive_datagram(hvr1, 0.0)
    (ch2,) = client.datagrams_to_send()
    stranger = DtlsServer(PASSWORD, transport_id=CLIENT_ADDR, rng=seeded_rng(77))
    stranger.receive_datagram(ch2, 0.0)  # another jar: the cookie is not valid here
    (hvr2,) = stranger.datagrams_to_send()
    client.receive_datagram(hvr2, 0.0)
    (ch3,) = client.datagrams_to_send()
    (frag,) = parse_fragments(parse_datagram(ch3)[0].fragment)
    assert frag.message_seq == 2
    stranger.receive_datagram(ch3, 0.0)
    shuttle(client, stranger, Trace(), 0.0)
    assert client.is_connected and stranger.is_connected


# -- reordering, duplicates, early epoch-1 records, lost last flight ------------------------------


def _to_handshake_end(client: DtlsClient, server: DtlsServer) -> list[bytes]:
    """Run to the point where the client has sent its final flight; return that flight."""
    client.start(0.0)
    for _ in range(2):
        for d in client.datagrams_to_send():
            server.receive_datagram(d, 0.0)
        for d in server.datagrams_to_send():
            client.receive_datagram(d, 0.0)
    return client.datagrams_to_send()


def test_server_flight_reversed_and_duplicated() -> None:
    client, server = make_pair()
    client.start(0.0)
    for d in client.datagrams_to_send():
        server.receive_datagram(d, 0.0)
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.0)
    for d in client.datagrams_to_send():
        server.receive_datagram(d, 0.0)
    (flight,) = server.datagrams_to_send()
    records = parse_datagram(flight)
    assert len(records) == 3
    for rec in [*reversed(records), *records]:
        client.receive_datagram(rec.to_bytes(), 0.1)
    final = client.datagrams_to_send()
    assert len(final) == 1  # the duplicates caused no retransmission
    for d in final:
        server.receive_datagram(d, 0.2)
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.2)
    assert client.is_connected and server.is_connected


def test_epoch1_records_before_change_cipher_spec_are_buffered() -> None:
    client, server = make_pair()
    (flight3,) = _to_handshake_end(client, server)
    cke, ccs, fin = parse_datagram(flight3)
    assert (cke.epoch, ccs.content_type, fin.epoch) == (0, CONTENT_CHANGE_CIPHER_SPEC, 1)
    # Finished first, then CCS, then the ClientKeyExchange it depends on.
    for rec in (fin, ccs, cke):
        server.receive_datagram(rec.to_bytes(), 0.1)
    assert server.is_connected
    assert server.events() == [HandshakeComplete()]


def test_application_data_overtaking_finished_is_delivered_after_it() -> None:
    client, server = make_pair()
    (flight3,) = _to_handshake_end(client, server)
    cke, ccs, fin = parse_datagram(flight3)
    for rec in (cke, ccs):
        server.receive_datagram(rec.to_bytes(), 0.1)
    # fabricate an epoch-1 record from the client as it would send after connecting
    client_keys = client._keys
    assert client_keys is not None
    early = client._record(CONTENT_APPLICATION_DATA, 1, b"early bird")
    server.receive_datagram(early, 0.1)
    assert server.events() == []
    server.receive_datagram(fin.to_bytes(), 0.2)
    assert server.events() == [HandshakeComplete(), ApplicationData(b"early bird")]


def test_lost_server_final_flight_is_retransmitted_on_client_retransmission() -> None:
    client, server = make_pair()
    for d in _to_handshake_end(client, server):
        server.receive_datagram(d, 0.0)
    assert server.is_connected
    server.datagrams_to_send()  # CCS + Finished lost
    timeout = client.next_timeout()
    assert timeout == 8.0
    client.handle_timeout(timeout)
    for d in client.datagrams_to_send():
        server.receive_datagram(d, timeout)
    resent = server.datagrams_to_send()
    assert resent, "the server must answer a repeated final client flight"
    for d in resent:
        client.receive_datagram(d, timeout)
    assert client.is_connected and client.next_timeout() is None


def test_replayed_application_record_is_dropped() -> None:
    client, server = make_pair()
    run_lossless(client, server)
    client.send(b"once")
    (d,) = client.datagrams_to_send()
    server.receive_datagram(d, 1.0)
    server.receive_datagram(d, 1.1)
    assert server.events() == [ApplicationData(b"once")]


def test_bad_mac_after_handshake_is_dropped_silently() -> None:
    client, server = make_pair()
    run_lossless(client, server)
    client.send(b"payload")
    (d,) = client.datagrams_to_send()
    bad = bytearray(d)
    bad[-1] ^= 0x80
    server.receive_datagram(bytes(bad), 1.0)
    assert server.events() == [] and server.is_connected and not server.datagrams_to_send()
    server.receive_datagram(d, 1.0)  # the genuine record still gets through
    assert server.events() == [ApplicationData(b"payload")]


def test_several_records_in_one_datagram() -> None:
    client, server = make_pair()
    run_lossless(client, server)
    client.send(b"one")
    client.send(b"two")
    server.receive_datagram(b"".join(client.datagrams_to_send()), 1.0)
    assert server.events() == [ApplicationData(b"one"), ApplicationData(b"two")]


# -- fragmentation --------------------------------------------------------------------------------


def test_fragmentation_with_small_mtu() -> None:
    config = DtlsConfig(mtu=100)
    client, server = make_pair(config=config)
    trace = run_lossless(client, server)
    assert client.is_connected and server.is_connected
    assert all(len(dg) <= 100 for _, dg in trace.datagrams)
    frags = [
        f
        for r in _records(trace, "c2s")
        if r.content_type == CONTENT_HANDSHAKE and r.epoch == 0
        for f in parse_fragments(r.fragment)
    ]
    hello_frags = [f for f in frags if f.msg_type == HS_CLIENT_HELLO and f.message_seq == 1]
    assert len(hello_frags) >= 5 and not any(f.is_complete for f in hello_frags)
    client.send(b"x" * config.max_application_data)
    for d in client.datagrams_to_send():
        assert len(d) <= 100
        server.receive_datagram(d, 1.0)
    assert server.events() == [ApplicationData(b"x" * config.max_application_data)]
    with pytest.raises(InvalidArgument):
        client.send(b"x" * (config.max_application_data + 1))


def test_default_application_data_limit_is_openthreads_768() -> None:
    client, server = make_pair()
    run_lossless(client, server)
    assert client.config.max_application_data == 768
    client.send(bytes(768))
    with pytest.raises(InvalidArgument):
        client.send(bytes(769))


# -- close_notify ----------------------------------------------------------------------------------


@pytest.mark.parametrize("closer", ["client", "server"])
def test_close_notify_both_ways(closer: str) -> None:
    client, server = make_pair()
    run_lossless(client, server)
    first, second = (client, server) if closer == "client" else (server, client)
    first.close()
    assert first.events() == [ConnectionClosed(by_peer=False)]
    (notify,) = first.datagrams_to_send()
    (rec,) = parse_datagram(notify)
    assert rec.content_type == CONTENT_ALERT and rec.epoch == 1  # protected
    second.receive_datagram(notify, 1.0)
    assert second.events() == [ConnectionClosed(by_peer=True)]
    assert second.state is first.state is DtlsState.CLOSED
    (reply,) = second.datagrams_to_send()  # RFC 5246 §7.2.1: answer with close_notify
    first.receive_datagram(reply, 1.0)
    assert first.events() == [] and not first.datagrams_to_send()
    with pytest.raises(DtlsNotConnected):
        first.send(b"late")
    first.close()  # idempotent
    assert first.events() == []


def test_unauthenticated_close_notify_is_ignored_after_handshake() -> None:
    client, server = make_pair()
    run_lossless(client, server)
    client.receive_datagram(DtlsRecord(CONTENT_ALERT, 0xFEFD, 0, 99, b"\x01\x00").to_bytes(), 1.0)
    assert client.is_connected and client.events() == []


# -- hostile input ---------------------------------------------------------------------------------


def _assert_sane(endpoint: DtlsClient | DtlsServer) -> None:
    assert endpoint.state in DtlsState
    for ev in endpoint.events():
        if isinstance(ev, ConnectionFailed):
            assert ev.error.code.startswith("DTL")
    endpoint.datagrams_to_send()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_fuzz_receive_datagram_raw(datagrams: list[bytes]) -> None:
    server = DtlsServer(PASSWORD, transport_id=CLIENT_ADDR, rng=seeded_rng(1))
    client = DtlsClient(PASSWORD, rng=seeded_rng(2))
    client.start(0.0)
    for d in datagrams:
        server.receive_datagram(d, 1.0)
        client.receive_datagram(d, 1.0)
        # the same bytes behind a plausible record header reach the deeper layers
        for ctype in (20, 21, 22, 23):
            wrapped = DtlsRecord(ctype, 0xFEFD, 0, 5, d[:1000]).to_bytes()
            server.receive_datagram(wrapped, 1.0)
            client.receive_datagram(wrapped, 1.0)
    _assert_sane(server)
    _assert_sane(client)


_REFERENCE_TRACE: list[tuple[str, bytes]] = []


def _reference_trace() -> list[tuple[str, bytes]]:
    if not _REFERENCE_TRACE:
        client, server = make_pair(seed=11)
        trace = run_lossless(client, server)
        client.send(b"app data")
        server.send(b"app data back")
        shuttle(client, server, trace, 0.0)
        client.close()
        shuttle(client, server, trace, 0.0)
        _REFERENCE_TRACE.extend(trace.datagrams)
    return _REFERENCE_TRACE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, 9),
    mutation=st.sampled_from(["flip", "truncate", "extend", "duplicate_record", "zero"]),
    position=st.integers(0, 10_000),
    value=st.integers(1, 255),
)
def test_fuzz_mutated_handshake(index: int, mutation: str, position: int, value: int) -> None:
    """Replay a real session into fresh endpoints (same seeds, so the same bytes are valid),
    with one datagram mutated; nothing may raise and every outcome must be a clean state."""
    reference = _reference_trace()
    index %= len(reference)
    client, server = make_pair(seed=11)
    client.start(0.0)
    client.datagrams_to_send()
    for i, (direction, datagram) in enumerate(reference):
        if i == index:
            pos = position % len(datagram)
            if mutation == "flip":
                datagram = datagram[:pos] + bytes([datagram[pos] ^ value]) + datagram[pos + 1 :]
            elif mutation == "truncate":
                datagram = datagram[:pos]
            elif mutation == "extend":
                datagram = datagram + bytes([value]) * (pos % 40)
            elif mutation == "duplicate_record":
                datagram = datagram + datagram
            else:
                datagram = datagram[:pos] + bytes(min(8, len(datagram) - pos)) + datagram[pos + 8 :]
        (server if direction == "c2s" else client).receive_datagram(datagram, float(i))
        for endpoint in (client, server):
            endpoint.handle_timeout(float(i))
    for endpoint in (client, server):
        _assert_sane(endpoint)
        endpoint.handle_timeout(10_000.0)
        _assert_sane(endpoint)


# -- tshark as an independent decoder ---------------------------------------------------------------


def _ipv6_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack(">I3xB", len(udp), 17) + udp
    if len(pseudo) % 2:
        pseudo += b"\x00"
    total = sum(struct.unpack(f">{len(pseudo) // 2}H", pseudo))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = (~total & 0xFFFF) or 0xFFFF
    udp = udp[:6] + struct.pack(">H", checksum) + udp[8:]
    return struct.pack(">IHBB", 6 << 28, len(udp), 17, 64) + src + dst + udp


def _write_pcap(path: Path, packets: list[bytes]) -> None:
    """Classic pcap, LINKTYPE_RAW (101): every packet is an IPv6 datagram."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    for i, pkt in enumerate(packets):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(pkt), len(pkt)) + pkt
    path.write_bytes(out)


def _tshark_fields(pcap: Path, *extra: str, fields: list[str]) -> list[list[str]]:
    args = ["tshark", "-r", str(pcap), "-d", "udp.port==1000,dtls", *extra, "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_decodes_the_handshake(tmp_path: Path) -> None:
    client, server = make_pair(seed=21)
    trace = run_lossless(client, server)
    client.send(b"hello from the gateway")
    shuttle(client, server, trace, 0.0)
    packets = [
        _ipv6_udp(CLIENT_ADDR, SERVER_ADDR, 49152, 1000, dg)
        if direction == "c2s"
        else _ipv6_udp(SERVER_ADDR, CLIENT_ADDR, 1000, 49152, dg)
        for direction, dg in trace.datagrams
    ]
    pcap = tmp_path / "dtls-ecjpake.pcap"
    _write_pcap(pcap, packets)
    rows = _tshark_fields(
        pcap,
        fields=[
            "dtls.handshake.type",
            "dtls.record.content_type",
            "dtls.handshake.ciphersuite",
            "_ws.expert.message",
            "_ws.malformed",
        ],
    )
    assert len(rows) == len(packets)
    hs_types = [int(t) for row in rows for t in row[0].split(",") if t]
    content_types = [int(t) for row in rows for t in row[1].split(",") if t]
    assert hs_types == [1, 3, 1, 2, 12, 14, 16]  # CH, HVR, CH, SH, SKE, SHD, CKE
    assert content_types.count(20) == 2 and content_types.count(22) >= 9
    assert "0xc0ff" in rows[0][2] and "0xc0ff" in rows[3][2]
    assert all(not row[3] and not row[4] for row in rows), rows  # no expert info, no Malformed

    # Wireshark 4.0 cannot decrypt 0xC0FF, but 0xC0AE (ECDHE_ECDSA_WITH_AES_128_CCM_8) protects
    # records identically (same PRF, key block, nonce and AAD). Relabelling the suite in the
    # ServerHello of a copy lets Wireshark's own implementation decrypt our Finished messages and
    # application data from the master secret alone (NSS key log).
    hello_suite = bytes.fromhex("00c0ff00")  # session_id_len 0, suite, compression 0
    relabelled = [
        p.replace(hello_suite, bytes.fromhex("00c0ae00"), 1) if i == 3 else p
        for i, p in enumerate(packets)
    ]
    assert relabelled[3] != packets[3]
    # the UDP checksum is now wrong; Wireshark does not verify it by default
    pcap2 = tmp_path / "relabelled.pcap"
    _write_pcap(pcap2, relabelled)
    keylog = tmp_path / "keys.txt"
    keylog.write_text(
        f"CLIENT_RANDOM {client._client_random.hex()} {(client._master or b'').hex()}\n"
    )
    rows = _tshark_fields(
        pcap2,
        "-o",
        f"tls.keylog_file:{keylog}",
        "-o",
        "data.show_as_text:TRUE",
        fields=["dtls.handshake.type", "data.text"],
    )
    decrypted_types = [row[0] for row in rows]
    assert decrypted_types[4] == "16,20"  # ClientKeyExchange + the decrypted client Finished
    assert decrypted_types[5] == "20"  # the decrypted server Finished
    assert rows[6][1] == "hello from the gateway"
    assert HS_FINISHED == 20 and HS_SERVER_HELLO == 2
