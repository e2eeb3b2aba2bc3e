# Two entry points: `make demo` (the main job) and `make test` (everything CI runs).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/openvpc demo --sim

lint: $(STAMP)
	$(VENV)/bin/ruff check openvpc tests bench
	$(VENV)/bin/ruff format --check openvpc tests bench
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(VENV)/bin/pytest tests

bench: $(STAMP)
	$(PY) -m bench.pipeline

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
