"""The group owner service: cloud-server-based bootstrapping (CBSB-1) on the gateway's radio.

It attaches to the radio service, shares the gateway's Thread network (the active dataset is what
it delivers to things), registers with the cloud at first start and keeps a mutually
authenticated link to it (``cloudlink``), opens bootstrapping windows the cloud grants and runs
the joins on the radio (``bootstrap``), tells the user's app over the LAN (``lannotify``) and
reports every result and error with the step of the draft's Figure 2 where it happened: to the
app, to the cloud, to the journal and in ``gwctl bootstrap``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace
from typing import Any

from gateway.errors import GatewayError
from gateway.group_owner.bootstrap import Bootstrapper, RadioParams
from gateway.group_owner.cloudlink import CloudLink
from gateway.group_owner.identity import Pairing
from gateway.group_owner.lannotify import LanNotifier
from gateway.radio.client import RadioClient, RxEvent
from gateway.runtime.jsonline import Connection, Handler
from gateway.runtime.logs import register_secret
from gateway.runtime.network import load_network, open_or_create_network
from gateway.runtime.service import Service, run_service
from gateway.runtime.uplink import Uplink, UplinkChange, follow_uplink
from gateway.wire import cbsb_notice as notice
from gateway.wire.cbsb import STATUS_HINTS, AppReport, BeaconFlags, Delivery, ItemType, Status
from gateway.wire.cbsb_gateway import JoinGrant
from gateway.wire.cbsb_session import EnrolleeFound, JoinCompleted
from gateway.wire.cbsb_steps import STATUS_STEP, STEPS, describe
from gateway.wire.cloudapi import CloudApiError, CloudUnreachable, format_claim_code
from gateway.wire.dataset import ActiveDataset

LOG = logging.getLogger(__name__)
# aiocoap logs every connection release at INFO: keep the journal for what a technician needs.
for _name in ("coap", "coap-server"):
    logging.getLogger(_name).setLevel(logging.WARNING)
CBSB_DISPATCH = 0x3C
KEY_SEQUENCE = 0
MAX_ERRORS = 50


class GroupOwnerService(Service):
    name = "group-owner"
    description = "group owner: cloud link, RandomKey broadcast, CBSB joins"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.radio = RadioClient(self.paths.radio_socket(), "group-owner")
        self.dataset: ActiveDataset | None = None
        self.cbsb_frames = 0
        self.cloud: CloudLink | None = None
        self.uplink: Uplink | None = None
        self.boot: Bootstrapper | None = None
        self.pairing: Pairing | None = None
        self.lan = LanNotifier()
        self.errors: deque[dict[str, Any]] = deque(maxlen=MAX_ERRORS)
        self.results: deque[dict[str, Any]] = deque(maxlen=MAX_ERRORS)
        self._notify_targets: dict[bytes, str] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.set_phase("waiting for the radio service")
        await self.radio.start(timeout=60.0)
        self.set_phase("loading the Thread network")
        self.dataset = ds = await open_or_create_network(self.settings, self.radio.energy_scan)
        assert ds.channel is not None and ds.pan_id is not None
        # The same channel and PAN as the border router: things join the gateway's network.
        await self.radio.set_channel(ds.channel)
        await self.radio.set_addresses(pan_id=ds.pan_id)
        gw_id = bytes.fromhex(str(self.radio.info.get("ext_addr", "")))
        if len(gw_id) != 8:
            raise GatewayError("the radio service did not report the radio's EUI-64")
        delivery = Delivery(thread_dataset=ds.to_bytes(), key_sequence=KEY_SEQUENCE).to_bytes()
        self.pairing = Pairing(self.state_dir)
        self.boot = Bootstrapper(self.radio, RadioParams(gw_id, ds.channel, ds.pan_id, delivery),
                                 self)  # fmt: skip
        self.cloud = CloudLink(self.state_dir, gw_id, self._on_cloud_event,
                               self.settings.group_owner.cloud_url,
                               factory_dir=self.paths.factory_dir)  # fmt: skip
        queue = await self.radio.subscribe(dispatch=[CBSB_DISPATCH, CBSB_DISPATCH], secured=False)
        self.spawn(self._cbsb_rx(queue), "cbsb-rx")
        self.spawn(self.boot.run(), "bootstrap")
        self.spawn(self.cloud.run(), "cloud-link")
        await self._start_uplink()
        self.set_phase("idle: no bootstrapping window open")

    async def _refresh_dataset(self) -> None:
        """Things get the network as it is when their window opens, not as it was when the
        service started: ``gwctl dataset passphrase`` (a new PSKc), ``gwctl dataset set`` or the
        REST API change it under a running service."""
        assert self.boot is not None
        ds = await asyncio.to_thread(load_network, self.settings)
        if ds is None or ds.channel is None or ds.pan_id is None or ds == self.dataset:
            return
        old = self.dataset
        if old is None or (ds.channel, ds.pan_id) != (old.channel, old.pan_id):
            await self.radio.set_channel(ds.channel)
            await self.radio.set_addresses(pan_id=ds.pan_id)
        self.dataset = ds
        delivery = Delivery(thread_dataset=ds.to_bytes(), key_sequence=KEY_SEQUENCE).to_bytes()
        self.boot.params = replace(self.boot.params, channel=ds.channel, pan_id=ds.pan_id,
                                   delivery=delivery)  # fmt: skip
        LOG.info("the Thread network changed: things now receive the current active dataset")

    async def _start_uplink(self) -> None:
        """Follow the uplink: the cloud link reconnects as soon as the network comes back or
        moves, without waiting for a dead connection to time out."""
        self.uplink = await follow_uplink(
            self.settings.network.uplink,
            self._on_uplink_change,
            self.spawn,
            without="the cloud link relies on its timeouts",
        )

    async def _on_uplink_change(self, change: UplinkChange) -> None:
        if change.reconnect and self.cloud is not None:
            LOG.info("uplink %s changed (%s): reconnecting to the cloud",
                     change.new.ifname, ", ".join(sorted(change.changed)))  # fmt: skip
            self.cloud.reconnect("the uplink changed")

    async def _cbsb_rx(self, queue: asyncio.Queue[RxEvent]) -> None:
        while True:
            ev = await queue.get()
            self.cbsb_frames += 1
            if self.boot is not None:
                self.boot.on_rx(ev)

    async def stop(self) -> None:
        if self.uplink is not None:
            await self.uplink.close()
        await self.lan.close()
        await self.radio.close()

    async def healthy(self) -> bool:
        return self.radio.connected or not self.radio.closing

    # --- cloud commands ----------------------------------------------------------------------

    async def _on_cloud_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("kind")
        boot = self.boot
        assert boot is not None and self.pairing is not None
        if kind == "paired":
            k = bytes.fromhex(str(ev["k_appgw"]))
            if len(k) == 32:
                await asyncio.to_thread(self.pairing.save, str(ev.get("owner") or ""), k)
                LOG.info("paired with the app of %s", ev.get("owner"))
            return
        sid = bytes.fromhex(str(ev.get("sid", "")))
        if len(sid) != 16:
            return
        if kind == "grant":
            psks: dict[bytes, bytes] = {}
            for d in ev.get("devices", []):
                psk = bytes.fromhex(d["psk"])
                register_secret(psk)
                psks[bytes.fromhex(d["dev_id"])] = psk
            window = float(ev.get("expires_in", 0))
            if window < 2:
                return
            self._notify_targets[sid] = str(ev.get("notify") or "")
            grant = JoinGrant(sid=sid, exp=int(ev["exp"]), mode=BeaconFlags(int(ev["mode"])),
                              window_s=window, psks=psks)  # fmt: skip
            await self._refresh_dataset()
            self.set_phase(f"bootstrapping window open (session {sid.hex()[:8]})")
            boot.open(grant, self._session_delivery(sid))
        elif kind == "psk":
            psk = bytes.fromhex(str(ev["psk"]))
            register_secret(psk)
            boot.provide_psk(sid, bytes.fromhex(str(ev["dev_id"])), psk)
        elif kind == "deny":
            deny_psk = bytes.fromhex(str(ev["psk"])) if ev.get("psk") else None
            boot.deny(sid, bytes.fromhex(str(ev["dev_id"])), deny_psk)
        elif kind == "close":
            boot.close(sid)
        elif kind == "report":
            self._cloud_report(sid, ev)
        elif kind == "evict":
            dev = str(ev.get("dev_id"))
            LOG.warning("the cloud evicted thing %s (not bound in time)", dev)
            self.results.append({"time": time.time(), "sid": sid.hex(), "dev_id": dev,
                                 "result": "EVICTED"})  # fmt: skip

    def _session_delivery(self, sid: bytes) -> bytes | None:
        """The delivery of session ``sid``: the gateway's, plus where the things report their
        result to the app over IP (step 9 through the border router) when border routing is on
        (``[border_router] infra_interface`` set: without it nothing routes between the mesh and
        the LAN), the app listens on an address the Thread network can route to (an IPv6
        unicast beyond link-local and loopback) and the gateway is paired with it. None: the
        gateway's delivery as it is."""
        if not self.settings.border_router.infra_interface:
            return None
        app = notice.report_target(self._notify_targets.get(sid, ""))
        k = self.pairing.k_appgw if self.pairing is not None else None
        if app is None or k is None or self.boot is None:
            return None
        base = Delivery.from_bytes(self.boot.params.delivery)
        item = AppReport(notice.report_key(k, sid), app[0].packed, app[1])
        extra = tuple(e for e in base.extra if e[0] != ItemType.APP_REPORT)
        try:
            return replace(base, extra=(*extra, (ItemType.APP_REPORT, item.to_bytes()))).to_bytes()
        except GatewayError:
            return None  # no room next to the dataset: the LAN notices still tell the app

    def _cloud_report(self, sid: bytes, ev: dict[str, Any]) -> None:
        """A failure the cloud saw (for example a refused binding, step 10): into gwctl and the
        journal; the app already heard it from the cloud."""
        try:
            status = Status[str(ev.get("status"))]
        except KeyError:
            return
        step = int(ev.get("step") or STATUS_STEP.get(status, 0))
        dev = str(ev.get("dev_id") or "") or None
        self.errors.append({
            "time": time.time(), "sid": sid.hex(), "dev_id": dev, "status": status.name,
            "step": step, "step_name": STEPS.get(step, ""), "epoch": None,
            "hint": STATUS_HINTS.get(status, ""), "detail": str(ev.get("detail", ""))[:200],
            "source": "cloud",
        })  # fmt: skip
        LOG.warning("cloud reports %s for %s: %s (%s)", status.name, dev or "the session",
                    describe(status, step), ev.get("detail", ""),
                    extra={"CBSB_STATUS": status.name, "CBSB_STEP": step,
                           "CBSB_DEV_ID": dev or "", "CBSB_SESSION": sid.hex()[:8]})  # fmt: skip

    def _background(self, coro: Any, name: str) -> None:
        """A side task (LAN notification, cloud verification) whose failure must never stop the
        service: it is logged and the bootstrap goes on."""

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                LOG.warning("%s failed: %s", name, exc)

        self.spawn(guarded(), name)

    # --- hooks from the bootstrapper ---------------------------------------------------------

    def _lan(self, sid: bytes, body: dict[str, Any]) -> None:
        target = self._notify_targets.get(sid)
        k = self.pairing.k_appgw if self.pairing is not None else None
        if not target or k is None or self.boot is None:
            return
        body = {"v": 1, "gw_id": self.boot.params.gw_id.hex(), "ts": int(time.time()), **body}
        self._background(self.lan.notify(target, k, sid, body), "lan-notify")

    def window_open(self, sid: bytes, channel: int) -> None:
        assert self.cloud is not None
        self.cloud.post("gw/report", {"event": "window_open", "sid": sid.hex(), "channel": channel})
        self._lan(sid, {"event": "window_open", "step": 4, "channel": channel})

    def report(self, sid: bytes, status: Status, dev_id: bytes | None, epoch: int | None,
               link: dict[str, int]) -> None:  # fmt: skip
        step = STATUS_STEP.get(status, 0)
        entry = {
            "time": time.time(), "sid": sid.hex() if sid else None,
            "dev_id": dev_id.hex() if dev_id else None, "status": status.name, "step": step,
            "step_name": STEPS.get(step, ""), "epoch": epoch, "hint": STATUS_HINTS.get(status, ""),
            **link,
        }  # fmt: skip
        self.errors.append(entry)
        LOG.warning(
            "bootstrap %s for %s: %s", status.name, dev_id.hex() if dev_id else "the session",
            describe(status, step),
            extra={"CBSB_STATUS": status.name, "CBSB_STEP": step,
                   "CBSB_DEV_ID": dev_id.hex() if dev_id else "",
                   "CBSB_SESSION": sid.hex()[:8] if sid else ""},
        )  # fmt: skip
        assert self.cloud is not None
        body: dict[str, Any] = {"event": "report", "status": status.name, "step": step,
                                "detail": STATUS_HINTS.get(status, "")}  # fmt: skip
        if sid:
            body["sid"] = sid.hex()
        if dev_id:
            body["dev_id"] = dev_id.hex()
        if epoch is not None:
            body["epoch"] = epoch
        body.update(link)
        self.cloud.post("gw/report", body)
        if sid:
            self._lan(sid, {"event": "report", "status": status.name, "step": step,
                            "dev_id": dev_id.hex() if dev_id else None, "epoch": epoch,
                            **link})  # fmt: skip

    def enrollee(self, sid: bytes, found: EnrolleeFound) -> None:
        self._background(self._enrollee(sid, found), "enrollee")

    async def _enrollee(self, sid: bytes, found: EnrolleeFound) -> None:
        """Discover mode (§10.6): the cloud verifies the proof and asks the user; 5 s timeout,
        2 retries, then CLOUD_UNREACHABLE to the thing (hint), the app, gwctl and the journal."""
        assert self.cloud is not None and self.boot is not None
        body = {"sid": sid.hex(), "dev_id": found.dev_id.hex(), "epoch": found.epoch,
                "m0": found.m0.hex(), "m1": found.m1.hex()}  # fmt: skip
        res: dict[str, Any] | None = None
        for _ in range(3):
            try:
                res = await self.cloud.call("gw/enrollee", body, timeout=5.0)
                break
            except CloudUnreachable:
                await asyncio.sleep(0.3)
            except CloudApiError as exc:
                LOG.info("cloud refused enrollee %s: %s", found.dev_id.hex(), exc.message)
                return
        if res is None:
            self.boot.hint_pending(sid, found.dev_id, Status.CLOUD_UNREACHABLE)
            self.report(sid, Status.CLOUD_UNREACHABLE, found.dev_id, found.epoch, {})
            return
        result = res.get("result")
        psk = bytes.fromhex(res["psk"]) if isinstance(res.get("psk"), str) else None
        if psk is not None:
            register_secret(psk)
        if result == "psk" and psk is not None:
            self.boot.provide_psk(sid, found.dev_id, psk)
        elif result in ("denied", "unknown", "auth_failed"):
            self.boot.deny(sid, found.dev_id, psk if result == "denied" else None)
        elif result == "pending":
            self._lan(sid, {"event": "found", "step": 3, "dev_id": found.dev_id.hex()})
            self.report(sid, Status.PENDING_USER_CONFIRM, found.dev_id, found.epoch, {})

    def joined(self, sid: bytes, done: JoinCompleted, link: dict[str, int]) -> None:
        assert self.cloud is not None
        LOG.info("thing %s joined (session %s)", done.dev_id.hex(), sid.hex()[:8])
        self.results.append({"time": time.time(), "sid": sid.hex(), "dev_id": done.dev_id.hex(),
                             "result": "JOINED", **link})  # fmt: skip
        self.cloud.post("gw/joined", {
            "sid": sid.hex(), "dev_id": done.dev_id.hex(), "epoch": done.epoch,
            "n_t": done.n_t.hex(), "bp": done.bind_proof.hex(), "caps": done.caps,
            "m0": done.m0.hex(),
        })  # fmt: skip
        self._lan(sid, {"event": "joined", "status": "OK", "step": 9, "dev_id": done.dev_id.hex(),
                        "bp": done.bind_proof.hex(), "epoch": done.epoch, **link})  # fmt: skip

    def ended(self, sid: bytes, status: Status) -> None:
        assert self.cloud is not None
        LOG.info("bootstrapping window closed (session %s): %s", sid.hex()[:8], status.name)
        self.set_phase("idle: no bootstrapping window open")
        self.cloud.post("gw/report", {"event": "ended", "sid": sid.hex(), "status": status.name,
                                      "step": STATUS_STEP.get(status, 0)})  # fmt: skip
        self._lan(sid, {"event": "ended", "status": status.name})

    # --- status and control ------------------------------------------------------------------

    def bootstrap_status(self) -> dict[str, Any]:
        cloud = self.cloud.status() if self.cloud is not None else None
        factory = self.cloud.factory if self.cloud is not None else None
        paired = self.pairing is not None and self.pairing.k_appgw is not None
        out: dict[str, Any] = {
            "gw_id": self.boot.params.gw_id.hex() if self.boot else None,
            "channel": self.boot.params.channel if self.boot else None,
            "serial": factory.serial if factory else None,
            # the code printed on the box, shown until the app claimed the gateway
            "claim_code": format_claim_code(factory.claim_code.replace("-", ""))
            if factory and not paired
            else None,
            "paired": paired,
            "owner": self.pairing.owner if self.pairing and paired else None,
            "cloud": cloud,
            "errors": list(self.errors)[-10:],
            "results": list(self.results)[-20:],
            "lan_notify": {
                "sent": self.lan.sent,
                "acked": self.lan.acked,
                "unacked": self.lan.unacked,
            },  # fmt: skip
        }
        if self.boot is not None:
            out.update(self.boot.snapshot())
        return out

    def status(self) -> dict[str, Any]:
        return {
            "radio_connected": self.radio.connected,
            "radio_reconnects": self.radio.reconnects,
            "cbsb_frames": self.cbsb_frames,
            "cbsb": self.bootstrap_status(),
            "uplink": self.uplink.status() if self.uplink is not None else None,
        }

    def methods(self) -> dict[str, Handler]:
        async def bootstrap(_c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
            return self.bootstrap_status()

        async def bootstrap_errors(_c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
            return {"errors": list(self.errors)}

        async def bootstrap_close(_c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
            s = self.boot.session if self.boot is not None else None
            if s is None:
                return {"closed": None}
            assert self.boot is not None
            self.boot.close(s.sid)
            return {"closed": s.sid.hex()}

        return {
            "bootstrap": bootstrap,
            "bootstrap_errors": bootstrap_errors,
            "bootstrap_close": bootstrap_close,
        }


def main() -> None:
    run_service(GroupOwnerService)
