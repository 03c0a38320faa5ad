"""Fuzz targets of the SRP server, registered into :data:`tests.fuzz.fuzz_parsers.TARGETS`: the
UPDATE parser (:func:`gateway.wire.srp.parse_update`, dnspython up to the SIG(0) and the SIG(0)
record by hand) on raw bytes, and the server core (:meth:`SrpServer.handle`) on raw datagrams.

Seeds are signed updates laid out as OpenThread's client sends them (with subtypes and TXT, a
service removal, the host removal with lease 0). Invariants of the server: nothing escapes; an
answer is a DNS UPDATE response with the request's ID; the tables stay within their bounds;
nothing is registered without a valid signature (the fuzzer cannot sign)."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import ParseError
from gateway.thread.srp.client import ServiceSpec, build_update
from gateway.thread.srp.server import Bounds, SrpServer
from gateway.wire.srp import parse_update, public_key_from_rdata, verify
from tests.fuzz.fuzz_network import NetworkTarget

__all__ = ["SRP_TARGETS"]

OMR = "fd00:db8:1:1::1234"


@functools.cache
def _seeds() -> tuple[bytes, ...]:
    key = ec.derive_private_key(0x5EED, ec.SECP256R1())
    svc = ServiceSpec("ins1", "_test._udp", 12345, subtypes=["_s1", "_s2"], txt=[b"k=v"])
    return (
        build_update(1, "thing1", [OMR], [svc], key),
        build_update(
            2,
            "thing1",
            [OMR, "fd00:db8:1:1::5"],
            [ServiceSpec("a", "_b._tcp", 9)],
            key,
            lease=30,
            key_lease=60,
        ),  # fmt: skip
        build_update(3, "thing1", [OMR], [ServiceSpec("ins1", "_test._udp", 1, remove=True)], key),
        build_update(4, "thing1", [OMR], [], key, lease=0, key_lease=0),
    )


def t_update(data: bytes) -> None:
    parsed = parse_update(data)
    for rrset in parsed.message.update:
        for rd in rrset:
            rd.to_wire()
    for rrset in parsed.message.update:
        if rrset.rdtype == 25:  # KEY: the signature checks without raising
            for rd in rrset:
                try:
                    public = public_key_from_rdata(rd.to_wire())
                except ParseError:
                    continue
                verify(parsed, public)


def t_server(data: bytes) -> None:
    bounds = Bounds(hosts_total=4, services_total=8)
    srv = SrpServer(bounds)
    for seed in _seeds()[:1]:  # one legitimate host first: the input may collide with it
        srv.handle(seed, "fe80::1", 0.0)
    resp = srv.handle(data, "fe80::2", 1.0)
    if resp is not None:
        assert len(resp) >= 12 and resp[2] & 0x80, resp.hex()
        assert resp[:2] == data[:2], "an answer carries the request's ID"
    assert len(srv.hosts) <= bounds.hosts_total
    assert sum(len(h.services) for h in srv.hosts.values()) <= bounds.services_total
    if srv.counters.accepted > 1:  # the input itself was accepted: it must carry a valid
        parsed = parse_update(data)  # signature by a KEY it holds (the fuzzer cannot sign)
        keys = [rd.to_wire() for r in parsed.message.update if r.rdtype == 25 for rd in r]
        assert any(verify(parsed, public_key_from_rdata(k)) for k in keys), data.hex()
    srv.expire(10**9)
    assert not srv.hosts


SRP_TARGETS: tuple[NetworkTarget, ...] = (
    NetworkTarget(
        "srp.update", t_update, (ParseError,), _seeds, 1300, ("srp.parse_update",)
    ),  # fmt: skip
    NetworkTarget(
        "srp.server", t_server, (), _seeds, 1300, ("[thread.srp] server.SrpServer.handle",)
    ),  # fmt: skip
)
