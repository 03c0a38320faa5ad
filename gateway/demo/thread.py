"""The Thread commissioning part of ``make demo`` (called from gateway/demo/run.py).

:func:`demo_thread` runs, against the running services, the two cases of the seed draft (§3)
that work today with the gateway as Border Router and Joiner Router:

1. an external commissioner (the reference peer, as on a technician's laptop) finds the border
   agent by DNS-SD, petitions with the PSKc over DTLS, admits a thing by its EUI-64 and PSKd;
   the thing (the reference joiner on its own emulated radio) scans the channels, runs DTLS
   through the joiner router and receives the network credentials in JOIN_ENT;
2. a second commissioner is refused while the first is active;
3. the native commissioner on the box (what ``gwctl commissioner ...`` drives) admits a second
   thing the same way.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from gateway.demo.context import DemoContext

__all__ = ["DemoContext", "demo_thread"]

PSKD_1 = "J01NME"
PSKD_2 = "TH1NG2"
THING_NODES = (31, 32)  # emulated radios of the two things (the gateway's radio is node 1)


def _paths(env: dict[str, str]) -> Any:
    from gateway.runtime.paths import DEFAULT_CONFIG, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR, Paths

    return Paths(
        config=Path(env.get("GATEWAY_CONFIG", str(DEFAULT_CONFIG))),
        state_dir=Path(env.get("GATEWAY_STATE_DIR", str(DEFAULT_STATE_DIR))),
        runtime_dir=Path(env.get("GATEWAY_RUNTIME_DIR", str(DEFAULT_RUNTIME_DIR))),
    )


async def _call(paths: Any, method: str, timeout: float = 30.0, **params: Any) -> Any:
    import gateway.thread.errors  # noqa: F401  (typed errors come back by code)
    from gateway.runtime.jsonline import JsonLineClient

    client = JsonLineClient(paths.control_socket("border-router"))
    await client.connect(timeout=5.0)
    try:
        return await client.call(method, timeout=timeout, **params)
    finally:
        await client.close()


async def demo_thread(ctx: DemoContext) -> None:
    from drivers.emulator.backend import default_eui64
    from gateway.peers.commissioner import CommissionerPeer
    from gateway.peers.thing.joiner import join
    from gateway.runtime.mdns import browse_border_agents
    from gateway.runtime.network import load_network
    from gateway.runtime.settings import load_settings
    from gateway.thread.errors import CommissioningError

    paths = _paths(ctx.env)
    ds = load_network(load_settings(paths))
    if ds is None or ds.pskc is None or ds.channel is None:
        raise CommissioningError("the border router has not created the Thread network")
    status = await _call(paths, "status")
    ba_port = int(status["border_agent_port"])
    ctx.step("Thread commissioning: the gateway as Border Router, Leader and Joiner Router")
    ctx.say(
        f"Thread network '{ds.network_name}': channel {ds.channel}, PAN 0x{ds.pan_id or 0:04x}, "
        f"extended PAN ID {ds.ext_pan_id.hex() if ds.ext_pan_id else '?'}; border agent on "
        f"UDP {ba_port}; nobody may join yet (the network is locked down)"
    )
    things = [
        (node, default_eui64(node, ctx.port_offset), pskd)
        for node, pskd in zip(THING_NODES, (PSKD_1, PSKD_2), strict=True)
    ]

    def thing_say(n: int) -> Any:
        return lambda text: ctx.say(f"thing {n}: {text}")

    # -- 1. external commissioner -----------------------------------------------------------
    ctx.step("Case 1: an external commissioner on the WLAN, the gateway as joiner router")
    host, port = "127.0.0.1", ba_port
    with contextlib.suppress(Exception):
        found = [
            r
            for r in await browse_border_agents(3.0, "auto", want=None)
            if r.ext_pan_id == ds.ext_pan_id and r.port == ba_port
        ]
        if found:
            ctx.say(
                f"commissioner: found '{found[0].instance}' by DNS-SD (_meshcop._udp): network "
                f"'{found[0].network_name}', port {found[0].port}"
            )
        else:
            ctx.say(f"commissioner: no DNS-SD answer here; using the border agent at {host}:{port}")
    peer = CommissionerPeer(
        (host, port), ds.pskc, commissioner_id="technician's laptop",
        say=lambda text: ctx.say(f"commissioner: {text}"),
    )  # fmt: skip
    await peer.start()
    try:
        node, eui64, pskd = things[0]
        ctx.say(f"thing 1 (EUI-64 {eui64.hex()}) has its joining code (PSKd) on its label; the "
                "technician types it into the commissioner")  # fmt: skip
        await peer.add_joiner(pskd, eui64=eui64, timeout=120)
        result = await join(
            f"emulated:?node={node}&port_offset={ctx.port_offset}",
            pskd,
            eui64=eui64,
            say=thing_say(1),
        )
        if result.credentials is None:
            raise result.joiner.error or CommissioningError("thing 1 did not join")
        await peer.wait_joiner(eui64, timeout=10)
        ctx.say(f"thing 1 holds the network credentials after {result.seconds:.2f} s "
                f"(discovery across 16 channels: {result.discovery_seconds or 0:.2f} s)")  # fmt: skip

        ctx.step("Only one commissioner at a time")
        try:
            await _call(paths, "commissioner_start")
            ctx.say("unexpected: a second commissioner was accepted")
        except CommissioningError as exc:
            ctx.say(f"the native commissioner is refused while the laptop is active: {exc.message}")
    finally:
        await peer.close()

    # -- 2. native commissioner -------------------------------------------------------------
    ctx.step("Case 2: the native commissioner on the box (gwctl commissioner ...), the gateway "
             "as joiner router")  # fmt: skip
    started = await _call(paths, "commissioner_start", id="gateway technician")
    ctx.say(f"gwctl commissioner start: active, session ID {started['session_id']}")
    try:
        node, eui64, pskd = things[1]
        await _call(paths, "joiner_add", eui64=eui64.hex(), pskd=pskd, timeout_s=120)
        ctx.say(f"gwctl commissioner joiner add {eui64.hex()} --pskd-file -: admitted for 120 s "
                "(the joining code from the label, read from standard input)")  # fmt: skip
        result = await join(
            f"emulated:?node={node}&port_offset={ctx.port_offset}",
            pskd,
            eui64=eui64,
            channels=(ds.channel,),
            say=thing_say(2),
        )
        if result.credentials is None:
            raise result.joiner.error or CommissioningError("thing 2 did not join")
        waited = await _call(paths, "joiner_wait", eui64=eui64.hex(), wait_s=10)
        ctx.say(f"native commissioner: joiner {waited['joiner_id']} {waited['result']}; thing 2 "
                f"joined in {result.seconds:.2f} s (it scanned only channel {ds.channel})")  # fmt: skip
        creds = result.credentials.redacted()
        ctx.say("thing 2 now holds: " + ", ".join(f"{k} {v}" for k, v in creds.items()))
        sessions = await _call(paths, "sessions", events=8)
        for e in sessions["events"]:
            ctx.say(f"border router log: {e['text']}")
    finally:
        await _call(paths, "commissioner_stop")
        ctx.say("gwctl commissioner stop: the network is locked down again")
    ctx.say(
        "not shown: the other two cases of the draft (a joiner router other than the gateway) "
        "need MLE attach and routing between Thread routers (docs/thread.md)"
    )
