package kubeenv

import "testing"

// PrometheusOperatorVersion is the prometheus-operator release whose
// ServiceMonitor CRD ServiceMonitorCRD returns; like the Seldon and Istio
// CRDs it is fetched into the module cache with `go mod download`.
const PrometheusOperatorVersion = "v0.85.0"

const prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator"

// ServiceMonitorCRD returns the path of the ServiceMonitor CRD
// (monitoring.coreos.com/v1) shipped in prometheus-operator at
// PrometheusOperatorVersion. The file is in the read-only module cache.
func ServiceMonitorCRD(t testing.TB) string {
	t.Helper()
	return moduleFile(t, "ServiceMonitor CRD", prometheusOperatorModule, PrometheusOperatorVersion, "example", "prometheus-operator-crd", "monitoring.coreos.com_servicemonitors.yaml")
}
