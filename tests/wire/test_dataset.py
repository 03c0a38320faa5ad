"""Operational and commissioner datasets (gateway.wire.dataset)."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidArgument, ParseError
from gateway.wire import meshcop as mc
from gateway.wire.dataset import (
    ActiveDataset,
    CommissionerDataset,
    PendingDataset,
    new_active_dataset,
)
from gateway.wire.meshcop import ChannelMask, SecurityPolicy, Timestamp
from gateway.wire.tlv import Tlv, decode_tlvs

# --- known answers: OpenThread CLI documentation (openthread/openthread src/cli/README_DATASET.md)

# "dataset set active <hex>" example; the same dataset is printed field by field under
# "dataset active" in the same document.
README_SET_ACTIVE = (
    "0e080000000000010000000300000f35060004001fffe0020839758ec8144b07fb0708fdf1f1add0797dc005"
    "10f366cec7a446bab978d90d27abe38f23030f4f70656e5468726561642d353933380102593804103ca67c96"
    "9efb0d0c74a4d8ee923b576c0c0402a0f7f8"
)
# "dataset active -x" example (a newer OpenThread: carries a Wake-up Channel TLV, type 74).
README_ACTIVE_X = (
    "0e08000000000001000000030000164a0300001735060004001fffe00208b182e6a17996cecc0708fd3f363f"
    "a8f1b0bc0510ebb6f6a447c96e1542176df3a834ac0e030f4f70656e5468726561642d3663393901026c9904"
    "1096e9cdfe1eb1363a3676e2b94df0271b0c0402a0f7f8"
)
# "dataset tlvs" example, printed field by field just above it in the document.
README_TLVS = (
    "0e080000000000010000000300001635060004001fffe00208d196fa2040e973b60708fdbbc310c48f3a3905"
    "109929154dbc363218bcd22f907caf5c15030f4f70656e5468726561642d646532620102de2b041015b2c16f"
    "7ba92ed4bc7b1ee054f1553f0c0402a0f7f8"
)
# "dataset pending -x" example; "dataset pending" above it shows the fields (the delay it shows
# differs: the timer counts down between the two commands).
README_PENDING_X = (
    "0e0800000000000100003308000000000002000034040000b512000300001a35060004001fffe00208a74182"
    "f4d3f4de410708fd46c1b9e15955740510ed916e454d96fd00184f10a6f5c9e1d3030f4f70656e5468726561"
    "642d626666380102bff80410264f78414adc683191863d968f72d1b70c0402a0f7f8"
)
# openthread/openthread tests/unit/test_dataset.cpp, kTlvBytes (PAN ID 0xface, network key
# eaf9149fdc737877 0698d59180221958, no pending timestamp or delay).
OT_UNIT_TEST_TLVS = (
    "0e080000000000010000000300000f35060004001fffe002081de5bfecd5165b8f0708fde21f0c8a13e8e705"
    "10eaf9149fdc73787706 98d591802219 58030f4f70656e5468726561642d616163330102face04102eaae2"
    "9484388e3119581a7b5a948c070c0402a0f7f8"
).replace(" ", "")
# `matter esp ot_cli dataset active -x` output on an ESP Thread Border Router (espressif
# esp-matter, "Light + OTBR" example README).
ESP_ACTIVE_X = (
    "0e080000000000010000000300000d35060004001fffe00208c62a4c5f80346de00708fd9ae261c390154605"
    "10874e399792fcb276c571dee6f71c260a030f4f70656e5468726561642d3861363301028a630410a6676a0f"
    "60ca6dd3af116bdefd2a21270c0402a0f7f8"
)


def _check_readme_common(ds: ActiveDataset | PendingDataset) -> None:
    assert ds.active_timestamp == Timestamp(1)  # "Active Timestamp: 1"
    assert ds.channel_mask is not None
    assert ds.channel_mask.entries[0].ot_mask == 0x07FFF800  # "Channel Mask: 0x07fff800"
    assert ds.security_policy is not None
    assert ds.security_policy.describe() == "672 onrc 0"  # "Security Policy: 672 onrc 0"
    assert ds.is_complete


def test_readme_set_active_example() -> None:
    ds = ActiveDataset.from_hex(README_SET_ACTIVE)
    _check_readme_common(ds)
    assert ds.channel == 15
    assert ds.ext_pan_id == bytes.fromhex("39758ec8144b07fb")
    assert ds.mesh_local_network == ipaddress.IPv6Network("fdf1:f1ad:d079:7dc0::/64")
    assert ds.network_key == bytes.fromhex("f366cec7a446bab978d90d27abe38f23")
    assert ds.network_name == "OpenThread-5938"
    assert ds.pan_id == 0x5938
    assert ds.pskc == bytes.fromhex("3ca67c969efb0d0c74a4d8ee923b576c")
    assert ds.to_hex() == README_SET_ACTIVE


def test_readme_tlvs_example() -> None:
    ds = ActiveDataset.from_hex(README_TLVS.upper())  # case-insensitive, like OpenThread
    _check_readme_common(ds)
    assert ds.channel == 22
    assert ds.ext_pan_id == bytes.fromhex("d196fa2040e973b6")
    assert ds.mesh_local_network == ipaddress.IPv6Network("fdbb:c310:c48f:3a39::/64")
    assert ds.network_key == bytes.fromhex("9929154dbc363218bcd22f907caf5c15")
    assert ds.network_name == "OpenThread-de2b"
    assert ds.pan_id == 0xDE2B
    assert ds.pskc == bytes.fromhex("15b2c16f7ba92ed4bc7b1ee054f1553f")
    assert ds.to_hex() == README_TLVS


def test_readme_active_x_with_wakeup_channel() -> None:
    ds = ActiveDataset.from_hex(README_ACTIVE_X)
    _check_readme_common(ds)
    assert ds.channel == 22 and ds.wakeup_channel == 23 and ds.wakeup_channel_page == 0
    assert ds.network_name == "OpenThread-6c99" and ds.pan_id == 0x6C99
    assert ds.to_hex() == README_ACTIVE_X


def test_readme_pending_example() -> None:
    ds = PendingDataset.from_hex(README_PENDING_X)
    _check_readme_common(ds)
    assert ds.pending_timestamp == Timestamp(2)  # "Pending Timestamp: 2"
    assert ds.delay_timer is not None and 0 < ds.delay_timer <= 300_000
    assert ds.channel == 26
    assert ds.ext_pan_id == bytes.fromhex("a74182f4d3f4de41")
    assert ds.mesh_local_network == ipaddress.IPv6Network("fd46:c1b9:e159:5574::/64")
    assert ds.network_key == bytes.fromhex("ed916e454d96fd00184f10a6f5c9e1d3")
    assert ds.network_name == "OpenThread-bff8"
    assert ds.pan_id == 0xBFF8
    assert ds.pskc == bytes.fromhex("264f78414adc683191863d968f72d1b7")
    assert ds.to_hex() == README_PENDING_X
    active = ds.active()
    assert isinstance(active, ActiveDataset) and active.is_complete
    assert active.network_key == ds.network_key
    # The active part keeps OpenThread's order, minus the pending-only TLVs.
    assert active.to_hex() == README_PENDING_X[:20] + README_PENDING_X[20 + 20 + 12 :]


def test_openthread_unit_test_and_esp_examples() -> None:
    ot = ActiveDataset.from_hex(OT_UNIT_TEST_TLVS)
    assert ot.pan_id == 0xFACE
    assert ot.network_key == bytes.fromhex("eaf9149fdc73787706 98d59180221958".replace(" ", ""))
    assert ot.is_complete and ot.to_hex() == OT_UNIT_TEST_TLVS
    esp = ActiveDataset.from_hex(ESP_ACTIVE_X)
    assert esp.is_complete and esp.to_hex() == ESP_ACTIVE_X


def test_openthread_unit_test_invalid_datasets() -> None:
    # tests/unit/test_dataset.cpp: the TLVs minus their last byte, and two Channel TLVs, are
    # refused by Dataset::ValidateTlvs; one Channel TLV alone is fine.
    with pytest.raises(ParseError):
        ActiveDataset.from_hex(OT_UNIT_TEST_TLVS[:-2])
    with pytest.raises(ParseError):
        ActiveDataset.from_hex("000300001a000300001a")
    assert ActiveDataset.from_hex("000300001a").channel == 26


@pytest.mark.parametrize(
    "bad",
    [
        "zz",
        "0e0",
        "00ff0003000019",  # extended form is not allowed in a dataset
        "000300000a",  # channel 10 is not on 2.4 GHz
        "0102ff",  # truncated PAN ID
        "0311" + "41" * 17,  # name too long
        "0c020000",  # security policy without flags
        "0103abcdef",  # PAN ID longer than 2 bytes: would not re-encode identically
        "0a01" * 100,  # longer than 254 bytes of hex... and duplicate types
        ("3fff" + "00" * 255)[:600],
    ],
)
def test_invalid_datasets(bad: str) -> None:
    with pytest.raises(ParseError):
        ActiveDataset.from_hex(bad)


def test_order_is_kept_and_new_fields_follow_openthread_order() -> None:
    # PAN ID before channel, and an unknown TLV (type 200) in between.
    wire = bytes.fromhex("0102abcdc80101000300000b")
    ds = ActiveDataset.from_bytes(wire)
    assert ds.extra_tlvs == (Tlv(200, b"\x01"),)
    assert ds.to_bytes() == wire
    more = replace(ds, network_name="x", active_timestamp=Timestamp(5))
    out = [t.type for t in more.to_tlvs()]
    assert out == [1, 200, 0, 14, 3]
    fresh = ActiveDataset(pan_id=1, network_name="n", channel=11, active_timestamp=Timestamp(1))
    assert [t.type for t in fresh.to_tlvs()] == [14, 0, 3, 1]


def test_repr_redacts_keys() -> None:
    ds = ActiveDataset.from_hex(README_SET_ACTIVE)
    text = repr(ds)
    assert "f366cec7" not in text and "3ca67c96" not in text
    assert "network_key=[redacted]" in text and "OpenThread-5938" in text
    assert "f366cec7" not in repr(PendingDataset(network_key=ds.network_key))


def test_dataset_field_validation() -> None:
    with pytest.raises(InvalidArgument):
        ActiveDataset(channel=5)
    with pytest.raises(InvalidArgument):
        ActiveDataset(network_key=bytes(15))
    with pytest.raises(InvalidArgument):
        ActiveDataset(extra_tlvs=(Tlv(1, b"\x00\x01"),))  # PAN ID has a field of its own
    with pytest.raises(InvalidArgument):
        ActiveDataset(extra_tlvs=(Tlv(200, b""), Tlv(200, b"")))
    assert ActiveDataset(channel=5, channel_page=2).channel == 5
    assert ActiveDataset().missing() == ActiveDataset.REQUIRED


def test_typed_tlvs_in_and_out() -> None:
    ds = ActiveDataset.from_tlvs([mc.PanIdTlv(7), mc.ChannelTlv(20)])
    assert (ds.pan_id, ds.channel) == (7, 20)
    assert ds.meshcop_tlvs() == (mc.PanIdTlv(7), mc.ChannelTlv(20))


# --- creation -------------------------------------------------------------------------------


def test_new_active_dataset_is_complete_and_openthread_like() -> None:
    ds = new_active_dataset(random.Random(7))
    assert ds.is_complete
    assert ds.active_timestamp == Timestamp(1)
    assert ds.channel is not None and 11 <= ds.channel <= 26
    assert ds.channel_mask == ChannelMask.from_ot_mask(0x07FFF800)
    assert ds.security_policy is not None
    assert ds.security_policy.to_bytes() == bytes.fromhex("02a0f7f8")  # as in OpenThread's
    assert ds.mesh_local_prefix is not None and ds.mesh_local_prefix[0] == 0xFD
    assert ds.network_key is not None and len(ds.network_key) == 16
    assert ds.network_name == f"Gateway-{ds.pan_id:04x}"
    assert ActiveDataset.from_hex(ds.to_hex()) == ds
    # The OpenThread CLI accepts datasets in its own TLV order; ours matches it.
    assert [t.type for t in ds.to_tlvs()] == [14, 0, 53, 2, 7, 5, 3, 1, 4, 12]


def test_new_active_dataset_randomness() -> None:
    a = new_active_dataset()
    b = new_active_dataset()
    assert a.network_key != b.network_key and a.pskc != b.pskc
    for seed in range(300):
        ds = new_active_dataset(random.Random(seed))
        assert ds.pan_id != 0xFFFF
    with pytest.raises(InvalidArgument):
        new_active_dataset(pan_id=0xFFFF)
    with pytest.raises(InvalidArgument):
        new_active_dataset(pskc=bytes(16), passphrase="123456")


def test_new_active_dataset_pskc_from_passphrase() -> None:
    # openthread/openthread tests/unit/test_pskc.cpp: passphrase "123456", network name
    # "OpenThread", extended PAN ID 0001020304050607... gives 44988e22cf652eeeccd1e4c01d0154f8
    # (second vector of the fact sheet §5.1 table, XPANID 0102030405060708).
    ds = new_active_dataset(
        random.Random(1),
        passphrase="123456",
        network_name="OpenThread",
        ext_pan_id=bytes.fromhex("0102030405060708"),
    )
    assert ds.pskc == bytes.fromhex("44988e22cf652eeeccd1e4c01d0154f8")
    explicit = new_active_dataset(random.Random(1), pskc=bytes(range(16)))
    assert explicit.pskc == bytes(range(16))


# --- commissioner dataset ---------------------------------------------------------------------


def test_commissioner_dataset() -> None:
    # Commissioning data as the leader writes it after a petition (fact sheet §3.9): BA locator,
    # session ID and a 1-byte all-zero steering data (nobody may join yet).
    wire = bytes.fromhex("090204000b021234080100")
    cd = CommissionerDataset.from_bytes(wire)
    assert (cd.border_agent_locator, cd.session_id, cd.steering_data) == (0x0400, 0x1234, b"\x00")
    assert not cd.joining_allowed and cd.to_bytes() == wire
    opened = replace(cd, steering_data=b"\xff", joiner_udp_port=1000)
    assert opened.joining_allowed
    assert opened.to_bytes() == wire[:-1] + b"\xff" + bytes.fromhex("120203e8")
    # MGMT_COMMISSIONER_SET content (no BA locator), in the order given.
    cs = CommissionerDataset(session_id=1, steering_data=bytes(16), joiner_udp_port=1000)
    assert [t.type for t in cs.to_tlvs()] == [11, 8, 18]
    with pytest.raises(ParseError):
        CommissionerDataset.from_bytes(bytes.fromhex("0800"))


# --- properties -------------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)


@st.composite
def active_datasets(draw: st.DrawFn, cls: Any = ActiveDataset) -> Any:
    def maybe(s: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.none(), s))

    kw: dict[str, Any] = {
        "active_timestamp": maybe(st.builds(Timestamp, st.integers(0, 2**48 - 1))),
        "channel": maybe(st.integers(11, 26)),
        "wakeup_channel": maybe(st.integers(11, 26)),
        "channel_mask": maybe(
            st.lists(st.integers(11, 26), unique=True).map(ChannelMask.from_channels)
        ),
        "ext_pan_id": maybe(st.binary(min_size=8, max_size=8)),
        "mesh_local_prefix": maybe(st.binary(min_size=8, max_size=8)),
        "network_key": maybe(st.binary(min_size=16, max_size=16)),
        "network_name": maybe(
            st.text(min_size=1, max_size=16).filter(lambda s: len(s.encode()) <= 16)
        ),
        "pan_id": maybe(u16),
        "pskc": maybe(st.binary(min_size=16, max_size=16)),
        "security_policy": maybe(st.builds(SecurityPolicy, rotation_hours=u16)),
        "extra_tlvs": tuple(
            Tlv(t, v)
            for t, v in draw(
                st.dictionaries(st.sampled_from([6, 9, 200, 201]), st.binary(max_size=4))
            ).items()
        ),
    }
    if cls is PendingDataset:
        kw["pending_timestamp"] = maybe(st.builds(Timestamp, st.integers(0, 2**48 - 1)))
        kw["delay_timer"] = maybe(st.integers(0, 2**32 - 1))
    return cls(**kw)


@settings(max_examples=300, deadline=None)
@given(active_datasets())
def test_active_roundtrip(ds: ActiveDataset) -> None:
    back = ActiveDataset.from_hex(ds.to_hex())
    assert back == ds
    assert back.to_hex() == ds.to_hex()


@settings(max_examples=300, deadline=None)
@given(active_datasets(PendingDataset))
def test_pending_roundtrip(ds: PendingDataset) -> None:
    assert PendingDataset.from_bytes(ds.to_bytes()) == ds


@settings(max_examples=200, deadline=None)
@given(
    st.none() | u16,
    st.none() | u16,
    st.none() | st.binary(min_size=1, max_size=16),
    st.none() | u16,
)
def test_commissioner_roundtrip(
    ba: int | None, sid: int | None, sd: bytes | None, port: int | None
) -> None:
    cd = CommissionerDataset(
        border_agent_locator=ba, session_id=sid, steering_data=sd, joiner_udp_port=port
    )
    assert CommissionerDataset.from_bytes(cd.to_bytes()) == cd


@settings(max_examples=300, deadline=None)
@given(st.permutations(decode_tlvs(bytes.fromhex(README_PENDING_X))))
def test_any_order_reencodes_identically(tlvs: list[Tlv]) -> None:
    wire = b"".join(t.to_bytes() for t in tlvs)
    assert PendingDataset.from_bytes(wire).to_bytes() == wire


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=260))
def test_fuzz_from_bytes(data: bytes) -> None:
    for cls in (ActiveDataset, PendingDataset, CommissionerDataset):
        try:
            ds = cls.from_bytes(data)
        except ParseError:
            continue
        assert ds.to_bytes() == data


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_from_hex(text: str) -> None:
    try:
        ActiveDataset.from_hex(text)
    except ParseError:
        pass
