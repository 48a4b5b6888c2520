# hubbub: make run | make test | make unit | make screenshots | make bench
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= ./hubbub-data

.PHONY: run test lint typecheck unit screenshots bench bench-peers chaos clean postgres promtool haproxy chromium iptables

$(BIN)/hubbub: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(BIN)/hubbub
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/hubbub
	$(BIN)/hubbub serve --host $(HOST) --port $(PORT) --data $(DATA)

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy

test: lint typecheck promtool haproxy chromium iptables
	$(BIN)/pytest

# The service-free tiers (no PostgreSQL, Redis, HAProxy or browser): the fast loop, under a
# minute. Only the tier directories that exist are passed.
UNIT_TIERS := $(wildcard tests/core tests/server)
unit: $(VENV)/.dev
	$(BIN)/pytest -q $(UNIT_TIERS)

# The pictures in README.md and docs/ (docs/img/webapp.png, docs/img/terminal.svg), made by
# the two tests that take them; an ordinary test run saves them in a temporary directory.
SCREENSHOT_TESTS := \
	tests/e2e/test_web.py::test_two_users_chat_live_with_presence_typing_and_history \
	tests/integration/test_chat_tui.py::test_screenshot_of_a_conversation
screenshots: $(VENV)/.dev chromium
	$(BIN)/pytest -q --screenshots docs/img $(SCREENSHOT_TESTS)

# Every chaos scenario (tests/chaos) CHAOS_RUNS times with longer windows; `make test` runs
# each once, short. Each run prints its report line (acked, lost, phantoms, gaps, ...).
CHAOS_RUNS ?= 5
chaos: $(VENV)/.dev haproxy iptables
	CHAOS_RUNS=$(CHAOS_RUNS) $(BIN)/pytest -q -s tests/chaos

# Start the local PostgreSQL cluster if it is down (the tests of the PostgreSQL engine
# need it; under CI they fail without it). "Already running" is fine.
postgres:
	pg_isready -q -h 127.0.0.1 -p 5432 || \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true
	for i in $$(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 0.5; done; \
		echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1

# promtool checks deploy/prometheus (tests/core/test_monitoring_files.py; under CI they fail
# without it). Only the promtool binary is taken from Debian's prometheus package, into the
# venv: no Prometheus server is installed or started. Nothing happens when one is on PATH.
promtool: $(VENV)/.dev
	command -v promtool >/dev/null || test -x $(BIN)/promtool || { \
		tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
		apt-get update -qq && apt-get download -qq -o APT::Sandbox::User=root prometheus && \
		dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool \
			> $(CURDIR)/$(BIN)/promtool && \
		chmod 755 $(CURDIR)/$(BIN)/promtool && cd / && rm -rf $$tmp; }
	$$(command -v promtool || echo $(BIN)/promtool) --version | head -1

# HAProxy runs in front of the nodes in tests/integration/test_cluster.py and `hubbub cluster`
# (under CI those tests fail without it). Installed from Debian only when not on PATH.
haproxy:
	command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	$$(command -v haproxy || echo /usr/sbin/haproxy) -v | head -1

# Headless Chromium drives the web app in tests/e2e (Playwright for Python with Debian's
# browser: nothing is downloaded at run time; under CI those tests fail without it).
# Installed from Debian only when not on PATH.
chromium:
	command -v chromium >/dev/null || test -x /usr/bin/chromium || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$$(command -v chromium || echo /usr/bin/chromium) --version | head -1

# iptables cuts a node off the data tier (tests/support/partition.py: the partition tests
# and the chaos scenario; under CI they fail without it). Running them needs root.
iptables:
	command -v iptables >/dev/null || test -x /usr/sbin/iptables || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null; }
	$$(command -v iptables || echo /usr/sbin/iptables) --version | head -1

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py

# hubbub beside the raw broadcast servers, python-socketio and Django Channels on one
# fan-out workload (benchmarks/compare.py; ARGS="--quick" for a smoke run).
bench-peers: $(VENV)/.dev
	$(BIN)/python -m pip install -q -r benchmarks/peers/requirements.txt
	$(BIN)/python benchmarks/compare.py $(ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
