# `make run`: set up .venv and run the quickstart experiment. `make test`: set up .venv with the test
# extras, kubectl and helm, build (or reuse) the Kubernetes control plane, and run the whole suite after the
# quality gates (`lint`: ruff with its complexity rule, and the import contracts; `typecheck`: mypy on src/).
# `make browser`: install headless Chromium (Debian's chromium) for the report's browser tests when missing.
# `make control-plane`: build kube-apiserver, kube-scheduler, kube-controller-manager and etcd from the Go
# module proxy into a cache outside the work tree, linked at .tools/k8s/bin/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.kubetune-run
TEST_STAMP := $(VENV)/.kubetune-test
RUN_ID := $(shell date +%Y%m%d-%H%M%S)

.PHONY: run test lint typecheck tools control-plane clean bench-setup browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	cd examples && ../$(BIN)/kubetune run quickstart.yaml --out ../kubetune-runs/quickstart-$(RUN_ID)

# The import contracts (pyproject.toml, [tool.importlinter]) are read from src/ even when the venv's kubetune
# is installed from another checkout.
lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	PYTHONPATH=src $(BIN)/lint-imports

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

tools: .tools/kubectl .tools/helm

.tools/kubectl .tools/helm:
	$(BIN)/python scripts/fetch_tools.py

control-plane:
	bash scripts/build_control_plane.sh

# Headless Chromium for the report's browser tests (tests/test_report.py): Debian's package, installed when
# missing and apt-get can (as root, or with passwordless sudo); otherwise those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  { $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium >/dev/null 2>&1; }; } \
	  || echo "make browser: could not install chromium; the report's browser tests will skip"; }

test: $(TEST_STAMP) lint typecheck tools control-plane browser
	$(BIN)/python -m pytest -q

# The benchmarks' peers; torch is pinned to the CPU build (Optuna's GPSampler needs it).
bench-setup: $(TEST_STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]' torch==2.13.0

clean:
	rm -rf $(VENV) .tools kubetune-runs .pytest_cache .ruff_cache
