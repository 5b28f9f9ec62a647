// Package render turns a ModelDeployment into the objects that serve it: a
// Seldon Core v1 SeldonDeployment (MLServer or Triton), and, unless Seldon
// routes through Istio itself, an Istio VirtualService and Gateway. Every
// function here is pure: same inputs, same objects; the controller applies
// them.
//
// Facts this package relies on are Seldon Core v1.19's (operator/):
//   - a predictor's Service is named by its seldon.io/svc-name annotation
//     (apis/machinelearning.seldon.io/v1/seldondeployment_types.go,
//     GetPredictorKey); we always set it (PredictorServiceName) and route to
//     that name, port 8000, the executor's HTTP port
//     (controllers/seldondeployment_controller.go, DEFAULT_ENGINE_CONTAINER_PORT);
//   - a graph node without implementation whose container we give is a
//     custom server, and Seldon still injects its storage initializer when
//     the node has a modelUri (controllers/seldondeployment_prepackaged_servers.go,
//     addModelServersAndInitContainers); MLServer runs that way, and with
//     mount image has no modelUri, so no initializer;
//   - Triton (TRITON_SERVER) needs a modelUri (the webhook refuses a
//     prepackaged server without one); under the spec annotation
//     seldon.io/no-storage-initializer Seldon injects no initializer and
//     passes the modelUri as --model-repository (addTritonServer);
//   - with its Istio integration on, Seldon makes a VirtualService named
//     after the SeldonDeployment for /seldon/NAMESPACE/NAME/, with hosts and
//     gateway from annotations (controllers/istio.go).
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

// ImplementationTriton is Seldon's prepackaged Triton server. MLServer has
// no implementation: Seldon v1 ships no MLSERVER server, so it runs as a
// custom server container (see MLServerContainer).
const ImplementationTriton = "TRITON_SERVER"

// Names and ports of what we render.
const (
	// GraphNodeName names the single graph node and its container.
	GraphNodeName = "model"
	// ModelMountPath is where the pulled model is mounted.
	ModelMountPath = "/mnt/models"
	// TokenMountPath holds the projected service-account token for modelxd.
	TokenMountPath = "/var/run/secrets/modelx"
	// SeldonHTTPPort is the HTTP port of a Seldon predictor Service: the
	// executor's, which forwards v2 requests to the server container.
	SeldonHTTPPort = 8000
	// ProtocolV2 is the one inference protocol served.
	ProtocolV2 = "v2"
)

// Version is one model version the SeldonDeployment serves and its share
// of traffic, in percent.
type Version struct {
	Digest  string
	Traffic int32
	// ImageDigest is the digest of the version's image form (its OCI image
	// index), which spec.model.mount image mounts; unused otherwise.
	ImageDigest string
}

// Inputs are what rendering needs beyond the spec.
type Inputs struct {
	// Versions are the predictors, one per version; their traffic sums to
	// 100. A version with no traffic still runs, without a route.
	Versions []Version
	// InitializerImage is the modelx image that pulls the model:
	// `modelx pull URI /mnt/models`.
	InitializerImage string
	// Initializer configures the initializer container rendered for
	// service-account-token credentials.
	Initializer InitializerOptions
	// Routing says what the cluster offers for spec.expose.
	Routing Routing
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

// RenderSeldonDeployment renders the SeldonDeployment of md: one predictor
// per version in in.Versions, named PredictorName(digest), with that
// version's traffic, its Service name pinned (PredictorServiceName) and its
// spec hash stamped (AnnotationSpecHash). Under Seldon's Istio integration
// it carries the annotations that route spec.expose (SeldonIstioAnnotations).
// It refuses a spec or versions it cannot serve faithfully.
func RenderSeldonDeployment(md *v1alpha1.ModelDeployment, in Inputs) (*SeldonDeployment, error) {
	if err := Validate(md); err != nil {
		return nil, err
	}
	if err := validateVersions(in.Versions); err != nil {
		return nil, err
	}
	if err := validateImageDigests(md, in.Versions); err != nil {
		return nil, err
	}
	var predictors []PredictorSpec
	for _, v := range in.Versions {
		p, err := predictor(md, in, v)
		if err != nil {
			return nil, err
		}
		predictors = append(predictors, p)
	}
	sd := &SeldonDeployment{
		TypeMeta: metav1.TypeMeta{APIVersion: SeldonDeploymentGVK.GroupVersion().String(), Kind: SeldonDeploymentGVK.Kind},
		// The routing annotations go on metadata, not spec.annotations:
		// Seldon reads both, but copies spec.annotations onto every pod
		// template, and a host change must not restart the servers.
		ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: Labels(md), Annotations: SeldonIstioAnnotations(md, in)},
		Spec:       SeldonDeploymentSpec{Name: md.Name, Protocol: ProtocolV2, Predictors: predictors},
	}
	if MountOf(md) == v1alpha1.MountImage {
		sd.Spec.Annotations = map[string]string{AnnotationSeldonNoStorageInitializer: "true"}
	}
	StampSpecHashes(sd)
	return sd, nil
}

// MetricsPortName and MetricsPort are the server's metrics port, as
// Seldon names and numbers it.
const (
	MetricsPortName = "metrics"
	MetricsPort     = 6000
)

// pinMetricsPort names the server's metrics port. Seldon numbers the
// metrics ports of a SeldonDeployment's containers one after another
// across all its predictors (6000, 6001, ...) unless a container names
// its own: without this, adding or removing a version's predictor would
// renumber, and so restart, the pods of the versions beside it.
func pinMetricsPort(c *corev1.Container) {
	for _, p := range c.Ports {
		if p.Name == MetricsPortName {
			return
		}
	}
	c.Ports = append(c.Ports, corev1.ContainerPort{Name: MetricsPortName, ContainerPort: MetricsPort, Protocol: corev1.ProtocolTCP})
}

func predictor(md *v1alpha1.ModelDeployment, in Inputs, v Version) (PredictorSpec, error) {
	if MountOf(md) == v1alpha1.MountImage {
		return imagePredictor(md, v)
	}
	uri, err := ModelURI(md.Spec.Model, v.Digest)
	if err != nil {
		return PredictorSpec{}, err
	}
	spec := md.Spec
	unit := PredictiveUnit{Name: GraphNodeName, Type: "MODEL", ModelURI: uri, StorageInitializerImage: in.InitializerImage}
	container := serverContainer(spec, &unit)
	pod := corev1.PodSpec{Containers: []corev1.Container{container}, NodeSelector: spec.NodeSelector, Tolerations: spec.Tolerations}
	if c := spec.Credentials; c != nil {
		switch {
		case c.SecretName != "":
			unit.EnvSecretRefName = c.SecretName
		case c.ServiceAccountToken != nil:
			addTokenInitializer(&pod, c.ServiceAccountToken, uri, in.InitializerImage, in.Initializer)
		}
	}
	return versionPredictor(md, v, unit, pod), nil
}

// imagePredictor is a version's predictor with mount image: the image
// volume of its image form mounted read-only at ModelMountPath in the
// server container, and no storage initializer. MLServer's graph node has
// no modelUri, so Seldon injects none, and MLSERVER_MODEL_URI is set here
// as Seldon would; Triton's has ModelMountPath as its modelUri, which
// Seldon passes as the model repository under
// AnnotationSeldonNoStorageInitializer (RenderSeldonDeployment sets it),
// with the strict_model_config=false Seldon gives it otherwise.
func imagePredictor(md *v1alpha1.ModelDeployment, v Version) (PredictorSpec, error) {
	ref, err := ImageReference(md.Spec.Model, v.ImageDigest)
	if err != nil {
		return PredictorSpec{}, err
	}
	spec := md.Spec
	unit := PredictiveUnit{Name: GraphNodeName, Type: "MODEL"}
	container := serverContainer(spec, &unit)
	switch spec.Server.Type {
	case v1alpha1.ServerTriton:
		unit.ModelURI = ModelMountPath
		unit.Parameters = []Parameter{{Name: "strict_model_config", Value: "false", Type: "STRING"}}
	default:
		container.Env = append(container.Env, corev1.EnvVar{Name: EnvMLServerModelURI, Value: ModelMountPath})
	}
	container.VolumeMounts = append(container.VolumeMounts, imageMount())
	pod := corev1.PodSpec{
		Containers: []corev1.Container{container}, NodeSelector: spec.NodeSelector, Tolerations: spec.Tolerations,
		Volumes: []corev1.Volume{imageVolume(ref)}, ImagePullSecrets: imagePullSecrets(spec.Model),
	}
	p := versionPredictor(md, v, unit, pod)
	p.Annotations[AnnotationImageDigest] = v.ImageDigest
	return p, nil
}

// serverContainer is the server container of md's predictors: Triton,
// Seldon's prepackaged server (unit's implementation), or MLServer as a
// custom server.
func serverContainer(spec v1alpha1.ModelDeploymentSpec, unit *PredictiveUnit) corev1.Container {
	var container corev1.Container
	switch spec.Server.Type {
	case v1alpha1.ServerTriton:
		unit.Implementation = ImplementationTriton
		container = corev1.Container{Name: GraphNodeName, Image: spec.Server.Image, Env: append([]corev1.EnvVar(nil), spec.Server.Env...)}
	default:
		container = MLServerContainer(spec.Server)
	}
	container.Resources = resources(spec.Resources)
	pinMetricsPort(&container)
	return container
}

// versionPredictor is the predictor of version v running unit in pod.
func versionPredictor(md *v1alpha1.ModelDeployment, v Version, unit PredictiveUnit, pod corev1.PodSpec) PredictorSpec {
	name := PredictorName(v.Digest)
	return PredictorSpec{
		Name: name, Graph: unit, Replicas: ptr.To(ptr.Deref(md.Spec.Replicas, 1)), Traffic: v.Traffic,
		ComponentSpecs: []SeldonPodSpec{{Spec: pod}}, Labels: VersionLabels(md, v.Digest),
		Annotations: map[string]string{
			AnnotationDigest:        v.Digest,
			AnnotationSeldonSvcName: PredictorServiceName(md, name),
		},
	}
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
