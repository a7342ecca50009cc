# ficus: see README.md. Every target works on a fresh Debian machine; the
# ones that need PostgreSQL find or install it through scripts/ensure-postgres.sh.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# The test suites and the demo need these with a local Docker engine and no
# registry: no reaper container, and published ports reached on 127.0.0.1.
export TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1
# Use the offline Postgres image when "make images" has built it; otherwise
# the suites default to the upstream postgres image.
LOCAL_PG_IMAGE := ficus/postgres:15
export FICUS_POSTGRES_IMAGE ?= $(shell docker image inspect $(LOCAL_PG_IMAGE) >/dev/null 2>&1 && echo $(LOCAL_PG_IMAGE))

DEMO_DURATION ?= 45s
FUZZTIME ?= 10s
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test e2e e2e-break proxy-regressions bench lint fmt demo images images-slicer fuzz clean postgres tools

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ficus ./cmd/ficus

postgres:
	@bash scripts/ensure-postgres.sh

## tools: the reference tools the tests compare with (PrusaSlicer, OpenSCAD, admesh, numpy-stl) and headless Chromium.
## The real model files the pricing/mesh tests read (Debian's cura meshes),
## fetched once by scripts/model-corpus.sh.
MODEL_CORPUS ?= $(CURDIR)/.cache/models
tools:
	@bash scripts/ensure-tools.sh
	@bash scripts/model-corpus.sh $(MODEL_CORPUS) || echo "tools: no model corpus: the tests that read it skip (or fail with FICUS_REQUIRE_TOOLS=1)"

## test: unit and integration tests against real PostgreSQL, race detector on.
test: postgres tools
	FICUS_MODEL_CORPUS=$${FICUS_MODEL_CORPUS:-$$([ -f $(MODEL_CORPUS)/cura/.complete ] && echo $(MODEL_CORPUS))} \
		$(GO) test -race -count=1 -timeout 30m ./...

## e2e: the end-to-end suite in Docker (build tag e2e): every scenario of
## docs/e2e.md against the images "make images" builds. The report (JUnit
## XML from gotestsum, summary.md, failed scenarios' container logs) goes to
## E2E_REPORT.
E2E_REPORT ?= $(CURDIR)/e2e/report
E2E_RUN ?= .
GOTESTSUM_VERSION ?= v1.13.0
e2e: images $(BIN)/gotestsum
	rm -rf $(E2E_REPORT) && mkdir -p $(E2E_REPORT)
	FICUS_E2E_REPORT=$(E2E_REPORT) FICUS_POSTGRES_IMAGE=$${FICUS_POSTGRES_IMAGE:-$(LOCAL_PG_IMAGE)} \
		$(BIN)/gotestsum --format testname --junitfile $(E2E_REPORT)/junit.xml \
		--jsonfile $(E2E_REPORT)/test.json -- \
		-tags e2e -race -count=1 -timeout 20m -run '$(E2E_RUN)' ./e2e/
	@echo "e2e: report in $(E2E_REPORT) (summary.md, junit.xml)"

## e2e-break: one scenario against a deliberately broken ficus, which it
## must catch (docs/e2e.md): BREAK=idempotency (the order route's
## Idempotency-Key handling turned off in the scenario's proxy config),
## BREAK=cdc-checkpoint (cdc confirms what it
## read before the sink has it; an image built with that build tag) or
## BREAK=outbox-inbox (the inbox takes every event as new; the test's
## consumer built with that tag). Succeeds when the scenario fails.
BREAK ?=
e2e-break: images
	@case '$(BREAK)' in \
	cdc-checkpoint) tag=e2ebreak_cdc_checkpoint; run=TestShopStatusChangesReachTheCRMDespiteCrashesAndCuts ;; \
	outbox-inbox) tag=e2ebreak_outbox_inbox; run=TestOutboxRelayKillAndDroppingMESLoseAndRepeatNothing ;; \
	idempotency) tag=; run=TestRetriedOrdersAreCreatedOnce; export FICUS_E2E_BREAK=idempotency ;; \
	*) echo "e2e-break: say BREAK=idempotency, BREAK=cdc-checkpoint or BREAK=outbox-inbox" >&2; exit 2 ;; \
	esac; \
	FICUS_GO_TAGS=$$tag FICUS_IMAGE=ficus/ficus:break-$(BREAK) FICUS_IMAGE_ONLY=1 bash scripts/images.sh ficus || exit 1; \
	if FICUS_IMAGE=ficus/ficus:break-$(BREAK) FICUS_POSTGRES_IMAGE=$${FICUS_POSTGRES_IMAGE:-$(LOCAL_PG_IMAGE)} \
		$(GO) test -tags e2e$${tag:+,$$tag} -race -count=1 -timeout 10m -run "^$$run\$$" -v ./e2e/; then \
		echo "e2e-break: $$run passed with BREAK=$(BREAK): it does not catch the break" >&2; exit 1; \
	fi; \
	echo "e2e-break: $$run failed with BREAK=$(BREAK), as it must"

$(BIN)/gotestsum:
	GOBIN=$(BIN) $(GO) install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)

## bench: Go benchmarks with allocations, then the side-by-side proxy
## benchmark, the CDC benchmark (ficus cdc against pg_recvlogical), the
## order view's (its list against the MES's, and its freshness), the model
## analysis benchmark (pricing/mesh against admesh and numpy-stl) and the
## pricing calculators on PrusaSlicer's shapes, and the outbox's relay
## against Watermill's SQL forwarder, on loopback (bench/README.md); the
## tables also go to bench/results/latest.md, cdc.md, orders.md, mesh.md,
## pricing.md and outbox.md there.
BENCH_DURATION ?= 10s
BENCH_CONNECTIONS ?= 64
bench: postgres
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	BENCH_DURATION=$(BENCH_DURATION) BENCH_CONNECTIONS=$(BENCH_CONNECTIONS) GO=$(GO) bash bench/run.sh
	GO=$(GO) bash bench/cdc.sh
	GO=$(GO) bash bench/mesh.sh
	$(GO) run ./bench/ordersbench
	$(GO) run ./bench/pricingbench
	$(GO) run ./bench/outboxbench

## proxy-regressions: the proxy's tests against hostile upstreams and
## clients, run on the build of PREVIOUS (the one before the proxy's
## hardening) and on this tree: each must fail there and pass here
## (docs/proxy.md#hostile-peers).
PREVIOUS ?= c5d164a
proxy-regressions:
	GO=$(GO) bash scripts/proxy-regressions.sh $(PREVIOUS)

## lint: gofmt, go vet and staticcheck (installed into ./bin).
lint: $(BIN)/staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fmt:
	gofmt -w $$(git ls-files '*.go')

## demo: the legacy world and its symptoms, live, for DEMO_DURATION.
demo: postgres build
	$(BIN)/ficus demo --duration $(DEMO_DURATION)

## images: the offline Postgres image (when missing), the ficus image, and
## VictoriaMetrics and vmalert for the e2e suite's live dashboard proof
## (rebuilt only when their inputs changed; docs/e2e.md).
images:
	bash scripts/images.sh

## images-slicer: the pricing worker's image with PrusaSlicer (Debian
## packages, debootstrap); opt-in, since its base takes many minutes to build
## (docs/pricing-fleet.md#images). The base is rebuilt only when
## images/slicer/packages or its recipe changed; the ficus layer always.
images-slicer:
	bash scripts/images.sh slicer

## fuzz: every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf $(BIN)
