"""Typed errors of the Thread network core, with stable codes (``THR1xx``) and technician hints.

Malformed or unauthenticated radio input is never raised: it is dropped and counted. These are
for the calls a shell makes (a snapshot that cannot be restored, a ping while detached, a
configuration out of range) and for the events the journal reports (a full child table).
Messages never contain a key.
"""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = [
    "AddressUnresolved",
    "ChildTableFull",
    "InvalidSnapshot",
    "NetworkConfigError",
    "NotAttached",
    "ThreadNetworkError",
]


class ThreadNetworkError(GatewayError):
    """Root of the Thread network (MLE, child table, mesh) errors."""

    code = "THR100"
    default_hint = "See docs/thread-network.md for the Thread network core and its limits."


class ChildTableFull(ThreadNetworkError):
    """Every child table entry is taken: further Parent Requests are not answered."""

    code = "THR101"
    default_hint = (
        "The gateway's child table is full, so new Thread devices cannot attach. Raise "
        "[thread] max_children or remove devices that are no longer in use; entries of devices "
        "that went away are freed after their child timeout."
    )


class InvalidSnapshot(ThreadNetworkError):
    """A saved network or child snapshot is corrupt or from an unknown version."""

    code = "THR102"
    exit_code = 9
    default_hint = (
        "The saved Thread network state is damaged. Restore a backup of the state directory; "
        "deleting the file makes the gateway form a new partition and every child re-attach."
    )


class NotAttached(ThreadNetworkError):
    """The operation needs an attached Thread interface (a role of child, router or leader)."""

    code = "THR103"
    default_hint = "Wait until the Thread interface is attached ('gwctl thread status')."


class AddressUnresolved(ThreadNetworkError):
    """No mesh route to a destination (no child registered it and no Address Query answered)."""

    code = "THR104"
    default_hint = (
        "No Thread device answered for this address. Check it with 'gwctl thread children' "
        "(mesh-local EIDs of attached children are listed) and that the device is attached."
    )


class NetworkConfigError(ThreadNetworkError):
    """A Thread network setting is out of range."""

    code = "THR105"
    exit_code = 9
    default_hint = "Check the [thread] settings in the gateway configuration."
