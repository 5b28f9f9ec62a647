package kubeenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/pem"
	"errors"
	"math/big"
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

// seldonConfig is the seldon-config ConfigMap of the Helm chart at
// SeldonVersion with its default values.
//
//go:embed testdata/seldon-config.yaml
var seldonConfig []byte

// seldonWebhookPath is where the operator serves its validating webhook
// for machinelearning.seldon.io/v1 SeldonDeployments.
const seldonWebhookPath = "/validate-machinelearning-seldon-io-v1-seldondeployment"

// SeldonOptions configure StartSeldon. The zero value is the Helm chart's
// default install in seldon-system (Istio and Ambassador off).
type SeldonOptions struct {
	// Namespace is the operator's own namespace (POD_NAMESPACE), where its
	// seldon-config ConfigMap lives; default "seldon-system".
	Namespace string
	// Istio turns on the operator's Istio support (ISTIO_ENABLED): each
	// SeldonDeployment also gets a VirtualService on IstioGateway and a
	// DestinationRule per predictor. StartSeldon installs IstioCRDs.
	Istio bool
	// IstioGateway is ISTIO_GATEWAY, the gateway the VirtualServices bind
	// to; default "istio-system/seldon-gateway", the chart's.
	IstioGateway string
	// Env sets more operator environment variables, or overrides those
	// StartSeldon sets (the chart's manager container's).
	Env map[string]string
	// PatchCRDs, when set, runs once the CRDs are installed and before the
	// operator starts, as an administrator changes an installed CRD (e.g.
	// kubectl patch crd); it returns once the apiserver serves the change,
	// so that the operator reads nothing under the old schema.
	PatchCRDs func(t testing.TB, k *Kube)
}

// Seldon is a running Seldon Core v1 operator.
type Seldon struct {
	// Namespace is the operator's namespace.
	Namespace string
	// Webhook is the URL of its validating webhook (https://127.0.0.1:PORT/...).
	Webhook string

	proc *process
}

// Log returns what the operator has logged so far, for failure messages.
func (s *Seldon) Log() string { return s.proc.Log() }

// StartSeldon runs the real Seldon Core v1 operator (SeldonVersion, built by
// `make tools` as seldon-operator) against a cluster from StartCluster, as
// its Helm chart installs it: the SeldonDeployment CRD (and the Istio ones
// when opts.Istio), the seldon-config ConfigMap with the chart's defaults in
// opts.Namespace, the operator's environment, and its validating webhook,
// served on 127.0.0.1 with a self-signed certificate and registered in a
// ValidatingWebhookConfiguration (so an invalid SeldonDeployment is refused
// at create, as in a real cluster). The reconciler applies the API's
// defaults itself, as it does in a real install. It returns once the webhook
// answers the apiserver; the operator stops when the test ends, and its log
// is printed if the test failed. Pass SeldonCRD (and IstioCRDs) in the
// cluster's ClusterOptions.CRDPaths too: the garbage collector rediscovers
// kinds only every 30 s, and collects the Deployments of a deleted
// SeldonDeployment only once it watches the kind.
func StartSeldon(t testing.TB, k *Kube, opts SeldonOptions) *Seldon {
	t.Helper()
	bin := testenv.RequireBinary(t, "seldon-operator", SeldonVersion)
	if opts.Namespace == "" {
		opts.Namespace = "seldon-system"
	}
	if opts.IstioGateway == "" {
		opts.IstioGateway = "istio-system/seldon-gateway"
	}
	ctx := t.Context()

	crds := []string{SeldonCRD(t)}
	if opts.Istio {
		crds = append(crds, IstioCRDs(t))
	}
	if _, err := envtest.InstallCRDs(k.Config, envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	if opts.PatchCRDs != nil {
		opts.PatchCRDs(t, k)
	}
	if err := k.ensureNamespace(ctx, opts.Namespace); err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(seldonConfig, &cm); err != nil {
		t.Fatalf("seldon-config fixture: %v", err)
	}
	cm.Namespace = opts.Namespace
	if err := k.client.Create(ctx, &cm); err != nil {
		t.Fatalf("create seldon-config: %v", err)
	}

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(k, kubeconfig); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	certDir := filepath.Join(dir, "certs")
	caPEM, err := writeServingCert(certDir)
	if err != nil {
		t.Fatalf("webhook certificate: %v", err)
	}
	webhookPort := testenv.FreePort(t)
	probePort := testenv.FreePort(t)

	env := seldonEnv(opts)
	env["KUBECONFIG"] = kubeconfig
	env["HOME"] = dir
	for key, v := range opts.Env {
		env[key] = v
	}
	envList := make([]string, 0, len(env))
	for key, v := range env {
		envList = append(envList, key+"="+v)
	}
	p := startProcess(t, "seldon-operator", bin, []string{
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(probePort),
		"--metrics-bind-address=0",
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(webhookPort),
		"--webhook-cert-dir=" + certDir,
	}, envList)
	s := &Seldon{
		Namespace: opts.Namespace,
		Webhook:   "https://127.0.0.1:" + strconv.Itoa(webhookPort) + seldonWebhookPath,
		proc:      p,
	}
	readyz := "http://127.0.0.1:" + strconv.Itoa(probePort) + "/readyz"
	if err := testenv.WaitHealthy(ctx, readyz, p.exited); err != nil {
		t.Fatalf("seldon-operator not ready: %v\n%s", err, tail(p.log, logTail))
	}

	// What the operator's webhook manifests (config/webhook, which the chart
	// renders) say, pointed at 127.0.0.1.
	notControllerID := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "seldon.io/controller-id", Operator: metav1.LabelSelectorOpDoesNotExist,
	}}}
	failurePolicy := admissionregistrationv1.Fail
	sideEffects := admissionregistrationv1.SideEffectClassNone
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "seldon-validating-webhook-configuration-" + opts.Namespace},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "v1.vseldondeployment.kb.io",
			AdmissionReviewVersions: []string{"v1", "v1beta1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &s.Webhook, CABundle: caPEM},
			FailurePolicy:           &failurePolicy,
			SideEffects:             &sideEffects,
			// Objects and namespaces that name another operator by its
			// CONTROLLER_ID are that operator's to validate.
			ObjectSelector:    notControllerID,
			NamespaceSelector: notControllerID,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{"machinelearning.seldon.io"},
					APIVersions: []string{"v1"},
					Resources:   []string{"seldondeployments"},
				},
			}},
		}},
	}
	if err := k.client.Create(ctx, vwc); err != nil {
		t.Fatalf("create validating webhook configuration: %v", err)
	}
	// Runs before the operator stops: later creates need no webhook.
	t.Cleanup(func() {
		if err := k.client.Delete(context.Background(), vwc); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete validating webhook configuration: %v", err)
		}
	})
	if err := waitWebhookServes(ctx, k, opts.Namespace); err != nil {
		t.Fatalf("seldon webhook: %v\n%s", err, tail(p.log, logTail))
	}
	return s
}

// seldonEnv is the environment the chart (SeldonVersion, default values)
// gives the operator's manager container, for opts.
func seldonEnv(opts SeldonOptions) map[string]string {
	return map[string]string{
		"POD_NAMESPACE":                               opts.Namespace,
		"WATCH_NAMESPACE":                             "",
		"CONTROLLER_ID":                               "",
		"AMBASSADOR_ENABLED":                          "false",
		"AMBASSADOR_SINGLE_NAMESPACE":                 "false",
		"ISTIO_ENABLED":                               strconv.FormatBool(opts.Istio),
		"ISTIO_GATEWAY":                               opts.IstioGateway,
		"ISTIO_TLS_MODE":                              "",
		"KEDA_ENABLED":                                "false",
		"USE_EXECUTOR":                                "true",
		"EXECUTOR_CONTAINER_IMAGE_AND_VERSION":        "seldonio/seldon-core-executor:" + strings.TrimPrefix(SeldonVersion, "v"),
		"EXECUTOR_CONTAINER_IMAGE_PULL_POLICY":        "IfNotPresent",
		"EXECUTOR_PROMETHEUS_PATH":                    "/prometheus",
		"EXECUTOR_SERVER_PORT":                        "8000",
		"EXECUTOR_CONTAINER_USER":                     "8888",
		"EXECUTOR_CONTAINER_SERVICE_ACCOUNT_NAME":     "default",
		"EXECUTOR_SERVER_METRICS_PORT_NAME":           "metrics",
		"EXECUTOR_REQUEST_LOGGER_DEFAULT_ENDPOINT":    "http://default-broker",
		"EXECUTOR_REQUEST_LOGGER_WORK_QUEUE_SIZE":     "10000",
		"EXECUTOR_REQUEST_LOGGER_WRITE_TIMEOUT_MS":    "2000",
		"EXECUTOR_DEFAULT_CPU_REQUEST":                "500m",
		"EXECUTOR_DEFAULT_MEMORY_REQUEST":             "512Mi",
		"EXECUTOR_DEFAULT_CPU_LIMIT":                  "500m",
		"EXECUTOR_DEFAULT_MEMORY_LIMIT":               "512Mi",
		"EXECUTOR_FULL_HEALTH_CHECKS":                 "false",
		"DEFAULT_USER_ID":                             "8888",
		"PREDICTIVE_UNIT_HTTP_SERVICE_PORT":           "9000",
		"PREDICTIVE_UNIT_GRPC_SERVICE_PORT":           "9500",
		"PREDICTIVE_UNIT_METRICS_PORT_NAME":           "metrics",
		"PREDICTIVE_UNIT_DEFAULT_ENV_SECRET_REF_NAME": "",
		"DEPLOYMENT_NAME_AS_PREFIX":                   "false",
		"MANAGER_LOG_LEVEL":                           "INFO",
	}
}

// waitWebhookServes waits until the apiserver calls the webhook: a
// dry-run create of a SeldonDeployment whose graph names no container is
// refused by the webhook (and by nothing else).
func waitWebhookServes(ctx context.Context, k *Kube, namespace string) error {
	invalid := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "machinelearning.seldon.io/v1",
		"kind":       "SeldonDeployment",
		"metadata":   map[string]any{"name": "webhook-probe", "namespace": namespace},
		"spec": map[string]any{"predictors": []any{map[string]any{
			"name":  "p",
			"graph": map[string]any{"name": "no-such-container"},
		}}},
	}}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = k.client.Create(ctx, invalid.DeepCopy(), client.DryRunAll)
		return last != nil && strings.Contains(last.Error(), "Can't find container for Predictive Unit"), nil
	})
	if err != nil {
		return errors.Join(errors.New("the apiserver does not call the webhook"), last)
	}
	return nil
}

// writeServingCert writes tls.crt and tls.key for 127.0.0.1, signed by a
// fresh CA, into dir (as controller-runtime's webhook server reads them)
// and returns the CA's PEM certificate, the webhook's caBundle.
func writeServingCert(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubeenv seldon webhook CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
