# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
UI_LISTEN ?= 127.0.0.1:12000
export PATH := $(VENV)/bin:$(PATH)
# pyroute2 forks to enter network namespaces; gRPC core's fork handlers (active unless this is
# false) can deadlock such a fork while gRPC threads run (seen in tests/agent set-up, stuck in
# fork()). Nothing here uses gRPC in a forked child, so the handlers are turned off.
export GRPC_ENABLE_FORK_SUPPORT := false

.PHONY: setup setup-run run controlplane down test test-unit lint proto bench chaos soak clean fuzz

setup:                ## everything: packages, venv, dockerd, etcd image
	@bash scripts/setup.sh test

setup-run:
	@bash scripts/setup.sh run

run: setup-run        ## the Star Wars scenario on a two-node lab (stays up; `make down` removes it)
	$(PY) -m integration.lab.story
	@bash scripts/console.sh start $(UI_LISTEN)   # the web console (`bulkhead ui`), its URL printed

controlplane: setup-run  ## only the control plane (embedded etcd) in the foreground
	$(VENV)/bin/bulkhead-controlplane

down: setup-run       ## remove the lab `make run` left up
	@bash scripts/console.sh stop
	$(VENV)/bin/bulkhead-lab down

test: setup           ## lint, type-check, unit and integration tests
	$(PY) -m ruff check .
	$(PY) -m mypy cli controlplane nodeagent integration tests bench proto/bulkhead
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: setup-run
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

lint: setup-run
	$(PY) -m ruff check .
	$(PY) -m mypy cli controlplane nodeagent integration tests bench proto/bulkhead

proto: setup-run      ## regenerate proto/bulkhead/v1/*_pb2*.py
	$(PY) scripts/genproto.py

bench: setup-run      ## every benchmark, each against a baseline of the same run; fails if one did
	@failed=0; for b in identity policy fanout datapath_maps datapath services l7; do \
		$(PY) bench/$$b.py || failed=1; done; exit $$failed

chaos: setup          ## the fault suite for CHAOS_SECONDS (default 300; CHAOS_SEED replays a run)
	$(PY) -m tests.chaos

soak: setup           ## 30 minutes of steady churn (SOAK_SECONDS), memory and lag every minute
	$(PY) -m tests.chaos --soak

FUZZ_EXAMPLES ?= 2000
fuzz: setup-run       ## the fuzz suites (tests/fuzz) with FUZZ_EXAMPLES examples per test (default 2000)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/fuzz $(PYTEST_ARGS)

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
