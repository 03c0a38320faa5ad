"""Secrets come from a file, standard input or a hidden prompt, never from a command line.

A command-line argument is visible to every user in ``/proc/<pid>/cmdline`` and stays in the
shell's history; a file readable by its owner, a pipe, or a prompt is not. Every command that
takes a secret (gwctl, the services' CLIs, the reference peers) reads it through
:func:`read_secret`:

- ``--x-file FILE``: the first line of FILE (trailing newline and surrounding white space
  removed);
- ``--x-file -``: the first line of standard input;
- neither: a hidden prompt when standard input is a terminal, else a usage error naming the
  option.

:class:`SecretArgument` is the error (exit 2) for the old forms that took a secret as an argument:
it says where the secret goes now.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from drivers.errors import GatewayError, InvalidArgument

MAX_SECRET_BYTES = 4096


class SecretArgument(GatewayError):
    """A secret was given as a command-line argument (refused: see the module docstring)."""

    code = "GW005"
    exit_code = 2
    default_hint = "Put the secret in a file only you can read, or pipe it on standard input."


def _first_line(stream: TextIO, where: str) -> str:
    data = stream.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise InvalidArgument(f"{where} holds more than {MAX_SECRET_BYTES} characters")
    return data.splitlines()[0].strip() if data.strip() else ""


def read_secret(
    source: str | os.PathLike[str] | None,
    *,
    what: str,
    option: str,
    confirm: bool = False,
    stdin: TextIO | None = None,
) -> str:
    """The secret ``what`` (e.g. "the joiner's PSKd") from ``source`` (a path, ``-`` for standard
    input) or, without one, from a hidden prompt on a terminal (twice with ``confirm``).

    Raises :class:`InvalidArgument` (exit 2) for an empty secret, an unreadable file, or no
    source and no terminal; the message names ``option`` and never the secret."""
    stream = stdin if stdin is not None else sys.stdin
    if source is not None and str(source) == "-":
        value = _first_line(stream, "standard input")
    elif source is not None:
        path = Path(source)
        try:
            with path.open(encoding="utf-8") as f:
                value = _first_line(f, str(path))
        except FileNotFoundError:
            raise InvalidArgument(f"{option}: no such file {path}") from None
        except PermissionError:
            raise InvalidArgument(f"{option}: no permission to read {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"{option}: cannot read {path}: {exc}") from None
    elif stream.isatty():
        value = getpass.getpass(f"{what[:1].upper()}{what[1:]}: ").strip()
        if confirm and getpass.getpass("Again: ").strip() != value:
            raise InvalidArgument(f"the two entries of {what} differ")
    else:
        raise InvalidArgument(
            f"{what} is needed: {option} FILE, or {option} - to read it from standard input",
            hint="Secrets are never taken as command-line arguments.",
        )
    if not value:
        raise InvalidArgument(f"{what} is empty")
    return value


def read_secret_bytes(
    source: str | os.PathLike[str],
    *,
    option: str,
    stdin: BinaryIO | None = None,
) -> bytes:
    """The whole content of FILE, or of standard input for ``-`` (binary secrets such as a
    dataset in TLV form); at most :data:`MAX_SECRET_BYTES`."""
    if str(source) == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read(MAX_SECRET_BYTES + 1)
        where = "standard input"
    else:
        path = Path(source)
        where = str(path)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_SECRET_BYTES + 1)
        except FileNotFoundError:
            raise InvalidArgument(f"{option}: no such file {path}") from None
        except PermissionError:
            raise InvalidArgument(f"{option}: no permission to read {path}") from None
        except OSError as exc:
            raise InvalidArgument(f"{option}: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise InvalidArgument(f"{where} holds more than {MAX_SECRET_BYTES} bytes")
    if not data.strip():
        raise InvalidArgument(f"{where} is empty")
    return data


def refuse_secret_argument(value: str | None, what: str, option: str) -> None:
    """For a command that used to take ``what`` as an argument: refuse one (exit 2)."""
    if value is not None:
        raise SecretArgument(
            f"{what} is no longer taken as a command-line argument (other users can read "
            f"it there): use {option} FILE, or {option} - for standard input"
        )


__all__ = [
    "MAX_SECRET_BYTES",
    "SecretArgument",
    "read_secret",
    "read_secret_bytes",
    "refuse_secret_argument",
]
