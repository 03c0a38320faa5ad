"""A handler that fails with an unexpected exception gets an error reply; the connection and the
server keep working (the traceback goes to the log, not to the client)."""

from __future__ import annotations

import pytest

from gateway.runtime.jsonline import InternalError, JsonLineClient, JsonLineServer


async def test_unexpected_exception_is_answered_and_logged(tmp_path, caplog):
    async def broken(_conn, _params):
        raise RuntimeError("a bug with a secret 00112233")

    async def fine(_conn, _params):
        return {"ok": True}

    server = JsonLineServer(tmp_path / "s.sock", {"broken": broken, "fine": fine})
    await server.start()
    try:
        async with JsonLineClient(tmp_path / "s.sock") as client:
            with pytest.raises(InternalError) as info:
                await client.call("broken")
            assert "secret" not in info.value.message
            assert await client.call("fine") == {"ok": True}
    finally:
        await server.close()
    assert "socket method failed" in caplog.text
