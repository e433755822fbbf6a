# lossctl developer commands. `make demo` and `make test` install what they need into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench bench-parallel bench-scale clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/lossctl check configs/

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check lossctl tests
	$(BIN)/ruff format --check lossctl tests

format: install
	$(BIN)/ruff format lossctl tests
	$(BIN)/ruff check --fix lossctl tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

bench: install
	$(BIN)/python benchmarks/battery.py

bench-parallel: install
	$(BIN)/python benchmarks/parallel.py

bench-scale: install
	$(BIN)/python benchmarks/scale.py
