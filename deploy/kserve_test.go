package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	modelx "modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/internal/testenv/kubeenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/fs"
)

// initializerImage stands for the modelx image in the ClusterStorageContainers.
const initializerImage = "modelx/modelx:test"

// TestKServeStorageContainers installs deploy/kserve's
// ClusterStorageContainers in a cluster running the real KServe v0.16.0
// controller and its webhooks, and serves hand-written InferenceServices
// with modelx:// storage URIs, as a user writes them (docs/kserve.md): the
// token from the Secret modelx-credentials, and keyless with the pod's own
// service-account token. It asserts on the Pods KServe makes, then runs
// their storage-initializer on the host as the Pod says, against a real
// modelxd that checks those identities, and finds the model verified in
// the mount path.
func TestKServeStorageContainers(t *testing.T) {
	if testenv.InNetworkNamespace(t, kubeenv.PrefetchKServe) {
		return
	}
	ctx := t.Context()
	kube := kubeenv.StartCluster(t, kubeenv.ClusterOptions{CRDPaths: []string{kubeenv.KServeCRDs(t)}})
	kserve := kubeenv.StartKServe(t, kube, kubeenv.KServeOptions{})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("KServe manager log (tail):\n%s", tail(kserve.Log(), 6000))
		}
	})
	k8s, err := client.New(kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}

	const cluster, pushToken, pullToken = "test", "ci-token", "reader-token"
	reg := kserveRegistry(t, kube, cluster, pushToken, pullToken)
	digest := pushIris(t, reg, pushToken)
	host := strings.TrimPrefix(reg, "http://")

	kube.CreateFromFile(t, filepath.Join("kserve", "clusterstoragecontainers.yaml"), func(u *unstructured.Unstructured) {
		unstructured.SetNestedField(u.Object, initializerImage, "spec", "container", "image")
	})
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "anonymous"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "modelx-credentials", Namespace: "ml"}, StringData: map[string]string{"MODELX_TOKEN": pullToken}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	waitServiceAccount(t, k8s, "anonymous", "default")
	waitServiceAccount(t, k8s, "ml", "default")
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "iris-puller", Namespace: "ml"}}); err != nil {
		t.Fatal(err)
	}
	entrypoint := testenv.ModelxEntrypoint(t)

	t.Run("Secret", func(t *testing.T) {
		uri := fmt.Sprintf("modelx://%s/demo/iris@%s?insecure=true", host, digest)
		createISVC(t, k8s, "ml", "iris-secret", uri, nil)
		pod := readyPod(t, k8s, "ml", "iris-secret")
		init := initializer(t, pod, uri)
		if len(init.Env) == 0 || init.Env[0].Name != "MODELX_TOKEN" || init.Env[0].ValueFrom == nil || init.Env[0].ValueFrom.SecretKeyRef.Name != "modelx-credentials" {
			t.Errorf("initializer env %+v: want MODELX_TOKEN from the Secret modelx-credentials", init.Env)
		}
		run := kube.RunContainer(t, pod, init.Name, kubeenv.HostRun{Entrypoints: map[string][]string{initializerImage: entrypoint}})
		if run.Err != nil {
			t.Fatalf("initializer: %v\n%s", run.Err, run.Output)
		}
		checkModel(t, run)
	})

	t.Run("KeylessServiceAccount", func(t *testing.T) {
		uri := fmt.Sprintf("modelx://serviceaccount@%s/demo/iris@%s?insecure=true", host, digest)
		createISVC(t, k8s, "ml", "iris-keyless", uri, func(predictor map[string]any) {
			predictor["serviceAccountName"] = "iris-puller"
			predictor["volumes"] = []any{map[string]any{"name": "modelx-token", "projected": map[string]any{"sources": []any{
				map[string]any{"serviceAccountToken": map[string]any{"audience": "modelx", "expirationSeconds": int64(3600), "path": "token"}},
			}}}}
		})
		pod := readyPod(t, k8s, "ml", "iris-keyless")
		init := initializer(t, pod, uri)
		if !slices.ContainsFunc(init.Env, func(e corev1.EnvVar) bool {
			return e.Name == "MODELX_TOKEN_FILE" && e.Value == "/var/run/secrets/modelx/token"
		}) || slices.ContainsFunc(init.Env, func(e corev1.EnvVar) bool { return e.Name == "MODELX_TOKEN" }) {
			t.Errorf("initializer env %+v: want MODELX_TOKEN_FILE alone", init.Env)
		}
		if !slices.ContainsFunc(init.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "modelx-token" && m.MountPath == "/var/run/secrets/modelx" && m.ReadOnly
		}) {
			t.Errorf("initializer mounts %+v: no token", init.VolumeMounts)
		}
		run := kube.RunContainer(t, pod, init.Name, kubeenv.HostRun{Entrypoints: map[string][]string{initializerImage: entrypoint}})
		if run.Err != nil {
			t.Fatalf("initializer: %v\n%s", run.Err, run.Output)
		}
		checkModel(t, run)
	})

	t.Run("KeylessWithoutTheVolume", func(t *testing.T) {
		// The container mounts modelx-token; a pod without that volume is
		// invalid, and KServe says so.
		uri := fmt.Sprintf("modelx://serviceaccount@%s/demo/iris@%s?insecure=true", host, digest)
		createISVC(t, k8s, "ml", "iris-no-volume", uri, nil)
		waitFor(t, "KServe reports the missing volume", func() error {
			isvc := &unstructured.Unstructured{}
			isvc.SetGroupVersionKind(isvcGVK)
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: "ml", Name: "iris-no-volume"}, isvc); err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(isvc.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any)["message"].(string); strings.Contains(m, `"modelx-token"`) {
					return nil
				}
			}
			return fmt.Errorf("conditions %v", conds)
		})
	})

	t.Run("NoSecretPullsAnonymously", func(t *testing.T) {
		// No Secret in the namespace: the reference is optional, the pod is
		// made, and the registry (which grants nothing anonymously) says no.
		uri := fmt.Sprintf("modelx://%s/demo/iris@%s?insecure=true", host, digest)
		createISVC(t, k8s, "anonymous", "iris", uri, nil)
		pod := readyPod(t, k8s, "anonymous", "iris")
		init := initializer(t, pod, uri)
		run := kube.RunContainer(t, pod, init.Name, kubeenv.HostRun{Entrypoints: map[string][]string{initializerImage: entrypoint}})
		if run.Err == nil || !strings.Contains(run.Output, "401") && !strings.Contains(strings.ToLower(run.Output), "unauthorized") {
			t.Fatalf("an anonymous pull of a private model: %v\n%s", run.Err, run.Output)
		}
		t.Logf("the initializer says: %s", run.Output)
	})
}

var isvcGVK = schema.GroupVersionKind{Group: "serving.kserve.io", Version: "v1beta1", Kind: "InferenceService"}

// kserveRegistry serves a modelxd on 127.0.0.1 that trusts robot tokens
// (push, and pull of demo/*) and the cluster's service-account tokens for
// the audience modelx (pull of demo/* for ml/iris-puller).
func kserveRegistry(t *testing.T, kube *kubeenv.Kube, cluster, pushToken, pullToken string) string {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kube.AllowAnonymousDiscovery(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, kube.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := func(token string) string { h := sha256.Sum256([]byte(token)); return hex.EncodeToString(h[:]) }
	authn, err := auth.New(auth.Config{
		Issuers: []auth.IssuerConfig{{Issuer: kube.Issuer, Audience: "modelx", Cluster: cluster, CAFile: ca}},
		Robots:  []auth.Robot{{Name: "ci", TokenSHA256: sum(pushToken)}, {Name: "reader", TokenSHA256: sum(pullToken)}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{Rules: []auth.Rule{
		{Repositories: []string{"*"}, Actions: []auth.Action{auth.Push}, Robots: []string{"ci"}},
		{Repositories: []string{"demo/*"}, Actions: []auth.Action{auth.Pull}, Robots: []string{"reader"}, ServiceAccounts: []string{cluster + "/ml/iris-puller"}},
	}}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authenticator: authn, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// irisFiles are the model's files.
var irisFiles = map[string]string{
	"modelx.yaml":     "description: iris\nframework: sklearn\n",
	"model.joblib":    "sklearn weights of iris",
	"data/labels.txt": "setosa\nversicolor\nvirginica\n",
}

// pushIris pushes demo/iris:v1 and returns its manifest digest.
func pushIris(t *testing.T, reg, token string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range irisFiles {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref, err := modelx.ParseReference(reg+"/demo/iris:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := modelx.New(modelx.Options{Token: func(string) (string, error) { return token, nil }}).Push(context.Background(), ref, dir)
	if err != nil {
		t.Fatal(err)
	}
	return string(res.Digest)
}

// createISVC creates a Standard-mode InferenceService of the kserve-mlserver
// runtime with storageUri uri; edit, if set, changes its predictor.
func createISVC(t *testing.T, k8s client.Client, namespace, name, uri string, edit func(predictor map[string]any)) {
	t.Helper()
	predictor := map[string]any{"model": map[string]any{
		"modelFormat": map[string]any{"name": "sklearn"}, "runtime": "kserve-mlserver", "protocolVersion": "v2", "storageUri": uri,
	}}
	if edit != nil {
		edit(predictor)
	}
	isvc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
		"metadata": map[string]any{"name": name, "namespace": namespace, "annotations": map[string]any{"serving.kserve.io/deploymentMode": "Standard"}},
		"spec":     map[string]any{"predictor": predictor},
	}}
	if err := k8s.Create(t.Context(), isvc); err != nil {
		t.Fatalf("create InferenceService %s/%s: %v", namespace, name, err)
	}
}

// readyPod waits for a pod of the InferenceService that kwok runs.
func readyPod(t *testing.T, k8s client.Client, namespace, name string) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	waitFor(t, "a running pod of "+name, func() error {
		var pods corev1.PodList
		if err := k8s.List(t.Context(), &pods, client.InNamespace(namespace), client.MatchingLabels{"serving.kserve.io/inferenceservice": name}); err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				pod = p
				return nil
			}
		}
		return fmt.Errorf("%d pods, none running", len(pods.Items))
	})
	return &pod
}

// initializer is the pod's storage-initializer, checked against what the
// ClusterStorageContainers say: our image, KServe's args, the mount path.
func initializer(t *testing.T, pod *corev1.Pod, uri string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "storage-initializer" })
	if i < 0 {
		t.Fatalf("init containers %+v: KServe injected no storage-initializer", pod.Spec.InitContainers)
	}
	c := pod.Spec.InitContainers[i]
	if c.Image != initializerImage || len(c.Command) != 0 || fmt.Sprint(c.Args) != fmt.Sprint([]string{uri, "/mnt/models"}) {
		t.Errorf("initializer image %q command %q args %q", c.Image, c.Command, c.Args)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/mnt/models" }) {
		t.Errorf("initializer mounts %+v: nothing at /mnt/models", c.VolumeMounts)
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
		t.Errorf("initializer security context %+v", sc)
	}
	if c.Resources.Requests.Memory().String() != "256Mi" || c.Resources.Limits.Cpu().String() != "1" {
		t.Errorf("initializer resources %+v", c.Resources)
	}
	return c
}

// checkModel checks that the model directory holds the model's files, byte
// for byte, and nothing else.
func checkModel(t *testing.T, run kubeenv.ContainerRun) {
	t.Helper()
	dir := run.Volumes["kserve-provision-location"]
	if dir == "" {
		t.Fatalf("no kserve-provision-location volume among %v", run.Volumes)
	}
	var got []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, rel)
		}
		return nil
	})
	if len(got) != len(irisFiles) {
		t.Errorf("the model directory holds %v, want the model's %d files", got, len(irisFiles))
	}
	for name, want := range irisFiles {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(data) != want {
			t.Errorf("%s: %q %v, want %q", name, data, err, want)
		}
	}
}

// waitServiceAccount waits for a namespace's service account, which the
// service-account controller makes.
func waitServiceAccount(t *testing.T, k8s client.Client, namespace, name string) {
	t.Helper()
	waitFor(t, "service account "+namespace+"/"+name, func() error {
		return k8s.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: name}, &corev1.ServiceAccount{})
	})
}

// waitFor polls cond until it holds, or fails after a generous bound.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		last = cond()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, last)
	}
}

// tail is the end of s, for failure messages.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
