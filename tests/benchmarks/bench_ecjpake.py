"""Benchmark: CPU time of EC-JPAKE per handshake side, the P-256 backends, and PSKc derivation.

Run: ``python tests/benchmarks/bench_ecjpake.py [--handshakes 20]``. Not collected by pytest.
All figures are CPU time (``time.process_time``), so they do not count waiting.

The "fastecdsa only" variant swaps the OpenSSL paths of ``gateway.crypto.ec`` (k*G and the final
x-only ECDH) for fastecdsa, to show what the hybrid buys. The pure-Python ``ecdsa`` package (with
or without ``gmpy2``) is measured per primitive when it is installed; it is not a project
dependency.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastecdsa.curve import P256

from gateway.crypto import ec, ecjpake
from gateway.crypto.ecjpake import EcJpake
from gateway.crypto.thread_keys import pskc


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def handshake_sides(password: bytes) -> tuple[float, float, bool]:
    """One in-memory handshake in DTLS order; returns (client CPU s, server CPU s, agreed)."""
    c = s = 0.0
    holder: dict[str, EcJpake] = {}

    def mk_client() -> None:
        holder["c"] = EcJpake("client", password)

    def mk_server() -> None:
        holder["s"] = EcJpake("server", password)

    c += _cpu(mk_client)
    cli = holder["c"]
    box: dict[str, bytes] = {}
    c += _cpu(lambda: box.__setitem__("c1", cli.write_round_one()))  # ClientHello
    s += _cpu(mk_server)
    srv = holder["s"]
    s += _cpu(lambda: srv.read_round_one(box["c1"]))
    s += _cpu(lambda: box.__setitem__("s1", srv.write_round_one()))  # ServerHello
    s += _cpu(lambda: box.__setitem__("s2", srv.write_round_two()))  # ServerKeyExchange
    c += _cpu(lambda: cli.read_round_one(box["s1"]))
    c += _cpu(lambda: cli.read_round_two(box["s2"]))
    c += _cpu(lambda: box.__setitem__("c2", cli.write_round_two()))  # ClientKeyExchange
    c += _cpu(lambda: box.__setitem__("kc", cli.derive_secret()))
    s += _cpu(lambda: srv.read_round_two(box["c2"]))
    s += _cpu(lambda: box.__setitem__("ks", srv.derive_secret()))
    return c, s, box["kc"] == box["ks"]


@contextmanager
def fastecdsa_only() -> Iterator[None]:
    """Temporarily route ecjpake's k*G and x-only ECDH through fastecdsa instead of OpenSSL."""
    names = ("mul_base", "mul_x")
    namespace = ecjpake.__dict__
    saved = {name: namespace[name] for name in names}

    def mul_base(k: int) -> ec.Point:
        return P256.G * (k % ec.N)

    def mul_x(k: int, point: ec.Point) -> int:
        return int((point * k).x)

    namespace.update(mul_base=mul_base, mul_x=mul_x)
    try:
        yield
    finally:
        namespace.update(saved)


def report_handshakes(label: str, count: int) -> None:
    password = secrets.token_bytes(16)
    handshake_sides(password)  # warm-up (imports, caches)
    clients, servers = [], []
    for _ in range(count):
        c, s, ok = handshake_sides(password)
        if not ok:
            raise SystemExit("handshake secrets differ: benchmark is broken")
        clients.append(c)
        servers.append(s)
    for side, values in (("client", clients), ("server", servers)):
        print(
            f"ecjpake {label:<16} {side} side: mean {statistics.mean(values) * 1e3:6.2f} ms CPU, "
            f"max {max(values) * 1e3:6.2f} ms (over {count} handshakes)"
        )


def per_op(fn: Callable[[], object], repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat * 1e3


def report_primitives() -> None:
    k = secrets.randbelow(ec.N - 1) + 1
    point = ec.mul_base(secrets.randbelow(ec.N - 1) + 1)
    print(f"p256 fastecdsa       k*P   : {per_op(lambda: ec.mul(k, point), 200):6.3f} ms")
    print(f"p256 fastecdsa       k*G   : {per_op(lambda: P256.G * k, 200):6.3f} ms")
    print(f"p256 fastecdsa       P+Q   : {per_op(lambda: point + point, 2000):6.3f} ms")
    print(f"p256 cryptography    k*G   : {per_op(lambda: ec.mul_base(k), 2000):6.3f} ms")
    print(f"p256 cryptography    x(k*P): {per_op(lambda: ec.mul_x(k, point), 2000):6.3f} ms")
    try:
        import ecdsa  # type: ignore[import-not-found,unused-ignore]
        from ecdsa import ellipticcurve  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("p256 ecdsa (pure Python): not installed, skipped")
        return
    gen = ecdsa.NIST256p.generator
    other = gen * 12345
    tag = "ecdsa+gmpy2" if getattr(ellipticcurve, "GMPY", False) else "ecdsa (pure)"
    k_p = per_op(lambda: other * k, 50)
    k_g = per_op(lambda: gen * k, 50)
    print(f"p256 {tag:<15} k*P   : {k_p:6.3f} ms")
    print(f"p256 {tag:<15} k*G   : {k_g:6.3f} ms")
    # Per side, gateway.crypto.ecjpake does 8 multiplications of an arbitrary point (ZKP checks,
    # round two, K) and 6 of the base point (keys, round-one nonces, r*G of round-one checks).
    print(f"ecjpake projected with {tag}: {8 * k_p + 6 * k_g:6.2f} ms CPU per side (8 k*P + 6 k*G)")


def report_pskc(repeat: int = 5) -> None:
    xpanid = bytes.fromhex("0001020304050607")
    times = [
        _cpu(lambda: pskc("12SECRETPASSWORD34", "Test Network", xpanid)) for _ in range(repeat)
    ]
    print(
        f"pskc (PBKDF2 AES-CMAC-PRF-128, 16384 iterations): mean {statistics.mean(times) * 1e3:6.2f}"
        f" ms CPU (over {repeat})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--handshakes", type=int, default=20)
    args = parser.parse_args()
    report_handshakes("(hybrid, used)", args.handshakes)
    with fastecdsa_only():
        report_handshakes("(fastecdsa only)", args.handshakes)
    report_primitives()
    report_pskc()


if __name__ == "__main__":
    main()
