# `make run` and `make test` set everything up on a machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test processes: most tests wait on processes and sockets they start, so twice the cores.
TEST_PROCESSES ?= $(shell echo $$(( $$(nproc) * 2 )))

.PHONY: setup db run test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "DSR Desk needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

db: setup
	$(BIN)/dsr-desk db upgrade

run: db
	$(BIN)/dsr-desk run --demo-without-slack

test: setup
	@if [ -z "$$DSR_TEST_POSTGRES_URL" ]; then \
	  echo "NOTE: DSR_TEST_POSTGRES_URL is not set, so the PostgreSQL variants of the storage and"; \
	  echo "      service tests are SKIPPED (listed at the end). See README, 'Tests'."; \
	fi
	@# The tests that measure peak memory run beside the rest, in a process of their own that
	@# imports only their modules (the official Genesys SDK, imported by its tests, starts
	@# threads watching the home folder, whose allocations would count in the measurement).
	@$(BIN)/python -m pytest -m memory $$(grep -rl "mark.memory" tests) > .memory-tests.log 2>&1 & memory=$$!; \
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist worksteal -m "not memory"; rest=$$?; \
	wait $$memory; measured=$$?; echo "--- the tests that measure peak memory:"; \
	cat .memory-tests.log; rm -f .memory-tests.log; [ $$rest -eq 0 ] && [ $$measured -eq 0 ]

lint: setup
	$(BIN)/ruff check bot handlers services storage tests bench

bench: setup
	$(BIN)/python -m bench.zendesk_erasure
	$(BIN)/python -m bench.slack_ack
	$(BIN)/python -m bench.scheduled_jobs
	$(BIN)/python -m bench.export_memory
	$(BIN)/python -m bench.request_lists
	$(BIN)/python -m bench.cli_startup

clean:
	rm -rf $(VENV) .pytest_cache
