# The two commands a newcomer needs: `make up` and `make test`.
# Everything here is thin: the work is in scripts/ and tools/stack (stackctl).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# zstd-sys and libz-sys (via mysql_async) compile C for wasm32 with clang.
export CFLAGS_wasm32_wasip1 := --target=wasm32-wasi
WASM_TARGET := wasm32-wasip1
SERVICES := -p image-api-grayscale -p image-api-classify -p events-service
WASM_OUT = $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/wasm
# What runs the services for `make up`: native or wasmedge.
RUNTIME ?= native

.PHONY: help deps daprd zipkin build wasm wasmedge up down status logs lint test test-web compose-up compose-down test-compose bench bench-runtimes bench-observability bench-budget bench-loadgen bench-ratelimit validate-deploy compose-secrets k8s-secrets slo-rules slo-rules-check fuzz

help:
	@echo "make up      start the whole stack on 127.0.0.1 (MariaDB, Redis, 3 services + 3 daprd,"
	@echo "             Zipkin :9411, Prometheus :9090)"
	@echo "             RUNTIME=wasmedge: the services as WebAssembly under WasmEdge"
	@echo "             again: starts only what is down; a supervisor restarts what dies"
	@echo "make down    stop the supervisor, then what 'make up' started (data under .stack/ is kept)"
	@echo "make status  show what runs, with health, restarts and the last exit reason"
	@echo "make logs    every component's log, lines prefixed with its name;"
	@echo "             SERVICE=<name> one (or those whose name contains it), FOLLOW=1 follows"
	@echo "make test    every test, against real components started on free ports,"
	@echo "             natively and then with the services under WasmEdge"
	@echo "make lint    cargo fmt --check and clippy with warnings as errors (make test runs it first)"
	@echo "make test-web  only the web front's tests (nginx config, the page in Chromium)"
	@echo "make wasmedge  WasmEdge (a Debian trixie chroot) + the services AOT-compiled for it"
	@echo "make bench   the benchmarks (print figures)"
	@echo "make validate-deploy  docker-compose.yml, deploy/kubernetes and dapr.yaml against the"
	@echo "             compose-spec loader, the Kubernetes and Dapr types, and make up's sidecars"
	@echo "make compose-secrets  the production secrets of docker compose up (tokens, passwords,"
	@echo "             Sentry's issuer) into deploy/compose/secrets/, 0600, git-ignored; kept if present"
	@echo "make k8s-secrets  the same for deploy/kubernetes (deploy/kubernetes/base/secrets/)"
	@echo "make compose-up    the shipped docker-compose.yml on this machine, no registry needed:"
	@echo "             Docker's engine (started if none answers), local stand-in images,"
	@echo "             the release binaries; web :8080, Zipkin :9411, Prometheus :9090"
	@echo "make compose-down  stop it (volumes kept; VOLUMES=1 removes them), and the engine"
	@echo "             if compose-up started it"
	@echo "make test-compose  compose-up with the test build, the compose tests, compose-down"
	@echo "make bench-runtimes  native vs WasmEdge (AOT and interpreter): time, memory, sizes"
	@echo "make bench-observability  the same request mix with tracing + metrics on and off"
	@echo "make bench-budget         grayscale + classify with the decode memory budget on and off"
	@echo "make bench-loadgen   loadgen beside oha: rate accuracy, p50, CPU per request"
	@echo "make bench-ratelimit the rate limiter's added latency, p50/p99, against limiting off"
	@echo "make slo-rules  observability/rules/slos.yml from observability/slo/slos.yml (sloth)"
	@echo "make fuzz    the libFuzzer targets in fuzz/, FUZZ_SECONDS (default 120) each; not part of"
	@echo "             make test. FUZZ_TARGETS=\"grayscale event_json\" runs only those"

deps:
	@scripts/deps.sh

daprd: deps
	@scripts/build-daprd.sh

# The Zipkin server jar (from Maven, once, into .cache/zipkin/).
zipkin: deps
	@scripts/zipkin.sh

build: deps
	cargo build --release --bins

# The same source for WebAssembly: every service must keep building for it.
# classify is also built with only WasmEdge's TFLite plugin backend, as the
# original template ran it, and kept as image-api-classify-tflite.wasm. That
# build goes first: both write image-api-classify.wasm, and the services'
# build must have the last word.
wasm: deps
	cargo build --profile wasm --target $(WASM_TARGET) -p image-api-classify --no-default-features --features wasmedge-tflite
	cp $(WASM_OUT)/image-api-classify.wasm $(WASM_OUT)/image-api-classify-tflite.wasm
	cargo build --profile wasm --target $(WASM_TARGET) $(SERVICES)

# WasmEdge (Debian trixie's, in a chroot under .cache/) and the services
# AOT-compiled for it; both cached, so a second run takes seconds.
wasmedge: wasm
	@scripts/wasmedge.sh
	@scripts/wasmedge-aot.sh

up: daprd zipkin build $(if $(filter wasmedge,$(RUNTIME)),wasmedge)
	@target/release/stackctl up --runtime $(RUNTIME)

down:
	@if [ -x target/release/stackctl ]; then target/release/stackctl down; else echo "nothing was built, so nothing runs"; fi

status:
	@target/release/stackctl status

SERVICE ?=
FOLLOW ?=
logs:
	@target/release/stackctl logs $(SERVICE) $(if $(filter 1,$(FOLLOW)),--follow)

# The same e2e suite twice: natively, then with the services under WasmEdge.
# runtimes:: compares the two runtimes, so it runs once WasmEdge is built.
# The second pass names --workspace to keep the first pass's features: no rebuild.
# Last, classify's second backend (WasmEdge's TFLite plugin, a cargo feature)
# must keep compiling for wasm32; it cannot run here (no plugin), so a check,
# cheaper than a build (~30 s cold, nothing when unchanged).
# A passing test's stack folder goes with it; a failing one's stays, with
# its logs, under target/stack-tmp/ until the next `make test`.
# One style, no warnings: the first step of `make test`, so it fails fast.
# clippy covers the native targets; `make test` builds the wasm32 modules,
# where warnings show but do not fail.
lint: deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

test: lint daprd zipkin
	@# What earlier runs left: folders of failed tests and per-run databases.
	rm -rf "$${STACK_TMP:-target/stack-tmp}"
	cargo build --workspace --bins
	$(MAKE) --no-print-directory validate-deploy
	$(MAKE) --no-print-directory test-compose COMPOSE_BINARIES=target/debug
	cargo test --workspace --no-fail-fast -- --skip runtimes::
	$(MAKE) --no-print-directory wasmedge
	STACK_RUNTIME=wasmedge cargo test --workspace --test e2e --no-fail-fast
	cargo check --profile wasm --target $(WASM_TARGET) -p image-api-classify --features wasmedge-tflite

# The web front alone: nginx's config from Rust, then the page in Debian's
# Chromium (web/tests, npm ci when web/node_modules is stale). --workspace
# keeps the feature set of `make test` (no rebuild). Screenshots
# land in target/web-screenshots/.
test-web: daprd
	cargo build --workspace --bins
	cargo test --workspace --test e2e --no-fail-fast web:: -- --nocapture

# Built first, then run pinned to one core (classify's bench starts Python
# LiteRT, its reference, on that same core). classify's bench then starts the
# service twice (tract before, litert after) beside daprd, on both cores,
# for requests/s through the sidecar and RSS: it needs the release binaries.
bench: deps daprd
	cargo build --release -p image-api-classify -p events-service
	cargo bench --no-run -p image-api-grayscale -p image-api-classify
	taskset -c 1 cargo bench -p image-api-grayscale -p image-api-classify

# Native against WasmEdge in one run: per-request time, start-up, memory,
# module sizes (tests/benches/runtimes.rs; figures, no assertions).
bench-runtimes: daprd build wasmedge
	cargo bench -p stack-tests --bench runtimes

# The observability tax: tracing + metrics on against off, in one run
# (tests/benches/observability.rs; figures, no assertions).
bench-observability: daprd zipkin build
	cargo bench -p stack-tests --bench observability

# The decode memory budget's cost on ordinary photos (issue 15): two stacks,
# budget off and on, alternating rounds, ratios printed.
bench-budget: daprd build
	cargo bench -p stack-tests --bench budget

# The deployment files (tools/validate): the compose-spec loader Docker
# Compose uses, kustomize build of every overlay decoded strictly into the
# Kubernetes and Dapr Go types, dapr.yaml, all against `stackctl daprd-args`
# (make up's sidecars); then every overlay through a real control plane on
# 127.0.0.1 (etcd, kube-apiserver, kube-controller-manager, Dapr's sentry,
# injector and operator, built by scripts/build-kube.sh into .cache/tools/kube:
# cold several minutes, then seconds). kustomize is installed once under .cache/; Go caches
# the build. -count=1: the tests read files Go's test cache cannot see
# (through kustomize), so their results are never reused.
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := .cache/tools/kustomize-$(KUSTOMIZE_VERSION)/kustomize

$(KUSTOMIZE):
	GOBIN=$(CURDIR)/$(dir $(KUSTOMIZE)) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# The production profile's secrets, generated (random, 0600, git-ignored);
# files already there are kept. Nothing secret is committed.
compose-secrets:
	@scripts/compose-secrets.sh

k8s-secrets:
	@scripts/k8s-secrets.sh

# compose and kustomize read the secret files, so a clean checkout gets
# them first (the scripts keep existing ones: an operator's are never
# replaced).
validate-deploy: $(KUSTOMIZE) slo-rules-check
	@scripts/compose-secrets.sh
	@scripts/k8s-secrets.sh
	@scripts/build-kube.sh
	@# --workspace: the features `make test`'s build resolved, so stackctl
	@# is already built there (-p stack alone rebuilt a hundred crates).
	cargo build --workspace --bin stackctl
	cd tools/validate && STACKCTL=$(CURDIR)/target/debug/stackctl KUSTOMIZE=$(CURDIR)/$(KUSTOMIZE) \
	  KUBE_BIN=$(CURDIR)/.cache/tools/kube go test -count=1 -timeout 15m ./...

# The SLO recording rules: observability/slo/slos.yml (the one place the
# targets are written) through sloth into observability/rules/slos.yml,
# which is committed (Prometheus and promtool read it). slo-rules writes it;
# (scripts/slo-rules.sh: sloth takes one service per file) slo-rules-check (part of validate-deploy, so of make test) regenerates it
# and fails on any difference, so the two cannot drift. sloth is installed
# once under .cache/ (~2 min cold).
SLOTH_VERSION := v0.16.0
SLOTH := .cache/tools/sloth-$(SLOTH_VERSION)/sloth
SLO_SPEC := observability/slo/slos.yml
SLO_RULES := observability/rules/slos.yml

$(SLOTH):
	GOBIN=$(CURDIR)/$(dir $(SLOTH)) go install github.com/slok/sloth/cmd/sloth@$(SLOTH_VERSION)

slo-rules: $(SLOTH)
	scripts/slo-rules.sh $(SLOTH) $(SLO_SPEC) > $(SLO_RULES)

slo-rules-check: $(SLOTH)
	@scripts/slo-rules.sh $(SLOTH) $(SLO_SPEC) | diff -u $(SLO_RULES) - \
	  || { echo "$(SLO_RULES) is not what sloth makes of $(SLO_SPEC): run make slo-rules"; exit 1; }

# loadgen beside oha on a trivial endpoint, in one run (figures, no
# assertions). oha is built once (cargo install, minutes) into .cache/oha.
OHA := .cache/oha/bin/oha
$(OHA):
	cargo install oha --locked --root .cache/oha

bench-loadgen: $(OHA)
	cargo bench -p loadgen --bench vs_oha

# The rate limiter's cost per request against the same route unlimited, in
# one run (tests/benches/ratelimit.rs; figures, no assertions).
bench-ratelimit: daprd
	cargo build --release -p image-api-grayscale
	cargo bench -p stack-tests --bench ratelimit

# libFuzzer on what the services do with untrusted bytes (fuzz/: image intake,
# grayscale, classify's preprocessing, the event JSON), FUZZ_SECONDS each, one
# worker, a summary line per target (scripts/fuzz.sh). Never part of `make
# test`: it runs for minutes and needs nightly (or RUSTC_BOOTSTRAP). cargo-fuzz
# is built once (cargo install, about a minute) into .cache/tools/.
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := .cache/tools/cargo-fuzz-$(CARGO_FUZZ_VERSION)/bin/cargo-fuzz
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?=

$(CARGO_FUZZ):
	cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked --root .cache/tools/cargo-fuzz-$(CARGO_FUZZ_VERSION)

fuzz: $(CARGO_FUZZ)
	@CARGO_FUZZ=$(CURDIR)/$(CARGO_FUZZ) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

# docker compose up, for real (scripts/compose.sh): the shipped
# docker-compose.yml with deploy/compose/local.yml, which only swaps the
# images for ones this machine can build (no registry reaches it). The
# service images wrap the binaries of COMPOSE_BINARIES: release for
# compose-up, the build `make test` already made for test-compose. Host
# ports: WEB_PORT, ZIPKIN_PORT, PROMETHEUS_PORT (defaults 8080, 9411, 9090).
COMPOSE_BINARIES ?= target/release
VOLUMES ?=

compose-up: daprd zipkin $(if $(filter target/release,$(COMPOSE_BINARIES)),build)
	@scripts/compose.sh up $(COMPOSE_BINARIES)

compose-down:
	@scripts/compose.sh down $(if $(filter 1,$(VOLUMES)),--volumes)

# The compose tests (tests/e2e/compose.rs, ignored in the ordinary passes)
# against the running compose stack, one at a time (they restart parts of
# it). A project and ports of its own, so neither `make up` nor a user's
# `make compose-up` beside it is disturbed. The stack goes down whatever the
# result, its volumes with it, so the next run starts fresh.
TEST_COMPOSE_ENV := COMPOSE_PROJECT_NAME=dapr-wasm-stack-test WEB_PORT=18080 ZIPKIN_PORT=19411 PROMETHEUS_PORT=19090
test-compose: daprd zipkin
	@$(TEST_COMPOSE_ENV) scripts/compose.sh down --volumes >/dev/null 2>&1 || true
	@status=0; \
	$(TEST_COMPOSE_ENV) scripts/compose.sh up $(COMPOSE_BINARIES) && \
	$(TEST_COMPOSE_ENV) cargo test --workspace --test e2e --no-fail-fast -- --ignored --test-threads 1 compose:: || status=$$?; \
	$(TEST_COMPOSE_ENV) scripts/compose.sh down --volumes; exit $$status
