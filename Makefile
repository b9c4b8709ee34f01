# Quickstart: `make demo` (install + the main job on the bundled defaults), `make test` (install + the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint models clean-venv

install:
	@VENV=$(VENV) bash tools/install.sh

models: install
	$(VENV)/bin/llmrec models prepare

demo: install
	$(VENV)/bin/llmrec demo

test: install
	CUDA_VISIBLE_DEVICES= $(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check llmrec tests eval tools
	$(VENV)/bin/ruff format --check llmrec tests eval tools

clean-venv:
	rm -rf $(VENV)
