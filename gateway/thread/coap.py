"""A sans-IO CoAP endpoint for TMF/MeshCoP exchanges: message IDs, tokens, confirmable
retransmission, duplicate detection and response matching (RFC 7252 §4, with OpenThread's
parameters: ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4; fact sheet §2.1).

The messages themselves are :class:`~gateway.wire.coap.TmfMessage` values, encoded and decoded
by aiocoap's codec; this module only keeps the exchange state. Whoever owns the transport sends
what :meth:`CoapEndpoint.request` / :meth:`CoapEndpoint.respond` return and what
:meth:`CoapEndpoint.poll` asks to retransmit, and feeds every received message to
:meth:`CoapEndpoint.receive`.
"""

from __future__ import annotations

import random
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.wire.coap import (
    CoapCode,
    MessageType,
    TmfMessage,
    TmfUri,
    empty_ack,
    tmf_request,
    tmf_response,
)
from gateway.wire.meshcop import MeshcopTlv
from gateway.wire.tlv import Tlv

__all__ = ["CoapEndpoint", "Incoming", "Pending"]

ACK_TIMEOUT: Final = 2.0
ACK_RANDOM_FACTOR: Final = 1.5
MAX_RETRANSMIT: Final = 4
DEDUP_ENTRIES: Final = 32
DEDUP_LIFETIME: Final = 60.0


@dataclass
class Pending:
    """An outstanding request awaiting its response."""

    message: TmfMessage
    context: Any
    deadline: float  # next retransmission (CON) or give-up time
    timeout: float
    retransmits: int = 0
    acked: bool = False  # an empty ACK arrived: wait for the separate response


@dataclass(frozen=True)
class Incoming:
    """What :meth:`CoapEndpoint.receive` made of a message.

    ``kind``: ``"request"`` (new; answer it), ``"duplicate"`` (a retransmitted request;
    ``replies`` holds what to send again), ``"response"`` (``context`` of the matching request),
    ``"empty_ack"`` (a separate response will follow), ``"reset"`` or ``"unmatched"``.
    """

    kind: str
    message: TmfMessage
    context: Any = None
    replies: tuple[TmfMessage, ...] = ()


@dataclass
class CoapEndpoint:
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    ack_timeout: float = ACK_TIMEOUT
    max_retransmit: int = MAX_RETRANSMIT
    non_timeout: float = 10.0  # how long a NON request waits for its (NON) response
    _mid: int = -1
    _pending: dict[bytes, Pending] = field(default_factory=dict)
    _seen: OrderedDict[int, tuple[float, tuple[TmfMessage, ...]]] = field(
        default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        if self._mid < 0:
            self._mid = self.rng.randrange(0, 0x10000)

    def next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def new_token(self) -> bytes:
        while True:
            token = self.rng.randbytes(2)
            if token not in self._pending:
                return token

    # -- sending --------------------------------------------------------------------------------

    def request(
        self,
        uri: TmfUri | str,
        tlvs: Iterable[MeshcopTlv | Tlv] = (),
        *,
        now: float,
        confirmable: bool = True,
        context: Any = None,
        expect_response: bool = True,
    ) -> TmfMessage:
        """A new request (POST); tracked for its response unless ``expect_response`` is false
        (notifications such as RLY_RX/RLY_TX/UDP_TX are NON and unanswered)."""
        msg = tmf_request(
            uri,
            tlvs,
            mid=self.next_mid(),
            token=self.new_token() if expect_response else b"",
            confirmable=confirmable,
        )
        if expect_response:
            self.track(msg, now=now, context=context)
        return msg

    def track(self, msg: TmfMessage, *, now: float, context: Any = None) -> None:
        """Track a request built elsewhere (it must carry a token)."""
        if msg.mtype == MessageType.CON:
            timeout = self.ack_timeout * self.rng.uniform(1.0, ACK_RANDOM_FACTOR)
        else:
            timeout = self.non_timeout
        self._pending[msg.token] = Pending(msg, context, now + timeout, timeout)

    def respond(
        self,
        request: TmfMessage,
        tlvs: Iterable[MeshcopTlv | Tlv] = (),
        *,
        code: int = CoapCode.CHANGED,
        separate: bool = False,
        now: float = 0.0,
    ) -> list[TmfMessage]:
        """The response(s) to ``request``: a piggy-backed ACK, or an empty ACK plus a NON
        response (``separate``, what OpenThread's border agent does for COMM_PET/COMM_KA), or a
        NON response to a NON request. Remembered for duplicates."""
        if request.mtype == MessageType.CON and separate:
            out = [
                empty_ack(request),
                tmf_response(request, tlvs, code=code, mid=self.next_mid(), separate=True),
            ]
        elif request.mtype == MessageType.CON:
            out = [tmf_response(request, tlvs, code=code)]
        else:
            out = [tmf_response(request, tlvs, code=code, mid=self.next_mid())]
        self._remember(request.mid, tuple(out), now)
        return out

    def _remember(self, mid: int, replies: tuple[TmfMessage, ...], now: float) -> None:
        self._seen[mid] = (now, replies)
        self._seen.move_to_end(mid)
        while len(self._seen) > DEDUP_ENTRIES:
            self._seen.popitem(last=False)

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, msg: TmfMessage, now: float) -> Incoming:
        if msg.mtype == MessageType.RST:
            for token, p in list(self._pending.items()):
                if p.message.mid == msg.mid:
                    del self._pending[token]
                    return Incoming("reset", msg, p.context)
            return Incoming("unmatched", msg)
        if msg.is_request:
            if msg.mtype == MessageType.CON:
                seen = self._seen.get(msg.mid)
                if seen is not None and now - seen[0] < DEDUP_LIFETIME:
                    return Incoming("duplicate", msg, replies=seen[1])
            return Incoming("request", msg)
        if msg.mtype == MessageType.ACK and msg.code == CoapCode.EMPTY:
            for p in self._pending.values():
                if p.message.mid == msg.mid and p.message.mtype == MessageType.CON:
                    p.acked = True
                    p.deadline = now + self.non_timeout
                    return Incoming("empty_ack", msg, p.context)
            return Incoming("unmatched", msg)
        if msg.is_response:
            match = self._pending.get(msg.token)
            if match is None or (msg.mtype == MessageType.ACK and match.message.mid != msg.mid):
                return Incoming("unmatched", msg)
            del self._pending[msg.token]
            return Incoming("response", msg, match.context)
        return Incoming("unmatched", msg)

    def ack_for(self, msg: TmfMessage) -> TmfMessage | None:
        """The empty ACK a CON (separate) response needs, else ``None``."""
        if msg.mtype == MessageType.CON and msg.is_response:
            return empty_ack(msg)
        return None

    # -- time -----------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def poll(self, now: float) -> tuple[list[TmfMessage], list[Pending]]:
        """``(to retransmit, given up)`` at ``now``."""
        resend: list[TmfMessage] = []
        gone: list[Pending] = []
        for token, p in list(self._pending.items()):
            if now < p.deadline:
                continue
            retry = p.message.mtype == MessageType.CON and not p.acked
            if retry and p.retransmits < self.max_retransmit:
                p.retransmits += 1
                p.timeout *= 2
                p.deadline = now + p.timeout
                resend.append(p.message)
                continue
            del self._pending[token]
            gone.append(p)
        return resend, gone

    def cancel(self, context: Any) -> None:
        """Forget every outstanding request made with ``context``."""
        for token in [t for t, p in self._pending.items() if p.context is context]:
            del self._pending[token]

    @property
    def outstanding(self) -> int:
        return len(self._pending)
