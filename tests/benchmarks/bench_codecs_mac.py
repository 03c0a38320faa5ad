"""Benchmark: 802.15.4 frame and 6LoWPAN codec throughput.

Run: ``python tests/benchmarks/bench_codecs_mac.py [--seconds 0.5]``. Not collected by pytest.
Figures are operations per second of CPU time for typical Thread frames: parse and build of the
OpenThread MLE Discovery Request (37-byte PSDU) and of a MAC-secured data frame, CCM* secure and
unsecure (level 5, key id mode 1, ~70-byte payload), IPHC compress/decompress of a UDP packet,
and fragmentation plus reassembly of a 700-byte datagram (a DTLS flight) into 127-byte PSDUs.
The 250 kbit/s radio carries at most ~240 such 127-byte frames per second, the budget to beat.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from gateway.wire.fragment import Reassembler, fragment
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.lowpan import compress, decompress
from gateway.wire.mac802154 import (
    AuxSecurityHeader,
    ExtAddress,
    FrameType,
    MacFrame,
    ShortAddress,
    secure,
    unsecure,
)

MLE_DISCOVERY_REQUEST = bytes.fromhex(
    "01d807ffffffff2bcfc893faf973b19e267f3b02f04d4c4d4c12c3ff101a0480025800fd00"
)
KEY = bytes(range(16))
A = ExtAddress.from_hex("1122334455667788")
B = ExtAddress.from_hex("8877665544332211")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per CPU second, measured over about ``seconds``."""
    n = 0
    batch = 10
    start = time.process_time()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, 10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()
    s = args.seconds

    mle = MacFrame.from_bytes(MLE_DISCOVERY_REQUEST, fcs=True)
    packet = Ipv6Packet.udp(
        "fd00:db8::ff:fe00:400", "fd00:db8::ff:fe00:800", 0xF0BF, 0xF0BF, bytes(60)
    )
    src, dst = ShortAddress(0x0400), ShortAddress(0x0800)
    payload = compress(packet, src, dst)
    plain = MacFrame.create(
        FrameType.DATA,
        seq=1,
        dst=dst,
        dst_pan=0xFACE,
        src=src,
        src_pan=0xFACE,
        payload=payload,
        ack_request=True,
        security=AuxSecurityHeader(5, 1, 1000, key_index=1),
    )
    sealed = secure(plain, KEY, ext_src=A)
    sealed_psdu = sealed.to_bytes(fcs=True)
    ll = Ipv6Packet.udp(
        "fe80::1322:3344:5566:7788", "fe80::8a77:6655:4433:2211", 1000, 1000, bytes(652)
    )
    datagram = compress(ll, A, B)
    capacity = MacFrame.create(
        FrameType.DATA, seq=1, dst=B, dst_pan=0xFACE, src=A, src_pan=0xFACE
    ).payload_capacity()

    def frag_reasm() -> None:
        reasm = Reassembler()
        out = None
        for part in fragment(datagram, max_payload=capacity, tag=1):
            out = reasm.feed(part, A, B, 0.0)
        assert out == datagram

    rows = [
        (
            "parse MLE Discovery Request (37 B, FCS checked)",
            lambda: MacFrame.from_bytes(MLE_DISCOVERY_REQUEST, fcs=True),
        ),
        ("build MLE Discovery Request (FCS appended)", lambda: mle.to_bytes(fcs=True)),
        (
            f"parse secured data frame ({len(sealed_psdu)} B)",
            lambda: MacFrame.from_bytes(sealed_psdu, fcs=True),
        ),
        ("build secured data frame", lambda: sealed.to_bytes(fcs=True)),
        ("secure (CCM*, level 5, key id mode 1)", lambda: secure(plain, KEY, ext_src=A)),
        ("unsecure (CCM*, level 5, key id mode 1)", lambda: unsecure(sealed, KEY, ext_src=A)),
        ("IPHC compress (context-free, UDP NHC, 60 B data)", lambda: compress(packet, src, dst)),
        ("IPHC decompress", lambda: decompress(payload, src, dst)),
        ("fragment + reassemble 700-byte datagram (7 frames)", frag_reasm),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  ops/s (CPU)")
    for name, fn in rows:
        print(f"{name:<{width}}  {rate(fn, s):>11,.0f}")


if __name__ == "__main__":
    main()
