# lossctl developer commands. `make demo` and `make test` install what they need into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench bench-parallel bench-progress bench-scale bench-memory bench-startup fuzz dist clean

install: $(STAMP)

# Quiet: only errors, so `make demo` on a fresh clone shows lossctl's report, not pip's chatter.
$(STAMP): pyproject.toml constraints.txt
	@echo "installing lossctl and its dev tools into $(VENV) (once)…"
	@$(PYTHON) -m venv $(VENV)
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install -qq --upgrade pip
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install -qq -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/lossctl check configs/*.yaml configs/distributed/*.yaml  # configs/distributed/broken/ fails on purpose

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

# What recording calls into the Function (for honest timeouts) costs the battery: paired on/off rounds.
bench-progress: install
	$(BIN)/python benchmarks/progress.py

fuzz: install
	$(BIN)/python benchmarks/fuzz.py --specs 100000

bench-startup: install
	$(BIN)/python benchmarks/startup.py

# A wheel in dist/ (pip install dist/lossctl-*.whl); builds offline with the venv's setuptools.
dist: install
	rm -rf dist build
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

bench-scale: install
	$(BIN)/python benchmarks/scale.py

bench-memory: install
	$(BIN)/python benchmarks/memory.py
