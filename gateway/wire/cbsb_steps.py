"""The ten steps of the draft's Figure 2 (draft-liu-t2trg-bootstrapping-survey-00 §2) and where
each CBSB-1 status says the bootstrap stopped. Shared by the group owner (journal, gwctl, LAN
notifications, cloud reports), the cloud and the app, so that every party names the same step."""

from __future__ import annotations

from gateway.wire.cbsb import STATUS_HINTS, Status

STEPS: dict[int, str] = {
    1: "the app starts bootstrapping and listens",
    2: "the app notifies the cloud",
    3: "the cloud creates the thing's PSK and sends it to the gateway",
    4: "the gateway broadcasts the RandomKey",
    5: "the user puts the thing into bootstrapping mode",
    6: "the thing scans for the RandomKey",
    7: "the thing proves Func(PSK, RandomKey) to the gateway",
    8: "the gateway returns the result: the network credentials",
    9: "the gateway tells the app the result",
    10: "the app tells the cloud, which binds the thing",
}

# The step at which a status stops the bootstrap (for the step-by-step account users need).
STATUS_STEP: dict[Status, int] = {
    Status.OK: 8,
    Status.WINDOW_EXPIRED: 6,
    Status.NO_JOIN_ATTEMPT: 6,
    Status.DEVICE_NOT_ALLOWED: 7,
    Status.AUTH_FAILED: 7,
    Status.PENDING_USER_CONFIRM: 3,
    Status.CLOUD_UNREACHABLE: 3,
    Status.CLOUD_DENIED: 3,
    Status.THING_NO_CONFIRM: 8,
    Status.RADIO_ERROR: 4,
    Status.RATE_LIMITED: 7,
    Status.BIND_REJECTED: 10,
    Status.SESSION_CLOSED: 4,
    Status.DELIVERY_REJECTED: 8,
    Status.LOCKED_OUT: 7,
    Status.PROTOCOL_ERROR: 8,
}


def status_by_name(name: str) -> Status | None:
    try:
        return Status[name]
    except KeyError:
        return None


def describe(status: Status | str, step: int | None = None) -> str:
    """``step N (what it is): hint`` in words a home user understands."""
    st = status_by_name(status) if isinstance(status, str) else status
    if st is None:
        return f"unknown result {status!r}"
    n = step if step is not None else STATUS_STEP.get(st, 0)
    where = f"step {n} ({STEPS[n]})" if n in STEPS else "an unknown step"
    return f"{st.name} at {where}: {STATUS_HINTS.get(st, '')}"
