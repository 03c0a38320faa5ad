"""python -m gateway.peers.thing {cbsb,join} ... : a thing on an emulated radio.

The two bootstrapping methods live in their own modules and are imported only when used."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: python -m gateway.peers.thing {cbsb,join} [options]\n\n"
        "  cbsb   bootstrap through the gateway's group owner (cloud-based, CBSB-1)\n"
        "  join   join the gateway's Thread network with a joining code (PSKd)\n\n"
        "Run 'python -m gateway.peers.thing <method> --help' for the options of each.\n"
    )
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0
    method, rest = args[0], args[1:]
    if method == "cbsb":
        from gateway.peers.thing.cbsb import main as run
    elif method == "join":
        from gateway.peers.thing.joiner import main as run
    else:
        sys.stderr.write(usage)
        return 2
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
