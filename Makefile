# Two entry points: `make demo` and `make test`. Each does its own (idempotent) set-up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= $(HOME)/.cache/scattermotion-data
# On a machine without a GPU this pinned version resolves to the CPU build (the multi-GB CUDA build is never
# needed for CPU work). Override for another platform, e.g. TORCH_SPEC="torch==2.13.0 --index-url <cpu index>".
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup data demo test lint clean

$(BIN)/.setup-done: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/.setup-done

data: setup
	bash scripts/fetch_data.sh $(DATA) >/dev/null

demo: data
	SCATTERMOTION_DATA=$(DATA) $(BIN)/scattermotion demo

test: data
	SCATTERMOTION_DATA=$(DATA) $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check scattermotion tests benchmarks scripts
	$(BIN)/ruff format --check scattermotion tests benchmarks scripts

clean:
	rm -rf $(VENV) demo_out
