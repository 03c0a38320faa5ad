"""IEEE 802.15.4 frame check sequence: CRC-16/KERMIT (ITU-T, reflected, init 0), little-endian."""

from __future__ import annotations


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_kermit(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/KERMIT of ``data`` (``crc16_kermit(b"123456789") == 0x2189``)."""
    table = _TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def fcs(mhr_and_payload: bytes | bytearray | memoryview) -> bytes:
    """The two FCS bytes to append to a frame (little-endian)."""
    return crc16_kermit(mhr_and_payload).to_bytes(2, "little")


def append_fcs(frame: bytes) -> bytes:
    return frame + fcs(frame)


def fcs_ok(psdu: bytes | bytearray | memoryview) -> bool:
    """True when ``psdu`` (frame *with* its FCS) checks: the CRC over all of it is zero."""
    return len(psdu) >= 2 and crc16_kermit(psdu) == 0
