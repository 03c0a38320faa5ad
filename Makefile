# Two commands matter: `make demo` and `make test`. Each installs what is missing first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
APT_PKGS := libsystemd-dev pkg-config tshark iproute2 iputils-ping
STAMP := $(VENV)/.installed

.PHONY: all deps venv test lint typecheck unit demo bench clean

all: test

# System packages (Debian / Raspberry Pi OS). Only installs what is missing.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory deps
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway drivers tests
	$(VENV)/bin/ruff format --check gateway drivers tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VPY) -X dev -m pytest -q

test: $(STAMP)
	@$(MAKE) --no-print-directory lint typecheck unit

demo: $(STAMP)
	$(VPY) -m gateway.demo

bench: $(STAMP)
	@for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
