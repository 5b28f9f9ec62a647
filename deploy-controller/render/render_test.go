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

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func base() *v1alpha1.ModelDeployment {
	return &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bert", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:  v1alpha1.ModelSource{Registry: "http://modelxd.modelx:8080", Name: "nlp/bert", Tag: "prod"},
			Server: v1alpha1.Server{Type: v1alpha1.ServerMLServer},
		},
	}
}

func TestModelURI(t *testing.T) {
	for _, tc := range []struct {
		src  v1alpha1.ModelSource
		want string
		err  bool
	}{
		{v1alpha1.ModelSource{Registry: "http://r:8080", Name: "nlp/bert"}, "modelx://r:8080/nlp/bert@" + digestA + "?insecure=true&model-files=auto", false},
		{v1alpha1.ModelSource{Registry: "https://models.example.com/", Name: "nlp/bert", Files: []string{"*.onnx", "config.pbtxt"}}, "modelx://models.example.com/nlp/bert@" + digestA + "?file=%2A.onnx&file=config.pbtxt", false},
		{v1alpha1.ModelSource{Registry: "ftp://x", Name: "a/b"}, "", true},
	} {
		got, err := ModelURI(tc.src, digestA)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ModelURI(%+v) = %q, %v; want %q", tc.src, got, err, tc.want)
		}
	}
}

func TestRenderSeldonDeployment(t *testing.T) {
	in := Inputs{Digest: digestA, InitializerImage: "modelx:1.0"}
	tests := []struct {
		name   string
		mutate func(*v1alpha1.ModelDeployment)
		in     Inputs
		check  func(t *testing.T, sd *SeldonDeployment)
	}{
		{"mlserver defaults", func(*v1alpha1.ModelDeployment) {}, in, func(t *testing.T, sd *SeldonDeployment) {
			p := sd.Spec.Predictors
			if len(p) != 1 || p[0].Name != MainPredictor || p[0].Graph.Implementation != ImplementationMLServer || *p[0].Replicas != 1 || p[0].Traffic != 100 {
				t.Fatalf("predictors %+v", p)
			}
			g := p[0].Graph
			if !strings.HasPrefix(g.ModelURI, "modelx://modelxd.modelx:8080/nlp/bert@"+digestA) || g.StorageInitializerImage != "modelx:1.0" {
				t.Fatalf("graph %+v", g)
			}
			if sd.Spec.Protocol != "v2" || sd.Name != "bert" || sd.Namespace != "ml" || sd.Labels["deploy.modelx.io/name"] != "bert" {
				t.Fatalf("meta/spec %+v %+v", sd.ObjectMeta, sd.Spec)
			}
		}},
		{"triton on one GPU", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Server.Type = v1alpha1.ServerTriton
			md.Spec.Resources = v1alpha1.Resources{GPU: 1, Memory: ptr.To(resource.MustParse("16Gi"))}
			md.Spec.NodeSelector = map[string]string{"gpu": "a100"}
			md.Spec.Tolerations = []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
			md.Spec.Replicas = ptr.To[int32](3)
		}, in, func(t *testing.T, sd *SeldonDeployment) {
			p := sd.Spec.Predictors[0]
			c := p.ComponentSpecs[0].Spec.Containers[0]
			gpu := c.Resources.Limits["nvidia.com/gpu"]
			mem := c.Resources.Limits[corev1.ResourceMemory]
			if p.Graph.Implementation != ImplementationTriton || c.Name != GraphNodeName || gpu.Value() != 1 || mem.String() != "16Gi" || *p.Replicas != 3 {
				t.Fatalf("predictor %+v container %+v", p, c)
			}
			spec := p.ComponentSpecs[0].Spec
			if spec.NodeSelector["gpu"] != "a100" || len(spec.Tolerations) != 1 {
				t.Fatalf("pod spec %+v", spec)
			}
		}},
		{"mlserver implementation", func(md *v1alpha1.ModelDeployment) { md.Spec.Server.Implementation = "mlserver_xgboost.XGBoostModel" }, in, func(t *testing.T, sd *SeldonDeployment) {
			env := sd.Spec.Predictors[0].ComponentSpecs[0].Spec.Containers[0].Env
			if len(env) != 1 || env[0].Name != "MLSERVER_MODEL_IMPLEMENTATION" || env[0].Value != "mlserver_xgboost.XGBoostModel" {
				t.Fatalf("env %+v", env)
			}
		}},
		{"secret credentials", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Credentials = &v1alpha1.Credentials{SecretName: "modelx-token"}
		}, in, func(t *testing.T, sd *SeldonDeployment) {
			if sd.Spec.Predictors[0].Graph.EnvSecretRefName != "modelx-token" {
				t.Fatalf("graph %+v", sd.Spec.Predictors[0].Graph)
			}
		}},
		{"service-account token", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Credentials = &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{ServiceAccountName: "puller"}}
		}, in, func(t *testing.T, sd *SeldonDeployment) {
			spec := sd.Spec.Predictors[0].ComponentSpecs[0].Spec
			if spec.ServiceAccountName != "puller" || len(spec.InitContainers) != 1 || len(spec.Volumes) != 2 {
				t.Fatalf("pod spec %+v", spec)
			}
			ic := spec.InitContainers[0]
			if ic.Name != "model-model-initializer" || ic.Args[1] != ModelMountPath || ic.Env[0].Value != TokenMountPath+"/token" || ic.Image != "modelx:1.0" {
				t.Fatalf("init container %+v", ic)
			}
			if aud := spec.Volumes[1].Projected.Sources[0].ServiceAccountToken.Audience; aud != "modelx" {
				t.Fatalf("audience %q", aud)
			}
		}},
		{"canary", func(md *v1alpha1.ModelDeployment) {
			md.Spec.FollowTag = &v1alpha1.FollowTag{Enabled: true, CanaryPercent: 20}
		},
			Inputs{Digest: digestA, CanaryDigest: digestB, InitializerImage: "modelx:1.0"}, func(t *testing.T, sd *SeldonDeployment) {
				p := sd.Spec.Predictors
				if len(p) != 2 || p[0].Traffic != 80 || p[1].Traffic != 20 || p[1].Name != CanaryPredictor || !strings.Contains(p[1].Graph.ModelURI, digestB) || !strings.Contains(p[0].Graph.ModelURI, digestA) {
					t.Fatalf("canary predictors %+v", p)
				}
			}},
		{"canary equal to main is no canary", func(*v1alpha1.ModelDeployment) {}, Inputs{Digest: digestA, CanaryDigest: digestA}, func(t *testing.T, sd *SeldonDeployment) {
			if len(sd.Spec.Predictors) != 1 {
				t.Fatalf("predictors %+v", sd.Spec.Predictors)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := base()
			tc.mutate(md)
			sd, err := RenderSeldonDeployment(md, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, sd)
		})
	}
	if _, err := RenderSeldonDeployment(base(), Inputs{}); err == nil {
		t.Fatal("rendering without a digest succeeded")
	}
}

func TestRenderIstio(t *testing.T) {
	md := base()
	sd, _ := RenderSeldonDeployment(md, Inputs{Digest: digestA})
	if RenderVirtualService(md, sd) != nil || RenderGateway(md) != nil {
		t.Fatal("rendered Istio objects for an unexposed model")
	}
	if URL(md) != "http://bert-main.ml.svc.cluster.local:8000/" {
		t.Fatalf("URL %q", URL(md))
	}
	md.Spec.Expose = &v1alpha1.Expose{Hosts: []string{"bert.models.example.com"}, CreateGateway: true, PathPrefix: "/bert"}
	md.Spec.FollowTag = &v1alpha1.FollowTag{Enabled: true, CanaryPercent: 10}
	sd, _ = RenderSeldonDeployment(md, Inputs{Digest: digestA, CanaryDigest: digestB})
	vs := RenderVirtualService(md, sd)
	r := vs.Spec.HTTP[0]
	if vs.Spec.Hosts[0] != "bert.models.example.com" || vs.Spec.Gateways[0] != "ml/bert" || r.Match[0].URI.Prefix != "/bert" || r.Rewrite.URI != "/" {
		t.Fatalf("virtual service %+v", vs.Spec)
	}
	if len(r.Route) != 2 || r.Route[0].Weight != 90 || r.Route[1].Weight != 10 || r.Route[0].Destination.Host != "bert-main.ml.svc.cluster.local" || r.Route[1].Destination.Port.Number != 8000 {
		t.Fatalf("routes %+v", r.Route)
	}
	gw := RenderGateway(md)
	if gw == nil || gw.Spec.Servers[0].Hosts[0] != "bert.models.example.com" || gw.Spec.Selector["istio"] != "ingressgateway" {
		t.Fatalf("gateway %+v", gw)
	}
	if URL(md) != "http://bert.models.example.com/bert" {
		t.Fatalf("URL %q", URL(md))
	}
	md.Spec.Expose = &v1alpha1.Expose{Hosts: []string{"h"}, Gateway: "istio-system/public"}
	if vs := RenderVirtualService(md, sd); vs.Spec.Gateways[0] != "istio-system/public" || vs.Spec.HTTP[0].Rewrite != nil {
		t.Fatalf("existing gateway %+v", vs.Spec)
	}
}
