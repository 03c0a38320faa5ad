"""Moving datagrams between two in-memory DTLS endpoints (shared by the DTLS, tshark and fuzz
tests)."""

from __future__ import annotations

from gateway.crypto.dtls import DtlsClient, DtlsServer


def shuttle(
    client: DtlsClient,
    server: DtlsServer,
    trace: list[tuple[str, bytes]],
    now: float = 0.0,
    rounds: int = 50,
) -> None:
    """Deliver each side's datagrams to the other, recording ``(direction, datagram)``, until
    both are quiet."""
    for _ in range(rounds):
        c_out = client.datagrams_to_send()
        for d in c_out:
            trace.append(("c2s", d))
            server.receive_datagram(d, now)
        s_out = server.datagrams_to_send()
        for d in s_out:
            trace.append(("s2c", d))
            client.receive_datagram(d, now)
        if not c_out and not s_out:
            return
    raise RuntimeError("the DTLS endpoints keep talking")
