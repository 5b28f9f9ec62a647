# The test cluster of internal/testenv/kubeenv: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok (the fake nodes' kubelet),
# the Seldon Core v1 operator and the KServe controller manager, built from
# the pinned modules in tools/etcd, tools/kube-apiserver (which also holds
# kube-controller-manager, kube-scheduler and kwok), tools/seldon-operator
# and tools/kserve into the version-named cache. Included from the Makefile,
# which defines TOOLS_DIR and GO. Keep the versions in step with those go.mod
# files and with kubeenv.EtcdVersion, KubeVersion, KwokVersion, SeldonVersion
# and KServeVersion.

ETCD_VERSION := v3.7.3
KUBE_VERSION := v1.37.2
KWOK_VERSION := v0.8.0
SELDON_VERSION := v1.19.0
KSERVE_VERSION := v0.16.0
ETCD := $(TOOLS_DIR)/etcd-$(ETCD_VERSION)/etcd
KUBE_APISERVER := $(TOOLS_DIR)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
KUBE_CONTROLLER_MANAGER := $(TOOLS_DIR)/kube-controller-manager-$(KUBE_VERSION)/kube-controller-manager
KUBE_SCHEDULER := $(TOOLS_DIR)/kube-scheduler-$(KUBE_VERSION)/kube-scheduler
KWOK := $(TOOLS_DIR)/kwok-$(KWOK_VERSION)/kwok
SELDON_OPERATOR := $(TOOLS_DIR)/seldon-operator-$(SELDON_VERSION)/seldon-operator
KSERVE_MANAGER := $(TOOLS_DIR)/kserve-manager-$(KSERVE_VERSION)/kserve-manager

KUBE_TOOLS := $(ETCD) $(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER) $(KUBE_SCHEDULER) $(KWOK) $(SELDON_OPERATOR) $(KSERVE_MANAGER)

# Stamp the release into the binary, as Kubernetes' own build does, so that
# /version and --version name it instead of v0.0.0-master.
KUBE_VERSION_PARTS := $(subst ., ,$(patsubst v%,%,$(KUBE_VERSION)))
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 1,$(KUBE_VERSION_PARTS)) \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(KUBE_VERSION_PARTS)) \
	-X k8s.io/component-base/version.gitTreeState=clean

# The version in the path names the build; an existing binary is reused.
$(ETCD):
	@mkdir -p $(dir $@)
	cd tools/etcd && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS)' -o $@.tmp go.etcd.io/etcd/server/v3
	mv $@.tmp $@

# kube-apiserver, kube-controller-manager, kube-scheduler and kwok share
# most of their packages (k8s.io/* at KUBE_VERSION), so one go build makes
# those of the four that are missing: each package is compiled once, and the
# links run in parallel. Several minutes on two cores. The grouped target
# (&:) runs the recipe once for all four.
KUBE_BUILD_DIR := $(TOOLS_DIR)/.build-kube-$(KUBE_VERSION)-kwok-$(KWOK_VERSION)
KUBE_GROUP := $(KUBE_APISERVER)=k8s.io/kubernetes/cmd/kube-apiserver \
	$(KUBE_CONTROLLER_MANAGER)=k8s.io/kubernetes/cmd/kube-controller-manager \
	$(KUBE_SCHEDULER)=k8s.io/kubernetes/cmd/kube-scheduler \
	$(KWOK)=sigs.k8s.io/kwok/cmd/kwok
$(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER) $(KUBE_SCHEDULER) $(KWOK) &:
	@set -e; pkgs=; for pair in $(KUBE_GROUP); do \
		[ -e "$${pair%%=*}" ] || pkgs="$$pkgs $${pair#*=}"; \
	done; \
	rm -rf $(KUBE_BUILD_DIR); mkdir -p $(KUBE_BUILD_DIR); \
	echo "go build$$pkgs"; \
	(cd tools/kube-apiserver && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS) $(KUBE_LDFLAGS)' -o $(KUBE_BUILD_DIR)/ $$pkgs); \
	for pair in $(KUBE_GROUP); do \
		b=$${pair%%=*}; n=$$(basename $$b); \
		if [ -e $(KUBE_BUILD_DIR)/$$n ]; then mkdir -p $$(dirname $$b); mv $(KUBE_BUILD_DIR)/$$n $$b; fi; \
	done; \
	rm -rf $(KUBE_BUILD_DIR)

# The Seldon Core v1 operator, our own main (tools/seldon-operator/main.go)
# over its controller and webhook packages. Its module pins k8s.io/* at
# v0.31 and controller-runtime v0.19 through replace directives, so it
# builds from its own module and shares nothing with the build above.
$(SELDON_OPERATOR):
	@mkdir -p $(dir $@)
	cd tools/seldon-operator && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS)' -o $@.tmp .
	mv $@.tmp $@

# KServe's controller manager (github.com/kserve/kserve/cmd/manager),
# unmodified. Its module pins k8s.io/* at v0.33 and replaces
# controller-runtime (copied into tools/kserve/go.mod, as a replace counts
# only in the main module), so it too builds from its own module and shares
# nothing with the builds above.
$(KSERVE_MANAGER):
	@mkdir -p $(dir $@)
	cd tools/kserve && CGO_ENABLED=0 $(GO) build -ldflags '$(TOOLS_LDFLAGS)' -o $@.tmp github.com/kserve/kserve/cmd/manager
	mv $@.tmp $@
