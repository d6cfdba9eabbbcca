# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

## Start a local broker (Apache Kafka, kept in ./.banking-dev; Tansu without Java) and one worker (Ctrl-C stops both).
run: install
	$(BIN)/banking-app dev

## Lint, then the whole test suite (unit, property, agent and broker integration tests).
test: install lint
	$(BIN)/python -m pytest -q

## The benchmark of record: writes docs/BENCHMARKS.md (takes a while; not part of test).
bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check banking_app tests bench examples
	$(BIN)/ruff format --check banking_app tests bench examples
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) banking-data .pytest_cache .hypothesis
