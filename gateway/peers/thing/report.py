"""The draft's step 9 over IP: once attached, a CBSB thing tells the user's app its result itself,
through the border router.

The delivery it received may carry item 0x80 (:class:`gateway.wire.cbsb.AppReport`): the app's
LAN address and port and the session's report key ``K_rep``. :class:`ResultReport` waits until
the thing has an address the app can answer (an OMR address: the app is off the mesh), then
sends a confirmable CoAP POST to ``coap://[app]:port/cbsb/v1/report`` whose payload is sealed
under ``K_rep`` (gateway.wire.cbsb_notice, kind 0x03), and retransmits it as RFC 7252 §4.2
says (ACK_TIMEOUT 2 s, randomised by up to 1.5, doubled, at most 4 retransmissions) until the
app's piggybacked 2.04 carries a sealed acknowledgement of the report's id. Anything else that
arrives on its port (another token, a forged or unsealed answer) is ignored and counted.

Sans-IO in the way :class:`gateway.peers.thing.attach.Exercise` is: events and the clock in,
datagrams out through the child core.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import GatewayError, ParseError
from gateway.thread.network.child import ChildCore
from gateway.thread.network.events import UdpReceived
from gateway.wire import cbsb_notice as notice
from gateway.wire.cbsb import AppReport
from gateway.wire.coap import CoapCode, MessageType, TmfMessage

__all__ = ["ACK_TIMEOUT", "MAX_RETRANSMIT", "REPORT_SRC_PORT", "ResultReport"]

ACK_TIMEOUT: Final = 2.0  # RFC 7252 §4.8
ACK_RANDOM_FACTOR: Final = 1.5
MAX_RETRANSMIT: Final = 4
REPORT_SRC_PORT: Final = 49210
SETTLE: Final = 1.0  # after the OMR address appeared: its registration reaches the parent first
_CHANGED: Final = 0x44  # 2.04


@dataclass
class ResultReport:
    """One report of ``dev_id``'s result to the app named in ``target``."""

    target: AppReport
    dev_id: bytes
    sid: bytes
    rng: random.Random = field(default_factory=random.SystemRandom)
    nid: str = field(default_factory=lambda: secrets.token_hex(6))
    sent: int = 0
    ignored: int = 0
    done: bool = False
    acked: bool = False
    _ready_at: float | None = None
    _next_at: float = 0.0
    _timeout: float = 0.0
    _first_sent: float | None = None
    _acked_at: float | None = None
    _mid: int = 0
    _token: bytes = b""
    _reported: bool = False
    _datagram: bytes = b""

    @property
    def dst(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(self.target.address)

    def _source(self, child: ChildCore) -> ipaddress.IPv6Address | None:
        return child.slaac[0] if child.slaac else None

    def event(self, ev: object, child: ChildCore, now: float) -> None:
        if self.done or not isinstance(ev, UdpReceived) or ev.dst_port != REPORT_SRC_PORT:
            return
        if ev.src != self.dst or ev.src_port != self.target.port:
            self.ignored += 1
            return
        try:
            msg = TmfMessage.from_bytes(ev.payload)
            if msg.token != self._token or msg.code != _CHANGED:
                raise ParseError("not the answer to the report")
            if msg.mtype is MessageType.CON:  # a separate response: acknowledge it
                ack = TmfMessage(MessageType.ACK, CoapCode.EMPTY, msg.mid)
                child.send_udp(ev.src, REPORT_SRC_PORT, ev.src_port, ack.to_bytes(), now,
                               src=ev.dst)  # fmt: skip
            kind, body = notice.open_with(self.target.key, self.sid, msg.payload)
        except GatewayError:  # malformed, another token, not sealed under K_rep
            self.ignored += 1
            return
        if kind == notice.KIND_ACK and body.get("id") == self.nid:
            self.done = self.acked = True
            self._acked_at = now

    def _body(self, child: ChildCore, src: ipaddress.IPv6Address, now: float) -> dict[str, Any]:
        st = child.status(now)
        return {
            "v": 1, "id": self.nid, "event": "attached", "dev_id": self.dev_id.hex(),
            "role": st["role"], "rloc16": st["rloc16"], "address": str(src),
            "parent": (st["parent"] or {}).get("ext_addr"), "partition_id": st["partition_id"],
        }  # fmt: skip

    def poll(self, child: ChildCore, now: float) -> list[tuple[str, dict[str, Any]]]:
        """Sends (or resends) the report when due; once, when it is over (acknowledged, or
        unanswered after the last retransmission), ``[("reported", result)]``."""
        if not self.done and child.attached and now >= self._next_at:
            self._step(child, now)
        if self.done and not self._reported:
            self._reported = True
            return [("reported", self.report())]
        return []

    def _step(self, child: ChildCore, now: float) -> None:
        src = self._source(child)
        if src is None:
            self._next_at = now + 0.2  # no OMR address yet: look again soon
            return
        if self._ready_at is None:
            self._ready_at = now
            self._next_at = now + SETTLE
            return
        if self.sent > MAX_RETRANSMIT:
            self.done = True  # the last retransmission's wait is over: unanswered
            return
        if self.sent == 0:
            self._mid = self.rng.getrandbits(16)
            self._token = self.rng.getrandbits(64).to_bytes(8, "big")
            self._timeout = ACK_TIMEOUT * self.rng.uniform(1.0, ACK_RANDOM_FACTOR)
            self._first_sent = now
            payload = notice.seal_with(self.target.key, self.sid, self._body(child, src, now),
                                       notice.KIND_REPORT)  # fmt: skip
            self._datagram = TmfMessage(MessageType.CON, CoapCode.POST, self._mid, self._token,
                                        notice.REPORT_PATH, payload).to_bytes()  # fmt: skip
        else:
            self._timeout *= 2  # a retransmission: the same message, byte for byte
        try:
            child.send_udp(self.dst, REPORT_SRC_PORT, self.target.port, self._datagram, now,
                           src=src)  # fmt: skip
        except GatewayError:
            pass  # lost like a datagram: retransmitted
        self.sent += 1
        self._next_at = now + self._timeout

    def report(self) -> dict[str, Any]:
        rtt = None
        if self._acked_at is not None and self._first_sent is not None:
            rtt = round((self._acked_at - self._first_sent) * 1000, 1)
        return {
            "dst": str(self.dst), "port": self.target.port, "sent": self.sent,
            "received": int(self.acked), "acked": self.acked, "id": self.nid,
            "ignored": self.ignored, "rtt_ms": rtt,
        }  # fmt: skip

    def next_timeout(self, child: ChildCore) -> float | None:
        if self.done and not self._reported:
            return 0.0
        if self.done or not child.attached:
            return None
        return self._next_at
