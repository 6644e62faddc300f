# Two commands matter: `make demo` (the main job end to end) and `make test` (the whole suite).
# Each does its own set-up: a virtual environment in .venv with the project and its extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DATA   ?= data
RUNS   ?= runs
DEMO_ARTIFACTS ?= artifacts_demo

.PHONY: demo test bench shift install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch is pinned here (a CPU build of 2.13.0 is on local disk); pyproject allows a range with it.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[train,test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m workflows.demo --data $(DATA) --runs $(RUNS) --artifacts $(DEMO_ARTIFACTS)

bench: $(STAMP)
	$(PY) benchmarks/latency.py

# Distribution-shift benchmark (benchmarks/results/shift/); SHIFT_ARGS=--quick for a fast look.
shift: $(STAMP)
	$(PY) benchmarks/shift.py $(SHIFT_ARGS)

clean:
	rm -rf $(VENV) $(RUNS) $(DATA) $(DEMO_ARTIFACTS) .pytest_cache

# Simulated vs real (../shared/data/training_dataset_advanced.npz) pair features; skips the real side when absent.
.PHONY: realism
realism: $(STAMP)
	$(PY) benchmarks/realism.py
