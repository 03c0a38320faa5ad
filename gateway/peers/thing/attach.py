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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from drivers.radio import Radio
from gateway.errors import StateError
from gateway.runtime.state import JsonState
from gateway.thread.network.child import ChildConfig, ChildCore
from gateway.thread.network.events import RoleChanged, SnapshotChanged
from gateway.thread.network.snapshot import ChildNodeSnapshot
from gateway.wire.dataset import ActiveDataset
from gateway.wire.mac802154 import ExtAddress

__all__ = ["COUNTER_RESERVE", "ChildState", "ChildStateStore", "attach"]

COUNTER_RESERVE: Final = 1000
LIMIT: Final = 0xFFFFFFFF


@dataclass
class ChildState:
    dataset: ActiveDataset
    key_sequence: int
    snapshot: ChildNodeSnapshot | None = None
    mle_bound: int = 0
    mac_bound: int = 0

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
            return ChildState(
                ds, seq, ChildNodeSnapshot.from_dict(snap) if snap is not None else None, mle, mac
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
        async with self._lock:
            await asyncio.to_thread(self._state.save, body)


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
) -> ChildCore:
    """Attach (or resume the saved attachment) and stay in the network for ``duration``
    seconds (None: until ``stop`` is set). ``report(kind, fields)`` is told of every role
    change and periodic status."""
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
            limits = [t for t in (deadline, end) if t is not None]
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


def attach_cli(args: Any, state: ChildState, store: ChildStateStore | None) -> int:
    """The command-line part shared by ``join --attach`` and ``cbsb --attach``: open the
    radio, attach, report each role change (a JSON line with ``--json``), stay until
    ``--attach-for`` seconds passed or SIGTERM/SIGINT."""
    import json
    import signal
    import sys
    import time

    from drivers.errors import GatewayError
    from drivers.radio import open_radio

    def report(kind: str, st: dict[str, Any]) -> None:
        fields = {k: st[k] for k in ("role", "mode", "rloc16", "parent", "partition_id",
                                     "addresses", "ext_addr")}  # fmt: skip
        if args.json:
            print(json.dumps({"event": kind, "t": round(time.time(), 4), **fields}), flush=True)
        elif not getattr(args, "quiet", False):
            parent = st["parent"]["ext_addr"] if st["parent"] else "-"
            print(f"thread: {st['role']} (rloc16 {st['rloc16'] or '-'}, parent {parent}, "
                  f"ML-EID {st['addresses']['ml_eid']})", flush=True)  # fmt: skip

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        radio = open_radio(args.radio)
        await radio.open()
        try:
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
