"""The SRP server's asyncio shell: UDP in and out, the Network Data entry as OpenThread lays it
out, registrations kept in ``srp.json`` across a restart within their leases and dropped once
they ran out, and what it asks the advertising proxy to publish or withdraw."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import struct
from pathlib import Path
from typing import Any

import dns.rcode
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.border_router.srp import SrpService, lan_addresses
from gateway.thread.network.netdata import (
    BorderRouterEntry,
    OwnPrefix,
    srp_unicast_servers,
)
from gateway.thread.network.router import RouterCore
from gateway.thread.srp.client import ServiceSpec, build_update
from gateway.thread.srp.server import Host
from tests.thread.network.world import GATEWAY_EXT, dataset

OMR = ipaddress.IPv6Network("fd00:db8:1:1::/64")
THING_OMR = "fd00:db8:1:1:1234:5678:9abc:def0"
THING_MLEID = "fdde:ad00:beef:0:1:2:3:4"


class RecordingProxy:
    """Stands in for zeroconf: keeps what the LAN would see, per host."""

    def __init__(self) -> None:
        self.lan: dict[str, list[str]] = {}  # host -> its LAN addresses, while published
        self.closed = False

    async def publish(self, host: Host, omr: list[ipaddress.IPv6Network]) -> None:
        addrs = lan_addresses(host, omr)
        if host.deleted or not addrs or all(s.deleted for s in host.services.values()):
            self.lan.pop(host.name, None)
        else:
            self.lan[host.name] = addrs

    async def withdraw(self, name: str) -> None:
        self.lan.pop(name, None)

    def published(self) -> dict[str, list[str]]:
        return {h: ["ins1._test._udp.local."] for h in self.lan}

    async def restart(self) -> None:
        self.lan.clear()

    async def close(self) -> None:
        self.lan.clear()
        self.closed = True


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _router() -> RouterCore:
    net = RouterCore(dataset(seed=14), GATEWAY_EXT, rng=random.Random(14))
    net.start(0.0)
    flags = BorderRouterEntry.SLAAC | BorderRouterEntry.ON_MESH | BorderRouterEntry.PREFERRED
    net.set_own_prefixes([OwnPrefix(OMR, br_flags=flags)], 0.0)
    return net


async def _open(net: RouterCore, state: Path, clock: Clock) -> tuple[SrpService, RecordingProxy]:
    proxy = RecordingProxy()
    svc = SrpService(net, state, lan_if=lambda: "lo", changed=lambda: None, thread_if=None,
                     port=0, proxy=proxy, clock=clock)  # fmt: skip
    await svc.open()
    await asyncio.wait_for(svc.idle.wait(), 10)
    return svc, proxy


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.put_nowait(data)


async def _send(port: int, msg: bytes) -> int:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Client, remote_addr=("::1", port), family=0
    )
    try:
        transport.sendto(msg)
        resp = await asyncio.wait_for(proto.answers.get(), 10)
    finally:
        transport.close()
    return int(struct.unpack_from("!H", resp, 2)[0] & 0xF)


def _update(key: ec.EllipticCurvePrivateKey, lease: int, key_lease: int) -> bytes:
    svc = [ServiceSpec("ins1", "_test._udp", 7000)]
    return build_update(1, "thing1", [THING_OMR, THING_MLEID], svc, key, lease, key_lease)


async def test_entry_in_network_data_as_openthread_publishes_it(tmp_path: Path) -> None:
    net = _router()
    svc, proxy = await _open(net, tmp_path, Clock(1000.0))
    ml_eid = ipaddress.IPv6Address(bytes(net.ml_prefix[:8]) + net.ml_eid_iid)
    assert srp_unicast_servers(net.netdata.full) == [(ml_eid, svc.port)]
    # Service TLV (stable, T bit, service data 5d) with a stable Server TLV: RLOC16 | ML-EID | port
    raw = net.netdata.full.to_bytes()
    entry = (bytes((0x0B, 25, 0x80, 1, 0x5D, 0x0D, 20)) + net.rloc16.to_bytes(2, "big")
             + ml_eid.packed + svc.port.to_bytes(2, "big"))  # fmt: skip
    assert entry in raw
    await svc.close()
    assert srp_unicast_servers(net.netdata.full) == [] and proxy.closed


async def _register_and_stop(state: Path, clock: Clock, lease: int, key_lease: int) -> RouterCore:
    """A server that takes one registration (published on the LAN) and is stopped."""
    net = _router()
    svc, proxy = await _open(net, state, clock)
    key = ec.generate_private_key(ec.SECP256R1())
    assert await _send(svc.port, _update(key, lease, key_lease)) == dns.rcode.NOERROR
    await asyncio.wait_for(svc.idle.wait(), 10)
    assert proxy.lan == {"thing1": [THING_OMR]}  # the OMR address only, never the ML-EID
    assert (state / "srp.json").exists()
    await svc.close()
    assert proxy.lan == {}
    return net


async def test_registration_survives_a_restart_within_its_lease(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    net = await _register_and_stop(tmp_path, clock, 120, 600)

    clock.t += 60  # a restart within the lease: the host is back, on the LAN too
    svc, proxy = await _open(net, tmp_path, clock)
    assert proxy.lan == {"thing1": [THING_OMR]}
    (host,) = svc.hosts_view()
    assert host["name"] == "thing1" and not host["deleted"] and host["remaining_lease"] == 60
    # the name is still held by the key: another key is refused
    other = ec.generate_private_key(ec.SECP256R1())
    assert await _send(svc.port, _update(other, 120, 600)) == dns.rcode.YXDOMAIN
    assert svc.status_view()["counters"]["conflicts"] == 1
    await svc.close()


async def test_expired_registrations_are_removed_on_restart(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    net = await _register_and_stop(tmp_path, clock, 30, 300)

    clock.t += 31  # past the lease, within the key-lease: the name is kept, the LAN sees nothing
    svc, proxy = await _open(net, tmp_path, clock)
    assert proxy.lan == {}
    (host,) = svc.hosts_view()
    assert host["deleted"] and host["remaining_lease"] == 0
    assert all(s["deleted"] and not s["published"] for s in svc.services_view())
    await svc.close()

    clock.t += 300  # past the key-lease: gone, and the file says so
    svc, proxy = await _open(net, tmp_path, clock)
    assert svc.hosts_view() == [] and proxy.lan == {}
    await svc.close()
    svc, _proxy = await _open(net, tmp_path, Clock(1000.0))  # even with the clock set back
    assert svc.hosts_view() == []
    await svc.close()


async def test_corrupt_state_is_kept_aside_and_the_server_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "srp.json").write_text("{not json")
    svc, proxy = await _open(_router(), tmp_path, Clock(1000.0))
    assert svc.hosts_view() == [] and proxy.lan == {}
    assert (tmp_path / "srp.json.corrupt").read_text() == "{not json"
    await svc.close()
