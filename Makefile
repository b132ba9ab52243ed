# molab: `make demo` sets up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test setup bench clean

$(BIN)/molab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/molab

demo: setup
	$(BIN)/molab demo

test: setup
	$(BIN)/python -m pytest molab tests

bench: setup
	$(BIN)/python bench/pretrain_throughput.py
	$(BIN)/python bench/demo_time.py

clean:
	rm -rf $(VENV) runs
