# Two commands matter: `make demo` and `make test`. Each installs what is missing first, quietly:
# apt's, dpkg's and pip's output goes to $(LOG), one line per step goes to the screen.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
LOG := $(CURDIR)/.install.log
# Build: a C compiler and the Python headers (spidev and systemd-python compile on install), the
# systemd headers, venv. Run: iproute2 for the uplink, nftables for the border router's forwarding
# chain, tshark to decode the demo's capture.
RUN_PKGS := build-essential python3-dev python3-venv libsystemd-dev pkg-config iproute2 nftables \
            iputils-ping tshark
# What the tests use besides: shellcheck for the deploy scripts, systemd for systemd-analyze,
# debootstrap and systemd-nspawn for the container tests.
TEST_PKGS := shellcheck systemd debootstrap systemd-container
APT_PKGS := $(RUN_PKGS) $(TEST_PKGS)
STAMP := $(VENV)/.installed
# The suite's time budget: a warning past 20 minutes, a failure at 40.
SUITE_WARN_S := 1200
SUITE_FAIL_S := 2400

.PHONY: all deps demo-deps venv test lint typecheck unit demo bench clean

all: test

# System packages (Debian / Raspberry Pi OS). Only installs what is missing.
deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(APT_PKGS)"

demo-deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(RUN_PKGS)"

_apt:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing system packages:$$missing (log: $(LOG))"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  if ! { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	         $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	           --no-install-recommends $$missing; } >>"$(LOG)" 2>&1; then \
	    echo "installing system packages failed; the last lines of $(LOG):" >&2; \
	    tail -n 15 "$(LOG)" >&2; exit 1; \
	  fi; \
	fi

# The virtual environment with the gateway and its test extra. Debian 12's own `python3 -m venv`
# brings pip 23.0 and setuptools 66 without `wheel`, which cannot build spidev or systemd-python:
# pip, setuptools and wheel are upgraded first in the venv it creates.
$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory demo-deps
	@$(MAKE) --no-print-directory _venv

_venv:
	@if [ ! -x $(VPY) ]; then \
	  echo "==> creating the Python environment in $(VENV)"; \
	  $(PY) -m venv $(VENV) >>"$(LOG)" 2>&1 || { echo "python3 -m venv failed; see $(LOG)" >&2; \
	    tail -n 15 "$(LOG)" >&2; exit 1; }; \
	fi
	@echo "==> installing the gateway and its Python packages into $(VENV) (log: $(LOG))"
	@{ $(VPY) -m pip install --disable-pip-version-check --upgrade pip setuptools wheel && \
	   $(VPY) -m pip install --disable-pip-version-check -e '.[test]'; } >>"$(LOG)" 2>&1 || { \
	  echo "pip install failed; the last lines of $(LOG):" >&2; tail -n 25 "$(LOG)" >&2; exit 1; }
	@touch $(STAMP)

# The system packages are checked every time (a quick dpkg query): `make demo` installs only
# those it needs, so a venv made by the demo does not mean the test tools are there.
venv: deps $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway drivers tests
	$(VENV)/bin/ruff format --check gateway drivers tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The 15 slowest tests are listed at the end; past SUITE_WARN_S a warning, at SUITE_FAIL_S the run
# is stopped and fails.
unit: $(STAMP)
	@start=$$(date +%s); rc=0; \
	timeout --signal=INT --kill-after=60 $(SUITE_FAIL_S) \
	  $(VPY) -X dev -m pytest -q --durations=15 || rc=$$?; \
	took=$$(( $$(date +%s) - start )); \
	echo "test suite: $$took s (warning past $(SUITE_WARN_S) s, failure at $(SUITE_FAIL_S) s)"; \
	if [ $$rc = 124 ] || [ $$took -ge $(SUITE_FAIL_S) ]; then \
	  echo "FAILED: the test suite ran past $(SUITE_FAIL_S) s" >&2; exit 1; fi; \
	if [ $$took -gt $(SUITE_WARN_S) ]; then \
	  echo "WARNING: the test suite took $$took s, more than $(SUITE_WARN_S) s" >&2; fi; \
	exit $$rc

test: venv
	@$(MAKE) --no-print-directory lint typecheck unit

# The demo needs only what runs the gateway (no test tools), then the venv.
demo:
	@$(MAKE) --no-print-directory demo-deps
	@if [ ! -f $(STAMP) ] || [ pyproject.toml -nt $(STAMP) ]; then \
	  $(MAKE) --no-print-directory _venv; fi
	@$(VPY) -m gateway.demo $(DEMO_ARGS)

bench: venv
	@for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info $(LOG)
