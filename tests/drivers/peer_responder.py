"""A second radio in its own process for the two-process tests: listens with auto-ACK and
prints one JSON line per received frame until stdin closes or the duration runs out."""

from __future__ import annotations

import asyncio
import json
import sys

from drivers.radio import open_radio


async def main(url: str, pan: int, short: int, duration: float) -> None:
    async with open_radio(url) as radio:
        await radio.set_addresses(pan_id=pan, short_addr=short)
        print(json.dumps({"ready": True}), flush=True)
        with radio.subscribe() as sub:
            loop = asyncio.get_running_loop()
            end = loop.time() + duration
            while (left := end - loop.time()) > 0:
                f = await sub.get(left)
                if f is None:
                    break
                print(
                    json.dumps({"seq": f.psdu[2], "len": len(f.psdu), "rssi": f.rssi_dbm}),
                    flush=True,
                )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3], 0), float(sys.argv[4])))
