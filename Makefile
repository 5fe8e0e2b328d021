# Two commands on a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.base
	$(BIN)/catalog demo

test: $(VENV)/.test
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow and not serial" --durations=25 tests
	$(BIN)/python -m pytest -q -m "serial and not slow" tests
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -n 2 -m "jax and not slow" --durations=15 tests

test-slow: $(VENV)/.test
	$(BIN)/python -m pytest -q -n 2 -m slow tests

clean:
	rm -rf $(VENV) runs .pytest_cache
