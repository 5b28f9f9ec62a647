package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/testenv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// KServeVersion is the KServe release whose controller manager StartKServe
// runs and whose CRDs, configuration and serving runtimes it installs;
// keep it in step with tools/kserve/go.mod and tools/kube.mk.
const KServeVersion = "v0.16.0"

const kserveModule = "github.com/kserve/kserve"

// kserveWebhookPort is where the manager's webhook server listens: on every
// interface (no flag of the manager sets the host), so StartKServe runs
// only in a network namespace of the test's own.
const kserveWebhookPort = 9443

// kserveRuntimes are the ClusterServingRuntimes StartKServe installs, from
// config/runtimes of KServe's module.
var kserveRuntimes = []string{"kserve-mlserver", "kserve-tritonserver"}

// KServeCRDs returns the directory config/crd/full of KServe's module at
// KServeVersion: the serving.kserve.io CRDs the controller manager serves
// and watches (InferenceService, ServingRuntime, ClusterServingRuntime,
// ClusterStorageContainer, TrainedModel, InferenceGraph, LocalModelCache,
// LocalModelNode, LocalModelNodeGroup). Its llmisvc subdirectory, which a
// directory path does not install, is another controller's. The directory
// is in the read-only module cache.
func KServeCRDs(t testing.TB) string {
	t.Helper()
	return moduleFile(t, "KServe CRDs", kserveModule, KServeVersion, "config", "crd", "full")
}

// PrefetchKServe fetches KServe's module into the module cache and checks
// that `make tools` built its manager: what a test needs before it enters
// a network namespace, where the module proxy is out of reach. Pass it to
// testenv.InNetworkNamespace.
func PrefetchKServe(t testing.TB) {
	t.Helper()
	testenv.RequireBinary(t, "kserve-manager", KServeVersion)
	requireModule(t, kserveModule, KServeVersion)
}

// KServeOptions configure StartKServe. The zero value is KServe's default
// install in the kserve namespace, in Standard (raw Deployment) mode.
type KServeOptions struct {
	// Namespace is the manager's own namespace (POD_NAMESPACE), where its
	// inferenceservice-config ConfigMap lives; default "kserve".
	Namespace string
	// Config replaces keys of the inferenceservice-config ConfigMap; each
	// value is a JSON document, as in KServe's
	// config/configmap/inferenceservice.yaml ("storageInitializer",
	// "ingress", ...).
	Config map[string]string
}

// KServe is a running KServe controller manager.
type KServe struct {
	// Namespace is the manager's namespace.
	Namespace string

	proc *process
}

// Log returns what the manager has logged so far, for failure messages.
func (s *KServe) Log() string { return s.proc.Log() }

// StartKServe runs the real, unmodified KServe controller manager
// (KServeVersion, built by `make tools` as kserve-manager) against a
// cluster from StartCluster, installed as KServe's own manifests install
// it: the CRDs of KServeCRDs; the namespace, labelled as KServe labels it;
// the inferenceservice-config ConfigMap of KServe's
// config/configmap/inferenceservice.yaml with defaultDeploymentMode
// Standard (then opts.Config); the ClusterServingRuntimes kserve-mlserver
// and kserve-tritonserver of config/runtimes with the images its
// kustomization names; and the mutating and validating webhook
// configurations of config/webhook/manifests.yaml (paths, rules, selectors,
// failure policies, reinvocation policy), pointed at the manager on
// https://127.0.0.1:9443 with a self-signed CA. So the pods of an
// InferenceService get their storage-initializer init container from
// KServe's pod-mutating webhook, as in a real cluster. No Istio or Knative
// is installed: use the deployment mode Standard (the annotation
// serving.kserve.io/deploymentMode: Standard, or none); KServeVersion turns
// the legacy "RawDeployment" into "Standard" and then refuses every update
// of such an InferenceService, even the removal of its finalizer.
//
// The manager's webhook server listens on every interface, so call it in a
// test in testenv.InNetworkNamespace (with PrefetchKServe); elsewhere the
// test fails. Pass KServeCRDs in the cluster's ClusterOptions.CRDPaths too:
// the garbage collector rediscovers kinds only every 30 s, and collects the
// Deployments of a deleted InferenceService only once it watches the kind.
// It returns once the manager is ready and the apiserver calls its
// webhooks; the manager stops when the test ends, and its log is printed
// if the test failed. Call it once per cluster.
func StartKServe(t testing.TB, k *Kube, opts KServeOptions) *KServe {
	t.Helper()
	bin := testenv.RequireBinary(t, "kserve-manager", KServeVersion)
	requireOwnNetworkNamespace(t)
	if opts.Namespace == "" {
		opts.Namespace = "kserve"
	}
	mod := requireModule(t, kserveModule, KServeVersion)
	installKServe(t, k, mod, opts)
	proc, caPEM := startKServeManager(t, k, bin, opts.Namespace)
	registerKServeWebhooks(t, k, mod, caPEM)
	if err := waitKServeWebhooks(t.Context(), k); err != nil {
		t.Fatalf("kserve webhooks: %v\n%s", err, tail(proc.log, logTail))
	}
	installKServeRuntimes(t, k, mod)
	return &KServe{Namespace: opts.Namespace, proc: proc}
}

// installKServe installs what the manager reads when it starts: KServe's
// CRDs, its namespace and its inferenceservice-config ConfigMap (from the
// module directory mod).
func installKServe(t testing.TB, k *Kube, mod string, opts KServeOptions) {
	t.Helper()
	ctx := t.Context()
	if _, err := envtest.InstallCRDs(k.Config, envtest.CRDInstallOptions{Paths: []string{KServeCRDs(t)}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install KServe CRDs: %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace, Labels: map[string]string{
		// config/manager/service.yaml's; control-plane keeps the
		// namespace out of the pod-mutating webhook's reach.
		"control-plane":           "kserve-controller-manager",
		"controller-tools.k8s.io": "1.0",
		"istio-injection":         "disabled",
	}}}
	if err := k.client.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace %s: %v", opts.Namespace, err)
	}
	cm, err := kserveConfigMap(mod, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.client.Create(ctx, cm); err != nil {
		t.Fatalf("create ConfigMap %s/%s: %v", cm.Namespace, cm.Name, err)
	}
}

// installKServeRuntimes creates KServe's ClusterServingRuntimes (through
// the manager's validating webhook).
func installKServeRuntimes(t testing.TB, k *Kube, mod string) {
	t.Helper()
	runtimes, err := kserveServingRuntimes(mod)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runtimes {
		if err := k.client.Create(t.Context(), r); err != nil {
			t.Fatalf("create ClusterServingRuntime %s: %v", r.GetName(), err)
		}
	}
}

// requireOwnNetworkNamespace fails the test unless lo is its only network
// interface, as in testenv.InNetworkNamespace.
func requireOwnNetworkNamespace(t testing.TB) {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatalf("list network interfaces: %v", err)
	}
	for _, i := range ifaces {
		if i.Name != "lo" {
			t.Fatalf("StartKServe outside a network namespace of the test's own (interface %s is there): "+
				"KServe's webhook server listens on every interface; call testenv.InNetworkNamespace(t, kubeenv.PrefetchKServe) first thing in the test", i.Name)
		}
	}
}

// kserveConfigMap is the inferenceservice-config ConfigMap of KServe's
// config/configmap/inferenceservice.yaml (in the module directory mod) in
// opts.Namespace, with defaultDeploymentMode Standard and opts.Config.
func kserveConfigMap(mod string, opts KServeOptions) (*corev1.ConfigMap, error) {
	path := filepath.Join(mod, "config", "configmap", "inferenceservice.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("KServe's ConfigMap: %w", err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		return nil, fmt.Errorf("KServe's ConfigMap %s: %w", path, err)
	}
	if _, ok := cm.Data["deploy"]; !ok {
		return nil, fmt.Errorf("KServe's ConfigMap %s has no deploy key: read how %s configures the deployment mode", path, KServeVersion)
	}
	cm.Namespace = opts.Namespace
	cm.Data["deploy"] = `{"defaultDeploymentMode": "Standard"}`
	for key, v := range opts.Config {
		cm.Data[key] = v
	}
	return &cm, nil
}

// startKServeManager starts the manager as its config/manager/manager.yaml
// runs it, less leader election (it needs the in-cluster namespace file),
// with its webhook server's certificate, for 127.0.0.1, where the manager
// looks for it ($TMPDIR/k8s-webhook-server/serving-certs). It returns once
// the manager is ready (its webhook server listens); the CA's PEM is the
// webhooks' caBundle.
func startKServeManager(t testing.TB, k *Kube, bin, namespace string) (*process, []byte) {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(k, kubeconfig); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	tmp := filepath.Join(dir, "tmp")
	caPEM, err := writeServingCert(filepath.Join(tmp, "k8s-webhook-server", "serving-certs"))
	if err != nil {
		t.Fatalf("webhook certificate: %v", err)
	}
	probePort := testenv.FreePort(t)
	p := startProcess(t, "kserve-manager", bin, []string{
		"--leader-elect=false",
		"--metrics-addr=0",
		"--health-probe-addr=127.0.0.1:" + strconv.Itoa(probePort),
		"--webhook-port=" + strconv.Itoa(kserveWebhookPort),
	}, []string{
		"KUBECONFIG=" + kubeconfig,
		"POD_NAMESPACE=" + namespace,
		"TMPDIR=" + tmp,
		"HOME=" + dir,
	})
	readyz := "http://127.0.0.1:" + strconv.Itoa(probePort) + "/readyz"
	if err := testenv.WaitHealthy(t.Context(), readyz, p.exited); err != nil {
		t.Fatalf("kserve-manager not ready: %v\n%s", err, tail(p.log, logTail))
	}
	return p, caPEM
}

// registerKServeWebhooks creates the webhook configurations of KServe's
// config/webhook/manifests.yaml (in the module directory mod), each
// service reference turned into https://127.0.0.1:9443 and the same path,
// trusting caPEM; they are deleted when the test ends, before the manager
// stops.
func registerKServeWebhooks(t testing.TB, k *Kube, mod string, caPEM []byte) {
	t.Helper()
	objs, err := kserveWebhookConfigurations(mod, "https://127.0.0.1:"+strconv.Itoa(kserveWebhookPort), caPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if err := k.client.Create(t.Context(), obj); err != nil {
			t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
		}
	}
	t.Cleanup(func() {
		for _, obj := range objs {
			if err := k.client.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete %T %s: %v", obj, obj.GetName(), err)
			}
		}
	})
}

// kserveWebhookConfigurations reads KServe's webhook configurations and
// points each webhook at base plus its service path, trusting caPEM.
func kserveWebhookConfigurations(mod, base string, caPEM []byte) ([]client.Object, error) {
	path := filepath.Join(mod, "config", "webhook", "manifests.yaml")
	docs, err := yamlDocuments(path)
	if err != nil {
		return nil, err
	}
	var objs []client.Object
	for _, doc := range docs {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		switch meta.Kind {
		case "MutatingWebhookConfiguration":
			var c admissionregistrationv1.MutatingWebhookConfiguration
			if err := yaml.UnmarshalStrict(doc, &c); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			for i := range c.Webhooks {
				if err := pointWebhook(&c.Webhooks[i].ClientConfig, base, caPEM); err != nil {
					return nil, fmt.Errorf("%s: webhook %s: %w", path, c.Webhooks[i].Name, err)
				}
			}
			objs = append(objs, &c)
		case "ValidatingWebhookConfiguration":
			var c admissionregistrationv1.ValidatingWebhookConfiguration
			if err := yaml.UnmarshalStrict(doc, &c); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			for i := range c.Webhooks {
				if err := pointWebhook(&c.Webhooks[i].ClientConfig, base, caPEM); err != nil {
					return nil, fmt.Errorf("%s: webhook %s: %w", path, c.Webhooks[i].Name, err)
				}
			}
			objs = append(objs, &c)
		default:
			return nil, fmt.Errorf("%s: unexpected kind %q", path, meta.Kind)
		}
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no webhook configuration", path)
	}
	return objs, nil
}

// pointWebhook turns a webhook's service reference into the URL base plus
// the service's path, with caPEM as its CA bundle.
func pointWebhook(cc *admissionregistrationv1.WebhookClientConfig, base string, caPEM []byte) error {
	if cc.Service == nil || cc.Service.Path == nil {
		return errors.New("no service path")
	}
	url := base + *cc.Service.Path
	cc.Service, cc.URL, cc.CABundle = nil, &url, caPEM
	return nil
}

// kserveServingRuntimes are the kserveRuntimes of KServe's config/runtimes
// (in the module directory mod), each image placeholder (NAME:replace)
// replaced by the image the kustomization there names for NAME.
func kserveServingRuntimes(mod string) ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(mod, "config", "runtimes")
	images, err := runtimeImages(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var runtimes []*unstructured.Unstructured
	for _, name := range kserveRuntimes {
		path := filepath.Join(dir, name+".yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("KServe's serving runtime: %w", err)
		}
		r := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &r.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := replaceImages(r, images); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		runtimes = append(runtimes, r)
	}
	return runtimes, nil
}

// runtimeImages reads the images of a kustomization: name → newName:newTag.
func runtimeImages(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("KServe's runtime images: %w", err)
	}
	var k struct {
		Images []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	images := map[string]string{}
	for _, img := range k.Images {
		images[img.Name] = img.NewName + ":" + img.NewTag
	}
	return images, nil
}

// replaceImages replaces each container image NAME:replace of a serving
// runtime by images[NAME].
func replaceImages(r *unstructured.Unstructured, images map[string]string) error {
	containers, _, err := unstructured.NestedSlice(r.Object, "spec", "containers")
	if err != nil {
		return err
	}
	for i, c := range containers {
		container, ok := c.(map[string]any)
		if !ok {
			return fmt.Errorf("container %d is not an object", i)
		}
		image, _ := container["image"].(string)
		name, placeholder := strings.CutSuffix(image, ":replace")
		if !placeholder {
			continue
		}
		real, ok := images[name]
		if !ok {
			return fmt.Errorf("no image for the placeholder %s in the kustomization", image)
		}
		container["image"] = real
	}
	return unstructured.SetNestedSlice(r.Object, containers, "spec", "containers")
}

// waitKServeWebhooks waits until the apiserver calls the manager's
// webhooks: those of InferenceServices (a dry-run create of one whose name
// KServe's validation refuses) and of pods (a dry-run create of a pod of an
// InferenceService comes back with KServe's storage initializer).
func waitKServeWebhooks(ctx context.Context, k *Kube) error {
	invalid := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.kserve.io/v1beta1",
		"kind":       "InferenceService",
		"metadata":   map[string]any{"name": "0-webhook-probe", "namespace": "default"},
		"spec": map[string]any{"predictor": map[string]any{"model": map[string]any{
			"modelFormat": map[string]any{"name": "sklearn"},
			"storageUri":  "s3://webhook-probe/model",
		}}},
	}}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = k.client.Create(ctx, invalid.DeepCopy(), client.DryRunAll)
		return last != nil && strings.Contains(last.Error(), "must start with alphabetical character"), nil
	})
	if err != nil {
		return errors.Join(errors.New("the apiserver does not call the InferenceService webhooks"), last)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pod := podProbe()
		if last = k.client.Create(ctx, pod, client.DryRunAll); last != nil {
			return false, nil
		}
		for _, c := range pod.Spec.InitContainers {
			if c.Name == "storage-initializer" {
				return true, nil
			}
		}
		last = fmt.Errorf("the probe pod came back without KServe's storage initializer: init containers %v", pod.Spec.InitContainers)
		return false, nil
	})
	if err != nil {
		return errors.Join(errors.New("the apiserver does not call the pod-mutating webhook"), last)
	}
	return nil
}

// podProbe is a pod as an InferenceService's Deployment makes it, for a
// dry-run create: KServe's pod-mutating webhook adds its storage
// initializer for the storage URI annotation.
func podProbe() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "webhook-probe",
			Namespace:   "default",
			Labels:      map[string]string{"serving.kserve.io/inferenceservice": "webhook-probe"},
			Annotations: map[string]string{"internal.serving.kserve.io/storage-initializer-sourceuri": "s3://webhook-probe/model"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kserve-container", Image: "webhook-probe"}}},
	}
}
