# Two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup run lint test test-fast test-wandb-floor clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The main job: the fusion ablation's sequential design (analysis/stats/sequential.py) continued from the shipped
# seeds (results/cpu/fusion): while a row is neither better, worse nor equivalent to cross, the next block of seeds
# of conf/experiment/make_run.yaml (the five paper fusions on the multi-scale bundled digits, CPU, W&B offline, one
# job per core with one thread each) runs into multirun/make_run; then the table with its verdicts.
# Extra Hydra overrides for the blocks: make run ARGS="hydra/launcher=basic" (an override that changes the jobs
# cannot join the shipped seeds: the command says so).
run: $(STAMP)
	WANDB_MODE=offline $(PY) -m analysis.sequential --ablation fusion --preset make_run --with results/cpu/fusion \
		--sweep-dir multirun/make_run $(ARGS)

# Lint (ruff) and the import layering (import-linter contracts in pyproject.toml), then the suite, which prints its
# 20 slowest tests at the end. Two pytest-xdist workers, each test file on one worker (its module fixtures built
# once): the subprocess tests spend seconds starting Python, which the other worker fills.
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

test: lint
	$(PYTEST)
	$(MAKE) --no-print-directory test-wandb-floor

# The edit loop: everything but the tests over 10 s (marked slow). CI runs `make test`.
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# The W&B tests against the lowest wandb pyproject.toml allows, installed beside .venv (not into it); make test runs
# them after the suite, which runs them against the newest. test_wandb_kill covers src/train/wandb_files.py, the one
# module that depends on wandb's private setting and file format.
WANDB_FLOOR := $(shell sed -n 's/.*"wandb>=\([0-9.]*\)".*/\1/p' pyproject.toml)
test-wandb-floor: $(STAMP)
	test -f .wandb-floor/wandb/__init__.py || $(PIP) install -q --target .wandb-floor -c constraints.txt "wandb==$(WANDB_FLOOR)"
	PYTHONPATH=$(CURDIR)/.wandb-floor $(PY) -m pytest -q -n 2 -p no:cacheprovider tests/test_wandb_agent.py \
		tests/test_wandb_kill.py tests/test_run.py -k "wandb or online or kill"

clean:
	rm -rf outputs multirun wandb .pytest_cache .wandb-floor
