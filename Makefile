# `make run` runs the app; `make test` runs every test. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The lock files: every package, transitive ones included, pinned with its hashes. requirements.txt (the
# image's) and requirements-dev.txt (the tools and tests on top) are their inputs: `make lock` after editing those.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" --quiet
DEPS := $(VENV)/.deps-$(shell cat $(DEV_LOCK) | cksum | cut -d' ' -f1)

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

.PHONY: run test test-passes screenshots bench lint fmt clean lock env

# The virtualenv holds what the dev lock pins and nothing else: made anew whenever the lock changes.
$(DEPS): $(DEV_LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	@touch $@

# The lock files from their inputs; the pins already there are kept unless an input asks for another
# version. `make lock UPGRADE=1`: every package at its newest release that the inputs allow.
lock: $(DEPS)
	$(VENV)/bin/uv pip compile requirements.txt $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o $(LOCK)
	$(VENV)/bin/uv pip compile requirements-dev.txt -c $(LOCK) $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o $(DEV_LOCK)

# .env for docker compose: .env.example with a new SECRET_KEY and Postgres password. An existing .env is
# kept; only a value it lacks is generated.
env:
	@test -f .env || cp .env.example .env
	@for name in SECRET_KEY POSTGRES_PASSWORD; do \
	  grep -q "^$$name=." .env && continue; \
	  value=$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(32))'); \
	  if grep -q "^$$name=" .env; then sed -i "s/^$$name=.*/$$name=$$value/" .env; \
	  else [ -z "$$(tail -c1 .env)" ] || echo >> .env; echo "$$name=$$value" >> .env; fi; \
	  echo "$$name generated in .env"; \
	done
	@echo ".env is ready: docker compose up -d"

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
	$(VENV)/bin/lint-imports
	@if docker compose version >/dev/null 2>&1; then docker compose config -q; \
	elif command -v docker-compose >/dev/null; then docker-compose config -q; \
	else echo "docker-compose.yml not validated: no compose client here (Debian: apt-get install docker-compose)"; fi

# Around the passes, tests/shared_services.py keeps a connection to each shared server and fails the run if
# any was restarted or dropped it (the tests start their own Redis, or a proxy, for the faults they inject);
# it prints the wall time.
test: $(DEPS) $(AXE_JS)
	bash .ci/ensure-services
	@$(PY) -m tests.shared_services $(TEST_DATABASE_URL) $(TEST_REDIS_URL) $(TEST_BROKER_URL) -- \
	  $(MAKE) --no-print-directory test-passes

# Pass 1 runs in two pytest-xdist processes (-n 2): most of its time is spent waiting on worker processes
# and the browser, not on the CPU; a process with nothing left takes half of the other's queue
# (worksteal), so that no long test waits behind another at the end. Each process has a test database of
# its own (pytest-django's suffix _gw0, _gw1) and a Redis db of its own: TEST_REDIS_URL's db minus the
# process's number (tests/settings.py), 15 and 14 by default (13 is BENCH_REDIS_URL's: no third process).
PASS_1 = DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
  AXE_CORE_JS=$$(test -f $(AXE_JS) && realpath $(AXE_JS)) $(PY) -m pytest -m "not zero_setup" -n 2 --dist worksteal --durations=15
# One process: RabbitMQ's queues are shared by whoever uses the broker.
PASS_1B = DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL= BROKER_URL=$(TEST_BROKER_URL) $(PY) -m pytest -m both_brokers tests
PASS_2 = DATABASE_URL= REDIS_URL= $(PY) -m pytest -m "both_backends or zero_setup"

# Pass 1b, then pass 2, run beside pass 1, sharing nothing with it: their test database is
# TEST_DATABASE_URL's own (pass 1's have the _gwN suffix) and a SQLite file, only pass 1b uses RabbitMQ,
# only pass 1 Redis and the browser. Their output is printed once pass 1 is done; `make` fails if any
# pass did. A background job ignores Ctrl-C unless given it back (env --default-signal): then an
# interrupted run stops its worker processes in all three passes.
test-passes: lint
	$(PY) manage.py makemigrations --check --dry-run
	@logs=$$(mktemp -d); trap 'rm -rf "$$logs"' EXIT; \
	echo "== Pass 1b and pass 2 start beside pass 1; their output follows pass 1's"; \
	( env --default-signal=INT $(PASS_1B) >$$logs/1b 2>&1; echo $$? >$$logs/1b.status; \
	  env --default-signal=INT $(PASS_2) >$$logs/2 2>&1; echo $$? >$$logs/2.status ) & \
	echo "== Pass 1: Postgres + Redis + real worker processes + browser, in two processes"; \
	$(PASS_1); pass_1=$$?; \
	wait; \
	echo "== Pass 1b: what depends on the broker (worker processes, kills, a broker restart, a deploy's SIGTERM) again, on RabbitMQ"; \
	cat $$logs/1b; \
	echo "== Pass 2: the zero-setup default, SQLite + StubBroker"; \
	cat $$logs/2; \
	test $$pass_1 = 0 && test "$$(cat $$logs/1b.status)" = 0 && test "$$(cat $$logs/2.status)" = 0

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
