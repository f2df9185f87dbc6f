# Set-up and entry points. Both targets reuse .venv once it is complete.
# --no-compile, then compileall -j 0: pip would byte-compile one file at a time; compileall uses every core,
# and without it every first import (the first test processes, the first run) compiles what it uses.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test install data slurm docs clean-logs

install: $(STAMP)

$(STAMP): pyproject.toml scripts/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile -c scripts/constraints.txt -e '.[test]'
	@# the Optuna sweeper plugin's metadata pins optuna<3; it runs on current Optuna (tests/test_optuna.py)
	$(PY) -m pip install --quiet --no-deps 'hydra-optuna-sweeper==1.3.0'
	@# some third-party files (test fixtures, Python-2 examples) do not compile; that is theirs, not an install error
	@$(PY) -m compileall -q -j 0 $(VENV)/lib/python*/site-packages > /dev/null 2>&1 || true
	@touch $(STAMP)

data:
	@bash scripts/install_fashion_mnist.sh
	@bash scripts/install_fortunes.sh

# a one-node Slurm cluster for the Slurm tests (needs root); without it those tests skip and say why
slurm:
	@bash scripts/slurm_local.sh up || echo "note: Slurm was not started; tests/test_slurm.py will skip and say why"

train: install data
	$(PY) train.py $(ARGS)

# lint (ruff), the layers and no import circles (import-linter; both configured in pyproject.toml), the docs site
# (a broken link, page or anchor fails), then the suite
test: install data slurm
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	$(PY) -m pytest $(PYTEST_ARGS)

# the docs site at http://127.0.0.1:8000, rebuilt on every change
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

clean-logs:
	rm -rf logs
