"""The border router service: the gateway's Thread side -- Leader for commissioning, Joiner Router
on its own radio, Border Agent on the WLAN, and the native commissioner a technician can run.

It is a thin asyncio shell around :class:`gateway.thread.commissioning.core.BorderRouterCore` (sans-IO):

* the radio: two subscriptions on the radio service (unsecured data frames whose first payload
  byte is a 6LoWPAN dispatch -- CBSB's NALP frames stay with the group owner -- and secured data
  frames); transmissions go through the radio service, which secures them with the registered
  MAC key (``thread-mac``, key id mode 1) or the joiner router KEK (``kek``, key id mode 0) and
  keeps the frame counters;
* the Border Agent: one UDP socket on ``[border_router] border_agent_port`` (49191), IPv6 with
  IPv4-mapped addresses, so IPv4 and IPv6 commissioners both reach it;
* DNS-SD: ``_meshcop._udp`` published through zeroconf unless ``advertise_mdns = false``;
* control-socket methods for the native commissioner (docs/thread.md): ``commissioner_start``,
  ``joiner_add``, ``joiner_remove``, ``joiner_wait``, ``commissioner_stop``, ``sessions``,
  ``reload_dataset``.

``GATEWAY_THREAD_KEEPALIVE_TIMEOUT`` (seconds) shortens the 50 s commissioner keep-alive timeout,
for tests and diagnostics only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import socket
import time
from dataclasses import replace
from typing import Any

from gateway.border_router.netstate import NetworkStateStore
from gateway.crypto.thread_keys import mac_key_index, network_key_derivation
from gateway.errors import GatewayError, InvalidArgument, ParseError, StateError
from gateway.radio.client import RadioClient, RxEvent
from gateway.runtime.jsonline import Connection, Handler
from gateway.runtime.network import load_network, open_or_create_network
from gateway.runtime.service import Service, run_service
from gateway.runtime.state import atomic_write
from gateway.runtime.uplink import Uplink, UplinkChange, follow_uplink
from gateway.thread.commissioning.commissioner import (
    CommissionerState,
    JoinerEvent,
    RateLimit,
    StateChanged,
)
from gateway.thread.commissioning.core import BorderRouterCore, OutFrame
from gateway.thread.commissioning.dnssd import (
    InterfaceStatus,
    ThreadRole,
    instance_name,
    meshcop_txt,
    state_bitmap,
)
from gateway.thread.commissioning.leader import KEEP_ALIVE_TIMEOUT
from gateway.thread.errors import CommissionerNotActive, CommissioningError
from gateway.thread.link import SECURITY_LEVEL, LinkSecurity
from gateway.thread.network.errors import AddressUnresolved, NotAttached
from gateway.thread.network.events import (
    KeySequenceChanged,
    NetFrame,
    NetworkDataChanged,
    PingReply,
    RoleChanged,
    SnapshotChanged,
)
from gateway.thread.network.router import RouterConfig, RouterCore
from gateway.wire.dataset import ActiveDataset
from gateway.wire.mac802154 import ExtAddress, MacFrame

LOG = logging.getLogger(__name__)
MAC_KEY = "thread-mac"  # the MAC key of the current key sequence, on the radio socket
MAC_KEY_PREV = "thread-mac-prev"  # the previous one, still accepted after a key switch
VENDOR = "Gateway"
PRODUCT = "BorderRouter"
ENV_KEEPALIVE = "GATEWAY_THREAD_KEEPALIVE_TIMEOUT"


def _parse_eui64(raw: Any) -> bytes | None:
    """``"*"`` → None (every joiner), else 16 hex digits."""
    if raw == "*":
        return None
    if not isinstance(raw, str):
        raise InvalidArgument("'eui64' must be 16 hex digits or '*'")
    try:
        eui = bytes.fromhex(raw.replace(":", "").replace("-", ""))
    except ValueError:
        raise InvalidArgument("'eui64' must be 16 hex digits or '*'") from None
    if len(eui) != 8:
        raise InvalidArgument("'eui64' must be 16 hex digits or '*'")
    return eui


def _float_param(p: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    raw = p.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not lo <= raw <= hi:
        raise InvalidArgument(f"'{name}' must be a number within {lo}..{hi}")
    return float(raw)


class _BaProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: BorderRouterService) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._ba_received(data, addr)

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - ICMP errors
        LOG.debug("border agent socket: %s", exc)


class BorderRouterService(Service):
    name = "border-router"
    description = "Thread border router: border agent, joiner router, commissioning"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.radio = RadioClient(self.paths.radio_socket(), "border-router")
        self.dataset: ActiveDataset | None = None
        self.core: BorderRouterCore | None = None
        self.ext_addr: ExtAddress | None = None
        self._ba_transport: asyncio.DatagramTransport | None = None
        self.uplink: Uplink | None = None
        self.ba_port: int | None = None
        self.net: RouterCore | None = None
        self.border: Any = None  # BorderRouting, when [border_router] infra_interface is set
        self.srp: Any = None  # SrpService, running whenever border routing runs
        self._lan_uplink: Uplink | None = None
        self.netstore: NetworkStateStore | None = None
        self._net_dirty = asyncio.Event()
        self._mac_keys: dict[int, str] = {}  # key sequence -> radio-socket key id
        self._commissioning_data: bytes | None = None
        self._ping_waiters: dict[tuple[int, int], asyncio.Future[PingReply]] = {}
        self._ping_ident = int.from_bytes(os.urandom(2), "big")
        self._txq: asyncio.Queue[OutFrame | NetFrame] = asyncio.Queue(maxsize=4096)
        self._wake = asyncio.Event()
        self._kek: bytes | None = None
        self._publisher: Any = None
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self._native_error: CommissioningError | None = None
        self.tx_stats = {"frames": 0, "failed": 0, "kek_frames": 0, "network_frames": 0,
                         "network_failed": 0, "to_host_dropped": 0}  # fmt: skip

    # ------------------------------------------------------------------ lifecycle

    def _keep_alive_timeout(self) -> float:
        raw = os.environ.get(ENV_KEEPALIVE)
        if not raw:
            return KEEP_ALIVE_TIMEOUT
        try:
            value = float(raw)
        except ValueError:
            raise InvalidArgument(f"{ENV_KEEPALIVE}={raw!r} is not a number") from None
        if not 1.0 <= value <= 3600.0:
            raise InvalidArgument(f"{ENV_KEEPALIVE} must be within 1..3600 s")
        return value

    async def start(self) -> None:
        self.set_phase("waiting for the radio service")
        await self.radio.start(timeout=60.0)
        self.radio.on_reconnect = self._radio_back
        self.set_phase("loading the Thread network")
        self.dataset = await open_or_create_network(self.settings, self.radio.energy_scan)
        ds = self.dataset
        assert ds.channel is not None and ds.pan_id is not None and ds.network_key is not None
        await self.radio.set_channel(ds.channel)
        ext = self.radio.info.get("ext_addr")
        if not isinstance(ext, str):
            raise StateError("the radio service did not report its extended address")
        self.ext_addr = ExtAddress.from_hex(ext)
        loop = asyncio.get_running_loop()
        self.set_phase("forming or restoring the Thread partition")
        net = await self._start_network(ds, self.ext_addr)
        await self.radio.set_addresses(pan_id=ds.pan_id, short_addr=net.rloc16)
        self.core = BorderRouterCore(
            ds,
            self.ext_addr,
            rloc16=net.rloc16,
            key_sequence=net.keys.key_sequence,
            keep_alive_timeout=self._keep_alive_timeout(),
        )
        self.core.on_native_event = self._native_event
        unsecured = await self.radio.subscribe(
            maxsize=1024, frame_types=[1], secured=False, dispatch=[0x40, 0xFF]
        )
        # secured data frames and MAC commands (the Data Request polls of sleepy children)
        secured = await self.radio.subscribe(maxsize=512, frame_types=[1, 3], secured=True)
        self.spawn(self._rx_loop(unsecured), "rx-unsecured")
        self.spawn(self._rx_loop(secured), "rx-secured")
        self.spawn(self._tx_loop(), "tx")
        self.spawn(self._timer_loop(), "timers")
        self.spawn(self._state_writer(), "thread-state")
        if self.settings.border_router.infra_interface:
            self.set_phase("opening the Thread interface")
            await self._start_border_routing(ds, net)
        self.set_phase("opening the border agent")
        await self._open_border_agent(loop)
        await self._start_uplink()
        if self.settings.border_router.advertise_mdns:
            self.spawn(self._publish_mdns(), "mdns")
        self.set_phase(
            f"serving Thread network '{ds.network_name}' on channel {ds.channel}; "
            f"border agent on UDP {self.ba_port}"
        )

    async def _start_network(self, ds: ActiveDataset, ext: ExtAddress) -> RouterCore:
        """The Thread network core, restored from ``thread-router.json`` when it exists (the
        MLE frame counter resumes at the reserved bound), else a new partition; the state with
        a new bound is on disk before any frame leaves."""
        store = NetworkStateStore(self.state_dir / "thread-router.json")
        saved = await asyncio.to_thread(store.load)
        net = RouterCore(
            ds,
            ext,
            config=RouterConfig(max_children=self.settings.border_router.max_children),
            saved=saved.snapshot if saved is not None else None,
            mle_frame_counter=saved.start_counter() if saved is not None else None,
        )
        net.start(asyncio.get_running_loop().time())
        await store.save(net.snapshot(), net.keys.mle_frame_counter)
        self.netstore = store
        self.net = net
        await self._register_mac_key(net.keys.key_sequence)
        # The AT86RF233 has no source-match table: ACKs to every Data Request say frame
        # pending, and the core answers a poll with nothing queued with an empty frame.
        await self.radio.set_frame_pending(True)
        LOG.info("thread: %s partition %d as %s (rloc16 0x%04x, key sequence %d, %d saved "
                 "children)", "restored" if saved is not None else "formed", net.partition_id,
                 net.role, net.rloc16, net.keys.key_sequence,
                 len(saved.snapshot.children) if saved is not None else 0)  # fmt: skip
        return net

    async def _start_border_routing(self, ds: ActiveDataset, net: RouterCore) -> None:
        from gateway.border_router.border_routing import BorderRouting

        br = self.settings.border_router
        border = BorderRouting(
            net, lan_if=br.infra_interface, thread_if=br.thread_interface,
            state_dir=self.state_dir, ext_pan_id=ds.ext_pan_id or bytes(8), now=self._now,
            changed=self._flush_network_soon, spawn=self.spawn, tx_backlog=self._txq.qsize,
        )  # fmt: skip
        await border.open()
        self.border = border
        from gateway.border_router.srp import SrpService

        srp = SrpService(
            net, self.state_dir, lan_if=lambda: br.infra_interface,
            thread_if=br.thread_interface, changed=self._flush_network_soon, port=br.srp_port,
        )  # fmt: skip
        await srp.open()
        self.srp = srp
        self._lan_uplink = await follow_uplink(
            br.infra_interface, self._on_lan_change, self.spawn,
            without="border routing starts now and does not follow the LAN interface",
        )  # fmt: skip
        state = self._lan_uplink.state if self._lan_uplink is not None else None
        if state is None or (state.present and state.oper_up):
            await border.lan_up()

    async def _on_lan_change(self, change: UplinkChange) -> None:
        """The LAN interface came, went or was replaced: routing starts, stops or restarts on
        it (address changes alone change nothing: RAs go out from whatever link-local it has)."""
        border = self.border
        if border is None:
            return
        old, new = change.old, change.new
        was = old.present and old.oper_up
        now_up = new.present and new.oper_up
        if was and now_up and old.ifindex == new.ifindex:
            return
        await border.lan_down()
        if self.srp is not None:
            self.srp.uplink_changed()  # the advertising proxy follows the LAN interface
        if now_up:
            await border.lan_up()
        self._wake.set()

    def _flush_network_soon(self) -> None:
        self._wake.set()

    async def _register_mac_key(self, seq: int) -> None:
        """Register the MAC key of ``seq`` as the current one (key id mode 1, its key index);
        the one it replaces stays registered as the previous key so that the radio service
        still opens (and can secure) frames of the old sequence. The radio service keeps the
        outgoing frame counter per key material."""
        ds = self.dataset
        assert ds is not None and ds.network_key is not None and self.net is not None
        if self._mac_keys.get(seq) == MAC_KEY:
            return
        old = [s for s, k in self._mac_keys.items() if k == MAC_KEY]
        for s in old:
            _mle, prev_key = network_key_derivation(ds.network_key, s)
            await self.radio.register_key(
                MAC_KEY_PREV, prev_key, key_id_mode=1, key_index=mac_key_index(s)
            )
        self._mac_keys = {s: MAC_KEY_PREV for s in old}
        _mle_key, mac_key = network_key_derivation(ds.network_key, seq)
        await self.radio.register_key(MAC_KEY, mac_key, key_id_mode=1, key_index=mac_key_index(seq))
        self._mac_keys[seq] = MAC_KEY
        await self._sync_mac_counter()

    async def _sync_mac_counter(self) -> None:
        """The radio service's next MAC frame counter of the current key, for the Link Frame
        Counter TLVs the core sends (after every secured transmission the result says it)."""
        try:
            status = await self.radio.call("status")
        except GatewayError as exc:
            LOG.debug("radio status unavailable: %s", exc.message)
            return
        counters = status.get("frame_counters") if isinstance(status, dict) else None
        fc = counters.get(MAC_KEY) if isinstance(counters, dict) else None
        if self.net is not None and isinstance(fc, int) and not isinstance(fc, bool):
            self.net.set_mac_frame_counter(fc)

    async def _state_writer(self) -> None:
        """Write the network state whenever the core says it changed (off the event loop)."""
        while True:
            await self._net_dirty.wait()
            self._net_dirty.clear()
            await self._save_network()

    async def _save_network(self) -> None:
        net, store = self.net, self.netstore
        if net is None or store is None:
            return
        try:
            await store.save(net.snapshot(), net.keys.mle_frame_counter)
        except OSError as exc:
            LOG.error("cannot save the Thread network state to %s: %s", store.path, exc)
            raise

    async def _open_border_agent(self, loop: asyncio.AbstractEventLoop) -> None:
        port = self.settings.border_router.border_agent_port
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", port))
        except OSError:
            with contextlib.suppress(UnboundLocalError):
                sock.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError as exc:
                sock.close()
                raise StateError(
                    f"cannot open the border agent on UDP port {port}: {exc.strerror}",
                    hint="Another process holds the port; change [border_router] "
                    "border_agent_port or stop it.",
                ) from None
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(lambda: _BaProtocol(self), sock=sock)
        self._ba_transport = transport
        self.ba_port = sock.getsockname()[1]

    async def _start_uplink(self) -> None:
        """Follow the WLAN/LAN uplink: the DNS-SD advertisement moves with its addresses and is
        withdrawn while it is unusable. The border agent socket listens on the wildcard address,
        so it keeps answering on new addresses without being re-opened."""
        self.uplink = await follow_uplink(
            self.settings.network.uplink,
            self._on_uplink_change,
            self.spawn,
            without="DNS-SD stays on the addresses at start",
        )

    async def _on_uplink_change(self, change: UplinkChange) -> None:
        if not self.settings.border_router.advertise_mdns:
            return
        if not (change.rebind or "link" in change.changed):
            return
        LOG.info("uplink %s changed (%s): moving the DNS-SD advertisement",
                 change.new.ifname, ", ".join(sorted(change.changed)))  # fmt: skip
        await self._withdraw_mdns()
        if change.new.usable:
            await self._publish_mdns()

    async def _withdraw_mdns(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.close()

    def _mdns_interface(self) -> str:
        configured = self.settings.network.uplink
        if configured == "auto" and self.uplink is not None and self.uplink.state.ifname:
            return self.uplink.state.ifname
        return configured

    def _ba_id(self) -> bytes:
        path = self.state_dir / "border-agent-id"
        try:
            raw = path.read_bytes()
            if len(raw) == 16:
                return raw
        except FileNotFoundError:
            pass
        value = os.urandom(16)
        atomic_write(path, value, mode=0o644)
        return value

    def _txt(self) -> dict[bytes, bytes]:
        ds = self.dataset
        assert ds is not None and self.ext_addr is not None
        net = self.net
        role = {"leader": ThreadRole.LEADER, "router": ThreadRole.ROUTER}.get(
            net.role if net is not None else "", ThreadRole.DISABLED_OR_DETACHED
        )
        up = (
            InterfaceStatus.ACTIVE
            if net is not None and net.attached
            else InterfaceStatus.INITIALIZED
        )
        return meshcop_txt(
            ext_addr=self.ext_addr,
            network_name=ds.network_name or "",
            ext_pan_id=ds.ext_pan_id or bytes(8),
            state=state_bitmap(interface_status=up, role=role),
            active_timestamp=ds.active_timestamp,
            partition_id=net.partition_id
            if net is not None
            else int.from_bytes(self.ext_addr.octets[4:], "big"),
            border_agent_id=self._ba_id(),
            vendor_name=VENDOR,
            model_name=PRODUCT,
        )

    async def _publish_mdns(self) -> None:
        from gateway.runtime.mdns import MeshcopPublisher

        assert self.ext_addr is not None and self.ba_port is not None
        if self._publisher is None:
            self._publisher = MeshcopPublisher(
                instance_name(VENDOR, PRODUCT, self.ext_addr),
                self.ba_port,
                uplink=self._mdns_interface(),
                host=f"gateway-{self.ext_addr.hex()[-4:]}",
            )
        try:
            await self._publisher.publish(self._txt())
            LOG.info("published _meshcop._udp on %s", self._mdns_interface())
        except (OSError, Exception) as exc:  # noqa: BLE001 - mDNS trouble must not stop the BR
            LOG.warning("cannot publish the border agent by DNS-SD: %s", exc)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._save_network()  # the child table as it is now
        if self._lan_uplink is not None:
            await self._lan_uplink.close()
        if self.srp is not None:
            srp, self.srp = self.srp, None
            await srp.close()
        if self.border is not None:
            border, self.border = self.border, None
            try:
                await border.close()  # a final RA; entries withdrawn; rules and interface gone
            except (GatewayError, OSError) as exc:
                LOG.warning("border routing did not close cleanly: %s", exc)
            self._flush_network()
            await self._drain_tx(2.0)
        if self.uplink is not None:
            await self.uplink.close()
        if self.core is not None:
            with contextlib.suppress(Exception):
                self.core.commissioner_stop(asyncio.get_running_loop().time())
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.close()
        if self._ba_transport is not None:
            self._ba_transport.close()
        for _key, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        await self.radio.close()

    async def healthy(self) -> bool:
        return self.radio.connected or not self.radio.closing

    def _radio_back(self) -> None:
        self._kek = None  # the radio service restored the key; re-register before the next use
        if self.net is not None:
            self.spawn(self._sync_mac_counter(), "mac-counter")
        LOG.info("radio service back; configuration restored")

    # ------------------------------------------------------------------ data paths

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _flush(self) -> None:
        core = self.core
        if core is None:
            return
        for of in core.frames_to_send():
            try:
                self._txq.put_nowait(of)
            except asyncio.QueueFull:
                self.tx_stats["failed"] += 1
        if self._ba_transport is not None:
            for peer, data in core.ba_datagrams():
                self._ba_transport.sendto(data, peer)
        for line in core.log_lines():
            LOG.log(logging.WARNING if line.level == "warning" else logging.INFO, "%s", line.text)
            self._history.append({"t": round(time.time(), 3), "level": line.level,
                                  "text": line.text})  # fmt: skip
        self._flush_network()
        self._wake.set()

    def _flush_network(self) -> None:
        """Move what the network core produced: frames to the radio, events to the journal,
        state changes to the state writer; the commissioning leader's data into Network Data."""
        net, core = self.net, self.core
        if net is None or core is None:
            return
        data = core.leader.dataset.to_bytes()
        if data != self._commissioning_data:
            self._commissioning_data = data
            net.set_commissioning_data(data, self._now())
        for nf in net.frames_to_send():
            try:
                self._txq.put_nowait(nf)
            except asyncio.QueueFull:
                self.tx_stats["network_failed"] += 1
                if nf.handle is not None:
                    net.tx_done(nf.handle, False, self._now())
        net.radio_actions()  # frame pending is chip-wide (set at start): nothing per address
        to_host = net.ip6_to_host()
        border = self.border
        if border is not None:
            border.flush()
            self.tx_stats["to_host_dropped"] += border.to_host(to_host)
        else:
            self.tx_stats["to_host_dropped"] += len(to_host)  # no Thread interface
        for ev in net.events():
            if isinstance(ev, SnapshotChanged):
                self._net_dirty.set()
            elif isinstance(ev, KeySequenceChanged):
                self._net_dirty.set()
                core.joiner_router.key_sequence = ev.key_sequence  # JOIN_ENT tells joiners
                self.spawn(self._register_mac_key(ev.key_sequence), "mac-key")
            elif isinstance(ev, NetworkDataChanged) and border is not None:
                border.netdata_changed()
                if self.srp is not None:
                    self.srp.netdata_changed()
            elif isinstance(ev, RoleChanged) and border is not None:
                border.role_changed()
            elif isinstance(ev, PingReply):
                fut = self._ping_waiters.get((ev.identifier, ev.sequence))
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            level = {"debug": logging.DEBUG, "warning": logging.WARNING}.get(ev.level, logging.INFO)
            LOG.log(level, "%s", ev.text)
            if level >= logging.INFO:
                self._history.append({"t": round(time.time(), 3), "level": ev.level,
                                      "text": ev.text})  # fmt: skip

    async def _rx_loop(self, queue: asyncio.Queue[RxEvent]) -> None:
        while True:
            ev = await queue.get()
            if self.core is None or ev.tx:
                continue
            try:
                frame = MacFrame.from_bytes(ev.psdu, fcs=True)
                plain: MacFrame | None = None
                if ev.decrypted and ev.plain is not None:
                    head = len(frame.header_bytes())
                    plain = replace(frame, payload=ev.plain[head:], mic=b"", protected=False)
            except (ParseError, InvalidArgument):
                continue
            now = self._now()
            mine = self.net is not None and self.net.frame_received(
                frame, now, plain=plain, rssi=ev.rssi, lqi=ev.lqi, ack_frame_pending=True
            )
            if not mine:
                self.core.frame_received(
                    frame, now, plain=plain, rssi=ev.rssi, lqi=ev.lqi, channel=ev.channel
                )
            self._flush()

    async def _drain_tx(self, timeout: float) -> None:
        """Give the transmit queue up to ``timeout`` seconds to empty (a last Network Data
        update to the children before the radio connection closes)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._txq.join()

    async def _tx_loop(self) -> None:
        while True:
            of = await self._txq.get()
            try:
                await self._transmit_one(of)
            finally:
                self._txq.task_done()

    async def _transmit_one(self, of: OutFrame | NetFrame) -> None:
        if isinstance(of, NetFrame):
            await self._transmit_network(of)
            return
        kw: dict[str, Any] = {}
        try:
            if of.tx.security is LinkSecurity.KEK:
                assert of.kek is not None
                if self._kek != of.kek:
                    await self.radio.register_key("kek", of.kek, key_id_mode=0)
                    self._kek = of.kek
                kw["security"] = {"key_id": "kek", "level": SECURITY_LEVEL}
                self.tx_stats["kek_frames"] += 1
            elif of.tx.security is LinkSecurity.MAC:
                kw["security"] = {"key_id": "thread-mac", "level": SECURITY_LEVEL}
            res = await self.radio.transmit(of.tx.frame.to_bytes(), **kw)
            self.tx_stats["frames"] += 1
            if not res.get("ok"):
                self.tx_stats["failed"] += 1
                LOG.debug("%s not acknowledged (%s)", of.what or "frame", res.get("status"))
        except GatewayError as exc:
            self.tx_stats["failed"] += 1
            LOG.warning("cannot transmit %s: %s", of.what or "a frame", exc.message)

    async def _transmit_network(self, nf: NetFrame) -> None:
        """One frame of the network core: the MLE frame counter reserve on disk first, then
        the radio service secures it with the MAC key of its key sequence (level 5, key id
        mode 1) and keeps the MAC frame counter."""
        net, store = self.net, self.netstore
        assert net is not None and store is not None
        if not store.covers(net.keys.key_sequence, net.keys.mle_frame_counter):
            await self._save_network()
        kw: dict[str, Any] = {}
        if nf.tx.security is LinkSecurity.MAC:
            key_id = self._mac_keys.get(nf.key_sequence)
            if key_id is None:  # a frame of a key sequence no longer registered
                self.tx_stats["network_failed"] += 1
                if nf.handle is not None:
                    net.tx_done(nf.handle, False, self._now())
                return
            kw["security"] = {"key_id": key_id, "level": SECURITY_LEVEL}
        ok = False
        try:
            res = await self.radio.transmit(nf.tx.frame.to_bytes(), **kw)
            ok = bool(res.get("ok"))
            self.tx_stats["network_frames"] += 1
            fc = res.get("frame_counter")
            if kw and isinstance(fc, int) and nf.key_sequence == net.keys.key_sequence:
                net.set_mac_frame_counter(fc + 1)
            if not ok:
                self.tx_stats["network_failed"] += 1
                LOG.debug("%s not acknowledged (%s)", nf.what or "frame", res.get("status"))
        except GatewayError as exc:
            self.tx_stats["network_failed"] += 1
            LOG.warning("cannot transmit %s: %s", nf.what or "a frame", exc.message)
        if nf.handle is not None:
            net.tx_done(nf.handle, ok, self._now())
            self._flush()

    async def _timer_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            core = self.core
            assert core is not None
            border = self.border.next_timeout() if self.border is not None else None
            times = [t for t in (core.next_timeout(), self._net_timeout(), border) if t is not None]
            t = min(times, default=None)
            delay = None if t is None else max(0.0, t - loop.time())
            self._wake.clear()
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            core.poll(loop.time())
            if self.net is not None:
                self.net.poll(loop.time())
            if self.border is not None:
                self.border.poll(loop.time())
            self._flush()
            self._wake.clear()

    def _net_timeout(self) -> float | None:
        return self.net.next_timeout() if self.net is not None else None

    def _ba_received(self, data: bytes, addr: Any) -> None:
        if self.core is None:
            return
        try:
            ip = ipaddress.ip_address(addr[0].split("%")[0])
        except (ValueError, IndexError, AttributeError):
            return
        tid = ip.packed if ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{ip}").packed
        self.core.ba_datagram_received(addr, tid, data, self._now())
        self._flush()

    # ------------------------------------------------------------------ native commissioner

    def _native_event(self, ev: object) -> None:
        if isinstance(ev, StateChanged) and ev.error is not None:
            self._native_error = ev.error
        if not isinstance(ev, JoinerEvent) or ev.kind not in ("finalize", "failed"):
            return
        result: dict[str, Any] = {
            "joiner_id": ev.joiner_id.hex(),
            "entry": ev.entry,
            "result": "joined" if ev.kind == "finalize" else "failed",
        }
        if ev.error is not None:
            result["error"] = ev.error.to_dict()
        for key, fut in list(self._waiters):
            if not fut.done() and key in (ev.entry, ev.joiner_id.hex(), "*"):
                if ev.error is not None:
                    fut.set_exception(ev.error)
                else:
                    fut.set_result(result)

    def methods(self) -> dict[str, Handler]:
        return {
            "commissioner_start": self._m_commissioner_start,
            "commissioner_stop": self._m_commissioner_stop,
            "joiner_add": self._m_joiner_add,
            "joiner_remove": self._m_joiner_remove,
            "joiner_wait": self._m_joiner_wait,
            "sessions": self._m_sessions,
            "reload_dataset": self._m_reload_dataset,
            "thread_status": self._m_thread_status,
            "thread_children": self._m_thread_children,
            "thread_neighbors": self._m_thread_neighbors,
            "thread_netdata": self._m_thread_netdata,
            "thread_prefixes": self._m_thread_prefixes,
            "thread_ping": self._m_thread_ping,
            "srp_hosts": self._m_srp_hosts,
            "srp_services": self._m_srp_services,
            "srp_status": self._m_srp_status,
        }

    # ------------------------------------------------------------------ the Thread network

    def _network(self) -> RouterCore:
        if self.net is None:
            raise NotAttached(
                "the Thread network is not up yet", hint="The border router is still starting."
            )
        return self.net

    async def _m_thread_status(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        net = self._network()
        st = net.status(self._now())
        st["tx"] = dict(self.tx_stats)
        st["state_writes"] = self.netstore.writes if self.netstore is not None else 0
        return st

    async def _m_thread_children(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        net = self._network()
        return {"children": net.children(self._now()), "max": net.config.max_children}

    async def _m_thread_neighbors(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        """Every neighbour: the children (the gateway is the partition's only router, so
        there are no router neighbours yet)."""
        net = self._network()
        now = self._now()
        kids = [
            {
                "role": "child",
                **{
                    k: c[k]
                    for k in (
                        "rloc16",
                        "ext_addr",
                        "state",
                        "mode",
                        "age_s",
                        "link_margin_db",
                        "lq_in",
                        "version",
                    )
                },
            }  # fmt: skip
            for c in net.children(now)
        ]
        return {"neighbors": kids, "routers": []}

    async def _m_thread_netdata(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        return self._network().netdata_view()

    def _srp(self) -> Any:
        if self.srp is None:
            raise StateError(
                "the SRP server is not running",
                hint="it runs with border routing: set [border_router] infra_interface",
            )
        return self.srp

    async def _m_srp_hosts(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        return {"hosts": self._srp().hosts_view()}

    async def _m_srp_services(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        return {"services": self._srp().services_view()}

    async def _m_srp_status(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        if self.srp is None:
            return {"state": "stopped", "why": "border routing is off"}
        return dict(self.srp.status_view())

    async def _m_thread_prefixes(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        """Border routing: the OMR and on-link prefixes, the published route, the LAN routers
        heard, the Thread interface."""
        if self.border is None:
            return {"enabled": False, "why": "[border_router] infra_interface is empty"}
        return {"enabled": True, **self.border.describe()}

    async def _m_thread_ping(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        """ICMPv6 echoes from the gateway's mesh addresses; one reply per echo sent."""
        net = self._network()
        dst = p.get("address")
        try:
            addr = ipaddress.IPv6Address(dst) if isinstance(dst, str) else None
        except ValueError:
            addr = None
        if addr is None:
            raise InvalidArgument("'address' must be an IPv6 address")
        size = p.get("size", 8)
        count = p.get("count", 1)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 1232:
            raise InvalidArgument("'size' must be 0..1232 bytes")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
            raise InvalidArgument("'count' must be 1..100")
        interval = _float_param(p, "interval_s", 0.0, 10.0)
        wait = _float_param(p, "timeout_s", 0.1, 60.0) or 3.0
        self._ping_ident = (self._ping_ident + 1) & 0xFFFF
        ident = self._ping_ident
        replies: list[dict[str, Any]] = []
        for seq in range(1, count + 1):
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[PingReply] = loop.create_future()
            self._ping_waiters[(ident, seq)] = fut
            sent = loop.time()
            try:
                try:
                    verdict = net.ping(addr, sent, size=size, identifier=ident, sequence=seq)
                except AddressUnresolved:
                    verdict = "no_route"  # an echo that cannot leave is lost, not an error
                self._flush()
                if verdict == "no_route":
                    raise TimeoutError
                async with asyncio.timeout(wait):
                    rep = await fut
                replies.append({"sequence": seq, "ok": True, "from": str(rep.src),
                                "size": rep.size, "hop_limit": rep.hop_limit,
                                "rtt_ms": round((loop.time() - sent) * 1000, 1)})  # fmt: skip
            except TimeoutError:
                replies.append({"sequence": seq, "ok": False, "sent": verdict})
            finally:
                self._ping_waiters.pop((ident, seq), None)
            if interval and seq < count:
                await asyncio.sleep(interval)
        received = sum(1 for r in replies if r["ok"])
        return {"address": str(addr), "size": size, "transmitted": count,
                "received": received, "replies": replies}  # fmt: skip

    def _core(self) -> BorderRouterCore:
        if self.core is None:
            raise CommissionerNotActive("the border router is still starting")
        return self.core

    async def _m_commissioner_start(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        core = self._core()
        cid = p.get("id", "Gateway native commissioner")
        if not isinstance(cid, str) or not 1 <= len(cid.encode()) <= 64:
            raise InvalidArgument("'id' must be a commissioner ID of 1..64 bytes")
        ka = _float_param(p, "keep_alive_interval", 1.0, 45.0)
        st = _float_param(p, "joiner_session_timeout", 1.0, 600.0)
        rl = None
        if p.get("rate_limit") is not None:
            raw = p["rate_limit"]
            if not isinstance(raw, dict):
                raise InvalidArgument("'rate_limit' must be an object")
            try:
                rl = RateLimit(**raw)
            except TypeError:
                raise InvalidArgument("'rate_limit' has unknown fields") from None
        self._native_error = None
        now = self._now()
        c = core.commissioner_start(
            now,
            commissioner_id=cid,
            keep_alive_interval=ka,
            joiner_session_timeout=st,
            rate_limit=rl,
        )
        self._flush()
        if c.state is not CommissionerState.ACTIVE:
            err = self._native_error
            core.commissioner_stop(now)
            self._flush()
            if err is not None:
                raise err
            raise CommissioningError("the petition was not answered")
        return {"state": c.state.value, "session_id": c.session_id, "id": c.commissioner_id}

    async def _m_commissioner_stop(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        core = self._core()
        was = core.native.state.value if core.native is not None else "disabled"
        core.commissioner_stop(self._now())
        self._flush()
        return {"state": "disabled", "was": was}

    async def _m_joiner_add(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        core = self._core()
        c = core.native_active()
        eui = _parse_eui64(p.get("eui64", "*"))
        pskd = p.get("pskd")
        if not isinstance(pskd, str):
            raise InvalidArgument("'pskd' (the joining code) is required")
        timeout = _float_param(p, "timeout_s", 1.0, 86400.0)
        entry = c.add_joiner(
            pskd, eui64=eui, timeout=timeout if timeout is not None else 120.0, now=self._now()
        )
        core.pump_native(self._now())
        self._flush()
        return entry.as_dict(self._now())

    async def _m_joiner_remove(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        c = self._core().native_active()
        eui = _parse_eui64(p.get("eui64", "*"))
        removed = c.remove_joiner(eui64=eui, now=self._now())
        self._core().pump_native(self._now())
        self._flush()
        return {"removed": removed}

    async def _m_joiner_wait(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        """Wait until a joiner (``eui64`` or ``*`` for any) is finalized or fails."""
        c = self._core().native_active()
        eui = _parse_eui64(p.get("eui64", "*"))
        key = "*" if eui is None else f"eui64 {eui.hex()}"
        timeout = _float_param(p, "wait_s", 0.1, 3600.0) or 60.0
        entry = c.joiners.get(key)
        if entry is not None and entry.last_result is not None and not p.get("next", False):
            if entry.last_error is not None:
                raise entry.last_error
            if entry.last_result != "joined":
                raise CommissioningError(f"joiner {key}: {entry.last_result}")
            return {"joiner_id": entry.joiner_id.hex() if entry.joiner_id else None,
                    "entry": key, "result": "joined"}  # fmt: skip
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((key, fut))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise CommissioningError(
                f"no joiner result within {timeout:.0f} s",
                hint="Is the device in joining mode, in range, and on the same channel plan?",
            ) from None
        finally:
            self._waiters = [(k, f) for k, f in self._waiters if f is not fut]

    async def _m_sessions(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        core = self._core()
        st = core.status(self._now())
        return {
            "border_agent": {"port": self.ba_port, **st["border_agent"]},
            "leader": st["leader"],
            "native_commissioner": st["native_commissioner"],
            "events": list(self._history)[-int(p.get("events", 50) or 50) :],
        }

    async def _m_reload_dataset(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        ds = await asyncio.to_thread(load_network, self.settings)
        if ds is None:
            raise StateError("the Thread network state is missing")
        old = self.dataset
        if old is not None and (
            ds.channel != old.channel
            or ds.pan_id != old.pan_id
            or ds.network_key != old.network_key
        ):
            raise StateError(
                "channel, PAN ID or network key changed: restart the border router",
                hint="systemctl restart gateway-border-router",
            )
        self.dataset = ds
        self._core().set_dataset(ds)
        if self.settings.border_router.advertise_mdns:
            self.spawn(self._publish_mdns(), "mdns")
        return {"network_name": ds.network_name, "reloaded": True}

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        ds = self.dataset
        out: dict[str, Any] = {"radio_connected": self.radio.connected,
                               "radio_reconnects": self.radio.reconnects}  # fmt: skip
        if ds is not None:
            out["thread"] = {
                "network_name": ds.network_name,
                "channel": ds.channel,
                "pan_id": f"0x{ds.pan_id:04x}" if ds.pan_id is not None else None,
                "ext_pan_id": ds.ext_pan_id.hex() if ds.ext_pan_id else None,
            }
        out["uplink"] = self.uplink.status() if self.uplink is not None else None
        if self.core is not None:
            with contextlib.suppress(RuntimeError):
                out["border_agent_port"] = self.ba_port
                out["ext_addr"] = self.ext_addr.hex() if self.ext_addr else None
                out["commissioning"] = self.core.status(self._now())
                out["commissioning"]["tx"] = dict(self.tx_stats)
        if self.net is not None:
            with contextlib.suppress(RuntimeError):
                st = self.net.status(self._now())
                out["network"] = {
                    "role": st["role"],
                    "rloc16": st["rloc16"],
                    "partition_id": st["partition_id"],
                    "key_sequence": st["key_sequence"],
                    "children": st["children"]["attached"],
                    "max_children": st["children"]["max"],
                    "table_full": st["children"]["table_full"],
                }
        return out


def main() -> None:
    run_service(BorderRouterService)
