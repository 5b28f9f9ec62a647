package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The controller's own series, served with controller-runtime's on the
// manager's metrics endpoint.
var (
	resolvesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelx_controller_resolves_total",
		Help: "Model references the controller resolved against a registry, by result (Resolved or the failure's condition reason).",
	}, []string{"result"})
	rolloutsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelx_controller_rollouts_total",
		Help: "Digest changes the controller rolled out, by kind (initial, update, canary).",
	}, []string{"kind"})
	registryErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelx_controller_registry_errors_total",
		Help: "Failed registry requests while resolving, by condition reason.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(resolvesTotal, rolloutsTotal, registryErrorsTotal)
}
