# Everything runs in a project-local virtual environment, so a fresh machine needs only Python 3.11+,
# make, and for `make test` a PostgreSQL server and a Chromium or Chrome (downloaded when missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck browser demo clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pipecat_audio_capture tests examples benchmarks scripts
	$(BIN)/ruff format --check pipecat_audio_capture tests examples benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser tests drive any installed Chromium or Chrome (tests/support/browser_finder.py says
# where it looks); without one, Playwright downloads its own Chromium once.
browser: $(STAMP)
	@$(BIN)/python tests/support/browser_finder.py --install --log $(VENV)/playwright-install.log

test: lint typecheck browser
	$(BIN)/pytest -q

# The main job: a simulated call recorded end to end, offline, on the embedded SQLite index.
demo: $(STAMP)
	$(BIN)/pipecat-audio-capture demo --out recordings

# Benchmarks (not tests): 10-15 minutes on 2 cores; writes benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
