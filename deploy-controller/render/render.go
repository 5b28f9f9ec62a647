// Package render turns a ModelDeployment into the objects that serve it: a
// Seldon Core SeldonDeployment (MLServer or Triton) and an Istio
// VirtualService (and Gateway). Every function here is pure: same inputs,
// same objects; the controller applies them.
package render

import (
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// Seldon implementation names of the two servers. TRITON_SERVER is built
// into Seldon Core; MLSERVER is the predictor_servers entry docs/deploy.md
// asks the platform to add to seldon-config.
const (
	ImplementationMLServer = "MLSERVER"
	ImplementationTriton   = "TRITON_SERVER"
)

// Names of what we render.
const (
	// GraphNodeName names the single graph node and its container.
	GraphNodeName = "model"
	// MainPredictor serves the current version; CanaryPredictor a new one under test.
	MainPredictor   = "main"
	CanaryPredictor = "canary"
	// ModelMountPath is where Seldon mounts the pulled model.
	ModelMountPath = "/mnt/models"
	// TokenMountPath holds the projected service-account token for modelxd.
	TokenMountPath = "/var/run/secrets/modelx"
	// SeldonHTTPPort is the HTTP port of a Seldon predictor Service.
	SeldonHTTPPort = 8000
)

// Version is one model version the SeldonDeployment serves and its share
// of traffic.
type Version struct {
	Digest  string
	Traffic int32
}

// PredictorName names a version's predictor after its digest: a new
// version runs beside the old one under its own predictor, and promotion
// shifts traffic between predictors without re-rolling a running one.
func PredictorName(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return "v-" + hex
}

// Inputs are what rendering needs beyond the spec.
type Inputs struct {
	// Versions, when set, are the predictors: Versions[0] the serving one;
	// their traffic sums to 100.
	Versions []Version
	// Digest is the manifest digest the main predictor serves.
	Digest string
	// CanaryDigest, when set, runs as the canary predictor.
	CanaryDigest string
	// InitializerImage is the modelx image that Seldon runs as the
	// storage initializer: `modelx pull URI /mnt/models`.
	InitializerImage string
}

// ModelURI is the storage-initializer URI of a version:
// modelx://HOST/REPOSITORY/NAME@DIGEST, with ?insecure=true for an http
// registry and the file selection as query parameters.
func ModelURI(src v1alpha1.ModelSource, digest string) (string, error) {
	u, err := url.Parse(src.Registry)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("spec.model.registry %q is not an http(s) URL", src.Registry)
	}
	q := url.Values{}
	if u.Scheme == "http" {
		q.Set("insecure", "true")
	}
	if len(src.Files) > 0 {
		q["file"] = src.Files
	} else {
		q.Set("model-files", "auto")
	}
	return "modelx://" + u.Host + "/" + src.Name + "@" + digest + "?" + q.Encode(), nil
}

// Labels mark every object rendered for a ModelDeployment.
func Labels(md *v1alpha1.ModelDeployment) map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": "modelx-controller", LabelName: md.Name}
}

// RenderSeldonDeployment renders the SeldonDeployment of md: the main predictor
// on in.Digest and, with a canary, a second predictor on in.CanaryDigest
// with that share of traffic.
func RenderSeldonDeployment(md *v1alpha1.ModelDeployment, in Inputs) (*SeldonDeployment, error) {
	if len(in.Versions) > 0 {
		var predictors []PredictorSpec
		for _, v := range in.Versions {
			p, err := predictor(md, in, PredictorName(v.Digest), v.Digest)
			if err != nil {
				return nil, err
			}
			p.Traffic = v.Traffic
			predictors = append(predictors, p)
		}
		return &SeldonDeployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: SeldonDeploymentGVK.GroupVersion().String(), Kind: SeldonDeploymentGVK.Kind},
			ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: Labels(md)},
			Spec:       SeldonDeploymentSpec{Name: md.Name, Protocol: "v2", Predictors: predictors},
		}, nil
	}
	if in.Digest == "" {
		return nil, fmt.Errorf("no resolved digest to render")
	}
	main, err := predictor(md, in, MainPredictor, in.Digest)
	if err != nil {
		return nil, err
	}
	predictors := []PredictorSpec{main}
	if in.CanaryDigest != "" && in.CanaryDigest != in.Digest {
		canary, err := predictor(md, in, CanaryPredictor, in.CanaryDigest)
		if err != nil {
			return nil, err
		}
		share := int32(10)
		if md.Spec.FollowTag != nil && md.Spec.FollowTag.CanaryPercent > 0 {
			share = md.Spec.FollowTag.CanaryPercent
		}
		predictors[0].Traffic, canary.Traffic = 100-share, share
		predictors = append(predictors, canary)
	}
	protocol := md.Spec.Server.Protocol
	if protocol == "" {
		protocol = "v2"
	}
	return &SeldonDeployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: SeldonDeploymentGVK.GroupVersion().String(), Kind: SeldonDeploymentGVK.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: Labels(md)},
		Spec:       SeldonDeploymentSpec{Name: md.Name, Protocol: protocol, Predictors: predictors},
	}, nil
}

func predictor(md *v1alpha1.ModelDeployment, in Inputs, name, digest string) (PredictorSpec, error) {
	uri, err := ModelURI(md.Spec.Model, digest)
	if err != nil {
		return PredictorSpec{}, err
	}
	spec := md.Spec
	unit := PredictiveUnit{Name: GraphNodeName, Type: "MODEL", ModelURI: uri, StorageInitializerImage: in.InitializerImage}
	container := corev1.Container{Name: GraphNodeName, Image: spec.Server.Image, Env: append([]corev1.EnvVar(nil), spec.Server.Env...), Resources: resources(spec.Resources)}
	switch spec.Server.Type {
	case v1alpha1.ServerTriton:
		unit.Implementation = ImplementationTriton
	default:
		unit.Implementation = ImplementationMLServer
		if spec.Server.Implementation != "" {
			container.Env = append(container.Env, corev1.EnvVar{Name: "MLSERVER_MODEL_IMPLEMENTATION", Value: spec.Server.Implementation})
		}
	}
	pod := corev1.PodSpec{Containers: []corev1.Container{container}, NodeSelector: spec.NodeSelector, Tolerations: spec.Tolerations}
	if c := spec.Credentials; c != nil {
		switch {
		case c.SecretName != "":
			unit.EnvSecretRefName = c.SecretName
		case c.ServiceAccountToken != nil:
			addTokenInitializer(&pod, c.ServiceAccountToken, uri, in.InitializerImage)
		}
	}
	labels := Labels(md)
	labels["deploy.modelx.io/digest"] = strings.TrimPrefix(digest, "sha256:")[:12]
	return PredictorSpec{
		Name: name, Graph: unit, Replicas: ptr.To(ptr.Deref(spec.Replicas, 1)), Traffic: 100,
		ComponentSpecs: []SeldonPodSpec{{Spec: pod}}, Labels: labels,
		Annotations: map[string]string{AnnotationDigest: digest},
	}, nil
}

// addTokenInitializer renders the storage initializer ourselves so it can
// read a projected service-account token: Seldon injects none when an init
// container of its name exists, and then only mounts the shared volume
// into the server.
func addTokenInitializer(pod *corev1.PodSpec, sat *v1alpha1.ServiceAccountToken, uri, image string) {
	audience := sat.Audience
	if audience == "" {
		audience = "modelx"
	}
	pod.ServiceAccountName = sat.ServiceAccountName
	shared := GraphNodeName + "-provision-location"
	pod.Volumes = append(pod.Volumes,
		corev1.Volume{Name: shared, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "modelx-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: audience, ExpirationSeconds: ptr.To[int64](3600), Path: "token"}}},
		}}})
	pod.InitContainers = append(pod.InitContainers, corev1.Container{
		Name: GraphNodeName + "-model-initializer", Image: image, Args: []string{uri, ModelMountPath},
		Env: []corev1.EnvVar{{Name: "MODELX_TOKEN_FILE", Value: TokenMountPath + "/token"}},
		VolumeMounts: []corev1.VolumeMount{
			{Name: shared, MountPath: ModelMountPath},
			{Name: "modelx-token", MountPath: TokenMountPath, ReadOnly: true},
		},
	})
}

func resources(r v1alpha1.Resources) corev1.ResourceRequirements {
	req := corev1.ResourceRequirements{}
	set := func(name corev1.ResourceName, q *resource.Quantity) {
		if q == nil {
			return
		}
		if req.Requests == nil {
			req.Requests, req.Limits = corev1.ResourceList{}, corev1.ResourceList{}
		}
		req.Requests[name], req.Limits[name] = *q, *q
	}
	set(corev1.ResourceCPU, r.CPU)
	set(corev1.ResourceMemory, r.Memory)
	if r.GPU > 0 {
		set("nvidia.com/gpu", resource.NewQuantity(int64(r.GPU), resource.DecimalSI))
	}
	return req
}

// PredictorService is the in-cluster host of a predictor's Service.
func PredictorService(md *v1alpha1.ModelDeployment, predictor string) string {
	return fmt.Sprintf("%s-%s.%s.svc.cluster.local", md.Name, predictor, md.Namespace)
}

// RenderVirtualService routes md's hosts and path prefix to its predictors,
// split by traffic when a canary runs; nil when md is not exposed.
func RenderVirtualService(md *v1alpha1.ModelDeployment, sd *SeldonDeployment) *VirtualService {
	ex := md.Spec.Expose
	if ex == nil {
		return nil
	}
	prefix := ex.PathPrefix
	if prefix == "" {
		prefix = "/"
	}
	var dests []HTTPRouteDestination
	for _, p := range sd.Spec.Predictors {
		dests = append(dests, HTTPRouteDestination{
			Destination: Destination{Host: PredictorService(md, p.Name), Port: &PortSelector{Number: SeldonHTTPPort}},
			Weight:      p.Traffic,
		})
	}
	route := HTTPRoute{Name: "model", Match: []HTTPMatchRequest{{URI: &StringMatch{Prefix: prefix}}}, Route: dests}
	if prefix != "/" {
		route.Rewrite = &HTTPRewrite{URI: "/"}
	}
	gateways := []string{}
	switch {
	case ex.CreateGateway:
		gateways = append(gateways, md.Namespace+"/"+md.Name)
	case ex.Gateway != "":
		gateways = append(gateways, ex.Gateway)
	}
	return &VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: VirtualServiceGVK.GroupVersion().String(), Kind: VirtualServiceGVK.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: Labels(md)},
		Spec:       VirtualServiceSpec{Hosts: ex.Hosts, Gateways: gateways, HTTP: []HTTPRoute{route}},
	}
}

// RenderGateway is the Gateway md asks to be created, or nil.
func RenderGateway(md *v1alpha1.ModelDeployment) *Gateway {
	ex := md.Spec.Expose
	if ex == nil || !ex.CreateGateway {
		return nil
	}
	return &Gateway{
		TypeMeta:   metav1.TypeMeta{APIVersion: GatewayGVK.GroupVersion().String(), Kind: GatewayGVK.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: Labels(md)},
		Spec: GatewaySpec{
			Selector: map[string]string{"istio": "ingressgateway"},
			Servers:  []GatewayServer{{Port: GatewayPort{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: ex.Hosts}},
		},
	}
}

// URL is where md answers: its first host and prefix, or the in-cluster
// Service of the main predictor.
func URL(md *v1alpha1.ModelDeployment) string {
	if ex := md.Spec.Expose; ex != nil && len(ex.Hosts) > 0 {
		prefix := ex.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		return "http://" + ex.Hosts[0] + prefix
	}
	return fmt.Sprintf("http://%s:%d/", PredictorService(md, MainPredictor), SeldonHTTPPort)
}
