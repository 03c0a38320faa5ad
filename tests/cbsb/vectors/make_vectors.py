"""Generate the frozen CBSB-1 vectors (run once; the JSON files are committed and never rewritten).

    python -m tests.cbsb.vectors.make_vectors          # writes cbsb1_psk.json, cbsb1_pfs.json

Every input below is fixed. ``tests/cbsb/test_cbsb_vectors.py`` calls :func:`build_vectors` again
and compares the result with the frozen files, so any change to the wire format or the key
schedule makes that test fail. Regenerating the files is a protocol version change (CBSB-2), not
a fix.

Fixed inputs that come from outside the project: the Thread active dataset is the one printed by
``dataset active -x`` in the espressif/esp-matter "Light + OTBR" example README; the X25519 private
keys of the PFS profile are Alice's and Bob's from RFC 7748 §6.1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gateway.crypto import cbsb_keys as k
from gateway.wire.cbsb import BeaconFlags, BeaconRequest, Delivery, Status
from gateway.wire.cbsb_session import (
    build_abort,
    build_ack,
    build_beacon,
    build_confirm,
    build_denied,
    build_done,
    build_hint,
    build_join_request,
    build_response_ok,
)

HERE = Path(__file__).resolve().parent

ESP_MATTER_DATASET = bytes.fromhex(
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c3901546"
    "0510874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a"
    "0f60ca6dd3af116bdefd2a21270c0402a0f7f8"
)
RFC7748_ALICE_PRIVATE = bytes.fromhex(
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
)
RFC7748_BOB_PRIVATE = bytes.fromhex(
    "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
)

INPUTS: dict[str, Any] = {
    "k_dev": bytes(range(0x00, 0x20)),
    "dev_id": bytes.fromhex("a1a2a3a4a5a6a7a8"),
    "gw_id": bytes.fromhex("b1b2b3b4b5b6b7b8"),
    "sid": bytes(range(0x40, 0x50)),
    "exp": 0x65000000,
    "epoch": 7,
    "r_g": bytes(range(0x60, 0x70)),
    "n_t": bytes(range(0x80, 0x90)),
    "k_bcn": bytes(range(0xC0, 0xD0)),
    "window_left_s": 150,
    "channel": 13,
    "pan_id": 0x8A63,
    "caps": 0x0001,
    "steering_len": 8,
    "delivery": Delivery(thread_dataset=ESP_MATTER_DATASET, key_sequence=0).to_bytes(),
}


def _hex(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {key: _hex(val) for key, val in v.items()}
    if isinstance(v, list | tuple):
        return [_hex(x) for x in v]
    return v


def build_vectors(profile: str) -> dict[str, Any]:
    """All frozen values of one profile ("psk" or "pfs"), as JSON-ready data."""
    if profile not in ("psk", "pfs"):
        raise ValueError(profile)
    i = INPUTS
    pfs = profile == "pfs"
    mode = BeaconFlags.TARGETED | (BeaconFlags.PFS_REQUIRED if pfs else BeaconFlags.NONE)
    psk_t = k.derive_psk_t(i["k_dev"], i["sid"], i["gw_id"], i["dev_id"], i["exp"], int(mode))
    k_bind = k.derive_k_bind(i["k_dev"], i["sid"], i["dev_id"])
    steering = k.steering_build([i["dev_id"]], i["steering_len"])
    beacon = build_beacon(
        flags=mode,
        gw_id=i["gw_id"],
        sid=i["sid"],
        epoch=i["epoch"],
        r_g=i["r_g"],
        exp=i["exp"],
        window_left_s=i["window_left_s"],
        channel=i["channel"],
        pan_id=i["pan_id"],
        k_bcn=i["k_bcn"],
        steering=steering,
    )
    m0 = beacon.to_bytes()
    x_t = k.x25519_keypair(RFC7748_ALICE_PRIVATE) if pfs else None
    x_g = k.x25519_keypair(RFC7748_BOB_PRIVATE) if pfs else None
    m1 = build_join_request(
        m0, i["epoch"], i["dev_id"], psk_t, i["n_t"], x_t.public if x_t else None
    )
    m1_raw = m1.to_bytes()
    flight = build_response_ok(
        m0=m0,
        m1_raw=m1_raw,
        m1=m1,
        psk_t=psk_t,
        r_g=i["r_g"],
        k_bcn=i["k_bcn"],
        delivery=i["delivery"],
        x_g=x_g,
    )
    keys = flight.keys
    bp = k.bind_proof(k_bind, i["sid"], i["gw_id"], i["dev_id"], i["n_t"], i["r_g"], i["epoch"])
    m3 = build_confirm(keys, flight.th2, i["dev_id"], bp, i["caps"])
    th3 = k.transcript_th3(flight.th2, m3)
    m4 = build_done(keys, th3, i["dev_id"])
    dh = k.x25519_shared(x_t.private, x_g.public) if x_t and x_g else None
    out: dict[str, Any] = {
        "description": (
            f"frozen CBSB-1 vectors, {profile.upper()} profile. Generated once by "
            "tests/cbsb/vectors/make_vectors.py from the fixed inputs below; never regenerate."
        ),
        "inputs": {**{key: val for key, val in i.items()}, "mode": int(mode), "profile": profile},
        "key_schedule": {
            "psk_t": psk_t,
            "k_bind": k_bind,
            "steering_bits": list(k.steering_bits(i["dev_id"], i["steering_len"])),
            "steering": steering,
            "btag": beacon.btag,
            "proof_t": m1.proof,
            "th1": flight.th1,
            "x25519_shared": dh,
            "k_g2t": keys.k_g2t,
            "k_t2g": keys.k_t2g,
            "k_link": keys.k_link,
            "nonce_m2": k.aead_nonce(k.DIR_G2T, k.CTR_JOIN_RESPONSE),
            "nonce_m3": k.aead_nonce(k.DIR_T2G, k.CTR_JOIN_CONFIRM),
            "nonce_m4": k.aead_nonce(k.DIR_G2T, k.CTR_DONE),
            "delivery_digest": k.delivery_digest(i["delivery"]),
            "th2": flight.th2,
            "bind_proof": bp,
            "th3": th3,
        },
        "frames": {
            "beacon_request": BeaconRequest().to_bytes(),
            "m0": m0,
            "m1": m1_raw,
            "m2": flight.m2,
            "delivery_chunks": list(flight.chunks),
            "delivery_ack_seq1": build_ack(keys, flight.th1, i["dev_id"], 1, 0b1),
            "m3": m3,
            "m4": m4,
            "abort_g2t_session_closed": build_abort(
                keys, flight.th1, i["dev_id"], Status.SESSION_CLOSED, k.DIR_G2T
            ),
            "abort_t2g_delivery_rejected": build_abort(
                keys, flight.th1, i["dev_id"], Status.DELIVERY_REJECTED, k.DIR_T2G
            ),
            "m2_denied": build_denied(
                m0=m0, m1_raw=m1_raw, m1=m1, psk_t=psk_t, r_g=i["r_g"], x_g=x_g
            ),
            "m2_hint_pending": build_hint(Status.PENDING_USER_CONFIRM, i["dev_id"], i["n_t"]),
        },
    }
    return dict(_hex(out))


FILES = {"psk": HERE / "cbsb1_psk.json", "pfs": HERE / "cbsb1_pfs.json"}


def main(argv: list[str]) -> int:
    force = "--force" in argv
    for profile, path in FILES.items():
        if path.exists() and not force:
            print(
                f"{path.name} exists; frozen vectors are not regenerated (use --force only "
                "for a new protocol version)",
                file=sys.stderr,
            )
            continue
        path.write_text(json.dumps(build_vectors(profile), indent=2, sort_keys=True) + "\n")
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
