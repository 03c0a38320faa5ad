"""Newline-delimited JSON over a Unix stream socket: the transport of the control sockets and the
radio socket (protocols in docs/sockets.md).

Every message is one JSON object on one line (at most ``MAX_LINE`` bytes). Requests carry
``{"v": 1, "id": N, "method": "...", "params": {...}}``; replies ``{"v": 1, "id": N, "result": ...}``
or ``{"v": 1, "id": N, "error": {"code", "message", "hint"}}``; a server may also push
``{"v": 1, "event": "...", ...}`` lines. A malformed line is answered with an error and the
connection stays usable; other clients never notice.

Access: the socket file is 0660 with group ``gateway`` when that group exists (0600 otherwise),
and each peer is checked with SO_PEERCRED: root, the service's own user, or a member of the
``gateway`` group.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, ServiceUnavailable, error_class

LOG = logging.getLogger(__name__)
PROTOCOL_VERSION = 1
MAX_LINE = 256 * 1024  # a request
MAX_REPLY = 16 * 1024 * 1024  # a reply or event, as the client accepts it
GROUP = "gateway"  # administration: gwctl and the control sockets
RADIO_GROUP = "gateway-radio"  # the radio device and the radio socket


class ProtocolError(GatewayError):
    code = "CTL001"
    default_hint = "The message must be one JSON object per line with v, id, method, params."


class UnknownMethod(GatewayError):
    code = "CTL002"
    default_hint = "See docs/sockets.md for the methods this socket offers."


class InternalError(GatewayError):
    code = "CTL004"
    default_hint = "A bug in the service; its journal has the traceback (gwctl logs)."


class AccessDenied(GatewayError):
    code = "CTL003"
    exit_code = 4
    default_hint = "Run as root or as a member of the 'gateway' group."


def gateway_gid(group: str = GROUP) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13


def _peer_groups(pid: int, sock: socket.socket | None = None) -> set[int]:
    """The peer's supplementary groups: from the socket (SO_PEERGROUPS, works under
    ProtectProc=invisible and in user namespaces), else from /proc."""
    if sock is not None:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
            return set(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
        except OSError:
            pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def peer_allowed(sock: socket.socket, group: str = GROUP) -> bool:
    """Root, the service's own user, or a member of ``group``."""
    pid, uid, gid = peer_credentials(sock)
    if uid in (0, os.geteuid()):
        return True
    ggid = gateway_gid(group)
    return ggid is not None and (gid == ggid or ggid in _peer_groups(pid, sock))


Handler = Callable[["Connection", dict[str, Any]], Awaitable[Any]]


class Connection:
    """One client. ``send`` never blocks the service: a client that does not read loses pushed
    events (counted) instead of stalling the producer."""

    MAX_BUFFER = 4 * 1024 * 1024

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.dropped = 0
        self.closed = False
        self.data: dict[str, Any] = {}  # per-connection state for the service (subscriptions)

    def send(self, obj: dict[str, Any], droppable: bool = False) -> bool:
        if self.closed:
            return False
        transport = self.writer.transport
        if droppable and transport.get_write_buffer_size() > self.MAX_BUFFER:
            self.dropped += 1
            return False
        try:
            self.writer.write(json.dumps({"v": PROTOCOL_VERSION, **obj}).encode() + b"\n")
        except (ConnectionError, RuntimeError):
            self.closed = True
            return False
        return True

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()


class JsonLineServer:
    def __init__(
        self,
        path: Path,
        methods: dict[str, Handler],
        on_disconnect: Callable[[Connection], None] | None = None,
        group: str = GROUP,
    ) -> None:
        self.path = Path(path)
        self.group = group  # who besides root and the service's user may connect
        self.methods = methods
        self.on_disconnect = on_disconnect
        self._server: asyncio.Server | None = None
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors = 0
        self.refused = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run
        ggid = gateway_gid(self.group)
        old_umask = os.umask(0o117 if ggid is not None else 0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old_umask)
        if ggid is not None:
            with contextlib.suppress(PermissionError):
                os.chown(self.path, -1, ggid)
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = Connection(reader, writer)
        sock = writer.get_extra_info("socket")
        try:
            if sock is not None and not peer_allowed(sock, self.group):
                self.refused += 1
                denied = AccessDenied(
                    "access denied",
                    hint=f"Run as root or as a member of the '{self.group}' group.",
                )
                conn.send({"id": None, "error": denied.to_dict()})
                await conn.drain()
                return
            self.connections.add(conn)
            await self._serve(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels the connections it serves. Python 3.11's streams call
            # task.exception() on this task when it ends, which raises for a cancelled task and
            # logs it as an "unhandled exception"; ending normally is the clean way out.
            pass
        finally:
            self.connections.discard(conn)
            conn.closed = True
            if self.on_disconnect is not None:
                self.on_disconnect(conn)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, conn: Connection) -> None:
        while True:
            try:
                line = await conn.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self.errors += 1
                conn.send({"id": None, "error": ProtocolError("message too long").to_dict()})
                await conn.drain()
                return  # the stream cannot be resynchronised cheaply: close this client
            except asyncio.IncompleteReadError:
                return
            if not line.strip():
                continue
            await self._dispatch(conn, line)
            await conn.drain()

    async def _dispatch(self, conn: Connection, line: bytes) -> None:
        req_id: Any = None
        try:
            try:
                msg = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                # RecursionError: a line of deeply nested arrays, which the decoder cannot bound
                raise ProtocolError("not a JSON object") from None
            if not isinstance(msg, dict):
                raise ProtocolError("not a JSON object")
            req_id = msg.get("id")
            if not isinstance(req_id, int | str | None) or isinstance(req_id, bool):
                req_id = None
                raise ProtocolError("id must be a number or a string")
            if msg.get("v") != PROTOCOL_VERSION:
                raise ProtocolError(f"unsupported protocol version {msg.get('v')!r}; this is 1")
            method = msg.get("method")
            params = msg.get("params", {})
            if not isinstance(method, str) or not isinstance(params, dict):
                raise ProtocolError("method must be a string and params an object")
            handler = self.methods.get(method)
            if handler is None:
                raise UnknownMethod(f"unknown method {method!r}")
            result = await handler(conn, params)
            conn.send({"id": req_id, "result": result})
        except GatewayError as exc:
            self.errors += 1
            conn.send({"id": req_id, "error": exc.to_dict()})
        except (TypeError, ValueError, KeyError) as exc:
            self.errors += 1
            conn.send({"id": req_id, "error": ProtocolError(f"bad parameters: {exc}").to_dict()})
        except Exception:  # a bug in a handler: answer, log it, keep serving  # noqa: BLE001
            self.errors += 1
            LOG.exception("socket method failed on %s", self.path.name)
            err = InternalError("internal error in the service (logged in its journal)")
            conn.send({"id": req_id, "error": err.to_dict()})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.writer.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class JsonLineClient:
    """A client of a JSON-lines socket: ``await call(method, **params)``; pushed events go to
    ``on_event``."""

    def __init__(self, path: Path, on_event: Callable[[dict[str, Any]], None] | None = None):
        self.path = Path(path)
        self.on_event = on_event
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._reader_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.oversized = 0  # replies or events longer than MAX_REPLY, skipped

    async def connect(self, timeout: float = 5.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                self._reader, self._writer = await asyncio.open_unix_connection(
                    str(self.path), limit=MAX_REPLY
                )
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as exc:
            raise ServiceUnavailable(f"nothing is listening on {self.path}") from exc
        except PermissionError as exc:
            raise AccessDenied(f"no permission to connect to {self.path}") from exc
        self._reader_task = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                try:
                    line = await self._reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    # A line longer than the client takes: skip it whole and keep the
                    # connection (the call it answered, if any, times out and is forgotten).
                    self.oversized += 1
                    await self._skip_line()
                    continue
                try:
                    msg = json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if not isinstance(msg, dict):
                    continue
                if "event" in msg:
                    if self.on_event is not None:
                        self.on_event(msg)
                    continue
                mid = msg.get("id")
                fut = self._pending.pop(mid, None) if isinstance(mid, int) else None
                if fut is None:
                    if "error" in msg and msg.get("id") is None:
                        err = msg["error"]
                        self._fail_all(
                            error_class(err.get("code", ""))(err.get("message", "error"))
                        )
                    continue
                if fut.done():
                    continue
                if "error" in msg:
                    err = msg["error"] if isinstance(msg["error"], dict) else {}
                    cls = error_class(str(err.get("code", "")))
                    fut.set_exception(cls(str(err.get("message", "error")), hint=err.get("hint")))
                else:
                    fut.set_result(msg.get("result"))
        except ConnectionError:
            pass
        finally:
            self._fail_all(ServiceUnavailable(f"the service on {self.path} closed the connection"))
            self.closed.set()

    async def _skip_line(self) -> None:
        assert self._reader is not None
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)

    def _fail_all(self, exc: GatewayError) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    async def call(self, method: str, timeout: float | None = 30.0, **params: Any) -> Any:
        if self._writer is None or self.closed.is_set():
            raise ServiceUnavailable(f"not connected to {self.path}")
        req_id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        msg = {"v": PROTOCOL_VERSION, "id": req_id, "method": method, "params": params}
        try:
            try:
                self._writer.write(json.dumps(msg).encode() + b"\n")
                await self._writer.drain()
            except OSError as exc:  # the service went away under us (reset, broken pipe)
                raise ServiceUnavailable(f"the connection to {self.path} was lost: {exc}") from None
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._pending.pop(req_id, None)  # answered, timed out or cancelled: forgotten

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    async def __aenter__(self) -> JsonLineClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
