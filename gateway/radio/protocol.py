"""Radio socket protocol, version 1 (docs/sockets.md): the message shapes, shared by the radio
service and its clients. Transport: newline-delimited JSON (gateway.runtime.jsonline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidArgument

VERSION = 1


def hex_bytes(params: dict[str, Any], name: str, lo: int = 0, hi: int = 127) -> bytes:
    raw = params.get(name)
    if not isinstance(raw, str):
        raise InvalidArgument(f"'{name}' must be a hex string")
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        raise InvalidArgument(f"'{name}' is not valid hex") from None
    if not lo <= len(data) <= hi:
        raise InvalidArgument(f"'{name}' must have {lo}..{hi} bytes, not {len(data)}")
    return data


def int_param(
    params: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None
) -> int:
    raw = params.get(name, default)
    if raw is None:
        raise InvalidArgument(f"'{name}' is required")
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise InvalidArgument(f"'{name}' must be an integer within {lo}..{hi}")
    return raw


def bool_param(params: dict[str, Any], name: str, default: bool) -> bool:
    raw = params.get(name, default)
    if not isinstance(raw, bool):
        raise InvalidArgument(f"'{name}' must be true or false")
    return raw


@dataclass(frozen=True)
class RxFilter:
    """Which received frames a subscription wants (all given conditions must hold)."""

    frame_types: frozenset[int] | None = None
    dispatch_lo: int = 0  # first byte of an unsecured MAC payload
    dispatch_hi: int = 0xFF
    secured: bool | None = None  # only secured / only unsecured frames
    include_tx: bool = False  # also frames this radio transmitted (a sniffer's view)

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> RxFilter:
        ft = p.get("frame_types")
        types: frozenset[int] | None = None
        if ft is not None:
            if not isinstance(ft, list) or not all(isinstance(t, int) and 0 <= t <= 7 for t in ft):
                raise InvalidArgument("'frame_types' must be a list of integers 0..7")
            types = frozenset(ft)
        d = p.get("dispatch")
        lo, hi = 0, 0xFF
        if d is not None:
            if (
                not isinstance(d, list)
                or len(d) != 2
                or not all(isinstance(x, int) and 0 <= x <= 0xFF for x in d)
                or d[0] > d[1]
            ):
                raise InvalidArgument("'dispatch' must be [lo, hi] with 0 <= lo <= hi <= 255")
            lo, hi = d
        sec = p.get("secured")
        if sec is not None and not isinstance(sec, bool):
            raise InvalidArgument("'secured' must be true, false or absent")
        return cls(types, lo, hi, sec, bool_param(p, "include_tx", False))

    def matches(self, frame_type: int, secured: bool, first_payload_byte: int | None) -> bool:
        if self.frame_types is not None and frame_type not in self.frame_types:
            return False
        if self.secured is not None and secured != self.secured:
            return False
        if self.dispatch_lo != 0 or self.dispatch_hi != 0xFF:
            if secured or first_payload_byte is None:
                return False
            return self.dispatch_lo <= first_payload_byte <= self.dispatch_hi
        return True
