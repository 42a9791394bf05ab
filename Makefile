# Two commands for a fresh machine: `make run` and `make test`.
# `make run` with no BOT_TOKEN starts the sandbox and prints its address as the first line; the
# first-run install therefore talks on stderr only.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench screenshots clean

$(STAMP): pyproject.toml
	@echo "Installing Linli and its tools into $(VENV) (first run only, takes a minute)..." >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --upgrade pip >&2
	@$(PY) -m pip install --quiet -e '.[test]' >&2
	@touch $(STAMP)

run: $(STAMP)
	@$(PY) main.py

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Every benchmark, one after another; each prints its figures and the ratio it is judged by.
BENCHES := $(basename $(notdir $(filter-out bench/__init__.py,$(wildcard bench/*.py))))
bench: $(STAMP)
	@for b in $(BENCHES); do echo "== bench.$$b"; $(PY) -m bench.$$b || exit 1; done

# The user's guides show the sandbox page: the browser test takes the pictures (needs Chromium).
screenshots: $(STAMP)
	LINLI_SCREENSHOTS=docs/img LINLI_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/browser

clean:
	rm -rf $(VENV)
