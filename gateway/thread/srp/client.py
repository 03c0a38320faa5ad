"""Build a signed SRP update the way OpenThread's client lays it out (used by the reference thing,
the tests and the benchmark)."""

from __future__ import annotations

import ipaddress
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any, Final

import dns.edns
import dns.flags
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.thread.srp.server import DOMAIN
from gateway.wire import srp as wire


@dataclass
class ServiceSpec:
    instance: str
    service_type: str  # "_test._udp"
    port: int
    subtypes: list[str] = field(default_factory=list)
    txt: list[bytes] = field(default_factory=list)
    remove: bool = False


def build_update(
    msg_id: int,
    host: str,
    addresses: list[str],
    services: list[ServiceSpec],
    key: ec.EllipticCurvePrivateKey,
    lease: int = 7200,
    key_lease: int = 1209600,
    ttl: int = 7200,
) -> bytes:
    host_fqdn = dns.name.from_text(host, DOMAIN)
    upd = dns.update.UpdateMessage(DOMAIN, id=msg_id)
    for s in services:
        stype = dns.name.from_text(s.service_type, DOMAIN)
        inst = dns.name.from_text(s.instance, stype)
        if s.remove:
            upd.delete(
                stype, dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.PTR, inst.to_text())
            )
        else:
            upd.add(stype, ttl, dns.rdatatype.PTR, inst.to_text())
            for sub in s.subtypes:
                upd.add(
                    dns.name.from_text(f"{sub}._sub", stype), ttl, dns.rdatatype.PTR, inst.to_text()
                )
        upd.delete(inst)
        if not s.remove:
            upd.add(inst, ttl, dns.rdatatype.SRV, f"0 0 {s.port} {host_fqdn}")
            txt = " ".join('"' + t.decode("ascii") + '"' for t in s.txt) or '""'
            upd.add(inst, ttl, dns.rdatatype.TXT, txt)
    upd.delete(host_fqdn)
    for a in addresses:
        upd.add(host_fqdn, ttl, dns.rdatatype.AAAA, a)
    upd.add(
        host_fqdn,
        ttl,
        dns.rdata.from_wire(
            dns.rdataclass.IN, dns.rdatatype.KEY, wire.key_rdata(key.public_key()), 0, 68
        ),
    )
    upd.use_edns(
        0,
        dns.flags.DO,
        1272,
        options=[
            dns.edns.GenericOption(
                dns.edns.OptionType.make(wire.UPDATE_LEASE_OPTION),
                struct.pack("!II", lease, key_lease),
            )
        ],
    )
    return wire.sign(upd.to_wire(), host_fqdn, key)


RETRY_MIN = 1.8  # OpenThread's first retry wait, x1.7 per failure, at most an hour
RETRY_MAX = 3600.0
RENEW_GUARD = 120.0


class SrpRegistration:
    """One host with its services kept registered with the SRP server found in Network Data
    (sans-IO: :meth:`poll` says what to send, :meth:`received` takes the answer).

    ``state``: ``ToAdd`` (no server or no address yet), ``Adding`` (an UPDATE is out),
    ``Registered``, ``Refused`` (the server answered with an error; retried with back-off)."""

    SRC_PORT: Final = 49201

    def __init__(
        self,
        host: str,
        services: list[ServiceSpec],
        key: ec.EllipticCurvePrivateKey,
        *,
        lease: int = 7200,
        key_lease: int = 1209600,
    ) -> None:
        self.host = host
        self.services = services
        self.key = key
        self.lease = lease
        self.key_lease = key_lease
        self.state = "ToAdd"
        self.server: tuple[ipaddress.IPv6Address, int] | None = None
        self.granted: tuple[int, int] | None = None
        self.last_rcode: int | None = None
        self.addresses: tuple[ipaddress.IPv6Address, ...] = ()
        self._id = secrets.randbits(16)
        self._sent_at = 0.0
        self._next_at = 0.0
        self._retry = RETRY_MIN
        self.round_trip: float | None = None

    def poll(
        self,
        servers: list[tuple[ipaddress.IPv6Address, int]],
        addresses: tuple[ipaddress.IPv6Address, ...],
        now: float,
    ) -> tuple[ipaddress.IPv6Address, int, bytes] | None:
        """What to send now: (server address, port, UPDATE) or None."""
        server = self.server if self.server in servers else (servers[0] if servers else None)
        if server != self.server or tuple(addresses) != self.addresses:
            self.server, self.addresses = server, tuple(addresses)
            self.state, self._next_at, self._retry = "ToAdd", now, RETRY_MIN
        if server is None or not addresses or now < self._next_at:
            return None
        if self.state == "Adding":  # no answer: try again with back-off
            self._retry = min(self._retry * 1.7, RETRY_MAX)
        self._id = (self._id + 1) & 0xFFFF
        msg = build_update(self._id, self.host, [str(a) for a in addresses], self.services,
                           self.key, self.lease, self.key_lease)  # fmt: skip
        self.state = "Adding"
        self._sent_at = now
        self._next_at = now + self._retry
        return server[0], server[1], msg

    def received(self, src: ipaddress.IPv6Address, src_port: int, data: bytes, now: float) -> bool:
        """An answer from the server; True when it was ours."""
        if self.server is None or (src, src_port) != self.server or len(data) < 12:
            return False
        msg_id, flags = struct.unpack_from("!HH", data)
        if msg_id != self._id or not flags & 0x8000 or self.state != "Adding":
            return False
        self.last_rcode = flags & 0xF
        self.round_trip = now - self._sent_at
        if self.last_rcode != 0:
            self.state = "Refused"
            self._retry = min(self._retry * 1.7, RETRY_MAX)
            self._next_at = now + self._retry
            return True
        lease = self.lease
        if len(data) >= 12 + 11 + 12:  # OPT with the long UPDATE-LEASE at the end
            lease, key_lease = struct.unpack_from("!II", data, len(data) - 8)
            self.granted = (lease, key_lease)
        self.state = "Registered"
        self._retry = RETRY_MIN
        self._next_at = now + (lease / 2 if lease <= 2 * RENEW_GUARD else lease - RENEW_GUARD)
        return True

    def next_timeout(self) -> float | None:
        return self._next_at if self.server is not None and self.addresses else None

    def report(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "state": self.state,
            "server": None if self.server is None else f"[{self.server[0]}]:{self.server[1]}",
            "services": [f"{s.instance}.{s.service_type}" for s in self.services],
            "addresses": [str(a) for a in self.addresses],
            "granted": None if self.granted is None else list(self.granted),
            "rcode": self.last_rcode,
            "rtt_ms": None if self.round_trip is None else round(self.round_trip * 1000, 1),
        }
