# Every target creates .venv on first use and installs what it needs into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint format clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/hauswacht demo --dashboard

test: $(BIN)/.installed
	$(BIN)/pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run

lint: $(BIN)/.installed
	$(BIN)/ruff check hauswacht tests bench
	$(BIN)/ruff format --check hauswacht tests bench

format: $(BIN)/.installed
	$(BIN)/ruff format hauswacht tests bench
	$(BIN)/ruff check --fix hauswacht tests bench

clean:
	rm -rf $(VENV) hauswacht-data .pytest_cache
