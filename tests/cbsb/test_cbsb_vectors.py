"""Frozen CBSB-1 vectors.

``vectors/cbsb1_psk.json`` and ``vectors/cbsb1_pfs.json`` were generated ONCE by
``vectors/make_vectors.py`` from fixed inputs and are never regenerated: these are frozen CBSB-1
vectors, our own outputs kept as a regression anchor (the independent checks of the same numbers
are in test_cbsb_keys.py). Any change to the wire format or the key schedule fails here; such a
change is a new protocol version, not an update of these files.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.crypto import cbsb_keys as k
from gateway.errors import CryptoError
from gateway.wire.cbsb import (
    Abort,
    Beacon,
    BeaconRequest,
    Delivery,
    DeliveryAck,
    DeliveryChunk,
    JoinConfirm,
    JoinDone,
    JoinRequest,
    JoinResponse,
    Status,
    parse_frame,
)
from gateway.wire.cbsb_session import (
    open_abort,
    open_ack,
    open_chunk,
    open_confirm,
    open_done,
    open_response,
    verify_beacon_tag,
    verify_join_request,
)
from tests.cbsb.vectors.make_vectors import FILES, build_vectors

PROFILES = ["psk", "pfs"]


def frozen(profile: str) -> dict[str, Any]:
    return dict(json.loads(FILES[profile].read_text()))


@pytest.mark.parametrize("profile", PROFILES)
def test_frozen_cbsb1_vectors_unchanged(profile: str) -> None:
    """Recompute every value from the fixed inputs and compare with the frozen file."""
    want = frozen(profile)
    got = json.loads(json.dumps(build_vectors(profile)))
    assert got["inputs"] == want["inputs"]
    for section in ("key_schedule", "frames"):
        for name, value in want[section].items():
            assert got[section][name] == value, f"{section}.{name} changed"
        assert got[section].keys() == want[section].keys()


@pytest.mark.parametrize("profile", PROFILES)
def test_frozen_frames_parse_and_reencode(profile: str) -> None:
    fr = frozen(profile)["frames"]
    expected_types = {
        "beacon_request": BeaconRequest,
        "m0": Beacon,
        "m1": JoinRequest,
        "m2": JoinResponse,
        "delivery_ack_seq1": DeliveryAck,
        "m3": JoinConfirm,
        "m4": JoinDone,
        "abort_g2t_session_closed": Abort,
        "abort_t2g_delivery_rejected": Abort,
        "m2_denied": JoinResponse,
        "m2_hint_pending": JoinResponse,
    }
    for name, cls in expected_types.items():
        raw = bytes.fromhex(fr[name])
        frame = parse_frame(raw)
        assert isinstance(frame, cls), name
        assert frame.to_bytes() == raw
    for chunk in fr["delivery_chunks"]:
        frame = parse_frame(bytes.fromhex(chunk))
        assert isinstance(frame, DeliveryChunk)


@pytest.mark.parametrize("profile", PROFILES)
def test_frozen_exchange_verifies_from_both_sides(profile: str) -> None:
    """Walk the frozen exchange as the thing and as the gateway would, with the message API."""
    v = frozen(profile)
    i = {
        key: bytes.fromhex(val) if isinstance(val, str) and key != "profile" else val
        for key, val in v["inputs"].items()
    }
    ks = v["key_schedule"]
    fr: dict[str, Any] = {
        key: val if isinstance(val, list) else bytes.fromhex(val)
        for key, val in v["frames"].items()
    }
    psk_t = bytes.fromhex(ks["psk_t"])
    m0, m1_raw = fr["m0"], fr["m1"]
    beacon = Beacon.from_bytes(m0)
    assert verify_beacon_tag(m0, i["k_bcn"])
    assert k.steering_contains(beacon.steering, i["dev_id"])
    m1 = JoinRequest.from_bytes(m1_raw)
    assert verify_join_request(m0, m1, psk_t)  # gateway side

    x_t_private = (
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        if profile == "pfs"
        else None
    )
    m2 = JoinResponse.from_bytes(fr["m2"])
    opened = open_response(
        m0=m0, m1_raw=m1_raw, m1=m1, psk_t=psk_t, r_g=i["r_g"], m2=m2, x_t_private=x_t_private
    )
    assert opened.status == Status.OK and opened.body is not None
    assert opened.keys.k_link.hex() == ks["k_link"]
    payload = opened.body.first_chunk
    for chunk in v["frames"]["delivery_chunks"]:
        payload += open_chunk(
            opened.keys, opened.th1, DeliveryChunk.from_bytes(bytes.fromhex(chunk))
        )
    assert payload == i["delivery"]
    assert Delivery.from_bytes(payload).key_sequence == 0

    ack = open_ack(opened.keys, opened.th1, DeliveryAck.from_bytes(fr["delivery_ack_seq1"]))
    assert ack.bitmap == 1
    th2 = bytes.fromhex(ks["th2"])
    body = open_confirm(opened.keys, th2, JoinConfirm.from_bytes(fr["m3"]))
    assert body.bind_proof.hex() == ks["bind_proof"] and body.caps == i["caps"]
    open_done(opened.keys, bytes.fromhex(ks["th3"]), JoinDone.from_bytes(fr["m4"]))
    open_abort(opened.keys, opened.th1, Abort.from_bytes(fr["abort_g2t_session_closed"]), k.DIR_G2T)
    open_abort(
        opened.keys, opened.th1, Abort.from_bytes(fr["abort_t2g_delivery_rejected"]), k.DIR_T2G
    )
    with pytest.raises(CryptoError):  # direction matters: no reflection
        open_abort(
            opened.keys, opened.th1, Abort.from_bytes(fr["abort_g2t_session_closed"]), k.DIR_T2G
        )

    denied = open_response(
        m0=m0,
        m1_raw=m1_raw,
        m1=m1,
        psk_t=psk_t,
        r_g=i["r_g"],
        m2=JoinResponse.from_bytes(fr["m2_denied"]),
        x_t_private=x_t_private,
    )
    assert denied.status == Status.CLOUD_DENIED and denied.body is None


def test_frozen_frame_sizes() -> None:
    # docs/cbsb.md §4 size table (cloud-bootstrap.md §10.13 asked for M1 <= 77, M3 <= 37, M4 = 19).
    psk, pfs = frozen("psk")["frames"], frozen("pfs")["frames"]
    size = lambda h: len(h) // 2  # noqa: E731
    assert size(psk["m0"]) == size(pfs["m0"]) == 71
    assert size(psk["beacon_request"]) == 4
    assert (size(psk["m1"]), size(pfs["m1"])) == (45, 77)
    assert size(psk["m2"]) == size(pfs["m2"]) == 104
    assert (size(psk["m3"]), size(psk["m4"])) == (37, 19)
    assert size(psk["delivery_ack_seq1"]) == 21
    assert (size(psk["m2_denied"]), size(pfs["m2_denied"]), size(psk["m2_hint_pending"])) == (
        23,
        55,
        15,
    )
    assert [size(c) for c in psk["delivery_chunks"]] == [71]
    assert [size(c) for c in pfs["delivery_chunks"]] == [103]
