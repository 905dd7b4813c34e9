# digit-recognizer: `make demo` runs the whole workflow, `make test` runs the test suite.
# Both build .venv on first use (only python3 and npm are needed on the machine);
# a stamp file per install keeps later runs from reinstalling until pyproject.toml changes.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
DIGITS      := $(VENV)/bin/digits
# torch is only a test dependency (reference implementation for the engine's checks);
# always pinned: an unpinned install pulls a multi-GB GPU build.
TORCH       ?= torch==2.13.0
PIP_ARGS    ?=
PYTEST_ARGS ?=
DEMO_DIR    ?= runs/demo
# the demo's training (tests/test_docs.py runs `make demo` with a shorter one)
DEMO_TRAIN  ?= --model models/fast.toml --epochs 3 --learning-rate 0.004 --no-augment --seed 0

.PHONY: help install dev demo test docs notebooks clean

help:
	@echo "make demo     create .venv, install, fetch MNIST, train a quick model, evaluate, predict"
	@echo "make test     create .venv with the dev extras and torch, run the whole test suite"
	@echo "make docs     build the documentation site into site/ (mkdocs --strict)"
	@echo "make notebooks  install the notebooks extra and JupyterLab, open notebooks/"
	@echo "make install  only create .venv with the package"
	@echo "make clean    remove .venv, build outputs and $(DEMO_DIR)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_ARGS) -e .
	touch $@

$(VENV)/.installed-docs: pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_ARGS) -e ".[docs]"
	touch $@

$(VENV)/.installed-notebooks: pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_ARGS) -e ".[notebooks]" jupyterlab
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_ARGS) -e ".[dev]" "$(TORCH)"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

# Each run starts from an empty $(DEMO_DIR) (a training run refuses to overwrite one).
demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	$(DIGITS) data fetch
	$(DIGITS) data show --split test --rows 2 --cols 5 --out $(DEMO_DIR)/samples.png --samples-dir $(DEMO_DIR)/samples
	$(DIGITS) train $(DEMO_TRAIN) --out $(DEMO_DIR)/run
	$(DIGITS) evaluate $(DEMO_DIR)/run/model.safetensors --split test --out $(DEMO_DIR)/evaluation
	$(DIGITS) predict --model $(DEMO_DIR)/run/model.safetensors $(DEMO_DIR)/samples/*.png
	@echo "training report: $(DEMO_DIR)/run/report.html"
	@echo "the digits command: source $(VENV)/bin/activate, then digits --help (or $(VENV)/bin/digits --help)"

# pytest exits 5 when it collected no test: that fails here too.
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

docs: $(VENV)/.installed-docs
	$(PY) -m mkdocs build --strict

notebooks: $(VENV)/.installed-notebooks
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache $(DEMO_DIR)
