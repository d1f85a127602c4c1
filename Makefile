# The two commands of the README. Both create .venv and install the project on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?= default

.PHONY: study test install smoke book clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make study: run the default study (synthetic data) through papermill and build the book (_build/html)
study: $(STAMP)
	$(VENV)/bin/ocular-study run --profile $(PROFILE)

## make test: the test suite (unit tests, notebook executions, the smoke study end to end)
test: $(STAMP)
	$(PY) -m pytest -q

smoke: $(STAMP)
	$(VENV)/bin/ocular-study run --profile smoke

book: $(STAMP)
	$(VENV)/bin/ocular-study book --profile $(PROFILE)

clean:
	rm -rf _build results data/generated
