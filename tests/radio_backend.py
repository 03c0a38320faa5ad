"""Which radio the gateway's own services run on in the tests that start them.

By default the emulated AT86RF233 (``emulated:?node=N&port_offset=K``). With
``GATEWAY_TEST_RADIO=rcp`` and ``OT_RCP`` naming OpenThread's simulated ``ot-rcp``, the gateway's
radio becomes ``spinel+hdlc+forkpty://$OT_RCP?forkpty-arg=N`` on the same simulated air (the
service gets ``PORT_OFFSET=K``), so the full-stack tests run unchanged on the RCP backend; the
peers (things, joiners) stay on emulated radios. docs/radio-rcp.md tells how to run them.
"""

from __future__ import annotations

import os

ENV_BACKEND = "GATEWAY_TEST_RADIO"
ENV_RCP = "OT_RCP"


def ot_rcp() -> tuple[str | None, str]:
    """(path of the ot-rcp simulation binary, or None; the reason when None)."""
    path = os.environ.get(ENV_RCP)
    if not path:
        return None, (
            f"needs {ENV_RCP}=<path to OpenThread's simulated ot-rcp (examples/apps/ncp/ot-rcp)> "
            "(docs/radio-rcp.md); CI does not build OpenThread"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"{ENV_RCP}={path!r} is not an executable file"
    return path, ""


def gateway_uses_rcp() -> bool:
    choice = os.environ.get(ENV_BACKEND, "emulated")
    if choice not in ("emulated", "rcp"):
        raise RuntimeError(f"{ENV_BACKEND}={choice!r}: use 'emulated' or 'rcp'")
    if choice == "emulated":
        return False
    path, reason = ot_rcp()
    if path is None:
        raise RuntimeError(f"{ENV_BACKEND}=rcp {reason}")
    return True


def rcp_url(node: int) -> str:
    path, reason = ot_rcp()
    if path is None:
        raise RuntimeError(reason)
    return f"spinel+hdlc+forkpty://{path}?forkpty-arg={node}"


def gateway_radio_url(node: int, port_offset: int, emulated_params: str = "") -> str:
    """The radio URL of the gateway's radio service (node ``node`` on air ``port_offset``)."""
    if gateway_uses_rcp():
        return rcp_url(node)
    extra = f"&{emulated_params}" if emulated_params else ""
    return f"emulated:?node={node}&port_offset={port_offset}{extra}"


def gateway_radio_env(port_offset: int) -> dict[str, str]:
    """What the radio service's environment needs besides the URL (the RCP's air)."""
    return {"PORT_OFFSET": str(port_offset)} if gateway_uses_rcp() else {}
