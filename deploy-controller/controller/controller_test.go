package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	modelx "modelx.io/modelx/client"
	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/controller"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/internal/testenv/kubeenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/storage/fs"
)

type suite struct {
	t        *testing.T
	k8s      client.Client
	kube     *kubeenv.Kube
	registry string
	push     func(tag, content string) string
}

func startSuite(t *testing.T) *suite {
	t.Helper()
	kube := kubeenv.StartKube(t, filepath.Join("..", "config", "crd"), kubeenv.SeldonCRD(t), kubeenv.IstioCRDs(t))
	kube.StartGarbageCollector(t) // deleting a ModelDeployment deletes what it owns

	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	mx := modelx.New(modelx.Options{})
	push := func(tag, content string) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte("description: bert\nmodelFiles: [model.onnx]\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(content), 0o644)
		ref, _ := modelx.ParseReference(srv.URL+"/nlp/bert:"+tag, nil)
		res, err := mx.Push(context.Background(), ref, dir)
		if err != nil {
			t.Fatal(err)
		}
		return string(res.Digest)
	}

	scheme := runtime.NewScheme()
	clientgoscheme.AddToScheme(scheme)
	v1alpha1.AddToScheme(scheme)
	mgr, err := ctrl.NewManager(kube.Config, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}}) // -count=N builds the controller again
	if err != nil {
		t.Fatal(err)
	}
	r := &controller.Reconciler{Client: mgr.GetClient(), Scheme: scheme, Recorder: mgr.GetEventRecorder("modelx-controller"),
		Resolver: &controller.RegistryResolver{}, InitializerImage: "modelx:test", RetryAfter: 500 * time.Millisecond, Drain: time.Second,
		Routing: render.Routing{Istio: true, GatewaySelector: render.DefaultGatewaySelector()}}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	k8s, err := client.New(kube.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{t: t, k8s: k8s, kube: kube, registry: srv.URL, push: push}
	s.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}})
	return s
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
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
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

func modelURI(p map[string]any) string {
	uri, _, _ := unstructured.NestedString(p, "graph", "modelUri")
	return uri
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
	body, _ := io.ReadAll(resp.Body)
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil || len(table.Rows) != 1 {
		s.t.Fatalf("table: %v (%d rows): HTTP %d %.300s", err, len(table.Rows), resp.StatusCode, body)
	}
	out := map[string]string{}
	for i, col := range table.ColumnDefinitions {
		out[col.Name] = fmt.Sprint(table.Rows[0].Cells[i])
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
		if got := traffic(sd); !maps.Equal(got, byPredictor) {
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

func TestController(t *testing.T) {
	s := startSuite(t)
	c := cluster{s: s}
	v1 := s.push("prod", "weights v1")

	t.Run("ReadyOnlyOncePodsAreAvailable", func(t *testing.T) {
		s.t = t
		md := &v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "bert", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model: v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "prod"},
				FollowTag: &v1alpha1.FollowTag{Enabled: true, Interval: metav1.Duration{Duration: 300 * time.Millisecond},
					CanaryPercent: 25, CanaryDuration: metav1.Duration{Duration: 2 * time.Second}},
				Server:    v1alpha1.Server{Type: v1alpha1.ServerTriton},
				Resources: v1alpha1.Resources{GPU: 1},
				Replicas:  ptr.To[int32](2),
				Expose:    &v1alpha1.Expose{Hosts: []string{"bert.models.example.com"}, CreateGateway: true},
			},
		}
		s.create(md)
		s.wantTraffic("bert", map[string]int64{v1: 100})
		sd, _ := s.get(render.SeldonDeploymentGVK, "bert")
		if !metav1.IsControlledBy(sd, md) {
			t.Fatalf("owner references %v", sd.GetOwnerReferences())
		}
		p := predictors(sd)[0]
		if !strings.Contains(modelURI(p), "@"+v1) {
			t.Fatalf("model URI %s", modelURI(p))
		}
		containers, _, _ := unstructured.NestedSlice(p, "componentSpecs")
		server := containers[0].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		if gpu, _, _ := unstructured.NestedString(server, "resources", "limits", "nvidia.com/gpu"); gpu != "1" {
			t.Fatalf("GPU limit %q in %v", gpu, server)
		}
		if impl, _, _ := unstructured.NestedString(p, "graph", "implementation"); impl != render.ImplementationTriton {
			t.Fatalf("implementation %q", impl)
		}
		s.eventually("VirtualService and Gateway owned by the ModelDeployment", func() error {
			for _, gvk := range []schema.GroupVersionKind{render.VirtualServiceGVK, render.GatewayGVK} {
				obj, err := s.get(gvk, "bert-modelx")
				if err != nil {
					return fmt.Errorf("%s: %w", gvk.Kind, err)
				}
				refs := obj.GetOwnerReferences()
				if len(refs) != 1 || refs[0].Kind != "ModelDeployment" || !ptr.Deref(refs[0].Controller, false) || !ptr.Deref(refs[0].BlockOwnerDeletion, false) {
					return fmt.Errorf("%s owner references %+v: deleting the ModelDeployment must remove it", gvk.Kind, refs)
				}
			}
			return nil
		})

		// Seldon has made the Deployment, its pods are not ready: the
		// version is chosen, nothing is served yet.
		c.makeDeployment("bert", v1)
		s.eventually("resolved, pending", func() error {
			md := s.md("bert")
			rd := condition(md, v1alpha1.ConditionReady)
			if md.Status.Digest != v1 || md.Status.ShortDigest != v1[:19] || md.Status.URL != "http://bert.models.example.com/" || md.Status.Phase != v1alpha1.PhasePending ||
				rd == nil || rd.Status != metav1.ConditionFalse || rd.Reason != controller.ReasonRollingOut || !strings.Contains(rd.Message, "Deployment bert-") {
				return fmt.Errorf("status %+v", md.Status)
			}
			return nil
		})
		c.podsReady("bert", v1)
		s.eventually("Ready once the pods are", func() error {
			md := s.md("bert")
			if c := condition(md, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || md.Status.Phase != v1alpha1.PhaseServing {
				return fmt.Errorf("ready %+v, phase %s", c, md.Status.Phase)
			}
			if c := condition(md, v1alpha1.ConditionExposed); c == nil || c.Status != metav1.ConditionTrue || c.Reason != render.ReasonRouted {
				return fmt.Errorf("exposed %+v", c)
			}
			return nil
		})
		cells := s.printerRow("bert")
		want := map[string]string{"Model": "nlp/bert", "Tag": "prod", "Digest": v1[:19], "Server": "triton", "Ready": "True", "Phase": "Serving", "URL": "http://bert.models.example.com/"}
		for col, v := range want {
			if cells[col] != v {
				t.Fatalf("printer column %s = %q, want %q (row %v)", col, cells[col], v, cells)
			}
		}
	})

	var v2 string
	t.Run("CanaryThenPromotion", func(t *testing.T) {
		s.t = t
		lapses := s.readyWatch("bert")
		v2 = s.push("prod", "weights v2")
		// The new version starts beside the old one, without traffic.
		s.wantTraffic("bert", map[string]int64{v1: 100, v2: 0})
		s.event("bert", controller.ReasonRolloutStarted, v2[:19])
		if md := s.md("bert"); md.Status.Digest != v1 || md.Status.CanaryDigest != v2 || md.Status.Rollout == nil || md.Status.Rollout.Step != v1alpha1.StepStarting || md.Status.Phase != v1alpha1.PhaseRollingOut {
			t.Fatalf("status %+v", md.Status)
		}
		c.makeDeployment("bert", v2)
		time.Sleep(time.Second) // not available: still no traffic
		s.wantTraffic("bert", map[string]int64{v1: 100, v2: 0})

		c.podsReady("bert", v2)
		s.wantTraffic("bert", map[string]int64{v1: 75, v2: 25})
		s.event("bert", controller.ReasonCanaryStarted, v2[:19])
		s.eventually("the VirtualService splits traffic as the predictors do", func() error {
			vs, err := s.get(render.VirtualServiceGVK, "bert-modelx")
			if err != nil {
				return err
			}
			routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
			weights := map[string]int64{}
			for _, d := range routes[0].(map[string]any)["route"].([]any) {
				host, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "host")
				w, _ := d.(map[string]any)["weight"].(int64)
				weights[host] = w
			}
			if weights[render.PredictorServiceHost(s.md("bert"), render.PredictorName(v2))] != 25 || weights[render.PredictorServiceHost(s.md("bert"), render.PredictorName(v1))] != 75 {
				return fmt.Errorf("weights %v", weights)
			}
			return nil
		})
		// After canaryDuration it takes all traffic, then the old one goes.
		s.event("bert", controller.ReasonPromoting, v2[:19])
		s.wantTraffic("bert", map[string]int64{v2: 100})
		s.event("bert", controller.ReasonPromoted, v2[:19])
		s.eventually("status", func() error {
			md := s.md("bert")
			if md.Status.Digest != v2 || md.Status.CanaryDigest != "" || md.Status.Rollout != nil || md.Status.Phase != v1alpha1.PhaseServing {
				return fmt.Errorf("status %+v", md.Status)
			}
			return nil
		})
		if l := lapses(); len(l) > 0 {
			t.Fatalf("Ready lapsed during the rollout: %v", l)
		}
	})

	t.Run("CrashingVersionIsAbandoned", func(t *testing.T) {
		s.t = t
		lapses := s.readyWatch("bert")
		v3 := s.push("prod", "weights v3")
		s.wantTraffic("bert", map[string]int64{v2: 100, v3: 0})
		c.crashLoop("bert", v3)
		s.event("bert", controller.ReasonRolloutAborted, "CrashLoopBackOff")
		s.wantTraffic("bert", map[string]int64{v2: 100})
		md := s.md("bert")
		pr := condition(md, v1alpha1.ConditionProgressing)
		if md.Status.Digest != v2 || md.Status.LastAborted == nil || md.Status.LastAborted.Digest != v3 || md.Status.LastAborted.Reason != controller.ReasonVersionFailed ||
			pr == nil || pr.Reason != controller.ReasonRolloutAborted || !strings.Contains(pr.Message, "CrashLoopBackOff") {
			t.Fatalf("status %+v", md.Status)
		}
		// The tag still names v3: it is not tried again under this spec.
		time.Sleep(time.Second)
		s.wantTraffic("bert", map[string]int64{v2: 100})
		if l := lapses(); len(l) > 0 {
			t.Fatalf("Ready lapsed: %v", l)
		}
	})

	t.Run("SlowVersionIsAbandonedAtTheDeadline", func(t *testing.T) {
		s.t = t
		w1 := s.push("stable", "weights w1")
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "slow", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model:            v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "stable"},
				FollowTag:        &v1alpha1.FollowTag{Enabled: true, Interval: metav1.Duration{Duration: 300 * time.Millisecond}},
				Server:           v1alpha1.Server{Type: v1alpha1.ServerMLServer},
				ProgressDeadline: metav1.Duration{Duration: 3 * time.Second},
			},
		})
		s.wantTraffic("slow", map[string]int64{w1: 100})
		c.podsReady("slow", w1)
		w2 := s.push("stable", "weights w2")
		s.wantTraffic("slow", map[string]int64{w1: 100, w2: 0})
		c.makeDeployment("slow", w2) // its pods never become ready
		s.event("slow", controller.ReasonRolloutAborted, "not available after 3s")
		s.wantTraffic("slow", map[string]int64{w1: 100})
		if md := s.md("slow"); md.Status.LastAborted == nil || md.Status.LastAborted.Reason != controller.ReasonProgressDeadlineExceeded || md.Status.Phase != v1alpha1.PhaseServing {
			t.Fatalf("status %+v", md.Status)
		}
	})

	t.Run("BadReference", func(t *testing.T) {
		s.t = t
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "missing", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model:  v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "no-such-tag"},
				Server: v1alpha1.Server{Type: v1alpha1.ServerMLServer},
			},
		})
		s.eventually("a condition that says what is wrong", func() error {
			md := s.md("missing")
			c := condition(md, v1alpha1.ConditionResolved)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != controller.ReasonModelNotFound || !strings.Contains(c.Message, "no-such-tag") || md.Status.Phase != v1alpha1.PhasePending {
				return fmt.Errorf("status %+v", md.Status)
			}
			return nil
		})
		if _, err := s.get(render.SeldonDeploymentGVK, "missing"); err == nil {
			t.Fatal("a SeldonDeployment was created for a reference that does not resolve")
		}
		// Breaking the reference of a running deployment changes nothing it serves.
		md := s.md("bert")
		serving := md.Status.Digest
		md.Spec.Model.Tag = "gone"
		if err := s.k8s.Update(context.Background(), md); err != nil {
			t.Fatal(err)
		}
		s.eventually("condition on the running deployment", func() error {
			if c := condition(s.md("bert"), v1alpha1.ConditionResolved); c == nil || c.Status != metav1.ConditionFalse {
				return fmt.Errorf("resolved %+v", c)
			}
			return nil
		})
		s.wantTraffic("bert", map[string]int64{serving: 100})
	})

	t.Run("DeleteRemovesEverything", func(t *testing.T) {
		s.t = t
		md := s.md("bert")
		if err := s.k8s.Delete(context.Background(), md, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
			t.Fatal(err)
		}
		s.eventually("owned objects gone", func() error {
			for _, gvk := range []schema.GroupVersionKind{render.SeldonDeploymentGVK, render.VirtualServiceGVK, render.GatewayGVK} {
				if _, err := s.get(gvk, "bert"); err == nil {
					return fmt.Errorf("%s bert still exists", gvk.Kind)
				} else if !apierrors.IsNotFound(err) {
					return err
				}
				if _, err := s.get(gvk, "bert-modelx"); err == nil {
					return fmt.Errorf("%s bert-modelx still exists", gvk.Kind)
				} else if !apierrors.IsNotFound(err) {
					return err
				}
			}
			return nil
		})
	})

	t.Run("Metrics", func(t *testing.T) {
		// The runs above resolved, rolled out with a canary, abandoned two
		// versions and met a missing model: the controller's series say
		// so, next to controller-runtime's own.
		families, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		value := func(name, label, want string) float64 {
			for _, f := range families {
				if f.GetName() != name {
					continue
				}
				for _, m := range f.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == label && l.GetValue() == want {
							return m.GetCounter().GetValue()
						}
					}
				}
			}
			return 0
		}
		for _, c := range []struct{ name, label, value string }{
			{"modelx_controller_resolves_total", "result", controller.ReasonResolved},
			{"modelx_controller_resolves_total", "result", controller.ReasonModelNotFound},
			{"modelx_controller_registry_errors_total", "reason", controller.ReasonModelNotFound},
			{"modelx_controller_rollout_steps_total", "step", "Initial"},
			{"modelx_controller_rollout_steps_total", "step", controller.ReasonRolloutStarted},
			{"modelx_controller_rollout_steps_total", "step", controller.ReasonCanaryStarted},
			{"modelx_controller_rollout_steps_total", "step", controller.ReasonPromoted},
			{"modelx_controller_rollout_steps_total", "step", controller.ReasonRolloutAborted},
			{"controller_runtime_reconcile_total", "result", "success"},
		} {
			if value(c.name, c.label, c.value) < 1 {
				t.Errorf("%s{%s=%q} is not counted", c.name, c.label, c.value)
			}
		}
	})

	t.Run("SchemaValidation", func(t *testing.T) {
		s.t = t
		bad := []v1alpha1.ModelDeploymentSpec{
			{Model: v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert"}, Server: v1alpha1.Server{Type: "mlserver"}},                                                            // neither tag nor digest
			{Model: v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "a", Digest: v1}, Server: v1alpha1.Server{Type: "mlserver"}},                                      // both
			{Model: v1alpha1.ModelSource{Registry: s.registry, Name: "NLP/bert", Tag: "a"}, Server: v1alpha1.Server{Type: "mlserver"}},                                                  // bad name
			{Model: v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "a"}, Server: v1alpha1.Server{Type: "tfserving"}},                                                 // bad server
			{Model: v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Digest: v1}, Server: v1alpha1.Server{Type: "mlserver"}, FollowTag: &v1alpha1.FollowTag{Enabled: true}}, // follow without tag
		}
		for i, spec := range bad {
			err := s.k8s.Create(context.Background(), &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bad-%d", i), Namespace: "ml"}, Spec: spec})
			if err == nil {
				t.Errorf("invalid spec %d was accepted", i)
			}
		}
	})
}

// TestManifestsAreAccepted sends every shipped manifest (RBAC, the
// controller Deployment, the examples' ModelDeployments) to a real
// apiserver with the CRDs installed, as a server-side dry run.
func TestManifestsAreAccepted(t *testing.T) {
	kube := kubeenv.StartKube(t, filepath.Join("..", "config", "crd"))
	k8s, err := client.New(kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("..", "config", "rbac", "*.yaml"))
	manager, _ := filepath.Glob(filepath.Join("..", "config", "manager", "*.yaml"))
	examples, _ := filepath.Glob(filepath.Join("..", "..", "examples", "*", "deploy.yaml"))
	files = append(append(files, manager...), examples...)
	if len(manager) == 0 {
		t.Fatal("no controller manifests found")
	}
	ctx := context.Background()
	for _, ns := range []string{"modelx-system", "ml", "models", "default"} {
		_ = k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	count := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yamlutil.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if err == io.EOF {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if u.GetKind() == "Namespace" {
				continue // created above
			}
			if err := k8s.Create(ctx, &u, client.DryRunAll); err != nil {
				t.Fatalf("%s: %s %s rejected: %v", f, u.GetKind(), u.GetName(), err)
			}
			count++
		}
	}
	t.Logf("%d objects from %d files accepted", count, len(files))
}
