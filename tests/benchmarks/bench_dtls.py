"""Benchmark: DTLS 1.2 / EC-JPAKE handshake CPU time per side, and bulk record throughput.

Run: ``python tests/benchmarks/bench_dtls.py [--handshakes 30] [--seconds 2]``. Not collected by
pytest. Handshake figures are CPU time (``time.process_time``) spent inside each endpoint's calls
of an in-memory handshake (cookie exchange included), so they count EC-JPAKE, the PRF, record
protection and parsing, and no waiting. Throughput is application payload through ``send`` on
one side and ``receive_datagram`` on the other (encrypt + decrypt + replay window + events).
"""

from __future__ import annotations

import argparse
import statistics
import time

from gateway.crypto.dtls import DtlsClient, DtlsServer
from gateway.crypto.dtls_record import (
    CONTENT_APPLICATION_DATA,
    DTLS_1_2,
    CcmRecordCipher,
    DtlsRecord,
)

PEER = bytes(16)
PASSWORD = b"J01NME"


class _Cpu:
    """Accumulates the CPU time spent inside ``with`` blocks."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.total += time.process_time() - self._start


def handshake() -> tuple[float, float, DtlsClient, DtlsServer]:
    c_cpu, s_cpu = _Cpu(), _Cpu()
    with c_cpu:
        client = DtlsClient(PASSWORD)
        client.start(0.0)
    with s_cpu:
        server = DtlsServer(PASSWORD, transport_id=PEER)
    for _ in range(10):
        with c_cpu:
            out = client.datagrams_to_send()
        for d in out:
            with s_cpu:
                server.receive_datagram(d, 0.0)
        with s_cpu:
            back = server.datagrams_to_send()
        for d in back:
            with c_cpu:
                client.receive_datagram(d, 0.0)
        if not out and not back:
            break
    assert client.is_connected and server.is_connected
    client.events()
    server.events()
    return c_cpu.total, s_cpu.total, client, server


def throughput(client: DtlsClient, server: DtlsServer, size: int, seconds: float) -> float:
    payload = bytes(size)
    total = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            client.send(payload)
            for d in client.datagrams_to_send():
                server.receive_datagram(d, 1.0)
            total += size
        server.events()
    return total / (time.perf_counter() - start)


def cipher_throughput(size: int, seconds: float) -> tuple[float, float]:
    cipher = CcmRecordCipher(bytes(16), bytes(4))
    payload = bytes(size)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            cipher.encrypt(CONTENT_APPLICATION_DATA, DTLS_1_2, 1, n, payload)
            n += 1
    enc = n * size / (time.perf_counter() - start)
    rec = DtlsRecord(
        CONTENT_APPLICATION_DATA,
        DTLS_1_2,
        1,
        0,
        cipher.encrypt(CONTENT_APPLICATION_DATA, DTLS_1_2, 1, 0, payload),
    )
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            cipher.decrypt(rec)
            n += 1
    return enc, n * size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()

    handshake()  # warm-up (imports, OpenSSL initialisation)
    c_times: list[float] = []
    s_times: list[float] = []
    wall = time.perf_counter()
    for _ in range(args.handshakes):
        c, s, client, server = handshake()
        c_times.append(c)
        s_times.append(s)
    wall = (time.perf_counter() - wall) / args.handshakes
    print(f"DTLS-ECJPAKE handshake ({args.handshakes} runs, CPU ms, median / p90):")
    for name, xs in (("client", c_times), ("server", s_times)):
        xs.sort()
        p90 = xs[int(0.9 * (len(xs) - 1))]
        print(f"  {name:6s} {1000 * statistics.median(xs):7.2f} / {1000 * p90:7.2f}")
    print(f"  both sides, wall clock per handshake: {1000 * wall:.2f} ms")

    for size in (64, 768):
        rate = throughput(client, server, size, args.seconds)
        print(
            f"application data {size:4d}-byte records, send + receive: "
            f"{rate / 1e6:6.2f} MB/s ({rate / size:8.0f} records/s)"
        )
    enc, dec = cipher_throughput(768, args.seconds)
    print(
        f"AES-128-CCM-8 record protection alone, 768 B: encrypt {enc / 1e6:.1f} MB/s, decrypt {dec / 1e6:.1f} MB/s"
    )


if __name__ == "__main__":
    main()
