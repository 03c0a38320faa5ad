"""SRP DNS UPDATE wire format: dnspython parses the message up to the SIG(0) record, the SIG(0)
record itself (class ANY, which dnspython refuses) is parsed and verified here by hand."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.update
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gateway.errors import ParseError

MAX_UPDATE_SIZE = 1272  # the UDP payload size OpenThread advertises; larger is refused
SIG_TYPE = 24
ALG_ECDSA_P256 = 13
UPDATE_LEASE_OPTION = 2
SIG_FIXED = 18


@dataclass(frozen=True)
class SigRecord:
    type_covered: int
    algorithm: int
    signer: dns.name.Name
    signature: bytes
    fixed: bytes  # the 18 fixed RDATA bytes


@dataclass(frozen=True)
class ParsedUpdate:
    message: dns.update.UpdateMessage
    signed: bytes  # the bytes SHA-256 covers (SIG fixed + signer + header(ADCOUNT-1) + body)
    sig: SigRecord


def _skip_name(data: bytes, off: int) -> int:
    while True:
        if off >= len(data):
            raise ParseError("SRP: name runs past the message")
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            if off + 2 > len(data):
                raise ParseError("SRP: truncated name pointer")
            return off + 2
        if n & 0xC0:
            raise ParseError("SRP: bad label type")
        off += 1 + n


def _skip_rr(data: bytes, off: int) -> int:
    off = _skip_name(data, off)
    if off + 10 > len(data):
        raise ParseError("SRP: truncated record header")
    rdlen: int = struct.unpack_from("!H", data, off + 8)[0]
    end = off + 10 + rdlen
    if end > len(data):
        raise ParseError("SRP: truncated record data")
    return end


def parse_update(data: bytes) -> ParsedUpdate:
    """Parse a signed SRP update; raise :class:`ParseError` on anything malformed."""
    if len(data) > MAX_UPDATE_SIZE:
        raise ParseError("SRP: update larger than 1272 bytes")
    if len(data) < 12:
        raise ParseError("SRP: truncated header")
    _id, flags, zo, pr, up, ad = struct.unpack_from("!HHHHHH", data)
    if flags & 0x8000 or (flags >> 11) & 0xF != dns.opcode.UPDATE:
        raise ParseError("SRP: not an UPDATE request")
    if ad < 1:
        raise ParseError("SRP: no SIG(0) record")
    off = 12
    for _ in range(zo):
        off = _skip_name(data, off) + 4
    for _ in range(pr + up + ad - 1):
        off = _skip_rr(data, off)
    sig_off = off
    owner_end = _skip_name(data, off)
    if owner_end + 10 > len(data):
        raise ParseError("SRP: truncated SIG record")
    rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, owner_end)
    rdata_off = owner_end + 10
    if rtype != SIG_TYPE or rclass != dns.rdataclass.ANY:
        raise ParseError("SRP: last record is not SIG(0)")
    if rdata_off + rdlen != len(data) or rdlen < SIG_FIXED + 1:
        raise ParseError("SRP: bad SIG(0) length")
    fixed = data[rdata_off : rdata_off + SIG_FIXED]
    type_covered, algorithm = struct.unpack_from("!HB", fixed)
    try:
        signer, used = dns.name.from_wire(data, rdata_off + SIG_FIXED)
    except dns.exception.DNSException as e:
        raise ParseError(f"SRP: bad signer name ({type(e).__name__})") from e
    sig_start = rdata_off + SIG_FIXED + used
    if sig_start > len(data):
        raise ParseError("SRP: signer name runs past SIG")
    head = bytearray(data[:sig_off])
    struct.pack_into("!H", head, 10, ad - 1)
    try:
        msg = dns.message.from_wire(bytes(head))
    except (dns.exception.DNSException, ValueError, IndexError) as e:
        raise ParseError(f"SRP: malformed update ({type(e).__name__})") from e
    if not isinstance(msg, dns.update.UpdateMessage):
        raise ParseError("SRP: not an UPDATE message")
    sig = SigRecord(type_covered, algorithm, signer, data[sig_start:], fixed)
    signed = fixed + _canonical(signer) + bytes(head)
    return ParsedUpdate(msg, signed, sig)


def _canonical(name: dns.name.Name) -> bytes:
    return name.canonicalize().to_wire() or b""


def key_rdata(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """KEY RDATA as OpenThread sends it: flags 0x0201, protocol 3, algorithm 13, X||Y."""
    nums = public_key.public_numbers()
    return (
        struct.pack("!HBB", 0x0201, 3, ALG_ECDSA_P256)
        + nums.x.to_bytes(32, "big")
        + nums.y.to_bytes(32, "big")
    )


def public_key_from_rdata(rdata: bytes) -> ec.EllipticCurvePublicKey:
    if len(rdata) != 68 or rdata[3] != ALG_ECDSA_P256:
        raise ParseError("SRP: KEY is not ECDSA P-256")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + rdata[4:])
    except ValueError as e:
        raise ParseError("SRP: KEY is not a point on P-256") from e


def verify(parsed: ParsedUpdate, public_key: ec.EllipticCurvePublicKey) -> bool:
    sig = parsed.sig
    if sig.algorithm != ALG_ECDSA_P256 or sig.type_covered != 0 or len(sig.signature) != 64:
        return False
    der = encode_dss_signature(
        int.from_bytes(sig.signature[:32], "big"), int.from_bytes(sig.signature[32:], "big")
    )
    try:
        public_key.verify(der, parsed.signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def sign(unsigned: bytes, signer: dns.name.Name, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Append SIG(0) to ``unsigned`` (a complete message whose ADCOUNT excludes the SIG)."""
    fixed = struct.pack("!HBBIIIH", 0, ALG_ECDSA_P256, 0, 0, 0, 0, 0)
    digest_input = fixed + _canonical(signer) + unsigned
    r, s = decode_dss_signature(private_key.sign(digest_input, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    rdata = fixed + _canonical(signer) + signature
    head = bytearray(unsigned)
    (ad,) = struct.unpack_from("!H", head, 10)
    struct.pack_into("!H", head, 10, ad + 1)
    return (
        bytes(head)
        + b"\x00"
        + struct.pack("!HHIH", SIG_TYPE, dns.rdataclass.ANY, 0, len(rdata))
        + rdata
    )
