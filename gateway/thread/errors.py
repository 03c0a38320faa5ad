"""Typed errors of Thread commissioning, with stable codes (``THR0xx``) and technician hints.

They are raised by the sans-IO state machines (or carried in their failure events) and cross the
control socket unchanged: :func:`gateway.errors.error_class` finds them by code on the client
side, so importing this module is enough for ``gwctl`` to re-raise the same class. Messages name
joiners by their Joiner ID or EUI-64 and never contain a PSKd, PSKc or key.
"""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = [
    "AnotherCommissionerActive",
    "CommissionerNotActive",
    "CommissioningError",
    "JoinerNotFound",
    "JoinerSecurityFailure",
    "JoinerTimeout",
    "JoinerVanished",
    "KeepAliveTimeout",
    "PetitionRejected",
    "PskdRateLimited",
    "UnknownJoiner",
    "WrongPskd",
]


class CommissioningError(GatewayError):
    """Root of the Thread commissioning errors."""

    code = "THR000"
    default_hint = "See docs/thread.md for the commissioning flows and their limits."


class PetitionRejected(CommissioningError):
    """The leader refused the commissioner's petition."""

    code = "THR001"
    default_hint = "The Thread leader refused the petition; check its logs and retry."


class AnotherCommissionerActive(PetitionRejected):
    """A petition while a different commissioner is active (a network has at most one)."""

    code = "THR002"
    default_hint = (
        "Only one commissioner may be active on a Thread network. Stop the other one "
        "('gwctl commissioner stop' on the gateway, or quit the external commissioner) or wait "
        "until its session times out (50 s without keep-alive)."
    )


class KeepAliveTimeout(CommissioningError):
    """The commissioner session ended because keep-alives stopped (or were refused)."""

    code = "THR003"
    default_hint = (
        "The commissioner did not keep its session alive (keep-alive every 25-40 s, timeout "
        "50 s). Check the link to the border agent and start the commissioner again."
    )


class CommissionerNotActive(CommissioningError):
    """An operation needs an active commissioner session."""

    code = "THR004"
    default_hint = "Start the commissioner first ('gwctl commissioner start')."


class UnknownJoiner(CommissioningError):
    """A joiner started a handshake but no joiner entry (EUI-64, discerner or *) admits it."""

    code = "THR005"
    default_hint = (
        "Add the joiner with its EUI-64 and joining code ('gwctl commissioner joiner add "
        "<eui64> <PSKd>'), or admit every joiner with '*'."
    )


class WrongPskd(CommissioningError):
    """The joiner's DTLS handshake failed its Finished check: the PSKd differs."""

    code = "THR006"
    default_hint = (
        "The joining code (PSKd) typed on the commissioner differs from the device's. Check "
        "the label: PSKds use 0-9 and A-Z without I, O, Q and Z."
    )


class PskdRateLimited(CommissioningError):
    """Too many failed PSKd attempts: new handshakes are refused for a while."""

    code = "THR007"
    default_hint = (
        "Repeated wrong joining codes look like a brute-force attempt; the commissioner "
        "refuses new attempts for this joiner until the back-off ends."
    )


class JoinerVanished(CommissioningError):
    """A joiner stopped answering in the middle of its handshake or before it was entrusted."""

    code = "THR008"
    default_hint = "The device stopped answering; check its power and range, then retry."


class JoinerNotFound(CommissioningError):
    """Joiner side: no Thread network answered the discovery scan with our steering data."""

    code = "THR010"
    default_hint = (
        "No joiner router admitted this device. Is a commissioner active and has it added "
        "this EUI-64 (or '*') with the joining code?"
    )


class JoinerSecurityFailure(CommissioningError):
    """Joiner side: the DTLS handshake with the commissioner failed (usually a wrong PSKd)."""

    code = "THR011"
    default_hint = "Check the joining code (PSKd) on the device and on the commissioner."


class JoinerTimeout(CommissioningError):
    """Joiner side: JOIN_FIN or JOIN_ENT did not arrive in time."""

    code = "THR012"
    default_hint = "The commissioner or the joiner router stopped answering; retry the join."
