# Two commands do everything on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup data run test bench clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU build on this machine's disk; an open range would pull CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

data: setup
	$(VENV)/bin/mpops restore-data

run: data
	$(VENV)/bin/mpops run

test: data
	$(PY) -m pytest -q -rs -n 2 --dist loadfile

# Runs every bench in bench/ and rewrites docs/benchmarks.md from their JSON (kept in out/bench/).
bench: data
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) mlruns .pytest_cache
