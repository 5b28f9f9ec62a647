// Command modelx-controller runs the ModelDeployment controller: a tagged
// model in a modelx registry becomes a Seldon Core deployment, routed by
// Istio when the cluster has it, or a KServe InferenceService.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/controller"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/spec"
)

// version is set at build time with -ldflags "-X main.version=…"; it tags
// the default initializer image, so that the controller pulls models with
// the CLI of its own release.
var version = "dev"

// config is what the flags say.
type config struct {
	metricsAddr, probeAddr string
	leaderElect            bool
	retry, drain, holdTTL  time.Duration
	clusterName            string
	initializerImage       string
	// initializerCPURequest and the like are resource quantities.
	initializerCPURequest, initializerCPULimit       string
	initializerMemoryRequest, initializerMemoryLimit string
	seldonIstio                                      bool
	gatewaySelector                                  string
	kserveSecretName                                 string
}

func main() {
	var c config
	defaults := render.DefaultInitializerResources()
	flag.StringVar(&c.metricsAddr, "metrics-bind-address", ":8080", "metrics endpoint address (0 disables)")
	flag.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "health and readiness probe address")
	flag.BoolVar(&c.leaderElect, "leader-elect", false, "elect a leader, for more than one replica")
	flag.StringVar(&c.initializerImage, "initializer-image", "modelx/modelx:"+version, "the modelx image that pulls models into the pods (it runs: modelx pull URI DEST)")
	flag.StringVar(&c.initializerCPURequest, "initializer-cpu-request", quantity(defaults.Requests, corev1.ResourceCPU), "CPU request of the initializer container the controller renders (service-account-token credentials)")
	flag.StringVar(&c.initializerCPULimit, "initializer-cpu-limit", quantity(defaults.Limits, corev1.ResourceCPU), "CPU limit of that initializer container")
	flag.StringVar(&c.initializerMemoryRequest, "initializer-memory-request", quantity(defaults.Requests, corev1.ResourceMemory), "memory request of that initializer container")
	flag.StringVar(&c.initializerMemoryLimit, "initializer-memory-limit", quantity(defaults.Limits, corev1.ResourceMemory), "memory limit of that initializer container")
	flag.BoolVar(&c.seldonIstio, "seldon-istio", false, "Seldon's own Istio integration is on (its operator runs with ISTIO_ENABLED=true): Seldon routes spec.expose, under /seldon/NAMESPACE/NAME/, and the controller renders no VirtualService")
	flag.StringVar(&c.gatewaySelector, "gateway-selector", labels.FormatLabels(render.DefaultGatewaySelector()), "labels (k=v,...) of the ingress gateway pods that the Gateways the controller creates select")
	flag.StringVar(&c.kserveSecretName, "kserve-secret-name", controller.DefaultKServeSecretName, "the Secret (key MODELX_TOKEN) from which the modelx ClusterStorageContainer reads the registry token in a namespace; spec.credentials.secretName must name it with backend kserve")
	flag.DurationVar(&c.retry, "retry-after", 30*time.Second, "pause before resolving a failed model reference again")
	flag.DurationVar(&c.drain, "drain", controller.DefaultDrain, "how long an old version keeps running without traffic after a new one took all of it")
	flag.DurationVar(&c.holdTTL, "hold-ttl", 0, "how long a registry hold on the served versions lasts unless renewed (renewed at half-life); 0 is the registry's default (7 days)")
	flag.StringVar(&c.clusterName, "cluster-name", "default", "this cluster's name in the registry holds that keep served versions from garbage collection (one name per cluster sharing a registry)")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "modelx-controller:", err)
		os.Exit(1)
	}
}

// quantity is the string form of list[name].
func quantity(list corev1.ResourceList, name corev1.ResourceName) string {
	q := list[name]
	return q.String()
}

// initializerOptions parses the initializer's resource flags; a request
// above its limit is refused.
func (c config) initializerOptions() (render.InitializerOptions, error) {
	parse := func(flagName, value string) (resource.Quantity, error) {
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return q, fmt.Errorf("--%s=%q: %w", flagName, value, err)
		}
		return q, nil
	}
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, f := range []struct {
		flag, value string
		list        corev1.ResourceList
		name        corev1.ResourceName
	}{
		{"initializer-cpu-request", c.initializerCPURequest, res.Requests, corev1.ResourceCPU},
		{"initializer-cpu-limit", c.initializerCPULimit, res.Limits, corev1.ResourceCPU},
		{"initializer-memory-request", c.initializerMemoryRequest, res.Requests, corev1.ResourceMemory},
		{"initializer-memory-limit", c.initializerMemoryLimit, res.Limits, corev1.ResourceMemory},
	} {
		q, err := parse(f.flag, f.value)
		if err != nil {
			return render.InitializerOptions{}, err
		}
		f.list[f.name] = q
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, limit := res.Requests[name], res.Limits[name]
		if req.Cmp(limit) > 0 {
			return render.InitializerOptions{}, fmt.Errorf("initializer %s request %s is above its limit %s", name, req.String(), limit.String())
		}
	}
	return render.InitializerOptions{Resources: res}, nil
}

func run(c config) error {
	// The cluster name goes into the holder names of registry holds.
	// With a namespace and a name (63 characters each) it stays within
	// the registry's 253.
	if err := spec.ValidateHolder("modelx-controller:" + c.clusterName); err != nil || strings.Contains(c.clusterName, ":") || len(c.clusterName) > 100 {
		return fmt.Errorf("--cluster-name=%q: use at most 100 letters, digits, '.', '_' and '-'", c.clusterName)
	}
	if c.holdTTL < 0 {
		return fmt.Errorf("--hold-ttl=%s: must not be negative (0 is the registry's default)", c.holdTTL)
	}
	initializer, err := c.initializerOptions()
	if err != nil {
		return err
	}
	selector, err := labels.ConvertSelectorToLabelsMap(c.gatewaySelector)
	if err != nil {
		return fmt.Errorf("--gateway-selector=%q: %w", c.gatewaySelector, err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: c.metricsAddr},
		HealthProbeBindAddress: c.probeAddr,
		LeaderElection:         c.leaderElect,
		LeaderElectionID:       "modelx-controller.deploy.modelx.io",
		Cache:                  controller.CacheOptions(),
	})
	if err != nil {
		return err
	}
	istio := controller.IstioInstalled(mgr.GetRESTMapper())
	if !istio {
		ctrl.Log.Info("Istio's networking.istio.io/v1 kinds are not served: nothing is exposed through Istio (restart the controller after installing Istio)")
	}
	platforms := controller.DetectPlatforms(mgr.GetRESTMapper())
	if !platforms.Seldon && !platforms.KServe {
		ctrl.Log.Info("neither Seldon Core's SeldonDeployment nor KServe's InferenceService is served: no ModelDeployment can be served until one is installed and the controller restarted")
	}
	ctrl.Log.Info("serving platforms", "seldon", platforms.Seldon, "kserve", platforms.KServe)
	// The controller's own registry token: MODELX_TOKEN, or MODELX_TOKEN_FILE
	// (a projected service-account token), re-read on every request.
	resolver := &controller.RegistryResolver{Keychain: credentials.Environment{}, HoldTTL: c.holdTTL}
	r := &controller.Reconciler{
		Client: mgr.GetClient(), Scheme: scheme,
		Recorder: mgr.GetEventRecorder("modelx-controller"),
		Resolver: resolver, Holds: resolver,
		InitializerImage: c.initializerImage, Initializer: initializer,
		Routing:   render.Routing{Istio: istio, SeldonIstio: c.seldonIstio, GatewaySelector: selector},
		Platforms: platforms, KServeSecretName: c.kserveSecretName,
		RetryAfter: c.retry, Drain: c.drain, ClusterName: c.clusterName,
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
