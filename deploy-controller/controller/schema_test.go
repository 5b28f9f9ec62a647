package controller_test

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/internal/testenv/kubeenv"
)

// TestRenderedObjectsSurviveTheRealCRDs creates what the renderers produce,
// with every feature on, under strict field validation against the real
// Seldon, Istio and KServe CRDs, and reads it back: our typed subsets name only
// fields the schemas know, and nothing is pruned. The ModelDeployment with
// every field set passes our own CRD, and the CRD refuses what render
// cannot serve.
func TestRenderedObjectsSurviveTheRealCRDs(t *testing.T) {
	kube := kubeenv.StartKube(t, filepath.Join("..", "config", "crd"), kubeenv.SeldonCRD(t), kubeenv.IstioCRDs(t), kubeenv.KServeCRDs(t))
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(kube.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}); err != nil {
		t.Fatal(err)
	}
	const (
		digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		digestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	)
	md := &v1alpha1.ModelDeployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ModelDeployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "full", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:        v1alpha1.ModelSource{Registry: "https://models.example.com", Name: "nlp/bert", Tag: "prod", Files: []string{"*.onnx"}},
			FollowTag:    &v1alpha1.FollowTag{Enabled: true, CanaryPercent: 30},
			Server:       v1alpha1.Server{Type: v1alpha1.ServerMLServer, Implementation: "models.LinearModel", Image: "mlserver:custom", Protocol: "v2", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}},
			Replicas:     ptr.To[int32](2),
			Resources:    v1alpha1.Resources{GPU: 2, CPU: ptr.To(resource.MustParse("4")), Memory: ptr.To(resource.MustParse("16Gi"))},
			NodeSelector: map[string]string{"gpu": "a100"},
			Tolerations:  []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Credentials:  &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{ServiceAccountName: "puller", Audience: "modelx"}},
			Expose:       &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, CreateGateway: true, PathPrefix: "/bert", TLS: &v1alpha1.ExposeTLS{CredentialName: "bert-cert"}},
		},
	}
	// The ModelDeployment itself, every field set, passes its CRD; so does
	// its KServe form, and the backend defaults to seldon.
	created := md.DeepCopy()
	if err := k8s.Create(ctx, created, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("ModelDeployment rejected under strict validation: %v", err)
	}
	if created.Spec.Backend != v1alpha1.BackendSeldon {
		t.Errorf("backend defaulted to %q, want seldon", created.Spec.Backend)
	}
	kserveMD := md.DeepCopy()
	kserveMD.Name = "full-kserve"
	kserveMD.Spec.Backend = v1alpha1.BackendKServe
	kserveMD.Spec.FollowTag.CanaryPercent = 0
	kserveMD.Spec.Expose = &v1alpha1.Expose{}
	kserveMD.Spec.Server.Runtime = "kserve-mlserver"
	kserveMD.Spec.Server.ModelFormat = &v1alpha1.ModelFormat{Name: "sklearn", Version: "1"}
	if err := k8s.Create(ctx, kserveMD.DeepCopy(), client.FieldValidation("Strict")); err != nil {
		t.Fatalf("ModelDeployment with backend kserve rejected under strict validation: %v", err)
	}
	imageMD := kserveMD.DeepCopy()
	imageMD.Name = "full-image"
	imageMD.Spec.Model.Mount, imageMD.Spec.Model.ImagePullSecret, imageMD.Spec.Model.Files, imageMD.Spec.Credentials = v1alpha1.MountImage, "modelx-pull", nil, nil
	if err := k8s.Create(ctx, imageMD.DeepCopy(), client.FieldValidation("Strict")); err != nil {
		t.Fatalf("ModelDeployment with mount image rejected under strict validation: %v", err)
	}
	if created.Spec.Model.Mount != v1alpha1.MountInitContainer {
		t.Errorf("mount defaulted to %q, want initContainer", created.Spec.Model.Mount)
	}
	for _, bad := range []struct {
		name   string
		mutate func(*v1alpha1.ModelDeployment)
		want   string
	}{
		{"protocol", func(md *v1alpha1.ModelDeployment) { md.Spec.Server.Protocol = "seldon" }, "spec.server.protocol"},
		{"tls", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Expose.CreateGateway, md.Spec.Expose.Gateway = false, "istio-system/public"
		}, "tls needs createGateway"},
		{"path", func(md *v1alpha1.ModelDeployment) { md.Spec.Expose.PathPrefix = "bert" }, "spec.expose.pathPrefix"},
		{"seldon-no-host", func(md *v1alpha1.ModelDeployment) { md.Spec.Expose.Hosts = nil }, "expose needs at least one host"},
		{"seldon-runtime", func(md *v1alpha1.ModelDeployment) { md.Spec.Server.Runtime = "kserve-mlserver" }, "are for backend kserve"},
		{"kserve-canary", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Backend, md.Spec.Expose = v1alpha1.BackendKServe, &v1alpha1.Expose{}
		}, "no traffic split in Standard mode"},
		{"kserve-hosts", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Backend, md.Spec.FollowTag.CanaryPercent = v1alpha1.BackendKServe, 0
		}, "exposure follows KServe's ingress configuration"},
		{"kserve-zero", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Backend, md.Spec.FollowTag.CanaryPercent, md.Spec.Expose, md.Spec.Replicas = v1alpha1.BackendKServe, 0, nil, ptr.To[int32](0)
		}, "does not scale to zero"},
		{"backend", func(md *v1alpha1.ModelDeployment) { md.Spec.Backend = "triton" }, "spec.backend"},
		{"mount", func(md *v1alpha1.ModelDeployment) { md.Spec.Model.Mount = "nfs" }, "spec.model.mount"},
		{"image-files", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Model.Mount, md.Spec.Credentials = v1alpha1.MountImage, nil
		}, "mount: image mounts every file of the version"},
		{"image-service-account-token", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Model.Mount, md.Spec.Model.Files = v1alpha1.MountImage, nil
		}, "cannot present a projected service-account token"},
		{"image-secret", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Model.Mount, md.Spec.Model.Files = v1alpha1.MountImage, nil
			md.Spec.Credentials = &v1alpha1.Credentials{SecretName: "modelx-token"}
		}, "credentials.secretName is the token of the init container"},
		{"pull-secret-without-image", func(md *v1alpha1.ModelDeployment) { md.Spec.Model.ImagePullSecret = "modelx-pull" }, "imagePullSecret is for mount: image"},
	} {
		refused := md.DeepCopy()
		refused.Name = "refused-" + bad.name
		bad.mutate(refused)
		if err := k8s.Create(ctx, refused); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: created with %v; want an error naming %q", bad.name, err, bad.want)
		}
	}

	versions := []render.Version{{Digest: digestA, Traffic: 70}, {Digest: digestB, Traffic: 30}, {Digest: digestC}}
	in := render.Inputs{Versions: versions, InitializerImage: "modelx/modelx:1", Routing: render.Routing{Istio: true}}
	sd, err := render.RenderSeldonDeployment(md, in)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := render.RenderVirtualService(md, in)
	if err != nil || vs == nil {
		t.Fatalf("virtual service %v, %v", vs, err)
	}
	gw, err := render.RenderGateway(md, in)
	if err != nil || gw == nil {
		t.Fatalf("gateway %v, %v", gw, err)
	}
	secretMD := md.DeepCopy()
	secretMD.Name = "secret"
	secretMD.Spec.Credentials = &v1alpha1.Credentials{SecretName: "modelx-token"}
	secretMD.Spec.Server = v1alpha1.Server{Type: v1alpha1.ServerTriton}
	secretSD, err := render.RenderSeldonDeployment(secretMD, render.Inputs{Versions: []render.Version{{Digest: digestA, Traffic: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	// Under Seldon's Istio integration: annotations, no VirtualService.
	seldonMD := md.DeepCopy()
	seldonMD.Name = "seldon-routed"
	seldonMD.Spec.Expose.PathPrefix = "/"
	seldonIn := in
	seldonIn.Routing.SeldonIstio = true
	seldonSD, err := render.RenderSeldonDeployment(seldonMD, seldonIn)
	if err != nil {
		t.Fatal(err)
	}
	if seldonSD.Annotations[render.AnnotationSeldonIstioHost] == "" {
		t.Fatalf("no %s on %v", render.AnnotationSeldonIstioHost, seldonSD.Annotations)
	}

	// KServe's InferenceService, every field we set, keyless.
	kserveIn := render.Inputs{Versions: []render.Version{{Digest: digestA, Traffic: 100}}}
	isvc, err := render.RenderInferenceService(kserveMD, kserveIn)
	if err != nil {
		t.Fatal(err)
	}
	localMD := kserveMD.DeepCopy()
	localMD.Name, localMD.Spec.Expose = "cluster-local", nil
	localMD.Spec.Server = v1alpha1.Server{Type: v1alpha1.ServerTriton}
	localISVC, err := render.RenderInferenceService(localMD, kserveIn)
	if err != nil {
		t.Fatal(err)
	}

	// With mount image: KServe's CRD holds the image volume; Seldon's, as
	// its chart ships it, does not, until deploy/seldon's patch.
	imageIn := render.Inputs{Versions: []render.Version{{Digest: digestA, Traffic: 100, ImageDigest: digestB}}, InitializerImage: "modelx/modelx:1"}
	imageISVC, err := render.RenderInferenceService(imageMD, imageIn)
	if err != nil {
		t.Fatal(err)
	}
	imageSeldonMD := imageMD.DeepCopy()
	imageSeldonMD.Name, imageSeldonMD.Spec.Backend = "image-seldon", v1alpha1.BackendSeldon
	imageSeldonMD.Spec.Server.Runtime, imageSeldonMD.Spec.Server.ModelFormat, imageSeldonMD.Spec.Expose = "", nil, nil
	imageSD, err := render.RenderSeldonDeployment(imageSeldonMD, imageIn)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(imageSD)
	if err := k8s.Create(ctx, &unstructured.Unstructured{Object: m}, client.FieldValidation("Strict"), client.DryRunAll); err == nil || !strings.Contains(err.Error(), "image") {
		t.Errorf("Seldon's CRD took a SeldonDeployment's image volume before the patch (%v): drop deploy/seldon/crd-image-volumes.json from the docs if Seldon's CRD knows them now", err)
	}
	patchSeldonCRD(t, kube)

	for _, obj := range []any{sd, secretSD, seldonSD, vs, gw, isvc, localISVC, imageISVC, imageSD} {
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
		if !reflect.DeepEqual(u.GetAnnotations(), got.GetAnnotations()) {
			t.Fatalf("%s %s annotations changed: sent %v, got %v", u.GetKind(), u.GetName(), u.GetAnnotations(), got.GetAnnotations())
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
