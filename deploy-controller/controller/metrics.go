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
		Name: "modelx_controller_rollout_steps_total",
		Help: "Rollout steps the controller took, by step: Initial (a first version), RolloutStarted, CanaryStarted, Promoting, Promoted, RolloutWithdrawn, RolloutAborted.",
	}, []string{"step"})
	registryErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelx_controller_registry_errors_total",
		Help: "Failed registry requests while resolving, by condition reason.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(resolvesTotal, rolloutsTotal, registryErrorsTotal)
}
