# dcmnet developer tasks. Everything runs in a project-local virtualenv (.venv), created on demand;
# the system Python is never modified. `make demo` and `make test` are all a newcomer needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.install-stamp

.DEFAULT_GOAL := help
.PHONY: help install test fuzz mutate demo man completions argspec docs bench lint clean distclean

help:
	@echo "make install      create $(VENV) and install dcmnet (editable) with the test and codecs extras"
	@echo "make test         run the test suite"
	@echo "make fuzz         fuzz a real listener for FUZZ_SECONDS (default 300; seed: DCMNET_FUZZ_SEED)"
	@echo "make mutate       mutation-test the modules that hold the guarantees (slow; MUTATE=module.py ... for some)"
	@echo "make demo         a local test PACS: listen, store, find, get, move to a second listen, compare"
	@echo "make docs         regenerate man/, completions/ and the fast path's cli/argspec.py from the click commands"
	@echo "make bench        run bench/run_all.sh"
	@echo "make lint         pyflakes over the package, tests, scripts and benchmarks; mypy (--strict for ul/, dimse/ and part10/)"
	@echo "make clean        remove caches and build output (distclean also removes $(VENV))"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "dcmnet needs Python >= 3.11: run 'make PYTHON=python3.11 ...'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml changes; the editable install picks up source edits by itself.
# "compat" mode puts the source folder on sys.path through a .pth file: setuptools' default editable
# finder costs ~10 ms at every start of `dcmnet`. Byte-compiling matters too where PYTHONDONTWRITEBYTECODE
# is set (it is on our CI machines): without cached bytecode each start compiles the package (~25 ms).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,codecs]' --config-settings editable_mode=compat
	$(PY) -m compileall -q dcmnet_cli
	@touch $@

install: $(STAMP)

test: install
	$(PY) -m pytest

FUZZ_SECONDS ?= 300
fuzz: install
	DCMNET_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -s -p no:cacheprovider --timeout 0 tests/test_fuzz.py

# Mutation testing (mutation/run.py): not part of `make test` (minutes per module); run before a release.
# Each module is mutated in a copy under build/mutation/ against its targeted tests; a surviving mutant
# not explained in mutation/baseline.txt fails the target.
MUTATE ?=
MUTATE_STAMP := $(VENV)/.mutate-stamp
$(MUTATE_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,codecs,mutate]' --config-settings editable_mode=compat
	@touch $@

mutate: install $(MUTATE_STAMP)
	$(PY) mutation/run.py $(MUTATE)

demo: install
	bash scripts/demo.sh

man: install
	$(PY) -m dcmnet_cli.cli.docs man man

completions: install
	$(PY) -m dcmnet_cli.cli.docs completions completions

argspec: install
	$(PY) scripts/gen_argspec.py

docs: argspec man completions

bench: install
	@$(PY) -m compileall -q dcmnet_cli
	@if [ -f bench/run_all.sh ]; then bash bench/run_all.sh; \
	else echo "bench/run_all.sh not found: no benchmarks yet"; fi

lint: install
	$(PY) -m pyflakes dcmnet_cli tests scripts bench
	$(PY) -m mypy dcmnet_cli
	$(PY) -m mypy --strict dcmnet_cli/ul dcmnet_cli/dimse dcmnet_cli/part10

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis bench/out
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
