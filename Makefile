# `make run` and `make test` do all set-up on a fresh machine: a virtual environment in .venv with
# the CPU build of PyTorch pinned by constraints.txt, the project installed in it, then the job.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]" -c constraints.txt
	touch $@

.PHONY: run test
run: $(VENV)/.installed
	$(BIN)/rnnlab-tui train --cell srn --lr 0.2

test: $(VENV)/.installed
	$(BIN)/python -m pytest
