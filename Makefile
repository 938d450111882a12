# supportbot: `make run` serves the bot, `make test` runs the whole suite; both set everything up.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3

.PHONY: run test setup data system-deps bench eval eval-public lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0   # the CPU build; an unpinned torch pulls CUDA
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

data: setup  ## import kb_articles/ into the database and build the index
	$(BIN)/supportbot import kb_articles
	$(BIN)/supportbot index

run: data
	$(BIN)/supportbot serve

system-deps:  ## Debian packages the tests use: PostgreSQL server, Chromium for the browser tests
	@PKGS=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || PKGS="$$PKGS postgresql"; \
	[ -x /usr/bin/chromium ] || PKGS="$$PKGS chromium chromium-driver"; \
	if [ -n "$$PKGS" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian packages:$$PKGS"; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$PKGS >/dev/null; \
	fi

test: data system-deps
	$(BIN)/ruff check bot indexer eval tests
	$(BIN)/pytest

bench: data
	$(BIN)/python -m eval.bench

eval: setup  ## the project's own question set for kb_articles/
	rm -rf data/eval-sample && mkdir -p data/eval-sample
	$(BIN)/python -m eval.export_kb kb_articles data/eval-sample/articles.jsonl
	cp eval/data/sample_kb/questions.jsonl data/eval-sample/
	$(BIN)/supportbot eval data/eval-sample --out eval-results/sample_kb

eval-public: setup  ## the public dev set, read in place from ../shared (never copied)
	@if [ -d ../shared/datasets/emanual-dev ]; then \
		$(BIN)/supportbot eval ../shared/datasets/emanual-dev --out eval-results/emanual-dev; \
	else echo "skipped: ../shared/datasets/emanual-dev not found (it exists only in the workplace)"; fi

lint: setup
	$(BIN)/ruff check bot indexer eval tests
	$(BIN)/ruff format --check bot indexer eval tests

format: setup
	$(BIN)/ruff format bot indexer eval tests

clean:
	rm -rf data .pytest_cache
