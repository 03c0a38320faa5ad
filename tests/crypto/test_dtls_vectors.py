"""Known-answer tests for the TLS 1.2 PRF and the DTLS 1.2 AES-128-CCM-8 record layer.

Independent sources only:

* The TLS 1.2 P_SHA256 PRF vector published on the IETF TLS WG mailing list (Joseph Birr-Pixton,
  https://www.ietf.org/mail-archive/web/tls/current/msg03416.html), reproduced by many
  implementations' test suites (e.g. OpenSSL's ``openssl kdf ... TLS1-PRF`` gives the same bytes).
* A DTLS 1.2 session between OpenSSL 3.0.19's ``s_client`` and ``s_server`` with
  TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8) on loopback, captured with tshark, with the master secret
  from OpenSSL's ``-keylogfile``. That suite protects records exactly as
  TLS_ECJPAKE_WITH_AES_128_CCM_8 does (same 40-byte key block, RFC 6655 nonce, RFC 5246 AAD), so
  OpenSSL's ciphertexts check our key expansion, nonce, additional data and CCM-8 use, and its
  Finished messages check our DTLS transcript hashing. FROZEN VECTORS, captured once with::

      s_server -dtls1_2 -nocert -psk 00112233445566778899aabbccddeeff -cipher PSK-AES128-CCM8
      s_client -dtls1_2 -psk 00112233445566778899aabbccddeeff -psk_identity client1 \\
               -cipher PSK-AES128-CCM8 -keylogfile client.keys

  (the session negotiated extended_master_secret; that changes only how the master secret was
  made, and the master secret is given.) Each ``_FRAME_n`` is the UDP payload of frame n.
* The key block printed by Wireshark 4.0.17's TLS debug log (``-o tls.debug_file``) for that
  capture: "key expansion[40]: ffe4a7fc...".
"""

from __future__ import annotations

import hashlib

import pytest

from gateway.crypto.dtls import KeyBlock
from gateway.crypto.dtls_handshake import HS_FINISHED, parse_fragments
from gateway.crypto.dtls_record import (
    CONTENT_ALERT,
    CONTENT_APPLICATION_DATA,
    CONTENT_CHANGE_CIPHER_SPEC,
    CONTENT_HANDSHAKE,
    BadRecordMac,
    CcmRecordCipher,
    DtlsRecord,
    parse_datagram,
)
from gateway.crypto.tls_prf import finished_verify_data, key_block, prf_sha256

# -- TLS 1.2 PRF (IETF TLS WG mailing list, msg03416) -------------------------------------------


def test_prf_sha256_published_vector() -> None:
    secret = bytes.fromhex("9bbe436ba940f017b17652849a71db35")
    seed = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
    expected = bytes.fromhex(
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
        "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
        "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
        "87347b66"
    )
    assert prf_sha256(secret, b"test label", seed, 100) == expected
    # Shorter outputs are prefixes (P_hash is a stream).
    assert prf_sha256(secret, b"test label", seed, 13) == expected[:13]
    assert prf_sha256(secret, b"test label", seed, 0) == b""


def test_prf_rejects_absurd_lengths() -> None:
    with pytest.raises(ValueError):
        prf_sha256(b"k", b"l", b"s", -1)
    with pytest.raises(ValueError):
        prf_sha256(b"k", b"l", b"s", 1 << 20)


# -- OpenSSL DTLS 1.2 PSK-AES128-CCM8 capture (frozen vectors, see module docstring) -------------

_CLIENT_RANDOM = bytes.fromhex("7176b97cfb6d1b9357ba8da11c8c8ee0c0ddd22b8dbd51024414bf296f4019e9")
_SERVER_RANDOM = bytes.fromhex("ad304bc65dba095659b0a5b15e92edc8a1d155d8abf416dac005c0f08a880c75")
_MASTER = bytes.fromhex(
    "ffa85759a5a2e9dab4f73641befe867a877b6a0be6324d23ae70d7d9a59dee7b"
    "553e0949497533bec1d4dcd98c8b536d"
)
# Wireshark 4.0.17 TLS debug log, "key expansion[40]" for this session.
_WIRESHARK_KEY_BLOCK = bytes.fromhex(
    "ffe4a7fc1126219b5a825d7686ce3d6a68dc184aa7ef26f20c34a213dd24db1e38ef6f9f9fbb8065"
)

# Frame 3: ClientHello with cookie (message_seq 1). Frame 4: ServerHello, ServerKeyExchange (PSK
# hint), ServerHelloDone. Frame 5: ClientKeyExchange, ChangeCipherSpec, Finished (epoch 1).
# Frame 6: NewSessionTicket (OpenSSL's default). Frame 7: ChangeCipherSpec, Finished. Frames 8/9: application data client->server and back.
# Frames 10/11: close_notify alerts (server, then client).
_FRAME_3 = bytes.fromhex(
    "16feff000000000000000100880100007c000100000000007cfefd7176b97cfb6d1b9357ba8da11c8c8ee0c0"
    "ddd22b8dbd51024414bf296f4019e9001449534a4a0a04236118e59956082e2d3fc6ea0aaa0004c0a800ff01"
    "00003a002300000016000000170000000d002a0028040305030603080708080809080a080b08040805080604"
    "0105010601030303010302040205020602"
)
_FRAME_4 = bytes.fromhex(
    "16fefd00000000000000010041020000350001000000000035fefdad304bc65dba095659b0a5b15e92edc8a1"
    "d155d8abf416dac005c0f08a880c7500c0a800000dff01000100002300000017000016fefd00000000000000"
    "0200120c0000060002000000000006000468696e7416fefd0000000000000003000c0e000000000300000000"
    "0000"
)
_FRAME_5 = bytes.fromhex(
    "16fefd000000000000000200151000000900020000000000090007636c69656e743114fefd00000000000000"
    "0300010116fefd00010000000000000028000100000000000046ef7c08e096d5fef4d8f89a00e2e79a7f674e"
    "2a88d92ffef09cbc3ac8db1af4"
)
_FRAME_6 = bytes.fromhex(
    "16fefd000000000000000400c2040000b600040000000000b600001c2000b0d28893d8ad7f318a9fa5b35cf8"
    "ada8f28b245072052639118045f9e552c9f6893840397af7301d2f1c4e78cc2014198dd753100855ddc16c78"
    "3249af6d905cdd893b6e12b03676f25400f4a3144693ed250741b2da55db5d9bd7e6f3f9609142d4f1d6cfe3"
    "24617435bfa2deb2134d422874cd10b4ec91e9e6ebbbaf9ba61270081a93b131280f930d1de409e02217e248"
    "a434293b68b921d1c6af44696ae1eec23eaafe4aff4499f43bc9ed2131d7c0"
)
_FRAME_7 = bytes.fromhex(
    "14fefd000000000000000500010116fefd00010000000000000028000100000000000033ec7456a3117f9916"
    "c8cc8f1183a3630499b495addac34db3b6ea8869a6edae"
)
_FRAME_8 = bytes.fromhex(
    "17fefd0001000000000001002f0001000000000001ea98d7f62f3da3e2887f4e85600b50b914f2de158ef159"
    "e9a16707c01f27547af7c7597c1db930"
)
_FRAME_9 = bytes.fromhex(
    "17fefd0001000000000001002f0001000000000001c8ea4aa59489aa769e32eaf823392884beb2aaaeca2396"
    "52b4b8611b97063c8a8d10df68470073"
)
_FRAME_10 = bytes.fromhex("15fefd000100000000000200120001000000000002735af864b678538de954")
_FRAME_11 = bytes.fromhex("15fefd000100000000000200120001000000000002336e3586a7e70da72fbc")


def _keys() -> KeyBlock:
    return KeyBlock.from_bytes(key_block(_MASTER, _CLIENT_RANDOM, _SERVER_RANDOM, 40))


def _client_cipher() -> CcmRecordCipher:
    k = _keys()
    return CcmRecordCipher(k.client_write_key, k.client_write_iv)


def _server_cipher() -> CcmRecordCipher:
    k = _keys()
    return CcmRecordCipher(k.server_write_key, k.server_write_iv)


def test_key_block_matches_wireshark() -> None:
    assert _keys().to_bytes() == _WIRESHARK_KEY_BLOCK


def test_decrypt_openssl_application_data_both_ways() -> None:
    (c2s,) = parse_datagram(_FRAME_8)
    (s2c,) = parse_datagram(_FRAME_9)
    assert (c2s.content_type, c2s.epoch, c2s.sequence_number) == (CONTENT_APPLICATION_DATA, 1, 1)
    assert _client_cipher().decrypt(c2s) == b"hello from openssl dtls client\n"
    assert _server_cipher().decrypt(s2c) == b"hello from openssl dtls server\n"
    # The other direction's key must not verify it.
    with pytest.raises(BadRecordMac):
        _server_cipher().decrypt(c2s)


def test_encrypt_reproduces_openssl_records_byte_for_byte() -> None:
    for frame, cipher, text in (
        (_FRAME_8, _client_cipher(), b"hello from openssl dtls client\n"),
        (_FRAME_9, _server_cipher(), b"hello from openssl dtls server\n"),
    ):
        (rec,) = parse_datagram(frame)
        fragment = cipher.encrypt(
            rec.content_type, rec.version, rec.epoch, rec.sequence_number, text
        )
        assert (
            DtlsRecord(
                rec.content_type, rec.version, rec.epoch, rec.sequence_number, fragment
            ).to_bytes()
            == frame
        )


def test_decrypt_openssl_close_notify_alerts() -> None:
    (server_alert,) = parse_datagram(_FRAME_10)
    (client_alert,) = parse_datagram(_FRAME_11)
    assert server_alert.content_type == client_alert.content_type == CONTENT_ALERT
    assert _server_cipher().decrypt(server_alert) == b"\x01\x00"
    assert _client_cipher().decrypt(client_alert) == b"\x01\x00"


def test_tampered_openssl_record_is_rejected() -> None:
    (rec,) = parse_datagram(_FRAME_8)
    for pos in (0, 8, len(rec.fragment) - 1):  # explicit nonce, ciphertext, tag
        bad = bytearray(rec.fragment)
        bad[pos] ^= 0x01
        with pytest.raises(BadRecordMac):
            _client_cipher().decrypt(
                DtlsRecord(
                    rec.content_type, rec.version, rec.epoch, rec.sequence_number, bytes(bad)
                )
            )
    # The header is authenticated too (AAD): another sequence number or type must fail.
    for other in (
        DtlsRecord(rec.content_type, rec.version, rec.epoch, 2, rec.fragment),
        DtlsRecord(CONTENT_HANDSHAKE, rec.version, rec.epoch, rec.sequence_number, rec.fragment),
    ):
        with pytest.raises(BadRecordMac):
            _client_cipher().decrypt(other)


def test_finished_verify_data_over_openssl_transcript() -> None:
    """RFC 6347 §4.2.6: Finished hashes whole messages with their 12-byte DTLS headers, from the
    ClientHello that carried the cookie on (not the first ClientHello or HelloVerifyRequest)."""
    transcript = b""
    for frame in (_FRAME_3, _FRAME_4):
        for rec in parse_datagram(frame):
            transcript += rec.fragment
    cke, ccs, client_fin_rec = parse_datagram(_FRAME_5)
    assert ccs.content_type == CONTENT_CHANGE_CIPHER_SPEC and ccs.fragment == b"\x01"
    transcript += cke.fragment

    (client_fin,) = parse_fragments(_client_cipher().decrypt(client_fin_rec))
    assert client_fin.msg_type == HS_FINISHED and client_fin.is_complete
    assert client_fin.fragment == finished_verify_data(
        _MASTER, from_client=True, handshake_hash=hashlib.sha256(transcript).digest()
    )
    transcript += client_fin.to_bytes()
    (ticket,) = parse_datagram(_FRAME_6)  # NewSessionTicket precedes the server's CCS
    transcript += ticket.fragment

    ccs2, server_fin_rec = parse_datagram(_FRAME_7)
    assert ccs2.content_type == CONTENT_CHANGE_CIPHER_SPEC
    (server_fin,) = parse_fragments(_server_cipher().decrypt(server_fin_rec))
    assert server_fin.fragment == finished_verify_data(
        _MASTER, from_client=False, handshake_hash=hashlib.sha256(transcript).digest()
    )
