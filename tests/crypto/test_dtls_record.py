"""DTLS record framing, the anti-replay window and CCM-8 record protection (unit level).

Known answers for the protection itself are in ``test_dtls_vectors.py`` (OpenSSL capture); here
the framing rules of RFC 6347 §4.1 and the window of RFC 6347 §4.1.2.6 are tested directly.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.dtls_record import (
    CCM8_OVERHEAD,
    CONTENT_APPLICATION_DATA,
    CONTENT_HANDSHAKE,
    DTLS_1_2,
    MAX_SEQUENCE_NUMBER,
    BadRecordMac,
    CcmRecordCipher,
    DtlsRecord,
    ReplayWindow,
    parse_datagram,
    parse_datagram_prefix,
)
from gateway.errors import ParseError

records = st.builds(
    DtlsRecord,
    content_type=st.sampled_from([20, 21, 22, 23]),
    version=st.sampled_from([0xFEFD, 0xFEFF]),
    epoch=st.integers(0, 0xFFFF),
    sequence_number=st.integers(0, MAX_SEQUENCE_NUMBER),
    fragment=st.binary(max_size=200),
)


def test_header_layout_rfc6347() -> None:
    # RFC 6347 §4.1: type(1) version(2) epoch(2) sequence_number(6) length(2) fragment.
    rec = DtlsRecord(22, 0xFEFD, 1, 0x0102030405, b"abc")
    assert rec.to_bytes() == bytes.fromhex("16fefd 0001 000102030405 0003") + b"abc"
    assert rec.seq_num == bytes.fromhex("0001000102030405")


@given(st.lists(records, min_size=1, max_size=5))
def test_datagram_roundtrip(recs: list[DtlsRecord]) -> None:
    datagram = b"".join(r.to_bytes() for r in recs)
    assert parse_datagram(datagram) == recs


@given(records)
def test_single_record_roundtrip(rec: DtlsRecord) -> None:
    assert DtlsRecord.from_bytes(rec.to_bytes()) == rec


def test_malformed_tail_keeps_good_prefix() -> None:
    good = DtlsRecord(22, DTLS_1_2, 0, 7, b"hello").to_bytes()
    records, err = parse_datagram_prefix(good + good[:-1])
    assert len(records) == 1 and isinstance(err, ParseError)
    with pytest.raises(ParseError):
        parse_datagram(good + b"\x17")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("16fefd00000000000000000005") + b"abc",  # length beyond datagram
        bytes.fromhex("18fefd00000000000000000000"),  # unknown content type 24
        bytes.fromhex("160303000000000000000000 00".replace(" ", "")),  # TLS, not DTLS version
        bytes.fromhex("16fefd000000000000000048 01".replace(" ", "")),  # 0x4801 > 2^14+2048
    ],
)
def test_malformed_records_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_datagram(data)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_parse_datagram_only_parse_error(data: bytes) -> None:
    try:
        parse_datagram(data)
    except ParseError:
        pass
    records, _ = parse_datagram_prefix(data)
    assert all(isinstance(r, DtlsRecord) for r in records)


# -- replay window ------------------------------------------------------------------------------


def test_replay_window_basic() -> None:
    w = ReplayWindow(64)
    assert w.is_fresh(0)
    w.mark(0)
    assert not w.is_fresh(0)
    assert w.is_fresh(5)
    w.mark(5)
    # 1..4 are still within the window and unseen
    assert all(w.is_fresh(i) for i in range(1, 5))
    w.mark(3)
    assert not w.is_fresh(3) and w.is_fresh(4)
    assert w.top == 5


def test_replay_window_edges() -> None:
    w = ReplayWindow(64)
    w.mark(100)
    assert w.is_fresh(100 - 63)  # the oldest number still inside the window
    assert not w.is_fresh(100 - 64)  # just left of the window: rejected
    w.mark(37)
    assert not w.is_fresh(37)
    w.mark(100 + 64)  # a jump of exactly the window size forgets every old bit
    assert w.is_fresh(101)  # offset 63: inside the new window, never seen
    assert not w.is_fresh(100)  # offset 64: outside


def test_replay_window_jump_clears_history() -> None:
    w = ReplayWindow(64)
    for i in range(64):
        w.mark(i)
    w.mark(63 + 64)  # shift by 64: nothing from before survives in the window
    assert w.is_fresh(63 + 1)  # offset 63: inside the window, never seen
    assert not w.is_fresh(63)  # offset 64: outside
    assert not w.is_fresh(127)


def test_replay_window_large_sequence_numbers() -> None:
    w = ReplayWindow(64)
    w.mark(MAX_SEQUENCE_NUMBER)
    assert not w.is_fresh(MAX_SEQUENCE_NUMBER)
    assert w.is_fresh(MAX_SEQUENCE_NUMBER - 1)
    assert not w.is_fresh(0)
    w.reset()
    assert w.is_fresh(0) and w.top == -1


@given(st.lists(st.integers(0, 300), max_size=200))
def test_replay_window_model(seqs: list[int]) -> None:
    """Against a naive model: fresh iff never seen and within 64 of the highest seen."""
    w = ReplayWindow(64)
    seen: set[int] = set()
    for s in seqs:
        top = max(seen) if seen else -1
        expected = s not in seen and (s > top or top - s < 64)
        assert w.is_fresh(s) == expected
        if expected:
            w.mark(s)
            seen.add(s)


# -- CCM-8 record protection --------------------------------------------------------------------


def test_ccm_roundtrip_and_layout() -> None:
    cipher = CcmRecordCipher(bytes(range(16)), b"\x01\x02\x03\x04")
    frag = cipher.encrypt(CONTENT_APPLICATION_DATA, DTLS_1_2, 1, 42, b"payload")
    # explicit nonce = epoch || sequence number (RFC 6655 §3 as applied to DTLS)
    assert frag[:8] == bytes.fromhex("000100000000002a")
    assert len(frag) == len(b"payload") + CCM8_OVERHEAD
    rec = DtlsRecord(CONTENT_APPLICATION_DATA, DTLS_1_2, 1, 42, frag)
    assert cipher.decrypt(rec) == b"payload"


def test_ccm_rejects_short_and_wrong_key() -> None:
    cipher = CcmRecordCipher(bytes(16), bytes(4))
    with pytest.raises(BadRecordMac):
        cipher.decrypt(DtlsRecord(CONTENT_APPLICATION_DATA, DTLS_1_2, 1, 0, bytes(15)))
    frag = cipher.encrypt(CONTENT_HANDSHAKE, DTLS_1_2, 1, 0, b"x")
    other = CcmRecordCipher(bytes(15) + b"\x01", bytes(4))
    with pytest.raises(BadRecordMac):
        other.decrypt(DtlsRecord(CONTENT_HANDSHAKE, DTLS_1_2, 1, 0, frag))


def test_ccm_repr_hides_key() -> None:
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert key.hex() not in repr(CcmRecordCipher(key, bytes(4)))
    with pytest.raises(ValueError):
        CcmRecordCipher(bytes(32), bytes(4))


def test_replay_window_huge_jump_is_cheap() -> None:
    w = ReplayWindow(64)
    w.mark(0)
    w.mark(MAX_SEQUENCE_NUMBER)  # a 2**48 shift must not allocate a 2**48-bit integer
    assert not w.is_fresh(MAX_SEQUENCE_NUMBER) and not w.is_fresh(0)
    assert w.is_fresh(MAX_SEQUENCE_NUMBER - 63)
