# PSDB build. Everything here needs only Go; `make proto` also needs protoc
# and its Go plugins (development only: the generated code is committed).

GO        ?= go
BIN       ?= bin
PKGS      := ./...
CMDS      := $(wildcard configsvr shardd mongos tools/psdb)
TESTFLAGS ?= -timeout 9m
CLUSTER   ?= cluster.yaml

.PHONY: all build test unit lint vet fmt-check proto bench gobench clean run

all: build

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		if ls $$c/*.go >/dev/null 2>&1 && grep -qs '^package main' $$c/*.go; then \
			echo "go build -o $(BIN)/$$(basename $$c) ./$$c"; \
			$(GO) build -o $(BIN)/$$(basename $$c) ./$$c || exit 1; \
		fi; \
	done

# test is what CI runs: lint, then every test (unit, fuzz seed corpora,
# crash and integration tests with real processes).
test: lint build
	$(GO) test $(TESTFLAGS) $(PKGS)

unit:
	$(GO) test -short $(TESTFLAGS) $(PKGS)

lint: vet fmt-check

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# proto regenerates the committed Go code from proto/*.proto.
# The Go plugins are looked up in PATH and then in $(go env GOPATH)/bin,
# where `go install` puts them.
proto: export PATH := $(PATH):$(shell $(GO) env GOPATH)/bin
proto:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	@command -v protoc-gen-go >/dev/null || { echo "protoc-gen-go not found: go install google.golang.org/protobuf/cmd/protoc-gen-go@latest"; exit 1; }
	@command -v protoc-gen-go-grpc >/dev/null || { echo "protoc-gen-go-grpc not found: go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest"; exit 1; }
	@if ls proto/*.proto >/dev/null 2>&1; then \
		protoc -I proto --go_out=. --go_opt=module=github.com/psdb/psdb \
			--go-grpc_out=. --go-grpc_opt=module=github.com/psdb/psdb proto/*.proto; \
	else echo "no .proto files yet"; fi

# gobench runs the Go benchmarks (figures go to docs/BENCHMARKS.md).
gobench:
	$(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) $(PKGS)

# bench runs issue 9's benchmark with psdb bench against the cluster of
# $(CLUSTER) (the `make run` cluster: 2 shards x 3 members): it starts the
# cluster in the background (nodes already running are adopted), measures
# the machine's messaging floor (psdb bench floor, 10 s per step), loads
# BENCH_RECORDS records of 1 KB into bench.usertable sharded hashed on _id,
# runs workloads C, B and A (uniform keys, w:majority, BENCH_THREADS
# threads, BENCH_DURATION each), then a peak-load search on C, and writes
# JSON results and SVG charts to BENCH_OUT (under the run directory next
# to $(CLUSTER), which git ignores). The cluster keeps running:
# stop it with $(BIN)/psdb cluster down -f $(CLUSTER).
BENCH_RECORDS  ?= 100000
BENCH_THREADS  ?= 8
BENCH_DURATION ?= 60s
BENCH_OUT      ?= $(dir $(CLUSTER))run/bench
BENCH_COMMON    = --cluster $(CLUSTER) --records $(BENCH_RECORDS) --doc-size 1000 --write-concern majority
bench: build
	$(BIN)/psdb cluster up -f $(CLUSTER) --detach
	@mkdir -p $(BENCH_OUT)
	$(BIN)/psdb bench floor --cluster $(CLUSTER) --threads $(BENCH_THREADS) --duration 10s --out $(BENCH_OUT)/floor.json
	$(BIN)/psdb bench load $(BENCH_COMMON) --threads $(BENCH_THREADS) --shard --drop --out $(BENCH_OUT)/load.json
	@for w in c b a; do \
		echo "$(BIN)/psdb bench run --workload $$w ..."; \
		$(BIN)/psdb bench run $(BENCH_COMMON) --workload $$w --threads $(BENCH_THREADS) --distribution uniform \
			--duration $(BENCH_DURATION) --out $(BENCH_OUT)/$$w.json --chart $(BENCH_OUT)/$$w.svg || exit 1; \
	done
	$(BIN)/psdb bench peak $(BENCH_COMMON) --workload c --start-threads 1 --max-threads 256 \
		--step-duration 10s --p99-bound 50ms --out $(BENCH_OUT)/peak.json --chart $(BENCH_OUT)/peak.svg

# bench-scale runs the scale-out scenario (issue 9 part 2) on a fresh
# 4-shard cluster (SCALE_CLUSTER: 4 shards x 3 members, 1 router, chunks of
# 4 MiB, a balancer round every 2 s; its run directory SCALE_RUN is wiped
# first): shards 2-4 are removed, SCALE_RECORDS records of 1 KB are loaded
# hashed on shard 1, then the shards are added back one at a time while
# workload SCALE_WORKLOAD runs. JSON and SVG chart go to SCALE_RUN/out; the
# cluster is stopped at the end. SCALE_CHUNK overrides the chunk size: keep
# SCALE_RECORDS x 1 KB / SCALE_CHUNK at 20 or more, so that the load splits
# into enough chunks to spread evenly over 4 shards. Shorter: make bench-scale SCALE_RECORDS=20000 SCALE_CHUNK=1MiB SCALE_STEP=20s
SCALE_CLUSTER  ?= bench/scale-cluster.yaml
SCALE_RUN      ?= run/bench-scale
SCALE_RECORDS  ?= 100000
SCALE_STEP     ?= 60s
SCALE_CHUNK    ?= 4MiB
SCALE_WORKLOAD ?= a
SCALE_THREADS  ?= 8
SCALE_FLAGS    ?=
.PHONY: bench-scale
bench-scale: build
	-$(BIN)/psdb cluster down -f $(SCALE_CLUSTER) >/dev/null 2>&1
	rm -rf $(SCALE_RUN)
	$(BIN)/psdb cluster up -f $(SCALE_CLUSTER) --chunk-size $(SCALE_CHUNK) --detach
	@mkdir -p $(SCALE_RUN)/out
	$(BIN)/psdb bench scenario scale-out --cluster $(SCALE_CLUSTER) --shards 4 --records $(SCALE_RECORDS) --doc-size 1000 \
		--workload $(SCALE_WORKLOAD) --threads $(SCALE_THREADS) --step-duration $(SCALE_STEP) $(SCALE_FLAGS) \
		--out $(SCALE_RUN)/out/scale.json --chart $(SCALE_RUN)/out/scale.svg; \
	st=$$?; $(BIN)/psdb cluster down -f $(SCALE_CLUSTER); exit $$st

# chaos runs every chaos scenario (docs/CHAOS.md) under the history
# checker's load on a cluster it boots in a temporary directory (3 config
# servers, 2 shards x 3 members, 2 routers, fault proxies between nodes),
# prints the summary table, writes run/chaos-report.json and fails if a write
# was lost or duplicated or the cluster did not heal. Fewer scenarios or a
# longer load: make chaos CHAOSFLAGS='--scenario primary-kill,partition --duration 60s'
.PHONY: chaos
CHAOS_DURATION ?= 20s
chaos: build
	@mkdir -p run
	$(BIN)/psdb chaos run --scenario all --duration $(CHAOS_DURATION) --out run/chaos-report.json $(CHAOSFLAGS)

# run builds every binary and runs the cluster of $(CLUSTER) in the
# foreground: it prints the nodes and the connection string, and Ctrl-C
# stops every node. Data stays under the file's runDir, so the next
# `make run` restarts with it. Another file: make run CLUSTER=path/to.yaml
run: build
	$(BIN)/psdb cluster up -f $(CLUSTER)

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
