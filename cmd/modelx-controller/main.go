// Command modelx-controller runs the ModelDeployment controller: a tagged
// model in a modelx registry becomes a Seldon Core deployment behind Istio.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"modelx.io/modelx/client"
	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/controller"
)

func main() {
	var (
		metricsAddr, probeAddr, image string
		leaderElect                   bool
		retry, drain                  time.Duration
		clusterName                   string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "metrics endpoint address (0 disables)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "health and readiness probe address")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, for more than one replica")
	flag.StringVar(&image, "initializer-image", "modelx:latest", "the modelx image Seldon runs as storage initializer (it runs: modelx pull URI DEST)")
	flag.DurationVar(&retry, "retry-after", 30*time.Second, "pause before resolving a failed model reference again")
	flag.DurationVar(&drain, "drain", controller.DefaultDrain, "how long an old version keeps running without traffic after a new one took all of it")
	flag.StringVar(&clusterName, "cluster-name", "default", "this cluster's name in the registry holds that keep served versions from garbage collection (one name per cluster sharing a registry)")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	if err := run(metricsAddr, probeAddr, image, leaderElect, retry, drain, clusterName); err != nil {
		fmt.Fprintln(os.Stderr, "modelx-controller:", err)
		os.Exit(1)
	}
}

func run(metricsAddr, probeAddr, image string, leaderElect bool, retry, drain time.Duration, clusterName string) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "modelx-controller.deploy.modelx.io",
		Cache:                  controller.CacheOptions(),
	})
	if err != nil {
		return err
	}
	// The controller's own registry token: MODELX_TOKEN, or MODELX_TOKEN_FILE
	// (a projected service-account token), re-read on every request.
	var cfg *client.Config
	r := &controller.Reconciler{
		Client: mgr.GetClient(), Scheme: scheme,
		Recorder:         mgr.GetEventRecorder("modelx-controller"),
		Resolver:         &controller.RegistryResolver{Token: cfg.Token},
		InitializerImage: image, RetryAfter: retry, Drain: drain, ClusterName: clusterName,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
