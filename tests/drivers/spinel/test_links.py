"""The two real links: a serial port through pyserial (a pty stands in for the USB dongle) and
an RCP process on a pty (the fake RCP stands in for OpenThread's ot-rcp), with their errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tty
from collections.abc import AsyncIterator

import pytest

from drivers.errors import NoSuchDevice, RadioPermissionDenied, RcpIncompatible, RcpNotResponding
from drivers.radio import open_radio
from drivers.spinel.backend import SpinelRadio, Timeouts
from drivers.spinel.link import ForkPtyLink
from tests.drivers.conftest import data_frame
from tests.drivers.spinel.peer import RcpModel

FAKE = ["-m", "tests.drivers.spinel.fake_rcp"]
FAST = Timeouts(response_s=1.0, reset_s=1.0, tx_s=1.0, health_period_s=60)


def fake_rcp_url(*args: str) -> str:
    query = "&".join(f"forkpty-arg={a}" for a in [*FAKE, *args])
    return f"spinel+hdlc+forkpty://{sys.executable}?{query}"


@pytest.fixture
async def pty_rcp() -> AsyncIterator[tuple[str, RcpModel]]:
    """An RCP model on the master side of a pty; the slave is the "serial device"."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    model = RcpModel()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            model.received(os.read(master, 4096))

    def write(data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(master, data)

    model.write = write
    loop.add_reader(master, readable)
    try:
        yield os.ttyname(slave), model
    finally:
        loop.remove_reader(master)
        await model.close()
        os.close(master)
        os.close(slave)


async def test_serial_port_through_pyserial(pty_rcp: tuple[str, RcpModel]) -> None:
    device, model = pty_rcp
    radio = open_radio(f"spinel+hdlc+uart://{device}?uart-baudrate=460800")
    async with radio:
        assert radio.info.eui64 == model.state.eui64
        await radio.set_channel(17)
        assert (await radio.transmit(data_frame(1, dst=2))).ok
    assert model.state.channel == 17
    assert radio.info.backend == "spinel-uart"


async def test_serial_device_errors(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(NoSuchDevice) as err:
        await open_radio("spinel+hdlc+uart:///dev/no-such-rcp").open()
    assert err.value.exit_code == 3 and "/dev/serial/by-id" in err.value.hint
    locked = os.path.join(tmp_path, "tty")
    with open(locked, "w"):
        pass
    os.chmod(locked, 0)
    if os.geteuid() != 0:
        with pytest.raises(RadioPermissionDenied) as perm:
            await open_radio(f"spinel+hdlc+uart://{locked}").open()
        assert perm.value.exit_code == 4 and "gateway" in perm.value.hint


async def test_serial_port_in_use(pty_rcp: tuple[str, RcpModel]) -> None:
    device, _model = pty_rcp
    async with open_radio(f"spinel+hdlc+uart://{device}"):
        with pytest.raises(Exception, match="in use"):
            await open_radio(f"spinel+hdlc+uart://{device}").open()


async def test_rcp_process_on_a_pty() -> None:
    radio = open_radio(fake_rcp_url("7"))
    async with radio:
        assert isinstance(radio, SpinelRadio)
        assert radio.info.eui64.hex() == "18b4300000000007"
        assert radio.info.backend == "spinel-forkpty"
        assert (await radio.transmit(data_frame(1, dst=2))).ok
        link = radio.link
        assert isinstance(link, ForkPtyLink) and link.pid is not None
    assert link.pid is None  # the process was stopped and reaped


async def test_rcp_process_environment() -> None:
    """The child inherits the environment: PORT_OFFSET reaches a simulated RCP."""
    link = ForkPtyLink(sys.executable, ["-c", "import os; print(os.environ['PORT_OFFSET'], file=__import__('sys').stderr)"],
                       {**os.environ, "PORT_OFFSET": "1633"})  # fmt: skip
    await link.open()
    for _ in range(100):
        if "1633" in link.explain(""):
            break
        await asyncio.sleep(0.02)
    assert "1633" in link.explain("")
    await link.close()


async def test_rcp_process_that_exits_at_once() -> None:
    radio = SpinelRadio(
        "test", ForkPtyLink(sys.executable, [*FAKE, "1", "--exit-now"]), timeouts=FAST
    )
    with pytest.raises(RcpNotResponding) as err:
        await radio.open()
    assert "status 3" in err.value.message and "already taken" in err.value.message


async def test_rcp_process_of_the_wrong_version() -> None:
    with pytest.raises(RcpIncompatible, match="4.2"):
        await open_radio(fake_rcp_url("1", "--protocol", "4.2")).open()


async def test_rcp_program_errors(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(NoSuchDevice) as err:
        await open_radio("spinel+hdlc+forkpty:///no/such/ot-rcp?forkpty-arg=1").open()
    assert err.value.exit_code == 3 and "ot-rcp" in err.value.hint
    plain = os.path.join(tmp_path, "ot-rcp")
    with open(plain, "w") as f:
        f.write("not a program")
    with pytest.raises(RadioPermissionDenied) as perm:
        await open_radio(f"spinel+hdlc+forkpty://{plain}?forkpty-arg=1").open()
    assert perm.value.exit_code == 4


async def test_crashed_rcp_process_is_started_again(tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(tmp_path, "crashed")
    link = ForkPtyLink(sys.executable, [*FAKE, "2", "--die-once", marker])
    radio = SpinelRadio("test", link, timeouts=FAST)
    async with radio:
        await radio.set_channel(22)
        # the process dies instead of transmitting: started again, re-initialised, sent again
        assert (await radio.transmit(data_frame(1, dst=2))).ok
        assert link.starts == 2
        assert radio.counters.recoveries == 1 and radio.channel == 22
        assert "status 9" in link.last_exit
