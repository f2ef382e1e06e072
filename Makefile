# On a fresh machine (Python 3.11, pip, a C compiler):
#   make demo    the end-to-end tour: starts the HTTP server, loads the bundled real data through
#                the client, queries it over HTTP, prints results, recall and latency, stops
#   make serve   serves the bundled collection on 127.0.0.1:8333 until Ctrl-C
#   make test    installs the test dependencies and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo serve test lint clean install-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[server]"
	touch $@

# diskannpy (the benchmark's DiskANN adapters) pins numpy==1.25 in its 0.7 metadata but runs on
# numpy 2, so it goes in without its dependencies (bench/README.md)
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "diskannpy==0.7.0"
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/python -m bench.demo.tour

serve: $(VENV)/.demo-installed
	$(BIN)/python -m bench.demo.serve

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check quiver tests server

# The installed `quiver` command works outside the checkout: a fresh venv in a temporary
# directory, a non-editable install, then commands run from that directory.
install-check:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; py="$$tmp/venv/bin/python"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$py" -m pip install --quiet "$(CURDIR)[server]"; \
	cd "$$tmp"; \
	for mod in server bench; do \
		if "$$py" -c "import $$mod" 2>/dev/null; then echo "top-level $$mod installed"; exit 1; fi; \
	done; \
	"$$tmp/venv/bin/quiver" --version; \
	"$$py" -c "import numpy as np; np.save('v.npy', np.eye(4, dtype='float32'))"; \
	"$$tmp/venv/bin/quiver" load demo v.npy --create --quiet --db-dir db; \
	"$$tmp/venv/bin/quiver" query demo --vector '[1, 0, 0, 0]' -k 2 --db-dir db; \
	"$$py" -c "import quiver.server, quiver.client; print('install-check: ok')"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
