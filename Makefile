# The two commands a newcomer needs: `make up` and `make test`.
# Everything here is thin: the work is in scripts/ and tools/stack (stackctl).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# zstd-sys and libz-sys (via mysql_async) compile C for wasm32 with clang.
export CFLAGS_wasm32_wasip1 := --target=wasm32-wasi
WASM_TARGET := wasm32-wasip1
SERVICES := -p image-api-grayscale -p image-api-classify -p events-service
# What runs the services for `make up`: native or wasmedge.
RUNTIME ?= native

.PHONY: help deps daprd build wasm wasmedge up down status test bench bench-runtimes bench-ratelimit

help:
	@echo "make up      start the whole stack on 127.0.0.1 (MariaDB, Redis, 3 services + 3 daprd)"
	@echo "             RUNTIME=wasmedge: the services as WebAssembly under WasmEdge"
	@echo "make down    stop what 'make up' started (data under .stack/ is kept)"
	@echo "make status  show what runs, with health"
	@echo "make test    every test, against real components started on free ports,"
	@echo "             natively and then with the services under WasmEdge"
	@echo "make wasmedge  WasmEdge (a Debian trixie chroot) + the services AOT-compiled for it"
	@echo "make bench   the benchmarks (print figures)"
	@echo "make bench-runtimes  native vs WasmEdge (AOT and interpreter): time, memory, sizes"
	@echo "make bench-ratelimit the rate limiter's added latency, p50/p99, against limiting off"

deps:
	@scripts/deps.sh

daprd: deps
	@scripts/build-daprd.sh

build: deps
	cargo build --release --bins

# The same source for WebAssembly: every service must keep building for it.
wasm: deps
	cargo build --release --target $(WASM_TARGET) $(SERVICES)

# WasmEdge (Debian trixie's, in a chroot under .cache/) and the services
# AOT-compiled for it; both cached, so a second run takes seconds.
wasmedge: wasm
	@scripts/wasmedge.sh
	@scripts/wasmedge-aot.sh

up: daprd build $(if $(filter wasmedge,$(RUNTIME)),wasmedge)
	@target/release/stackctl up --runtime $(RUNTIME)

down:
	@if [ -x target/release/stackctl ]; then target/release/stackctl down; else echo "nothing was built, so nothing runs"; fi

status:
	@target/release/stackctl status

# The same e2e suite twice: natively, then with the services under WasmEdge.
# runtimes:: compares the two runtimes, so it runs once WasmEdge is built.
# The second pass names --workspace to keep the first pass's features: no rebuild.
# Last, classify's second backend (WasmEdge's TFLite plugin, a cargo feature)
# must keep compiling for wasm32; it cannot run here (no plugin), so a check,
# cheaper than a build (~30 s cold, nothing when unchanged).
test: daprd
	cargo build --workspace --bins
	cargo test --workspace --no-fail-fast -- --skip runtimes::
	$(MAKE) --no-print-directory wasmedge
	STACK_RUNTIME=wasmedge cargo test --workspace --test e2e --no-fail-fast
	cargo check --release --target $(WASM_TARGET) -p image-api-classify --features wasmedge-tflite

bench: deps
	cargo bench -p image-api-grayscale -p image-api-classify

# Native against WasmEdge in one run: per-request time, start-up, memory,
# module sizes (tests/benches/runtimes.rs; figures, no assertions).
bench-runtimes: daprd build wasmedge
	cargo bench -p stack-tests --bench runtimes

# The rate limiter's cost per request against the same route unlimited, in
# one run (tests/benches/ratelimit.rs; figures, no assertions).
bench-ratelimit: daprd
	cargo build --release -p image-api-grayscale
	cargo bench -p stack-tests --bench ratelimit
