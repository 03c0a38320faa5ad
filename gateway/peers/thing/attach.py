"""A thing that holds Thread credentials attaches to the network as an MTD child.

:func:`attach` drives :class:`gateway.thread.network.child.ChildCore` (sans-IO) on a radio the
thing owns (opened with :func:`drivers.radio.open_radio`): the core secures its own frames, so
the radio only moves PSDUs. What it keeps in its state file (``--state FILE``, JSON, mode 0600,
written atomically off the event loop) lets it reboot into its network without joining again:

* the Active Dataset (OpenThread's hex form) and the key sequence the joiner received;
* the attachment (:class:`~gateway.thread.network.snapshot.ChildNodeSnapshot`: parent, RLOC16,
  mode, timeout, ML-EID IID);
* its MLE and MAC frame counter *bounds*, reserved ahead: every counter on the air is below
  them and a restart resumes at them, so no counter is ever reused with one key after a crash.

A sleepy child's receiver is modelled by dropping what arrives while the core says the
receiver is off (``ChildCore.rx_on``); the emulated chip itself stays in receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from drivers.radio import Radio
from gateway.errors import GatewayError, ParseError, StateError
from gateway.runtime.state import JsonState
from gateway.thread.network.child import ChildConfig, ChildCore
from gateway.thread.network.events import PingReply, RoleChanged, SnapshotChanged, UdpReceived
from gateway.thread.network.netdata import parse_network_data, srp_unicast_servers
from gateway.thread.network.snapshot import ChildNodeSnapshot
from gateway.thread.srp.client import SrpRegistration
from gateway.wire.dataset import ActiveDataset
from gateway.wire.mac802154 import ExtAddress

if TYPE_CHECKING:
    from gateway.peers.thing.report import ResultReport

__all__ = [
    "COUNTER_RESERVE",
    "Activity",
    "ChildState",
    "ChildStateStore",
    "Exercise",
    "SrpClient",
    "attach",
]

COUNTER_RESERVE: Final = 1000
LIMIT: Final = 0xFFFFFFFF


@dataclass
class ChildState:
    dataset: ActiveDataset
    key_sequence: int
    snapshot: ChildNodeSnapshot | None = None
    mle_bound: int = 0
    mac_bound: int = 0
    srp_key: bytes | None = None  # the SRP host key (P-256 private scalar): owns the host name

    def __repr__(self) -> str:  # the dataset holds the network key
        return f"ChildState(key_sequence={self.key_sequence}, attached={self.snapshot is not None})"


class ChildStateStore:
    """The thing's Thread state file (``gateway-thing-thread``, version 1)."""

    def __init__(self, path: Path) -> None:
        self._state = JsonState(path, "gateway-thing-thread", 1)
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def load(self) -> ChildState | None:
        body = self._state.load()
        if body is None:
            return None
        try:
            ds = ActiveDataset.from_hex(str(body["active_dataset"]))
            seq, mle, mac = (int(body[k]) for k in ("key_sequence", "mle_bound", "mac_bound"))
            snap = body.get("child")
            srp_key = body.get("srp_key")
            return ChildState(
                ds,
                seq,
                ChildNodeSnapshot.from_dict(snap) if snap is not None else None,
                mle,
                mac,
                bytes.fromhex(srp_key) if srp_key is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{self.path} is malformed ({type(exc).__name__})") from None

    async def save(self, st: ChildState) -> None:
        body: dict[str, Any] = {
            "active_dataset": st.dataset.to_hex(),
            "key_sequence": st.key_sequence,
            "child": st.snapshot.to_dict() if st.snapshot is not None else None,
            "mle_bound": st.mle_bound,
            "mac_bound": st.mac_bound,
        }
        if st.srp_key is not None:
            body["srp_key"] = st.srp_key.hex()
        async with self._lock:
            await asyncio.to_thread(self._state.save, body)


class Activity(Protocol):
    """What a thing does on the network once attached (:class:`Exercise`, a CBSB thing's
    :class:`~gateway.peers.thing.report.ResultReport`): events and the clock in, datagrams out
    through the child core, results out of :meth:`poll` as ``(kind, fields)``."""

    def event(self, ev: object, child: ChildCore, now: float) -> None: ...

    def poll(self, child: ChildCore, now: float) -> list[tuple[str, dict[str, Any]]]: ...

    def next_timeout(self, child: ChildCore) -> float | None: ...


PROBE_INTERVAL: Final = 0.2  # between two echo requests of a series
PROBE_TIMEOUT: Final = 5.0  # an answer later than this after the last one counts as lost
PROBE_SETTLE: Final = 1.0  # a series starts this long after its source address appeared
UDP_WAIT: Final = 2.0  # UDP is stop-and-wait: the next datagram after the echo or this long


@dataclass
class _Series:
    kind: str  # "ping" | "udp"
    dst: ipaddress.IPv6Address
    port: int
    count: int
    size: int
    sent: int = 0
    next_at: float = 0.0
    last_sent: float = 0.0
    pending: dict[int, float] = field(default_factory=dict)
    rtts: list[float] = field(default_factory=list)
    done: bool = False
    ready_at: float | None = None  # when the source address was there

    def report(self) -> dict[str, Any]:
        ms = [r * 1000 for r in self.rtts]
        return {
            "dst": str(self.dst), "port": self.port or None, "size": self.size, "sent": self.sent,
            "received": len(self.rtts), "lost": sorted(self.pending)[:20],
            "rtt_ms": None if not ms else {"min": round(min(ms), 1),
                                          "avg": round(sum(ms) / len(ms), 1),
                                          "max": round(max(ms), 1)},
        }  # fmt: skip


class Exercise:
    """What a reference thing does on the network once attached, for tests and diagnostics: a
    series of pings (``--ping``), a series of UDP datagrams that an echo returns
    (``--udp-send``), and a UDP echo of its own (``--udp-echo``). A series starts once the thing
    has a source for the destination (an OMR address for one off the mesh), after the one
    before it, and is reported when every answer came or the last one is
    :data:`PROBE_TIMEOUT` late. Pings go every :data:`PROBE_INTERVAL`; UDP is stop-and-wait."""

    UDP_SRC_PORT: Final = 49200

    def __init__(
        self,
        *,
        ping: tuple[ipaddress.IPv6Address, int, int] | None = None,
        udp_send: tuple[ipaddress.IPv6Address, int, int, int] | None = None,
        echo_port: int | None = None,
    ) -> None:
        self.series: list[_Series] = []
        if ping is not None:
            self.series.append(_Series("ping", ping[0], 0, ping[1], ping[2]))
        if udp_send is not None:
            self.series.append(_Series("udp", udp_send[0], udp_send[1], udp_send[2], udp_send[3]))
        self.echo_port = echo_port
        self.echoed = 0
        self._ident = secrets.randbits(16)

    def _source(self, child: ChildCore, dst: ipaddress.IPv6Address) -> ipaddress.IPv6Address | None:
        if dst.is_link_local or child.addresses.is_mesh_local(dst):
            return child.link_local if dst.is_link_local else child.ml_eid
        return child.slaac[0] if child.slaac else None

    def event(self, ev: object, child: ChildCore, now: float) -> None:
        if isinstance(ev, PingReply):
            for s in self.series:
                if s.kind == "ping" and ev.identifier == self._ident:
                    sent = s.pending.pop(ev.sequence, None)
                    if sent is not None:
                        s.rtts.append(now - sent)
        elif isinstance(ev, UdpReceived):
            if self.echo_port is not None and ev.dst_port == self.echo_port:
                child.send_udp(ev.src, self.echo_port, ev.src_port, ev.payload, now, src=ev.dst)
                self.echoed += 1
                return
            for s in self.series:
                if s.kind == "udp" and ev.dst_port == self.UDP_SRC_PORT and len(ev.payload) >= 4:
                    sent = s.pending.pop(int.from_bytes(ev.payload[:4], "big"), None)
                    if sent is not None:
                        s.rtts.append(now - sent)
                        s.next_at = min(s.next_at, now)  # stop-and-wait: the next one now

    def poll(self, child: ChildCore, now: float) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        if not child.attached:
            return out
        for s in self.series:
            if s.done:
                continue
            if s is not self._current():
                break  # one series at a time: their traffic does not collide with each other
            if s.sent < s.count and now >= s.next_at:
                src = self._source(child, s.dst)
                if src is None:
                    s.next_at = now + PROBE_INTERVAL  # no OMR address yet: look again soon
                    continue
                if s.ready_at is None:  # let the address registration reach the parent first
                    s.ready_at = now
                    s.next_at = now + PROBE_SETTLE
                    continue
                if (
                    s.kind == "udp"
                    and s.sent
                    and s.sent - 1 in s.pending
                    and now < s.last_sent + UDP_WAIT
                ):
                    s.next_at = s.last_sent + UDP_WAIT
                    continue
                seq = s.sent
                try:
                    if s.kind == "ping":
                        child.ping(s.dst, now, size=s.size, identifier=self._ident, sequence=seq,
                                   src=src)  # fmt: skip
                    else:
                        body = seq.to_bytes(4, "big") + bytes(i & 0xFF for i in range(s.size))
                        child.send_udp(s.dst, self.UDP_SRC_PORT, s.port, body[: max(4, s.size)],
                                       now, src=src)  # fmt: skip
                except GatewayError:
                    pass  # counted as lost
                s.pending[seq] = now
                s.sent += 1
                s.last_sent = now
                s.next_at = now + (PROBE_INTERVAL if s.kind == "ping" else UDP_WAIT)
            if s.sent == s.count and (not s.pending or now >= s.last_sent + PROBE_TIMEOUT):
                s.done = True
                out.append((s.kind, s.report()))
        return out

    def _current(self) -> _Series | None:
        return next((s for s in self.series if not s.done), None)

    def next_timeout(self, child: ChildCore) -> float | None:
        if not child.attached:
            return None
        s = self._current()
        if s is None:
            return None
        return s.next_at if s.sent < s.count else s.last_sent + PROBE_TIMEOUT


class SrpClient:
    """The thing's SRP client, as OpenThread's ``srp client autostart``: once attached with an
    OMR address, it registers its host (that address) and service with the SRP server it finds
    in the Network Data (the unicast DNS/SRP entry), from its ML-EID, renews before the lease
    ends and retries with back-off (:class:`gateway.thread.srp.client.SrpRegistration`).
    :meth:`poll` returns the registration's report whenever its state changed."""

    def __init__(self, registration: SrpRegistration) -> None:
        self.reg = registration
        self._reported: tuple[Any, ...] | None = None

    def event(self, ev: object, now: float) -> bool:
        if isinstance(ev, UdpReceived) and ev.dst_port == self.reg.SRC_PORT:
            return self.reg.received(ev.src, ev.src_port, ev.payload, now)
        return False

    def poll(self, child: ChildCore, now: float) -> dict[str, Any] | None:
        if child.attached:
            try:
                servers = srp_unicast_servers(parse_network_data(child.network_data))
            except ParseError:
                servers = []
            out = self.reg.poll(servers, child.slaac, now)
            if out is not None:
                addr, port, msg = out
                with contextlib.suppress(GatewayError):  # not sent: retried with back-off
                    child.send_udp(addr, self.reg.SRC_PORT, port, msg, now, src=child.ml_eid)
        r = self.reg.report()
        key = (r["state"], r["server"], tuple(r["addresses"]), r["rcode"])
        if key == self._reported:
            return None
        self._reported = key
        return r

    def next_timeout(self, child: ChildCore) -> float | None:
        return self.reg.next_timeout() if child.attached else None


async def attach(
    radio: Radio,
    state: ChildState,
    store: ChildStateStore | None,
    *,
    rx_on: bool = True,
    timeout: int = 240,
    poll_period: float | None = None,
    report: Callable[[str, dict[str, Any]], None] | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    exercise: Exercise | None = None,
    result_report: ResultReport | None = None,
    srp: SrpClient | None = None,
) -> ChildCore:
    """Attach (or resume the saved attachment) and stay in the network for ``duration``
    seconds (None: until ``stop`` is set). ``report(kind, fields)`` is told of every role
    change and periodic status, and of what ``exercise`` and ``result_report`` (a CBSB thing's
    step-9 report to its app) found."""
    activities: list[Activity] = [a for a in (exercise, result_report) if a is not None]
    loop = asyncio.get_running_loop()
    ds = state.dataset
    assert ds.channel is not None and ds.pan_id is not None
    ext = ExtAddress(radio.info.eui64)
    saved = state.snapshot
    if saved is not None and (saved.ext != ext.hex() or saved.key_sequence != state.key_sequence):
        saved = None
    # resume at the reserved bounds: nothing below them may have been used before a crash
    child = ChildCore(
        ds,
        ext,
        config=ChildConfig(rx_on=rx_on, timeout=timeout, poll_period=poll_period),
        saved=saved,
        key_sequence=state.key_sequence,
        mle_frame_counter=state.mle_bound,
        mac_frame_counter=state.mac_bound,
    )

    async def persist() -> None:
        state.key_sequence = child.keys.key_sequence
        state.snapshot = child.snapshot() or state.snapshot
        state.mle_bound = min(child.keys.mle_frame_counter + COUNTER_RESERVE, LIMIT)
        state.mac_bound = min(child.keys.mac_frame_counter + COUNTER_RESERVE, LIMIT)
        if store is not None:
            await store.save(state)

    def covered() -> bool:
        return (
            state.key_sequence == child.keys.key_sequence
            and child.keys.mle_frame_counter <= state.mle_bound
            and child.keys.mac_frame_counter <= state.mac_bound
        )

    await persist()  # the bounds move ahead before the first frame
    await radio.set_channel(ds.channel)
    await radio.set_addresses(pan_id=ds.pan_id, ext_addr=ext.octets, short_addr=0xFFFE)
    end = None if duration is None else loop.time() + duration
    dirty = False
    reported_omr: tuple[Any, ...] = ()
    with radio.subscribe(maxsize=512) as sub:
        child.start(loop.time())
        while True:
            for ev in child.events():
                if isinstance(ev, RoleChanged):
                    short = ev.rloc16 if ev.rloc16 is not None and ev.role == "child" else 0xFFFE
                    await radio.set_addresses(short_addr=short)
                    if report is not None:
                        report("role", child.status(loop.time()))
                    dirty = True
                elif isinstance(ev, SnapshotChanged):
                    dirty = True
                if srp is not None and srp.event(ev, loop.time()):
                    continue
                for a in activities:
                    a.event(ev, child, loop.time())
            if srp is not None:
                srp_report = srp.poll(child, loop.time())
                if srp_report is not None and report is not None:
                    report("srp", {**child.status(loop.time()), "result": srp_report})
            for a in activities:
                for kind, result in a.poll(child, loop.time()):
                    if report is not None:
                        st = child.status(loop.time())
                        report(kind, {**st, "result": {**result, "counters": st["counters"]}})
            if child.attached and child.slaac != reported_omr:
                reported_omr = child.slaac
                if report is not None:
                    report("addresses", child.status(loop.time()))
            actions = child.actions()
            if dirty or (actions and not covered()):
                await persist()
                dirty = False
            for tx in actions:
                res = await radio.transmit(tx.psdu)
                if tx.ack_request:
                    child.tx_done(tx.handle, res.ok, loop.time(), frame_pending=res.frame_pending)
            now = loop.time()
            if (end is not None and now >= end) or (stop is not None and stop.is_set()):
                break
            deadline = child.next_timeout()
            probes = [a.next_timeout(child) for a in activities]
            renew = srp.next_timeout(child) if srp is not None else None
            limits = [t for t in (deadline, end, *probes, renew) if t is not None]
            wait = max(0.0, min(limits) - now) if limits else 1.0
            wait = min(wait, 0.5 if stop is not None else wait)
            frame = await sub.get(wait) if wait > 0 else None
            now = loop.time()
            if frame is not None and child.rx_on(now):
                child.frame_received(frame.psdu, now, rssi=frame.rssi_dbm)
            child.poll(now)
    with contextlib.suppress(Exception):
        await persist()
    return child


def attach_cli(
    args: Any,
    state: ChildState,
    store: ChildStateStore | None,
    result_report: ResultReport | None = None,
) -> int:
    """The command-line part shared by ``join --attach`` and ``cbsb --attach``: open the
    radio, attach, report each role change (a JSON line with ``--json``), stay until
    ``--attach-for`` seconds passed or SIGTERM/SIGINT. A CBSB thing passes the
    ``result_report`` its delivery asked for."""
    import json
    import signal
    import sys
    import time

    from drivers.errors import GatewayError
    from drivers.radio import open_radio

    def report(kind: str, st: dict[str, Any]) -> None:
        fields = {k: st[k] for k in ("role", "mode", "rloc16", "parent", "partition_id",
                                     "addresses", "ext_addr")}  # fmt: skip
        if "result" in st:
            fields["result"] = st["result"]
        if args.json:
            print(json.dumps({"event": kind, "t": round(time.time(), 4), **fields}), flush=True)
        elif kind == "reported":
            r = st["result"]
            print(f"reported the result to the app at [{r['dst']}]:{r['port']}: "
                  f"{'acknowledged' if r['acked'] else 'no answer'}", flush=True)  # fmt: skip
        elif kind == "srp":
            r = st["result"]
            print(f"srp: {r['host']} {r['state']} with {r['server'] or 'no server'}"
                  + (f" (rcode {r['rcode']})" if r["rcode"] else ""), flush=True)  # fmt: skip
        elif "result" in st:
            r = st["result"]
            print(f"{kind} {r['dst']}: {r['received']}/{r['sent']} answered", flush=True)
        elif not getattr(args, "quiet", False):
            parent = st["parent"]["ext_addr"] if st["parent"] else "-"
            print(f"thread: {st['role']} (rloc16 {st['rloc16'] or '-'}, parent {parent}, "
                  f"ML-EID {st['addresses']['ml_eid']})", flush=True)  # fmt: skip

    try:
        exercise = _exercise_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        radio = open_radio(args.radio)
        await radio.open()
        try:
            srp = _srp_from(args, state, radio.info.eui64)
            await attach(
                radio,
                state,
                store,
                rx_on=not args.sleepy,
                timeout=args.child_timeout,
                poll_period=args.poll_period,
                report=report,
                duration=args.attach_for or None,
                stop=stop,
                exercise=exercise,
                result_report=result_report,
                srp=srp,
            )
        finally:
            await radio.close()

    try:
        asyncio.run(go())
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    return 0


def _srp_from(args: Any, state: ChildState, eui64: bytes) -> SrpClient | None:
    """``--srp`` (the default): the host ``--srp-host`` (``thing-`` and the EUI-64) with one
    service, ``--srp-instance`` (the host name) of ``--srp-type`` on ``--srp-port`` (the
    ``--udp-echo`` port when there is one). The key that owns the name is made once and kept in
    the state file, so the thing keeps its name across restarts."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.thread.srp.client import ServiceSpec

    if not getattr(args, "srp", False):
        return None
    if state.srp_key is None:
        state.srp_key = (
            ec.generate_private_key(ec.SECP256R1())
            .private_numbers()
            .private_value.to_bytes(32, "big")
        )
    key = ec.derive_private_key(int.from_bytes(state.srp_key, "big"), ec.SECP256R1())
    host = args.srp_host or f"thing-{eui64.hex()}"
    port = args.srp_port or getattr(args, "udp_echo", None) or 12345
    spec = ServiceSpec(args.srp_instance or host, args.srp_type, port)
    reg = SrpRegistration(host, [spec], key, lease=args.srp_lease, key_lease=args.srp_key_lease)
    return SrpClient(reg)


def _exercise_from(args: Any) -> Exercise | None:
    """The ``--ping``, ``--udp-send`` and ``--udp-echo`` options as an :class:`Exercise`."""
    ping_addr = getattr(args, "ping_addr", None)
    udp_send = getattr(args, "udp_send", None)
    echo = getattr(args, "udp_echo", None)
    if ping_addr is None and udp_send is None and echo is None:
        return None
    ping = None
    if ping_addr is not None:
        try:
            ping = (ipaddress.IPv6Address(ping_addr), args.ping_count, args.ping_size)
        except ValueError:
            raise ValueError(f"--ping: {ping_addr!r} is not an IPv6 address") from None
    udp = None
    if udp_send is not None:
        host, _, port = str(udp_send).rpartition(":")
        try:
            addr = ipaddress.IPv6Address(host.strip("[]"))
            udp = (addr, int(port), args.udp_count, args.udp_size)
            if not 1 <= udp[1] <= 65535:
                raise ValueError
        except ValueError:
            raise ValueError(f"--udp-send: {udp_send!r} is not [IPv6 address]:port") from None
    return Exercise(ping=ping, udp_send=udp, echo_port=echo)
