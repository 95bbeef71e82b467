# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup setup-run run test test-unit lint proto bench down clean

setup:                ## everything: packages, venv, dockerd, etcd image
	@bash scripts/setup.sh test

setup-run:
	@bash scripts/setup.sh run

run: setup-run        ## embedded etcd + control plane in the foreground
	$(VENV)/bin/bulkhead-controlplane

test: setup           ## lint, type-check, unit and integration tests
	$(PY) -m ruff check .
	$(PY) -m mypy controlplane nodeagent integration tests bench proto/bulkhead
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: setup-run
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

lint:
	$(PY) -m ruff check .
	$(PY) -m mypy controlplane nodeagent integration tests bench proto/bulkhead

proto:                ## regenerate proto/bulkhead/v1/*_pb2*.py
	$(PY) scripts/genproto.py

bench: setup
	$(PY) bench/identity.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
