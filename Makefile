# The README's two set-up commands: `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs; torch is pinned so that the
# CPU wheel on this machine's disk is used instead of a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PIN ?= torch==2.13.0
DEMO_OUT ?= demo-output

.PHONY: demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# Core install: what `expnet generate` needs on the embedded defaults.
$(VENV)/.core: setup.py pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

# Everything the tests exercise: the fan, train, dask, aws and dev extras.
$(VENV)/.all: setup.py pyproject.toml | $(PY)
	$(PIP) install --quiet "$(TORCH_PIN)" -e ".[fan,train,dask,aws,dev]"
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(VENV)/bin/expnet generate --input examples/faces --output $(DEMO_OUT) --overwrite

test: $(VENV)/.all
	$(PY) -m pytest -q

lint: $(VENV)/.all
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(DEMO_OUT) build dist *.egg-info
