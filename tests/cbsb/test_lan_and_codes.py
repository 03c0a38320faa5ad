"""The sans-IO pieces around CBSB-1 that the system adds: sealed LAN notifications (draft step 9,
cloud-bootstrap.md §10.7), claim codes and setup QR codes, and the step of every status."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import CryptoError, ParseError
from gateway.wire import cbsb_notice as notice
from gateway.wire.cbsb import Status
from gateway.wire.cbsb_steps import STATUS_STEP, STEPS, describe
from gateway.wire.cloudapi import (
    CLAIM_ALPHABET,
    BadClaimCode,
    claim_matches,
    damm_check_symbol,
    damm_interim,
    damm_op,
    format_claim_code,
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


def test_damm_operation_is_a_totally_anti_symmetric_quasigroup() -> None:
    """Exhaustively, the properties Damm's proof needs: every row and every column of the
    32 x 32 table is a permutation (so one changed symbol changes every later interim value),
    and (c*x)*y != (c*y)*x for every c and x != y (so two swapped neighbours change it too)."""
    n = 32
    for a in range(n):
        assert sorted(damm_op(a, b) for b in range(n)) == list(range(n))
        assert sorted(damm_op(b, a) for b in range(n)) == list(range(n))
    for c in range(n):
        for x in range(n):
            for y in range(n):
                if x != y:
                    assert damm_op(damm_op(c, x), y) != damm_op(damm_op(c, y), x), (c, x, y)


def test_damm_known_values() -> None:
    # worked by hand in GF(2)[t]/(t^5 + t^2 + 1): 2 * 0b10000 = t^5 = t^2 + 1 = 0b00101
    assert damm_op(0b10000, 0) == 0b00101
    assert damm_op(1, 1) == 2 ^ 1
    assert damm_interim([]) == 0 and damm_check_symbol([]) == 0
    # addition is XOR: 2*(2*(2*0 + 1) + 2) + 3 = 2*(2 + 2) + 3 = 2*0 + 3 = 3; check 2*3 = 6
    assert damm_interim([1, 2, 3]) == 3 and damm_check_symbol([1, 2, 3]) == 6
    assert damm_interim([1, 2, 3, 6]) == 0
    # four doublings of 1 give t^4 = 16; the check symbol 2*16 = t^5 wraps to 5
    assert damm_interim([1, 0, 0, 0, 0]) == 16 and damm_check_symbol([1, 0, 0, 0, 0]) == 5


def _all_typos(code: str) -> Iterator[str]:
    """Every single-symbol substitution and every swap of two different neighbours."""
    for i in range(len(code)):
        for ch in CLAIM_ALPHABET:
            if ch != code[i]:
                yield code[:i] + ch + code[i + 1 :]
        if i + 1 < len(code) and code[i] != code[i + 1]:
            yield code[:i] + code[i + 1] + code[i] + code[i + 2 :]


def test_claim_codes_catch_every_single_error_and_adjacent_swap() -> None:
    rng = random.Random(20261207)
    codes = [new_claim_code() for _ in range(20)]
    for _ in range(200):  # seeded ones too, so a failure reproduces
        vals = [rng.randrange(32) for _ in range(9)]
        codes.append("".join(CLAIM_ALPHABET[v] for v in [*vals, damm_check_symbol(vals)]))
    for code in codes:
        assert normalize_claim_code(code) == code
        assert normalize_claim_code(format_claim_code(code).lower()) == code
        for typo in _all_typos(code):
            with pytest.raises(BadClaimCode):
                normalize_claim_code(typo)


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
