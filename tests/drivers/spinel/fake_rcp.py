"""A stand-in for OpenThread's simulated ``ot-rcp`` when OpenThread is not built: the test peer's
RCP model (peer.py) on standard input and output, so the forkpty link and a radio URL can be
tested as a real process on a pty::

    spinel+hdlc+forkpty:///path/to/python?forkpty-arg=-m&forkpty-arg=tests.drivers.spinel.fake_rcp&forkpty-arg=1

Arguments: the node id (the EUI-64's last byte), then optionally ``--protocol M.N``,
``--exit-now`` (print a complaint on standard error and exit 3, like an ot-rcp whose node id is
taken) or ``--die-once FILE`` (exit 9 at the first transmission if FILE does not exist yet,
creating it: a crash that a fresh start does not repeat)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from drivers.spinel.codec import SpinelFrame
from tests.drivers.spinel.peer import RcpModel, RcpState


async def main(argv: list[str]) -> int:
    node = int(argv[0]) if argv else 1
    if "--exit-now" in argv:
        print(f"fake-rcp: node id {node} is already taken on this air", file=sys.stderr)
        return 3
    state = RcpState(eui64=bytes.fromhex("18b43000000000") + bytes((node,)))
    if "--protocol" in argv:
        major, minor = argv[argv.index("--protocol") + 1].split(".")
        state.protocol = (int(major), int(minor))
    model = RcpModel(state)
    done = asyncio.get_running_loop().create_future()
    os.set_blocking(0, False)

    def write(data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(1, data)

    def readable() -> None:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if not done.done():
                done.set_result(0)
            return
        model.received(data)

    if "--die-once" in argv:
        marker = argv[argv.index("--die-once") + 1]
        if not os.path.exists(marker):

            def die(_req: SpinelFrame) -> None:
                with open(marker, "w"):
                    pass
                os._exit(9)

            model.tx_results.append(die)
    model.write = write
    asyncio.get_running_loop().add_reader(0, readable)
    model.reset_notice()  # like ot-rcp: a reset notice as soon as it runs
    return int(await done)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
