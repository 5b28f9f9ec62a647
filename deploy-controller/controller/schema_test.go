package controller_test

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/internal/testenv/kubeenv"
)

// TestRenderedObjectsSurviveTheRealCRDs creates what the renderers produce,
// with every feature on, under strict field validation against the real
// Seldon and Istio CRDs, and reads it back: our typed subsets name only
// fields the schemas know, and nothing is pruned.
func TestRenderedObjectsSurviveTheRealCRDs(t *testing.T) {
	kube := kubeenv.StartKube(t, kubeenv.SeldonCRD(t), kubeenv.IstioCRDs(t))
	k8s, err := client.New(kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}); err != nil {
		t.Fatal(err)
	}
	md := &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "full", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:        v1alpha1.ModelSource{Registry: "https://models.example.com", Name: "nlp/bert", Tag: "prod", Files: []string{"*.onnx"}},
			FollowTag:    &v1alpha1.FollowTag{Enabled: true, CanaryPercent: 30},
			Server:       v1alpha1.Server{Type: v1alpha1.ServerMLServer, Implementation: "models.LinearModel", Image: "mlserver:custom", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}},
			Replicas:     ptr.To[int32](2),
			Resources:    v1alpha1.Resources{GPU: 2, CPU: ptr.To(resource.MustParse("4")), Memory: ptr.To(resource.MustParse("16Gi"))},
			NodeSelector: map[string]string{"gpu": "a100"},
			Tolerations:  []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Credentials:  &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{ServiceAccountName: "puller", Audience: "modelx"}},
			Expose:       &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, CreateGateway: true, PathPrefix: "/bert"},
		},
	}
	sd, err := render.RenderSeldonDeployment(md, render.Inputs{
		Digest:       "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		CanaryDigest: "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", InitializerImage: "modelx:1"})
	if err != nil {
		t.Fatal(err)
	}
	secretMD := md.DeepCopy()
	secretMD.Name = "secret"
	secretMD.Spec.Credentials = &v1alpha1.Credentials{SecretName: "modelx-token"}
	secretSD, _ := render.RenderSeldonDeployment(secretMD, render.Inputs{Digest: "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})
	for _, obj := range []any{sd, secretSD, render.RenderVirtualService(md, sd), render.RenderGateway(md)} {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		want, _, _ := unstructured.NestedMap(u.Object, "spec")
		if err := k8s.Create(ctx, u, client.FieldValidation("Strict")); err != nil {
			t.Fatalf("%s %s rejected under strict validation: %v", u.GetKind(), u.GetName(), err)
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(u.GroupVersionKind())
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
			t.Fatal(err)
		}
		have, _, _ := unstructured.NestedMap(got.Object, "spec")
		if !reflect.DeepEqual(normalize(want), normalize(have)) {
			t.Fatalf("%s %s changed on the way through the apiserver:\nsent %v\ngot  %v", u.GetKind(), u.GetName(), want, have)
		}
	}
}

// normalize maps numbers to one type, as JSON round trips do.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case int:
		return float64(x)
	}
	return v
}
