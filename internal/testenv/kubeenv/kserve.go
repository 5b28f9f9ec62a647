package kubeenv

// KServeVersion is the KServe release whose controller manager StartKServe
// runs and whose CRDs, configuration and serving runtimes it installs;
// keep it in step with tools/kserve/go.mod and tools/kube.mk.
const KServeVersion = "v0.16.0"
