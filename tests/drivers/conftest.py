from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest

from drivers.at86rf233.driver import At86rf233Radio
from drivers.emulator.chip import At86rf233Emulator
from drivers.radio import open_radio

RadioFactory = Callable[..., "object"]


@pytest.fixture
async def radios(port_offset: int) -> AsyncIterator[Callable[..., object]]:
    """``await radios(node, **params)`` opens an emulated radio on this test's own air."""
    async with AsyncExitStack() as stack:

        async def make(node: int, **params: object) -> At86rf233Radio:
            query = "&".join(
                f"{k}={v}" for k, v in {"node": node, "port_offset": port_offset, **params}.items()
            )
            radio = open_radio(f"emulated:?{query}")
            assert isinstance(radio, At86rf233Radio)
            await radio.open()
            stack.push_async_callback(radio.close)
            return radio

        yield make


def chip(radio: At86rf233Radio) -> At86rf233Emulator:
    emu = radio.emulator  # type: ignore[attr-defined]
    assert isinstance(emu, At86rf233Emulator)
    return emu


def data_frame(
    seq: int,
    dst: int,
    src: int = 0x0001,
    pan: int = 0x1234,
    payload: bytes = b"hello",
    ack: bool = True,
) -> bytes:
    """802.15.4-2006 data frame, short addresses, PAN ID compression (without FCS)."""
    fcf = 0x0001 | (0x20 if ack else 0) | 0x40 | (2 << 10) | (1 << 12) | (2 << 14)
    return (
        fcf.to_bytes(2, "little")
        + bytes((seq,))
        + pan.to_bytes(2, "little")
        + dst.to_bytes(2, "little")
        + src.to_bytes(2, "little")
        + payload
    )
