"""An attacker in radio range, for the issue-16 tests and benchmark: on its own emulated radio it
sends, as fast as the air takes them (or ``--rate`` rounds of one of each a second), MLE Discovery Requests and forged Parent Requests (MLE
suite 0 with random bytes: it has no network key) from an address of its own, and DTLS records
of epoch 1 with random ciphertext "from" a joiner (its extended address is public on the air)
to the joiner router's joiner port, ``--spoof-rate`` a second.

    python -m tests.thread.attacker --radio URL --joiner EXT --router EXT --pan 0x1234 \\
        --duration 60

It prints one JSON line with what it sent when it stops (SIGTERM or after ``--duration``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from gateway.crypto.dtls_record import CONTENT_HANDSHAKE, DtlsRecord
from gateway.thread.commissioning.discovery import discovery_request_packet
from gateway.thread.link import TagAllocator, encode_datagram, link_local
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import BROADCAST, ExtAddress
from gateway.wire.mle import MLE_HOP_LIMIT, MLE_PORT

JOINER_PORT = 1000


def forged_dtls(seq: int) -> bytes:
    return DtlsRecord(CONTENT_HANDSHAKE, 0xFEFD, 1, seq, os.urandom(40)).to_bytes()


async def attack(args: argparse.Namespace) -> dict[str, int]:
    from drivers.radio import open_radio

    radio = open_radio(args.radio)
    await radio.open()
    sent = {"discovery": 0, "parent": 0, "dtls": 0, "failed": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tags = TagAllocator(1)
    me = ExtAddress(os.urandom(8))
    joiner = ExtAddress.from_hex(args.joiner)
    router = ExtAddress.from_hex(args.router)
    pan = int(args.pan, 0)
    try:
        await radio.set_channel(args.channel)
        await radio.set_addresses(pan_id=pan, ext_addr=me.octets, short_addr=0xFFFE)
        print(json.dumps({"attacking": True}), flush=True)
        end = loop.time() + args.duration
        next_spoof = loop.time()
        next_round = loop.time()
        seq = 0
        while not stop.is_set() and loop.time() < end:
            if args.rate > 0:
                next_round += 1 / args.rate
                await asyncio.sleep(max(0.0, next_round - loop.time()))
            frames = [
                ("discovery", f)
                for f in encode_datagram(
                    discovery_request_packet(me),
                    src=me,
                    dst=BROADCAST,
                    dst_pan=0xFFFF,
                    src_pan=pan,
                    tags=tags,
                )  # fmt: skip
            ]
            parent = Ipv6Packet.udp(
                link_local(me), "ff02::2", MLE_PORT, MLE_PORT,
                b"\x00\x15" + os.urandom(40), hop_limit=MLE_HOP_LIMIT,
            )  # fmt: skip
            frames += [
                ("parent", f)
                for f in encode_datagram(parent, src=me, dst=BROADCAST, dst_pan=pan, tags=tags)
            ]
            if loop.time() >= next_spoof:
                next_spoof += 1 / args.spoof_rate
                seq += 1
                pkt = Ipv6Packet.udp(
                    link_local(joiner), link_local(router), JOINER_PORT, JOINER_PORT,
                    forged_dtls(seq),
                )  # fmt: skip
                frames += [
                    ("dtls", f)
                    for f in encode_datagram(pkt, src=joiner, dst=router, dst_pan=pan, tags=tags)
                ]
            for kind, f in frames:
                try:
                    await radio.transmit(f.psdu(), retries=0)
                    sent[kind] += 1
                except Exception:  # noqa: BLE001 - a busy channel is what we want
                    sent["failed"] += 1
    finally:
        await radio.close()
    return sent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--radio", required=True)
    p.add_argument("--joiner", required=True, help="the joiner's extended address (hex)")
    p.add_argument("--router", required=True, help="the joiner router's extended address (hex)")
    p.add_argument("--pan", required=True)
    p.add_argument("--channel", type=int, default=15)
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--spoof-rate", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=0.0,
                   help="rounds (a Discovery and a Parent Request) a second; 0: as fast as the air "
                        "takes them (a jammer)")  # fmt: skip
    args = p.parse_args()
    sent = asyncio.run(attack(args))
    print(json.dumps({"sent": sent}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
