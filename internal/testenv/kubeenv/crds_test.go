package kubeenv_test

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"modelx.io/modelx/internal/testenv/kubeenv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var (
	seldonDeploymentGVK = schema.GroupVersionKind{Group: "machinelearning.seldon.io", Version: "v1", Kind: "SeldonDeployment"}
	virtualServiceGVK   = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}
	gatewayGVK          = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "Gateway"}
)

// TestCRDsKeepFields installs the Seldon and Istio CRDs and checks that
// the objects the deploy controller renders survive a round trip through
// the apiserver with nothing pruned: with strict field validation, any
// field the schema does not know fails the create.
func TestCRDsKeepFields(t *testing.T) {
	k := kubeenv.StartKube(t, kubeenv.SeldonCRD(t), kubeenv.IstioCRDs(t))
	c, err := client.New(k.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "serving"
	if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}

	t.Run("SeldonDeployment", func(t *testing.T) {
		obj := roundTrip(t, c, seldonDeploymentGVK, ns, "bert", seldonSpec())

		// The controller reads readiness from the status subresource.
		status := map[string]any{
			"state":              "Available",
			"description":        "",
			"replicas":           int64(1),
			"observedGeneration": obj.GetGeneration(),
			"address":            map[string]any{"url": "http://bert-default.serving.svc.cluster.local:8000/v2/models/model/infer"},
			"deploymentStatus": map[string]any{
				"bert-default-0-model": map[string]any{"replicas": int64(1), "availableReplicas": int64(1)},
			},
			"conditions": []any{
				map[string]any{"type": "Ready", "status": "True", "reason": "ResourcesReady"},
			},
		}
		obj.Object["status"] = runtime.DeepCopyJSONValue(status)
		if err := c.Status().Update(t.Context(), obj, client.FieldValidation("Strict")); err != nil {
			t.Fatalf("update status: %v", err)
		}
		got := get(t, c, seldonDeploymentGVK, ns, "bert")
		if d := diffJSON("status", status, got.Object["status"]); len(d) > 0 {
			t.Errorf("status changed in the round trip:\n%s", strings.Join(d, "\n"))
		}
	})

	t.Run("SeldonPrunesNewerPodFields", func(t *testing.T) {
		// The Seldon v1.19 schema embeds an old PodSpec: a container's
		// resizePolicy (Kubernetes 1.27+) is unknown, hence pruned.
		spec := seldonSpec()
		container := spec["predictors"].([]any)[0].(map[string]any)["componentSpecs"].([]any)[0].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		container["resizePolicy"] = []any{map[string]any{"resourceName": "cpu", "restartPolicy": "NotRequired"}}
		obj := newObject(seldonDeploymentGVK, ns, "bert-strict", spec)
		err := c.Create(t.Context(), obj, client.FieldValidation("Strict"))
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "resizePolicy") {
			t.Fatalf("strict create with containers[].resizePolicy: got %v, want an unknown-field error", err)
		}
		obj = newObject(seldonDeploymentGVK, ns, "bert-pruned", spec)
		if err := c.Create(t.Context(), obj, client.FieldValidation("Ignore")); err != nil {
			t.Fatal(err)
		}
		got := get(t, c, seldonDeploymentGVK, ns, "bert-pruned")
		d := diffJSON("spec", spec, got.Object["spec"])
		want := []string{"spec.predictors[0].componentSpecs[0].spec.containers[0].resizePolicy: pruned"}
		if !slices.Equal(d, want) {
			t.Errorf("diff = %q, want %q", d, want)
		}
	})

	t.Run("VirtualService", func(t *testing.T) {
		roundTrip(t, c, virtualServiceGVK, ns, "bert", map[string]any{
			"hosts":    []any{"bert.models.example.com"},
			"gateways": []any{ns + "/modelx-gateway"},
			"http": []any{map[string]any{
				"name":    "bert",
				"match":   []any{map[string]any{"uri": map[string]any{"prefix": "/seldon/serving/bert/"}}},
				"rewrite": map[string]any{"uri": "/"},
				"timeout": "300s",
				"route": []any{
					map[string]any{
						"destination": map[string]any{"host": "bert-default.serving.svc.cluster.local", "port": map[string]any{"number": int64(8000)}},
						"weight":      int64(90),
					},
					map[string]any{
						"destination": map[string]any{"host": "bert-canary.serving.svc.cluster.local", "port": map[string]any{"number": int64(8000)}},
						"weight":      int64(10),
					},
				},
			}},
		})
	})

	t.Run("Gateway", func(t *testing.T) {
		roundTrip(t, c, gatewayGVK, ns, "modelx-gateway", map[string]any{
			"selector": map[string]any{"istio": "ingressgateway"},
			"servers": []any{map[string]any{
				"port":  map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"},
				"hosts": []any{"*.models.example.com"},
			}},
		})
	})
}

// seldonSpec is a SeldonDeployment spec as the deploy controller renders
// one: Triton on one GPU, the model pulled by modelx's storage initializer.
func seldonSpec() map[string]any {
	return map[string]any{
		"name":        "bert",
		"protocol":    "v2",
		"annotations": map[string]any{"seldon.io/no-engine": "true", "modelx.io/digest": "sha256:" + strings.Repeat("ab", 32)},
		"predictors": []any{map[string]any{
			"name":        "default",
			"replicas":    int64(1),
			"traffic":     int64(100),
			"annotations": map[string]any{"modelx.io/reference": "nlp/bert:prod"},
			"labels":      map[string]any{"app.kubernetes.io/managed-by": "modelx-controller"},
			"graph": map[string]any{
				"name":                    "model",
				"type":                    "MODEL",
				"implementation":          "TRITON_SERVER",
				"modelUri":                "modelx://registry.example.com/nlp/bert@sha256:" + strings.Repeat("0123456789abcdef", 4),
				"envSecretRefName":        "bert-modelx-credentials",
				"storageInitializerImage": "registry.example.com/modelx/modelx:v0.1.0",
				"serviceAccountName":      "bert-puller",
				"children":                []any{},
			},
			"componentSpecs": []any{map[string]any{
				"spec": map[string]any{
					"serviceAccountName": "bert-puller",
					"containers": []any{map[string]any{
						"name": "model",
						"resources": map[string]any{
							"limits":   map[string]any{"nvidia.com/gpu": "1", "cpu": "4", "memory": "16Gi"},
							"requests": map[string]any{"cpu": "2", "memory": "16Gi"},
						},
					}},
					"nodeSelector": map[string]any{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
					"tolerations": []any{map[string]any{
						"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule",
					}},
				},
			}},
		}},
	}
}

func newObject(gvk schema.GroupVersionKind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{Object: map[string]any{"spec": runtime.DeepCopyJSONValue(spec)}}
	obj.SetGroupVersionKind(gvk)
	obj.SetNamespace(namespace)
	obj.SetName(name)
	return obj
}

// roundTrip creates the object with strict field validation, reads it
// back and fails the test unless its spec is exactly the one sent.
func roundTrip(t *testing.T, c client.Client, gvk schema.GroupVersionKind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	t.Helper()
	if err := c.Create(t.Context(), newObject(gvk, namespace, name, spec), client.FieldValidation("Strict")); err != nil {
		t.Fatalf("create %s %s/%s: %v", gvk.Kind, namespace, name, err)
	}
	got := get(t, c, gvk, namespace, name)
	if d := diffJSON("spec", spec, got.Object["spec"]); len(d) > 0 {
		t.Fatalf("%s spec changed in the round trip:\n%s", gvk.Kind, strings.Join(d, "\n"))
	}
	return got
}

func get(t *testing.T, c client.Client, gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(gvk)
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: name}, got); err != nil {
		t.Fatalf("get %s %s/%s: %v", gvk.Kind, namespace, name, err)
	}
	return got
}

// diffJSON lists the paths where got differs from want, two decoded JSON
// values: "pruned" where want has a field got lacks.
func diffJSON(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %#v, want an object", path, got)}
		}
		var d []string
		for _, key := range slices.Sorted(maps.Keys(w)) {
			if _, ok := g[key]; !ok {
				d = append(d, path+"."+key+": pruned")
				continue
			}
			d = append(d, diffJSON(path+"."+key, w[key], g[key])...)
		}
		for _, key := range slices.Sorted(maps.Keys(g)) {
			if _, ok := w[key]; !ok {
				d = append(d, fmt.Sprintf("%s.%s: added %#v", path, key, g[key]))
			}
		}
		return d
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %#v, want %d items", path, got, len(w))}
		}
		var d []string
		for i := range w {
			d = append(d, diffJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return d
	default:
		if !reflect.DeepEqual(want, got) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		return nil
	}
}
