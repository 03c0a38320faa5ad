"""Forged DTLS records cannot end a handshake (issue 16).

Joiner traffic is unsecured on the air, so anyone in range can send records "from" a joiner.
Before the fix, protected (epoch-1) records that arrived before the peer's ChangeCipherSpec were
buffered and, once the epoch began, a bad MAC among them was taken for a failed Finished: the
correct-password handshake failed as a wrong password (and the commissioner counted it).
"""

from __future__ import annotations

import os

from gateway.crypto.dtls import (
    ConnectionFailed,
    DtlsAuthenticationError,
    HandshakeComplete,
)
from gateway.crypto.dtls_record import CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE, DtlsRecord
from tests.crypto.test_dtls import _to_handshake_end
from tests.crypto.test_dtls_sim import make_pair, run_lossless


def forged(epoch: int, seq: int, content_type: int = CONTENT_HANDSHAKE, size: int = 40) -> bytes:
    """A record that looks protected but was made without the keys (random ciphertext)."""
    return DtlsRecord(content_type, 0xFEFD, epoch, seq, os.urandom(size)).to_bytes()


def test_forged_epoch1_records_before_the_last_flight_do_not_end_the_handshake() -> None:
    """Fails on the code before the fix: the server buffered the forged records and failed with
    DtlsAuthenticationError ("Finished record failed authentication") once the real CCS came."""
    client, server = make_pair()
    final = _to_handshake_end(client, server)
    for seq in range(20):  # more than the early-record buffer holds
        server.receive_datagram(forged(1, seq, CONTENT_HANDSHAKE if seq % 2 else 23), 0.05)
    for d in final:
        server.receive_datagram(d, 0.1)
    assert server.is_connected, server.events()
    assert server.events() == [HandshakeComplete()]
    assert server.bad_records > 0
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.1)
    assert client.is_connected


def test_forged_records_at_the_client_before_the_server_finished_are_dropped() -> None:
    """The client side of the same attack (a joiner's handshake attacked from the air). Fails on
    the code before the fix the same way as the server test."""
    client, server = make_pair()
    final = _to_handshake_end(client, server)
    for seq in range(5):
        client.receive_datagram(forged(1, seq), 0.05)
    for d in final:
        server.receive_datagram(d, 0.1)
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.1)
    assert client.is_connected and server.is_connected


def test_forged_record_in_a_datagram_of_its_own_while_finished_is_due_is_dropped() -> None:
    """A bad-MAC record that is not the one following the CCS is not the Finished: dropped."""
    client, server = make_pair()
    final = _to_handshake_end(client, server)
    (flight,) = final
    from gateway.crypto.dtls_record import parse_datagram

    cke, ccs, fin = parse_datagram(flight)
    server.receive_datagram(cke.to_bytes() + ccs.to_bytes(), 0.1)  # the epoch begins
    server.receive_datagram(forged(1, 7), 0.11)  # forged, in its own datagram
    assert server.events() == []
    server.receive_datagram(fin.to_bytes(), 0.12)
    assert server.is_connected


def test_wrong_password_still_fails_at_once_with_an_authentication_error() -> None:
    """The real Finished of a peer with another password follows its CCS in the same datagram:
    it still ends the handshake at once (the verdict a PSKd/PSKc limit counts)."""
    client, server = make_pair(client_password=b"J01NME", server_password=b"J01NMF")
    trace = run_lossless(client, server)
    (s_fail,) = trace.server_events
    assert isinstance(s_fail, ConnectionFailed)
    assert isinstance(s_fail.error, DtlsAuthenticationError)


def test_application_data_forged_after_the_handshake_is_counted_and_dropped() -> None:
    """Dropped before the fix as well; what fails on the old code is the missing counter."""
    client, server = make_pair()
    run_lossless(client, server)
    before = server.bad_records
    server.receive_datagram(forged(1, 50, CONTENT_APPLICATION_DATA), 1.0)
    assert server.is_connected and server.bad_records == before + 1
