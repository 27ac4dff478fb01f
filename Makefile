# creditbench -- quick start:  make run   (smoke DAG of every figure + HTML report)
#                              make test  (the whole test suite, end-to-end smoke DAG included)
# Both create .venv with the pinned dependencies first (Python >= 3.11 needed).

SHELL     := /bin/bash
VENV      ?= .venv
# the first interpreter that runs and is >= 3.11 (3.11 first: the pinned torch wheels are built for it)
PYTHON    ?= $(shell for p in python3.11 python3 python3.12 python3.13; do \
                $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
SNAKEMAKE := $(VENV)/bin/snakemake
CORES     ?= all
TEST_WORKERS ?= 2

.PHONY: run test lint venv tfds report bench clean help

help:
	@echo "make run    -- run every figure at smoke scale (digits, minutes) and write results/report.html"
	@echo "make test   -- run the test suite (pytest), including an end-to-end smoke DAG and snakemake --lint"
	@echo "make tfds   -- add the optional TFDS extra to .venv (data.loader: tfds; requirements-tfds.txt, no TensorFlow)"
	@echo "make lint   -- snakemake --lint (Snakemake's own checks of the workflow; part of make test)"
	@echo "make bench  -- throughput benchmarks (benchmarks/README.md)"
	@echo "make clean  -- delete results/, logs/ and .snakemake/ (keeps resources/ and .venv)"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no Python >= 3.11 found (Snakemake 9 needs it); install python3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is needed (Snakemake 9), found " + sys.version.split()[0] + " at " + sys.executable)'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The optional TFDS extra (README "TFDS and TPU VMs") on top of .venv: requirements.lock as constraints,
# so it adds packages and changes none of the pinned ones. `make test` installs it to run the TFDS tests.
tfds: $(VENV)/.tfds-installed

$(VENV)/.tfds-installed: $(VENV)/.installed requirements-tfds.txt
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -r requirements-tfds.txt
	@touch $@

# Snakemake's full output goes to logs/make-run.log; the terminal shows, per figure, what is being
# built and how far along ("fig_nodepert_lr: 2 of 3 jobs done", impls/common/progress.py) and, if
# something fails, the end of that log.
run: venv
	@mkdir -p logs
	@echo "Running every figure at scale=$$(sed -n 's/^scale: *//p' config/config.yaml) (full log: logs/make-run.log)"
	@$(SNAKEMAKE) --cores $(CORES) all 2>&1 | tee logs/make-run.log \
		| $(VENV)/bin/python -m impls.common.progress --config config/config.yaml; \
		status=$${PIPESTATUS[0]}; \
		if [ $$status -ne 0 ]; then tail -n 40 logs/make-run.log; exit $$status; fi
	@$(SNAKEMAKE) --cores 1 all --report results/report.html >> logs/make-run.log 2>&1 \
		|| { tail -n 40 logs/make-run.log; exit 1; }
	@echo
	@echo "Figures (PNG + PDF) and tidy tables: results/<paper>/fig_*.{png,pdf,csv}; tables also tab_*.html"
	@ls results/*/fig_*.png results/*/tab_*.png 2>/dev/null | sed 's/^/  /'
	@echo "Scorecard (every claim of every paper, with its verdict): results/scorecard.{csv,html}, results/scorecard_summary.png"
	@echo "HTML report: results/report.html"

report: venv
	$(SNAKEMAKE) --cores 1 all --report results/report.html

# The TFDS tests need the extra (`tfds`), so `make test` installs it first.
# pytest-xdist: TEST_WORKERS processes share the test files (--dist loadfile), so the end-to-end
# tests that read the one smoke DAG (tests/test_e2e.py, fixture smoke_dag) build it once
test: venv tfds
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: venv
	$(SNAKEMAKE) --lint

bench: venv
	$(VENV)/bin/python benchmarks/bench_nodepert.py
	VENV=$(VENV) bash benchmarks/bench_smoke_dag.sh

clean:
	rm -rf results logs .snakemake
