package render

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// kserveBase is base() on backend kserve.
func kserveBase() *v1alpha1.ModelDeployment {
	md := base()
	md.Spec.Backend = v1alpha1.BackendKServe
	return md
}

func TestRenderInferenceService(t *testing.T) {
	md := kserveBase()
	md.Spec.Server.Implementation = "mlserver_xgboost.XGBoostModel"
	md.Spec.Replicas = ptr.To[int32](2)
	md.Spec.Resources = v1alpha1.Resources{CPU: ptr.To(resource.MustParse("2")), GPU: 1}
	md.Spec.NodeSelector = map[string]string{"nvidia.com/gpu.present": "true"}
	md.Spec.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	in := Inputs{Versions: []Version{{Digest: digestA, Traffic: 100}, {Digest: digestB, Traffic: 0}}}
	isvc, err := RenderInferenceService(md, in)
	if err != nil {
		t.Fatal(err)
	}
	if isvc.APIVersion != "serving.kserve.io/v1beta1" || isvc.Kind != "InferenceService" || isvc.Name != "bert" || isvc.Namespace != "ml" {
		t.Errorf("object %s %s %s/%s", isvc.APIVersion, isvc.Kind, isvc.Namespace, isvc.Name)
	}
	if got := isvc.Annotations[AnnotationKServeDeploymentMode]; got != "Standard" {
		t.Errorf("deployment mode %q, want Standard (KServe v0.16 rewrites RawDeployment and then refuses updates)", got)
	}
	if got := isvc.Annotations[AnnotationKServeAutoscalerClass]; got != "none" {
		t.Errorf("autoscaler class %q, want none", got)
	}
	if isvc.Labels[LabelKServeVisibility] != "cluster-local" {
		t.Errorf("labels %v: without spec.expose the InferenceService is cluster-local", isvc.Labels)
	}
	if isvc.Labels[LabelKServeModelClass] != "mlserver_xgboost.XGBoostModel" || isvc.Labels[LabelName] != "bert" {
		t.Errorf("labels %v", isvc.Labels)
	}
	p := isvc.Spec.Predictor
	m := p.Model
	// The last version is the one served: in Standard mode a new version
	// replaces the old in place.
	if want := "modelx://modelxd.modelx:8080/nlp/bert@" + digestB + "?insecure=true&model-files=auto"; m.StorageURI != want {
		t.Errorf("storageUri %q, want %q", m.StorageURI, want)
	}
	if m.ModelFormat.Name != "xgboost" || m.Runtime != KServeMLServerRuntime || m.ProtocolVersion != "v2" {
		t.Errorf("model %+v", m)
	}
	if m.Resources == nil || !m.Resources.Limits["nvidia.com/gpu"].Equal(resource.MustParse("1")) || !m.Resources.Requests[corev1.ResourceCPU].Equal(resource.MustParse("2")) {
		t.Errorf("resources %+v", m.Resources)
	}
	if *p.MinReplicas != 2 || p.MaxReplicas != 2 {
		t.Errorf("replicas %d..%d, want 2..2", *p.MinReplicas, p.MaxReplicas)
	}
	if ru := p.DeploymentStrategy.RollingUpdate; ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.String() != "100%" {
		t.Errorf("rolling update %+v: the old pods must serve until the new are ready", ru)
	}
	if p.NodeSelector["nvidia.com/gpu.present"] != "true" || len(p.Tolerations) != 1 {
		t.Errorf("scheduling %v %v", p.NodeSelector, p.Tolerations)
	}
	if p.Annotations[AnnotationDigest] != digestB || p.Annotations[AnnotationSpecHash] == "" || p.Labels[LabelDigest] != "bbbbbbbbbbbb" {
		t.Errorf("predictor annotations %v labels %v", p.Annotations, p.Labels)
	}
	if p.ServiceAccountName != "" || len(p.Volumes) != 0 {
		t.Errorf("no credentials, but service account %q volumes %v", p.ServiceAccountName, p.Volumes)
	}

	// The hash follows what the pods run, not the traffic.
	again, _ := RenderInferenceService(md, Inputs{Versions: []Version{{Digest: digestB, Traffic: 100}}})
	if again.Spec.Predictor.Annotations[AnnotationSpecHash] != p.Annotations[AnnotationSpecHash] {
		t.Error("the spec hash changed with the traffic alone")
	}
	md.Spec.Resources.GPU = 2
	changed, _ := RenderInferenceService(md, in)
	if changed.Spec.Predictor.Annotations[AnnotationSpecHash] == p.Annotations[AnnotationSpecHash] {
		t.Error("the spec hash did not change with the resources")
	}
}

func TestRenderInferenceServiceTriton(t *testing.T) {
	md := kserveBase()
	md.Spec.Server = v1alpha1.Server{Type: v1alpha1.ServerTriton, Image: "nvcr.io/nvidia/tritonserver:24.08-py3"}
	md.Spec.Expose = &v1alpha1.Expose{}
	isvc, err := RenderInferenceService(md, one())
	if err != nil {
		t.Fatal(err)
	}
	m := isvc.Spec.Predictor.Model
	if m.ModelFormat.Name != "triton" || m.Runtime != KServeTritonRuntime || m.Image != "nvcr.io/nvidia/tritonserver:24.08-py3" {
		t.Errorf("model %+v", m)
	}
	if _, ok := isvc.Labels[LabelKServeModelClass]; ok {
		t.Errorf("Triton has no MLServer model class: %v", isvc.Labels)
	}
	if _, ok := isvc.Labels[LabelKServeVisibility]; ok {
		t.Errorf("spec.expose given: KServe's ingress exposes it, labels %v", isvc.Labels)
	}
	if st, reason, _ := Exposed(md, one()); st != metav1.ConditionTrue || reason != ReasonKServeIngress {
		t.Errorf("Exposed = %s %s", st, reason)
	}
	if vs, _ := RenderVirtualService(md, one()); vs != nil {
		t.Error("backend kserve rendered a VirtualService")
	}
}

func TestRenderInferenceServiceFormats(t *testing.T) {
	for _, tc := range []struct {
		server      v1alpha1.Server
		format      string
		runtime     string
		modelClass  string
		explanation string
	}{
		{v1alpha1.Server{Type: v1alpha1.ServerMLServer}, "sklearn", KServeMLServerRuntime, "mlserver_sklearn.SKLearnModel", "the default"},
		{v1alpha1.Server{Type: v1alpha1.ServerMLServer, Implementation: "mlserver_lightgbm.LightGBMModel"}, "lightgbm", KServeMLServerRuntime, "mlserver_lightgbm.LightGBMModel", "from the implementation"},
		{v1alpha1.Server{Type: v1alpha1.ServerMLServer, ModelFormat: &v1alpha1.ModelFormat{Name: "mlflow", Version: "2"}}, "mlflow", KServeMLServerRuntime, "mlserver_mlflow.MLflowRuntime", "given format"},
		{v1alpha1.Server{Type: v1alpha1.ServerMLServer, Implementation: "my.Runtime", ModelFormat: &v1alpha1.ModelFormat{Name: "custom"}, Runtime: "my-runtime"}, "custom", "my-runtime", "my.Runtime", "custom runtime"},
	} {
		md := kserveBase()
		md.Spec.Server = tc.server
		isvc, err := RenderInferenceService(md, one())
		if err != nil {
			t.Fatalf("%s: %v", tc.explanation, err)
		}
		m := isvc.Spec.Predictor.Model
		if m.ModelFormat.Name != tc.format || m.Runtime != tc.runtime || isvc.Labels[LabelKServeModelClass] != tc.modelClass {
			t.Errorf("%s: format %+v runtime %q model class %q", tc.explanation, m.ModelFormat, m.Runtime, isvc.Labels[LabelKServeModelClass])
		}
	}
}

func TestRenderInferenceServiceServiceAccountToken(t *testing.T) {
	md := kserveBase()
	md.Spec.Credentials = &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{ServiceAccountName: "puller", Audience: "modelx-prod"}}
	isvc, err := RenderInferenceService(md, one())
	if err != nil {
		t.Fatal(err)
	}
	p := isvc.Spec.Predictor
	if !strings.HasPrefix(p.Model.StorageURI, "modelx://serviceaccount@modelxd.modelx:8080/nlp/bert@") {
		t.Errorf("storageUri %q: keyless pulls select the modelx-serviceaccount ClusterStorageContainer with serviceaccount@", p.Model.StorageURI)
	}
	if p.ServiceAccountName != "puller" || len(p.Volumes) != 1 || p.Volumes[0].Name != TokenVolumeName {
		t.Fatalf("service account %q volumes %+v", p.ServiceAccountName, p.Volumes)
	}
	proj := p.Volumes[0].Projected.Sources[0].ServiceAccountToken
	if proj.Audience != "modelx-prod" || proj.Path != "token" {
		t.Errorf("token projection %+v", proj)
	}
}

func TestRenderInferenceServiceRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*v1alpha1.ModelDeployment)
		want   string
	}{
		{"canary", func(md *v1alpha1.ModelDeployment) {
			md.Spec.FollowTag = &v1alpha1.FollowTag{Enabled: true, CanaryPercent: 10}
		}, "no traffic split in Standard mode"},
		{"zero replicas", func(md *v1alpha1.ModelDeployment) { md.Spec.Replicas = ptr.To[int32](0) }, "does not scale to zero"},
		{"hosts", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Expose = &v1alpha1.Expose{Hosts: []string{"bert.example.com"}}
		}, "use expose: {}"},
		{"path prefix", func(md *v1alpha1.ModelDeployment) { md.Spec.Expose = &v1alpha1.Expose{PathPrefix: "/bert"} }, "use expose: {}"},
		{"long name", func(md *v1alpha1.ModelDeployment) { md.Name = strings.Repeat("a", 54) }, "at most 53"},
		{"runtime env", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Server.Env = []corev1.EnvVar{{Name: "MLSERVER_HTTP_PORT", Value: "1"}}
		}, "MLSERVER_HTTP_PORT"},
	} {
		md := kserveBase()
		tc.change(md)
		if _, err := RenderInferenceService(md, one()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	// KServe's settings are refused on Seldon, where nothing reads them.
	md := base()
	md.Spec.Server.Runtime = "kserve-mlserver"
	if _, err := RenderSeldonDeployment(md, one()); err == nil || !strings.Contains(err.Error(), "backend kserve") {
		t.Errorf("server.runtime on Seldon: %v", err)
	}
	md = base()
	md.Spec.Expose = &v1alpha1.Expose{}
	if _, err := RenderSeldonDeployment(md, one()); err == nil || !strings.Contains(err.Error(), "names no host") {
		t.Errorf("expose without hosts on Seldon: %v", err)
	}
}
