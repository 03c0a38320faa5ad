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
from gateway.thread.commissioning.dnssd import instance_name, meshcop_txt, state_bitmap
from gateway.thread.commissioning.leader import KEEP_ALIVE_TIMEOUT
from gateway.thread.errors import CommissionerNotActive, CommissioningError
from gateway.thread.link import SECURITY_LEVEL, LinkSecurity
from gateway.wire.dataset import ActiveDataset
from gateway.wire.mac802154 import ExtAddress, MacFrame

LOG = logging.getLogger(__name__)
KEY_SEQUENCE = 0
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
        self._txq: asyncio.Queue[OutFrame] = asyncio.Queue(maxsize=4096)
        self._wake = asyncio.Event()
        self._kek: bytes | None = None
        self._publisher: Any = None
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self._native_error: CommissioningError | None = None
        self.tx_stats = {"frames": 0, "failed": 0, "kek_frames": 0}

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
        await self.radio.set_addresses(pan_id=ds.pan_id, short_addr=0x0000)
        _mle_key, mac_key = network_key_derivation(ds.network_key, KEY_SEQUENCE)
        await self.radio.register_key(
            "thread-mac", mac_key, key_id_mode=1, key_index=mac_key_index(KEY_SEQUENCE)
        )
        ext = self.radio.info.get("ext_addr")
        if not isinstance(ext, str):
            raise StateError("the radio service did not report its extended address")
        self.ext_addr = ExtAddress.from_hex(ext)
        loop = asyncio.get_running_loop()
        self.core = BorderRouterCore(
            ds,
            self.ext_addr,
            rloc16=0x0000,
            key_sequence=KEY_SEQUENCE,
            keep_alive_timeout=self._keep_alive_timeout(),
        )
        self.core.on_native_event = self._native_event
        unsecured = await self.radio.subscribe(
            maxsize=1024, frame_types=[1], secured=False, dispatch=[0x40, 0xFF]
        )
        secured = await self.radio.subscribe(maxsize=256, frame_types=[1], secured=True)
        self.spawn(self._rx_loop(unsecured), "rx-unsecured")
        self.spawn(self._rx_loop(secured), "rx-secured")
        self.spawn(self._tx_loop(), "tx")
        self.spawn(self._timer_loop(), "timers")
        self.set_phase("opening the border agent")
        await self._open_border_agent(loop)
        await self._start_uplink()
        if self.settings.border_router.advertise_mdns:
            self.spawn(self._publish_mdns(), "mdns")
        self.set_phase(
            f"serving Thread network '{ds.network_name}' on channel {ds.channel}; "
            f"border agent on UDP {self.ba_port}"
        )

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
        return meshcop_txt(
            ext_addr=self.ext_addr,
            network_name=ds.network_name or "",
            ext_pan_id=ds.ext_pan_id or bytes(8),
            state=state_bitmap(),
            active_timestamp=ds.active_timestamp,
            partition_id=int.from_bytes(self.ext_addr.octets[4:], "big"),
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
        self._wake.set()

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
            self.core.frame_received(
                frame, self._now(), plain=plain, rssi=ev.rssi, lqi=ev.lqi, channel=ev.channel
            )
            self._flush()

    async def _tx_loop(self) -> None:
        while True:
            of = await self._txq.get()
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

    async def _timer_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            core = self.core
            assert core is not None
            t = core.next_timeout()
            delay = None if t is None else max(0.0, t - loop.time())
            self._wake.clear()
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            core.poll(loop.time())
            self._flush()
            self._wake.clear()

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
        }

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
        return out


def main() -> None:
    run_service(BorderRouterService)
