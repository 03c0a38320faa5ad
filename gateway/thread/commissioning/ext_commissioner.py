"""An external commissioner's link to a border agent (sans-IO): a DTLS client (EC-JPAKE with the
PSKc) carrying the management CoAP messages of a
:class:`~gateway.thread.commissioning.commissioner.Commissioner`.

The owner sends :meth:`ExternalCommissioner.datagrams_to_send` to the border agent's UDP port,
feeds what comes back to :meth:`ExternalCommissioner.datagram_received` and calls
:meth:`ExternalCommissioner.poll` at :meth:`ExternalCommissioner.next_timeout`. The petition goes
out as soon as the DTLS session is up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.crypto.dtls import (
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    DtlsClient,
    DtlsConfig,
    DtlsError,
    HandshakeComplete,
)
from gateway.errors import InvalidArgument, ParseError
from gateway.thread.commissioning.commissioner import (
    Commissioner,
    CommissionerEvent,
    CommissionerState,
)
from gateway.wire.coap import TmfMessage

__all__ = ["BorderAgentLinkState", "ExternalCommissioner", "LinkEvent"]


class BorderAgentLinkState(enum.Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True)
class LinkEvent:
    state: BorderAgentLinkState
    error: DtlsError | None = None


@dataclass
class ExternalCommissioner:
    commissioner: Commissioner
    pskc: bytes = field(repr=False)
    dtls_config: DtlsConfig | None = None
    link_state: BorderAgentLinkState = BorderAgentLinkState.IDLE
    _dtls: DtlsClient | None = None
    _events: list[CommissionerEvent | LinkEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.pskc) != 16:
            raise InvalidArgument("the PSKc is 16 bytes")

    def __repr__(self) -> str:
        return f"ExternalCommissioner({self.commissioner!r}, link={self.link_state.value})"

    def connect(self, now: float) -> None:
        """Start the DTLS handshake with the border agent."""
        self._dtls = DtlsClient(
            self.pskc, config=self.dtls_config, rng=self.commissioner.rng.randbytes
        )
        self._dtls.start(now)
        self.link_state = BorderAgentLinkState.HANDSHAKING
        self._events.append(LinkEvent(self.link_state))

    def close(self, now: float) -> None:
        """Resign (if active) and close the DTLS session."""
        if self.commissioner.state is not CommissionerState.DISABLED:
            self.commissioner.stop(now)
            self._pump(now)
            self._events.extend(self.commissioner.events())
        if self._dtls is not None:
            self._dtls.close()
        if self.link_state in (BorderAgentLinkState.CONNECTED, BorderAgentLinkState.HANDSHAKING):
            self.link_state = BorderAgentLinkState.CLOSED
            self._events.append(LinkEvent(self.link_state))

    def datagrams_to_send(self) -> list[bytes]:
        return self._dtls.datagrams_to_send() if self._dtls is not None else []

    def events(self) -> list[CommissionerEvent | LinkEvent]:
        self._events.extend(self.commissioner.events())
        out, self._events = self._events, []
        return out

    def datagram_received(self, data: bytes, now: float) -> None:
        if self._dtls is None:
            return
        self._dtls.receive_datagram(data, now)
        self._after(now)

    def _after(self, now: float) -> None:
        assert self._dtls is not None
        for ev in self._dtls.events():
            if isinstance(ev, HandshakeComplete):
                self.link_state = BorderAgentLinkState.CONNECTED
                self._events.append(LinkEvent(self.link_state))
                if self.commissioner.state is CommissionerState.DISABLED:
                    self.commissioner.start(now)
            elif isinstance(ev, ApplicationData):
                try:
                    msg = TmfMessage.from_bytes(ev.data)
                except ParseError:
                    continue
                self.commissioner.receive_management(msg, now)
            elif isinstance(ev, ConnectionFailed):
                self.link_state = BorderAgentLinkState.FAILED
                self._events.append(LinkEvent(self.link_state, ev.error))
                self.commissioner.link_lost(ev.error.message)
            elif isinstance(ev, ConnectionClosed):
                if self.link_state is not BorderAgentLinkState.CLOSED:
                    self.link_state = BorderAgentLinkState.CLOSED
                    self._events.append(LinkEvent(self.link_state))
                self.commissioner.link_lost("closed by the border agent")
        self._pump(now)

    def _pump(self, now: float) -> None:
        if self._dtls is None or not self._dtls.is_connected:
            self.commissioner.management_to_send()  # nowhere to send them
            return
        for msg in self.commissioner.management_to_send():
            try:
                self._dtls.send(msg.to_bytes())
            except (DtlsError, InvalidArgument):
                break

    def next_timeout(self) -> float | None:
        times = [self.commissioner.next_timeout()]
        if self._dtls is not None:
            times.append(self._dtls.next_timeout())
        return min((t for t in times if t is not None), default=None)

    def poll(self, now: float) -> None:
        if self._dtls is not None:
            self._dtls.handle_timeout(now)
            self._after(now)
        self.commissioner.poll(now)
        self._pump(now)
