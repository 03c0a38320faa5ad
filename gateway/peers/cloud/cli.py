"""python -m gateway.peers.cloud {serve,enrol-device,enrol-gateway,add-user,show,ca} ..."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import secrets
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from gateway.cli.common import invoke, namespace_command

DEFAULT_STATE = os.environ.get("CBSB_CLOUD_STATE", "cbsb-cloud")
DEFAULT_LISTEN = "127.0.0.1:5684"


def _state_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--state", type=click.Path(path_type=Path), default=Path(DEFAULT_STATE),
                        help="state directory")(f)  # fmt: skip


def _json_flag(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "json_", is_flag=True)(f)


@click.group(
    invoke_without_command=True,
    help="The reference cloud of cloud-based secure bootstrapping (CBSB-1): it keeps the device "
    "registry and user accounts, registers gateways, runs bootstrapping sessions and binds things "
    "to their owners. CoAP over TLS 1.3 (coaps+tcp).",
    epilog="State (SQLite database, CA, server certificate, master key) lives in --state "
    "(default $CBSB_CLOUD_STATE or ./cbsb-cloud).",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.pass_context
def cloud(ctx: click.Context) -> int:
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
    return 0


def _command(name: str, help_: str) -> Callable[[Callable[..., Any]], click.Command]:
    def wrap(f: Callable[..., Any]) -> click.Command:
        return namespace_command(cloud, name, help_, lambda args: _dispatch(args))(_state_option(f))

    return wrap


@_command("serve", "run the cloud server")
@click.option("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT")
@click.option("--hostname", multiple=True,
              help="name or address in the server certificate (repeatable)")  # fmt: skip
def _serve_cmd() -> None: ...


@_command("enrol-device", "factory: create a device record (dev_id, K_dev, claim code)")
@click.option("--dev-id", help="16 hex digits (default: random, locally administered)")
@click.option("--model", default="reference-thing")
@click.option("--k-dev-file", type=click.Path(path_type=Path), required=True,
              help="write the device key here (hex, mode 0600) for the thing's firmware")  # fmt: skip
@_json_flag
def _enrol_device_cmd() -> None: ...


@_command("enrol-gateway", "factory: create a gateway record and its factory file")
@click.option("--serial", help="gateway serial number (default: random)")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="the factory file to install on the gateway (mode 0600)")  # fmt: skip
@click.option("--cloud-url", default=f"coaps+tcp://{DEFAULT_LISTEN}")
@_json_flag
def _enrol_gateway_cmd() -> None: ...


@_command("add-user", "create a user account for the app")
@click.option("--user", required=True)
@click.option("--password-file", type=click.Path(path_type=Path),
              help="read the password from this file")  # fmt: skip
def _add_user_cmd() -> None: ...


@_command("show", "print the registry, sessions, bindings and reports (no secrets) as JSON")
def _show_cmd() -> None: ...


@_command("ca", "print the cloud's CA certificate (PEM), which apps and gateways trust")
def _ca_cmd() -> None: ...


def main(argv: list[str] | None = None) -> int:
    return invoke(cloud, argv, "python -m gateway.peers.cloud")


def _dispatch(args: SimpleNamespace) -> int:
    from gateway.peers.cloud.store import CloudStore

    try:
        if args.cmd == "serve":
            return _serve(args)
        store = CloudStore(args.state)
        try:
            if args.cmd == "enrol-device":
                return _enrol_device(store, args)
            if args.cmd == "enrol-gateway":
                return _enrol_gateway(store, args)
            if args.cmd == "add-user":
                return _add_user(store, args)
            if args.cmd == "show":
                print(json.dumps(store.summary(), indent=1))
                return 0
            if args.cmd == "ca":
                sys.stdout.write(store.ca_pem())
                return 0
        finally:
            store.close()
    except sqlite3.IntegrityError as exc:
        print(f"error: already enrolled ({exc})", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


def _enrol_device(store: object, args: SimpleNamespace) -> int:
    from gateway.peers.cloud.store import CloudStore
    from gateway.runtime.state import atomic_write
    from gateway.wire.cloudapi import claim_digest, format_claim_code, new_claim_code, thing_qr

    assert isinstance(store, CloudStore)
    if args.dev_id:
        dev_id = bytes.fromhex(args.dev_id)
        if len(dev_id) != 8:
            raise ValueError("--dev-id must be 16 hex digits")
    else:
        raw = bytearray(secrets.token_bytes(8))
        raw[0] = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
        dev_id = bytes(raw)
    k_dev = secrets.token_bytes(32)
    code = new_claim_code()
    store.add_device(dev_id, k_dev, claim_digest(code), args.model)
    atomic_write(args.k_dev_file, k_dev.hex().encode() + b"\n", mode=0o600)
    doc = {"dev_id": dev_id.hex(), "claim_code": format_claim_code(code),
           "qr": thing_qr(dev_id, code), "model": args.model}  # fmt: skip
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"device {doc['dev_id']} enrolled; label: claim code {doc['claim_code']}, "
              f"QR {doc['qr']}")  # fmt: skip
    return 0


def _enrol_gateway(store: object, args: SimpleNamespace) -> int:
    from gateway.peers.cloud.store import CloudStore
    from gateway.runtime.state import atomic_write
    from gateway.wire.cloudapi import (
        FACTORY_FORMAT,
        claim_digest,
        format_claim_code,
        new_claim_code,
    )

    assert isinstance(store, CloudStore)
    serial = args.serial or f"GW-{secrets.token_hex(4).upper()}"
    secret = secrets.token_bytes(32)
    code = new_claim_code()
    store.add_gateway(serial, secret, claim_digest(code))
    factory = {
        "format": FACTORY_FORMAT, "version": 1, "serial": serial,
        "factory_secret": secret.hex(), "claim_code": format_claim_code(code),
        "cloud_url": args.cloud_url, "cloud_ca": store.ca_pem(),
    }  # fmt: skip
    atomic_write(args.out, json.dumps(factory, indent=1).encode() + b"\n", mode=0o600)
    doc = {"serial": serial, "claim_code": format_claim_code(code), "factory_file": str(args.out)}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"gateway {serial} enrolled; claim code on the box: {doc['claim_code']}")
    return 0


def _add_user(store: object, args: SimpleNamespace) -> int:
    from gateway.peers.cloud.store import CloudStore

    assert isinstance(store, CloudStore)
    if args.password_file is not None:
        password = args.password_file.read_text().strip()
    else:
        password = getpass.getpass(f"password for {args.user}: ")
    if len(password) < 8:
        raise ValueError("the password needs at least 8 characters")
    store.add_user(args.user, password)
    print(f"user {args.user} created")
    return 0


def _serve(args: SimpleNamespace) -> int:
    from gateway.peers.cloud.server import CloudServer
    from gateway.peers.cloud.store import CloudStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s cloud %(levelname)s %(message)s")
    for name in ("coap", "coap-server"):
        logging.getLogger(name).setLevel(logging.WARNING)
    host, _, port_s = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    port = int(port_s)
    names = ["localhost", "127.0.0.1", "::1", *args.hostname]
    if host not in names and host not in ("0.0.0.0", "::"):  # noqa: S104
        names.append(host)

    async def run() -> None:
        store = CloudStore(args.state, names)
        if args.hostname:
            store.reissue_server_cert(names)
        server = CloudServer(store, host, port)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"cloud listening on coaps+tcp://{args.listen} (CA {store.files.ca_cert})", flush=True
        )
        try:
            await stop.wait()
        finally:
            await server.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0
