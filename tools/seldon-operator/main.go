// Command seldon-operator runs the Seldon Core v1 operator's own
// SeldonDeployment reconciler and validating webhook (the packages of
// github.com/seldonio/seldon-core/operator, pinned in this module's go.mod)
// for the test cluster of internal/testenv/kubeenv.
//
// It is our wiring, not Seldon's main: that one always serves its webhook on
// every interface and metrics on :8080. Here every listener is on 127.0.0.1
// or off, leader election is off, and the webhook is served only when
// --webhook-cert-dir is given (the test harness writes a self-signed
// certificate there and registers the ValidatingWebhookConfiguration that
// the Helm chart would). Configuration comes from the same environment
// variables the chart sets on the manager container (POD_NAMESPACE,
// ISTIO_ENABLED, EXECUTOR_CONTAINER_IMAGE_AND_VERSION, ...) and from the
// seldon-config ConfigMap in POD_NAMESPACE; the apiserver from KUBECONFIG.
package main

import (
	"flag"
	"fmt"
	"os"

	machinelearningv1 "github.com/seldonio/seldon-core/operator/apis/machinelearning.seldon.io/v1"
	"github.com/seldonio/seldon-core/operator/constants"
	"github.com/seldonio/seldon-core/operator/controllers"
	istio "istio.io/client-go/pkg/apis/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	zapf "sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "seldon-operator:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr = flag.String("metrics-bind-address", "0", `metrics listen address; "0" serves none`)
		probeAddr   = flag.String("health-probe-bind-address", "127.0.0.1:0", "/healthz and /readyz listen address")
		webhookHost = flag.String("webhook-host", "127.0.0.1", "validating webhook listen host")
		webhookPort = flag.Int("webhook-port", 9443, "validating webhook listen port")
		certDir     = flag.String("webhook-cert-dir", "", "directory with tls.crt and tls.key; empty serves no webhook")
		namespace   = flag.String("namespace", os.Getenv("WATCH_NAMESPACE"), "watch only this namespace (default all)")
	)
	flag.Parse()
	ctrl.SetLogger(zapf.New())
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, machinelearningv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	// As Seldon's main: the Istio types exist only when Istio is on, and
	// the reconciler then owns VirtualServices and DestinationRules.
	if os.Getenv(controllers.ENV_ISTIO_ENABLED) == "true" {
		if err := istio.AddToScheme(scheme); err != nil {
			return err
		}
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	opts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *probeAddr,
		LeaderElection:         false,
	}
	if *certDir != "" {
		opts.WebhookServer = webhook.NewServer(webhook.Options{Host: *webhookHost, Port: *webhookPort, CertDir: *certDir})
	}
	if *namespace != "" {
		opts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{*namespace: {}}}
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	ctx := ctrl.SetupSignalHandler()
	reconciler := &controllers.SeldonDeploymentReconciler{
		Client:    mgr.GetClient(),
		ClientSet: clientset,
		Log:       ctrl.Log.WithName("controllers").WithName("SeldonDeployment"),
		Scheme:    mgr.GetScheme(),
		Namespace: *namespace,
		Recorder:  mgr.GetEventRecorderFor(constants.ControllerName),
	}
	if err := reconciler.SetupWithManager(ctx, mgr, constants.ControllerName); err != nil {
		return fmt.Errorf("SeldonDeployment controller: %w", err)
	}
	// The API package reads the seldon-config ConfigMap (prepackaged server
	// images) through a package-level client that its webhook setup sets;
	// the reconciler needs it too, webhook or not.
	machinelearningv1.C = mgr.GetClient()
	if *certDir != "" {
		if err := (&machinelearningv1.SeldonDeployment{}).SetupWebhookWithManager(mgr); err != nil {
			return fmt.Errorf("SeldonDeployment webhook: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting manager", "namespace", *namespace, "webhook", *certDir != "")
	return mgr.Start(ctx)
}
