# modelx — make targets. `make run` serves modelxd on ./data; `make test` builds
# the real test servers (once, cached by version) and runs every test.

GO ?= go
LISTEN ?= :8080
DATA_DIR ?= ./data

# Real servers the tests start, built from the Go module proxy into a
# version-named cache that later runs reuse.
TOOLS_DIR ?= $(or $(MODELX_TOOLS_DIR),$(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME)/modelx/tools,$(HOME)/.cache/modelx/tools))
export MODELX_TOOLS_DIR := $(TOOLS_DIR)
VERSITYGW_VERSION := v1.8.0
VERSITYGW := $(TOOLS_DIR)/versitygw-$(VERSITYGW_VERSION)/versitygw
DEX_VERSION := v2.45.1
DEX := $(TOOLS_DIR)/dex-$(DEX_VERSION)/dex
CONTROLLER_GEN_VERSION := v0.23.0
CONTROLLER_GEN := $(TOOLS_DIR)/controller-gen-$(CONTROLLER_GEN_VERSION)/controller-gen
# helm renders and lints the chart in deploy/helm (deploy/helm_test.go). The
# version and the Kubernetes release its client libraries speak are stamped in,
# as helm's own build does; keep them in step with tools/helm/go.mod and
# testenv.HelmVersion (deploy/tools_test.go checks).
HELM_VERSION := v3.22.0
HELM := $(TOOLS_DIR)/helm-$(HELM_VERSION)/helm
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37 \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37
# The OCI clients the /v2/ API is tested with (internal/testenv/oci.go): the
# distribution-spec conformance suite, oras and crane. The suite has no
# releases, so tools/oci-conformance/go.mod pins a pseudo-version of its module
# and the directory is named by the spec version it tests and the commit date:
# v1.1-20260831 is v0.0.0-20260831232431-97274622c111. crane takes its version
# from -X, as its release build does; oras carries its own. Keep all three in
# step with their go.mod and the testenv constants (internal/testenv/oci_test.go
# checks).
OCI_CONFORMANCE_VERSION := v1.1-20260831
OCI_CONFORMANCE_MODULE_VERSION := v0.0.0-20260831232431-97274622c111
OCI_CONFORMANCE := $(TOOLS_DIR)/oci-conformance-$(OCI_CONFORMANCE_VERSION)/oci-conformance
ORAS_VERSION := v1.3.6
ORAS := $(TOOLS_DIR)/oras-$(ORAS_VERSION)/oras
CRANE_VERSION := v0.22.1
CRANE := $(TOOLS_DIR)/crane-$(CRANE_VERSION)/crane
# Tools are linked without symbol tables and DWARF (-s -w): the links of the
# big binaries are much of their build time, and nobody debugs them here.
TOOLS_LDFLAGS := -s -w
include tools/kube.mk

TEST_FLAGS ?= -race -timeout 30m

.PHONY: all build run test tools lint fmt clean generate bench docs

all: lint build test

build:
	$(GO) build -o bin/ ./cmd/...

run:
	$(GO) run ./cmd/modelxd --listen $(LISTEN) --data-dir $(DATA_DIR)

test: tools chromium
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) fuzz
	$(MAKE) cross

# The CLI runs on laptops too: it must build for macOS and Windows.
.PHONY: cross
cross:
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/modelx
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/modelx

# Each fuzz target, as PACKAGE:TARGET, run for FUZZTIME (the seed corpora in
# testdata/fuzz already run as plain tests above). New interesting inputs go
# to the fuzz cache in GOCACHE; only a failing input is written to testdata.
FUZZTIME ?= 5s
FUZZ_TARGETS := ./spec:FuzzValidatePath ./spec:FuzzNames ./spec:FuzzParseManifest ./spec:FuzzParseOCIManifest ./spec:FuzzParseModelConfig \
	./client/reference:FuzzParseReference ./client/pack:FuzzExtract ./registry:FuzzParseRange ./registry:FuzzBlobParams

.PHONY: fuzz
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) $${t%%:*}; \
	done

# Transfer benchmark against real servers on 127.0.0.1 (see docs/benchmarks.md);
# e.g. make bench BENCH_FLAGS='-size 1GiB -out /tmp/bench.json'.
bench: tools
	$(GO) run ./bench $(BENCH_FLAGS)

# The tools are independent builds: run them in parallel (TOOLS_JOBS at
# once) even under a plain `make test`; a make already given -j shares its
# job slots instead.
TOOLS_JOBS ?= 4
.PHONY: tools-build
tools:
	@$(MAKE) --no-print-directory $(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(TOOLS_JOBS)) tools-build

tools-build: $(VERSITYGW) $(DEX) $(KUBE_TOOLS) $(HELM) $(OCI_CONFORMANCE) $(ORAS) $(CRANE)

# The version in the path names the build; an existing binary is reused.
$(VERSITYGW):
	@mkdir -p $(dir $@)
	cd tools/versitygw && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS)' -o $@.tmp github.com/versity/versitygw/cmd/versitygw
	mv $@.tmp $@

# Dex's own go.mod has a replace directive, so it builds from a pinned tools module.
$(DEX):
	@mkdir -p $(dir $@)
	cd tools/dex && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS)' -o $@.tmp github.com/dexidp/dex/cmd/dex
	mv $@.tmp $@

$(CONTROLLER_GEN):
	@mkdir -p $(dir $@)
	cd tools/controller-gen && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS)' -o $@.tmp sigs.k8s.io/controller-tools/cmd/controller-gen
	mv $@.tmp $@

$(HELM):
	@mkdir -p $(dir $@)
	cd tools/helm && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS) $(HELM_LDFLAGS)' -o $@.tmp helm.sh/helm/v3/cmd/helm
	mv $@.tmp $@

# The conformance suite is a main package; its report names the commit it ran
# from main.Version.
$(OCI_CONFORMANCE):
	@mkdir -p $(dir $@)
	cd tools/oci-conformance && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS) -X main.Version=$(OCI_CONFORMANCE_MODULE_VERSION)' -o $@.tmp github.com/opencontainers/distribution-spec/conformance
	mv $@.tmp $@

$(ORAS):
	@mkdir -p $(dir $@)
	cd tools/oras && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS)' -o $@.tmp oras.land/oras/cmd/oras
	mv $@.tmp $@

$(CRANE):
	@mkdir -p $(dir $@)
	cd tools/crane && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS) -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$(CRANE_VERSION)' -o $@.tmp github.com/google/go-containerregistry/cmd/crane
	mv $@.tmp $@

# Regenerate deepcopy code, the CRD and the RBAC role from the markers in
# deploy-controller/; the output is committed.
generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./deploy-controller/api/...
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./deploy-controller/api/... output:crd:artifacts:config=deploy-controller/config/crd
	$(CONTROLLER_GEN) rbac:roleName=modelx-controller paths=./deploy-controller/controller/... output:rbac:artifacts:config=deploy-controller/config/rbac

# The command references in docs/reference are generated, by the tests
# that check them: modelx's pages from its cobra commands (cobra's markdown
# generator), modelxd's page from its flag set. `make test` fails while
# they are stale; `make docs` writes them.
docs:
	$(GO) test ./cmd/modelx ./cmd/modelxd -run '^TestReferenceDocs$$' -count=1 -args -update-docs

# Container images of the three programs (build/*.Dockerfile), tagged
# $(IMAGE_REPO)/NAME:$(VERSION). Needs a Docker engine with BuildKit; not
# part of `make test` (build/dockerfile_test.go checks the Dockerfiles).
IMAGE_REPO ?= modelx
VERSION ?= dev
IMAGES := modelxd modelx modelx-controller

.PHONY: images
images:
	@set -e; for i in $(IMAGES); do \
		echo "docker build $(IMAGE_REPO)/$$i:$(VERSION)"; \
		docker build -f build/$$i.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REPO)/$$i:$(VERSION) .; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

# Headless Chromium from Debian's packages, for the web UI's browser tests
# (registry/ui); they skip without it, except in CI, where they fail.
.PHONY: chromium
chromium:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
