"""An independent check of the wire: tshark, given only the network key, decodes the whole
attach exchange of a rx-on and a sleepy child, their keep-alives, polls and indirect frames,
and pings (8 and 1232 bytes, so 6LoWPAN fragments) with no malformed packet and no frame it
cannot decrypt."""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

from gateway.wire.dataset import ActiveDataset
from gateway.wire.meshcop import Timestamp
from tests.thread.network.world import NetWorld, dataset
from tests.wire.test_mle import needs_tshark, tshark_fields

FIELDS = [
    "frame.number",
    "wpan.frame_type",
    "wpan.security",
    "wpan.aux_sec.key_id_mode",
    "mle.cmd",
    "mle.tlv.type",
    "icmpv6.type",
    "icmpv6.echo.sequence_number",
    "6lowpan.reassembled.length",
    "_ws.malformed",
    "_ws.expert.message",
]


def _dataset() -> ActiveDataset:
    ds = dataset(seed=5)
    assert ds.active_timestamp == Timestamp(1)
    return ds


@needs_tshark
def test_tshark_decodes_the_attach_exchanges_keep_alives_and_pings(tmp_path: Path) -> None:
    ds = _dataset()
    assert ds.network_key is not None
    world = NetWorld(ds, seed=51, record=True)
    med = world.add_child(rx_on=True, timeout=30)
    sed = world.add_child(rx_on=False, timeout=30, poll_period=2)
    world.run_until(lambda: len(world.attached()) == 2, 10)
    for seq, (node, size) in enumerate(((med, 8), (sed, 8), (med, 1232), (sed, 1232))):
        world.parent.ping(node.core.ml_eid, world.now, size=size, sequence=seq)
        world.run(3)
    med.core.ping(world.parent.addresses.ml_eid, world.now, size=1232, sequence=10)
    world.run(30)  # a keep-alive round
    psdus = [f.psdu for f in world.air]
    pref = f'uat:ieee802154_keys:"{ds.network_key.hex()}","0","Thread hash"'
    assert ds.mesh_local_prefix is not None
    ml = ipaddress.IPv6Network((ds.mesh_local_prefix + bytes(8), 64))
    rows = tshark_fields(tmp_path, psdus, FIELDS, "-o", pref, "-o", f"6lowpan.context0:{ml}")
    bad = [r for r in rows if r["_ws.malformed"] or "decrypt" in r["_ws.expert.message"].lower()]
    assert not bad, bad[:3]
    cmds = Counter(c for r in rows for c in r["mle.cmd"].split(",") if c)
    # Parent Request 9, Parent Response 10, Child ID Request 11, Child ID Response 12,
    # Advertisement 4, Child Update Request 13 / Response 14
    for cmd in ("9", "10", "11", "12", "4", "13", "14"):
        assert cmds[cmd] >= 1, (cmd, cmds)
    assert cmds["9"] >= 2 and cmds["11"] == 2 and cmds["12"] == 2
    echo = Counter(
        (r["icmpv6.type"], r["icmpv6.echo.sequence_number"]) for r in rows if r["icmpv6.type"]
    )
    for seq in range(4):
        assert echo[("128", str(seq))] == 1 and echo[("129", str(seq))] == 1, echo
    assert echo[("128", "10")] == 1 and echo[("129", "10")] == 1
    # the polls and the secured data frames: key id mode 1; MLE itself: no MAC security
    polls = [r for r in rows if r["wpan.frame_type"] == "0x0003"]
    assert polls and all(r["wpan.aux_sec.key_id_mode"] == "0x01" for r in polls)
    assert sum(1 for r in rows if r["6lowpan.reassembled.length"]) >= 6  # the 1232-byte pings
