package kubeenv

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestCluster runs Deployments of each behaviour on one cluster.
func TestCluster(t *testing.T) {
	start := time.Now()
	kube := StartCluster(t, ClusterOptions{Behaviours: BehaviourRule{Label: "example.com/version", ByValue: map[string]string{"bad": BehaviourCrashLoop, "good": BehaviourReady}}})
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))
	c := kube.client
	ctx := t.Context()
	if err := kube.ensureNamespace(ctx, "apps"); err != nil {
		t.Fatal(err)
	}
	kwokNodes := map[string]bool{}
	for _, n := range DefaultNodes() {
		kwokNodes[n.Name] = true
	}

	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		d := deployment("apps", "web", 2, nil, nil)
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "Deployment web Available with 2 ready replicas", func(ctx context.Context) (bool, error) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
				return false, err
			}
			return d.Status.ReadyReplicas == 2 && deploymentAvailable(d), nil
		})
		pods := podsOf(t, c, d)
		if len(pods) != 2 {
			t.Fatalf("%d pods, want 2", len(pods))
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) || !kwokNodes[p.Spec.NodeName] || p.Status.PodIP == "" {
				t.Errorf("pod %s: phase %s ready %v node %q IP %q", p.Name, p.Status.Phase, podReady(&p), p.Spec.NodeName, p.Status.PodIP)
			}
			// The ServiceAccount admission plugin ran: the token volume is there.
			if p.Spec.ServiceAccountName != "default" || !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Projected != nil }) {
				t.Errorf("pod %s: service account %q, no projected token volume", p.Name, p.Spec.ServiceAccountName)
			}
		}
	})

	t.Run("init containers then ready", func(t *testing.T) {
		t.Parallel()
		d := deployment("apps", "with-init", 1, nil, nil)
		d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "pull", Image: "modelx:test", Args: []string{"pull", "x", "/mnt/models"}}}
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		pod := waitPod(t, c, d, 60*time.Second, "Running and Ready", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning && podReady(p)
		})
		if len(pod.Status.InitContainerStatuses) != 1 || pod.Status.InitContainerStatuses[0].State.Terminated == nil ||
			pod.Status.InitContainerStatuses[0].State.Terminated.ExitCode != 0 {
			t.Errorf("init container status: %+v", pod.Status.InitContainerStatuses)
		}
	})

	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		d := deployment("apps", "slow", 1, map[string]string{BehaviourLabel: BehaviourSlow}, map[string]string{ReadyAfterAnnotation: "4s"})
		created := time.Now()
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		waitPod(t, c, d, 60*time.Second, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		if p := firstPod(t, c, d); podReady(p) {
			t.Fatalf("pod ready %s after create, before its 4s", time.Since(created))
		}
		waitPod(t, c, d, 60*time.Second, "Ready", podReady)
		if since := time.Since(created); since < 4*time.Second {
			t.Errorf("ready %s after create, want ≥ 4s", since)
		}
	})

	t.Run("never-ready", func(t *testing.T) {
		t.Parallel()
		d := deployment("apps", "never", 1, map[string]string{BehaviourLabel: BehaviourNeverReady}, nil)
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		waitPod(t, c, d, 60*time.Second, "Running with running containers", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
		})
		// A non-event has nothing to wait for: kwok readies a
		// BehaviourReady pod a few hundred milliseconds after it is bound,
		// so 3s is ample.
		time.Sleep(3 * time.Second)
		if p := firstPod(t, c, d); podReady(p) {
			t.Fatal("never-ready pod is ready")
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != 0 {
			t.Errorf("Deployment has %d ready replicas", d.Status.ReadyReplicas)
		}
	})

	t.Run("crashloop", func(t *testing.T) {
		t.Parallel()
		d := deployment("apps", "crash", 1, map[string]string{BehaviourLabel: BehaviourCrashLoop}, nil)
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		pod := waitPod(t, c, d, 60*time.Second, "CrashLoopBackOff with ≥ 3 restarts", func(p *corev1.Pod) bool {
			if len(p.Status.ContainerStatuses) != 1 {
				return false
			}
			s := p.Status.ContainerStatuses[0]
			return s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff" && s.RestartCount >= 3
		})
		s := pod.Status.ContainerStatuses[0]
		if s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 1 || podReady(pod) || pod.Status.Phase != corev1.PodRunning {
			t.Errorf("crash-looping pod: phase %s ready %v status %+v", pod.Status.Phase, podReady(pod), s)
		}
	})

	t.Run("behaviour by another label", func(t *testing.T) {
		t.Parallel()
		bad := deployment("apps", "by-label-bad", 1, map[string]string{"example.com/version": "bad"}, nil)
		good := deployment("apps", "by-label-good", 1, map[string]string{"example.com/version": "good"}, nil)
		for _, d := range []*appsv1.Deployment{bad, good} {
			if err := c.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		waitPod(t, c, bad, 60*time.Second, "CrashLoopBackOff by its version label", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
				p.Status.ContainerStatuses[0].State.Waiting.Reason == "CrashLoopBackOff"
		})
		waitPod(t, c, good, 60*time.Second, "Ready by its version label", podReady)
	})

	t.Run("init-crashloop", func(t *testing.T) {
		t.Parallel()
		d := deployment("apps", "init-crash", 1, map[string]string{BehaviourLabel: BehaviourInitCrashLoop}, nil)
		d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "pull", Image: "modelx:test"}}
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		pod := waitPod(t, c, d, 60*time.Second, "Init:CrashLoopBackOff with ≥ 2 restarts", func(p *corev1.Pod) bool {
			if len(p.Status.InitContainerStatuses) != 1 {
				return false
			}
			s := p.Status.InitContainerStatuses[0]
			return s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff" && s.RestartCount >= 2
		})
		if pod.Status.Phase != corev1.PodPending || podReady(pod) {
			t.Errorf("pod phase %s ready %v, want Pending, not ready", pod.Status.Phase, podReady(pod))
		}
	})

	t.Run("gpu", func(t *testing.T) {
		t.Parallel()
		d := deployment("apps", "gpu", 1, nil, nil)
		d.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{GPUResource: resource.MustParse("1")}
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		pod := waitPod(t, c, d, 60*time.Second, "Ready", podReady)
		if pod.Spec.NodeName != "kwok-gpu-0" {
			t.Errorf("GPU pod on node %q, want kwok-gpu-0", pod.Spec.NodeName)
		}
	})
}

// TestSeldon runs the real Seldon operator (Istio on) against a
// SeldonDeployment of a prepackaged Triton server with a modelUri.
func TestSeldon(t *testing.T) {
	start := time.Now()
	kube := StartCluster(t, ClusterOptions{CRDPaths: []string{SeldonCRD(t), IstioCRDs(t)}})
	seldon := StartSeldon(t, kube, SeldonOptions{Istio: true, IstioGateway: "istio-system/modelx-gateway"})
	t.Logf("cluster and operator up in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seldon-operator log:\n%s", tail(seldon.proc.log, 20000))
		}
	})
	c := kube.client
	ctx := t.Context()
	const ns, name, modelURI = "models", "iris", "s3://models/iris/v1"
	if err := kube.ensureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}

	// The validating webhook refuses what Seldon's would.
	bad := seldonDeployment(ns, "bad", "")
	if err := c.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "modelUri required") {
		t.Errorf("create SeldonDeployment without modelUri: %v, want refused by the webhook", err)
	}

	sdep := seldonDeployment(ns, name, modelURI)
	if err := c.Create(ctx, sdep); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "SeldonDeployment Available", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(sdep), sdep); err != nil {
			return false, err
		}
		state, _, _ := unstructured.NestedString(sdep.Object, "status", "state")
		return state == "Available", nil
	})

	// Seldon's Deployment, with its storage initializer for the modelUri.
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var owned []appsv1.Deployment
	for _, d := range deps.Items {
		if o := metav1.GetControllerOf(&d); o != nil && o.Kind == "SeldonDeployment" && o.Name == name {
			owned = append(owned, d)
		}
	}
	if len(owned) != 1 {
		t.Fatalf("%d Deployments owned by the SeldonDeployment, want 1", len(owned))
	}
	d := owned[0]
	if !deploymentAvailable(&d) || d.Status.ReadyReplicas != 1 {
		t.Errorf("Deployment %s: available %v, %d ready", d.Name, deploymentAvailable(&d), d.Status.ReadyReplicas)
	}
	inits := d.Spec.Template.Spec.InitContainers
	if len(inits) != 1 || !slices.Equal(inits[0].Args, []string{modelURI, "/mnt/models"}) {
		t.Errorf("init containers %+v, want one with args [%s /mnt/models]", inits, modelURI)
	} else if inits[0].Image != "seldonio/rclone-storage-initializer:1.19.0" {
		t.Errorf("storage initializer image %q", inits[0].Image)
	}
	var images []string
	for _, ct := range d.Spec.Template.Spec.Containers {
		images = append(images, ct.Image)
	}
	if !slices.Contains(images, "nvcr.io/nvidia/tritonserver:21.08-py3") || !slices.Contains(images, "seldonio/seldon-core-executor:1.19.0") {
		t.Errorf("containers' images %v, want Triton's and the executor's", images)
	}

	// Its Services.
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var svcNames []string
	for _, s := range svcs.Items {
		if o := metav1.GetControllerOf(&s); o != nil && o.Name == name {
			svcNames = append(svcNames, s.Name)
		}
	}
	if !slices.Contains(svcNames, name+"-default") {
		t.Errorf("Services %v, want %s-default among them", svcNames, name)
	}

	// Its VirtualService on the gateway.
	vs := &unstructured.Unstructured{}
	vs.SetAPIVersion("networking.istio.io/v1alpha3")
	vs.SetKind("VirtualService")
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, vs); err != nil {
		t.Fatalf("VirtualService: %v", err)
	}
	hosts, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "hosts")
	gateways, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways")
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	var prefix string
	if len(routes) > 0 {
		matches, _, _ := unstructured.NestedSlice(routes[0].(map[string]any), "match")
		if len(matches) > 0 {
			prefix, _, _ = unstructured.NestedString(matches[0].(map[string]any), "uri", "prefix")
		}
	}
	if !slices.Equal(hosts, []string{"*"}) || !slices.Equal(gateways, []string{"istio-system/modelx-gateway"}) ||
		prefix != fmt.Sprintf("/seldon/%s/%s/", ns, name) {
		t.Errorf("VirtualService hosts %v gateways %v prefix %q", hosts, gateways, prefix)
	}
}

// seldonDeployment is a one-node graph of Seldon's prepackaged Triton
// server loading modelURI (the v2 protocol, as Triton requires).
func seldonDeployment(ns, name, modelURI string) *unstructured.Unstructured {
	graph := map[string]any{"name": "model", "implementation": "TRITON_SERVER"}
	if modelURI != "" {
		graph["modelUri"] = modelURI
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "machinelearning.seldon.io/v1",
		"kind":       "SeldonDeployment",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"protocol": "v2",
			"predictors": []any{map[string]any{
				"name":     "default",
				"replicas": int64(1),
				"graph":    graph,
			}},
		},
	}}
}

// deployment is a Deployment of one container; podLabels and
// podAnnotations go on its pod template.
func deployment(ns, name string, replicas int32, podLabels, podAnnotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	for k, v := range podLabels {
		labels[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "server",
					Image: "server:test",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("100m"),
						corev1.ResourceMemory: resource.MustParse("128Mi"),
					}},
				}}},
			},
		},
	}
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	return slices.ContainsFunc(d.Status.Conditions, func(c appsv1.DeploymentCondition) bool {
		return c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue
	})
}

func podReady(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

// podsOf lists the pods of a Deployment by its selector.
func podsOf(t testing.TB, c client.Client, d *appsv1.Deployment) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := c.List(context.Background(), &pods, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func firstPod(t testing.TB, c client.Client, d *appsv1.Deployment) *corev1.Pod {
	t.Helper()
	pods := podsOf(t, c, d)
	if len(pods) == 0 {
		t.Fatalf("no pods of %s", d.Name)
	}
	return &pods[0]
}

// waitPod waits until a pod of d satisfies ok and returns it.
func waitPod(t testing.TB, c client.Client, d *appsv1.Deployment, timeout time.Duration, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	waitFor(t, timeout, "a pod of "+d.Name+" "+what, func(ctx context.Context) (bool, error) {
		for _, p := range podsOf(t, c, d) {
			if ok(&p) {
				found = &p
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// waitFor polls cond every 200 ms until it holds, fails the test after
// timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}
