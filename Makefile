# The two commands of the README: `make demo` (genlab's main job on built-in data) and
# `make test` (the test suite). Both create and reuse .venv by themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHON VENV

.PHONY: demo test lint format bench clean-venv

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh
	touch $@

$(VENV)/.installed-test: pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh test
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/genlab demo --out runs/demo --resume

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(VENV)/.installed-test
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(VENV)/.installed-test
	@for f in benchmarks/*.py; do case $$f in */gpu_*) continue;; esac; \
		echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
