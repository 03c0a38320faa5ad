"""Thread key derivations against independent vectors.

Sources (vectors carried over, code not copied):

* [OT-PSKC] espressif/openthread (an OpenThread mirror) @ a93706fd, ``tests/unit/test_pskc.cpp``:
  TestMinimumPassphrase, TestMaximumPassphrase, TestExampleInSpec.
* [RFC4615] RFC 4615 §4, AES-CMAC-PRF-128 test vectors.
* [OT-CLI] espressif/openthread @ a93706fd, ``src/cli/README_JOINER.md`` (``joiner id`` prints
  d65e64fa83f81cf7); the simulated node's EUI-64 is 18b4300000000002
  (``examples/platforms/simulation``, thread-meshcop.md §9.1).
* [OTC-RS] mtilchen/ot-commissioner-rs, an independent Rust port of ot-commissioner:
  ``crates/ot-commissioner-rs/src/crypto/pskc.rs`` (joiner ID of 0011223344556677, steering data of
  joiner ID 0102030405060708) and ``crates/thread-dtls/src/tests/keys.rs`` (KEK of a key block whose
  bytes OpenSSL's TLS1-PRF produced).
* [CRC-CAT] The CRC catalogue (reveng): check values over "123456789" of CRC-16/XMODEM (0x31C3)
  and CRC-16/UMTS (0xFEE8).
* [OT-PY] espressif/openthread @ a93706fd, ``tests/scripts/thread-cert/test_crypto.py``
  TestCryptoMaterialCreator: Thread 1.1 specification §7.1.4 key-generation test vectors 1-3.
* [OT-MESHCOP] espressif/openthread @ a93706fd, ``tests/unit/test_meshcop.cpp`` TestSteeringData /
  TestSteeringDataBloomFilterMerge (behaviour, no byte vectors) and ``src/core/mac/mac_types.cpp``
  ``DetermineKeyIndexFor``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.thread_keys import (
    InvalidPassphrase,
    InvalidPskd,
    SteeringData,
    aes_cmac_prf_128,
    crc16_ansi,
    crc16_ccitt,
    discerner_matches,
    discerner_steering_id,
    joiner_id,
    joiner_id_from_discerner,
    kek_from_key_block,
    mac_key_index,
    network_key_derivation,
    pbkdf2_aes_cmac_prf_128,
    pskc,
    validate_passphrase,
    validate_pskd,
)
from gateway.errors import InvalidArgument, ParseError

# --- PSKc ---------------------------------------------------------------------------------------

OT_PSKC_VECTORS = [
    # [OT-PSKC] TestExampleInSpec (also thread-meshcop.md §5.1)
    ("12SECRETPASSWORD34", "Test Network", "0001020304050607", "c3f59368445a1b6106be420a706d4cc9"),
    # [OT-PSKC] TestMinimumPassphrase (also thread-meshcop.md §5.1)
    ("123456", "OpenThread", "0102030405060708", "44988e22cf652eeeccd1e4c01d0154f8"),
    # [OT-PSKC] TestMaximumPassphrase: 255 characters
    ("1234567812345678" * 15 + "123456781234567", "OpenThread", "0102030405060708",
     "9e81bd35a253762f80ee04ff2fa285e9"),
]  # fmt: skip


@pytest.mark.parametrize(("passphrase", "name", "xpanid", "expected"), OT_PSKC_VECTORS)
def test_pskc_openthread_vectors(passphrase: str, name: str, xpanid: str, expected: str) -> None:
    assert pskc(passphrase, name, bytes.fromhex(xpanid)).hex() == expected
    # bytes arguments are the same thing
    assert pskc(passphrase.encode(), name.encode(), bytes.fromhex(xpanid)).hex() == expected


RFC4615_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0fedcb")
RFC4615_MSG = bytes.fromhex("000102030405060708090a0b0c0d0e0f10111213")


@pytest.mark.parametrize(
    ("key_len", "expected"),
    [  # [RFC4615] §4
        (18, "84a348a4a45d235babfffc0d2b4da09a"),
        (16, "980ae87b5f4c9c5214f5b6a8455e4c2d"),
        (10, "290d9e112edb09ee141fcf64c0b72f3d"),
    ],
)
def test_aes_cmac_prf_128_rfc4615(key_len: int, expected: str) -> None:
    assert aes_cmac_prf_128(RFC4615_KEY[:key_len], RFC4615_MSG).hex() == expected


def test_pbkdf2_first_iteration_is_the_prf_and_blocks_chain() -> None:
    salt = b"Thread" + bytes(8)
    # one iteration = PRF(password, salt || INT(1)) (RFC 8018 §5.2)
    assert pbkdf2_aes_cmac_prf_128(RFC4615_KEY, salt, 1) == aes_cmac_prf_128(
        RFC4615_KEY, salt + b"\x00\x00\x00\x01"
    )
    two = pbkdf2_aes_cmac_prf_128(b"password", salt, 3, 20)
    assert two[:16] == pbkdf2_aes_cmac_prf_128(b"password", salt, 3)
    assert len(two) == 20 and two[16:] != bytes(4)
    u1 = aes_cmac_prf_128(b"password", salt + b"\x00\x00\x00\x02")
    u2 = aes_cmac_prf_128(b"password", u1)
    u3 = aes_cmac_prf_128(b"password", u2)
    assert two[16:] == bytes(a ^ b ^ c for a, b, c in zip(u1, u2, u3, strict=True))[:4]
    with pytest.raises(InvalidArgument):
        pbkdf2_aes_cmac_prf_128(b"password", salt, 0)


def test_pskc_argument_checks() -> None:
    xp = bytes(8)
    with pytest.raises(InvalidArgument):
        pskc("123456", "0123456789abcdefg", xp)  # 17-byte network name
    pskc("123456", "0123456789abcdef", xp)  # 16 is the maximum
    with pytest.raises(InvalidArgument):
        pskc("123456", "net", bytes(7))
    with pytest.raises(InvalidPassphrase):
        pskc("12345", "net", xp)
    with pytest.raises(InvalidPassphrase):
        pskc("x" * 256, "net", xp)


# --- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pskd",
    ["J01NME", "J01NU5", "ABCDEFGHJKLMNPRSTUVWXY0123456789", "000000", b"J01NME"],
)
def test_valid_pskds(pskd: str | bytes) -> None:
    # J01NME: OT CLI README_JOINER/README_COMMISSIONER examples; J01NU5: Nordic NCS example
    assert validate_pskd(pskd) == (pskd.decode() if isinstance(pskd, bytes) else pskd)


@pytest.mark.parametrize(
    "pskd",
    [
        "J01NM",  # 5 characters
        "A" * 33,  # 33 characters
        "J01NMI",  # I, O, Q and Z are excluded
        "J01NMO",
        "J01NMQ",
        "J01NMZ",
        "j01nme",  # lower case is rejected, not folded (as in OT)
        "J01 NME",
        "J01NMÉ",
        b"J01N\xffE",
        "",
    ],
)
def test_invalid_pskds_do_not_leak(pskd: str | bytes) -> None:
    with pytest.raises(InvalidPskd) as info:
        validate_pskd(pskd)
    text = str(info.value) + repr(info.value) + info.value.hint
    if len(pskd) >= 4:
        shown = pskd if isinstance(pskd, str) else pskd.decode("latin-1")
        assert shown not in text
    assert isinstance(info.value, InvalidArgument)


def test_passphrase_rules_and_secrecy() -> None:
    assert validate_passphrase("123456") == b"123456"
    assert validate_passphrase("x" * 255) == b"x" * 255
    assert validate_passphrase("pässwörd") == "pässwörd".encode()
    bad_values: list[str | bytes] = [
        "12345",
        "x" * 256,
        b"\xff\xfe\xfd\xfc\xfb\xfa",
        "abc\x00def",
        "\ud800abcdef",
    ]
    for bad in bad_values:
        with pytest.raises(InvalidPassphrase) as info:
            validate_passphrase(bad)
        message = str(info.value)
        assert "12345" not in message and "abc" not in message and "xxxxxx" not in message


# --- joiner IDs, discerners, steering data ------------------------------------------------------


@pytest.mark.parametrize(
    ("eui64", "expected"),
    [
        ("18b4300000000002", "d65e64fa83f81cf7"),  # [OT-CLI] and [OTC-RS]
        ("0011223344556677", "d3a5f998fa6ed82d"),  # [OTC-RS]: 0xd1 | 0x02 = 0xd3
    ],
)
def test_joiner_id_vectors(eui64: str, expected: str) -> None:
    assert joiner_id(bytes.fromhex(eui64)).hex() == expected


def test_joiner_id_checks_length() -> None:
    with pytest.raises(InvalidArgument):
        joiner_id(bytes(7))


def test_crc16_catalogue_check_values() -> None:
    assert crc16_ccitt(b"123456789") == 0x31C3  # [CRC-CAT] CRC-16/XMODEM
    assert crc16_ansi(b"123456789") == 0xFEE8  # [CRC-CAT] CRC-16/UMTS (BUYPASS)


def test_steering_data_vector_from_independent_port() -> None:
    # [OTC-RS] compute_bloom_filter_sets_two_crc_indexed_bits: bits 44 and 14 of 128
    sd = SteeringData.empty(16).with_joiner_id(bytes.fromhex("0102030405060708"))
    assert sd.to_bytes() == bytes.fromhex("00000000000000000000100000004000")


def test_steering_data_example_of_the_fact_sheet() -> None:
    # thread-meshcop.md §5.4 (OT and OTC implement the same rule): bits 1 and 4
    jid = bytes.fromhex("d65e64fa83f81cf7")
    assert crc16_ccitt(jid) == 0x9B81 and crc16_ansi(jid) == 0x8A84
    sd = SteeringData.empty().with_eui64(bytes.fromhex("18b4300000000002"))
    assert sd.to_bytes() == bytes.fromhex("00000000000000000000000000000012")
    assert sd.contains_joiner_id(jid)


def test_steering_data_behaviour_as_in_openthread_unit_test() -> None:
    # [OT-MESHCOP] TestSteeringData
    id1 = bytes.fromhex("1020031510006016")
    id2 = bytes.fromhex("beefcafedeadbabe")
    permit = SteeringData.permit_all()
    assert permit.to_bytes() == b"\xff" and permit.permits_all and not permit.is_empty
    assert permit.contains_joiner_id(id1) and permit.contains_joiner_id(id2)
    cleared = SteeringData.empty(1)
    assert cleared.is_empty and not cleared.permits_all and not cleared.contains_joiner_id(id1)
    for length in range(1, 17):
        sd = SteeringData.empty(length)
        assert sd.length == length and sd.is_empty and not sd.contains_joiner_id(id1)
        sd = sd.with_joiner_id(id1)
        assert not sd.is_empty and not sd.permits_all and sd.contains_joiner_id(id1)
        sd = sd.with_joiner_id(id2)
        assert sd.length == length and sd.contains_joiner_id(id1) and sd.contains_joiner_id(id2)
    for bad in (0, 17):
        with pytest.raises(InvalidArgument):
            SteeringData.empty(bad)
    assert SteeringData(b"\xff" * 16).permits_all


def test_steering_data_merge_as_in_openthread_unit_test() -> None:
    # [OT-MESHCOP] TestSteeringDataBloomFilterMerge with lengths 16, 8, 4, 2, 1
    ids = [bytes([i] * 8) for i in range(1, 4)]
    others = [bytes([0x40 + i] * 8) for i in range(1, 4)]
    for length in (16, 8, 4, 2, 1):
        for other_length in (16, 8, 4, 2, 1):
            a = SteeringData.for_joiner_ids(ids, length)
            b = SteeringData.for_joiner_ids(others, other_length)
            if other_length > length:
                with pytest.raises(InvalidArgument):
                    a.merged(b)
                continue
            merged = a.merged(b)
            assert merged.length == length
            assert all(merged.contains_joiner_id(j) for j in ids + others)


def test_steering_data_bytes_round_trip_and_parse_errors() -> None:
    sd = SteeringData.for_joiner_ids([bytes(8)], 4)
    assert SteeringData.from_bytes(sd.to_bytes()) == sd
    for bad in (b"", bytes(17)):
        with pytest.raises(ParseError):
            SteeringData.from_bytes(bad)
    with pytest.raises(InvalidArgument):
        SteeringData.empty().with_joiner_id(bytes(7))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_steering_data_from_bytes(data: bytes) -> None:
    try:
        sd = SteeringData.from_bytes(data)
    except ParseError:
        return
    assert sd.to_bytes() == data


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=8), max_size=10), st.integers(1, 16))
def test_bloom_filter_has_no_false_negatives(ids: list[bytes], length: int) -> None:
    sd = SteeringData.for_joiner_ids(ids, length)
    assert all(sd.contains_joiner_id(j) for j in ids)
    assert SteeringData.from_bytes(sd.to_bytes()) == sd


def test_discerner_ids() -> None:
    # OT SteeringData::CalculateHashBitIndexes(JoinerDiscerner): zero buffer, value at the end
    assert discerner_steering_id(0xABC, 12).hex() == "0000000000000abc"
    assert discerner_steering_id(0x1, 1).hex() == "0000000000000001"
    assert discerner_steering_id(2**64 - 1, 64) == b"\xff" * 8
    sd = SteeringData.empty().with_discerner(0xABC, 12)
    assert sd == SteeringData.empty().with_joiner_id(bytes.fromhex("0000000000000abc"))
    assert sd.contains_discerner(0xABC, 12)
    for value, length in ((0x1000, 12), (-1, 12), (1, 0), (1, 65)):
        with pytest.raises(InvalidArgument):
            discerner_steering_id(value, length)


def test_joiner_id_from_discerner() -> None:
    jid = joiner_id_from_discerner(0xABC, 12, rng=lambda n: b"\x00" * n)
    assert jid.hex() == "0200000000000abc"  # local bit set, discerner in the low 12 bits
    jid = joiner_id_from_discerner(0xABC, 12, rng=lambda n: b"\xff" * n)
    assert jid.hex() == "ffffffffffffffff"[:13] + "abc"
    assert discerner_matches(jid, 0xABC, 12)
    assert not discerner_matches(jid, 0xABD, 12)
    random_id = joiner_id_from_discerner(0x12345, 20)
    assert random_id[0] & 0x02 and discerner_matches(random_id, 0x12345, 20)


# --- network keys, KEK --------------------------------------------------------------------------

NETWORK_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.mark.parametrize(
    ("seq", "mle", "mac"),
    [  # [OT-PY] Thread 1.1 §7.1.4.1-3 (the first two also in thread-meshcop.md §5.6)
        (0, "5445f4158fd75912175809f8b57a66a4", "de89c53af382b421e0fde5a9bae3bef0"),
        (1, "8f4cd1a27d95c07d12db8974bd615c13", "9be0d1af7bd87350deabcdd07febb9d5"),
        (2, "016e2ab8ec88879687a72e0a357ecf2a", "564109e9d2aad7f723ec3b96110eefa3"),
    ],
)
def test_network_key_derivation_spec_vectors(seq: int, mle: str, mac: str) -> None:
    mle_key, mac_key = network_key_derivation(NETWORK_KEY, seq)
    assert (mle_key.hex(), mac_key.hex()) == (mle, mac)


def test_network_key_derivation_checks() -> None:
    with pytest.raises(InvalidArgument):
        network_key_derivation(bytes(15), 0)
    with pytest.raises(InvalidArgument):
        network_key_derivation(NETWORK_KEY, 2**32)
    with pytest.raises(InvalidArgument):
        network_key_derivation(NETWORK_KEY, -1)


@pytest.mark.parametrize(
    ("seq", "index"), [(0, 1), (1, 2), (126, 127), (127, 128), (128, 1), (0xFFFFFFFF, 128)]
)
def test_mac_key_index(seq: int, index: int) -> None:
    # [OT-MESHCOP] src/core/mac/mac_types.cpp DetermineKeyIndexFor: (seq & 0x7f) + 1
    assert mac_key_index(seq) == index


def test_kek_from_key_block_vector() -> None:
    # [OTC-RS] crates/thread-dtls/src/tests/keys.rs: client_write_key || server_write_key ||
    # client_IV || server_IV from OpenSSL's TLS1-PRF, KEK = SHA-256(key block)[:16]
    key_block = bytes.fromhex(
        "710b83fb8d70267ead91effdd7eb79febec55f8c6af131a377e62e471ca5a38cda24a9d295369b74"
    )
    assert kek_from_key_block(key_block).hex() == "adf385fd8aa5cdbd6fe31939ce81d773"
    for bad in (bytes(39), bytes(41)):
        with pytest.raises(InvalidArgument):
            kek_from_key_block(bad)
