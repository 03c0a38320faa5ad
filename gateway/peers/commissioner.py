"""The reference external Thread commissioner (a technician's laptop, a phone app's stand-in).

    python -m gateway.peers.commissioner [--border-agent HOST:PORT]
        (--pskc-file FILE | --passphrase-file FILE) --joiner EUI64 [--joiner '*' ...]
        --pskd-file FILE [--count N] [--duration S]

Secrets come from files, or standard input for ``-``, never from the command line: the PSKc (32
hex digits) or the commissioning passphrase on the first line of their file, the joiners' PSKds
as lines ``PSKD`` (for every ``--joiner``) or ``EUI64=PSKD`` / ``*=PSKD`` (for that joiner, which
is then admitted even without ``--joiner``).

It finds the border agent by DNS-SD (``_meshcop._udp``, through zeroconf) unless
``--border-agent`` names it, opens DTLS 1.2 with EC-JPAKE and the PSKc (given in hex, or derived
from the network's passphrase, name and extended PAN ID -- the last two are read from the DNS-SD
record when not given), petitions, keeps the session alive, sets the steering data (an
MGMT_COMMISSIONER_SET tunnelled through the UDP proxy), admits joiners by EUI-64 or ``*`` with a
PSKd, runs the joiner-side DTLS servers, answers JOIN_FIN and hands the KEK to the joiner router.
Each step is printed in words.

As a library (the tests use it)::

    peer = CommissionerPeer(("127.0.0.1", 49191), pskc)
    await peer.start()                  # raises AnotherCommissionerActive, ...
    await peer.add_joiner("J01NME", eui64=bytes.fromhex("18b4300000000002"))
    event = await peer.wait_joiner(eui64, timeout=30)   # raises WrongPskd, JoinerVanished, ...
    await peer.close()

Exit codes: 0 every expected joiner admitted; 1 other failure; 2 usage; 10 petition rejected
(another commissioner is active); 11 session lost (keep-alive); 12 a joiner failed (wrong
PSKd, unknown, rate-limited, vanished); 13 no border agent found or it did not answer; 14 the
border agent refused the PSKc.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import click

from gateway.cli.common import invoke, option_value
from gateway.crypto.dtls import DtlsAuthenticationError, DtlsConfig, DtlsTimeoutError
from gateway.crypto.thread_keys import pskc as derive_pskc
from gateway.errors import GatewayError, InvalidArgument
from gateway.runtime.secret_input import read_secret, read_secret_bytes
from gateway.thread.commissioning.commissioner import (
    Commissioner,
    CommissionerState,
    JoinerEvent,
    RateLimit,
    StateChanged,
    SteeringUpdated,
)
from gateway.thread.commissioning.ext_commissioner import (
    BorderAgentLinkState,
    ExternalCommissioner,
    LinkEvent,
)
from gateway.thread.errors import (
    AnotherCommissionerActive,
    CommissioningError,
    KeepAliveTimeout,
    PetitionRejected,
)

__all__ = [
    "BorderAgentUnreachable",
    "CommissionerPeer",
    "WrongPskc",
    "main",
    "parse_joiner",
]


class BorderAgentUnreachable(CommissioningError):
    code = "THR020"
    default_hint = (
        "No border agent answered. Is the gateway's border router running, and is the address "
        "(or the DNS-SD interface) right?"
    )


class WrongPskc(CommissioningError):
    code = "THR021"
    default_hint = (
        "The border agent refused our PSKc: check the network passphrase, network name and "
        "extended PAN ID ('gwctl dataset show' on the gateway)."
    )


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, owner: CommissionerPeer) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._received(data)


@dataclass
class _Waiter:
    key: str
    future: asyncio.Future[JoinerEvent]


class CommissionerPeer:
    """An external commissioner talking to one border agent over UDP/DTLS."""

    def __init__(
        self,
        border_agent: tuple[str, int],
        pskc: bytes,
        *,
        commissioner_id: str = "Gateway reference commissioner",
        keep_alive_interval: float = 25.0,
        joiner_session_timeout: float = 30.0,
        rate_limit: RateLimit | None = None,
        dtls_config: DtlsConfig | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        kw: dict[str, Any] = {}
        if rate_limit is not None:
            kw["rate_limit"] = rate_limit
        self.commissioner = Commissioner(
            commissioner_id,
            keep_alive_interval=keep_alive_interval,
            joiner_session_timeout=joiner_session_timeout,
            **kw,
        )
        self.ext = ExternalCommissioner(self.commissioner, pskc, dtls_config=dtls_config)
        self.border_agent = border_agent
        self.say = say or (lambda _t: None)
        self.events: list[object] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._state_change = asyncio.Event()
        self._waiters: list[_Waiter] = []
        self._unclaimed: list[JoinerEvent] = []
        self.error: CommissioningError | None = None
        # Tests and diagnostics: send nothing (keep-alives included) while still listening, as a
        # commissioner whose uplink went silent.
        self.paused = False

    def __repr__(self) -> str:
        return f"CommissionerPeer({self.border_agent}, {self.commissioner.state.value})"

    @property
    def state(self) -> CommissionerState:
        return self.commissioner.state

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, timeout: float = 15.0) -> None:
        """Connect, petition, and return once active (typed errors otherwise)."""
        loop = asyncio.get_running_loop()
        host, port = self.border_agent
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Proto(self), remote_addr=(host, port), family=family
        )
        self.say(f"opening DTLS (EC-JPAKE with the PSKc) to the border agent at {host}:{port}")
        self.ext.connect(self._now())
        self._flush()
        self._task = asyncio.ensure_future(self._run())
        try:
            async with asyncio.timeout(timeout):
                while self.state is not CommissionerState.ACTIVE:
                    if self.error is not None:
                        raise self.error
                    self._state_change.clear()
                    await self._state_change.wait()
        except TimeoutError:
            await self.close()
            raise BorderAgentUnreachable(
                f"the border agent at {host}:{port} did not accept us within {timeout:.0f} s"
            ) from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self.ext.close(self._now())
            self._flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._transport is not None:
            self._transport.close()
        for w in self._waiters:
            if not w.future.done():
                w.future.cancel()

    # -- joiners --------------------------------------------------------------------------------

    async def add_joiner(
        self, pskd: str, *, eui64: bytes | None = None, timeout: float = 120.0
    ) -> None:
        if self.state is not CommissionerState.ACTIVE:
            raise self.error or KeepAliveTimeout("the commissioner is not active")
        entry = self.commissioner.add_joiner(pskd, eui64=eui64, timeout=timeout, now=self._now())
        self.say(f"admitting joiner {entry.key} for {timeout:.0f} s")
        self._flush()

    async def remove_joiner(self, *, eui64: bytes | None = None) -> bool:
        removed = self.commissioner.remove_joiner(eui64=eui64, now=self._now())
        self._flush()
        return removed

    async def wait_joiner(self, eui64: bytes | None = None, timeout: float = 60.0) -> JoinerEvent:
        """The next ``finalize`` event for that joiner (``None``: any joiner); a joiner failure
        for it raises its typed error (:class:`~gateway.thread.errors.WrongPskd`, ...)."""
        key = "*" if eui64 is None else f"eui64 {eui64.hex()}"
        for ev in self._unclaimed:  # a result that came before anyone waited for it
            if key in ("*", ev.entry):
                self._unclaimed.remove(ev)
                if ev.error is not None:
                    raise ev.error
                return ev
        fut: asyncio.Future[JoinerEvent] = asyncio.get_running_loop().create_future()
        w = _Waiter(key, fut)
        self._waiters.append(w)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._waiters.remove(w)

    # -- I/O ------------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        self.ext.datagram_received(data, self._now())
        self._flush()

    def _flush(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            for d in self.ext.datagrams_to_send():
                if not self.paused:
                    self._transport.sendto(d)
        for ev in self.ext.events():
            self.events.append(ev)
            self._on_event(ev)
        self._wake.set()

    def _on_event(self, ev: object) -> None:
        if isinstance(ev, LinkEvent):
            if ev.state is BorderAgentLinkState.CONNECTED:
                self.say("DTLS session with the border agent established; petitioning")
            elif ev.state is BorderAgentLinkState.FAILED and ev.error is not None:
                if isinstance(ev.error, DtlsAuthenticationError):
                    self.error = WrongPskc("the border agent refused our PSKc")
                elif isinstance(ev.error, DtlsTimeoutError):
                    self.error = BorderAgentUnreachable("the border agent stopped answering")
                else:
                    self.error = BorderAgentUnreachable(f"DTLS failed: {ev.error.message}")
                self.say(f"border agent session failed: {self.error.message}")
            elif ev.state is BorderAgentLinkState.CLOSED:
                self.say("the border agent session is closed")
            self._state_change.set()
        elif isinstance(ev, StateChanged):
            if ev.error is not None:
                self.error = ev.error
                self.say(f"commissioner {ev.state.value}: {ev.error.message}")
            elif ev.state is CommissionerState.ACTIVE:
                self.say(f"petition accepted: active commissioner, session ID {ev.session_id}")
            elif ev.state is CommissionerState.PETITIONING:
                self.say("petitioning the leader (COMM_PET with our Commissioner ID)")
            else:
                self.say("resigned (COMM_KA with State Reject)")
            self._state_change.set()
        elif isinstance(ev, SteeringUpdated):
            self.say(
                f"steering data {ev.steering_data.hex()} "
                + ("set in the network" if ev.accepted else "NOT accepted by the leader")
            )
        elif isinstance(ev, JoinerEvent):
            words = {
                "start": "joiner {id}: DTLS handshake started ({entry})",
                "connect": "joiner {id}: DTLS connected (PSKd verified)",
                "finalize": "joiner {id}: JOIN_FIN answered with Accept, KEK sent to the joiner "
                "router ({detail})",
                "end": "joiner {id}: session closed",
                "removed": "joiner entry {entry} removed",
                "failed": "joiner {id}: FAILED: {error}",
            }.get(ev.kind, "joiner {id}: {kind}")
            self.say(
                words.format(
                    id=ev.joiner_id.hex(),
                    entry=ev.entry,
                    detail=ev.detail,
                    kind=ev.kind,
                    error=ev.error.message if ev.error else "",
                )
            )
            if ev.kind in ("finalize", "failed"):
                claimed = False
                for w in self._waiters:
                    if w.future.done() or (w.key != "*" and w.key != ev.entry):
                        continue
                    claimed = True
                    if ev.error is not None:
                        w.future.set_exception(ev.error)
                    else:
                        w.future.set_result(ev)
                if not claimed:
                    self._unclaimed.append(ev)
                    del self._unclaimed[:-64]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = self.ext.next_timeout()
            delay = None if t is None else max(0.0, t - loop.time())
            self._wake.clear()
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            self.ext.poll(loop.time())
            self._flush()
            self._wake.clear()


# -- command line ---------------------------------------------------------------------------------


def parse_joiner(text: str) -> tuple[bytes | None, str]:
    """``EUI64=PSKD`` or ``*=PSKD``."""
    who, sep, pskd = text.partition("=")
    if not sep or not pskd:
        raise ValueError(f"{text!r}: use EUI64=PSKD or '*=PSKD'")
    if who.strip() == "*":
        return None, pskd
    try:
        eui = bytes.fromhex(who.replace(":", "").replace("-", ""))
    except ValueError:
        eui = b""
    if len(eui) != 8:
        raise ValueError(f"{who!r} is not an EUI-64 (16 hex digits) or '*'")
    return eui, pskd


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        return host, int(port)
    except ValueError:
        raise ValueError(f"{text!r}: use HOST:PORT with a numeric address") from None


async def _discover(args: SimpleNamespace, say: Callable[[str], None]) -> tuple[str, int, Any]:
    from gateway.runtime.mdns import browse_border_agents

    say(f"looking for border agents (_meshcop._udp) on {args.uplink} for {args.browse:.0f} s")
    found = await browse_border_agents(args.browse, args.uplink)
    if args.network_name:
        found = [r for r in found if r.network_name == args.network_name]
    if args.xpanid:
        found = [r for r in found if r.ext_pan_id == bytes.fromhex(args.xpanid)]
    if not found:
        raise BorderAgentUnreachable("no border agent found by DNS-SD")
    rec = found[0]
    for r in found:
        say(f"found '{r.instance}' at {', '.join(r.addresses)} port {r.port}: network "
            f"'{r.network_name}', xpanid {r.ext_pan_id.hex() if r.ext_pan_id else '?'}")  # fmt: skip
    v4 = [a for a in rec.addresses if ":" not in a]
    host = v4[0] if v4 else rec.addresses[0]
    return host, rec.port, rec


async def _amain(args: SimpleNamespace, joiners: list[tuple[bytes | None, str]]) -> int:
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.2f}s] {text}", flush=True)

    record = None
    if args.border_agent is not None:
        host, port = args.border_agent
    else:
        host, port, record = await _discover(args, say)
    if args.pskc is not None:
        pskc = bytes.fromhex(args.pskc)
    else:
        name = args.network_name or (record.network_name if record else None)
        xp_hex = args.xpanid or (record.ext_pan_id.hex() if record and record.ext_pan_id else None)
        if not name or not xp_hex:
            raise InvalidArgument(
                "--passphrase-file needs the network name and extended PAN ID (--network-name, "
                "--xpanid, or a DNS-SD record that carries them)"
            )
        pskc = derive_pskc(args.passphrase, name, bytes.fromhex(xp_hex))
        say(f"derived the PSKc from the passphrase, network '{name}' and xpanid {xp_hex}")
    peer = CommissionerPeer(
        (host, port),
        pskc,
        commissioner_id=args.id,
        keep_alive_interval=args.keep_alive,
        joiner_session_timeout=args.joiner_session_timeout,
        say=say,
    )
    await peer.start(timeout=args.connect_timeout)
    try:
        for eui, pskd in joiners:
            await peer.add_joiner(pskd, eui64=eui, timeout=args.joiner_timeout)
        wanted = args.count if args.count is not None else len(joiners)
        admitted = 0
        failed = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + args.duration
        while admitted < wanted and loop.time() < end:
            try:
                ev = await peer.wait_joiner(None, timeout=max(0.1, end - loop.time()))
                admitted += 1
                say(f"admitted {admitted}/{wanted}: joiner {ev.joiner_id.hex()}")
            except TimeoutError:
                break
            except KeepAliveTimeout:
                raise
            except CommissioningError:
                failed += 1
                if args.stop_on_failure:
                    raise
        if admitted < wanted:
            say(f"{admitted}/{wanted} joiner(s) admitted before the end")
            return 12 if failed else 1
        return 0
    finally:
        await peer.close()


def _joiners(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    out: list[bytes | None] = []
    for v in value:
        if "=" in v:
            raise click.UsageError(
                "--joiner takes the EUI-64 only: the PSKd is no longer taken on the command line "
                "(other users can read it there); put it in --pskd-file FILE (or - for standard "
                "input), as PSKD or EUI64=PSKD lines"
            )
        try:
            out.append(parse_joiner(f"{v}=x")[0])
        except ValueError as exc:
            raise click.BadParameter(str(exc).replace("'x'", "")) from None
    return out


def joiners_with_pskds(named: list[bytes | None], text: str) -> list[tuple[bytes | None, str]]:
    """The joiners to admit: each ``--joiner`` with the file's plain ``PSKD`` line, and each
    ``EUI64=PSKD`` line of the file (which overrides the plain line for that joiner)."""
    default: str | None = None
    specific: dict[bytes | None, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            eui, pskd = parse_joiner(line)
            specific[eui] = pskd
        elif default is None:
            default = line
        else:
            raise ValueError("--pskd-file has two plain PSKd lines; use EUI64=PSKD lines")
    out: list[tuple[bytes | None, str]] = []
    for eui in named:
        code = specific.pop(eui, None) or default
        if code is None:
            who = "*" if eui is None else eui.hex()
            raise ValueError(f"--pskd-file has no PSKd for joiner {who}")
        out.append((eui, code))
    return out + list(specific.items())


@click.command(
    help="An external Thread commissioner: petitions a border agent and admits joiners with "
    "their joining codes (PSKd).",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--border-agent", callback=option_value(_host_port), metavar="HOST:PORT",
              help="the border agent (default: find it by DNS-SD)")  # fmt: skip
@click.option("--pskc", hidden=True)  # refused: secrets never on the command line
@click.option("--passphrase", hidden=True)
@click.option("--pskc-file", metavar="FILE",
              help="the commissioning credential (32 hex digits) from FILE ('-': stdin)")  # fmt: skip
@click.option("--passphrase-file", metavar="FILE",
              help="the network's commissioning passphrase from FILE ('-': stdin)")  # fmt: skip
@click.option("--network-name", help="for --passphrase-file, and to choose a border agent")
@click.option("--xpanid", help="extended PAN ID (16 hex digits), as --network-name")
@click.option("--joiner", multiple=True, callback=_joiners, metavar="EUI64",
              help="admit a joiner ('*': any joiner); its PSKd comes from --pskd-file")  # fmt: skip
@click.option("--pskd-file", metavar="FILE",
              help="the joiners' PSKds ('-': stdin): a line PSKD for every --joiner, or lines "
              "EUI64=PSKD")  # fmt: skip
@click.option("--count", type=int, help="joins to wait for (default: one per --joiner)")
@click.option("--duration", type=float, default=120.0, help="stop after this many seconds")
@click.option("--joiner-timeout", type=float, default=120.0,
              help="how long joiner entries stay (s)")  # fmt: skip
@click.option("--joiner-session-timeout", type=float, default=30.0,
              help="a joiner handshake must finish within this (s)")  # fmt: skip
@click.option("--keep-alive", type=float, default=25.0, help="COMM_KA interval (s)")
@click.option("--id", default="Gateway reference commissioner", help="Commissioner ID")
@click.option("--uplink", default="auto", help="interface for DNS-SD (auto, lo, eth0...)")
@click.option("--browse", type=float, default=3.0, help="DNS-SD browse time (s)")
@click.option("--connect-timeout", type=float, default=20.0)
@click.option("--stop-on-failure", is_flag=True,
              help="end at the first failed joiner (its error decides the exit code)")  # fmt: skip
def command(**opts: Any) -> int:
    args = SimpleNamespace(**opts)
    for old in ("pskc", "passphrase"):
        if getattr(args, old) is not None:
            raise click.UsageError(
                f"--{old} is no longer taken on the command line (other users can read it "
                f"there): use --{old}-file FILE, or --{old}-file - for standard input"
            )
    if (args.pskc_file is None) == (args.passphrase_file is None):
        raise click.UsageError("give one of --pskc-file and --passphrase-file")
    if args.pskc_file is not None and args.pskc_file == args.pskd_file == "-":
        raise click.UsageError("only one secret can come from standard input")
    try:
        if args.pskc_file is not None:
            args.pskc = read_secret(args.pskc_file, what="the PSKc", option="--pskc-file")
        else:
            args.passphrase = read_secret(args.passphrase_file, what="the passphrase",
                                          option="--passphrase-file")  # fmt: skip
        pskds = ""
        if args.pskd_file is not None:
            pskds = read_secret_bytes(args.pskd_file, option="--pskd-file").decode()
        elif args.joiner:
            raise click.UsageError("--joiner needs --pskd-file (the joiners' PSKds)")
        args.joiner = joiners_with_pskds(list(args.joiner), pskds)
    except (GatewayError, UnicodeDecodeError, ValueError) as exc:
        raise click.UsageError(getattr(exc, "message", str(exc))) from None
    if args.pskc is not None:
        try:
            if len(bytes.fromhex(args.pskc)) != 16:
                raise ValueError
        except ValueError:
            raise click.BadParameter("must be 32 hex digits", param_hint="--pskc-file") from None
    if args.xpanid is not None:
        try:
            if len(bytes.fromhex(args.xpanid)) != 8:
                raise ValueError
        except ValueError:
            raise click.BadParameter("must be 16 hex digits", param_hint="--xpanid") from None
    return _run(args)


def main(argv: list[str] | None = None) -> int:
    return invoke(command, argv, "python -m gateway.peers.commissioner")


def _run(args: SimpleNamespace) -> int:
    try:
        return asyncio.run(_amain(args, args.joiner))
    except KeyboardInterrupt:
        return 1
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        if isinstance(exc, AnotherCommissionerActive | PetitionRejected):
            return 10
        if isinstance(exc, KeepAliveTimeout):
            return 11
        if isinstance(exc, WrongPskc):
            return 14
        if isinstance(exc, BorderAgentUnreachable):
            return 13
        if isinstance(exc, CommissioningError):
            return 12
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
