# FLOps: the two commands a fresh machine needs are `make quickstart` and `make test`.
# Both install what they need first (system tools, a virtualenv in .venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FLOPS := $(VENV)/bin/flops
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
# Folders of wheels the host prefers (e.g. the CPU build of torch), as pip uses
# them: uv reads neither PIP_FIND_LINKS nor pip.conf, so they are passed on.
PIP_LINKS := $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
FIND_LINKS := $(foreach dir,$(sort $(PIP_LINKS)),--find-links $(dir))
CACHE := .cache
SYSTEM_TOOLS := git prlimit taskset setpriv bwrap buildah podman runc skopeo docker-registry debootstrap qemu-aarch64-static update-binfmts haproxy
# Images (issue 3): Buildah builds, Podman runs (and serves the Docker API), a
# CNCF registry, debootstrap for offline base images, QEMU for arm64; HAProxy
# for the Fleet-only front of jobs with joined learners (issue 10).
SYSTEM_PACKAGES := git util-linux bubblewrap buildah podman runc skopeo docker-registry debootstrap qemu-user-static binfmt-support haproxy
PYTEST_ARGS ?=

.PHONY: help install system quickstart compose test lint unit integration bench clean down

help:
	@echo "make quickstart   install, start the embedded stack, train examples/mnist-sklearn"
	@echo "make test         install, lint, run every test (unit, integration, end to end)"
	@echo "make compose      install beside your orchestrator: docker-compose.yml, built and up"
	@echo "make unit | integration | lint | bench | down | clean"

system:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages for:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "FLOps needs Python 3.11 or newer")'

$(STAMP): pyproject.toml | system
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) $(FIND_LINKS) -e ".[dev]"
	@# Hosts with PYTHONDONTWRITEBYTECODE never cache bytecode: compile once here
	@# so every `flops` command and service starts without recompiling its imports.
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

$(CACHE)/digits.parquet: examples/data/make_digits.py | install
	mkdir -p $(CACHE)
	$(PY) examples/data/make_digits.py $@

quickstart: install $(CACHE)/digits.parquet
	$(FLOPS) up
	$(FLOPS) data push $(CACHE)/digits.parquet --tag digits --partitions 2
	$(FLOPS) project submit ./examples/mnist-sklearn --rounds 3 --learners 2 --data-tag digits --follow

# The compose install (README, "Install beside your orchestrator"); Docker:
# make compose COMPOSE="docker compose"
COMPOSE ?= $(VENV)/bin/podman-compose
compose: install
	$(FLOPS) compose prepare
	$(COMPOSE) up -d --build

lint: install
	mkdir -p $(CACHE)/typecheck
	ln -sfn ../../flops $(CACHE)/typecheck/flops
	ln -sfn ../../flops_utils $(CACHE)/typecheck/flops_utils
	ln -sfn ../../management $(CACHE)/typecheck/flops_management
	ln -sfn ../../cli $(CACHE)/typecheck/flops_cli
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

integration: install
	$(PY) -m pytest tests/integration -q -ra $(PYTEST_ARGS)

test: lint
	$(PY) -m pytest tests -q -ra --durations=40 $(PYTEST_ARGS)

bench: install
	$(PY) bench/e2e.py
	$(PY) bench/round_overhead.py
	$(PY) bench/images.py
	$(PY) bench/joined_learner.py

down:
	-$(FLOPS) down

clean: down
	rm -rf $(VENV) $(CACHE) build *.egg-info
