package kubeenv

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/testenv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KwokVersion is the kwok release whose controller plays the kubelet of
// the fake nodes; keep it in step with tools/kube-apiserver/go.mod and
// tools/kube.mk. kube-scheduler is built at KubeVersion.
const KwokVersion = "v0.8.0"

// The pod behaviour contract of StartCluster. A pod (or a Deployment's pod
// template) chooses what the fake kubelet does with it by the label
// BehaviourLabel; without it the pod behaves as BehaviourReady. Every path
// first gives the pod its IPs (phase Pending) and, unless it is
// BehaviourInitCrashLoop, runs its init containers to completion
// (Initialized=True), then:
const (
	BehaviourLabel = "kwok.modelx.io/behaviour"

	// BehaviourReady: the containers run and are ready (phase Running,
	// Ready=True) a few hundred milliseconds after the pod is bound.
	BehaviourReady = "ready"
	// BehaviourSlow: the containers run at once but become ready only
	// ReadyAfterAnnotation later (default 10s), as a server loading a
	// large model behind its readiness probe.
	BehaviourSlow = "slow"
	// BehaviourNeverReady: the containers run and are never ready.
	BehaviourNeverReady = "never-ready"
	// BehaviourCrashLoop: every container exits with code 1 and waits in
	// CrashLoopBackOff (lastState terminated, reason Error); restartCount
	// grows by one every second for the first five restarts, every five
	// seconds after. Phase Running, Ready=False.
	BehaviourCrashLoop = "crashloop"
	// BehaviourInitCrashLoop: the first init container crash-loops the same
	// way (Init:CrashLoopBackOff); the pod stays Pending, Initialized=False.
	BehaviourInitCrashLoop = "init-crashloop"

	// ReadyAfterAnnotation is how long a BehaviourSlow pod runs before it is
	// ready, as a Go duration ("30s").
	ReadyAfterAnnotation = "kwok.modelx.io/ready-after"
)

// GPUResource is the extended resource that NVIDIA's device plugin
// advertises and that pods request GPUs by.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// kwokNodeAnnotation marks the nodes kwok manages (and nothing else).
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// stages are the kwok Stages of every cluster: node lifecycle and the pod
// behaviours above.
//
//go:embed stages.yaml
var stages string

// Node is a fake node of the test cluster.
type Node struct {
	// Name is the node's name (and kubernetes.io/hostname label).
	Name string
	// Labels are added to the well-known ones (hostname, os, arch, type=kwok).
	Labels map[string]string
	// Capacity is what the node offers (cpu, memory, pods, GPUResource);
	// allocatable is the same.
	Capacity corev1.ResourceList
	// Taints are the node's taints.
	Taints []corev1.Taint
}

// DefaultNodes are the nodes of a cluster whose options name none: two CPU
// nodes (kwok-node-0, kwok-node-1: 16 CPUs, 64Gi, 110 pods) and one GPU node
// (kwok-gpu-0: 32 CPUs, 256Gi, 110 pods, 4 GPUResource, labelled
// nvidia.com/gpu.present=true; untainted).
func DefaultNodes() []Node {
	cpu := func(name string) Node {
		return Node{Name: name, Capacity: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("16"),
			corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		}}
	}
	return []Node{cpu("kwok-node-0"), cpu("kwok-node-1"), {
		Name:   "kwok-gpu-0",
		Labels: map[string]string{"nvidia.com/gpu.present": "true"},
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("32"),
			corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
			GPUResource:           resource.MustParse("4"),
		},
	}}
}

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// CRDPaths are files or directories of CRD manifests installed before
	// any controller starts (so the garbage collector watches them from
	// the start); a missing path fails the test.
	CRDPaths []string
	// Nodes are the fake nodes; nil means DefaultNodes().
	Nodes []Node
	// Stages are more kwok Stage documents (YAML, kwok.x-k8s.io/v1alpha1)
	// loaded with the built-in ones, for behaviours this package lacks.
	// Keep their selectors apart from the built-in ones'.
	Stages []string
	// Behaviours chooses a pod's behaviour by another label, for pods the
	// test does not label itself (those a controller renders): a pod
	// without BehaviourLabel whose label Behaviours.Label has a value in
	// Behaviours.ByValue behaves as that names.
	Behaviours BehaviourRule
}

// BehaviourRule maps the values of one pod label to behaviours.
type BehaviourRule struct {
	// Label is the label's key.
	Label string
	// ByValue maps a value of Label to a behaviour (BehaviourSlow, ...).
	ByValue map[string]string
}

// behaviourKey is the jq expression by which the built-in stages read a
// pod's behaviour.
const behaviourKey = `.metadata.labels["kwok.modelx.io/behaviour"]`

// withBehaviours rewrites the stages so that a pod's behaviour is its
// BehaviourLabel or, without one, what rule maps its rule.Label to.
func withBehaviours(stages string, rule BehaviourRule) (string, error) {
	if rule.Label == "" || len(rule.ByValue) == 0 {
		return stages, nil
	}
	table, err := json.Marshal(rule.ByValue)
	if err != nil {
		return "", err
	}
	label, err := json.Marshal(rule.Label)
	if err != nil {
		return "", err
	}
	// (BEHAVIOUR // {"value": "behaviour", ...}[LABEL // ""]), quoted for
	// the YAML single-quoted scalars the keys are written in.
	expr := fmt.Sprintf(`(%s // %s[.metadata.labels[%s] // ""])`, behaviourKey, table, label)
	quoted := "'" + strings.ReplaceAll(expr, "'", "''") + "'"
	n := strings.Count(stages, "'"+behaviourKey+"'")
	if n == 0 {
		return "", fmt.Errorf("no stage reads %s", behaviourKey)
	}
	return strings.ReplaceAll(stages, "'"+behaviourKey+"'", quoted), nil
}

// controllerManagerControllers are the kube-controller-manager controllers
// of a cluster: enough for Deployments to roll out onto nodes that become
// ready, for namespaces to get their default service account, the
// kube-root-ca.crt ConfigMap (which every pod's service-account volume
// projects) and to be deleted, for owners' dependents to be collected, and
// for Services to get their EndpointSlices.
var controllerManagerControllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"node-lifecycle-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"endpointslice-controller",
	"root-ca-cert-publisher",
}

// StartCluster starts a small Kubernetes cluster on 127.0.0.1 that behaves
// like a real one to controllers: etcd and kube-apiserver (with the
// ServiceAccount admission plugin, as a real cluster has), a
// kube-controller-manager running controllerManagerControllers, the real
// kube-scheduler, and kwok as the kubelet of opts.Nodes. Pods run nothing:
// kwok writes their status by the behaviour contract of BehaviourLabel.
// It returns once every node is Ready and untainted and the default
// namespace has its service account; everything stops when the test ends,
// and the tail of each component's log is printed if the test failed.
func StartCluster(t testing.TB, opts ClusterOptions) *Kube {
	t.Helper()
	kcmPath := testenv.RequireBinary(t, "kube-controller-manager", KubeVersion)
	schedulerPath := testenv.RequireBinary(t, "kube-scheduler", KubeVersion)
	kwokPath := testenv.RequireBinary(t, "kwok", KwokVersion)
	nodes := opts.Nodes
	if nodes == nil {
		nodes = DefaultNodes()
	}

	k := startKube(t, kubeOptions{crdPaths: opts.CRDPaths, serviceAccountAdmission: true})
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(k, kubeconfig); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}

	rootCA := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(rootCA, k.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	kcm := startProcess(t, "kube-controller-manager", kcmPath,
		append(controllerManagerArgs(kubeconfig, controllerManagerControllers...),
			// Notice a node's readiness within a second (default 5s).
			"--node-monitor-period=1s",
			// What root-ca-cert-publisher publishes as kube-root-ca.crt.
			"--root-ca-file="+rootCA,
		), nil)
	startProcess(t, "kube-scheduler", schedulerPath, []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}, nil)

	stagesPath := filepath.Join(dir, "kwok-stages.yaml")
	builtin, err := withBehaviours(stages, opts.Behaviours)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(append([]string{builtin}, opts.Stages...), "\n---\n")
	if err := os.WriteFile(stagesPath, []byte(all), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, "kwok", kwokPath, []string{
		"--kubeconfig=" + kubeconfig,
		"--config=" + stagesPath,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		// Renew node leases, as a kubelet does; without them the node
		// lifecycle controller marks the nodes NotReady after its grace
		// period (50 s) and their pods unready.
		"--node-lease-duration-seconds=40",
		// Pod IPs outside the service range (10.0.0.0/24).
		"--cidr=10.244.0.0/16",
	}, []string{
		// kwok also reads $HOME/.kwok/kwok.yaml: give it an empty home.
		"HOME=" + dir,
	})

	ctx := t.Context()
	for _, n := range nodes {
		k.AddNode(t, n)
	}
	// The garbage collector starts its workers once its informers synced:
	// by then every controller runs.
	kcm.waitLogLine(t, gcReadyLine, 60*time.Second)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var list corev1.NodeList
		if err := k.client.List(ctx, &list); err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range list.Items {
			if nodeReady(&n) {
				ready++
			}
		}
		return ready == len(nodes), nil
	})
	if err != nil {
		t.Fatalf("nodes not ready and untainted within 60s: %v\n%s", err, k.describeNodes(ctx))
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return k.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{}) == nil, nil
	})
	if err != nil {
		t.Fatalf("no default service account in namespace default within 30s: %v", err)
	}
	return k
}

// AddNode registers a fake node that kwok manages; it becomes Ready (and
// schedulable once the node lifecycle controller removes its not-ready
// taint) a moment later. Only for a Kube from StartCluster.
func (k *Kube) AddNode(t testing.TB, n Node) {
	t.Helper()
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}
	for key, v := range n.Labels {
		labels[key] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Name,
			Labels:      labels,
			Annotations: map[string]string{kwokNodeAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{Taints: n.Taints},
		// A kubelet registers its node with its capacity; so does this.
		Status: corev1.NodeStatus{Capacity: n.Capacity, Allocatable: n.Capacity},
	}
	if err := k.client.Create(t.Context(), node); err != nil {
		t.Fatalf("create node %s: %v", n.Name, err)
	}
}

// nodeReady reports whether a node is Ready and carries none of the
// taints the node lifecycle controller puts on nodes that are not.
func nodeReady(n *corev1.Node) bool {
	ready := slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
		return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	})
	tainted := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
		return strings.HasPrefix(t.Key, "node.kubernetes.io/")
	})
	return ready && !tainted
}

// describeNodes summarises the nodes' readiness and taints, for errors.
func (k *Kube) describeNodes(ctx context.Context) string {
	var list corev1.NodeList
	if err := k.client.List(context.WithoutCancel(ctx), &list); err != nil {
		return "list nodes: " + err.Error()
	}
	var b strings.Builder
	for _, n := range list.Items {
		fmt.Fprintf(&b, "node %s:", n.Name)
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				fmt.Fprintf(&b, " Ready=%s", c.Status)
			}
		}
		for _, t := range n.Spec.Taints {
			fmt.Fprintf(&b, " taint %s:%s", t.Key, t.Effect)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ensureNamespace creates a namespace unless it exists.
func (k *Kube) ensureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}
