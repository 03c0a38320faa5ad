"""The border router's DNS-SD advertisement follows the uplink: withdrawn while the uplink is
unusable, published again on its new addresses."""

from __future__ import annotations

from types import SimpleNamespace

from gateway.border_router.service import BorderRouterService
from gateway.runtime.settings import Settings


def change(changed, usable, rebind=True):
    return SimpleNamespace(
        changed=frozenset(changed),
        rebind=rebind,
        new=SimpleNamespace(usable=usable, ifname="wlan0"),
    )


async def test_advertisement_moves_with_the_uplink(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("GATEWAY_RUNTIME_DIR", str(tmp_path / "run"))
    svc = BorderRouterService(Settings())
    calls: list[str] = []

    async def publish():
        calls.append("publish")

    async def withdraw():
        calls.append("withdraw")

    monkeypatch.setattr(svc, "_publish_mdns", publish)
    monkeypatch.setattr(svc, "_withdraw_mdns", withdraw)
    for c in (
        change({"link"}, usable=False, rebind=False),  # Wi-Fi lost: withdraw only
        change({"addresses"}, usable=True),  # back with a new address: publish again
        change({"route"}, usable=True, rebind=False),  # a route change alone: nothing to move
    ):
        await svc._on_uplink_change(c)
    assert calls == ["withdraw", "withdraw", "publish"]
