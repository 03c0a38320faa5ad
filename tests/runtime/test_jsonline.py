"""The JSON-lines transport of the radio socket and the control sockets (docs/sockets.md): replies,
errors for every kind of malformed line without disturbing the connection or other connections,
the line limit, the peer check (SO_PEERCRED) and the socket file modes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import GatewayError, InvalidArgument, ServiceUnavailable
from gateway.runtime import jsonline
from gateway.runtime.jsonline import (
    MAX_LINE,
    Connection,
    JsonLineClient,
    JsonLineServer,
)

NOBODY = 65534
OTHER_GID = 4242  # a group id no account uses: stands for the 'gateway' group


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="gw-jl-", dir="/tmp"))
    d.chmod(0o711)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Fixture:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.release = asyncio.Event()
        self.conns: list[Connection] = []

        async def echo(conn: Connection, p: dict[str, Any]) -> Any:
            return p

        async def invalid(conn: Connection, p: dict[str, Any]) -> Any:
            raise InvalidArgument("'x' must be 1", hint="try 1")

        async def typeerror(conn: Connection, p: dict[str, Any]) -> Any:
            return int(p["n"])  # KeyError / TypeError / ValueError on bad params

        async def wait(conn: Connection, p: dict[str, Any]) -> Any:
            await self.release.wait()
            return "released"

        async def events(conn: Connection, p: dict[str, Any]) -> Any:
            self.conns.append(conn)
            sent = sum(conn.send({"event": "tick", "n": i}, droppable=True) for i in range(p["n"]))
            return {"sent": sent}

        self.server = JsonLineServer(
            path,
            {"echo": echo, "invalid": invalid, "int": typeerror, "wait": wait, "events": events},
        )


@pytest.fixture
async def srv(sockdir: Path) -> AsyncIterator[Fixture]:
    fx = Fixture(sockdir / "test.sock")
    await fx.server.start()
    try:
        yield fx
    finally:
        await fx.server.close()


class Raw:
    """An asyncio client that speaks raw lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Raw:
        r, w = await asyncio.open_unix_connection(str(path), limit=4 * MAX_LINE)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        async with asyncio.timeout(timeout):
            line = await self.reader.readline()
        if not line:
            return None
        assert line.endswith(b"\n")
        msg: dict[str, Any] = json.loads(line)
        return msg

    async def call(self, line: bytes) -> dict[str, Any]:
        await self.send(line + b"\n")
        msg = await self.recv()
        assert msg is not None, f"connection closed after {line[:80]!r}"
        return msg

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def req(method: str, params: Any = None, rid: Any = 1, v: Any = 1) -> bytes:
    msg: dict[str, Any] = {"v": v, "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


async def test_requests_and_replies(srv: Fixture) -> None:
    c = await Raw.open(srv.path)
    try:
        assert await c.call(req("echo", {"a": [1, "b"]}, rid=7)) == {
            "v": 1,
            "id": 7,
            "result": {"a": [1, "b"]},
        }
        assert await c.call(req("echo", None, rid="text-id")) == {
            "v": 1,
            "id": "text-id",
            "result": {},
        }
        assert (await c.call(req("echo", {}, rid=None)))["id"] is None
        # several requests in one write: replies in order
        await c.send(req("echo", {"n": 1}, 1) + b"\n" + req("echo", {"n": 2}, 2) + b"\n\n \n")
        assert (await c.recv()) == {"v": 1, "id": 1, "result": {"n": 1}}
        assert (await c.recv()) == {"v": 1, "id": 2, "result": {"n": 2}}
        # a request split over several writes
        line = req("echo", {"split": True}, 3) + b"\n"
        await c.send(line[:5])
        await asyncio.sleep(0.01)
        await c.send(line[5:])
        assert (await c.recv()) == {"v": 1, "id": 3, "result": {"split": True}}
        # pushed events carry the version and no id
        assert (await c.call(req("events", {"n": 2}, 4))) == {"v": 1, "event": "tick", "n": 0}
        assert (await c.recv()) == {"v": 1, "event": "tick", "n": 1}
        assert (await c.recv()) == {"v": 1, "id": 4, "result": {"sent": 2}}
    finally:
        await c.close()


MALFORMED: list[tuple[bytes, Any, str, str]] = [
    # (line, expected id in the reply, error code, message fragment)
    (b"not json", None, "CTL001", "not a JSON object"),
    (b"{", None, "CTL001", "not a JSON object"),
    (b"\xff\xfe{}", None, "CTL001", "not a JSON object"),
    (b"[1, 2]", None, "CTL001", "not a JSON object"),
    (b'"echo"', None, "CTL001", "not a JSON object"),
    (b"null", None, "CTL001", "not a JSON object"),
    (b"[" * 100_000, None, "CTL001", "not a JSON object"),  # nesting beyond the decoder's stack
    (b'{"v": 1, "id": [1], "method": "echo"}', None, "CTL001", "id must be"),
    (b'{"v": 1, "id": true, "method": "echo"}', None, "CTL001", "id must be"),
    (b'{"v": 1, "id": 1.5, "method": "echo"}', None, "CTL001", "id must be"),
    (b'{"id": 5, "method": "echo"}', 5, "CTL001", "unsupported protocol version None"),
    (b'{"v": 2, "id": 5, "method": "echo"}', 5, "CTL001", "unsupported protocol version 2"),
    (b'{"v": "1", "id": 5, "method": "echo"}', 5, "CTL001", "unsupported protocol version '1'"),
    (b'{"v": 1, "id": 5}', 5, "CTL001", "method must be a string"),
    (b'{"v": 1, "id": 5, "method": 3}', 5, "CTL001", "method must be a string"),
    (b'{"v": 1, "id": 5, "method": "echo", "params": [1]}', 5, "CTL001", "params an object"),
    (b'{"v": 1, "id": 5, "method": "echo", "params": null}', 5, "CTL001", "params an object"),
    (b'{"v": 1, "id": 5, "method": "nope"}', 5, "CTL002", "unknown method 'nope'"),
    (b'{"v": 1, "id": 5, "method": "invalid"}', 5, "GW001", "'x' must be 1"),
    (b'{"v": 1, "id": 5, "method": "int", "params": {}}', 5, "CTL001", "bad parameters"),
    (b'{"v": 1, "id": 5, "method": "int", "params": {"n": []}}', 5, "CTL001", "bad parameters"),
    (b'{"v": 1, "id": 5, "method": "int", "params": {"n": "x"}}', 5, "CTL001", "bad parameters"),
    (
        b'{"v": 1, "id": 5, "method": "echo", "params": {"n": ' + b"1" * 5000 + b"}}",
        None,
        "CTL001",
        "",
    ),
]


async def test_malformed_lines_get_errors_and_the_connection_survives(srv: Fixture) -> None:
    c = await Raw.open(srv.path)
    other = await Raw.open(srv.path)
    try:
        for line, rid, code, fragment in MALFORMED:
            reply = await c.call(line)
            assert "result" not in reply, (line[:60], reply)
            assert reply["v"] == 1
            assert reply["error"]["code"] == code, (line[:60], reply)
            assert fragment in reply["error"]["message"], (line[:60], reply)
            assert isinstance(reply["error"]["hint"], str) and reply["error"]["hint"]
            if rid is not None or code != "CTL001":
                assert reply["id"] == rid
            # the same connection still works, and so does another one
            assert (await c.call(req("echo", {"ok": 1}, 99)))["result"] == {"ok": 1}
        assert (await other.call(req("echo", {}, 1)))["result"] == {}
        assert srv.server.errors == len(MALFORMED)
        assert (await c.call(req("invalid")))["error"]["hint"] == "try 1"
    finally:
        await c.close()
        await other.close()


def exchange(path: Path, data: bytes) -> tuple[list[bytes], bool]:
    """Blocking: send ``data`` (the server may close before it is all written), then every line
    received until the server closes; and whether it closed."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        s.sendall(data)
    buf = b""
    closed = False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        pass
    s.close()
    return buf.splitlines(), closed


async def test_line_limit(srv: Fixture) -> None:
    other = await Raw.open(srv.path)
    try:
        # exactly MAX_LINE bytes before the newline: accepted
        head = b'{"v": 1, "id": 1, "method": "echo", "params": {"pad": "'
        tail = b'"}}'
        line = head + b"x" * (MAX_LINE - len(head) - len(tail)) + tail
        assert len(line) == MAX_LINE
        assert (await other.call(line))["id"] == 1
        # one byte more: an error, then the connection is closed (the stream cannot resync);
        # likewise a huge line without any newline
        for data in (line[:-1] + b" " + tail[-1:] + b"\n", b"x" * (3 * MAX_LINE)):
            lines, closed = await asyncio.to_thread(exchange, srv.path, data)
            assert closed
            assert len(lines) == 1
            reply = json.loads(lines[0])
            assert reply["id"] is None
            assert reply["error"]["code"] == "CTL001"
            assert reply["error"]["message"] == "message too long"
        # nobody else noticed
        assert (await other.call(req("echo", {"still": "here"})))["result"] == {"still": "here"}
    finally:
        await other.close()


async def test_a_slow_request_does_not_block_other_connections(srv: Fixture) -> None:
    a = await Raw.open(srv.path)
    b = await Raw.open(srv.path)
    try:
        await a.send(req("wait", {}, 1) + b"\n" + req("echo", {"after": 1}, 2) + b"\n")
        assert (await b.call(req("echo", {"b": 1})))["result"] == {"b": 1}
        with pytest.raises(TimeoutError):
            await a.recv(timeout=0.1)  # one connection's requests are answered in order
        srv.release.set()
        assert (await a.recv()) == {"v": 1, "id": 1, "result": "released"}
        assert (await a.recv()) == {"v": 1, "id": 2, "result": {"after": 1}}
    finally:
        await a.close()
        await b.close()


async def test_a_client_that_does_not_read_loses_events_not_the_service(
    srv: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Connection, "MAX_BUFFER", 64 * 1024)
    lazy = await Raw.open(srv.path)
    good = await Raw.open(srv.path)
    try:
        await lazy.send(req("events", {"n": 20000}) + b"\n")  # never read (about 600 kB)
        await asyncio.sleep(0.2)
        assert srv.conns and srv.conns[0].dropped > 0
        assert (await good.call(req("echo", {"fine": True})))["result"] == {"fine": True}
    finally:
        await lazy.close()
        await good.close()


async def test_close_removes_the_socket_and_disconnects(sockdir: Path) -> None:
    fx = Fixture(sockdir / "x.sock")
    fx.path.write_text("stale")  # a leftover from a crashed run is replaced
    await fx.server.start()
    assert stat.S_ISSOCK(fx.path.stat().st_mode)
    c = await Raw.open(fx.path)
    assert (await c.call(req("echo", {})))["result"] == {}
    await fx.server.close()
    assert await c.recv() is None
    assert not fx.path.exists()
    await c.close()


async def test_json_line_client(srv: Fixture, sockdir: Path) -> None:
    seen: list[dict[str, Any]] = []
    async with JsonLineClient(srv.path, on_event=seen.append) as client:
        assert await client.call("echo", a=1) == {"a": 1}
        with pytest.raises(InvalidArgument) as info:
            await client.call("invalid")
        assert info.value.message == "'x' must be 1" and info.value.hint == "try 1"
        with pytest.raises(GatewayError, match="unknown method"):
            await client.call("nope")
        assert await client.call("events", n=3) == {"sent": 3}
        assert [e["n"] for e in seen] == [0, 1, 2]
        pending = asyncio.ensure_future(client.call("wait"))
        await asyncio.sleep(0.05)
        await srv.server.close()
        with pytest.raises(ServiceUnavailable):
            await pending
    with pytest.raises(ServiceUnavailable):
        await JsonLineClient(sockdir / "missing.sock").connect(timeout=0.5)


# ---------------------------------------------------------------- access control


def _peer_child(path: Path, uid: int, gid: int, groups: list[int], wfd: int) -> None:
    """In a forked child: drop to uid/gid/groups, connect, ping; report what happened."""
    out: dict[str, Any]
    try:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(str(path))
        except PermissionError:
            out = {"connect": "EACCES"}
        else:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # a refused peer may find the connection already closed after the refusal
                s.sendall(req("echo", {"from": uid}) + b"\n")
            data = b""
            while b"\n" not in data:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
            first = json.loads(data.split(b"\n")[0]) if data.strip() else None
            try:
                rest = s.recv(4096) if first and "error" in first else b""
            except ConnectionResetError:
                rest = b""
            out = {"reply": first, "closed_after": rest == b""}
        os.write(wfd, json.dumps(out).encode())
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        os.write(wfd, json.dumps({"exception": repr(exc)}).encode())
    finally:
        os._exit(0)


async def as_user(path: Path, uid: int, gid: int, groups: list[int]) -> dict[str, Any]:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _peer_child(path, uid, gid, groups, wfd)
    os.close(wfd)
    try:
        for _ in range(1000):  # the server runs on this loop: never block it
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            await asyncio.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("child did not finish")
        result: dict[str, Any] = json.loads(os.read(rfd, 65536))
        return result
    finally:
        os.close(rfd)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change uid")


@needs_root
async def test_without_gateway_group_only_the_same_user(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonline, "gateway_gid", lambda group=jsonline.GROUP: None)
    fx = Fixture(sockdir / "priv.sock")
    await fx.server.start()
    try:
        assert stat.S_IMODE(fx.path.stat().st_mode) == 0o600
        # the file mode already stops another user
        assert await as_user(fx.path, NOBODY, NOBODY, []) == {"connect": "EACCES"}
        # and if the mode is loosened by mistake, the peer check still refuses
        fx.path.chmod(0o666)
        res = await as_user(fx.path, NOBODY, NOBODY, [OTHER_GID])
        assert res.get("reply", {}).get("error", {}).get("code") == "CTL003", res
        assert res["reply"]["id"] is None and res["closed_after"]
        assert fx.server.refused == 1
        # root (this process) is always allowed
        c = await Raw.open(fx.path)
        assert (await c.call(req("echo", {})))["result"] == {}
        await c.close()
    finally:
        await fx.server.close()


@needs_root
async def test_gateway_group_members_are_allowed(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonline, "gateway_gid", lambda group=jsonline.GROUP: OTHER_GID)
    fx = Fixture(sockdir / "group.sock")
    await fx.server.start()
    try:
        st = fx.path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == OTHER_GID
        # primary group
        res = await as_user(fx.path, NOBODY, OTHER_GID, [])
        assert res["reply"] == {"v": 1, "id": 1, "result": {"from": NOBODY}}, res
        # supplementary group (read from /proc/<pid>/status)
        res = await as_user(fx.path, NOBODY, NOBODY, [OTHER_GID])
        assert res["reply"] == {"v": 1, "id": 1, "result": {"from": NOBODY}}, res
        # not in the group: the file mode refuses; with the mode loosened, the peer check does
        assert await as_user(fx.path, NOBODY, NOBODY, []) == {"connect": "EACCES"}
        fx.path.chmod(0o666)
        res = await as_user(fx.path, NOBODY, NOBODY, [])
        assert res.get("reply", {}).get("error", {}).get("code") == "CTL003", res
        assert "gateway" in res["reply"]["error"]["hint"]
    finally:
        await fx.server.close()


@needs_root
async def test_the_radio_socket_admits_its_own_group_not_the_admin_group(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two groups: 'gateway' administers (gwctl, control sockets), 'gateway-radio' owns the radio
    and its socket. A member of the administration group alone cannot use the radio socket."""
    admin_gid, radio_gid = OTHER_GID, OTHER_GID + 1
    gids = {jsonline.GROUP: admin_gid, jsonline.RADIO_GROUP: radio_gid}
    monkeypatch.setattr(jsonline, "gateway_gid", lambda group=jsonline.GROUP: gids[group])
    fx = Fixture(sockdir / "radio.sock")
    fx.server = JsonLineServer(fx.path, fx.server.methods, group=jsonline.RADIO_GROUP)
    await fx.server.start()
    try:
        assert fx.path.stat().st_gid == radio_gid
        res = await as_user(fx.path, NOBODY, NOBODY, [radio_gid])
        assert res["reply"] == {"v": 1, "id": 1, "result": {"from": NOBODY}}, res
        fx.path.chmod(0o666)  # past the file mode, the peer check decides
        res = await as_user(fx.path, NOBODY, NOBODY, [admin_gid])
        assert res.get("reply", {}).get("error", {}).get("code") == "CTL003", res
        assert "gateway-radio" in res["reply"]["error"]["hint"]
    finally:
        await fx.server.close()


# ----------------------------------------------------------------------------- client limits


async def test_client_takes_a_reply_larger_than_a_request(sockdir: Path) -> None:
    """A status reply can be large (many children, many registrations): the client used to die
    on a reply line over 256 KiB (the request limit); it takes up to MAX_REPLY now."""

    async def big(conn: Connection, p: dict[str, Any]) -> Any:
        return "x" * p["n"]

    server = JsonLineServer(sockdir / "big.sock", {"big": big})
    await server.start()
    try:
        async with JsonLineClient(sockdir / "big.sock") as c:
            assert len(await c.call("big", n=1024 * 1024)) == 1024 * 1024
            assert await c.call("big", n=3) == "xxx"
    finally:
        await server.close()


async def test_client_skips_an_oversized_line_and_stays_connected(sockdir: Path) -> None:
    path = sockdir / "raw.sock"
    handler_done = asyncio.Event()

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while line := await r.readline():
                req = json.loads(line)
                if req["method"] == "huge":
                    w.write(b'{"id": %d, "result": "' % req["id"])
                    w.write(b"y" * (jsonline.MAX_REPLY + 10))
                    w.write(b'"}\n')
                else:
                    w.write(json.dumps({"id": req["id"], "result": "fine"}).encode() + b"\n")
                await w.drain()
        finally:
            w.close()
            handler_done.set()

    server = await asyncio.start_unix_server(serve, path=str(path))
    try:
        async with JsonLineClient(path) as c:
            with pytest.raises(TimeoutError):
                await c.call("huge", timeout=2.0)
            assert c.oversized == 1
            assert await c.call("small") == "fine"
            assert not c.closed.is_set()
        await asyncio.wait_for(handler_done.wait(), 10)
    finally:
        server.close()
        await server.wait_closed()


async def test_timed_out_calls_are_forgotten(srv: Fixture) -> None:
    async with JsonLineClient(srv.path) as c:
        for _ in range(5):
            with pytest.raises(TimeoutError):
                await c.call("wait", timeout=0.05)
        assert c._pending == {}
        srv.release.set()
        assert await c.call("echo", a=1) == {"a": 1}
        assert c._pending == {}


async def test_close_during_a_call_logs_no_unhandled_exception(sockdir: Path) -> None:
    """A request still being served when the server closes (a transmit in its retry pause at
    shutdown) ends its connection cleanly: Python 3.11's streams call ``task.exception()`` on
    the connection task and would log a cancelled one as an unhandled exception."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    try:
        fx = Fixture(sockdir / "c.sock")
        await fx.server.start()
        c = await Raw.open(fx.path)
        await c.send(req("wait", {}) + b"\n")
        await asyncio.sleep(0.1)  # the handler is waiting now
        await fx.server.close()
        assert await c.recv() is None
        await c.close()
        await asyncio.sleep(0)  # let done-callbacks run
    finally:
        loop.set_exception_handler(old)
    assert [ctx.get("message") for ctx in seen] == []
