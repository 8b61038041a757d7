# Two commands a newcomer needs: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto
# The Lambda runtime's Python (template Globals): sam build runs its pip, and bytecode is valid
# only for the version that wrote it. Found on PATH, else among pyenv's versions.
LAMBDA_RUNTIME = $(shell sed -n 's/^    Runtime: \(python3\.[0-9]*\)$$/\1/p' template.yaml)
LAMBDA_PYTHON ?= $(firstword \
  $(shell $(LAMBDA_RUNTIME) -c 'import sys; print(sys.executable)' 2>/dev/null) \
  $(wildcard $(HOME)/.pyenv/versions/$(LAMBDA_RUNTIME:python%=%)*/bin/$(LAMBDA_RUNTIME)) \
  $(LAMBDA_RUNTIME))
BUILD_DIR := .aws-sam/build

# Deployment tools, each in a venv of its own: the SAM CLI and checkov pin different boto3
# versions, and neither may move the project's pins. Both install from PyPI and contact
# nothing else: SAM's telemetry is off and its app dir (own config, in the venv) records a
# version check far ahead; checkov runs with --skip-download, no API key, no update check.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
SAM := SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR=$(CURDIR)/$(SAM_VENV)/sam-app $(SAM_VENV)/bin/sam
CHECKOV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov \
  --skip-download --framework cloudformation --compact --quiet

.PHONY: all test lint typecheck cfn-lint pytest bench run openapi validate checkov build lock clean

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

# The functions' own packages (their thin app.py handlers are exercised by the tests).
FUNCTION_PACKAGES = functions/credential_store/credential_store functions/oauth_callback/oauth_flow \
  functions/scheduled_backup/backup_jobs functions/signed_url_issuer/backup_downloads \
  functions/webhook_verifier/webhook_verifier

typecheck: $(STAMP)
	$(BIN)/mypy layers/common/strongroom
	$(BIN)/mypy local/strongroom_local
	$(BIN)/mypy $(FUNCTION_PACKAGES)

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# Every benchmark runs; the target fails if any of them missed its target.
bench: $(STAMP)
	status=0; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || status=1; done; \
	exit $$status

# The sandbox Okta's demo org: big enough to page through, small enough to back up within
# Okta's default per-minute rate limits. Override on the command line: make run SANDBOX=...
SANDBOX ?= --sandbox-port 3001 --sandbox-users 2000 --sandbox-groups 60 --sandbox-apps 20 \
  --sandbox-size group_rules=8 --sandbox-size admins=6

run: $(STAMP)
	$(BIN)/strongroom local $(SANDBOX)

# Regenerate the committed OpenAPI document from the functions' resolvers.
openapi: $(STAMP)
	$(BIN)/python -m strongroom_local.openapi

$(SAM_STAMP): requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-sam.txt
	mkdir -p $(SAM_VENV)/sam-app
	echo '{"telemetryEnabled": false, "lastVersionCheck": 4102444800.0}' \
	  > $(SAM_VENV)/sam-app/metadata.json
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-checkov.txt
	touch $@

# Offline: SAM's own checks and cfn-lint through it, then checkov's policies (skips, each with
# its reason, are on the resources in template.yaml).
validate: $(SAM_STAMP) checkov
	$(SAM) validate --lint

checkov: $(CHECKOV_STAMP)
	$(CHECKOV) --file template.yaml

# sam build runs pip for the layer (from PyPI: manylinux wheels for arm64 and the runtime's
# Python, pinned and hash-checked by layers/common/requirements.txt); no container, no AWS.
# SAM ships no bytecode, neither for our code nor for the layer's dependencies (it unpacks their
# wheels without compiling), and Lambda's file system is read-only: without this step every
# cold start compiles boto3, pydantic, Powertools and our code from source (about 1 s of CPU
# for the import floor alone; see benchmarks/bench_cold_start.py). unchecked-hash: valid
# whatever zipping does to mtimes.
build: $(SAM_STAMP)
	PATH="$(dir $(LAMBDA_PYTHON)):$$PATH" $(SAM) build
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
	for tool in sam checkov; do \
	  $(PYTHON) -m piptools compile --quiet --no-header --strip-extras --generate-hashes \
	    --allow-unsafe --no-emit-index-url --no-emit-find-links \
	    requirements-$$tool.in -o requirements-$$tool.txt; \
	done

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
