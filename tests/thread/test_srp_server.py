"""The sans-IO SRP server: OpenThread-shaped updates accepted, signed by the key that owns the
name; forged, truncated, oversized and conflicting updates refused and counted."""

from __future__ import annotations

import struct

import dns.rcode
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.thread.srp.client import ServiceSpec, build_update
from gateway.thread.srp.server import KEY_LEASE_MAX, Bounds, SrpServer

OMR = "fd00:db8:1:0:1234:5678:9abc:def0"


def _rcode(resp: bytes | None) -> int:
    assert resp is not None
    return struct.unpack_from("!H", resp, 2)[0] & 0xF


def _update(key: ec.EllipticCurvePrivateKey, host: str = "thing1", **kw: object) -> bytes:
    svc = [ServiceSpec("ins1", "_test._udp", 12345, subtypes=["_s1", "_s2"], txt=[b"k=v"])]
    return build_update(7, host, [OMR], svc, key, **kw)  # type: ignore[arg-type]


def test_registration_accepted_with_granted_leases() -> None:
    changed: list[str] = []
    srv = SrpServer(on_change=changed.append)
    resp = srv.handle(_update(ec.generate_private_key(ec.SECP256R1())), "fe80::1", 0.0)
    assert _rcode(resp) == dns.rcode.NOERROR
    assert resp is not None and resp.endswith(struct.pack("!II", 7200, KEY_LEASE_MAX))
    host = srv.hosts["thing1"]
    assert host.addresses == [OMR]
    svc = host.services["ins1._test._udp"]
    assert (svc.port, svc.subtypes, svc.txt) == (12345, ["_s1", "_s2"], [b"k=v"])
    assert changed == ["thing1"] and srv.counters.accepted == 1


def test_second_key_claiming_host_name_refused() -> None:
    srv = SrpServer()
    assert _rcode(srv.handle(_update(ec.generate_private_key(ec.SECP256R1())), "a", 0.0)) == 0
    resp = srv.handle(_update(ec.generate_private_key(ec.SECP256R1())), "b", 1.0)
    assert _rcode(resp) == dns.rcode.YXDOMAIN
    assert srv.counters.conflicts == 1


def test_host_and_instance_names_are_held_without_regard_to_case() -> None:
    srv = SrpServer()
    assert _rcode(srv.handle(_update(ec.generate_private_key(ec.SECP256R1())), "a", 0.0)) == 0
    rival = ec.generate_private_key(ec.SECP256R1())
    assert _rcode(srv.handle(_update(rival, host="THING1"), "b", 1.0)) == dns.rcode.YXDOMAIN
    # another host name, but the same service instance in other letters: still refused
    svc = [ServiceSpec("INS1", "_TEST._udp", 1)]
    other = build_update(8, "thing2", [OMR], svc, rival)
    assert _rcode(srv.handle(other, "b", 2.0)) == dns.rcode.YXDOMAIN
    assert list(srv.hosts) == ["thing1"] and srv.counters.conflicts == 2


def test_forged_truncated_oversized_refused_and_counted() -> None:
    srv = SrpServer()
    good = _update(ec.generate_private_key(ec.SECP256R1()))
    forged = good[:-1] + bytes([good[-1] ^ 1])
    assert _rcode(srv.handle(forged, "a", 0.0)) == dns.rcode.REFUSED
    assert srv.counters.forged == 1
    assert _rcode(srv.handle(good[:-30], "a", 0.0)) == dns.rcode.FORMERR
    assert srv.handle(good + bytes(1300), "a", 0.0) is None
    assert srv.counters.oversized == 1 and srv.counters.formerr == 1
    assert srv.hosts == {}


def test_lease_expiry_withdraws_and_keeps_name_until_key_lease() -> None:
    srv = SrpServer()
    srv.handle(_update(ec.generate_private_key(ec.SECP256R1()), lease=60, key_lease=600), "a", 0.0)
    srv.expire(61.0)
    assert srv.hosts["thing1"].deleted
    srv.expire(601.0)
    assert "thing1" not in srv.hosts


def test_rate_limit_per_source() -> None:
    srv = SrpServer(Bounds(updates_per_second_per_source=1.0, burst_per_source=2))
    msg = _update(ec.generate_private_key(ec.SECP256R1()))
    for _ in range(3):
        srv.handle(msg, "a", 0.0)
    assert srv.counters.rate_limited == 1
    assert srv.handle(msg, "b", 0.0) is not None


def test_state_round_trip() -> None:
    srv = SrpServer()
    srv.handle(_update(ec.generate_private_key(ec.SECP256R1())), "a", 0.0)
    again = SrpServer()
    again.load_json(srv.to_json(), 10.0)
    assert again.hosts["thing1"].services == srv.hosts["thing1"].services
