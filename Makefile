# Two commands a newcomer needs: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto
# The Lambda runtime's Python (template Globals): bytecode is valid only for the version that wrote it.
LAMBDA_PYTHON ?= python3.13
BUILD_DIR := .aws-sam/build

.PHONY: all test lint typecheck cfn-lint pytest bench run openapi validate build lock clean

all: test

$(STAMP): layers/common/requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Runtime dependencies of the layer: exact versions, verified by hash.
	$(BIN)/python -m pip install --quiet --require-hashes -r layers/common/requirements.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: lint typecheck cfn-lint pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/common/strongroom
	$(BIN)/mypy local/strongroom_local

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

# The sandbox Okta's demo org: big enough to page through, small enough to back up within
# Okta's default per-minute rate limits. Override on the command line: make run SANDBOX=...
SANDBOX ?= --sandbox-port 3001 --sandbox-users 2000 --sandbox-groups 60 --sandbox-apps 20 \
  --sandbox-size group_rules=8 --sandbox-size admins=6

run: $(STAMP)
	$(BIN)/strongroom local $(SANDBOX)

# Regenerate the committed OpenAPI document from the functions' resolvers.
openapi: $(STAMP)
	$(BIN)/python -m strongroom_local.openapi

# Needs the SAM CLI (`pip install aws-sam-cli`); neither command contacts AWS.
validate: $(STAMP)
	sam validate --lint

# SAM ships no bytecode (its build leaves __pycache__ out of our code and unpacks the layer's
# wheels without compiling them) and Lambda's file system is read-only, so without this every
# cold start compiles the layer's libraries, the layer and the function from source (see
# benchmarks/bench_cold_start.py). unchecked-hash: valid whatever zipping does to mtimes.
build: $(STAMP)
	sam build
	$(LAMBDA_PYTHON) -m compileall -q --invalidation-mode unchecked-hash \
	  $(BUILD_DIR)/CommonLayer/python \
	  $$(find $(BUILD_DIR) -mindepth 1 -maxdepth 1 -type d -name '*Function')

# Re-pin dependencies (needs network access to PyPI).
lock:
	$(PYTHON) -m pip install --quiet pip-tools
	$(PYTHON) -m piptools compile --quiet --no-header --strip-extras --generate-hashes \
	  --no-emit-index-url --no-emit-find-links \
	  layers/common/requirements.in -o layers/common/requirements.txt
	$(PYTHON) -m piptools compile --quiet --no-header --strip-extras --generate-hashes \
	  --no-emit-index-url --no-emit-find-links \
	  requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
