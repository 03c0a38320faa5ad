"""Every parser of gateway/thread/network has a fuzz target (tests/fuzz/fuzz_network.py, run by
tests/fuzz/test_fuzz_smoke.py through fuzz_parsers.TARGETS), with the same naming rule the
smoke test applies to gateway/wire and gateway/crypto; and every name a target claims exists."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import gateway.thread.network
from tests.fuzz import fuzz_parsers as fp
from tests.fuzz.fuzz_network import PREFIX
from tests.fuzz.test_fuzz_smoke import parser_entry_points


def _parsers() -> Iterator[str]:
    return parser_entry_points(gateway.thread.network)


def test_every_network_parser_has_a_fuzz_target() -> None:
    claimed = {
        e.removeprefix(PREFIX)
        for t in fp.TARGETS.values()
        for e in t.entry_points
        if e.startswith(PREFIX)
    }
    found = set(_parsers())
    assert {"netdata.parse_network_data", "security.open_mle", "frames.open_mac"} <= found
    assert not sorted(found - claimed), f"network parsers without a fuzz target: {found - claimed}"
    for name in claimed:
        module, _, rest = name.partition(".")
        obj: object = importlib.import_module(f"gateway.thread.network.{module}")
        for part in rest.split("."):
            obj = getattr(obj, part)
        assert callable(obj), name


def test_the_network_targets_are_registered() -> None:
    names = {n for n in fp.TARGETS if n.startswith("network.")}
    assert {"network.netdata", "network.parent_attach", "network.child_attach"} <= names
