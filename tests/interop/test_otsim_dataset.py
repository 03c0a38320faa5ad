"""Operational datasets exchanged with a real OpenThread node (opt-in: ``OT_CLI_FTD``).

* Datasets OpenThread generates (``dataset init new``, printed by ``dataset tlvs`` and
  ``dataset active -x``) parse with :class:`gateway.wire.dataset.ActiveDataset`, re-encode
  byte-identically, and carry the values OpenThread's own text rendering (``dataset``,
  ``dataset active``) shows.
* Datasets :func:`gateway.wire.dataset.new_active_dataset` creates are accepted by
  ``dataset set active <hex>``, shown back with the same values, used to form a network, and a
  passphrase-derived PSKc matches what OpenThread derives itself (``pskc -p``).

OpenThread CLI reference: ``src/cli/README_DATASET.md``, ``src/cli/README.md`` (pskc).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from typing import Any

import pytest

from gateway.wire.dataset import ActiveDataset, new_active_dataset
from gateway.wire.meshcop import ChannelMask, SecurityPolicy, Timestamp
from tests.interop.otnode import OtNode, ot_cli_ftd

_BINARY, _SKIP_REASON = ot_cli_ftd()
pytestmark = [
    pytest.mark.skipif(_BINARY is None, reason=_SKIP_REASON),
    pytest.mark.timeout(120),
]

PORT_OFFSET_STEP = 1  # this module's air: OT_INTEROP_PORT_OFFSET + 1
NodeFactory = Callable[[int], OtNode]


def ot_fields(lines: list[str]) -> dict[str, str]:
    """``Key: value`` lines of OpenThread's dataset rendering."""
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def assert_same_values(ds: ActiveDataset, shown: dict[str, str]) -> None:
    """Every field OpenThread printed equals the parsed (or created) dataset's value."""
    assert ds.active_timestamp is not None and ds.channel_mask is not None
    assert ds.ext_pan_id is not None and ds.network_key is not None and ds.pskc is not None
    assert ds.pan_id is not None and ds.security_policy is not None
    assert int(shown["Active Timestamp"]) == ds.active_timestamp.seconds
    assert int(shown["Channel"]) == ds.channel
    if "Wake-up Channel" in shown or ds.wakeup_channel is not None:
        assert int(shown["Wake-up Channel"]) == ds.wakeup_channel
    assert int(shown["Channel Mask"], 16) == sum(1 << c for c in ds.channel_mask.channels())
    assert bytes.fromhex(shown["Ext PAN ID"]) == ds.ext_pan_id
    assert ipaddress.IPv6Network(shown["Mesh Local Prefix"]) == ds.mesh_local_network
    assert bytes.fromhex(shown["Network Key"]) == ds.network_key
    assert shown["Network Name"] == ds.network_name
    assert int(shown["PAN ID"], 16) == ds.pan_id
    assert bytes.fromhex(shown["PSKc"]) == ds.pskc
    assert shown["Security Policy"] == ds.security_policy.describe()


def test_openthread_generated_datasets_parse_and_reencode(ot_nodes: NodeFactory) -> None:
    node = ot_nodes(1)
    for _ in range(8):  # independent random datasets, each from OpenThread's own generator
        node.cmd("dataset init new")
        hex_tlvs = node.value("dataset tlvs")
        ds = ActiveDataset.from_hex(hex_tlvs)
        assert ds.to_hex() == hex_tlvs
        assert ds.is_complete, ds.missing()
        assert_same_values(ds, ot_fields(node.cmd("dataset")))
    node.cmd("dataset commit active")
    active_hex = node.value("dataset active -x")
    assert active_hex == hex_tlvs
    active = ActiveDataset.from_hex(active_hex)
    assert active.to_hex() == active_hex
    assert active.wakeup_channel is not None  # OpenThread 1.4 adds a Wake-up Channel TLV
    assert_same_values(active, ot_fields(node.cmd("dataset active")))


CREATED: dict[str, dict[str, Any]] = {
    "defaults": dict(network_name="Gateway-Interop"),
    "custom": dict(
        network_name="interop ✓ net",  # UTF-8 beyond ASCII, 15 bytes
        channel=25,
        pan_id=0x1234,
        channel_mask=ChannelMask.from_channels((11, 15, 20, 25, 26)),
        security_policy=SecurityPolicy(rotation_hours=1000, native_commissioning=False),
        active_timestamp=Timestamp(1_700_000_000),
        passphrase="J01NME-interop",
    ),
}


@pytest.mark.parametrize("variant", sorted(CREATED))
def test_openthread_accepts_a_dataset_we_created(ot_nodes: NodeFactory, variant: str) -> None:
    ds = new_active_dataset(random.Random(variant), **CREATED[variant])
    node = ot_nodes(1)
    node.cmd(f"dataset set active {ds.to_hex()}")
    assert node.value("dataset active -x") == ds.to_hex()
    shown = ot_fields(node.cmd("dataset active"))
    assert "Wake-up Channel" not in shown  # nothing added to what we gave
    assert_same_values(ds, shown)

    # The dataset works: the node forms a network with exactly these parameters.
    node.cmd("ifconfig up")
    node.cmd("thread start")
    node.cmd("state leader")
    node.wait_state("leader", 20)
    assert int(node.value("channel")) == ds.channel
    assert int(node.value("panid"), 16) == ds.pan_id
    assert bytes.fromhex(node.value("extpanid")) == ds.ext_pan_id
    assert node.value("networkname") == ds.network_name
    assert bytes.fromhex(node.value("networkkey")) == ds.network_key
    assert ds.mesh_local_network is not None
    assert ipaddress.IPv6Address(node.value("ipaddr mleid")) in ds.mesh_local_network
    assert ipaddress.IPv6Address(node.value("ipaddr rloc")) in ds.mesh_local_network
    assert ActiveDataset.from_hex(node.value("dataset active -x")) == ds

    passphrase = CREATED[variant].get("passphrase")
    if isinstance(passphrase, str):
        # OpenThread derives the PSKc itself (PBKDF2-AES-CMAC-PRF-128 over the passphrase,
        # salted with "Thread" + ext PAN ID + network name) and must get ours. Setting a PSKc
        # needs Thread stopped and invalidates the stored datasets, hence last.
        node.cmd("thread stop")
        node.cmd(f"pskc -p {passphrase}")
        assert bytes.fromhex(node.value("pskc")) == ds.pskc
