# GuestGuard: `make run` and `make test` are the whole quick start.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/setup.cfg)
PLUGIN_DIRS := $(patsubst %/setup.cfg,%,$(PLUGINS))
STAMP := $(VENV)/.installed

.PHONY: run lint test browser-deps pgbouncer-deps mutation bench install lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

EDITABLES := -e '.[test]' $(foreach dir,$(PLUGIN_DIRS),-e '$(dir)[test]')

# uv installs what pip would, the same releases, in a tenth of the time (a
# fresh virtualenv: 20-30 s against two and a half minutes). A tool of the
# install's, not a dependency: pinned here, left out of constraints.txt.
UV_RELEASE := 0.13.10

$(BIN)/uv: $(BIN)/python
	$(BIN)/pip install --quiet uv==$(UV_RELEASE)
	touch $(BIN)/uv

# Installs the releases constraints.txt names, so that a new release of a
# dependency changes nothing until `make lock` takes it in and the tests pass.
$(STAMP): $(BIN)/uv setup.cfg pyproject.toml $(PLUGINS) constraints.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt $(EDITABLES)
	touch $(STAMP)

install: $(STAMP)

# The newest releases setup.cfg allows, written to constraints.txt.
lock: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade $(EDITABLES)
	(echo "# Written by make lock: the releases make install puts in the virtualenv."; \
	 $(BIN)/pip freeze --exclude-editable --exclude uv) > constraints.txt
	touch $(STAMP)

# The browser suite (tests/browser) drives Debian's Chromium, never a
# downloaded browser, and scans pages with axe-core from npm.
CHROMIUM := /usr/bin/chromium
AXE := $(VENV)/node/node_modules/axe-core/axe.min.js
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

$(AXE): | $(BIN)/python
	npm install --no-audit --no-fund --silent --prefix $(VENV)/node axe-core@4.11

browser-deps: $(CHROMIUM) $(AXE)

# The several-nodes test (tests/test_several_nodes.py) puts Debian's
# PgBouncer, in transaction pooling mode, in front of the test PostgreSQL.
PGBOUNCER := /usr/sbin/pgbouncer

$(PGBOUNCER):
	$(SUDO) apt-get install -y --no-install-recommends pgbouncer \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends pgbouncer)

pgbouncer-deps: $(PGBOUNCER)

# The port `make run` serves on: `make run PORT=8080`, or PORT in the
# environment. Links in messages follow it unless GG_APP_BASE_URL is set.
PORT ?= 6543

run: $(STAMP)
	$(BIN)/guestguard migrate development.ini
	$(if $(filter-out 6543,$(PORT)),GG_APP_BASE_URL="$${GG_APP_BASE_URL:-http://localhost:$(PORT)}") \
		$(BIN)/pserve development.ini http_port=$(PORT)

# Ruff, configured in pyproject.toml ([tool.ruff]); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check .

# The lint, then the whole suite on SQLite and in-memory backends, the
# browser suite included; when GG_TEST_DATABASE_URL / GG_TEST_REDIS_URL are
# set (CI sets them), the suite also runs on PostgreSQL and Redis, at the
# same time as the SQLite pass (the passes share nothing; each is one
# process, so two cores serve both), and a test marked one_pass runs in only
# the pass it names (docs/testing.md). Each pass writes to
# var/test-<pass>.log, shown when both are done.
SQLITE_PASS := env -u GG_TEST_DATABASE_URL -u GG_TEST_REDIS_URL $(BIN)/pytest -q
# After the PostgreSQL pass, the cross-tenant tests again with the application
# connecting as a role that obeys row-level security (docs/testing.md).
RLS_PASS := GG_TEST_ROW_SECURITY=1 $(BIN)/pytest -q --pass=services tests/test_permissions_matrix.py \
	tests/test_tenant_isolation.py
test: lint browser-deps pgbouncer-deps
	@if [ -z "$$GG_TEST_DATABASE_URL$$GG_TEST_REDIS_URL" ]; then \
		$(SQLITE_PASS); \
	else \
		mkdir -p var; \
		echo "== on SQLite and, at the same time, on PostgreSQL and Redis"; \
		$(SQLITE_PASS) --pass=sqlite --durations=15 > var/test-sqlite.log 2>&1 & sqlite=$$!; \
		$(BIN)/pytest -q --pass=services --durations=15 > var/test-services.log 2>&1 \
			&& $(RLS_PASS) >> var/test-services.log 2>&1; services=$$?; \
		wait $$sqlite; sqlite=$$?; \
		echo "== SQLite and in-memory backends (exit $$sqlite)"; cat var/test-sqlite.log; \
		echo "== PostgreSQL and Redis (exit $$services)"; cat var/test-services.log; \
		[ $$sqlite -eq 0 ] && [ $$services -eq 0 ]; \
	fi

# Mutation testing of the security-critical modules (docs/testing.md): fails
# when a module's score is below 90%. CI (.ci/run) runs it beside `make test`;
# on SQLite and in-memory backends whatever GG_TEST_* say.
# `make mutation TARGETS="tokens csrf"` runs some; `make mutation
# MUTATION_FLAGS=--reuse` (CI) runs only the targets whose modules, tests or
# pins changed since tests/mutation-record.json recorded them.
mutation: $(STAMP)
	nice -n 10 $(BIN)/python -m tools.mutation $(MUTATION_FLAGS) $(TARGETS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) var build src/*.egg-info plugins/*/src/*.egg-info
