// Package kubeenv starts Kubernetes for tests, from binaries that `make
// tools` builds from pinned tools modules: StartKube is a bare etcd and
// kube-apiserver (envtest style) for clients and controllers that only read
// and write objects; StartCluster adds kube-controller-manager,
// kube-scheduler and kwok's fake nodes, so that Deployments roll out and
// pods run, become ready or crash-loop as a test scripts them (see
// BehaviourLabel); StartSeldon runs the real Seldon Core v1 operator in it,
// and StartKServe the real KServe controller manager (in a test in
// testenv.InNetworkNamespace).
package kubeenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/testenv"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// EtcdVersion and KubeVersion are the etcd and kube-apiserver (and
// kube-controller-manager and kube-scheduler) releases the tests run
// against; keep them in step with tools/etcd/go.mod,
// tools/kube-apiserver/go.mod and tools/kube.mk.
const (
	EtcdVersion = "v3.7.3"
	KubeVersion = "v1.37.2"
)

// Kube is a running etcd + kube-apiserver on 127.0.0.1. From StartKube it
// has no controllers (no namespace, service-account or garbage-collection
// controllers run; StartGarbageCollector adds the garbage-collection and
// namespace ones); from StartCluster it is a whole cluster.
type Kube struct {
	// Config is admin (system:masters) access over TLS with a client cert.
	Config *rest.Config
	// Issuer is the service-account issuer, https://127.0.0.1:PORT: the iss
	// claim of every token, and the issuer the discovery document names.
	Issuer string
	// CA is the PEM certificate that signed the apiserver's serving cert.
	CA []byte

	client client.Client
}

// StartKube starts etcd and kube-apiserver with controller-runtime's envtest
// and stops them when the test ends. crdPaths, if any, are files or
// directories of CRD manifests to install; a missing path fails the test.
// The apiserver issues service-account tokens for any audience, serves
// OIDC discovery at Issuer+"/.well-known/openid-configuration" (readable
// anonymously after AllowAnonymousDiscovery) and the signing keys at
// Issuer+"/openid/v1/jwks".
func StartKube(t testing.TB, crdPaths ...string) *Kube {
	t.Helper()
	return startKube(t, kubeOptions{crdPaths: crdPaths})
}

// kubeOptions configure startKube.
type kubeOptions struct {
	crdPaths []string
	// serviceAccountAdmission enables the ServiceAccount admission plugin
	// (envtest disables it): pods get their service account's token
	// volume, and are refused until the account exists.
	serviceAccountAdmission bool
}

func startKube(t testing.TB, opts kubeOptions) *Kube {
	t.Helper()
	crdPaths := opts.crdPaths
	etcdPath := testenv.RequireBinary(t, "etcd", EtcdVersion)
	apiserverPath := testenv.RequireBinary(t, "kube-apiserver", KubeVersion)
	for _, p := range crdPaths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CRD path: %v", err)
		}
	}
	logsDir := logDir(t)
	useExistingCluster := false // whatever USE_EXISTING_CLUSTER says

	var lastErr error
	for attempt := range 3 { // a port taken between FreePort and listen: try another
		port := strconv.Itoa(testenv.FreePort(t))
		issuer := "https://127.0.0.1:" + port
		logs, err := openLogs(logsDir, attempt)
		if err != nil {
			t.Fatal(err)
		}
		env := &envtest.Environment{
			ControlPlane: envtest.ControlPlane{
				Etcd: &envtest.Etcd{Path: etcdPath, Out: logs, Err: logs},
				APIServer: &envtest.APIServer{
					Path: apiserverPath,
					Out:  logs,
					Err:  logs,
					SecureServing: envtest.SecureServing{
						ListenAddr: envtest.ListenAddr{Address: "127.0.0.1", Port: port},
					},
				},
			},
			UseExistingCluster:       &useExistingCluster,
			CRDDirectoryPaths:        crdPaths,
			ErrorIfCRDPathMissing:    true,
			ControlPlaneStartTimeout: 90 * time.Second,
			ControlPlaneStopTimeout:  30 * time.Second,
		}
		// envtest already points the service-account key flags at a key
		// pair it generates; pin the issuer and the JWKS URI to the serving
		// address (else the apiserver advertises a host interface address).
		args := env.ControlPlane.APIServer.Configure()
		args.Set("service-account-issuer", issuer)
		args.Set("service-account-jwks-uri", issuer+"/openid/v1/jwks")
		args.Set("api-audiences", issuer)
		// Advertise the serving address too. Left to itself the apiserver
		// picks the address of the interface of the default route, and
		// fails where there is none (in testenv.InNetworkNamespace). It
		// refuses to write a loopback address into the endpoints of the
		// kubernetes Service, so it writes none: no pod of these clusters
		// runs, let alone calls the apiserver through that Service.
		args.Set("advertise-address", "127.0.0.1")
		args.Set("endpoint-reconciler-type", "none")
		if opts.serviceAccountAdmission {
			args.Disable("disable-admission-plugins")
		}

		cfg, err := env.Start()
		if err != nil {
			_ = env.Stop()
			logs.Close()
			lastErr = fmt.Errorf("attempt %d: %w\n%s", attempt+1, err, tail(logs.Name(), 4000))
			continue
		}
		t.Cleanup(func() {
			if err := env.Stop(); err != nil {
				t.Errorf("stop control plane: %v", err)
			}
			logs.Close()
			if t.Failed() {
				t.Logf("etcd + kube-apiserver log (tail):\n%s", tail(logs.Name(), 4000))
			}
		})
		c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		return &Kube{Config: cfg, Issuer: issuer, CA: env.ControlPlane.APIServer.SecureServing.CA, client: c}
	}
	t.Fatalf("start etcd + kube-apiserver: %v", lastErr)
	return nil
}

func openLogs(dir string, attempt int) (*os.File, error) {
	return os.Create(filepath.Join(dir, "controlplane-"+strconv.Itoa(attempt)+".log"))
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// ServiceAccountToken creates the namespace and service account if missing
// and returns a token for it from the TokenRequest API, with the given
// audience and lifetime (the apiserver's minimum is 10 minutes).
func (k *Kube) ServiceAccountToken(t testing.TB, namespace, name, audience string, expiry time.Duration) string {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := k.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := k.client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create service account %s/%s: %v", namespace, name, err)
	}
	seconds := int64(expiry / time.Second)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         []string{audience},
		ExpirationSeconds: &seconds,
	}}
	if err := k.client.SubResource("token").Create(ctx, sa, req); err != nil {
		t.Fatalf("token request for %s/%s: %v", namespace, name, err)
	}
	if req.Status.Token == "" {
		t.Fatalf("token request for %s/%s: empty token", namespace, name)
	}
	return req.Status.Token
}

// JWKS returns the apiserver's service-account signing keys, the JSON Web
// Key Set at /openid/v1/jwks, fetched with admin credentials.
func (k *Kube) JWKS(t testing.TB) []byte {
	t.Helper()
	hc, err := rest.HTTPClientFor(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	return getOK(t, hc, strings.TrimSuffix(k.Config.Host, "/")+"/openid/v1/jwks")
}

// DiscoveryURL is the OIDC discovery document of the service-account
// issuer, Issuer+"/.well-known/openid-configuration".
func (k *Kube) DiscoveryURL() string {
	return k.Issuer + "/.well-known/openid-configuration"
}

// AllowAnonymousDiscovery lets unauthenticated clients read the discovery
// document and the JWKS, as an OIDC relying party would: it binds the
// system:service-account-issuer-discovery ClusterRole to the group
// system:unauthenticated. Calling it twice is harmless.
func (k *Kube) AllowAnonymousDiscovery(t testing.TB) {
	t.Helper()
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "modelx-test:anonymous-issuer-discovery"},
		RoleRef: rbacv1.RoleRef{
			APIGroup: rbacv1.GroupName,
			Kind:     "ClusterRole",
			Name:     "system:service-account-issuer-discovery",
		},
		Subjects: []rbacv1.Subject{{
			APIGroup: rbacv1.GroupName,
			Kind:     rbacv1.GroupKind,
			Name:     "system:unauthenticated",
		}},
	}
	if err := k.client.Create(t.Context(), binding); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create cluster role binding: %v", err)
	}
}

// HTTPClient returns a client with no credentials that trusts the
// apiserver's serving certificate: what an OIDC relying party uses to
// fetch DiscoveryURL and the JWKS.
func (k *Kube) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CA)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
	}
}

// getOK GETs a small document and fails the test unless the answer is 200.
func getOK(t testing.TB, hc *http.Client, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body
}
