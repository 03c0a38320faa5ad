"""The byte stream to an RCP, on the event loop without blocking it.

- :class:`SerialLink`: a serial device (USB dongle) opened and configured through pyserial
  (baud rate, RTS/CTS, an exclusive lock; the open runs in a worker thread since a tty open may
  wait on modem lines); reads and writes then go through the non-blocking file descriptor with
  the loop's reader and writer callbacks.
- :class:`ForkPtyLink`: a process (OpenThread's simulated ``ot-rcp``) on a fresh pseudo-terminal
  in raw mode as its standard input and output, as ot-br-posix's ``forkpty`` radio URL runs it;
  the child inherits the environment (``PORT_OFFSET``), its standard error is kept for error
  messages. Its "hardware reset" starts the process anew.
- :class:`FdLink`: any non-blocking stream descriptor (the tests' socket pairs).

A link delivers bytes to ``on_data`` and reports the end of the stream (device unplugged, process
exited) once to ``on_lost``; writes never block (a short write is finished by a writer callback).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import signal
import tty
from collections.abc import Callable, Sequence

from drivers.errors import NoSuchDevice, RadioError, RadioPermissionDenied

LOG = logging.getLogger(__name__)
READ_SIZE = 4096
MAX_WRITE_BUFFER = 64 * 1024


class LinkLost(Exception):
    """The byte stream ended."""


class FdLink:
    """A byte stream over a non-blocking file descriptor."""

    can_hard_reset = False

    def __init__(self, fd: int = -1, description: str = "fd") -> None:
        self.fd = fd
        self.description = description
        self.on_data: Callable[[bytes], None] = lambda _data: None
        self.on_lost: Callable[[str], None] = lambda _why: None
        self._out = bytearray()
        self._reading = False
        self._writing = False
        self._alive = False
        self.lost_reason: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def alive(self) -> bool:
        return self._alive

    async def open(self) -> None:
        if self.fd < 0:
            raise LinkLost(self.explain("no descriptor to open"))
        self._start(self.fd)

    def _start(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._alive = True
        self._out.clear()
        self.lost_reason = None
        asyncio.get_running_loop().add_reader(fd, self._readable)
        self._reading = True

    def _stop_io(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reading:
            loop.remove_reader(self.fd)
            self._reading = False
        if self._writing:
            loop.remove_writer(self.fd)
            self._writing = False
        self._out.clear()

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the pty's other side closed; ENXIO etc.: device gone
            self._lost(f"read failed: {exc.strerror or exc}")
            return
        if not data:
            self._lost("end of stream")
            return
        self.bytes_in += len(data)
        self.on_data(data)

    def _lost(self, why: str) -> None:
        if not self._alive:
            return
        self._alive = False
        self.lost_reason = why
        self._stop_io()
        self.on_lost(self.explain(why))

    def explain(self, why: str) -> str:
        return f"{self.description}: {why}"

    def write(self, data: bytes) -> None:
        if not self._alive:
            raise LinkLost(self.explain("the link is closed"))
        self.bytes_out += len(data)
        if self._out:
            self._queue(data)
            return
        try:
            n = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._lost(f"write failed: {exc.strerror or exc}")
            raise LinkLost(self.explain(f"write failed: {exc.strerror or exc}")) from None
        if n < len(data):
            self._queue(data[n:])

    def _queue(self, data: bytes) -> None:
        if len(self._out) + len(data) > MAX_WRITE_BUFFER:
            # the other side stopped reading: drop what is queued (the RCP will time out and
            # be reset) rather than grow without bound
            self._out.clear()
            raise LinkLost(self.explain("the device does not take data (write buffer full)"))
        self._out += data
        if not self._writing:
            asyncio.get_running_loop().add_writer(self.fd, self._writable)
            self._writing = True

    def _writable(self) -> None:
        try:
            n = os.write(self.fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"write failed: {exc.strerror or exc}")
            return
        del self._out[:n]
        if not self._out:
            asyncio.get_running_loop().remove_writer(self.fd)
            self._writing = False

    async def restart(self) -> None:
        """Re-establish the stream (reopen the device, start the process again)."""
        await self.close()
        await self.open()

    async def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(Exception):
                self._stop_io()
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self._alive = False
        self.fd = -1


class SerialLink(FdLink):
    """``spinel+hdlc+uart://<device>?uart-baudrate=N[&uart-flow-control=1]``."""

    def __init__(self, device: str, baudrate: int = 460800, flow_control: bool = False) -> None:
        super().__init__(-1, f"serial device {device} at {baudrate} baud")
        self.device = device
        self.baudrate = baudrate
        self.flow_control = flow_control
        self._serial: object | None = None

    async def open(self) -> None:
        import serial  # pyserial

        def do_open() -> serial.Serial:
            return serial.Serial(
                port=self.device,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                rtscts=self.flow_control,
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )

        try:
            ser = await asyncio.to_thread(do_open)
        except serial.SerialException as exc:
            raise self._open_error(exc) from None
        except ValueError as exc:  # an unsupported baud rate
            raise NoSuchDevice(
                f"cannot configure {self.device}: {exc}",
                hint="Use a standard baud rate in uart-baudrate= (460800 or 115200).",
            ) from None
        self._serial = ser
        with contextlib.suppress(Exception):
            ser.reset_input_buffer()  # stale bytes from before (the RCP's last words)
        self._start(ser.fileno())

    def _open_error(self, exc: Exception) -> RadioError:
        code = getattr(exc, "errno", None)
        text = str(exc)
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "No such file" in text:
            return NoSuchDevice(
                f"no serial device {self.device}",
                hint="Plug in the RCP dongle and check the device in the radio URL "
                "(ls -l /dev/serial/by-id/); the udev rules link a known dongle as "
                "/dev/gateway-rcp.",
            )
        if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
            return RadioPermissionDenied(
                f"no permission to open {self.device}",
                hint="Run as root or as a member of the 'gateway' group (the installer's udev "
                "rules give that group the known RCP dongles: deploy/udev/60-gateway.rules), "
                "then replug the dongle.",
            )
        if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "lock" in text.lower():
            return RadioError(
                f"{self.device} is in use by another program",
                hint="Stop the program that holds the serial port (otbr-agent, zigbee2mqtt, a "
                "serial terminal): 'fuser -v " + self.device + "' names it.",
            )
        return NoSuchDevice(f"cannot open {self.device}: {text}")

    async def close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(Exception):
                self._stop_io()
            self.fd = -1  # pyserial closes its descriptor
            self._alive = False
            with contextlib.suppress(Exception):
                ser.close()  # type: ignore[attr-defined]
            return
        await super().close()


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Keeps the child's last lines of standard error and notes its exit."""

    def __init__(self) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.exited = asyncio.get_running_loop().create_future()
        self._partial = b""

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-1024:]
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self.tail.append(text)
                LOG.debug("rcp stderr: %s", text)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class ForkPtyLink(FdLink):
    """``spinel+hdlc+forkpty:///path/to/ot-rcp?forkpty-arg=N`` (arguments in order)."""

    can_hard_reset = True

    def __init__(
        self, program: str, args: Sequence[str], env: dict[str, str] | None = None
    ) -> None:
        shown = " ".join([program, *args])
        super().__init__(-1, f"RCP process '{shown}'")
        self.program = program
        self.args = list(args)
        self.env = env
        self.starts = 0
        self.last_exit = ""  # how the previous process ended, when it ended by itself
        self._transport: asyncio.SubprocessTransport | None = None
        self._child: _ChildProtocol | None = None

    @property
    def pid(self) -> int | None:
        return None if self._transport is None else self._transport.get_pid()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line discipline: bytes through as they are
            try:
                transport, child = await loop.subprocess_exec(
                    _ChildProtocol,
                    self.program,
                    *self.args,
                    stdin=slave,
                    stdout=slave,
                    stderr=asyncio.subprocess.PIPE,
                    env=self.env,
                    start_new_session=True,
                )
            except FileNotFoundError:
                raise NoSuchDevice(
                    f"no RCP program {self.program}",
                    hint="The path in spinel+hdlc+forkpty:// must name an executable ot-rcp "
                    "(OpenThread's simulation build: examples/apps/ncp/ot-rcp).",
                ) from None
            except PermissionError:
                raise RadioPermissionDenied(
                    f"{self.program} is not executable",
                    hint="chmod +x it, or give the path of an executable ot-rcp.",
                ) from None
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._transport, self._child = transport, child
        self.starts += 1
        self._start(master)

    def _status(self) -> str:
        t = self._transport
        rc = None if t is None else t.get_returncode()
        if rc is None:
            return ""
        status = f"exited with status {rc}" if rc >= 0 else f"was killed by signal {-rc}"
        if self._child is not None and self._child.tail:
            status += "; its last words: " + " | ".join(list(self._child.tail)[-3:])
        return status

    def explain(self, why: str) -> str:
        status = self._status() or self.last_exit
        return f"{self.description}: {why}" + (f" (it {status})" if status else "")

    async def close(self) -> None:
        await super().close()
        transport, child = self._transport, self._child
        self._transport = self._child = None
        if transport is None or child is None:
            return
        if self.lost_reason is not None and transport.get_returncode() is None:
            # the stream ended: the process is probably exiting by itself; let it say how
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(child.exited)
        if transport.get_returncode() is None:
            self.last_exit = ""
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(transport.get_pid(), signal.SIGTERM)
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(child.exited)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(transport.get_pid(), signal.SIGKILL)
                await child.exited
        else:
            self._transport, self._child = transport, child
            self.last_exit = self._status()
            self._transport = self._child = None
        transport.close()
