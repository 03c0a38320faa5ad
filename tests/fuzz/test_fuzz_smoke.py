"""Bounded CI run of the parser fuzz targets (tests/fuzz/fuzz_parsers.py; docs/fuzzing.md).

Every parser entry point of gateway/wire and gateway/crypto must have a target; every target's
seeds are valid inputs that reach beyond the first check (the DTLS and CBSB replays reach the end
of a real session); a short mutation run and a Hypothesis ``binary()`` run per target find no
exception other than the one the target allows; and the engine itself is shown to find,
minimise and report a planted bug and a planted hang, so that a clean run means something.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import time
import types
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import drivers.spinel
import gateway.crypto
import gateway.wire
from gateway.crypto.dtls import ApplicationData, DtlsState, HandshakeComplete
from gateway.errors import ParseError
from gateway.wire.cbsb_thing import ThingState
from tests.fuzz import fuzz_parsers as fp
from tests.fuzz.conftest import FuzzBudget

PARSER_NAME = re.compile(
    r"^(parse|decode|read_|from_bytes|from_hex|unsecure|open_|check_|validate_|decrypt|feed$|"
    r"accept$|receive_datagram|handle_frame|peek_|classify|header_sizes|decompress|verify_)"
)


def parser_entry_points(package: types.ModuleType) -> Iterator[str]:
    """``module.function`` and ``module.Class.method`` names in ``package`` that look like
    parsers."""
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) and PARSER_NAME.match(name):
                yield f"{info.name}.{name}"
            elif inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    method = inspect.isfunction(value) or isinstance(
                        value, classmethod | staticmethod
                    )
                    if method and PARSER_NAME.match(attr):
                        yield f"{info.name}.{name}.{attr}"


def _parser_entry_points() -> Iterator[str]:
    for package in (gateway.wire, gateway.crypto):
        yield from parser_entry_points(package)
    yield from (f"drivers.spinel.{name}" for name in parser_entry_points(drivers.spinel))


def test_every_parser_entry_point_has_a_target() -> None:
    covered = {e for t in fp.TARGETS.values() for e in t.entry_points}
    found = set(_parser_entry_points())
    assert len(found) > 60  # the scan itself works
    missing = sorted(found - covered)
    assert not missing, f"parsers without a fuzz target in tests/fuzz/fuzz_parsers.py: {missing}"
    # and every name a target claims exists (no stale or misspelled entry)
    for name in covered - found:
        if "*" in name or " " in name:
            continue
        module_name, _, rest = name.partition(".")
        if module_name == "drivers":
            module_name, _, rest = rest.partition(".")
            obj: object = importlib.import_module(f"drivers.{module_name}")
        else:
            package = "gateway.wire" if module_name in _WIRE else "gateway.crypto"
            obj = importlib.import_module(f"{package}.{module_name}")
        for part in rest.split("."):
            obj = getattr(obj, part)
        assert callable(obj), name


_WIRE = {info.name for info in pkgutil.iter_modules(gateway.wire.__path__)}


@pytest.mark.parametrize("name", sorted(fp.TARGETS))
def test_seeds_are_valid_and_reach_past_the_first_check(name: str) -> None:
    target = fp.TARGETS[name]
    seeds = list(target.seeds())
    assert seeds
    clean = 0
    for seed in seeds:
        assert len(seed) <= target.max_len, "a seed longer than the mutation limit"
        assert fp.check(target, seed) is None, seed.hex()
        try:
            target.run(seed)
            clean += 1
        except target.allowed:
            pass
    assert clean, "no seed gets through the parser: the target only tests its first check"


def test_session_replays_reach_the_end() -> None:
    server = fp.replay_dtls_server(fp.TARGETS["dtls.server"].seeds()[0])
    client = fp.replay_dtls_client(fp.TARGETS["dtls.client"].seeds()[0])
    for endpoint in (server, client):
        events = endpoint.events()
        assert isinstance(events[0], HandshakeComplete)
        assert any(isinstance(e, ApplicationData) for e in events)
        assert endpoint.state is DtlsState.CLOSED
    gateway = fp.replay_gateway(fp.TARGETS["cbsb.gateway_session"].seeds()[0])
    assert gateway.counters["joins_completed"] == 1
    thing = fp.replay_thing(fp.TARGETS["cbsb.thing_join"].seeds()[0])
    assert thing.state is ThingState.COMMITTED


@pytest.mark.parametrize("name", sorted(fp.TARGETS))
def test_bounded_mutation_fuzz(name: str, fuzz_budget: FuzzBudget) -> None:
    seed = fuzz_budget.seed if fuzz_budget.seed is not None else time.time_ns()
    result = fp.fuzz(
        fp.TARGETS[name],
        seconds=fuzz_budget.seconds_per_target,
        max_execs=fuzz_budget.max_execs_per_target,
        seed=zlib.crc32(name.encode()) ^ seed,
        guided=False,
    )
    assert result.executions > len(fp.TARGETS[name].seeds())
    assert not result.findings, "\n".join(f.describe() for f in result.findings.values())


@settings(settings.get_profile("gateway-fuzz"))
@given(st.sampled_from(sorted(fp.TARGETS)), st.binary(max_size=600))
def test_hypothesis_binary_into_every_target(name: str, data: bytes) -> None:
    note(f"{name}: {data.hex()}")
    exc = fp.check(fp.TARGETS[name], data)
    if exc is not None:
        raise exc


# --- the engine can say no ----------------------------------------------------------------------


def _unchecked_length(data: bytes) -> None:
    """A parser with the classic bug: a length byte used without a bounds check."""
    if len(data) < 2 or data[0] != 0x3C:
        raise ParseError("not ours")
    n = data[1]
    body = data[2:]
    _ = body[n - 1] if n else None  # IndexError when the length byte lies


PLANTED = fp.Target("planted.unchecked_length", _unchecked_length, fp.P, lambda: [b"\x3c\x02ab"])


def test_the_engine_finds_and_minimises_a_planted_bug() -> None:
    result = fp.fuzz(PLANTED, max_execs=5000, seed=1, guided=True)
    ((kind, where),) = result.findings
    finding = result.findings[(kind, where)]
    assert kind == "IndexError" and "_unchecked_length" in where
    assert fp.check(PLANTED, finding.reproducer) is not None
    assert len(finding.reproducer) <= 3  # 3c NN with NN past the end: minimised
    assert finding.reproducer.hex() in finding.describe()


def test_cli_reports_findings_and_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fp.main(["--seconds", "0.1", "--seed", "3", "--target", "tlv.decode"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^tlv\.decode +\d+ +\d+", out, re.M) and "FINDING" not in out
    monkeypatch.setitem(fp.TARGETS, PLANTED.name, PLANTED)
    assert fp.main(["--seconds", "0.3", "--seed", "3", "--target", PLANTED.name]) == 1
    out = capsys.readouterr().out
    assert "FINDING" in out and "IndexError" in out and "reproducer" in out
    assert fp.main(["--list"]) == 0
    assert "dtls.server" in capsys.readouterr().out


def _hangs_on_ff(data: bytes) -> None:
    if data[:1] == b"\xff":
        time.sleep(2)


def test_a_hanging_input_is_a_finding() -> None:
    target = fp.Target("planted.hang", _hangs_on_ff, fp.P, lambda: [b"\x00", b"\xff"])
    result = fp.fuzz(target, max_execs=2, seed=0, guided=False, timeout=0.05, shrink=False)
    assert [f.kind for f in result.findings.values()] == ["ExecTimeout"]


# --- regressions: inputs the long runs found (docs/fuzzing.md) -------------------------------------

REGRESSIONS = [
    # CON GET, one option with delta nibble 14 and extended delta 0xffff: option number
    # 65535 + 269 = 65804. aiocoap decoded it, TmfMessage accepted it and re-encoding raised
    # ValueError (aiocoap options.py _write_extended_field_value). Fixed: decode refuses
    # option numbers above 65535 (RFC 7252 §12.2 registers 16-bit numbers).
    pytest.param("coap.tmf", "400100e0e0ffff", id="coap-option-number-65804"),
    # the largest option number that exists still decodes and re-encodes
    pytest.param("coap.tmf", "400100e0e0fef2", id="coap-option-number-65535"),
    # an SRP update whose AAAA record has class 0: dnspython gave generic rdata and the server
    # read its .address (AttributeError). Fixed: records of a class other than IN are FormErr.
    pytest.param(
        "srp.server",
        "0003280000010000000500020764656661756c74077365727669636504617270610000060001055f74657374045f756470c00c000c00fe00000000000704696e7331c026c03d00ff00ff000000000000067468696e6731c00c00ff00ff000000000000c050001c0000001c2000000db8000100010000000000001234c0500019000100001c2000440201030d5cd4cecc42489e98ed3ff71498051f780f36486d4d44d867d998185784e7da57eef71a40d6a6ad113d47bbf3110bf1185c3ae463317ab00673043abcbcd4054b00002904f800008000000c0002000800001c200012750000001800ff00000000006f00000d000000000000000000010000000000067468696e67310764656661756c740773657276696365046172706100ec15efc6f3a6793b91609f70a8284cca8e6f4b917efee990402e28c22468c1719f1dca4bd19f8184fe71e0991cce6ed52fcb8962609dba232954a591fd65cf5b",
        id="srp-aaaa-class-0",
    ),
    # a KEY whose X||Y is not a point on P-256: ParseError escaped the server. Fixed: FormErr.
    pytest.param(
        "srp.server",
        "0004280000010000000300020764656661756c74077365727669636504617270610000060001067468696e6731c00c00ff00ff000000000000c026001c000100001c200010fd000db8000100010000000000001234c0260019000100001c2000440201030d5cd4cecc42489e98ed3ff71498051f22628ddaf840ebd867d998185784e7da57eef71a40d6a6ad113d47bbf3110bf1185c3ae463317ab00673043abcbcd4054b0000298000000c00020008000000000000000000001800ff00000000006f00000d000000000000000000000000000000067468696e67310764656661756c74077365727669636504617270610098029292d9ddaee175e356c4c8280fde06ec5e3a3667986bda6c7262cb32c8c0a868cb7acb8f082faa4b2daaad3467321b84dcb3e7f980d3dd56445d5d2cb56e",
        id="srp-key-not-on-p256",
    ),
]


@pytest.mark.parametrize(("name", "reproducer"), REGRESSIONS)
def test_regression(name: str, reproducer: str) -> None:
    exc = fp.check(fp.TARGETS[name], bytes.fromhex(reproducer))
    if exc is not None:
        raise exc
