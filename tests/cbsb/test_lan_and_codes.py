"""The sans-IO pieces around CBSB-1 that the system adds: sealed LAN notifications (draft step 9,
cloud-bootstrap.md §10.7), claim codes and setup QR codes, and the step of every status."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import CryptoError, ParseError
from gateway.wire import cbsb_notice as notice
from gateway.wire.cbsb import Status
from gateway.wire.cbsb_steps import STATUS_STEP, STEPS, describe
from gateway.wire.cloudapi import (
    BadClaimCode,
    claim_matches,
    format_claim_code,
    luhn_mod_n,
    new_claim_code,
    normalize_claim_code,
    parse_thing_qr,
    thing_qr,
)

K_APPGW = bytes(range(32))
SID = bytes(range(100, 116))


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    # RFC 5869 §2.2-2.3 written out with the standard library (independent of the product's HKDF)
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes((i,)), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def test_notice_layout_and_key_schedule_match_the_specification() -> None:
    sealed = notice.seal(
        K_APPGW, SID, {"event": "joined", "dev_id": "00" * 8}, rng=lambda n: bytes(n)
    )
    tag = hashlib.sha256(b"cbsb1 sid" + SID).digest()[:8]
    assert sealed[0] == notice.KIND_NOTICE and sealed[1:9] == tag and sealed[9:21] == bytes(12)
    key = _hkdf(K_APPGW, SID, b"cbsb1 notify", 16)
    plain = AESGCM(key).decrypt(bytes(12), sealed[21:], b"cbsb1 notify" + sealed[:9])
    assert json.loads(plain) == {"event": "joined", "dev_id": "00" * 8}
    assert notice.open_sealed(K_APPGW, SID, sealed) == (notice.KIND_NOTICE, json.loads(plain))


def test_notice_refuses_other_keys_sessions_kinds_and_every_tampered_byte() -> None:
    sealed = notice.seal(K_APPGW, SID, {"event": "report", "status": "AUTH_FAILED"})
    with pytest.raises(CryptoError):
        notice.open_sealed(bytes(32), SID, sealed)  # another app-gateway key
    with pytest.raises(CryptoError):
        notice.open_sealed(K_APPGW, bytes(16), sealed)  # another session
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises((CryptoError, ParseError)):
            notice.open_sealed(K_APPGW, SID, bytes(bad))
    ack = notice.seal(K_APPGW, SID, {"id": "x"}, notice.KIND_ACK)
    # The kind is authenticated: an ack cannot be turned into a notice.
    flipped = bytes((notice.KIND_NOTICE,)) + ack[1:]
    with pytest.raises(CryptoError):
        notice.open_sealed(K_APPGW, SID, flipped)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_notice_parser_only_raises_parse_or_crypto_errors(data: bytes) -> None:
    try:
        notice.open_sealed(K_APPGW, SID, data)
    except (ParseError, CryptoError):
        pass


def test_luhn_mod_n_known_answers() -> None:
    # Wikipedia, "Luhn algorithm": the check digit of 7992739871 is 3 (Luhn mod 10).
    assert luhn_mod_n([int(c) for c in "7992739871"], 10) == 3
    # Wikipedia, "Luhn mod N algorithm": with the alphabet "abcdef", the check character of
    # "abcdef" is "e".
    assert "abcdef"[luhn_mod_n([0, 1, 2, 3, 4, 5], 6)] == "e"


def test_claim_codes_catch_every_single_error_and_adjacent_swap() -> None:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for _ in range(20):
        code = new_claim_code()
        assert normalize_claim_code(code) == code
        assert normalize_claim_code(format_claim_code(code).lower()) == code
        for i in range(len(code)):
            for ch in alphabet:
                if ch != code[i]:
                    with pytest.raises(BadClaimCode):
                        normalize_claim_code(code[:i] + ch + code[i + 1 :])
            if i + 1 < len(code) and code[i] != code[i + 1]:
                swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
                with pytest.raises(BadClaimCode):
                    normalize_claim_code(swapped)


def test_claim_code_entry_is_forgiving_but_strict() -> None:
    code = new_claim_code()
    typed = format_claim_code(code).replace("0", "o").replace("1", "l").lower()
    assert normalize_claim_code(typed) == code
    for bad, why in (("ABC", "10 letters"), ("ABCDE-FGHIU", "cannot contain")):
        with pytest.raises(BadClaimCode, match=why):
            normalize_claim_code(bad)
    from gateway.wire.cloudapi import claim_digest

    assert claim_matches(typed, claim_digest(code))
    assert not claim_matches("not a code", claim_digest(code))


def test_thing_qr_round_trip_and_errors() -> None:
    code = new_claim_code()
    qr = thing_qr(bytes.fromhex("0011223344556677"), code)
    assert qr == f"CBSB1:0011223344556677:{code}"
    assert parse_thing_qr(qr.lower()) == (bytes.fromhex("0011223344556677"), code)
    for bad in ("", "CBSB1:00:" + code, "WIFI:S:x;;", f"CBSB1:zz11223344556677:{code}"):
        with pytest.raises(BadClaimCode):
            parse_thing_qr(bad)


def test_every_status_names_a_step_of_the_draft() -> None:
    assert set(STATUS_STEP) == set(Status)
    assert set(STEPS) == set(range(1, 11))
    assert all(1 <= s <= 10 for s in STATUS_STEP.values())
    text = describe(Status.AUTH_FAILED)
    assert text.startswith("AUTH_FAILED at step 7 (the thing proves Func(PSK, RandomKey)")
    assert "wrong device" in text
    assert describe("NOPE").startswith("unknown")
