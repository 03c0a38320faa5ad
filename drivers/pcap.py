"""Classic pcap files of 802.15.4 frames, LINKTYPE_IEEE802_15_4_WITHFCS (195).

Writes are append-only and flushed per frame so that a capture that is cut short (Ctrl-C, crash,
power cut) is still readable by Wireshark up to the last whole frame.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from drivers.errors import GatewayError

LINKTYPE_IEEE802_15_4_WITHFCS = 195
LINKTYPE_IEEE802_15_4_NOFCS = 230
_MAGIC_US = 0xA1B2C3D4
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapError(GatewayError, ValueError):
    code = "PCAP001"
    default_hint = "The file is not a classic little-endian pcap of 802.15.4 frames."


class PcapWriter:
    """Writes frames (PSDU including FCS) with microsecond timestamps."""

    def __init__(self, path: str | os.PathLike[str], linktype: int = LINKTYPE_IEEE802_15_4_WITHFCS):
        self.path = Path(path)
        self._f: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._f.write(_GLOBAL.pack(_MAGIC_US, 2, 4, 0, 0, 65535, linktype))
        self._f.flush()
        self.frames = 0

    def write(self, psdu: bytes, timestamp: float | None = None) -> None:
        if self._f is None:
            raise ValueError("pcap writer is closed")
        ts = time.time() if timestamp is None else timestamp
        sec = int(ts)
        usec = int(round((ts - sec) * 1_000_000))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self._f.write(_RECORD.pack(sec, usec, len(psdu), len(psdu)) + psdu)
        self._f.flush()
        self.frames += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_pcap(path: str | os.PathLike[str]) -> list[tuple[float, bytes]]:
    """Frames of a classic pcap (little-endian, µs) as ``(timestamp, bytes)``; truncated tails
    are ignored, anything else malformed raises :class:`PcapError`."""
    data = Path(path).read_bytes()
    if len(data) < _GLOBAL.size:
        raise PcapError(f"{path}: too short for a pcap header")
    magic, _vmaj, _vmin, _tz, _sig, _snap, _lt = _GLOBAL.unpack_from(data)
    if magic != _MAGIC_US:
        raise PcapError(f"{path}: not a little-endian microsecond pcap")
    out: list[tuple[float, bytes]] = []
    pos = _GLOBAL.size
    while pos + _RECORD.size <= len(data):
        sec, usec, incl, _orig = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        if pos + incl > len(data):
            break
        out.append((sec + usec / 1e6, data[pos : pos + incl]))
        pos += incl
    return out
