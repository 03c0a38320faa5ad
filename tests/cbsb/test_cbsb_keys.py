"""CBSB-1 key schedule: primitives against published vectors, then the whole schedule re-derived
independently with plain ``hmac``/``hashlib`` (no code shared with gateway.crypto.cbsb_keys)."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.crypto import cbsb_keys as k
from gateway.errors import CryptoError

VECTORS = Path(__file__).parent / "vectors"


# --- an independent HKDF (RFC 5869 §2.2-2.3), written from the RFC text ------------------------


def ref_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> tuple[bytes, bytes]:
    if not salt:
        salt = bytes(32)  # RFC 5869 §2.2: "if not provided, it is set to a string of HashLen zeros"
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return prk, okm[:length]


# RFC 5869 Appendix A.1, A.2 and A.3 (the SHA-256 test cases).
RFC5869 = [
    (
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        "0b" * 22,
        "",
        "",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_reference_hkdf_matches_rfc5869(ikm, salt, info, length, prk, okm) -> None:
    got_prk, got_okm = ref_hkdf(
        bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info), length
    )
    assert got_prk.hex() == prk
    assert got_okm.hex() == okm


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_module_hkdf_matches_rfc5869(ikm, salt, info, length, prk, okm) -> None:
    del prk
    got = k.hkdf_sha256(bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info), length)
    assert got.hex() == okm


def test_mac16_is_truncated_hmac_sha256_rfc4231() -> None:
    # RFC 4231 §4.2 (test case 1) and §4.3 (test case 2), HMAC-SHA-256 outputs.
    assert k.mac16(b"\x0b" * 20, b"Hi There").hex() == "b0344c61d8db38535ca8afceaf0bf12b"
    assert k.mac16(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c7"
    )


def test_ccm_shape_matches_rfc3610_packet_vectors() -> None:
    # RFC 3610 §8 packet vectors #1 and #2: AES-128, 13-byte nonce (L=2), 8-byte MAC (M=8) -
    # exactly the AESCCM(key, tag_length=8) + 13-byte nonce shape that seal()/open_sealed() use.
    key = bytes.fromhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf")
    aad = bytes.fromhex("0001020304050607")
    cases = [
        (
            "00000003020100a0a1a2a3a4a5",
            "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
            "588c979a61c663d2f066d0c2c0f989806d5f6b61dac38417e8d12cfdf926e0",
        ),
        (
            "00000004030201a0a1a2a3a4a5",
            "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3ba091d56e10400916",
        ),
    ]
    for nonce, pt, ct in cases:
        got = AESCCM(key, tag_length=k.TAG_LEN).encrypt(
            bytes.fromhex(nonce), bytes.fromhex(pt), aad
        )
        assert got.hex() == ct


def test_seal_uses_the_specified_nonce_layout() -> None:
    # docs/cbsb.md §5.4: nonce = dir(1) || ctr(4, big-endian) || 8 zero bytes.
    assert k.aead_nonce(k.DIR_G2T, 0x0102).hex() == "01" + "00000102" + "00" * 8
    assert k.aead_nonce(k.DIR_T2G, 7).hex() == "02" + "00000007" + "00" * 8
    key = bytes(range(16))
    sealed = k.seal(key, k.DIR_T2G, 7, b"payload", b"aad")
    assert sealed == AESCCM(key, tag_length=8).encrypt(
        bytes.fromhex("0200000007" + "00" * 8), b"payload", b"aad"
    )
    assert k.open_sealed(key, k.DIR_T2G, 7, sealed, b"aad") == b"payload"
    for bad_dir, bad_ctr in [(k.DIR_G2T, 7), (k.DIR_T2G, 8)]:
        with pytest.raises(CryptoError):
            k.open_sealed(key, bad_dir, bad_ctr, sealed, b"aad")
    with pytest.raises(CryptoError):
        k.aead_nonce(3, 0)


def test_x25519_rfc7748_section_6_1() -> None:
    # RFC 7748 §6.1: Alice's and Bob's keys and the shared secret.
    alice = k.x25519_keypair(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = k.x25519_keypair(
        bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert alice.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert bob.public.hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert k.x25519_shared(alice.private, bob.public).hex() == shared
    assert k.x25519_shared(bob.private, alice.public).hex() == shared
    assert alice.private.hex() not in repr(alice)


def test_x25519_low_order_point_is_refused() -> None:
    # The all-zero u-coordinate is of small order: the shared secret would be all zeros.
    with pytest.raises(CryptoError):
        k.x25519_shared(bytes(range(32)), bytes(32))


# --- the CBSB-1 key schedule re-derived independently -------------------------------------------


def _H(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _mac16(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()[:16]


@pytest.mark.parametrize("profile", ["psk", "pfs"])
def test_key_schedule_independently_rederived(profile: str) -> None:
    """Recompute docs/cbsb.md §5 from the frozen inputs with hmac/hashlib and the RFC 5869 HKDF
    above, and compare with both the module and the frozen CBSB-1 vectors."""
    v = json.loads((VECTORS / f"cbsb1_{profile}.json").read_text())
    i: dict[str, Any] = {
        key: bytes.fromhex(val) if isinstance(val, str) and key != "profile" else val
        for key, val in v["inputs"].items()
    }
    ks: dict[str, Any] = {
        key: bytes.fromhex(val) if isinstance(val, str) else val
        for key, val in v["key_schedule"].items()
    }
    fr = v["frames"]
    k_dev, dev_id, gw_id, sid = i["k_dev"], i["dev_id"], i["gw_id"], i["sid"]
    exp, mode, epoch = i["exp"], i["mode"], i["epoch"]
    r_g, n_t = i["r_g"], i["n_t"]

    # PSK_T and K_bind (docs/cbsb.md §5.1).
    _, psk_t = ref_hkdf(
        k_dev, sid, b"cbsb1 psk" + gw_id + dev_id + struct.pack(">IB", exp, mode), 32
    )
    _, k_bind = ref_hkdf(k_dev, sid, b"cbsb1 bind" + dev_id, 32)
    assert psk_t == ks["psk_t"] == k.derive_psk_t(k_dev, sid, gw_id, dev_id, exp, mode)
    assert k_bind == ks["k_bind"] == k.derive_k_bind(k_dev, sid, dev_id)

    # Steering bits (§4.3): two big-endian uint16 of H("cbsb1 steer"||dev_id), mod 8*len.
    h = _H(b"cbsb1 steer", dev_id)
    nbits = 8 * i["steering_len"]
    bits = [int.from_bytes(h[0:2], "big") % nbits, int.from_bytes(h[2:4], "big") % nbits]
    assert bits == ks["steering_bits"]
    steering = bytearray(i["steering_len"])
    for b in bits:
        steering[b // 8] |= 0x80 >> (b % 8)
    assert bytes(steering) == ks["steering"]

    # Beacon tag over M0 without its last 8 bytes.
    m0 = bytes.fromhex(fr["m0"])
    assert _mac16(i["k_bcn"], m0[:-8])[:8] == m0[-8:] == ks["btag"]

    # Func: proof_T = MAC16(PSK_T, "cbsb1 req" || H(M0) || M1 without proof).
    m1 = bytes.fromhex(fr["m1"])
    assert _mac16(psk_t, b"cbsb1 req" + _H(m0) + m1[:-16]) == m1[-16:] == ks["proof_t"]

    # TH1 and the OKM split.
    th1 = _H(b"cbsb1 th1", m0, m1)
    assert th1 == ks["th1"]
    ikm = psk_t
    if profile == "pfs":
        assert ks["x25519_shared"] is not None
        ikm = psk_t + ks["x25519_shared"]
    else:
        assert ks["x25519_shared"] is None
    _, okm = ref_hkdf(ikm, r_g + n_t, b"cbsb1 keys" + th1, 48)
    assert (okm[0:16], okm[16:32], okm[32:48]) == (ks["k_g2t"], ks["k_t2g"], ks["k_link"])

    # M2 decrypts under K_g2t with nonce(1,0) and AAD = header || TH1.
    m2 = bytes.fromhex(fr["m2"])
    hdr_len = 15 + (32 if profile == "pfs" else 0)
    nonce = bytes([1]) + (0).to_bytes(4, "big") + bytes(8)
    assert nonce == ks["nonce_m2"]
    body = AESCCM(okm[0:16], tag_length=8).decrypt(nonce, m2[hdr_len:], m2[:hdr_len] + th1)
    assert body[:16] == i["k_bcn"]
    total, n_chunks = struct.unpack(">HB", body[16:19])
    delivery = body[19:]
    for idx, chunk in enumerate(fr["delivery_chunks"], start=1):
        c = bytes.fromhex(chunk)
        delivery += AESCCM(okm[0:16], tag_length=8).decrypt(
            bytes([1]) + idx.to_bytes(4, "big") + bytes(8), c[11:], c[:11] + th1
        )
    assert len(delivery) == total and n_chunks == 1 + len(fr["delivery_chunks"])
    assert delivery == i["delivery"]

    # DD, TH2, BP and M3 (sealed under K_t2g, nonce(2,0), AAD = header || TH2).
    dd = _H(b"cbsb1 dd", delivery)
    th2 = _H(b"cbsb1 th2", th1, m2, dd)
    assert (dd, th2) == (ks["delivery_digest"], ks["th2"])
    bp = _mac16(k_bind, b"cbsb1 bp" + sid + gw_id + dev_id + n_t + r_g + struct.pack(">H", epoch))
    assert bp == ks["bind_proof"]
    m3 = bytes.fromhex(fr["m3"])
    pt = AESCCM(okm[16:32], tag_length=8).decrypt(bytes([2]) + bytes(12), m3[11:], m3[:11] + th2)
    assert pt == bp + struct.pack(">H", i["caps"])

    # M4: tag over the empty plaintext, nonce(1, 0x100), AAD = header || TH3.
    th3 = _H(b"cbsb1 th3", th2, m3)
    assert th3 == ks["th3"]
    m4 = bytes.fromhex(fr["m4"])
    assert (
        AESCCM(okm[0:16], tag_length=8).decrypt(
            bytes([1]) + (0x100).to_bytes(4, "big") + bytes(8), m4[11:], m4[:11] + th3
        )
        == b""
    )


def test_psk_t_is_scoped_to_every_input() -> None:
    base: dict[str, Any] = dict(
        k_dev=bytes(32), sid=bytes(16), gw_id=bytes(8), dev_id=bytes(8), exp=1, mode=1
    )
    ref = k.derive_psk_t(**base)
    variants: list[dict[str, Any]] = [
        {"k_dev": b"\x01" + bytes(31)},
        {"sid": b"\x01" + bytes(15)},
        {"gw_id": b"\x01" + bytes(7)},
        {"dev_id": b"\x01" + bytes(7)},
        {"exp": 2},
        {"mode": 0},
    ]
    for change in variants:
        assert k.derive_psk_t(**{**base, **change}) != ref


def test_inputs_of_the_wrong_size_are_refused_without_echoing_them() -> None:
    secret = bytes(range(31))
    with pytest.raises(CryptoError) as exc:
        k.derive_psk_t(secret, bytes(16), bytes(8), bytes(8), 0, 0)
    assert secret.hex() not in str(exc.value) and "K_dev" in str(exc.value)
    with pytest.raises(CryptoError):
        k.derive_join_keys(bytes(32), bytes(15), bytes(16), bytes(32))
    with pytest.raises(CryptoError):
        k.seal(bytes(15), k.DIR_G2T, 0, b"", b"")


def test_failed_open_says_nothing_about_keys() -> None:
    key = bytes(range(16))
    sealed = bytearray(k.seal(key, k.DIR_G2T, 0, b"secret plaintext", b""))
    sealed[0] ^= 1
    with pytest.raises(CryptoError) as exc:
        k.open_sealed(key, k.DIR_G2T, 0, bytes(sealed), b"")
    assert key.hex() not in str(exc.value) and "secret" not in str(exc.value)


def test_join_keys_repr_hides_keys() -> None:
    keys = k.derive_join_keys(bytes(range(32)), bytes(16), bytes(16), bytes(32))
    text = repr(keys)
    for part in (keys.k_g2t, keys.k_t2g, keys.k_link):
        assert part.hex() not in text
    assert len({keys.k_g2t, keys.k_t2g, keys.k_link}) == 3


def test_steering_filter_has_no_false_negatives() -> None:
    devs = [bytes([0xA0, 0, 0, 0, 0, 0, 0, n]) for n in range(20)]
    for length in (1, 8, 16):
        filt = k.steering_build(devs, length)
        assert all(k.steering_contains(filt, d) for d in devs)
    assert not k.steering_contains(bytes(8), devs[0])
    assert not k.steering_contains(b"", devs[0])


def test_ct_equal() -> None:
    assert k.ct_equal(b"abc", b"abc")
    assert not k.ct_equal(b"abc", b"abd")
    assert not k.ct_equal(b"abc", b"ab")
