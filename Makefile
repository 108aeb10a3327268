# The two commands a newcomer needs: `make up` and `make test`.
# Everything here is thin: the work is in scripts/ and tools/stack (stackctl).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# zstd-sys and libz-sys (via mysql_async) compile C for wasm32 with clang.
export CFLAGS_wasm32_wasip1 := --target=wasm32-wasi
WASM_TARGET := wasm32-wasip1
SERVICES := -p image-api-grayscale -p image-api-classify -p events-service

.PHONY: help deps daprd build wasm up down status test bench

help:
	@echo "make up      start the whole stack on 127.0.0.1 (MariaDB, Redis, 3 services + 3 daprd)"
	@echo "make down    stop what 'make up' started (data under .stack/ is kept)"
	@echo "make status  show what runs, with health"
	@echo "make test    every test, against real components started on free ports"
	@echo "make bench   the benchmarks (print figures)"

deps:
	@scripts/deps.sh

daprd: deps
	@scripts/build-daprd.sh

build: deps
	cargo build --release --bins

# The same source for WebAssembly: every service must keep building for it.
wasm: deps
	cargo build --release --target $(WASM_TARGET) $(SERVICES)

up: daprd build
	@target/release/stackctl up

down:
	@if [ -x target/release/stackctl ]; then target/release/stackctl down; else echo "nothing was built, so nothing runs"; fi

status:
	@target/release/stackctl status

test: daprd
	cargo build --workspace --bins
	cargo test --workspace --no-fail-fast
	$(MAKE) --no-print-directory wasm

bench: deps
	cargo bench -p image-api-grayscale -p image-api-classify
