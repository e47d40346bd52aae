# blurfield — every target sets up .venv on its own first, so each works on a fresh clone.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
CONFIG ?=
ARGS ?=

.PHONY: help install test test-all demo shards train compact compact-gpu bench lint docs format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install (torch==2.13.0 first, then the project with [dev])

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
		|| $(PY) -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -m pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, lightning, kornia, webdataset, omegaconf, blurfield" \
		|| { echo "install failed: see the pip output above"; exit 1; }
	@touch $(STAMP)

test: install  ## run the test suite (under 10 minutes on 2 cores)
	$(PY) -m pytest -q $(ARGS)

test-all: install  ## the suite including tests marked slow
	$(PY) -m pytest -q -m "" $(ARGS)

demo: install  ## end to end on the built-in data: shards, a short training, estimate + deblur -> demo_out/
	$(PY) -m demo $(ARGS)

shards: install  ## build training shards (default: the small built-in set); CONFIG=conf/shards/x.yaml ARGS="key=value"
	$(PY) -m data_prep shards $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

train: install  ## train the estimator; CONFIG=conf/experiment/tiny.yaml ARGS="key=value"
	.venv/bin/blurfield train $(if $(CONFIG),--config $(CONFIG),--config experiment/tiny) $(ARGS)

compact: install  ## the shipped compact estimator from scratch: its shards, then its training (README: model card)
	$(PY) -m data_prep shards --config shards/compact
	.venv/bin/blurfield train --config experiment/compact $(ARGS)

compact-gpu: install  ## the compact recipe at base width 32 on one GPU (README: model card), its shards first
	$(PY) -m data_prep shards --config shards/compact shards.workers=$$(nproc)
	.venv/bin/blurfield train --config experiment/compact_gpu $(ARGS)

bench: install  ## run the benchmarks and print their tables
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: install  ## ruff
	.venv/bin/ruff check .

docs: install  ## regenerate docs/config.md, the configuration reference
	$(PY) -m blurfield.docs

format: install
	.venv/bin/ruff format .

clean:  ## remove run outputs (keeps .venv)
	rm -rf runs demo_out out .pytest_cache .ruff_cache
