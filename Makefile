# `make run` runs the app; `make test` runs every test. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

# The tests talk to real services; these are the machine-local defaults.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/batches
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# RabbitMQ's default vhost and guest account (guest may log in from localhost only).
TEST_BROKER_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F
ADDR ?= 127.0.0.1:8000
# The axe-core release the accessibility reviews use, fetched from npm for the e2e suite.
AXE_CORE_VERSION := 4.14.1
AXE_JS := $(VENV)/axe-core-$(AXE_CORE_VERSION).min.js
# The benchmarks get a database and a Redis db of their own (created if missing).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/batches_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/13

.PHONY: run test test-passes screenshots bench lint fmt clean

$(DEPS): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.deps-* && touch $@

$(AXE_JS): | $(DEPS)
	@(cd $(VENV) && npm pack --silent axe-core@$(AXE_CORE_VERSION) >/dev/null 2>&1 \
	  && tar -xzf axe-core-$(AXE_CORE_VERSION).tgz package/axe.min.js \
	  && mv package/axe.min.js $(notdir $@) && rm -rf package axe-core-$(AXE_CORE_VERSION).tgz) \
	|| echo "Could not fetch axe-core $(AXE_CORE_VERSION) with npm: the e2e suite uses the copy axe-playwright-python ships."

run: $(DEPS)
	$(PY) manage.py rundev $(ADDR)

lint: $(DEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@if docker compose version >/dev/null 2>&1; then SECRET_KEY=check docker compose config -q; \
	elif command -v docker-compose >/dev/null; then SECRET_KEY=check docker-compose config -q; \
	else echo "docker-compose.yml not validated: no compose client here (Debian: apt-get install docker-compose)"; fi

# Around the passes, tests/shared_services.py keeps a connection to each shared server and fails the run if
# any was restarted or dropped it (the tests start their own Redis, or a proxy, for the faults they inject);
# it prints the wall time.
test: $(DEPS) $(AXE_JS)
	bash .ci/ensure-services
	@$(PY) -m tests.shared_services $(TEST_DATABASE_URL) $(TEST_REDIS_URL) $(TEST_BROKER_URL) -- \
	  $(MAKE) --no-print-directory test-passes

test-passes: lint
	$(PY) manage.py makemigrations --check --dry-run
	@echo "== Pass 1: Postgres + Redis + real worker processes + browser"
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) AXE_CORE_JS=$$(test -f $(AXE_JS) && realpath $(AXE_JS)) \
	  $(PY) -m pytest -m "not zero_setup"
	@echo "== Pass 1b: what depends on the broker (worker processes, kills, a broker restart, a deploy's SIGTERM) again, on RabbitMQ"
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL= BROKER_URL=$(TEST_BROKER_URL) $(PY) -m pytest -m both_brokers tests
	@echo "== Pass 2: the zero-setup default, SQLite + StubBroker"
	DATABASE_URL= REDIS_URL= $(PY) -m pytest -m "both_backends or zero_setup"

# The README's screenshots (docs/*.png), from the browser tests that reach those states. `make test`
# writes nothing tracked.
screenshots: $(DEPS)
	bash .ci/ensure-services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) SCREENSHOTS_DIR=$(CURDIR)/docs \
	  $(PY) -m pytest -m screenshots

# Not part of `make test`: timings belong in side-by-side ratios, not in assertions.
# `make bench ROWS="4 7"` runs only those rows (printed, bench/RESULTS.md left as it is).
bench: $(DEPS)
	bash .ci/ensure-services
	bash bench/ensure-wrk
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(PY) bench/run.py $(ROWS)

fmt: $(DEPS)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3* test_db.sqlite3* .pytest_cache .ruff_cache
