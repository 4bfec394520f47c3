# PSDB build. Everything here needs only Go; `make proto` also needs protoc
# and its Go plugins (development only: the generated code is committed).

GO        ?= go
BIN       ?= bin
PKGS      := ./...
CMDS      := $(wildcard configsvr shardd mongos tools/psdb)
TESTFLAGS ?= -timeout 9m
CLUSTER   ?= cluster.yaml

.PHONY: all build test unit lint vet fmt-check proto bench clean run

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

# bench runs the Go benchmarks (figures go to docs/BENCHMARKS.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) $(PKGS)

# run builds every binary and runs the cluster of $(CLUSTER) in the
# foreground: it prints the nodes and the connection string, and Ctrl-C
# stops every node. Data stays under the file's runDir, so the next
# `make run` restarts with it. Another file: make run CLUSTER=path/to.yaml
run: build
	$(BIN)/psdb cluster up -f $(CLUSTER)

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
