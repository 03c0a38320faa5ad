"""Thread codec benchmark (not a test): messages per second for typical MLE, MeshCoP, TMF CoAP
and dataset work done by the border router and joiner router.

    python tests/benchmarks/bench_codecs_thread.py [--seconds S] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.wire import meshcop as mc  # noqa: E402
from gateway.wire import mle  # noqa: E402
from gateway.wire.coap import TmfMessage, TmfUri, tmf_request  # noqa: E402
from gateway.wire.dataset import ActiveDataset  # noqa: E402

# OpenThread CLI README example dataset (src/cli/README_DATASET.md).
DATASET_HEX = (
    "0e080000000000010000000300000f35060004001fffe0020839758ec8144b07fb0708fdf1f1add0797dc005"
    "10f366cec7a446bab978d90d27abe38f23030f4f70656e5468726561642d353933380102593804103ca67c96"
    "9efb0d0c74a4d8ee923b576c0c0402a0f7f8"
)
MLE_KEY = bytes.fromhex("5445f4158fd75912175809f8b57a66a4")  # any 16 bytes will do
SRC = ipaddress.IPv6Address("fe80::18b4:3000:0:2")
DST = ipaddress.IPv6Address("fe80::18b4:3000:0:1")


def rate(fn: Callable[[], object], seconds: float) -> float:
    n = 0
    batch = 64
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.4, help="time per case")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    disc_req = mle.discovery_request().to_unsecured_bytes()
    disc_rsp_msg = mle.discovery_response(
        ext_pan_id=bytes(8),
        network_name="OpenThread-5938",
        steering_data=bytes(15) + b"\x12",
        joiner_udp_port=1000,
    )
    disc_rsp = disc_rsp_msg.to_unsecured_bytes()
    parent_req = mle.MleMessage(
        mle.MleCommand.PARENT_REQUEST,
        (
            mle.ModeTlv.of(rx_on_when_idle=True, full_thread_device=False, full_network_data=False),
            mle.ChallengeTlv(bytes(8)),
            mle.ScanMaskTlv.of(router=True, end_device=False),
            mle.VersionTlv(5),
        ),
    )
    secured = mle.encode_secured(
        parent_req, mle_key=MLE_KEY, key_sequence=0, frame_counter=1, source=SRC, destination=DST
    )
    rly_rx = tmf_request(
        TmfUri.RLY_RX,
        [
            mc.JoinerUdpPortTlv(1000),
            mc.JoinerIidTlv(bytes(8)),
            mc.JoinerRouterLocatorTlv(0x0400),
            mc.JoinerDtlsEncapsulationTlv(bytes(200)),
        ],
        mid=1,
        token=b"\x01\x02",
        confirmable=False,
    )
    rly_rx_bytes = rly_rx.to_bytes()
    comm_pet = tmf_request(TmfUri.COMM_PET, [mc.CommissionerIdTlv("OT")], mid=2, token=b"ab")
    dataset = ActiveDataset.from_hex(DATASET_HEX)
    join_ent_payload = mc.encode_meshcop_tlvs(dataset.meshcop_tlvs())

    cases: dict[str, Callable[[], object]] = {
        "mle discovery request parse": lambda: mle.parse_discovery_request(
            mle.parse_mle(disc_req)  # type: ignore[arg-type]
        ),
        "mle discovery response build": lambda: mle.discovery_response(
            ext_pan_id=bytes(8),
            network_name="OpenThread-5938",
            steering_data=b"\xff",
            joiner_udp_port=1000,
        ).to_unsecured_bytes(),
        "mle discovery response parse": lambda: mle.parse_discovery_response(
            mle.parse_mle(disc_rsp)  # type: ignore[arg-type]
        ),
        "mle secured parent request encrypt": lambda: mle.encode_secured(
            parent_req,
            mle_key=MLE_KEY,
            key_sequence=0,
            frame_counter=1,
            source=SRC,
            destination=DST,
        ),
        "mle secured parent request decrypt": lambda: mle.parse_mle(secured).decrypt(  # type: ignore[union-attr]
            MLE_KEY, SRC, DST
        ),
        "tmf RLY_RX (200 B DTLS) encode": rly_rx.to_bytes,
        "tmf RLY_RX (200 B DTLS) decode+TLVs": lambda: TmfMessage.from_bytes(rly_rx_bytes).tlvs(),
        "tmf COMM_PET encode": comm_pet.to_bytes,
        "meshcop JOIN_ENT payload decode": lambda: mc.decode_meshcop_tlvs(join_ent_payload),
        "dataset hex parse": lambda: ActiveDataset.from_hex(DATASET_HEX),
        "dataset hex encode": dataset.to_hex,
    }
    results = {name: rate(fn, args.seconds) for name, fn in cases.items()}
    if args.json:
        print(json.dumps({"schema_version": 1, "messages_per_second": results}))
        return
    width = max(len(n) for n in results)
    for name, r in results.items():
        print(f"{name:<{width}}  {r:>10,.0f} msg/s")


if __name__ == "__main__":
    main()
