package controller_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	modelx "modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/controller"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/internal/testenv/kubeenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/fs"
)

// The robots of the suite's registry: ci pushes, the controller resolves.
const (
	ciToken         = "ci-token"
	adminToken      = "admin-token"
	controllerToken = "controller-token"
	// nodeToken is the robot token in the pods' image pull secrets, with
	// which the node (here: crane) pulls a model's image form.
	nodeToken = "node-token"
	// clusterName is the name modelxd knows the test cluster's issuer by.
	clusterName = "test"
)

// suiteOptions shape a suite's cluster.
type suiteOptions struct {
	// versions are the model versions pushed before the cluster starts,
	// each to the tag of its name with the content "weights NAME", and the
	// pod behaviour (kubeenv.Behaviour*) of the servers that serve it: ""
	// for pods that become ready.
	versions map[string]string
	// noIstio leaves Istio's CRDs out of the cluster.
	noIstio bool
	// seldonIstio turns on Seldon's Istio integration, and the controller's
	// --seldon-istio with it.
	seldonIstio bool
	// seldonImageVolumes patches Seldon's SeldonDeployment CRD with
	// deploy/seldon/crd-image-volumes.json before the operator starts, as
	// docs/deploy.md says to for model.mount: image.
	seldonImageVolumes bool
	// kserve starts the real KServe controller beside Seldon, with the
	// ClusterStorageContainers of deploy/kserve (image modelx/modelx:test).
	// The test must run in testenv.InNetworkNamespace (prepared with
	// kserveFetch).
	kserve bool
}

// suite is a cluster that behaves like one (kube-apiserver, controller
// manager, scheduler, kwok nodes), the real Seldon Core v1 operator, a
// real modelxd that trusts the cluster's service-account tokens, and the
// controller under test.
type suite struct {
	t        *testing.T
	k8s      client.Client
	kube     *kubeenv.Kube
	seldon   *kubeenv.Seldon
	kserve   *kubeenv.KServe
	storage  registry.Backend
	registry string
	ci       *modelx.API
	// admin collects garbage.
	admin *modelx.API
	// digests are the pushed versions' manifest digests, by name.
	digests map[string]string
	// resolver is the controller's, counting its resolutions.
	resolver *countingResolver
}

// countingResolver counts the controller's resolutions of each tag, so a
// test waits until the controller has looked at a tag again (each look a
// reconcile that could act on it) rather than for some time.
type countingResolver struct {
	controller.Resolver
	mu      sync.Mutex
	counts  map[string]int
	changed chan struct{} // closed, and replaced, at each resolution
}

func newCountingResolver(r controller.Resolver) *countingResolver {
	return &countingResolver{Resolver: r, counts: map[string]int{}, changed: make(chan struct{})}
}

// Resolve resolves src, then counts it.
func (c *countingResolver) Resolve(ctx context.Context, src v1alpha1.ModelSource) (controller.Resolved, error) {
	res, err := c.Resolver.Resolve(ctx, src)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[src.Tag]++
	close(c.changed)
	c.changed = make(chan struct{})
	return res, err
}

// count is how often tag was resolved so far, and a channel closed at the
// next resolution of any tag.
func (c *countingResolver) count(tag string) (int, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[tag], c.changed
}

// looksAgain waits until the controller has resolved tag n more times
// from now. Reconciles of one object run one at a time, so n looks mean
// n-1 reconciles begun and ended after the call (each follows the tag).
func (s *suite) looksAgain(tag string, n int) {
	s.t.Helper()
	start, _ := s.resolver.count(tag)
	timeout := time.After(90 * time.Second)
	for {
		got, changed := s.resolver.count(tag)
		if got-start >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			s.t.Fatalf("the controller resolved %s %d times in 90s, want %d", tag, got-start, n)
		}
	}
}

func startSuite(t *testing.T, opts suiteOptions) *suite {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{t: t, storage: st, digests: map[string]string{}}

	// The versions go in first: their digests choose their pods' behaviour.
	pre := httptest.NewServer(newRegistry(t, st, auth.Config{}, nil).Handler())
	behaviours := map[string]string{}
	for name, behaviour := range opts.versions {
		d := push(t, pre.URL, name, "weights "+name)
		s.digests[name] = d
		if behaviour != "" {
			behaviours[strings.TrimPrefix(d, "sha256:")[:12]] = behaviour
		}
	}
	pre.Close()

	crds := []string{filepath.Join("..", "config", "crd"), kubeenv.SeldonCRD(t)}
	if !opts.noIstio {
		crds = append(crds, kubeenv.IstioCRDs(t))
	}
	if opts.kserve {
		crds = append(crds, kubeenv.KServeCRDs(t))
	}
	s.kube = kubeenv.StartCluster(t, kubeenv.ClusterOptions{CRDPaths: crds,
		Behaviours: kubeenv.BehaviourRule{Label: render.LabelDigest, ByValue: behaviours}})
	seldonOpts := kubeenv.SeldonOptions{Istio: opts.seldonIstio}
	if opts.seldonImageVolumes {
		seldonOpts.PatchCRDs = patchSeldonCRD
	}
	s.seldon = kubeenv.StartSeldon(t, s.kube, seldonOpts)
	if opts.kserve {
		s.kserve = kubeenv.StartKServe(t, s.kube, kubeenv.KServeOptions{})
	}

	// modelxd trusts the cluster's service-account tokens: a pod's
	// initializer pulls with its own identity.
	s.kube.AllowAnonymousDiscovery(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.kube.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := func(token string) string { h := sha256.Sum256([]byte(token)); return hex.EncodeToString(h[:]) }
	policy := &auth.Policy{Rules: []auth.Rule{
		{Repositories: []string{"*"}, Actions: []auth.Action{auth.Push}, Robots: []string{"ci"}},
		{Repositories: []string{"*"}, Actions: []auth.Action{auth.Pull, auth.Hold}, Robots: []string{"controller"}},
		{Repositories: []string{"*"}, Actions: []auth.Action{auth.Admin}, Robots: []string{"admin"}},
		{Repositories: []string{"*"}, Actions: []auth.Action{auth.Pull}, Robots: []string{"node"}},
		{Repositories: []string{"nlp/*"}, Actions: []auth.Action{auth.Pull}, ServiceAccounts: []string{clusterName + "/ml/puller"}},
	}}
	cfg := auth.Config{
		Issuers: []auth.IssuerConfig{{Issuer: s.kube.Issuer, Audience: "modelx", Cluster: clusterName, CAFile: ca}},
		Robots: []auth.Robot{{Name: "ci", TokenSHA256: sum(ciToken)}, {Name: "controller", TokenSHA256: sum(controllerToken)}, {Name: "admin", TokenSHA256: sum(adminToken)},
			{Name: "node", TokenSHA256: sum(nodeToken)}},
	}
	srv := httptest.NewServer(newRegistry(t, st, cfg, policy).Handler())
	t.Cleanup(srv.Close)
	s.registry = srv.URL
	s.ci = modelx.NewAPI(srv.URL, nil, credentials.Static(ciToken))
	s.admin = modelx.NewAPI(srv.URL, nil, credentials.Static(adminToken))

	scheme := runtime.NewScheme()
	clientgoscheme.AddToScheme(scheme)
	v1alpha1.AddToScheme(scheme)
	mgr, err := ctrl.NewManager(s.kube.Config, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:      controller.CacheOptions(),
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}}) // several suites build the controller again
	if err != nil {
		t.Fatal(err)
	}
	resolver := &controller.RegistryResolver{Keychain: credentials.Static(controllerToken)}
	s.resolver = newCountingResolver(resolver)
	r := &controller.Reconciler{Client: mgr.GetClient(), Scheme: scheme, Recorder: mgr.GetEventRecorder("modelx-controller"),
		Resolver: s.resolver, Holds: resolver,
		InitializerImage: "modelx/modelx:test", RetryAfter: 500 * time.Millisecond, Drain: time.Second, ClusterName: clusterName,
		Routing:   render.Routing{Istio: controller.IstioInstalled(mgr.GetRESTMapper()), SeldonIstio: opts.seldonIstio, GatewaySelector: render.DefaultGatewaySelector()},
		Platforms: controller.DetectPlatforms(mgr.GetRESTMapper())}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller manager: %v", err)
		}
	})
	if s.k8s, err = client.New(s.kube.Config, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	s.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Seldon operator log (tail):\n%s", tailLines(s.seldon.Log(), 40))
			if s.kserve != nil {
				t.Logf("KServe manager log (tail):\n%s", tailLines(s.kserve.Log(), 60))
			}
		}
	})
	return s
}

func newRegistry(t *testing.T, st registry.Backend, cfg auth.Config, policy *auth.Policy) *registry.Registry {
	t.Helper()
	// Garbage collection takes what nothing references at once.
	opts := registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GCGracePeriod: time.Nanosecond}
	if cfg.Enabled() {
		authn, err := auth.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		opts.Authenticator, opts.Policy = authn, policy
	}
	reg, err := registry.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// push pushes a model of one file, model.onnx holding content, to
// nlp/bert:tag as the ci robot and returns its manifest digest.
func (s *suite) push(tag, content string) string {
	s.t.Helper()
	return push(s.t, s.registry, tag, content, ciToken)
}

// modelFiles are the files of the model push pushes: model.onnx holding
// content, and its modelx.yaml.
func modelFiles(content string) map[string]string {
	return map[string]string{"modelx.yaml": "description: bert\nmodelFiles: [model.onnx]\n", "model.onnx": content}
}

// push pushes a model of one file, model.onnx holding content, to
// nlp/bert:tag and returns its manifest digest.
func push(t *testing.T, registryURL, tag, content string, token ...string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range modelFiles(content) {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	ref, err := modelx.ParseReference(registryURL+"/nlp/bert:"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	var opts modelx.Options
	if len(token) > 0 {
		opts.Token = func(string) (string, error) { return token[0], nil }
	}
	res, err := modelx.New(opts).Push(context.Background(), ref, dir)
	if err != nil {
		t.Fatal(err)
	}
	return string(res.Digest)
}

// tag points nlp/bert:tag at the version of this name, as `modelx push`
// of the same files would.
func (s *suite) tag(tag, version string) string {
	s.t.Helper()
	ctx := context.Background()
	d := s.digests[version]
	_, data, _, err := s.ci.GetManifest(ctx, "nlp", "bert", d)
	if err != nil {
		s.t.Fatal(err)
	}
	if got, err := s.ci.PutManifest(ctx, "nlp", "bert", tag, data); err != nil || string(got) != d {
		s.t.Fatalf("tag %s: %s %v", tag, got, err)
	}
	return d
}

func (s *suite) create(obj client.Object) {
	s.t.Helper()
	if err := s.k8s.Create(context.Background(), obj); err != nil {
		s.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// eventually polls cond until it holds, or fails after a generous bound.
func (s *suite) eventually(what string, cond func() error) {
	s.t.Helper()
	var err error
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
	}
	s.t.Fatalf("%s: %v", what, err)
}

func (s *suite) get(gvk schema.GroupVersionKind, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u, s.k8s.Get(context.Background(), client.ObjectKey{Namespace: "ml", Name: name}, u)
}

func (s *suite) md(name string) *v1alpha1.ModelDeployment {
	s.t.Helper()
	md := &v1alpha1.ModelDeployment{}
	if err := s.k8s.Get(context.Background(), client.ObjectKey{Namespace: "ml", Name: name}, md); err != nil {
		s.t.Fatal(err)
	}
	return md
}

func predictors(sd *unstructured.Unstructured) []map[string]any {
	ps, _, _ := unstructured.NestedSlice(sd.Object, "spec", "predictors")
	var out []map[string]any
	for _, p := range ps {
		out = append(out, p.(map[string]any))
	}
	return out
}

func condition(md *v1alpha1.ModelDeployment, t string) *metav1.Condition {
	return meta.FindStatusCondition(md.Status.Conditions, t)
}

// readyWatch records every time Ready is not True on a ModelDeployment,
// from when it is started until stop.
func (s *suite) readyWatch(name string) (stop func() []string) {
	done, out := make(chan struct{}), make(chan []string)
	go func() {
		var lapses []string
		for {
			select {
			case <-done:
				out <- lapses
				return
			case <-time.After(50 * time.Millisecond):
			}
			md := &v1alpha1.ModelDeployment{}
			if err := s.k8s.Get(context.Background(), client.ObjectKey{Namespace: "ml", Name: name}, md); err != nil {
				continue
			}
			if c := condition(md, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				lapses = append(lapses, fmt.Sprintf("%+v", c))
			}
		}
	}()
	return func() []string { close(done); return <-out }
}

// traffic is each predictor's share of traffic, by name.
func traffic(sd *unstructured.Unstructured) map[string]int64 {
	out := map[string]int64{}
	for _, p := range predictors(sd) {
		t, _ := p["traffic"].(int64)
		out[p["name"].(string)] = t
	}
	return out
}

// wantTraffic waits until the SeldonDeployment name serves exactly these
// digests with these shares.
func (s *suite) wantTraffic(name string, want map[string]int64) {
	s.t.Helper()
	byPredictor := map[string]int64{}
	for d, t := range want {
		byPredictor[render.PredictorName(d)] = t
	}
	s.eventually(fmt.Sprintf("traffic %v", byPredictor), func() error {
		sd, err := s.get(render.SeldonDeploymentGVK, name)
		if err != nil {
			return err
		}
		if got := traffic(sd); fmt.Sprint(got) != fmt.Sprint(byPredictor) {
			return fmt.Errorf("traffic %v", got)
		}
		return nil
	})
}

// event waits for an event of this reason on name whose note mentions text.
func (s *suite) event(name, reason, text string) {
	s.t.Helper()
	s.eventually("event "+reason, func() error {
		var list eventsv1.EventList
		if err := s.k8s.List(context.Background(), &list, client.InNamespace("ml")); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason && strings.Contains(e.Note, text) {
				return nil
			}
		}
		return fmt.Errorf("%d events, none %s mentioning %q", len(list.Items), reason, text)
	})
}

// podsOf lists the pods that serve one version of a ModelDeployment (on
// either platform).
func (s *suite) podsOf(name, digest string) []corev1.Pod {
	s.t.Helper()
	var pods corev1.PodList
	if err := s.k8s.List(context.Background(), &pods, client.InNamespace("ml"),
		client.MatchingLabels{render.LabelName: name, render.LabelDigest: strings.TrimPrefix(digest, "sha256:")[:12]}); err != nil {
		s.t.Fatal(err)
	}
	return pods.Items
}

// printerRow reads a ModelDeployment as a server-side table, the way
// kubectl get prints it, and returns its cells by column name.
func (s *suite) printerRow(name string) map[string]string {
	s.t.Helper()
	hc, err := rest.HTTPClientFor(s.kube.Config)
	if err != nil {
		s.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(s.kube.Config.Host, "/")+"/apis/deploy.modelx.io/v1alpha1/namespaces/ml/modeldeployments/"+name, nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var table metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil || len(table.Rows) != 1 {
		s.t.Fatalf("table: %v (%d rows): HTTP %d", err, len(table.Rows), resp.StatusCode)
	}
	out := map[string]string{}
	for i, col := range table.ColumnDefinitions {
		out[col.Name] = fmt.Sprint(table.Rows[0].Cells[i])
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
