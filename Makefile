# The two README commands (`make demo`, `make test`) and `make bench` do their own set-up:
# a .venv with the pinned dependencies, re-installed only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-bench lint bench bench-smoke e2e-10m clean-runs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(PY) jobs/pipeline.py --config conf/demo.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check simcit_dist jobs tests bench cluster
	$(VENV)/bin/mypy simcit_dist

# The suite (~15 min on 2 cores). The benchmark smoke run (~9 min) is its own target; CI runs both.
test: lint
	$(VENV)/bin/pytest -q --timeout=900 --durations=25 -m "not bench_smoke"

test-bench: $(STAMP)
	$(VENV)/bin/pytest -q -m bench_smoke

bench: $(STAMP)
	$(PY) bench/run_all.py

bench-smoke: $(STAMP)
	$(PY) bench/run_all.py --smoke

e2e-10m: $(STAMP)
	$(PY) bench/e2e_10m.py

clean-runs:
	rm -rf runs
