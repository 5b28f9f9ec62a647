# etcd, kube-apiserver and kube-controller-manager for the envtest-style tests
# (internal/testenv/kubeenv), built from the pinned modules in tools/etcd and
# tools/kube-apiserver (which also holds kube-controller-manager) into the
# version-named cache. Included from the Makefile, which defines TOOLS_DIR and GO.
# Keep the versions in step with those go.mod files and with
# testenv.EtcdVersion / testenv.KubeVersion.

ETCD_VERSION := v3.7.3
KUBE_VERSION := v1.37.2
ETCD := $(TOOLS_DIR)/etcd-$(ETCD_VERSION)/etcd
KUBE_APISERVER := $(TOOLS_DIR)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
KUBE_CONTROLLER_MANAGER := $(TOOLS_DIR)/kube-controller-manager-$(KUBE_VERSION)/kube-controller-manager

KUBE_TOOLS := $(ETCD) $(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER)

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
	cd tools/etcd && CGO_ENABLED=0 $(GO) build -o $@.tmp go.etcd.io/etcd/server/v3
	mv $@.tmp $@

# kube-apiserver is a large build: several minutes on two cores.
$(KUBE_APISERVER):
	@mkdir -p $(dir $@)
	cd tools/kube-apiserver && CGO_ENABLED=0 $(GO) build -ldflags '$(KUBE_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

# kube-controller-manager runs only the garbage collector and namespace
# controller in tests (kubeenv.Kube.StartGarbageCollector); it shares most of
# its dependencies with kube-apiserver, so the second build is quicker.
$(KUBE_CONTROLLER_MANAGER):
	@mkdir -p $(dir $@)
	cd tools/kube-apiserver && CGO_ENABLED=0 $(GO) build -ldflags '$(KUBE_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/cmd/kube-controller-manager
	mv $@.tmp $@
