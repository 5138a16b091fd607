# The two commands of a fresh machine: `make run` and `make test` (see README.md).
# Needs only python3.11 (or a python3 >= 3.11) and make.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip install --disable-pip-version-check --quiet

.PHONY: run test bench lint venv clean-venv

## run: create the venv, install, migrate, seed, start web + worker + scheduler
run: $(VENV)/.installed-runtime
	$(VPY) -m crm_app.launcher

## test: the whole suite on SQLite + embedded Redis, then on PostgreSQL + Redis
test: $(VENV)/.installed-dev
	VENV=$(VENV) bash scripts/test.sh $(PYTEST_ARGS)

## bench: the benchmark scripts under bench/ (PostgreSQL + Redis)
bench: $(VENV)/.installed-dev
	@ls bench/*_bench.py >/dev/null 2>&1 || { echo "no bench/*_bench.py scripts yet"; exit 0; }; \
	bash scripts/services.sh && \
	for script in bench/*_bench.py; do echo "== $$script"; $(VPY) $$script || exit 1; done

## lint: ruff check + format check
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

venv: $(VPY)

$(VPY):
	@test -n "$(PYTHON)" || { echo "python3.11 not found: install Python 3.11 first"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "$(PYTHON) is older than 3.11: install Python 3.11"; exit 1; }
	@echo "creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "could not create $(VENV): on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }

# Stamps: reinstall only when a requirements file changed.
$(VENV)/.installed-runtime: requirements.txt | $(VPY)
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VPY)
	$(PIP) -r requirements-dev.txt
	touch $@ $(VENV)/.installed-runtime

clean-venv:
	rm -rf $(VENV)
