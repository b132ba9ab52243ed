# molab: `make demo` sets up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test setup bench docs clean

PIP := $(BIN)/pip install --quiet

$(BIN)/molab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(BIN)/molab
	$(PIP) -e '.[test]'
	touch $@

setup: $(BIN)/molab

demo: setup
	$(BIN)/molab demo --workers 2

test: $(VENV)/.test  # two test processes, each test file in one (its module fixtures built once)
	$(BIN)/python -m pytest -n 2 --dist loadfile molab tests

bench: $(VENV)/.test
	$(PIP) -e '.[test,bench]'
	$(BIN)/python bench/pretrain_throughput.py
	$(BIN)/python bench/busy_machine.py
	$(BIN)/python bench/runs_per_hour.py
	$(BIN)/python bench/stacked.py
	$(BIN)/python bench/answer_logits.py
	$(BIN)/python bench/autocast.py
	$(BIN)/python bench/onednn.py
	$(BIN)/python bench/prior_odds_efficiency.py
	bash bench/demo_time.sh
	bash bench/sweep_time.sh
	bash bench/diversity_time.sh
	bash bench/conditional_time.sh
	bash bench/ray_overhead.sh
	$(BIN)/python bench/lora_checkpoint.py $$(mktemp -d)

clean:  # the environment only: results under runs/ stay (delete a folder there yourself)
	rm -rf $(VENV)

docs: setup  # regenerate the README's configuration table from the config fields' help text
	$(BIN)/python -c "import re, pathlib; from molab.config import keys_markdown; from molab.experiments import BUILT_IN; p = pathlib.Path('README.md'); \
	p.write_text(re.sub(r'(?s)<!-- keys -->.*<!-- /keys -->', lambda m: '<!-- keys -->\n' + keys_markdown(BUILT_IN) + '\n<!-- /keys -->', p.read_text()))"
