package controller_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/controller"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/internal/testenv/kubeenv"
)

// TestController runs ModelDeployments through the real Seldon Core v1
// operator on a cluster whose pods become ready, slow, never ready or
// crash-loop by the version they serve, with the controller's own Istio
// routing.
func TestController(t *testing.T) {
	s := startSuite(t, suiteOptions{versions: map[string]string{
		"v1": kubeenv.BehaviourSlow, // ready 10s after it runs
		"v2": "",
		"v3": kubeenv.BehaviourCrashLoop,
		"w1": "",
		"w2": kubeenv.BehaviourNeverReady,
		"k1": "",
	}})
	v1 := s.tag("prod", "v1")

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
				Expose:    &v1alpha1.Expose{Hosts: []string{"bert.models.example.com"}, CreateGateway: true},
			},
		}
		s.create(md)
		s.wantTraffic("bert", map[string]int64{v1: 100})

		// What Seldon made of it: a Deployment whose pods pull the pinned
		// digest in Seldon's storage initializer and run on the GPU node.
		var dep appsv1.Deployment
		s.eventually("Seldon's Deployment for the version", func() error {
			var list appsv1.DeploymentList
			if err := s.k8s.List(context.Background(), &list, client.InNamespace("ml"), client.MatchingLabels{render.LabelName: "bert"}); err != nil {
				return err
			}
			if len(list.Items) != 1 {
				return fmt.Errorf("%d Deployments", len(list.Items))
			}
			dep = list.Items[0]
			return nil
		})
		pod := dep.Spec.Template.Spec
		if len(pod.InitContainers) != 1 {
			t.Fatalf("init containers %+v", pod.InitContainers)
		}
		init := pod.InitContainers[0]
		if init.Image != "modelx/modelx:test" || len(init.Args) != 2 || !strings.HasPrefix(init.Args[0], "modelx://") || !strings.Contains(init.Args[0], "/nlp/bert@"+v1+"?") || init.Args[1] != render.ModelMountPath {
			t.Fatalf("Seldon's initializer: image %s args %q", init.Image, init.Args)
		}
		server := pod.Containers[slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == render.GraphNodeName })]
		if gpu := server.Resources.Limits[kubeenv.GPUResource]; gpu.String() != "1" {
			t.Fatalf("server GPU limit %s", gpu.String())
		}
		if dep.Annotations[render.AnnotationDigest] != v1 || dep.Annotations[render.AnnotationSpecHash] == "" {
			t.Fatalf("Seldon's Deployment annotations %v", dep.Annotations)
		}

		// The pods run but are not ready yet: nothing is served.
		s.eventually("pods running, not ready", func() error {
			pods := s.podsOf("bert", v1)
			if len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
				return fmt.Errorf("%d pods", len(pods))
			}
			if pods[0].Spec.NodeName != "kwok-gpu-0" {
				t.Fatalf("GPU pod on node %q", pods[0].Spec.NodeName)
			}
			return nil
		})
		if md := s.md("bert"); md.Status.Phase != v1alpha1.PhasePending || condition(md, v1alpha1.ConditionReady).Status != metav1.ConditionFalse {
			t.Fatalf("ready before the pods are: %+v", md.Status)
		}
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
		for _, p := range s.podsOf("bert", v1) {
			if !podReady(&p) {
				t.Fatalf("Ready while pod %s is not", p.Name)
			}
		}
		md = s.md("bert")
		if md.Status.Digest != v1 || md.Status.URL != "http://bert.models.example.com/" {
			t.Fatalf("status %+v", md.Status)
		}
		// The VirtualService routes to the Service Seldon made for the predictor.
		svc := render.PredictorServiceName(md, render.PredictorName(v1))
		if err := s.k8s.Get(context.Background(), client.ObjectKey{Namespace: "ml", Name: svc}, &corev1.Service{}); err != nil {
			t.Fatalf("Seldon's Service %s: %v", svc, err)
		}
		if w := s.routeWeights("bert-modelx"); fmt.Sprint(w) != fmt.Sprint(map[string]int64{render.PredictorServiceHost(md, render.PredictorName(v1)): 0}) &&
			fmt.Sprint(w) != fmt.Sprint(map[string]int64{render.PredictorServiceHost(md, render.PredictorName(v1)): 100}) {
			t.Fatalf("routes %v", w)
		}
		for _, gvk := range []schema.GroupVersionKind{render.VirtualServiceGVK, render.GatewayGVK} {
			obj, err := s.get(gvk, "bert-modelx")
			if err != nil {
				t.Fatalf("%s: %v", gvk.Kind, err)
			}
			if !metav1.IsControlledBy(obj, md) {
				t.Fatalf("%s owner references %+v", gvk.Kind, obj.GetOwnerReferences())
			}
		}
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
		serving := s.deploymentOf("bert", v1)
		v2 = s.tag("prod", "v2")
		// The new version starts beside the old one, without traffic,
		// and takes its share only once its own pods are ready.
		s.wantTraffic("bert", map[string]int64{v1: 100, v2: 0})
		s.event("bert", controller.ReasonRolloutStarted, v2[:19])
		s.wantTraffic("bert", map[string]int64{v1: 75, v2: 25})
		for _, p := range s.podsOf("bert", v2) {
			if !podReady(&p) {
				t.Fatalf("canary has traffic while its pod %s is not ready", p.Name)
			}
		}
		// The serving version's pods run on, untouched by the new predictor
		// beside them (Seldon renumbers ports it is not given).
		if d := s.deploymentOf("bert", v1); d.Generation != serving.Generation {
			t.Fatalf("the serving version's Deployment changed when the new version was added (generation %d, then %d)", serving.Generation, d.Generation)
		}
		s.eventually("status", func() error {
			md := s.md("bert")
			if md.Status.Digest != v1 || md.Status.CanaryDigest != v2 || md.Status.Rollout == nil || md.Status.Rollout.Step != v1alpha1.StepCanary || md.Status.Phase != v1alpha1.PhaseRollingOut {
				return fmt.Errorf("status %+v", md.Status)
			}
			return nil
		})
		md := s.md("bert")
		s.eventually("both versions held while both run", func() error {
			h := s.md("bert").Status.Hold
			if h == nil || !slices.Contains(h.Digests, v1) || !slices.Contains(h.Digests, v2) {
				return fmt.Errorf("status.hold %+v", h)
			}
			return nil
		})
		s.eventually("the VirtualService splits traffic as the predictors do", func() error {
			w := s.routeWeights("bert-modelx")
			if w[render.PredictorServiceHost(md, render.PredictorName(v1))] != 75 || w[render.PredictorServiceHost(md, render.PredictorName(v2))] != 25 {
				return fmt.Errorf("weights %v", w)
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
		s.eventually("the old version's pods are gone", func() error {
			if pods := s.podsOf("bert", v1); len(pods) > 0 {
				return fmt.Errorf("%d pods of %s", len(pods), v1[:19])
			}
			return nil
		})
		if l := lapses(); len(l) > 0 {
			t.Fatalf("Ready lapsed during the rollout: %v", l[0])
		}
		// Settled: nothing is written again and again.
		s.steady("prod", objectRef{render.SeldonDeploymentGVK, "bert"}, objectRef{render.VirtualServiceGVK, "bert-modelx"}, objectRef{render.GatewayGVK, "bert-modelx"})
	})

	t.Run("CrashingVersionIsAbandoned", func(t *testing.T) {
		s.t = t
		lapses := s.readyWatch("bert")
		v3 := s.tag("prod", "v3")
		s.wantTraffic("bert", map[string]int64{v2: 100, v3: 0})
		s.event("bert", controller.ReasonRolloutAborted, v3[:19])
		s.wantTraffic("bert", map[string]int64{v2: 100})
		s.eventually("status", func() error {
			md := s.md("bert")
			pr := condition(md, v1alpha1.ConditionProgressing)
			if md.Status.Digest != v2 || md.Status.LastAborted == nil || md.Status.LastAborted.Digest != v3 || md.Status.LastAborted.Reason != controller.ReasonVersionFailed ||
				pr == nil || pr.Reason != controller.ReasonRolloutAborted || !strings.Contains(pr.Message, "CrashLoopBackOff") && !strings.Contains(pr.Message, "restarted") {
				return fmt.Errorf("status %+v", md.Status)
			}
			return nil
		})
		// The tag still names v3: it is not tried again under this spec,
		// however often the controller looks.
		s.looksAgain("prod", 8)
		s.wantTraffic("bert", map[string]int64{v2: 100})
		if l := lapses(); len(l) > 0 {
			t.Fatalf("Ready lapsed: %v", l)
		}
	})

	t.Run("SlowVersionIsAbandonedAtTheDeadline", func(t *testing.T) {
		s.t = t
		w1 := s.tag("stable", "w1")
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "slow", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model:            v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "stable"},
				FollowTag:        &v1alpha1.FollowTag{Enabled: true, Interval: metav1.Duration{Duration: 300 * time.Millisecond}},
				Server:           v1alpha1.Server{Type: v1alpha1.ServerMLServer},
				ProgressDeadline: metav1.Duration{Duration: 5 * time.Second},
			},
		})
		s.eventually("serving w1", func() error {
			if md := s.md("slow"); md.Status.Phase != v1alpha1.PhaseServing {
				return fmt.Errorf("phase %q", md.Status.Phase)
			}
			return nil
		})
		// MLServer runs as a custom server: Seldon still gives it its
		// storage initializer, and the server finds the model where it lands.
		dep := s.deploymentOf("slow", w1)
		pod := dep.Spec.Template.Spec
		if len(pod.InitContainers) != 1 || len(pod.InitContainers[0].Args) != 2 || !strings.Contains(pod.InitContainers[0].Args[0], "@"+w1+"?") || pod.InitContainers[0].Args[1] != render.ModelMountPath {
			t.Fatalf("Seldon's initializer for the custom MLServer: %+v", pod.InitContainers)
		}
		server := pod.Containers[slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == render.GraphNodeName })]
		env := map[string]string{}
		for _, e := range server.Env {
			env[e.Name] = e.Value
		}
		if server.Image != render.DefaultMLServerImage || env[render.EnvMLServerModelsDir] != render.ModelMountPath {
			t.Fatalf("MLServer container: image %s env %v", server.Image, env)
		}
		w2 := s.tag("stable", "w2")
		s.wantTraffic("slow", map[string]int64{w1: 100, w2: 0})
		s.event("slow", controller.ReasonRolloutAborted, "not available after 5s")
		s.wantTraffic("slow", map[string]int64{w1: 100})
		s.eventually("status", func() error {
			if md := s.md("slow"); md.Status.LastAborted == nil || md.Status.LastAborted.Reason != controller.ReasonProgressDeadlineExceeded || md.Status.Phase != v1alpha1.PhaseServing {
				return fmt.Errorf("status %+v", md.Status)
			}
			return nil
		})
	})

	t.Run("InitializerPullsWithThePodsOwnToken", func(t *testing.T) {
		s.t = t
		k1 := s.tag("keyless", "k1")
		s.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller", Namespace: "ml"}})
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "keyless", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model:       v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "keyless"},
				Server:      v1alpha1.Server{Type: v1alpha1.ServerMLServer},
				Credentials: &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{ServiceAccountName: "puller"}},
			},
		})
		var pod corev1.Pod
		s.eventually("a pod the ReplicaSet controller made", func() error {
			pods := s.podsOf("keyless", k1)
			if len(pods) == 0 {
				return fmt.Errorf("no pods")
			}
			pod = pods[0]
			if ref := metav1.GetControllerOf(&pod); ref == nil || ref.Kind != "ReplicaSet" {
				return fmt.Errorf("pod %s controlled by %v", pod.Name, ref)
			}
			return nil
		})
		i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == render.InitializerContainerName })
		if i < 0 || len(pod.Spec.InitContainers) != 1 {
			t.Fatalf("init containers %+v: want only ours (Seldon adds none beside it)", pod.Spec.InitContainers)
		}
		init := pod.Spec.InitContainers[i]
		if sc := init.SecurityContext; sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
			t.Fatalf("initializer security context %+v", init.SecurityContext)
		}
		if init.Resources.Requests.Cpu().IsZero() || init.Resources.Limits.Memory().IsZero() {
			t.Fatalf("initializer resources %+v", init.Resources)
		}
		mnt := s.runInitContainer(&pod, init)
		var files []string
		filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(mnt, p)
				files = append(files, rel)
			}
			return nil
		})
		if data, err := os.ReadFile(filepath.Join(mnt, "model.onnx")); err != nil || string(data) != "weights k1" {
			t.Fatalf("model.onnx: %q %v (files %v)", data, err, files)
		}
		if fmt.Sprint(files) != "[model.onnx]" && fmt.Sprint(files) != "[model.onnx modelx.yaml]" {
			t.Fatalf("the mount path holds %v: only the model belongs there", files)
		}
	})

	t.Run("HoldsKeepServedVersionsFromGC", func(t *testing.T) {
		s.t = t
		ctx := context.Background()
		h1 := s.push("held", "weights h1")
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model:  v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "held"},
				Server: v1alpha1.Server{Type: v1alpha1.ServerMLServer},
			},
		})
		const holder = "modelx-controller:" + clusterName + ":ml:held"
		s.eventually("the served version held in the registry", func() error {
			md := s.md("held")
			if h := md.Status.Hold; h == nil || h.Holder != holder || fmt.Sprint(h.Digests) != "["+h1+"]" || h.Expires.Before(&h.Renewed) {
				return fmt.Errorf("status.hold %+v", md.Status.Hold)
			}
			if !slices.Contains(md.Finalizers, controller.HoldFinalizer) {
				return fmt.Errorf("finalizers %v", md.Finalizers)
			}
			holds, err := s.admin.Holds(ctx, "nlp", "bert")
			if err != nil {
				return err
			}
			for _, h := range holds {
				if h.Holder == holder && fmt.Sprint(h.Digests) == "["+h1+"]" {
					return nil
				}
			}
			return fmt.Errorf("registry holds %+v", holds)
		})
		// The tag moves on; this deployment does not follow it, and the
		// version it serves is referenced by nothing but its hold.
		s.push("held", "weights h2")
		if _, err := s.admin.GarbageCollect(ctx, "nlp", "bert"); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := s.admin.GetManifest(ctx, "nlp", "bert", h1); err != nil {
			t.Fatalf("garbage collection took the served version: %v", err)
		}
		// Deleting the deployment releases the hold, and then the version goes.
		if err := s.k8s.Delete(ctx, s.md("held")); err != nil {
			t.Fatal(err)
		}
		s.eventually("the hold released and the ModelDeployment gone", func() error {
			if err := s.k8s.Get(ctx, client.ObjectKey{Namespace: "ml", Name: "held"}, &v1alpha1.ModelDeployment{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %v", err)
			}
			holds, err := s.admin.Holds(ctx, "nlp", "bert")
			if err != nil {
				return err
			}
			for _, h := range holds {
				if h.Holder == holder {
					return fmt.Errorf("hold %+v still there", h)
				}
			}
			return nil
		})
		if _, err := s.admin.GarbageCollect(ctx, "nlp", "bert"); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := s.admin.GetManifest(ctx, "nlp", "bert", h1); err == nil {
			t.Fatal("an unreferenced, released version survived garbage collection")
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
			for _, o := range []objectRef{{render.SeldonDeploymentGVK, "bert"}, {render.VirtualServiceGVK, "bert-modelx"}, {render.GatewayGVK, "bert-modelx"}} {
				if _, err := s.get(o.gvk, o.name); err == nil {
					return fmt.Errorf("%s %s still exists", o.gvk.Kind, o.name)
				} else if !apierrors.IsNotFound(err) {
					return err
				}
			}
			var deps appsv1.DeploymentList
			if err := s.k8s.List(context.Background(), &deps, client.InNamespace("ml"), client.MatchingLabels{render.LabelName: "bert"}); err != nil {
				return err
			}
			if len(deps.Items) > 0 {
				return fmt.Errorf("Seldon's Deployment %s still exists", deps.Items[0].Name)
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
			{Model: v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "a"}, Server: v1alpha1.Server{Type: "mlserver", Protocol: "seldon"}},                              // a protocol we cannot serve
		}
		for i, spec := range bad {
			err := s.k8s.Create(context.Background(), &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bad-%d", i), Namespace: "ml"}, Spec: spec})
			if err == nil {
				t.Errorf("invalid spec %d was accepted", i)
			}
		}
	})
}

// TestControllerWithSeldonIstio hands routing to Seldon's own Istio
// integration: Seldon writes the one VirtualService, from the hosts and
// gateway the controller puts in its annotations, and nobody rewrites it.
func TestControllerWithSeldonIstio(t *testing.T) {
	s := startSuite(t, suiteOptions{seldonIstio: true, versions: map[string]string{"v1": ""}})
	v1 := s.tag("prod", "v1")
	s.create(&v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "routed", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:     v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "prod"},
			FollowTag: &v1alpha1.FollowTag{Enabled: true, Interval: metav1.Duration{Duration: 300 * time.Millisecond}},
			Server:    v1alpha1.Server{Type: v1alpha1.ServerMLServer},
			Expose:    &v1alpha1.Expose{Hosts: []string{"routed.example.com"}, Gateway: "istio-system/public"},
		},
	})
	s.wantTraffic("routed", map[string]int64{v1: 100})
	s.eventually("Seldon's VirtualService on our hosts and gateway", func() error {
		vs, err := s.get(render.VirtualServiceGVK, "routed")
		if err != nil {
			return err
		}
		hosts, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "hosts")
		gateways, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways")
		if fmt.Sprint(hosts) != "[routed.example.com]" || fmt.Sprint(gateways) != "[istio-system/public]" {
			return fmt.Errorf("hosts %v gateways %v", hosts, gateways)
		}
		if !strings.Contains(fmt.Sprint(vs.Object["spec"]), "/seldon/ml/routed/") {
			return fmt.Errorf("no route on Seldon's path: %v", vs.Object["spec"])
		}
		return nil
	})
	s.eventually("Ready and exposed", func() error {
		md := s.md("routed")
		if c := condition(md, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ready %+v", c)
		}
		if c := condition(md, v1alpha1.ConditionExposed); c == nil || c.Reason != render.ReasonRouted || md.Status.URL != "http://routed.example.com/seldon/ml/routed/" {
			return fmt.Errorf("exposed %+v url %s", c, md.Status.URL)
		}
		return nil
	})
	if _, err := s.get(render.VirtualServiceGVK, "routed-modelx"); !apierrors.IsNotFound(err) {
		t.Fatalf("the controller renders a VirtualService of its own beside Seldon's: %v", err)
	}
	s.steady("prod", objectRef{render.SeldonDeploymentGVK, "routed"}, objectRef{render.VirtualServiceGVK, "routed"})

	// A path prefix Seldon cannot route is reported, not half-applied.
	s.create(&v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "prefixed", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:  v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "prod"},
			Server: v1alpha1.Server{Type: v1alpha1.ServerMLServer},
			Expose: &v1alpha1.Expose{Hosts: []string{"prefixed.example.com"}, Gateway: "istio-system/public", PathPrefix: "/bert/"},
		},
	})
	s.eventually("PathPrefixUnsupported", func() error {
		c := condition(s.md("prefixed"), v1alpha1.ConditionExposed)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != render.ReasonPathPrefixUnsupported {
			return fmt.Errorf("exposed %+v", c)
		}
		return nil
	})
}

// TestControllerWithoutIstio starts the controller on a cluster without
// Istio's CRDs: unexposed models are served, exposed ones say why not.
func TestControllerWithoutIstio(t *testing.T) {
	s := startSuite(t, suiteOptions{noIstio: true, versions: map[string]string{"v1": ""}})
	s.tag("prod", "v1")
	// A name long enough that Seldon would hash its Service's name: the
	// controller pins one, and routes to it.
	const long = "a-model-deployment-with-a-name-long-enough-to-be-hashed"
	for _, name := range []string{"plain", "exposed", long} {
		md := &v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model:  v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "prod"},
				Server: v1alpha1.Server{Type: v1alpha1.ServerMLServer},
			},
		}
		if name == "exposed" {
			md.Spec.Expose = &v1alpha1.Expose{Hosts: []string{"exposed.example.com"}, CreateGateway: true}
		}
		s.create(md)
	}
	for name, exposed := range map[string]string{"plain": render.ReasonNotExposed, "exposed": render.ReasonIstioNotInstalled, long: render.ReasonNotExposed} {
		s.eventually(name+" Ready", func() error {
			md := s.md(name)
			if c := condition(md, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("ready %+v", c)
			}
			if c := condition(md, v1alpha1.ConditionExposed); c == nil || c.Reason != exposed {
				return fmt.Errorf("exposed %+v", c)
			}
			return nil
		})
	}
	md := s.md(long)
	svc := render.PredictorServiceName(md, render.PredictorName(md.Status.Digest))
	if len(long+"-"+render.PredictorName(md.Status.Digest)) <= 63 || len(svc) > 63 {
		t.Fatalf("service name %q (%d characters)", svc, len(svc))
	}
	if err := s.k8s.Get(context.Background(), client.ObjectKey{Namespace: "ml", Name: svc}, &corev1.Service{}); err != nil {
		t.Fatalf("Seldon's Service for %s: %v", long, err)
	}
	if want := "http://" + render.PredictorServiceHost(md, render.PredictorName(md.Status.Digest)) + ":8000/"; md.Status.URL != want {
		t.Fatalf("url %s, want %s", md.Status.URL, want)
	}
}

// objectRef names an object in the suite's namespace.
type objectRef struct {
	gvk  schema.GroupVersionKind
	name string
}

// steadyLooks is how many times steady lets the controller look at the
// tag: at the 300ms followTag interval of the suites, about 3s.
const steadyLooks = 10

// steady fails unless neither the spec nor the labels and annotations of
// these objects change while the controller looks at tag, which they
// follow, steadyLooks times: no two controllers write the same object.
// (Status may change: Seldon reports its replicas there.)
func (s *suite) steady(tag string, objs ...objectRef) {
	s.t.Helper()
	versions := func() []string {
		var out []string
		for _, o := range objs {
			u, err := s.get(o.gvk, o.name)
			if err != nil {
				s.t.Fatalf("%s %s: %v", o.gvk.Kind, o.name, err)
			}
			out = append(out, fmt.Sprintf("%s/%s generation %d labels %v annotations %v", o.gvk.Kind, o.name, u.GetGeneration(), u.GetLabels(), u.GetAnnotations()))
		}
		return out
	}
	before := versions()
	s.looksAgain(tag, steadyLooks)
	if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
		s.t.Fatalf("objects written again without a change: %v, then %v", before, after)
	}
}

// routeWeights reads a VirtualService's destinations and their weights.
func (s *suite) routeWeights(name string) map[string]int64 {
	s.t.Helper()
	vs, err := s.get(render.VirtualServiceGVK, name)
	if err != nil {
		s.t.Fatal(err)
	}
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	weights := map[string]int64{}
	for _, r := range routes {
		dests, _ := r.(map[string]any)["route"].([]any)
		for _, d := range dests {
			host, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "host")
			w, _ := d.(map[string]any)["weight"].(int64)
			weights[host] = w
		}
	}
	return weights
}

// deploymentOf is the Deployment Seldon made for one version.
func (s *suite) deploymentOf(name, digest string) appsv1.Deployment {
	s.t.Helper()
	var list appsv1.DeploymentList
	if err := s.k8s.List(context.Background(), &list, client.InNamespace("ml"),
		client.MatchingLabels{render.LabelName: name, render.LabelDigest: strings.TrimPrefix(digest, "sha256:")[:12]}); err != nil {
		s.t.Fatal(err)
	}
	if len(list.Items) != 1 {
		s.t.Fatalf("%d Deployments of %s", len(list.Items), digest)
	}
	return list.Items[0]
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// runInitContainer runs a pod's init container on this host as the
// kubelet would run it from the image in build/modelx.Dockerfile
// (kubeenv.RunContainer with testenv.ModelxEntrypoint): the image's
// entrypoint with the container's args and env, each volume mount a
// directory of its own, a projected service-account token issued by the
// cluster for the pod. It fails the test if the container fails, and
// returns the directory mounted at the model path.
func (s *suite) runInitContainer(pod *corev1.Pod, c corev1.Container) string {
	s.t.Helper()
	run := s.kube.RunContainer(s.t, pod, c.Name, kubeenv.HostRun{Entrypoints: map[string][]string{c.Image: testenv.ModelxEntrypoint(s.t)}})
	if run.Err != nil {
		s.t.Fatalf("initializer %q: %v\n%s", c.Args, run.Err, run.Output)
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == render.ModelMountPath {
			return run.Volumes[m.Name]
		}
	}
	s.t.Fatalf("nothing is mounted at %s: %+v", render.ModelMountPath, c.VolumeMounts)
	return ""
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
