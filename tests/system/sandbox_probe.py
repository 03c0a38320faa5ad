"""Run inside a service's sandbox (a copy of its unit with this script as ExecStart) by
test_nspawn.py: what the process may and may not do, printed as one JSON line on stdout.

It checks what the services need (crypto through cryptography/cffi and fastecdsa under
MemoryDenyWriteExecute, the simulated air's UDP multicast, the border router's TUN, netlink and
raw ICMPv6) and what the sandbox must refuse (writing /etc, W+X memory, extra address families).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def attempt(fn: Callable[[], Any]) -> str:
    """'ok', or the errno name / exception class of the failure."""
    try:
        fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def crypto() -> None:
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    key = bytes(range(16))
    ccm = AESCCM(key, tag_length=8)
    ct = ccm.encrypt(bytes(13), b"payload", b"aad")
    assert ccm.decrypt(bytes(13), ct, b"aad") == b"payload"
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    assert a.exchange(ec.ECDH(), b.public_key()) == b.exchange(ec.ECDH(), a.public_key())
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(b"x")
    h.finalize()
    PBKDF2HMAC(hashes.SHA256(), 16, b"salt", 16384).derive(b"password")


def fastecdsa_mul() -> None:
    from fastecdsa.curve import P256

    assert (P256.G * 3) == (P256.G + P256.G + P256.G)


def cffi_callback() -> None:
    import importlib

    ffi = importlib.import_module("cffi").FFI()
    cb = ffi.callback("int(int)", lambda x: x + 1)
    assert cb(1) == 2


def ctypes_callback() -> None:
    proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    cb = proto(lambda x: x + 1)
    assert cb(1) == 2


def wx_mapping() -> None:
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.close()


def write_etc() -> None:
    with open("/etc/gateway-probe", "w") as f:
        f.write("x")


def write_state() -> None:
    path = "/var/lib/gateway/.probe"
    with open(path, "w") as f:
        f.write("x")
    os.unlink(path)


def multicast(group: str) -> Callable[[], None]:
    """Join ``group`` on the loopback interface and receive our own datagram (the simulated air)."""

    def go() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.settimeout(2.0)
            s.bind((group, 0))
            mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            s.sendto(b"\x0bprobe", (group, s.getsockname()[1]))
            assert s.recv(64) == b"\x0bprobe"
        finally:
            s.close()

    return go


def family(fam: int, kind: int = socket.SOCK_DGRAM, proto: int = 0) -> Callable[[], None]:
    def go() -> None:
        socket.socket(fam, kind, proto).close()

    return go


def tun() -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"gwprobe%d", IFF_TUN | IFF_NO_PI))
    finally:
        os.close(fd)


def open_tun() -> None:
    os.close(os.open("/dev/net/tun", os.O_RDWR))


def netlink_dump() -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        assert ipr.get_links()


def status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def main() -> None:
    import pwd

    report: dict[str, Any] = {
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "cap_eff": status_field("CapEff"),
        "no_new_privs": status_field("NoNewPrivs"),
        "seccomp": status_field("Seccomp"),
        "crypto": attempt(crypto),
        "fastecdsa": attempt(fastecdsa_mul),
        "cffi_callback": attempt(cffi_callback),
        "ctypes_callback": attempt(ctypes_callback),
        "wx_mapping": attempt(wx_mapping),
        "write_etc": attempt(write_etc),
        "write_state": attempt(write_state),
        "multicast": attempt(multicast("224.0.0.116")),
        "multicast_other_group": attempt(multicast("224.0.0.117")),
        "af_inet6": attempt(family(socket.AF_INET6)),
        "af_netlink": attempt(family(socket.AF_NETLINK, socket.SOCK_RAW, 0)),
        "af_packet": attempt(family(socket.AF_PACKET, socket.SOCK_RAW, 0)),
        "raw_icmpv6": attempt(family(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)),
        "open_tun": attempt(open_tun),
        "tun": attempt(tun),
        "netlink_dump": attempt(netlink_dump),
    }
    sys.stdout.write("PROBE " + json.dumps(report, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
