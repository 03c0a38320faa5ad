"""Budgets of the fuzz tests: small in CI, as long as you like by hand.

``GATEWAY_FUZZ_PROFILE`` picks one (default ``ci``):

* ``ci``: a few seconds in all (every target runs its seeds, about 0.05 s of mutation fuzzing and
  its share of 400 Hypothesis examples), derandomized so that CI runs are reproducible;
* ``long``: ``GATEWAY_FUZZ_SECONDS`` (default 30) of mutation fuzzing per target and 20 000
  Hypothesis examples, with a fresh random seed each run.

The Hypothesis profile is registered as ``gateway-fuzz`` and only the tests of this directory use
it (``settings(settings.get_profile("gateway-fuzz"))``); the suite-wide default is left alone.
For the full engine with coverage guidance use the CLI (``python -m tests.fuzz.fuzz_parsers``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("GATEWAY_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise pytest.UsageError(f"GATEWAY_FUZZ_PROFILE must be ci or long, not {PROFILE!r}")

settings.register_profile(
    "gateway-fuzz",
    max_examples=400 if PROFILE == "ci" else 20_000,
    deadline=None,
    derandomize=PROFILE == "ci",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


@dataclass(frozen=True)
class FuzzBudget:
    seconds_per_target: float
    max_execs_per_target: int | None
    seed: int | None  # None: a fresh random seed


@pytest.fixture(scope="session")
def fuzz_budget() -> FuzzBudget:
    if PROFILE == "ci":
        return FuzzBudget(0.05, 300, 0)
    return FuzzBudget(float(os.environ.get("GATEWAY_FUZZ_SECONDS", "30")), None, None)
