"""The CBSB part of `make demo`: cloud-server-based secure bootstrapping end to end, told along the
ten steps of the draft's Figure 2.

How the demo's runner uses it (gateway/demo/run.py):

    await start_cloud(ctx)            # BEFORE the three services start (first-start registration;
    env = {**ctx.env, **cloud_env(ctx)}   # the group owner also waits for its factory file)
    ... start radio, border router, group owner with env ...
    await demo_cbsb(ctx)              # app, cloud and three things, step by step
    await stop_cloud(ctx)             # at the end (demo_cbsb leaves the cloud running)

``ctx`` provides ``tmp: Path``, ``port_offset: int``, ``env: dict[str, str]`` (the services'
environment), ``say(str)`` and ``step(str)``. Radio nodes 20-22 are used for the things; the cloud
listens on TCP 30000 + port_offset, the app on UDP 40000 + 10 x port_offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gateway.demo.context import DemoContext
from gateway.wire.cbsb_steps import STEPS

THING_NODES = (20, 21, 22)


@dataclass
class _Cloud:
    proc: asyncio.subprocess.Process
    state: Path
    url: str
    serial: str = ""
    claim_code: str = ""
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


_CLOUDS: dict[int, _Cloud] = {}


def _repo() -> str:
    return str(Path(__file__).resolve().parents[2])


def _env(ctx: DemoContext) -> dict[str, str]:
    env = {**os.environ, **ctx.env}
    env["PYTHONPATH"] = _repo() + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cloud_url(ctx: DemoContext) -> str:
    return f"coaps+tcp://127.0.0.1:{30000 + ctx.port_offset}"


def cloud_env(ctx: DemoContext) -> dict[str, str]:
    """Extra environment for the three services (the group owner's cloud URL; the factory file
    written by start_cloud names it as well)."""
    return {"GATEWAY_CLOUD_URL": cloud_url(ctx), "GATEWAY_FACTORY_DIR": str(_factory_dir(ctx))}


def _state_dir(ctx: DemoContext) -> Path:
    return Path(ctx.env.get("GATEWAY_STATE_DIR", str(ctx.tmp / "state")))


def _factory_dir(ctx: DemoContext) -> Path:
    """The box's factory provisioning (read-only for the services, apart from their state)."""
    return Path(ctx.env.get("GATEWAY_FACTORY_DIR", str(ctx.tmp / "factory")))


async def _run(ctx: DemoContext, *args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=_env(ctx), cwd=str(ctx.tmp),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(errors="replace")


async def start_cloud(ctx: DemoContext) -> None:
    """Start the reference cloud and enrol this gateway at the "factory" (its factory file goes
    into the gateway's state directory). Call it before the services start."""
    if id(ctx) in _CLOUDS:
        return
    state = ctx.tmp / "cbsb-cloud"
    url = cloud_url(ctx)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.peers.cloud", "serve", "--state", str(state),
        "--listen", f"127.0.0.1:{30000 + ctx.port_offset}", env=_env(ctx), cwd=str(ctx.tmp),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    cloud = _Cloud(proc, state, url)
    _CLOUDS[id(ctx)] = cloud
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if b"listening" not in line:
        raise RuntimeError(f"the cloud did not start: {line.decode(errors='replace')}")
    cloud.tasks.append(asyncio.ensure_future(_drain(proc, _open_log(ctx, "cloud"))))
    factory_dir = _factory_dir(ctx)
    factory_dir.mkdir(parents=True, exist_ok=True)
    rc, out = await _run(ctx, "-m", "gateway.peers.cloud", "enrol-gateway", "--state", str(state),
                         "--out", str(factory_dir / "cbsb-factory.json"), "--cloud-url", url,
                         "--json")  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"enrolling the gateway failed: {out}")
    doc = json.loads(out.strip().splitlines()[-1])
    cloud.serial, cloud.claim_code = doc["serial"], doc["claim_code"]
    pw = ctx.tmp / "alice.password"
    pw.write_text(secrets.token_urlsafe(12))
    await _run(ctx, "-m", "gateway.peers.cloud", "add-user", "--state", str(state), "--user",
               "alice", "--password-file", str(pw))  # fmt: skip


def _open_log(ctx: DemoContext, name: str) -> BinaryIO:
    """A peer's log file in ``logs/`` of the demo's run folder (see gateway/demo.py)."""
    logs = ctx.tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return open(logs / f"{name}.log", "ab")  # noqa: SIM115 (the caller closes it)


async def _drain(proc: asyncio.subprocess.Process, log: BinaryIO) -> None:
    assert proc.stdout is not None
    with contextlib.suppress(Exception), log:
        while line := await proc.stdout.readline():
            log.write(line)
            log.flush()


async def stop_cloud(ctx: DemoContext) -> None:
    cloud = _CLOUDS.pop(id(ctx), None)
    if cloud is None:
        return
    for p in [*cloud.procs, cloud.proc]:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.wait(), 10)
    for t in cloud.tasks:
        t.cancel()
    await asyncio.gather(*cloud.tasks, return_exceptions=True)


async def _gwctl_status(ctx: DemoContext) -> dict[str, Any]:
    rc, out = await _run(ctx, "-c", "from gateway.group_owner.cli import bootstrap; "
                         "bootstrap(['status', '--json'])", timeout=20)  # fmt: skip
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if rc == 0 and lines else {}


def _thing_step(stage: str) -> int:
    """Which of the draft's steps a progress line of the reference thing belongs to."""
    if stage.startswith("scanning") or " found " in stage or "trying others" in stage:
        return 6
    return 8


async def demo_cbsb(ctx: DemoContext) -> None:
    """The whole method, step by step (the services must be running)."""
    await start_cloud(ctx)
    cloud = _CLOUDS[id(ctx)]
    app_state = ctx.tmp / "app-alice"

    def app(*args: str) -> list[str]:
        return ["-m", "gateway.peers.app", "--state", str(app_state), "--json", *args]

    ctx.step("Cloud-based secure bootstrapping (CBSB-1): the gateway is the Group Owner")
    ctx.say(f"The cloud runs at {cloud.url} (CoAP over TLS 1.3).")
    ctx.say(f"Premise 1: the gateway {cloud.serial} registers with the cloud using its factory "
            "identity (mutual TLS with the certificate the cloud issued at first start).")  # fmt: skip
    status: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = await _gwctl_status(ctx)
        if (status.get("cloud") or {}).get("state") == "connected":
            break
        await asyncio.sleep(0.5)
    else:
        raise RuntimeError(f"the group owner did not reach the cloud: {status.get('cloud')}")
    ctx.say(f"  gwctl bootstrap status: cloud {status['cloud']['state']}, radio "
            f"{status.get('gw_id')}, channel {status.get('channel')}, claim code on the box "
            f"{status.get('claim_code')}")  # fmt: skip
    rc, out = await _run(ctx, *app("login", "--user", "alice", "--password-file",
                                   str(ctx.tmp / "alice.password"), "--cloud", cloud.url,
                                   "--ca", str(cloud.state / "ca.pem")))  # fmt: skip
    rc, out = await _run(ctx, *app("claim", str(status.get("claim_code"))))
    ctx.say("Premise 2: Alice's app claims the gateway with the code printed on its box; the app "
            "and the gateway now share a key (K_appgw) for LAN notifications.")  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"claiming failed: {out}")

    things = []
    for i in range(len(THING_NODES)):
        k = ctx.tmp / f"thing{i}.kdev"
        rc, out = await _run(ctx, "-m", "gateway.peers.cloud", "enrol-device", "--state",
                             str(cloud.state), "--k-dev-file", str(k), "--json",
                             "--model", f"demo lamp {i + 1}")  # fmt: skip
        things.append((json.loads(out.strip().splitlines()[-1]), k))
    ctx.say(f"The factory enrolled {len(things)} things: each has its own 32-byte key K_dev (in "
            "the cloud and in the thing only) and a QR label, e.g. " + things[0][0]["qr"])  # fmt: skip

    events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def spawn(name: str, *args: str) -> asyncio.subprocess.Process:
        with _open_log(ctx, "app" if name == "app" else f"thing-{name}") as log:
            p = await asyncio.create_subprocess_exec(
                sys.executable, *args, env=_env(ctx), cwd=str(ctx.tmp),
                stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        cloud.procs.append(p)

        async def read() -> None:
            assert p.stdout is not None
            async for raw in p.stdout:
                with contextlib.suppress(json.JSONDecodeError):
                    await events.put((name, json.loads(raw)))
            await events.put((name, {"event": "exit", "rc": await p.wait()}))

        cloud.tasks.append(asyncio.ensure_future(read()))
        return p

    qrs = [a for t, _ in things for a in ("--qr", t["qr"])]
    listen = f"127.0.0.1:{40000 + 10 * ctx.port_offset}"
    ctx.step("Steps 1-4: the app starts, the cloud scopes a PSK per thing, the gateway broadcasts")
    await spawn("app", *app("bootstrap", *qrs, "--listen", listen, "--window", "120",
                            "--timeout", "90"))  # fmt: skip
    t_start = time.monotonic()
    said: set[str] = set()
    results: dict[str, dict[str, Any]] = {}
    app_rc: int | None = None
    labels = {t["dev_id"]: f"thing {i + 1} ({t['dev_id']})" for i, (t, _) in enumerate(things)}
    while app_rc is None or len(results) < len(things):
        try:
            name, ev = await asyncio.wait_for(events.get(), 120)
        except TimeoutError:
            ctx.say("(no progress for two minutes; giving up)")
            break
        if name == "app":
            if ev.get("event") == "exit":
                app_rc = ev["rc"]
                continue
            step, msg = ev.get("step"), ev.get("message", "")
            ctx.say(f"app, step {step}: {msg}" if step else f"app: {msg}")
            if ev.get("event") == "window_open" and "things" not in said:
                said.add("things")
                ctx.step("Steps 5-8: the user presses the pairing button on each thing")
                for i, (t, k) in enumerate(things):
                    await spawn(t["dev_id"], "-m", "gateway.peers.thing", "cbsb", "--radio",
                                f"emulated:?node={THING_NODES[i]}&port_offset={ctx.port_offset}",
                                "--dev-id", t["dev_id"], "--k-dev-file", str(k), "--out",
                                str(ctx.tmp / f"thing{i}-credentials.json"), "--json")  # fmt: skip
                ctx.say(f"Step 5: {STEPS[5]}: {len(things)} things start at once.")
            if ev.get("event") in ("joined", "bound") and "910" not in said:
                said.add("910")
                ctx.step("Steps 9-10: the gateway tells the app; the app has the cloud bind")
        else:
            label = labels.get(name, name)
            if ev.get("event") == "progress":
                stage = str(ev["stage"])
                ctx.say(f"{label}, step {_thing_step(stage)}: {stage}")
                if stage.startswith("gateway ") and " found " in stage:
                    ctx.say(f"{label}, step 7: sends Func(PSK, RandomKey) = its proof (M1)")
            elif ev.get("event") == "result":
                results[name] = ev
                if ev.get("ok"):
                    ctx.say(f"{label}: credentials committed after {ev['elapsed_s']:.2f} s "
                            f"(trigger to commit, discovery included)")  # fmt: skip
                else:
                    ctx.say(f"{label}: FAILED {ev.get('status')}: {ev.get('hint')}")
    ctx.step("Result")
    for i, (t, _) in enumerate(things):
        cred = ctx.tmp / f"thing{i}-credentials.json"
        if cred.exists():
            doc = json.loads(cred.read_text())
            ctx.say(f"{labels[t['dev_id']]} holds the gateway's Thread active dataset "
                    f"({len(doc['active_dataset']) // 2} bytes of TLVs, channel {doc['channel']})")  # fmt: skip
        else:
            ctx.say(f"{labels[t['dev_id']]} holds no credentials")
    rc, out = await _run(ctx, "-m", "gateway.peers.cloud", "show", "--state", str(cloud.state))
    with contextlib.suppress(json.JSONDecodeError):
        shown = json.loads(out)
        bound = [d for d in shown["devices"] if d["owner"] == "alice"]
        ctx.say(f"The cloud records {len(bound)} things bound to alice through {cloud.serial}.")
    status = await _gwctl_status(ctx)
    last = status.get("last_session") or status.get("session") or {}
    ctx.say(f"gwctl bootstrap status: last window {str(last.get('sid', ''))[:8]}, counters "
            f"{last.get('counters')}")  # fmt: skip
    ctx.say(f"App finished with exit code {app_rc} after {time.monotonic() - t_start:.1f} s.")
