"""The typed errors of gwctl's own commands (``ADM0xx``)."""

from __future__ import annotations

from drivers.errors import GatewayError

SERVICES_STOP_HINT = (
    "Stop the services first: systemctl stop gateway-group-owner gateway-border-router "
    "gateway-radio"
)


# ----------------------------------------------------------------------------- errors of gwctl


class ServicesRunning(GatewayError):
    """A command that rewrites the gateway's state refuses to run under live services."""

    code = "ADM001"
    exit_code = 1
    default_hint = SERVICES_STOP_HINT


class BackupError(GatewayError):
    """A backup file that cannot be restored (another format, a newer version, corrupt)."""

    code = "ADM003"
    exit_code = 9
    default_hint = "Use a backup written by 'gwctl backup' of this or an older release."


class JournalUnavailable(GatewayError):
    code = "ADM004"
    exit_code = 1
    default_hint = (
        "The services log to the systemd journal when systemd runs them. Started by hand, they "
        "log to their own stderr: look at the terminal or file they were started with."
    )


class AdminPermissionDenied(GatewayError):
    code = "ADM005"
    exit_code = 4
    default_hint = "Run gwctl as root (sudo) or as a member of the 'gateway' group."


class ChannelInUse(GatewayError):
    code = "ADM006"
    exit_code = 1
    default_hint = (
        "The running radio service serves the gateway's network on its channel. Use that channel, "
        "or stop the services and open the radio directly with --radio URL."
    )
