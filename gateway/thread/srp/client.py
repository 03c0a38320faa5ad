"""Build a signed SRP update the way OpenThread's client lays it out (used by the reference thing,
the tests and the benchmark)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import dns.edns
import dns.flags
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.thread.srp import wire
from gateway.thread.srp.server import DOMAIN


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
