"""The radio service: owns the radio and the MAC, and serves the radio socket to its clients.

It assigns MAC sequence numbers, applies MAC security with the keys its clients register, takes
outgoing frame counters from a persistent store that never reuses one (reserve-ahead, as
OpenThread does), checks and removes security on received frames (with replay protection), and
fans received frames out to subscriptions. Protocol: docs/sockets.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from drivers.errors import RadioError, RadioNotResponding
from drivers.fcs import append_fcs
from drivers.radio import CHANNELS, Radio, RxFrame, open_radio
from gateway.errors import CryptoError, InvalidArgument, ParseError
from gateway.radio.protocol import RxFilter, bool_param, hex_bytes, int_param
from gateway.runtime.jsonline import RADIO_GROUP, Connection, Handler, JsonLineServer
from gateway.runtime.logs import register_secret
from gateway.runtime.service import Service, run_service
from gateway.runtime.state import FrameCounterStore
from gateway.wire.mac802154 import (
    AuxSecurityHeader,
    ExtAddress,
    FrameType,
    MacFrame,
    secure,
    unsecure,
)

LOG = logging.getLogger(__name__)
MAX_KEYS = 64  # per connection
MAX_KEYS_TOTAL = 256
MAX_SUBSCRIPTIONS = 16  # per connection
REPLAY_TABLE = 512


@dataclass(frozen=True, eq=False)
class _Key:
    """A key one client registered: its key id is that client's own name for it, and only that
    client may use it, replace it or remove it, and sees the frames it opens."""

    key_id: str
    key: bytes
    key_id_mode: int
    key_index: int | None
    key_source: bytes
    owner: Connection

    def __repr__(self) -> str:
        return f"_Key({self.key_id!r}, mode {self.key_id_mode}, index {self.key_index})"

    @property
    def counter_id(self) -> str:
        """Where this key's outgoing frame counter is kept: a fingerprint of the key itself, not
        the client's name for it, so the same key registered under another name (after a client
        restart, say) continues its counter instead of reusing nonces. One-way: no key material
        can be recovered from it."""
        return "key-" + hashlib.sha256(b"gateway frame counter\x00" + self.key).hexdigest()[:16]


class RadioService(Service):
    name = "radio"
    description = "owns the 802.15.4 radio and its MAC; serves the radio socket"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.radio: Radio | None = None
        self.counters_store: FrameCounterStore | None = None
        self.server: JsonLineServer | None = None
        self.ext_addr = ExtAddress(bytes(8))
        # (key id mode, key index, key source) -> the keys registered for it, every client's
        self._rx_keys: dict[tuple[int, int | None, bytes], list[_Key]] = {}
        self._replay: dict[tuple[bytes, str], int] = {}
        self._dsn = int.from_bytes(os.urandom(1), "big")
        self._next_sub = 1
        self.stats = {
            "tx_requests": 0,
            "tx_secured": 0,
            "rx_delivered": 0,
            "rx_decrypted": 0,
            "rx_mic_failures": 0,
            "rx_replays": 0,
            "rx_unparsed": 0,
            "events_dropped": 0,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self.settings.radio
        self.set_phase("loading frame counters")
        self.counters_store = FrameCounterStore(
            self.state_dir / "radio-frame-counters.json", s.frame_counter_reserve
        )
        self.set_phase(f"opening radio {s.url}")
        radio = open_radio(s.url)
        await radio.open()
        self.radio = radio
        await radio.set_tx_power(s.tx_power_dbm)
        self.ext_addr = ExtAddress(radio.info.eui64)
        await radio.set_addresses(ext_addr=radio.info.eui64)
        self.server = JsonLineServer(
            self.paths.radio_socket(), self._socket_methods(), self._gone, group=RADIO_GROUP
        )
        await self.server.start()
        self.spawn(self._rx_loop(), "rx")
        self.set_phase(f"ready on channel {radio.channel}")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self.radio is not None:
            await self.radio.close()

    async def healthy(self) -> bool:
        return self.radio is not None and self.radio.healthy

    def status(self) -> dict[str, Any]:
        r = self.radio
        out: dict[str, Any] = {"clients": len(self.server.connections) if self.server else 0}
        if r is not None:
            out["radio"] = {
                **r.info.as_dict(),
                "channel": r.channel,
                "healthy": r.healthy,
                "counters": r.counters.as_dict(),
            }
        out["mac"] = dict(self.stats)
        if self.counters_store is not None:
            store = self.counters_store
            keys = self._all_keys()
            names = [k.key_id for k in keys]
            out["frame_counters"] = {
                (k.key_id if names.count(k.key_id) == 1 else f"{_client(k.owner)}/{k.key_id}"):
                store.peek(k.counter_id)
                for k in keys
            }  # fmt: skip
        return out

    def _all_keys(self) -> list[_Key]:
        conns = self.server.connections if self.server is not None else []
        return [k for c in conns for k in _conn_keys(c).values()]

    def _reindex_keys(self) -> None:
        index: dict[tuple[int, int | None, bytes], list[_Key]] = {}
        for k in self._all_keys():
            index.setdefault((k.key_id_mode, k.key_index, k.key_source), []).append(k)
        self._rx_keys = index

    def methods(self) -> dict[str, Handler]:
        async def counters(_c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
            return self.status()

        return {"counters": counters}

    # ------------------------------------------------------------------ receive

    async def _rx_loop(self) -> None:
        assert self.radio is not None
        with self.radio.subscribe(maxsize=1024) as sub:
            async for frame in sub:
                self._dispatch(frame, tx=False)
        if self.radio is not None and not self.radio.healthy:
            self.fail("the radio failed and could not be recovered")

    def _dispatch(self, frame: RxFrame | None, tx: bool, psdu: bytes | None = None) -> None:
        if self.server is None:
            return
        raw = frame.psdu if frame is not None else (psdu or b"")
        event: dict[str, Any] = {
            "event": "rx",
            "psdu": raw.hex(),
            "tx": tx,
            "t": frame.wall_time if frame is not None else time.time(),
        }
        if frame is not None:
            event.update(
                channel=frame.channel, rssi=frame.rssi_dbm, lqi=frame.lqi, crc_ok=frame.crc_ok
            )
        try:
            mf = MacFrame.from_bytes(raw, fcs=True)
        except ParseError:
            self.stats["rx_unparsed"] += 1
            mf = None
        secured = bool(mf is not None and mf.security is not None)
        first: int | None = None
        if mf is not None and not secured and mf.payload:
            first = mf.payload[0]
        # A secured frame that a key opened: its plaintext goes to the clients that registered
        # that key, and to nobody else (they get the frame as it was on the air).
        opened: dict[Connection, tuple[dict[str, Any], int | None]] = {}
        if mf is not None and secured and not tx:
            result = self._unsecure(mf, event)
            if result is not None:
                plain, opener, extra = result
                for k in self._rx_keys.get(_key_slot(opener), []):
                    if k.key == opener.key:
                        opened[k.owner] = ({**extra, "key_id": k.key_id},
                                           plain.payload[0] if plain.payload else None)  # fmt: skip
        ftype = int(mf.frame_type) if mf is not None else (raw[0] & 7 if raw else 0)
        event["secured"] = secured
        for conn in list(self.server.connections):
            subs: dict[int, RxFilter] = conn.data.get("subs", {})
            mine = opened.get(conn)
            for sid, flt in subs.items():
                if tx and not flt.include_tx:
                    continue
                if not flt.matches(ftype, secured, mine[1] if mine else first):
                    continue
                ev = {**event, **mine[0], "sub": sid} if mine else {**event, "sub": sid}
                if not conn.send(ev, droppable=True):
                    self.stats["events_dropped"] += 1
                else:
                    self.stats["rx_delivered"] += 1

    def _unsecure(
        self, mf: MacFrame, event: dict[str, Any]
    ) -> tuple[MacFrame, _Key, dict[str, Any]] | None:
        """The plaintext, the key that opened it and what its owners are told; None (with the
        reason in ``event``) when no registered key opens the frame."""
        sec = mf.security
        assert sec is not None
        candidates = self._rx_keys.get((sec.key_id_mode, sec.key_index, sec.key_source), [])
        event["decrypted"] = False
        if not candidates or sec.mic_length == 0:
            # levels 0 and 4 carry no MIC: nothing shows the sender holds the key, so such a
            # frame is neither reported as the key's nor allowed to move the replay window
            return None
        src = mf.src if isinstance(mf.src, ExtAddress) else None
        if src is None:
            return None  # nonce needs the sender's extended address: left to the client
        plain: MacFrame | None = None
        key = candidates[0]
        tried: set[bytes] = set()
        for key in candidates:  # clients may hold different keys for one slot
            if key.key in tried:
                continue
            tried.add(key.key)
            try:
                plain = unsecure(mf, key.key, ext_src=src)
                break
            except CryptoError:
                continue
        if plain is None:
            self.stats["rx_mic_failures"] += 1
            event["mic_ok"] = False
            return None
        fc = sec.frame_counter or 0
        rk = (src.to_air(), key.counter_id)  # per key material: a new key starts a new window
        last = self._replay.get(rk)
        if last is not None and fc <= last:
            self.stats["rx_replays"] += 1
            event["replay"] = True
            return None
        if len(self._replay) >= REPLAY_TABLE and rk not in self._replay:
            self._replay.pop(next(iter(self._replay)))
        self._replay[rk] = fc
        self.stats["rx_decrypted"] += 1
        extra = {
            "decrypted": True,
            "frame_counter": fc,
            "plain": plain.header_bytes().hex() + plain.payload.hex(),
        }
        return plain, key, extra

    # ------------------------------------------------------------------ radio socket

    def _gone(self, conn: Connection) -> None:
        had_keys = bool(_conn_keys(conn))
        conn.data.clear()
        if had_keys:  # a client's keys go with it (it registers them again when it comes back)
            self._reindex_keys()

    def _socket_methods(self) -> dict[str, Handler]:
        return {
            "hello": self._hello,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "transmit": self._transmit,
            "set_channel": self._set_channel,
            "set_addresses": self._set_addresses,
            "set_tx_power": self._set_tx_power,
            "set_frame_pending": self._set_frame_pending,
            "energy_scan": self._energy_scan,
            "register_key": self._register_key,
            "remove_key": self._remove_key,
            "status": self._status,
        }

    def _radio(self) -> Radio:
        if self.radio is None or not self.radio.healthy:
            raise RadioNotResponding("the radio is not available")
        return self.radio

    async def _hello(self, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        client = p.get("client", "?")
        if not isinstance(client, str) or len(client) > 64:
            raise InvalidArgument("'client' must be a short string")
        conn.data["client"] = client
        r = self._radio()
        return {"protocol": 1, "radio": r.info.as_dict(), "channel": r.channel,
                "ext_addr": self.ext_addr.hex()}  # fmt: skip

    async def _status(self, _c: Connection, _p: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    async def _subscribe(self, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        flt = RxFilter.from_params(p)
        subs: dict[int, RxFilter] = conn.data.setdefault("subs", {})
        if len(subs) >= MAX_SUBSCRIPTIONS:
            raise InvalidArgument(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        sid = self._next_sub
        self._next_sub += 1
        subs[sid] = flt
        return {"sub": sid}

    async def _unsubscribe(self, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        sid = int_param(p, "sub", 1, 2**31)
        conn.data.get("subs", {}).pop(sid, None)
        return {"sub": sid}

    async def _set_channel(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        ch = int_param(p, "channel", CHANNELS.start, CHANNELS.stop - 1)
        await self._radio().set_channel(ch)
        return {"channel": ch}

    async def _set_addresses(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        pan = p.get("pan_id")
        short = p.get("short_addr")
        if pan is not None:
            int_param(p, "pan_id", 0, 0xFFFF)
        if short is not None:
            int_param(p, "short_addr", 0, 0xFFFF)
        ext = hex_bytes(p, "ext_addr", 8, 8) if "ext_addr" in p else None
        coord = p.get("coordinator")
        if coord is not None and not isinstance(coord, bool):
            raise InvalidArgument("'coordinator' must be true or false")
        await self._radio().set_addresses(
            pan_id=pan, short_addr=short, ext_addr=ext, coordinator=coord
        )
        if ext is not None:
            self.ext_addr = ExtAddress(ext)
        return {"ext_addr": self.ext_addr.hex()}

    async def _set_tx_power(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        dbm = p.get("dbm")
        # JSON lets NaN and 1e400 (infinity) through; NaN configured the lowest power table step
        if isinstance(dbm, bool) or not isinstance(dbm, int | float) or not math.isfinite(dbm):
            raise InvalidArgument("'dbm' must be a number")
        return {"dbm": await self._radio().set_tx_power(float(dbm))}

    async def _set_frame_pending(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        """The Frame Pending bit in the auto-ACKs of MAC Data Requests (chip-wide: the
        AT86RF233's AACK_SET_PD). A parent of sleepy children keeps it on and answers a poll
        with nothing queued with an empty frame, as OpenThread does on radios without a
        source-match table."""
        on = p.get("on")
        if not isinstance(on, bool):
            raise InvalidArgument("'on' must be true or false")
        await self._radio().set_frame_pending(on)
        return {"on": on}

    async def _energy_scan(self, _c: Connection, p: dict[str, Any]) -> dict[str, Any]:
        chans = p.get("channels", list(CHANNELS))
        if (
            not isinstance(chans, list)
            or not chans
            or not all(isinstance(c, int) and c in CHANNELS for c in chans)
        ):
            raise InvalidArgument("'channels' must be a list of channels 11..26")
        dur = p.get("duration", 0.05)
        if isinstance(dur, bool) or not isinstance(dur, int | float) or not 0.001 <= dur <= 10:
            raise InvalidArgument("'duration' must be within 0.001..10 s")
        res = await self._radio().energy_scan(chans, float(dur))
        return {"channels": [{"channel": c, "ed_dbm": res[c]} for c in chans]}

    async def _register_key(self, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        key_id = p.get("key_id")
        if not isinstance(key_id, str) or not 1 <= len(key_id) <= 32:
            raise InvalidArgument("'key_id' must be a string of 1..32 characters")
        key = hex_bytes(p, "key", 16, 16)
        mode = int_param(p, "key_id_mode", 0, 2, 1)
        index = int_param(p, "key_index", 0, 255) if mode else None
        source = hex_bytes(p, "key_source", 0, 8) if "key_source" in p else b""
        if len(source) != (0, 0, 4, 8)[mode]:
            raise InvalidArgument(
                f"key id mode {mode} needs a {(0, 0, 4, 8)[mode]}-byte key_source"
            )
        keys = _conn_keys(conn)
        if len(keys) >= MAX_KEYS and key_id not in keys:
            raise InvalidArgument(f"at most {MAX_KEYS} keys per client")
        if len(self._all_keys()) >= MAX_KEYS_TOTAL and key_id not in keys:
            raise InvalidArgument(f"at most {MAX_KEYS_TOTAL} keys in all")
        register_secret(key)
        # The slot (mode, index, source) of the key this one replaces, if any, is freed by
        # the re-index; another client's keys are never touched.
        keys[key_id] = _Key(key_id, key, mode, index, source, conn)
        conn.data["keys"] = keys
        self._reindex_keys()
        return {"key_id": key_id}

    async def _remove_key(self, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        key_id = p.get("key_id")
        k = _conn_keys(conn).pop(key_id, None) if isinstance(key_id, str) else None
        if k is not None:
            self._reindex_keys()
        return {"removed": k is not None}

    async def _transmit(self, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        radio = self._radio()
        raw = hex_bytes(p, "frame", 3, 125)
        csma = bool_param(p, "csma", True)
        retries = int_param(p, "retries", 0, 15) if p.get("retries") is not None else None
        auto_seq = bool_param(p, "auto_seq", True)
        sec_p = p.get("security")
        self.stats["tx_requests"] += 1
        try:
            frame = MacFrame.from_bytes(raw)
        except ParseError as exc:
            raise InvalidArgument(f"'frame' is not a valid MAC frame: {exc}") from None
        if auto_seq and frame.seq is not None and frame.frame_type != FrameType.ACK:
            self._dsn = (self._dsn + 1) & 0xFF
            frame = replace(frame, seq=self._dsn)
        fc: int | None = None
        if sec_p is not None:
            if not isinstance(sec_p, dict):
                raise InvalidArgument("'security' must be an object")
            if frame.security is not None:
                raise InvalidArgument("send the frame unsecured; the radio service secures it")
            key = _conn_keys(conn).get(sec_p.get("key_id"))  # type: ignore[arg-type]
            if key is None:
                raise InvalidArgument("unknown 'key_id': register the key first")
            level = int_param(sec_p, "level", 1, 7, 5)
            assert self.counters_store is not None
            fc = await self.counters_store.take(key.counter_id)  # on disk before the frame leaves
            aux = AuxSecurityHeader(level, key.key_id_mode, fc, key.key_source, key.key_index)
            try:
                frame = secure(replace(frame, security=aux), key.key, ext_src=self.ext_addr)
            except (InvalidArgument, CryptoError) as exc:
                raise InvalidArgument(f"cannot secure this frame: {exc}") from None
            self.stats["tx_secured"] += 1
        out = frame.to_bytes()
        if len(out) > 125:
            raise InvalidArgument(f"the secured frame is {len(out)} bytes; at most 125 fit")
        try:
            res = await radio.transmit(out, csma=csma, retries=retries)
        except RadioError:
            if not radio.healthy:
                self.fail("the radio failed and could not be recovered")
            raise
        self._dispatch(None, tx=True, psdu=append_fcs(out))
        return {
            "status": res.status.value,
            "ok": res.ok,
            "frame_retries": res.frame_retries,
            "csma_retries": res.csma_retries,
            "seq": frame.seq,
            "frame_counter": fc,
        }


def _conn_keys(conn: Connection) -> dict[str, _Key]:
    keys: dict[str, _Key] = conn.data.get("keys", {})
    return keys


def _key_slot(k: _Key) -> tuple[int, int | None, bytes]:
    return (k.key_id_mode, k.key_index, k.key_source)


def _client(conn: Connection) -> str:
    return str(conn.data.get("client", "?"))


def main() -> None:
    run_service(RadioService)


__all__ = ["RadioService", "main"]
