"""Sans-IO SRP server core: checks an UPDATE as OpenThread's server does, keeps hosts and
services with their leases, and reports what the advertising proxy must publish or withdraw."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.update

from gateway.errors import ParseError
from gateway.ratelimit import TokenBucket
from gateway.wire import srp as wire

DOMAIN = dns.name.from_text("default.service.arpa.")
LEASE_MIN, LEASE_MAX = 30, 97200
KEY_LEASE_MIN, KEY_LEASE_MAX = 30, 680400


@dataclass(frozen=True)
class Bounds:
    services_per_host: int = 16
    hosts_total: int = 256
    services_total: int = 1024
    max_update_size: int = wire.MAX_UPDATE_SIZE
    txt_max: int = 255
    addresses_per_host: int = 8
    updates_per_second_per_source: float = 5.0
    burst_per_source: int = 10


@dataclass
class Service:
    instance: str  # label, e.g. "ins1"
    service_type: str  # "_test._udp"
    subtypes: list[str]
    port: int
    priority: int
    weight: int
    txt: list[bytes]
    deleted: bool = False


@dataclass
class Host:
    name: str  # first label of the host FQDN
    key: bytes  # KEY RDATA
    addresses: list[str]
    lease: int
    key_lease: int
    updated: float
    services: dict[str, Service] = field(default_factory=dict)  # instance.type -> Service
    deleted: bool = False

    def lease_end(self) -> float:
        return self.updated + self.lease

    def key_lease_end(self) -> float:
        return self.updated + self.key_lease


@dataclass
class Counters:
    accepted: int = 0
    refused: int = 0
    formerr: int = 0
    conflicts: int = 0
    forged: int = 0
    oversized: int = 0
    rate_limited: int = 0
    dropped: int = 0
    expired: int = 0
    table_full: int = 0


class SrpServer:
    """``handle(data, source, now)`` returns a response (or None); ``changed`` is called with
    the host name whenever what the LAN should see of that host changes."""

    def __init__(
        self, bounds: Bounds | None = None, on_change: Callable[[str], None] | None = None
    ) -> None:
        self.bounds = bounds or Bounds()
        self.hosts: dict[str, Host] = {}
        self.counters = Counters()
        self._buckets: dict[str, TokenBucket] = {}
        self._on_change = on_change or (lambda _name: None)

    # -- input --------------------------------------------------------------------------
    def handle(self, data: bytes, source: str, now: float) -> bytes | None:
        if len(data) > self.bounds.max_update_size:
            self.counters.oversized += 1
            return None
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= 4 * self.bounds.hosts_total:
                self._buckets.clear()
            bucket = self._buckets[source] = TokenBucket(
                self.bounds.updates_per_second_per_source, self.bounds.burst_per_source, now
            )
        if not bucket.take(now):
            self.counters.rate_limited += 1
            return None
        if len(data) < 12:
            self.counters.dropped += 1
            return None
        msg_id, flags = struct.unpack_from("!HH", data)
        if flags & 0x8000 or (flags >> 11) & 0xF != dns.opcode.UPDATE:
            self.counters.dropped += 1
            return None
        try:
            parsed = wire.parse_update(data)
        except ParseError:
            self.counters.formerr += 1
            return _response(msg_id, dns.rcode.FORMERR, None)
        rcode, lease_opt = self._process(parsed, now)
        if rcode == dns.rcode.NOERROR:
            self.counters.accepted += 1
        elif rcode == dns.rcode.YXDOMAIN:
            self.counters.conflicts += 1
        elif rcode == dns.rcode.FORMERR:
            self.counters.formerr += 1
        else:
            self.counters.refused += 1
        return _response(msg_id, rcode, lease_opt)

    def _process(
        self, parsed: wire.ParsedUpdate, now: float
    ) -> tuple[dns.rcode.Rcode, bytes | None]:
        m = parsed.message
        if len(m.zone) != 1 or m.zone[0].rdtype != dns.rdatatype.SOA:
            return dns.rcode.FORMERR, None
        if m.zone[0].name != DOMAIN:
            return dns.rcode.REFUSED, None
        if m.prerequisite:
            return dns.rcode.REFUSED, None
        try:
            host, lease, key_lease, short = self._describe(parsed)
        except _Refused as e:
            if e.counter:
                setattr(self.counters, e.counter, getattr(self.counters, e.counter) + 1)
            return e.rcode, None
        if not wire.verify(parsed, wire.public_key_from_rdata(host.key)):
            self.counters.forged += 1
            return dns.rcode.REFUSED, None
        # conflicts: host name or an instance held by another key
        old = self.hosts.get(host.name)
        if old is not None and old.key != host.key and not _expired_key(old, now):
            return dns.rcode.YXDOMAIN, None
        for other in self.hosts.values():
            if (
                other.name != host.name
                and other.key != host.key
                and not _expired_key(other, now)
                and any(k in other.services for k in host.services)
            ):
                return dns.rcode.YXDOMAIN, None
        granted_lease = 0 if lease == 0 else min(max(lease, LEASE_MIN), LEASE_MAX)
        granted_key = 0 if key_lease == 0 else min(max(key_lease, KEY_LEASE_MIN), KEY_LEASE_MAX)
        held = len(old.services) if old is not None else 0
        if (old is None and len(self.hosts) >= self.bounds.hosts_total) or (
            self._service_count() - held + len(host.services) > self.bounds.services_total
        ):
            self.counters.table_full += 1
            return dns.rcode.REFUSED, None
        host.lease, host.key_lease, host.updated = granted_lease, granted_key, now
        if granted_lease == 0:
            host.deleted = True
            for s in host.services.values():
                s.deleted = True
        if old is not None:
            # services this update leaves out are kept (OpenThread's client renews early ones
            # without the others); with lease 0 the whole host goes, services and all
            for k, s in old.services.items():
                if k not in host.services:
                    s.deleted = s.deleted or granted_lease == 0
                    host.services[k] = s
        if granted_key == 0:
            self.hosts.pop(host.name, None)
        else:
            self.hosts[host.name] = host
        self._on_change(host.name)
        opt = (
            struct.pack("!I", granted_lease)
            if short
            else struct.pack("!II", granted_lease, granted_key)
        )
        return dns.rcode.NOERROR, opt

    def _service_count(self) -> int:
        return sum(len(h.services) for h in self.hosts.values())

    def _describe(self, parsed: wire.ParsedUpdate) -> tuple[Host, int, int, bool]:
        m = parsed.message
        host_name: dns.name.Name | None = None
        key: bytes | None = None
        addrs: list[str] = []
        instances: dict[dns.name.Name, dict[str, Any]] = {}
        ptrs: list[tuple[dns.name.Name, dns.name.Name, bool]] = []
        for rrset in m.update:
            name = rrset.name
            if not name.is_subdomain(DOMAIN):
                raise _Refused(dns.rcode.REFUSED)
            deleting = rrset.deleting  # dnspython keeps the class ANY/NONE of a delete here
            if rrset.rdclass != dns.rdataclass.IN and deleting != dns.rdataclass.ANY:
                raise _Refused(dns.rcode.FORMERR)  # records of the zone's class only (IN)
            if rrset.rdtype == dns.rdatatype.PTR and deleting in (None, dns.rdataclass.NONE):
                for rd in rrset:
                    ptrs.append((name, rd.target, deleting == dns.rdataclass.NONE))
            elif rrset.rdtype == dns.rdatatype.ANY and deleting == dns.rdataclass.ANY:
                instances.setdefault(name, {})
            elif deleting is not None:
                raise _Refused(dns.rcode.FORMERR)
            elif rrset.rdtype == dns.rdatatype.AAAA:
                addrs.extend(rd.address for rd in rrset)
                host_name = _same(host_name, name)
            elif rrset.rdtype == dns.rdatatype.KEY:
                for rd in rrset:
                    raw = rd.to_wire()
                    if key is not None and key != raw:
                        raise _Refused(dns.rcode.FORMERR)
                    key = raw
                    try:
                        wire.public_key_from_rdata(raw)
                    except ParseError:
                        raise _Refused(dns.rcode.FORMERR) from None
            elif rrset.rdtype == dns.rdatatype.SRV:
                rd = rrset[0]
                if len(rrset) != 1:
                    raise _Refused(dns.rcode.FORMERR)
                instances.setdefault(name, {})["srv"] = rd
            elif rrset.rdtype == dns.rdatatype.TXT:
                txt_strings = [s for rd in rrset for s in rd.strings]
                if sum(len(s) + 1 for s in txt_strings) > self.bounds.txt_max:
                    raise _Refused(dns.rcode.REFUSED, "oversized")
                instances.setdefault(name, {})["txt"] = txt_strings
            else:
                raise _Refused(dns.rcode.FORMERR)
        # the host: the delete-all name that is not a service instance
        svc_names = {t for _n, t, _d in ptrs}
        host_candidates = [n for n in instances if n not in svc_names]
        if len(host_candidates) != 1 or key is None:
            raise _Refused(dns.rcode.FORMERR)
        hn = host_candidates[0]
        if host_name is not None and host_name != hn:
            raise _Refused(dns.rcode.FORMERR)
        if parsed.sig.signer != hn:
            raise _Refused(dns.rcode.REFUSED)
        if len(addrs) > self.bounds.addresses_per_host:
            raise _Refused(dns.rcode.REFUSED, "oversized")
        # DNS names compare without case: one key per name however a rival spells it
        host = Host(_label(hn).lower(), key, addrs, 0, 0, 0.0)
        subtypes: dict[dns.name.Name, list[str]] = {}
        for owner, target, deleted in ptrs:
            rel = owner.relativize(DOMAIN)
            if len(rel) >= 3 and rel.labels[1].lower() == b"_sub":
                subtypes.setdefault(target, []).append(rel.labels[0].decode(errors="replace"))
                continue
            if not target.is_subdomain(owner) or len(target) != len(owner) + 1:
                raise _Refused(dns.rcode.REFUSED)
            desc = instances.get(target)
            if desc is None:
                raise _Refused(dns.rcode.FORMERR)
            srv = desc.get("srv")
            txt: list[bytes] | None = desc.get("txt")
            if (srv is None) != (txt is None) or (not deleted and srv is None):
                raise _Refused(dns.rcode.FORMERR)
            if srv is not None and srv.target != hn:
                raise _Refused(dns.rcode.FORMERR)
            stype = rel.to_text()
            inst = target.labels[0].decode(errors="replace")
            host.services[f"{inst}.{stype}".lower()] = Service(
                inst,
                stype,
                [],
                srv.port if srv else 0,
                srv.priority if srv else 0,
                srv.weight if srv else 0,
                list(txt or []),
                deleted,
            )
        for target, subs in subtypes.items():
            inst_key = f"{_label(target)}.{target.parent().relativize(DOMAIN).to_text()}".lower()
            if inst_key not in host.services or len(set(subs)) != len(subs):
                raise _Refused(dns.rcode.FORMERR)
            host.services[inst_key].subtypes = subs
        if len(host.services) > self.bounds.services_per_host:
            raise _Refused(dns.rcode.REFUSED, "table_full")
        lease, key_lease, short = _lease_option(m)
        if lease > key_lease or (lease > 0 and not addrs):
            raise _Refused(dns.rcode.FORMERR)
        return host, lease, key_lease, short

    # -- time ---------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        for name in list(self.hosts):
            h = self.hosts[name]
            if now >= h.key_lease_end():
                del self.hosts[name]
                self.counters.expired += 1
                self._on_change(name)
            elif now >= h.lease_end() and not h.deleted:
                h.deleted = True
                for s in h.services.values():
                    s.deleted = True
                self.counters.expired += 1
                self._on_change(name)

    def next_deadline(self) -> float | None:
        ends = [h.key_lease_end() if h.deleted else h.lease_end() for h in self.hosts.values()]
        return min(ends) if ends else None

    # -- state --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "hosts": [
                {
                    "name": h.name,
                    "key": h.key.hex(),
                    "addresses": h.addresses,
                    "lease": h.lease,
                    "key_lease": h.key_lease,
                    "updated": h.updated,
                    "deleted": h.deleted,
                    "services": [
                        {**s.__dict__, "txt": [t.hex() for t in s.txt]} for s in h.services.values()
                    ],
                }
                for h in self.hosts.values()
            ]
        }

    def load_json(self, doc: dict[str, Any], now: float) -> None:
        for h in doc.get("hosts", []):
            host = Host(
                h["name"],
                bytes.fromhex(h["key"]),
                list(h["addresses"]),
                int(h["lease"]),
                int(h["key_lease"]),
                float(h["updated"]),
                deleted=bool(h["deleted"]),
            )
            for s in h["services"]:
                svc = Service(**{**s, "txt": [bytes.fromhex(t) for t in s["txt"]]})
                host.services[f"{svc.instance}.{svc.service_type}".lower()] = svc
            self.hosts[host.name] = host
        self.expire(now)


class _Refused(Exception):
    def __init__(self, rcode: dns.rcode.Rcode, counter: str = "") -> None:
        self.rcode = rcode
        self.counter = counter  # a Counters field to count it in, besides the rcode's


def _same(a: dns.name.Name | None, b: dns.name.Name) -> dns.name.Name:
    if a is not None and a != b:
        raise _Refused(dns.rcode.FORMERR)
    return b


def _label(name: dns.name.Name) -> str:
    return name.labels[0].decode(errors="replace")


def _expired_key(h: Host, now: float) -> bool:
    return now >= h.key_lease_end()


def _lease_option(m: dns.message.Message) -> tuple[int, int, bool]:
    for opt in m.options:
        if opt.otype == wire.UPDATE_LEASE_OPTION:
            raw = opt.to_wire()
            if len(raw) == 8:
                lease, key_lease = struct.unpack("!II", raw)
                return lease, key_lease, False
            if len(raw) == 4:
                (lease,) = struct.unpack("!I", raw)
                return lease, lease, True
    raise _Refused(dns.rcode.FORMERR)


def _response(msg_id: int, rcode: dns.rcode.Rcode, lease_opt: bytes | None) -> bytes:
    flags = 0x8000 | (dns.opcode.UPDATE << 11) | int(rcode)
    if lease_opt is None:
        return struct.pack("!HHHHHH", msg_id, flags, 0, 0, 0, 0)
    opt = b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, 1272, 0x8000, 4 + len(lease_opt))
    opt += struct.pack("!HH", wire.UPDATE_LEASE_OPTION, len(lease_opt)) + lease_opt
    return struct.pack("!HHHHHH", msg_id, flags, 0, 0, 0, 1) + opt
