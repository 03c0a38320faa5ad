"""What every command line shares (gwctl, the services' and the peers' ``python -m``): the --json
option, the exit-code table, running a command's coroutine with clean Ctrl-C/SIGTERM handling,
and turning typed errors into a message a technician can act on (or one JSON document) and the
exit code of DESIGN §8."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, NoReturn, TypeVar

import click

from drivers.errors import GatewayError
from gateway.cli import output

T = TypeVar("T")

EXIT_CODES_HELP = """\b
Exit codes:
  0 success            5 wrong chip
  1 other failure      6 radio not responding
  2 usage              7 not acknowledged / channel busy
  3 no such device     8 service not running or unreachable
  4 permission denied  9 bad configuration or state"""

# ----------------------------------------------------------------------------- errors


class NotConfirmed(GatewayError):
    code = "ADM002"
    exit_code = 1
    default_hint = "Confirm interactively, or pass --yes."


# ----------------------------------------------------------------------------- click helpers


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
    )(f)


def yes_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)


# ----------------------------------------------------------------------------- running


_signalled: list[int] = []


def run(as_json: bool, coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; turn typed errors into a message and their exit code.
    Ctrl-C exits 130 and SIGTERM 143, after the coroutine has cleaned up."""
    _signalled.clear()
    try:
        return asyncio.run(_with_signals(coro_fn))
    except GatewayError as exc:
        fail(exc, as_json)
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(128 + (_signalled[0] if _signalled else signal.SIGINT))
    raise AssertionError("unreachable")


async def _with_signals(coro_fn: Callable[[], Awaitable[T]]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop(sig: int) -> None:
        _signalled.append(sig)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop, sig)
    return await coro_fn()


def fail(exc: GatewayError, as_json: bool, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report ``exc`` (stderr, or one JSON document with --json) and exit with its code."""
    if as_json:
        output.emit_json({"ok": False, **(extra or {}), "error": exc.to_dict()})
    output.error(exc.message, exc.hint)
    sys.exit(exc.exit_code)


def guard(as_json: bool, fn: Callable[[], T]) -> T:
    """Run synchronous command code, reporting typed errors like :func:`run`."""
    try:
        return fn()
    except GatewayError as exc:
        fail(exc, as_json)
    except KeyboardInterrupt:
        sys.exit(130)


def confirm(prompt: str, word: str | None, yes: bool) -> None:
    """Ask before a destructive step: ``--yes``, else a y/N question (or typing ``word``), read
    from stdin; a closed stdin or any other answer refuses."""
    if yes:
        return
    try:
        if word is None:
            if click.confirm(prompt, default=False, err=True):
                return
        else:
            answer = click.prompt(f"{prompt}\nType '{word}' to confirm", default="", err=True,
                                  show_default=False)  # fmt: skip
            if answer.strip() == word:
                return
    except (click.Abort, EOFError):
        pass
    finally:
        if not sys.stdin.isatty():
            sys.stderr.write("\n")  # the answer was not echoed: end the prompt's line
    raise NotConfirmed("not confirmed; nothing was changed")


# ----------------------------------------------------------------------------- entry points


def invoke(command: click.Command, argv: list[str] | None, prog: str) -> int:
    """Run a click command as a function (the peers' ``main(argv) -> int``): its callback's
    return value as the exit code; 0 after ``--help``; 2 and the message on stderr for a usage
    error; 1 on Ctrl-C."""
    try:
        rv = command.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 1
    return rv if isinstance(rv, int) else 0


def option_value(
    convert: Callable[[str], T],
) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click option callback that converts the text with ``convert`` (None stays None); its
    ValueError becomes a usage error that names the option."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        try:
            return convert(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def namespace_command(
    group: click.Group, name: str, help_: str, dispatch: Callable[[SimpleNamespace], int]
) -> Callable[[Callable[..., Any]], click.Command]:
    """Decorate an empty function carrying click options into the subcommand ``name`` of
    ``group`` that hands ``dispatch`` one namespace: ``cmd`` (its name), the group's options (from
    ``ctx.obj``, a dict, when the group sets one) and its own (an option spelt ``json_`` as
    ``json``). For command lines whose handlers take an argparse-like namespace."""

    def wrap(f: Callable[..., Any]) -> click.Command:
        def run(**opts: Any) -> int:
            parent = click.get_current_context().obj
            merged = {**(parent if isinstance(parent, dict) else {}), **opts}
            if "json_" in merged:
                merged["json"] = merged.pop("json_")
            return dispatch(SimpleNamespace(cmd=name, **merged))

        return group.command(name, help=help_)(functools.wraps(f)(run))

    return wrap
