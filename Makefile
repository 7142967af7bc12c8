# The project's two entry points: `make demo` (the main job) and `make test`.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := ../shared/data
DEMO_OUT := out/demo

.PHONY: setup test demo clean

$(BIN)/actionrec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,serve,train,dev]'
	touch $@

setup: $(BIN)/actionrec

test: setup
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/actionrec extract $(DATA)/videos/hugging_ntu_style.mp4 -o $(DEMO_OUT)/hugging.npz
	$(BIN)/actionrec info $(DEMO_OUT)/hugging.npz

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
