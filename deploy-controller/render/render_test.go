package render

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
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

// one serves digestA alone.
func one() Inputs {
	return Inputs{Versions: []Version{{Digest: digestA, Traffic: 100}}, InitializerImage: "modelx/modelx:1.0"}
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

func TestPredictorName(t *testing.T) {
	if got := PredictorName(digestA); got != "v-aaaaaaaaaaaa" {
		t.Fatalf("PredictorName = %q", got)
	}
}

func env(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func TestRenderSeldonDeployment(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*v1alpha1.ModelDeployment)
		in     Inputs
		check  func(t *testing.T, sd *SeldonDeployment)
	}{
		{"mlserver is a custom server", func(*v1alpha1.ModelDeployment) {}, one(), func(t *testing.T, sd *SeldonDeployment) {
			p := sd.Spec.Predictors
			if len(p) != 1 || p[0].Name != "v-aaaaaaaaaaaa" || *p[0].Replicas != 1 || p[0].Traffic != 100 {
				t.Fatalf("predictors %+v", p)
			}
			g := p[0].Graph
			// No implementation: Seldon v1 has no MLSERVER server; the
			// modelUri keeps its storage initializer.
			if g.Implementation != "" || g.Name != GraphNodeName || g.Type != "MODEL" || !strings.HasPrefix(g.ModelURI, "modelx://modelxd.modelx:8080/nlp/bert@"+digestA) || g.StorageInitializerImage != "modelx/modelx:1.0" {
				t.Fatalf("graph %+v", g)
			}
			c := p[0].ComponentSpecs[0].Spec.Containers[0]
			if c.Name != GraphNodeName || c.Image != DefaultMLServerImage {
				t.Fatalf("container %+v", c)
			}
			if v, _ := env(c, "MLSERVER_MODELS_DIR"); v != ModelMountPath {
				t.Fatalf("MLSERVER_MODELS_DIR %q", v)
			}
			if _, ok := env(c, EnvMLServerImplementation); ok {
				t.Fatal("implementation set without spec.server.implementation")
			}
			if c.ReadinessProbe.HTTPGet.Path != "/v2/health/ready" || c.ReadinessProbe.HTTPGet.Port.StrVal != "http" || c.LivenessProbe.HTTPGet.Path != "/v2/health/live" {
				t.Fatalf("probes %+v %+v", c.ReadinessProbe, c.LivenessProbe)
			}
			a := p[0].Annotations
			if a[AnnotationSeldonSvcName] != "bert-v-aaaaaaaaaaaa" || a[AnnotationDigest] != digestA || a[AnnotationSpecHash] == "" {
				t.Fatalf("predictor annotations %v", a)
			}
			if sd.Spec.Protocol != "v2" || sd.Name != "bert" || sd.Namespace != "ml" || sd.Labels[LabelName] != "bert" || sd.Annotations != nil {
				t.Fatalf("meta/spec %+v %+v", sd.ObjectMeta, sd.Spec)
			}
		}},
		{"mlserver implementation, image and env", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Server.Implementation = "mlserver_xgboost.XGBoostModel"
			md.Spec.Server.Image = "registry.example.com/mlserver:custom"
			md.Spec.Server.Env = []corev1.EnvVar{{Name: "MLSERVER_PARALLEL_WORKERS", Value: "2"}}
		}, one(), func(t *testing.T, sd *SeldonDeployment) {
			c := sd.Spec.Predictors[0].ComponentSpecs[0].Spec.Containers[0]
			impl, _ := env(c, EnvMLServerImplementation)
			workers, _ := env(c, "MLSERVER_PARALLEL_WORKERS")
			if c.Image != "registry.example.com/mlserver:custom" || impl != "mlserver_xgboost.XGBoostModel" || workers != "2" {
				t.Fatalf("container %+v", c)
			}
		}},
		{"triton on one GPU", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Server.Type = v1alpha1.ServerTriton
			md.Spec.Resources = v1alpha1.Resources{GPU: 1, Memory: ptr.To(resource.MustParse("16Gi"))}
			md.Spec.NodeSelector = map[string]string{"gpu": "a100"}
			md.Spec.Tolerations = []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
			md.Spec.Replicas = ptr.To[int32](3)
		}, one(), func(t *testing.T, sd *SeldonDeployment) {
			p := sd.Spec.Predictors[0]
			c := p.ComponentSpecs[0].Spec.Containers[0]
			gpu := c.Resources.Limits["nvidia.com/gpu"]
			mem := c.Resources.Limits[corev1.ResourceMemory]
			if p.Graph.Implementation != ImplementationTriton || c.Name != GraphNodeName || c.Image != "" || gpu.Value() != 1 || mem.String() != "16Gi" || *p.Replicas != 3 {
				t.Fatalf("predictor %+v container %+v", p, c)
			}
			spec := p.ComponentSpecs[0].Spec
			if spec.NodeSelector["gpu"] != "a100" || len(spec.Tolerations) != 1 {
				t.Fatalf("pod spec %+v", spec)
			}
		}},
		{"secret credentials", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Credentials = &v1alpha1.Credentials{SecretName: "modelx-token"}
		}, one(), func(t *testing.T, sd *SeldonDeployment) {
			p := sd.Spec.Predictors[0]
			if p.Graph.EnvSecretRefName != "modelx-token" || len(p.ComponentSpecs[0].Spec.InitContainers) != 0 {
				t.Fatalf("predictor %+v", p)
			}
		}},
		{"service-account token", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Credentials = &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{ServiceAccountName: "puller"}}
		}, one(), func(t *testing.T, sd *SeldonDeployment) {
			spec := sd.Spec.Predictors[0].ComponentSpecs[0].Spec
			if spec.ServiceAccountName != "puller" || len(spec.InitContainers) != 1 || len(spec.Volumes) != 2 {
				t.Fatalf("pod spec %+v", spec)
			}
			ic := spec.InitContainers[0]
			if ic.Name != "model-model-initializer" || ic.Args[1] != ModelMountPath || ic.Env[0].Value != TokenMountPath+"/token" || ic.Image != "modelx/modelx:1.0" {
				t.Fatalf("init container %+v", ic)
			}
			if aud := spec.Volumes[1].Projected.Sources[0].ServiceAccountToken.Audience; aud != "modelx" {
				t.Fatalf("audience %q", aud)
			}
			for list, want := range map[string]map[corev1.ResourceName]string{
				"requests": {corev1.ResourceCPU: "100m", corev1.ResourceMemory: "256Mi"},
				"limits":   {corev1.ResourceCPU: "1", corev1.ResourceMemory: "1Gi"},
			} {
				got := ic.Resources.Requests
				if list == "limits" {
					got = ic.Resources.Limits
				}
				for name, q := range want {
					if v := got[name]; v.String() != q {
						t.Errorf("initializer %s %s = %s, want %s", list, name, v.String(), q)
					}
				}
			}
			sc := ic.SecurityContext
			if sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
				!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Fatalf("initializer security context %+v", sc)
			}
		}},
		{"initializer resources from options", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Credentials = &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{}}
		}, func() Inputs {
			in := one()
			in.Initializer.Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
			}
			return in
		}(), func(t *testing.T, sd *SeldonDeployment) {
			r := sd.Spec.Predictors[0].ComponentSpecs[0].Spec.InitContainers[0].Resources
			memReq, memLim, cpuReq := r.Requests[corev1.ResourceMemory], r.Limits[corev1.ResourceMemory], r.Requests[corev1.ResourceCPU]
			if memReq.String() != "1Gi" || memLim.String() != "4Gi" || cpuReq.String() != "100m" {
				t.Fatalf("resources %+v", r)
			}
		}},
		{"two versions split traffic", func(*v1alpha1.ModelDeployment) {}, Inputs{Versions: []Version{{Digest: digestA, Traffic: 80}, {Digest: digestB, Traffic: 20}}}, func(t *testing.T, sd *SeldonDeployment) {
			p := sd.Spec.Predictors
			if len(p) != 2 || p[0].Traffic != 80 || p[1].Traffic != 20 || p[1].Name != "v-bbbbbbbbbbbb" || !strings.Contains(p[1].Graph.ModelURI, digestB) {
				t.Fatalf("predictors %+v", p)
			}
		}},
		{"a version without traffic still runs", func(*v1alpha1.ModelDeployment) {}, Inputs{Versions: []Version{{Digest: digestA, Traffic: 100}, {Digest: digestB}}}, func(t *testing.T, sd *SeldonDeployment) {
			p := sd.Spec.Predictors
			if len(p) != 2 || p[1].Traffic != 0 || p[1].Annotations[AnnotationSeldonSvcName] != "bert-v-bbbbbbbbbbbb" {
				t.Fatalf("predictors %+v", p)
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
}

// TestSpecHashIgnoresTraffic: the controller hashes a version rendered
// alone and compares it with what runs beside another version.
func TestSpecHashIgnoresTraffic(t *testing.T) {
	alone, err := RenderSeldonDeployment(base(), Inputs{Versions: []Version{{Digest: digestB, Traffic: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	split, err := RenderSeldonDeployment(base(), Inputs{Versions: []Version{{Digest: digestA, Traffic: 90}, {Digest: digestB, Traffic: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := alone.Spec.Predictors[0].Annotations[AnnotationSpecHash], split.Spec.Predictors[1].Annotations[AnnotationSpecHash]; a == "" || a != b {
		t.Fatalf("spec hash alone %q, in a split %q", a, b)
	}
}

func TestRenderSeldonDeploymentRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*v1alpha1.ModelDeployment)
		in     Inputs
		want   string // part of the error
	}{
		{"no versions", func(*v1alpha1.ModelDeployment) {}, Inputs{}, "no version"},
		{"bad digest", func(*v1alpha1.ModelDeployment) {}, Inputs{Versions: []Version{{Digest: "sha256:abc", Traffic: 100}}}, `"sha256:abc"`},
		{"traffic below 100", func(*v1alpha1.ModelDeployment) {}, Inputs{Versions: []Version{{Digest: digestA, Traffic: 90}}}, "sums to 90%"},
		{"traffic above 100", func(*v1alpha1.ModelDeployment) {}, Inputs{Versions: []Version{{Digest: digestA, Traffic: 100}, {Digest: digestB, Traffic: 10}}}, "sums to 110%"},
		{"negative traffic", func(*v1alpha1.ModelDeployment) {}, Inputs{Versions: []Version{{Digest: digestA, Traffic: 110}, {Digest: digestB, Traffic: -10}}}, "outside 0..100"},
		{"same predictor twice", func(*v1alpha1.ModelDeployment) {}, Inputs{Versions: []Version{{Digest: digestA, Traffic: 50}, {Digest: "sha256:aaaaaaaaaaaa" + strings.Repeat("b", 52), Traffic: 50}}}, "share the predictor name"},
		{"protocol seldon", func(md *v1alpha1.ModelDeployment) { md.Spec.Server.Protocol = "seldon" }, one(), `protocol "seldon" is not served`},
		{"protocol tensorflow", func(md *v1alpha1.ModelDeployment) { md.Spec.Server.Protocol = "tensorflow" }, one(), `protocol "tensorflow" is not served`},
		{"name with a dot", func(md *v1alpha1.ModelDeployment) { md.Name = "bert.v1" }, one(), `metadata.name "bert.v1"`},
		{"name too long", func(md *v1alpha1.ModelDeployment) { md.Name = strings.Repeat("b", 64) }, one(), "DNS-1035 label"},
		{"pathPrefix without /", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Expose = &v1alpha1.Expose{Hosts: []string{"h"}, PathPrefix: "bert"}
		}, one(), "does not start with /"},
		{"tls without createGateway", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Expose = &v1alpha1.Expose{Hosts: []string{"h"}, Gateway: "istio-system/public", TLS: &v1alpha1.ExposeTLS{CredentialName: "cert"}}
		}, one(), "tls needs createGateway"},
	}
	// Every variable Seldon or render sets is refused, by name.
	for name := range reservedEnv {
		tests = append(tests, struct {
			name   string
			mutate func(*v1alpha1.ModelDeployment)
			in     Inputs
			want   string
		}{"env " + name, func(md *v1alpha1.ModelDeployment) {
			md.Spec.Server.Env = []corev1.EnvVar{{Name: "OK", Value: "1"}, {Name: name, Value: "x"}}
		}, one(), "spec.server.env sets " + name})
	}
	tests = append(tests, struct {
		name   string
		mutate func(*v1alpha1.ModelDeployment)
		in     Inputs
		want   string
	}{"env PREDICTIVE_UNIT_ prefix on triton", func(md *v1alpha1.ModelDeployment) {
		md.Spec.Server.Type = v1alpha1.ServerTriton
		md.Spec.Server.Env = []corev1.EnvVar{{Name: "PREDICTIVE_UNIT_FUTURE", Value: "x"}}
	}, one(), "PREDICTIVE_UNIT_FUTURE"})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := base()
			tc.mutate(md)
			_, err := RenderSeldonDeployment(md, tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestProtocolMessage(t *testing.T) {
	for protocol, ok := range map[string]bool{"": true, "v2": true, "seldon": false, "tensorflow": false, "kfserving": false} {
		if msg := ProtocolMessage(protocol); (msg == "") != ok || (!ok && !strings.Contains(msg, "v2")) {
			t.Errorf("ProtocolMessage(%q) = %q", protocol, msg)
		}
	}
}

func TestImplementationIgnored(t *testing.T) {
	for _, tc := range []struct {
		files []string
		impl  string
		want  bool
	}{
		{[]string{"model-settings.json", "weights.json"}, "models.LinearModel", true},
		{[]string{"sub/model-settings.json"}, "models.LinearModel", true},
		{[]string{"model-settings.json"}, "", false},
		{[]string{"weights.json", "my-model-settings.json"}, "models.LinearModel", false},
		{nil, "models.LinearModel", false},
	} {
		if got := ImplementationIgnored(tc.files, tc.impl); got != tc.want {
			t.Errorf("ImplementationIgnored(%v, %q) = %v", tc.files, tc.impl, got)
		}
	}
}

func TestPredictorServiceName(t *testing.T) {
	named := func(name string) *v1alpha1.ModelDeployment {
		md := base()
		md.Name = name
		return md
	}
	pred := PredictorName(digestA) // 14 characters
	// Up to 63 characters the name is Seldon's own: NAME-PREDICTOR.
	fits := strings.Repeat("b", 63-1-len(pred))
	if got := PredictorServiceName(named(fits), pred); got != fits+"-"+pred {
		t.Fatalf("63 characters: %q", got)
	}
	long := strings.Repeat("b", 63-len(pred)) // NAME-PREDICTOR is 64 characters
	longer := long + "x"
	got := PredictorServiceName(named(long), pred)
	if len(got) > 63 || len(validation.IsDNS1035Label(got)) > 0 || !strings.HasSuffix(got, "-"+pred) || !strings.HasPrefix(got, "bbbb") {
		t.Fatalf("64 characters: %q (%d)", got, len(got))
	}
	if again := PredictorServiceName(named(long), pred); again != got {
		t.Fatalf("not deterministic: %q, then %q", got, again)
	}
	if other := PredictorServiceName(named(longer), pred); other == got {
		t.Fatalf("two names share the Service %q", got)
	}
	if other := PredictorServiceName(named(long), PredictorName(digestB)); other == got {
		t.Fatalf("two predictors share the Service %q", got)
	}
	// Whatever the name, the result is a Service name.
	for _, name := range []string{"1bert", "Bert.V1", strings.Repeat("a.", 40)} {
		if got := PredictorServiceName(named(name), pred); len(validation.IsDNS1035Label(got)) > 0 {
			t.Errorf("PredictorServiceName(%q) = %q: %v", name, got, validation.IsDNS1035Label(got))
		}
	}
	if h := PredictorServiceHost(base(), pred); h != "bert-v-aaaaaaaaaaaa.ml.svc.cluster.local" {
		t.Fatalf("host %q", h)
	}
}

func TestNormalizePathPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "/", ""},
		{"/", "/", ""},
		{"/bert", "/bert/", ""},
		{"/bert/", "/bert/", ""},
		{"/models/bert", "/models/bert/", ""},
		{"bert", "", "does not start with /"},
		{"/bert?x=1", "", "holds '?'"},
		{"/be rt", "", "holds ' '"},
		{"//bert", "", "empty segment"},
		{"/a/../b", "", ". or .."},
	} {
		got, err := NormalizePathPrefix(tc.in)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("NormalizePathPrefix(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestRouting covers spec.expose under each routing of the cluster: the
// Exposed condition, the VirtualService, the Gateway, the Seldon
// annotations and the URL always agree.
func TestRouting(t *testing.T) {
	split := []Version{{Digest: digestA, Traffic: 90}, {Digest: digestB, Traffic: 10}}
	own := Routing{Istio: true}
	seldon := Routing{Istio: true, SeldonIstio: true}
	hostA := "bert-v-aaaaaaaaaaaa.ml.svc.cluster.local"
	type want struct {
		reason     string
		vs, gw     bool
		url        string
		annotation map[string]string
	}
	tests := []struct {
		name    string
		expose  *v1alpha1.Expose
		routing Routing
		want    want
		check   func(t *testing.T, vs *VirtualService, gw *Gateway)
	}{
		{"not exposed", nil, own, want{reason: ReasonNotExposed, url: "http://" + hostA + ":8000/"}, nil},
		{"no Istio", &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, CreateGateway: true}, Routing{}, want{reason: ReasonIstioNotInstalled, url: "http://" + hostA + ":8000/"}, nil},
		{"our routes and gateway", &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, CreateGateway: true, PathPrefix: "/bert"}, own,
			want{reason: ReasonRouted, vs: true, gw: true, url: "http://bert.example.com/bert/"},
			func(t *testing.T, vs *VirtualService, gw *Gateway) {
				r := vs.Spec.HTTP[0]
				if vs.Name != "bert-modelx" || vs.Namespace != "ml" || vs.Spec.Hosts[0] != "bert.example.com" || !slices.Equal(vs.Spec.Gateways, []string{"ml/bert-modelx"}) {
					t.Fatalf("virtual service %+v", vs)
				}
				if r.Match[0].URI.Prefix != "/bert/" || r.Rewrite.URI != "/" {
					t.Fatalf("match %+v rewrite %+v", r.Match[0].URI, r.Rewrite)
				}
				if len(r.Route) != 2 || r.Route[0].Weight != 90 || r.Route[1].Weight != 10 || r.Route[0].Destination.Host != hostA ||
					r.Route[1].Destination.Host != "bert-v-bbbbbbbbbbbb.ml.svc.cluster.local" || r.Route[1].Destination.Port.Number != 8000 {
					t.Fatalf("routes %+v", r.Route)
				}
				if gw.Name != "bert-modelx" || gw.Spec.Selector["istio"] != "ingress" || len(gw.Spec.Servers) != 1 ||
					gw.Spec.Servers[0].Port.Number != 80 || gw.Spec.Servers[0].TLS != nil || gw.Spec.Servers[0].Hosts[0] != "bert.example.com" {
					t.Fatalf("gateway %+v", gw)
				}
			}},
		{"an existing gateway, root prefix", &v1alpha1.Expose{Hosts: []string{"*.example.com", "bert.example.com"}, Gateway: "istio-system/public"}, own,
			want{reason: ReasonRouted, vs: true, url: "http://bert.example.com/"},
			func(t *testing.T, vs *VirtualService, _ *Gateway) {
				if !slices.Equal(vs.Spec.Gateways, []string{"istio-system/public"}) || vs.Spec.HTTP[0].Rewrite != nil || vs.Spec.HTTP[0].Match[0].URI.Prefix != "/" {
					t.Fatalf("virtual service %+v", vs.Spec)
				}
			}},
		{"tls", &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, CreateGateway: true, TLS: &v1alpha1.ExposeTLS{CredentialName: "bert-cert"}}, own,
			want{reason: ReasonRouted, vs: true, gw: true, url: "https://bert.example.com/"},
			func(t *testing.T, _ *VirtualService, gw *Gateway) {
				s := gw.Spec.Servers
				if len(s) != 2 || s[0].Port.Number != 80 || !s[0].TLS.HTTPSRedirect ||
					s[1].Port != (GatewayPort{Number: 443, Name: "https", Protocol: "HTTPS"}) || s[1].TLS.Mode != "SIMPLE" || s[1].TLS.CredentialName != "bert-cert" || s[1].Hosts[0] != "bert.example.com" {
					t.Fatalf("servers %+v", s)
				}
			}},
		{"gateway selector", &v1alpha1.Expose{Hosts: []string{"h.example.com"}, CreateGateway: true}, Routing{Istio: true, GatewaySelector: map[string]string{"istio": "ingressgateway", "tier": "public"}},
			want{reason: ReasonRouted, vs: true, gw: true, url: "http://h.example.com/"},
			func(t *testing.T, _ *VirtualService, gw *Gateway) {
				if len(gw.Spec.Selector) != 2 || gw.Spec.Selector["istio"] != "ingressgateway" {
					t.Fatalf("selector %v", gw.Spec.Selector)
				}
			}},
		{"seldon routes", &v1alpha1.Expose{Hosts: []string{"bert.example.com", "models.example.com"}, Gateway: "istio-system/public"}, seldon,
			want{reason: ReasonRouted, url: "http://bert.example.com/seldon/ml/bert/", annotation: map[string]string{
				"seldon.io/istio-host": "bert.example.com,models.example.com", "seldon.io/istio-gateway": "istio-system/public"}}, nil},
		{"seldon routes through our gateway", &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, CreateGateway: true, TLS: &v1alpha1.ExposeTLS{CredentialName: "c"}}, seldon,
			want{reason: ReasonRouted, gw: true, url: "https://bert.example.com/seldon/ml/bert/", annotation: map[string]string{
				"seldon.io/istio-host": "bert.example.com", "seldon.io/istio-gateway": "ml/bert-modelx"}}, nil},
		{"seldon's default gateway", &v1alpha1.Expose{Hosts: []string{"bert.example.com"}}, seldon,
			want{reason: ReasonRouted, url: "http://bert.example.com/seldon/ml/bert/", annotation: map[string]string{"seldon.io/istio-host": "bert.example.com"}}, nil},
		{"seldon's own prefix", &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, PathPrefix: "/seldon/ml/bert"}, seldon,
			want{reason: ReasonRouted, url: "http://bert.example.com/seldon/ml/bert/", annotation: map[string]string{"seldon.io/istio-host": "bert.example.com"}}, nil},
		{"seldon cannot route a prefix", &v1alpha1.Expose{Hosts: []string{"bert.example.com"}, CreateGateway: true, PathPrefix: "/bert/"}, seldon,
			want{reason: ReasonPathPrefixUnsupported, url: "http://" + hostA + ":8000/"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := base()
			md.Spec.Expose = tc.expose
			in := Inputs{Versions: split, Routing: tc.routing}
			status, reason, message := Exposed(md, in)
			if reason != tc.want.reason || (status == metav1.ConditionTrue) != (reason == ReasonRouted) || message == "" {
				t.Fatalf("Exposed = %s, %s, %q; want reason %s", status, reason, message, tc.want.reason)
			}
			vs, err := RenderVirtualService(md, in)
			if err != nil {
				t.Fatal(err)
			}
			gw, err := RenderGateway(md, in)
			if err != nil {
				t.Fatal(err)
			}
			sd, err := RenderSeldonDeployment(md, in)
			if err != nil {
				t.Fatal(err)
			}
			if (vs != nil) != tc.want.vs || (gw != nil) != tc.want.gw {
				t.Fatalf("virtual service %v, gateway %v; want %v, %v", vs != nil, gw != nil, tc.want.vs, tc.want.gw)
			}
			if got := URL(md, in); got != tc.want.url {
				t.Fatalf("URL %q, want %q", got, tc.want.url)
			}
			if len(sd.Annotations) != len(tc.want.annotation) {
				t.Fatalf("SeldonDeployment annotations %v, want %v", sd.Annotations, tc.want.annotation)
			}
			for k, v := range tc.want.annotation {
				if sd.Annotations[k] != v {
					t.Fatalf("SeldonDeployment annotations %v, want %v", sd.Annotations, tc.want.annotation)
				}
			}
			if tc.check != nil {
				tc.check(t, vs, gw)
			}
		})
	}
}

// TestRouteSkipsVersionsWithoutTraffic: a version that takes no traffic
// has no destination (Istio wants the weights of several destinations to
// sum to 100; a lone destination takes all).
func TestRouteSkipsVersionsWithoutTraffic(t *testing.T) {
	md := base()
	md.Spec.Expose = &v1alpha1.Expose{Hosts: []string{"h"}}
	in := Inputs{Versions: []Version{{Digest: digestA}, {Digest: digestB, Traffic: 100}}, Routing: Routing{Istio: true}}
	vs, err := RenderVirtualService(md, in)
	if err != nil {
		t.Fatal(err)
	}
	r := vs.Spec.HTTP[0].Route
	if len(r) != 1 || r[0].Weight != 100 || r[0].Destination.Host != "bert-v-bbbbbbbbbbbb.ml.svc.cluster.local" {
		t.Fatalf("routes %+v", r)
	}
	if got := URL(base(), in); got != "http://bert-v-bbbbbbbbbbbb.ml.svc.cluster.local:8000/" {
		t.Fatalf("URL %q: want the version with the traffic", got)
	}
	if got := URL(base(), Inputs{}); got != "" {
		t.Fatalf("URL without versions %q", got)
	}
}

// Every server names its metrics port, so that Seldon does not number it
// by the predictor's position: a predictor's pods do not change when
// another version's predictor comes or goes.
func TestMetricsPortPinned(t *testing.T) {
	for _, server := range []v1alpha1.ServerType{v1alpha1.ServerMLServer, v1alpha1.ServerTriton} {
		md := base()
		md.Spec.Server.Type = server
		sd, err := RenderSeldonDeployment(md, Inputs{Versions: []Version{{Digest: digestA, Traffic: 90}, {Digest: digestB, Traffic: 10}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range sd.Spec.Predictors {
			ports := p.ComponentSpecs[0].Spec.Containers[0].Ports
			if i := slices.IndexFunc(ports, func(p corev1.ContainerPort) bool { return p.Name == MetricsPortName }); i < 0 || ports[i].ContainerPort != MetricsPort {
				t.Fatalf("%s predictor %s: ports %+v", server, p.Name, ports)
			}
		}
	}
}
