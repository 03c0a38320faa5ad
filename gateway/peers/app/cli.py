"""python -m gateway.peers.app [--state DIR] [--json] {login,claim,gateways,devices,bootstrap} ...

The draft's steps from the user's side: 1 start and listen, 2 notify the cloud, (3-8 happen
between the cloud, the gateway and the thing; the app follows them through the cloud's session
events and the gateway's LAN notifications), 9 the result arrives, 10 bind the thing at the cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from gateway.cli.common import invoke, namespace_command
from gateway.errors import CryptoError, GatewayError, ParseError
from gateway.runtime.coap_tls import CoapJsonClient, client_tls_context
from gateway.wire import cbsb_notice as notice
from gateway.wire.cbsb_steps import STEPS, describe
from gateway.wire.cloudapi import (
    BadClaimCode,
    CloudApiError,
    CloudUnreachable,
    normalize_claim_code,
    parse_thing_qr,
)

DEFAULT_STATE = Path(os.environ.get("CBSB_APP_STATE", "~/.config/cbsb-app")).expanduser()
DEFAULT_LISTEN = "127.0.0.1:5683"
LAN_END_GRACE_S = 2.0
REPORT_WAIT_S = 30.0  # after every thing is bound: how long their reports over IP may take
MAX_SEEN = 4096  # notice and report ids remembered (duplicates), per endpoint
CLOSE_TIMEOUT_S = 2.0  # closing the session on the way out (Ctrl-C, the end)

# What the app says for errors of the cloud API, in a home user's words.
API_WORDS = {
    "UNAUTHORIZED": "You are not logged in (or your login expired). Log in again.",
    "BAD_LOGIN": "Wrong user name or password.",
    "LOCKED": "Too many wrong passwords. Wait a minute and try again.",
    "BAD_CLAIM_CODE": "That code is not valid. Check it on the label.",
    "UNKNOWN_GATEWAY": "No gateway has that code. Check the code on the box.",
    "OWNED_ELSEWHERE": "This belongs to someone else's account. Its owner must release it first.",
    "NOT_YOUR_GATEWAY": "That gateway is not yours. Claim it first with the code on its box.",
    "GATEWAY_NOT_REGISTERED": "Your gateway has not connected to the cloud yet. Is it on and online?",
    "CLOUD_DENIED": "The cloud refused the thing: its setup code does not match.",
    "BIND_REJECTED": "The cloud refused to add the thing to your account.",
    "RATE_LIMITED": "Too many attempts. Wait a few minutes and try again.",
    "NOT_YOUR_SESSION": "That bootstrapping session is not yours.",
}


class App:
    def __init__(self, state_dir: Path, as_json: bool) -> None:
        self.state_dir = state_dir
        self.as_json = as_json
        self.path = state_dir / "app.json"
        self.state: dict[str, Any] = {}
        if self.path.exists():
            self.state = json.loads(self.path.read_text())

    def save(self) -> None:
        from gateway.runtime.state import atomic_write

        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path, json.dumps(self.state, indent=1).encode(), mode=0o600)

    def say(self, message: str, step: int | None = None, **fields: Any) -> None:
        if self.as_json:
            print(json.dumps({"t": round(time.time(), 3), "step": step, "message": message,
                              **fields}), flush=True)  # fmt: skip
        else:
            prefix = f"[step {step}] " if step else ""
            print(prefix + message, flush=True)

    def client(self) -> CoapJsonClient:
        url, ca = self.state.get("cloud_url"), self.state.get("cloud_ca")
        if not url or not ca:
            raise GatewayError("the app does not know its cloud yet",
                               hint="Log in first with --cloud URL --ca FILE.")  # fmt: skip
        return CoapJsonClient(url, client_tls_context(ca), timeout=15.0)

    def token(self) -> str:
        tok = self.state.get("token")
        if not tok:
            raise CloudApiError("UNAUTHORIZED", "not logged in")
        return str(tok)


# ----------------------------------------------------------------------------- commands


async def cmd_login(app: App, args: SimpleNamespace) -> int:
    if args.cloud:
        app.state["cloud_url"] = args.cloud
    if args.ca_pem:
        app.state["cloud_ca"] = args.ca_pem
    password = args.password
    client = app.client()
    try:
        res = await client.call("login", {"user": args.user, "password": password})
    finally:
        await client.close()
    app.state.update(token=res["token"], user=args.user)
    app.save()
    app.say(f"Logged in as {args.user}.", user=args.user)
    return 0


async def cmd_claim(app: App, args: SimpleNamespace) -> int:
    code = normalize_claim_code(args.code)  # typos are caught here, before the cloud sees them
    client = app.client()
    try:
        res = await client.call("gateways/claim", {"token": app.token(), "claim_code": code})
    finally:
        await client.close()
    gws = app.state.setdefault("gateways", {})
    gws[res["serial"]] = {"eui64": res.get("eui64"), "k_appgw": res["k_appgw"]}
    app.save()
    app.say(f"Gateway {res['serial']} is now yours; the app and the gateway share a key.",
            serial=res["serial"], eui64=res.get("eui64"))  # fmt: skip
    return 0


async def cmd_list(app: App, args: SimpleNamespace) -> int:
    client = app.client()
    path = "gateways/list" if args.cmd == "gateways" else "devices/list"
    try:
        res = await client.call(path, {"token": app.token()})
    finally:
        await client.close()
    key = "gateways" if args.cmd == "gateways" else "devices"
    if app.as_json:
        print(json.dumps(res))
    else:
        for item in res.get(key, []):
            print("  ".join(f"{k}={v}" for k, v in item.items()))
        if not res.get(key):
            print(f"no {key}")
    return 0


class _SealedResource:
    """One of the app's LAN endpoints: opens sealed messages of its session, acknowledges them.

    ``/cbsb/v1/notify`` takes the gateway's notices (under ``K_note``); ``/cbsb/v1/report``
    takes the things' own reports, sent over IP through the border router once they are
    attached (under ``K_rep``; step 9), and only from the address the report names (the
    thing's Thread address: a sealed report replayed from elsewhere on the LAN is refused with
    4.03). The session ID is set once the cloud opened it: until then nothing opens. ``forged``
    counts what was refused."""

    def __init__(
        self,
        k_appgw: bytes,
        sid: bytes,
        queue: asyncio.Queue[dict[str, Any]],
        derive: Callable[[bytes, bytes], bytes] = notice.notify_key,
        kind: int = notice.KIND_NOTICE,
        via: str = "gateway",
    ) -> None:
        self.k_appgw = k_appgw
        self.sid = sid
        self.queue = queue
        self.derive = derive
        self.kind = kind
        self.via = via
        self.seen: set[str] = set()
        self.forged = 0

    def resource(self) -> Any:
        import aiocoap
        import aiocoap.resource as resource

        outer = self

        class Sealed(resource.Resource):  # type: ignore[misc]
            async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
                key = outer.derive(outer.k_appgw, outer.sid)
                try:
                    kind, body = notice.open_with(key, outer.sid, request.payload)
                except (ParseError, CryptoError):
                    outer.forged += 1
                    return aiocoap.Message(code=aiocoap.UNAUTHORIZED)
                if kind != outer.kind:
                    outer.forged += 1
                    return aiocoap.Message(code=aiocoap.BAD_REQUEST)
                if kind == notice.KIND_REPORT and not _came_from(request.remote, body):
                    outer.forged += 1
                    return aiocoap.Message(code=aiocoap.FORBIDDEN)
                nid = str(body.get("id", ""))
                if nid not in outer.seen and len(outer.seen) < MAX_SEEN:
                    outer.seen.add(nid)
                    outer.queue.put_nowait({**body, "_via": outer.via})
                ack = notice.seal_with(key, outer.sid, {"id": nid}, notice.KIND_ACK)
                return aiocoap.Message(code=aiocoap.CHANGED, payload=ack)

        return Sealed()


def _came_from(remote: Any, body: dict[str, Any]) -> bool:
    """Whether a report's datagram came from the address its sealed body names."""
    sockaddr = getattr(remote, "sockaddr", None)
    try:
        source = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])  # type: ignore[index]
        claimed = ipaddress.ip_address(str(body.get("address", "")))
    except (TypeError, IndexError, ValueError):
        return False
    return source == claimed


async def cmd_bootstrap(app: App, args: SimpleNamespace) -> int:
    import aiocoap
    import aiocoap.resource as resource

    serial = args.gateway or next(iter(app.state.get("gateways", {})), None)
    gw = app.state.get("gateways", {}).get(serial)
    if not serial or gw is None:
        raise GatewayError(
            "claim your gateway first", hint="python -m gateway.peers.app claim CODE"
        )
    k_appgw = bytes.fromhex(gw["k_appgw"])
    devices = [parse_thing_qr(q) for q in args.qr]
    if not devices and not args.discover:
        raise GatewayError("say which things to add (--qr CODE, from their labels) or --discover")
    expect = args.expect or len(devices) or 1
    host, _, port = args.listen.rpartition(":")
    lan_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client = app.client()
    server: Any = None
    bound: set[str] = set()
    failed: dict[str, str] = {}
    tokens: dict[str, str] = {}
    sid_hex = ""
    pending_lan: asyncio.Task[dict[str, Any]] | None = None
    pending_cloud: asyncio.Task[dict[str, Any]] | None = None
    try:
        # Step 1: listen on the LAN first, so no notification can be missed.
        site = resource.Site()
        notify = _SealedResource(k_appgw, b"\0" * 16, lan_queue)
        site.add_resource(list(notice.NOTIFY_PATH), notify.resource())
        reports = _SealedResource(k_appgw, b"\0" * 16, lan_queue, notice.report_key,
                                  notice.KIND_REPORT, "thing")  # fmt: skip
        site.add_resource(list(notice.REPORT_PATH), reports.resource())
        server = await aiocoap.Context.create_server_context(
            site, bind=(host.strip("[]"), int(port)), transports=["udp6"]
        )
        app.say(f"Listening for your gateway on the LAN ({args.listen}).", 1, event="listen")
        # Step 2: notify the cloud.
        body: dict[str, Any] = {
            "token": app.token(), "gateway": serial,
            "mode": "discover" if args.discover else "targeted",
            "devices": [{"dev_id": d.hex(), "claim_code": c} for d, c in devices],
            "window_s": args.window, "notify": args.notify or args.listen, "pfs": not args.no_pfs,
        }  # fmt: skip
        res = await client.call("sessions/open", body)
        sid_hex = res["sid"]
        notify.sid = reports.sid = bytes.fromhex(sid_hex)
        tokens = dict(res.get("bind_tokens", {}))
        what = f"{len(devices)} thing(s)" if devices else "any new thing (you confirm each)"
        app.say(f"Asked the cloud to bootstrap {what} through gateway {serial}; the window is "
                f"open for {res['window_s']} s.", 2, event="session", sid=sid_hex)  # fmt: skip
        deadline = time.monotonic() + (args.timeout or res["window_s"] + 60)
        after = 0
        seen_steps: set[tuple[int, str]] = set()
        bp_of: dict[str, str] = {}
        window_over = False
        lan_end = [float("inf")]  # when to stop waiting after the LAN said the window ended
        # Things report over IP (step 9 through the border router) when the app listens on an
        # address the Thread network can route to; once every thing is bound, their reports
        # get REPORT_WAIT_S more.
        expect_reports = notice.report_target(str(body["notify"])) is not None
        reported: set[str] = set()
        report_until = [float("inf")]

        def once(step: int, key: str, message: str, **fields: Any) -> None:
            if (step, key) not in seen_steps:
                seen_steps.add((step, key))
                app.say(message, step, **fields)

        async def bind(dev: str, bp: str, source: str) -> None:
            if dev in bound or dev in failed:
                return
            bp_of[dev] = bp
            once(9, dev, f"Thing {dev} received the network credentials (told by {source}).",
                 event="joined", dev_id=dev, source=source)  # fmt: skip
            tok = tokens.get(dev)
            if tok is None:
                return
            try:
                await client.call("sessions/bind", {"token": app.token(), "sid": sid_hex,
                                                    "dev_id": dev, "bind_token": tok, "bp": bp})  # fmt: skip
            except CloudApiError as exc:
                failed[dev] = exc.reason
                app.say(f"Could not add thing {dev} to your account: "
                        f"{API_WORDS.get(exc.reason, exc.message)}", 10, event="bind_failed",
                        dev_id=dev, reason=exc.reason)  # fmt: skip
                return
            bound.add(dev)
            app.say(f"Thing {dev} is now yours: the cloud bound it to your account.", 10,
                    event="bound", dev_id=dev)  # fmt: skip

        async def confirm(dev: str, model: str) -> None:
            accept = args.yes or dev in args.accept
            if not accept and not args.yes and sys.stdin.isatty() and not app.as_json:
                ans = await asyncio.to_thread(input, f"A new thing {dev} ({model}) wants to join "
                                              "your network. Add it? [y/N] ")  # fmt: skip
                accept = ans.strip().lower().startswith("y")
            r = await client.call("sessions/confirm", {"token": app.token(), "sid": sid_hex,
                                                       "dev_id": dev, "accept": accept})  # fmt: skip
            if accept:
                tokens[dev] = r["bind_token"]
                app.say(f"You confirmed thing {dev}; the cloud sends its key to the gateway.", 3,
                        event="confirmed", dev_id=dev)  # fmt: skip
            else:
                failed[dev] = "REJECTED_BY_USER"
                app.say(f"Thing {dev} was refused.", 3, event="refused", dev_id=dev)

        async def handle(ev: dict[str, Any], source: str) -> None:
            nonlocal window_over
            kind = ev.get("kind") or ev.get("event")
            dev = ev.get("dev_id")
            if kind == "delivered":
                once(3, "", "The cloud created the thing keys (PSK) and sent them to your gateway.",
                     event="delivered")  # fmt: skip
            elif kind == "window_open":
                once(4, "", f"Your gateway is broadcasting its RandomKey (channel "
                     f"{ev.get('channel')}). Now press the pairing button on your thing(s).",
                     event="window_open", channel=ev.get("channel"))  # fmt: skip
                once(5, "", "Waiting for your thing(s) to look for the gateway (steps 5-8).",
                     event="waiting")  # fmt: skip
            elif kind == "found" and isinstance(dev, str) and source == "the cloud":
                await confirm(dev, str(ev.get("model", "")))
            elif kind == "joined" and isinstance(dev, str) and isinstance(ev.get("bp"), str):
                await bind(dev, ev["bp"], source)
            elif kind == "report" and ev.get("status"):
                st, step = str(ev["status"]), ev.get("step")
                once(int(step or 0), f"{st}/{dev}",
                     f"{'Thing ' + str(dev) + ': ' if dev else ''}{describe(st, step)}",
                     event="report", status=st, dev_id=dev, source=source)  # fmt: skip
            elif kind in ("ended", "closed"):
                window_over = True
                if source == "the cloud":
                    give_up_unjoined()
                else:
                    # LAN notifications may overtake each other; the cloud's events are in
                    # order. Give the reports sent before the end a moment to arrive.
                    lan_end[0] = min(lan_end[0], time.monotonic() + LAN_END_GRACE_S)
                st = ev.get("status") or ev.get("reason") or ""
                once(0, "ended", f"The bootstrapping window closed ({st}).", event="ended",
                     status=st)  # fmt: skip
            elif kind == "evicted" and isinstance(dev, str):
                failed.setdefault(dev, "EVICTED")
            elif kind == "attached" and ev.get("_via") == "thing" and isinstance(dev, str):
                # Step 9 over IP: the thing itself, from its Thread address, through the
                # gateway's border router. A hint like the LAN notices: binding goes through
                # the cloud.
                once(9, f"ip/{dev}", f"Thing {dev} reports over the network: attached to your "
                     f"Thread network as a {ev.get('role')} (address {ev.get('address')}), "
                     "through your gateway's border router.", event="thing_report", dev_id=dev,
                     address=ev.get("address"), role=ev.get("role"), rloc16=ev.get("rloc16"),
                     source="the thing over IP")  # fmt: skip
                reported.add(dev)

        def give_up_unjoined() -> None:
            for d, _c in devices:
                if d.hex() not in bp_of and d.hex() not in bound:
                    # It can no longer join: the gateway stopped accepting things.
                    failed.setdefault(d.hex(), "NOT_JOINED")

        def done() -> bool:
            if devices:
                complete = all(d.hex() in bound or d.hex() in failed for d, _ in devices)
            else:
                complete = len(bound) >= expect
            if not complete or not expect_reports or bound <= reported:
                return complete
            if report_until[0] == float("inf"):
                report_until[0] = time.monotonic() + REPORT_WAIT_S
            return time.monotonic() >= report_until[0]

        while not done() and time.monotonic() < deadline:
            if time.monotonic() >= lan_end[0]:
                lan_end[0] = float("inf")
                give_up_unjoined()
                if not devices:
                    break
                continue
            if pending_lan is None:
                pending_lan = asyncio.ensure_future(lan_queue.get())
            if pending_cloud is None:
                pending_cloud = asyncio.ensure_future(client.call(
                    "sessions/events", {"token": app.token(), "sid": sid_hex, "after": after,
                                        "wait_s": 10}, timeout=20))  # fmt: skip
            finished, _ = await asyncio.wait({pending_lan, pending_cloud},
                                             timeout=max(0.0, min(deadline, lan_end[0],
                                                                  report_until[0])
                                                         - time.monotonic()),
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if pending_lan in finished:
                await handle(pending_lan.result(), "your gateway over the LAN")
                pending_lan = None
            if pending_cloud in finished:
                task, pending_cloud = pending_cloud, None
                try:
                    r = task.result()
                except CloudUnreachable as exc:
                    app.say(
                        f"Cannot reach the cloud ({exc.message}); retrying.", event="cloud_down"
                    )
                    await asyncio.sleep(1.0)
                    continue
                after = r.get("last", after)
                for ev in r.get("events", []):
                    await handle(ev, "the cloud")
                if r.get("state") == "closed" or (window_over and not devices):
                    break
    finally:
        # Cancel what is still pending without swallowing a cancellation of this task itself
        # (Ctrl-C): asyncio.wait returns when they are done and raises nothing of theirs.
        leftovers = {t for t in (pending_lan, pending_cloud) if t is not None and not t.done()}
        for t in leftovers:
            t.cancel()
        if leftovers:
            await asyncio.wait(leftovers)
        if sid_hex:
            # Best effort, and briefly: a user who pressed Ctrl-C while the cloud is unreachable
            # must not wait for the cloud's full request timeout.
            with contextlib.suppress(GatewayError):
                await client.call("sessions/close", {"token": app.token(), "sid": sid_hex},
                                  timeout=CLOSE_TIMEOUT_S)  # fmt: skip
        await client.close()
        if server is not None:
            await server.shutdown()
    if notify.forged or reports.forged:
        app.say(f"Refused {notify.forged + reports.forged} message(s) on the LAN that were not "
                "sealed for this session or did not come from where they said.", event="refused",
                notices=notify.forged, reports=reports.forged)  # fmt: skip
    for dev in sorted(bound - reported) if expect_reports else ():
        app.say(f"Thing {dev} did not report over the network (its result came through your "
                "gateway); it may not be attached yet.", 9, event="report_missing", dev_id=dev)  # fmt: skip
    missing = [d.hex() for d, _ in devices if d.hex() not in bound]
    ok = (not missing) if devices else len(bound) >= expect
    if ok:
        app.say(f"Done: {len(bound)} thing(s) added to your account.", event="done",
                bound=sorted(bound))  # fmt: skip
    else:
        app.say(f"Not everything worked: bound {sorted(bound)}, not bound "
                f"{sorted(missing) if devices else []}; see the messages above for the step that "
                f"failed.", event="failed", bound=sorted(bound), failed=failed)  # fmt: skip
    return 0 if ok else 1


# ----------------------------------------------------------------------------- parser


@click.group(
    invoke_without_command=True,
    help="The user's app for cloud-based bootstrapping: claim your gateway, add things to your "
    "network, and see each step.",
    epilog="Steps: " + "; ".join(f"{n} {t}" for n, t in STEPS.items()),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--state", type=click.Path(path_type=Path), default=DEFAULT_STATE,
              help="where the app keeps its login")  # fmt: skip
@click.option("--json", "json_", is_flag=True, help="one JSON line per message")
@click.pass_context
def app_cli(ctx: click.Context, state: Path, json_: bool) -> int:
    ctx.obj = {"state": state, "json": json_}
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
    return 0


def _command(name: str, help_: str) -> Callable[[Callable[..., Any]], click.Command]:
    return namespace_command(app_cli, name, help_, lambda args: _dispatch(args))


@_command("login", "log in to your cloud account")
@click.option("--user", required=True)
@click.option("--password-file")
@click.option("--cloud", help="cloud URL, e.g. coaps+tcp://cloud.example:5684")
@click.option("--ca", help="the cloud's CA certificate (PEM file)")
def _login_cmd() -> None: ...


@_command("claim", "claim your gateway with the code on its box")
@click.argument("code")
def _claim_cmd() -> None: ...


@_command("gateways", "list your gateways")
def _gateways_cmd() -> None: ...


@_command("devices", "list the things bound to your account")
def _devices_cmd() -> None: ...


@_command("bootstrap", "add things to your network")
@click.option("--gateway", help="gateway serial (default: your first gateway)")
@click.option("--qr", multiple=True, metavar="CODE",
              help="a thing's setup code (CBSB1:...), from its label; repeatable")  # fmt: skip
@click.option("--discover", is_flag=True, help="find new things; confirm each")
@click.option("--yes", is_flag=True, help="accept every thing found (discover)")
@click.option("--accept", multiple=True, metavar="DEV_ID")
@click.option("--expect", type=int, default=0, help="discover: stop after this many")
@click.option("--window", type=int, default=180, help="seconds the gateway accepts things")
@click.option("--listen", default=DEFAULT_LISTEN, help="LAN address for the gateway's notice")
@click.option("--notify", help="address the gateway sends to (default: --listen)")
@click.option("--timeout", type=float, default=0.0, help="give up after (default window+60)")
@click.option("--no-pfs", is_flag=True, help="allow joins without forward secrecy")
def _bootstrap_cmd() -> None: ...


def main(argv: list[str] | None = None) -> int:
    return invoke(app_cli, argv, "python -m gateway.peers.app")


def _dispatch(args: SimpleNamespace) -> int:
    try:
        app = App(args.state, args.json)
    except (OSError, ValueError) as exc:
        print(f"app: cannot read the app state: {exc}", file=sys.stderr)
        return 1
    if args.cmd == "login":
        try:
            args.ca_pem = Path(args.ca).read_text() if args.ca else None
            args.password = (
                Path(args.password_file).read_text().strip() if args.password_file else ""
            )
        except OSError as exc:
            print(f"app: {exc}", file=sys.stderr)
            return 2
        if not args.password:
            import getpass

            args.password = getpass.getpass("password: ")
    commands = {"login": cmd_login, "claim": cmd_claim, "gateways": cmd_list,
                "devices": cmd_list, "bootstrap": cmd_bootstrap}  # fmt: skip
    try:
        return asyncio.run(commands[args.cmd](app, args))
    except CloudApiError as exc:
        app.say(f"The cloud said no: {API_WORDS.get(exc.reason, exc.message)}", event="error",
                reason=exc.reason, detail=exc.message)  # fmt: skip
        return 1
    except CloudUnreachable as exc:
        app.say(f"Cannot reach the cloud: {exc.message}. Check your Internet connection.",
                event="error", reason="CLOUD_UNREACHABLE")  # fmt: skip
        return 8
    except BadClaimCode as exc:
        app.say(f"{exc.message}. {exc.hint}", event="error", reason="BAD_CLAIM_CODE")
        return 2
    except GatewayError as exc:
        app.say(f"{exc.message}. {exc.hint}".strip(), event="error", reason=exc.code)
        return 1
    except KeyboardInterrupt:
        return 130
