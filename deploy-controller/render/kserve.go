package render

import (
	"fmt"
	"maps"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// Facts this file relies on are KServe v0.16's (github.com/kserve/kserve):
//   - the annotation serving.kserve.io/deploymentMode: Standard makes a
//     plain Deployment and Service, no Knative (v0.16 rewrites
//     RawDeployment to Standard and then refuses every later update, so
//     Standard is the one value to write);
//   - serving.kserve.io/autoscalerClass: none makes no HPA, so the
//     Deployment keeps minReplicas;
//   - the label networking.kserve.io/visibility: cluster-local keeps the
//     InferenceService off KServe's ingress;
//   - ISVC labels and predictor labels and annotations are copied onto
//     the Deployment and its pods (components/predictor.go, buildObjectMeta);
//   - a storageUri is pulled by the init container storage-initializer that
//     KServe's pod mutating webhook injects, from the ClusterStorageContainer
//     whose supportedUriFormats match it (ours: deploy/kserve), with args
//     [URI, /mnt/models]; its container spec is merged into the one KServe
//     builds (strategic merge), so it can add env and volume mounts but no
//     volume: a volume it mounts must be in the predictor's pod spec;
//   - the kserve-mlserver ClusterServingRuntime sets
//     MLSERVER_MODEL_IMPLEMENTATION from the InferenceService's label
//     modelClass;
//   - a predictor.model without storageUri is a multi-model server to
//     KServe (controller/v1beta1/inferenceservice/utils.IsMMSPredictor):
//     its pod webhook adds the model agent and an emptyDir at /mnt/models;
//     a storageUri that is a local path passes its validation (utils.
//     ValidateStorageURI), and the webhook injects no storage initializer
//     into a pod that has an init container of that name already
//     (webhook/admission/pod, CommonStorageInitialization).

// InferenceServiceGVK is the kind the controller renders for backend kserve.
var InferenceServiceGVK = schema.GroupVersionKind{Group: "serving.kserve.io", Version: "v1beta1", Kind: "InferenceService"}

// KServe's annotations and labels that render sets.
const (
	// AnnotationKServeDeploymentMode selects how KServe deploys.
	AnnotationKServeDeploymentMode = "serving.kserve.io/deploymentMode"
	// KServeDeploymentModeStandard is the raw-Deployment mode, no Knative.
	KServeDeploymentModeStandard = "Standard"
	// AnnotationKServeAutoscalerClass selects KServe's autoscaler; "none"
	// makes none.
	AnnotationKServeAutoscalerClass = "serving.kserve.io/autoscalerClass"
	// LabelKServeVisibility set to cluster-local keeps an InferenceService
	// off KServe's ingress.
	LabelKServeVisibility = "networking.kserve.io/visibility"
	// LabelKServeModelClass is read by the kserve-mlserver runtime as
	// MLSERVER_MODEL_IMPLEMENTATION.
	LabelKServeModelClass = "modelClass"
)

// The ClusterServingRuntimes KServe ships for the two servers.
const (
	KServeMLServerRuntime = "kserve-mlserver"
	KServeTritonRuntime   = "kserve-tritonserver"
)

// ServiceAccountUserInfo marks a modelx:// URI whose pull authenticates
// with the pod's projected service-account token: modelx://serviceaccount@HOST/...
// The modelx CLI reads no credential from it; on KServe it selects the
// modelx-serviceaccount ClusterStorageContainer, which mounts the token.
const ServiceAccountUserInfo = "serviceaccount"

// mlserverFormats are the KServe model formats of MLServer's runtime
// classes, as the kserve-mlserver runtime lists them.
var mlserverFormats = map[string]string{
	"mlserver_sklearn.SKLearnModel":   "sklearn",
	"mlserver_xgboost.XGBoostModel":   "xgboost",
	"mlserver_lightgbm.LightGBMModel": "lightgbm",
	"mlserver_mlflow.MLflowRuntime":   "mlflow",
}

// InferenceService is serving.kserve.io/v1beta1 InferenceService, the
// fields we set or read.
type InferenceService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              InferenceServiceSpec    `json:"spec"`
	Status            *InferenceServiceStatus `json:"status,omitempty"`
}

// InferenceServiceSpec holds the predictor.
type InferenceServiceSpec struct {
	Predictor KServePredictor `json:"predictor"`
}

// KServePredictor is the predictor: the model, its pods and replicas.
type KServePredictor struct {
	Model              *KServeModel                  `json:"model,omitempty"`
	MinReplicas        *int32                        `json:"minReplicas,omitempty"`
	MaxReplicas        int32                         `json:"maxReplicas,omitempty"`
	Labels             map[string]string             `json:"labels,omitempty"`
	Annotations        map[string]string             `json:"annotations,omitempty"`
	DeploymentStrategy *appsv1.DeploymentStrategy    `json:"deploymentStrategy,omitempty"`
	NodeSelector       map[string]string             `json:"nodeSelector,omitempty"`
	Tolerations        []corev1.Toleration           `json:"tolerations,omitempty"`
	ServiceAccountName string                        `json:"serviceAccountName,omitempty"`
	Volumes            []corev1.Volume               `json:"volumes,omitempty"`
	ImagePullSecrets   []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	InitContainers     []corev1.Container            `json:"initContainers,omitempty"`
}

// KServeModel is the predictor's model: format, runtime, storage URI and
// the server container's overrides.
type KServeModel struct {
	ModelFormat     KServeModelFormat            `json:"modelFormat"`
	Runtime         string                       `json:"runtime,omitempty"`
	ProtocolVersion string                       `json:"protocolVersion,omitempty"`
	StorageURI      string                       `json:"storageUri,omitempty"`
	Image           string                       `json:"image,omitempty"`
	Env             []corev1.EnvVar              `json:"env,omitempty"`
	Resources       *corev1.ResourceRequirements `json:"resources,omitempty"`
	VolumeMounts    []corev1.VolumeMount         `json:"volumeMounts,omitempty"`
}

// KServeModelFormat names a model format.
type KServeModelFormat struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// InferenceServiceStatus is what KServe reports.
type InferenceServiceStatus struct {
	URL        string            `json:"url,omitempty"`
	Conditions []KServeCondition `json:"conditions,omitempty"`
}

// KServeCondition is one of KServe's status conditions (Ready,
// PredictorReady, IngressReady, ...).
type KServeCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// KServeModelFormatOf is the model format md's predictor declares:
// spec.server.modelFormat, else triton for Triton, else the format of the
// MLServer implementation, else sklearn.
func KServeModelFormatOf(server v1alpha1.Server) KServeModelFormat {
	if f := server.ModelFormat; f != nil {
		return KServeModelFormat{Name: f.Name, Version: f.Version}
	}
	if server.Type == v1alpha1.ServerTriton {
		return KServeModelFormat{Name: "triton"}
	}
	if name, ok := mlserverFormats[server.Implementation]; ok {
		return KServeModelFormat{Name: name}
	}
	return KServeModelFormat{Name: "sklearn"}
}

// KServeRuntimeOf is the serving runtime md's predictor names:
// spec.server.runtime, else the one KServe ships for the server.
func KServeRuntimeOf(server v1alpha1.Server) string {
	switch {
	case server.Runtime != "":
		return server.Runtime
	case server.Type == v1alpha1.ServerTriton:
		return KServeTritonRuntime
	default:
		return KServeMLServerRuntime
	}
}

// modelClassOf is the MLServer runtime class the kserve-mlserver runtime
// loads (its modelClass label): spec.server.implementation, else the class
// of a format MLServer ships; "" for Triton or an unknown format.
func modelClassOf(server v1alpha1.Server, format string) string {
	if server.Type == v1alpha1.ServerTriton {
		return ""
	}
	if server.Implementation != "" {
		return server.Implementation
	}
	for class, f := range mlserverFormats {
		if f == format {
			return class
		}
	}
	return ""
}

// ServiceAccountURI is uri (modelx://HOST/...) marked for the pod's
// service-account token: modelx://serviceaccount@HOST/....
func ServiceAccountURI(uri string) string {
	return strings.Replace(uri, "modelx://", "modelx://"+ServiceAccountUserInfo+"@", 1)
}

// KServePredictorServiceName is the Service KServe makes for md's
// predictor in Standard mode.
func KServePredictorServiceName(md *v1alpha1.ModelDeployment) string {
	return md.Name + "-predictor"
}

// kservedVersion is the version the InferenceService runs: the last of
// versions (a rollout's new version, or the serving one). In Standard mode
// one Deployment serves, and a new version replaces the old pods as its
// own become ready.
func kservedVersion(versions []Version) Version {
	return versions[len(versions)-1]
}

// RenderInferenceService renders md (backend kserve) as one KServe
// InferenceService named md.Name in Standard mode, serving the last of
// in.Versions with its digest pinned in storageUri, or with mount image in
// the reference of an image volume mounted read-only at ModelMountPath
// (storageUri that local path, and a placeholder init container instead
// of KServe's storage initializer): a new version rolls out
// in place (maxUnavailable 0, maxSurge 100%: all new pods start beside the
// old ones, which go once the new are ready). Its predictor carries the
// digest and the spec hash (AnnotationDigest, AnnotationSpecHash), which
// KServe copies onto the pods. Without spec.expose it is cluster-local.
func RenderInferenceService(md *v1alpha1.ModelDeployment, in Inputs) (*InferenceService, error) {
	if err := Validate(md); err != nil {
		return nil, err
	}
	if err := validateVersions(in.Versions); err != nil {
		return nil, err
	}
	if err := validateImageDigests(md, in.Versions); err != nil {
		return nil, err
	}
	spec := md.Spec
	v := kservedVersion(in.Versions)
	uri, err := ModelURI(spec.Model, v.Digest)
	if err != nil {
		return nil, err
	}
	format := KServeModelFormatOf(spec.Server)
	model := &KServeModel{
		ModelFormat:     format,
		Runtime:         KServeRuntimeOf(spec.Server),
		ProtocolVersion: ProtocolV2,
		StorageURI:      uri,
		Image:           spec.Server.Image,
		Env:             append([]corev1.EnvVar(nil), spec.Server.Env...),
	}
	if res := resources(spec.Resources); len(res.Requests) > 0 {
		model.Resources = &res
	}
	labels := VersionLabels(md, v.Digest)
	p := KServePredictor{
		Model:       model,
		MinReplicas: ptr.To(ptr.Deref(spec.Replicas, 1)),
		MaxReplicas: ptr.Deref(spec.Replicas, 1),
		Labels:      labels,
		Annotations: map[string]string{AnnotationDigest: v.Digest},
		DeploymentStrategy: &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			MaxSurge:       ptr.To(intstr.FromString("100%")),
		}},
		NodeSelector: spec.NodeSelector,
		Tolerations:  spec.Tolerations,
	}
	switch c := spec.Credentials; {
	case MountOf(md) == v1alpha1.MountImage:
		ref, err := ImageReference(spec.Model, v.ImageDigest)
		if err != nil {
			return nil, err
		}
		if in.InitializerImage == "" {
			return nil, fmt.Errorf("mount image on backend kserve needs the controller's initializer image (--initializer-image) for its placeholder init container")
		}
		// The model is at the local path ModelMountPath, the image volume:
		// a storageUri keeps KServe off its multi-model path, and the
		// placeholder keeps its webhook from injecting a storage
		// initializer (see the facts above).
		model.StorageURI = ModelMountPath
		model.VolumeMounts = []corev1.VolumeMount{imageMount()}
		p.Volumes = []corev1.Volume{imageVolume(ref)}
		p.ImagePullSecrets = imagePullSecrets(spec.Model)
		p.InitContainers = []corev1.Container{placeholderInitializer(in.InitializerImage)}
		p.Annotations[AnnotationImageDigest] = v.ImageDigest
	case c != nil && c.ServiceAccountToken != nil:
		model.StorageURI = ServiceAccountURI(uri)
		p.ServiceAccountName = c.ServiceAccountToken.ServiceAccountName
		p.Volumes = []corev1.Volume{tokenVolume(c.ServiceAccountToken)}
	}
	isvcLabels := Labels(md)
	if class := modelClassOf(spec.Server, format.Name); class != "" {
		isvcLabels[LabelKServeModelClass] = class
	}
	if spec.Expose == nil {
		isvcLabels[LabelKServeVisibility] = "cluster-local"
	}
	p.Annotations[AnnotationSpecHash] = KServePredictorSpecHash(p)
	return &InferenceService{
		TypeMeta: metav1.TypeMeta{APIVersion: InferenceServiceGVK.GroupVersion().String(), Kind: InferenceServiceGVK.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: isvcLabels, Annotations: map[string]string{
			AnnotationKServeDeploymentMode:  KServeDeploymentModeStandard,
			AnnotationKServeAutoscalerClass: "none",
		}},
		Spec: InferenceServiceSpec{Predictor: p},
	}, nil
}

// KServeInitializerName is the init container KServe's pod webhook injects
// for a storageUri, and injects none beside one of this name.
const KServeInitializerName = "storage-initializer"

// placeholderInitializer is the init container of a KServe predictor with
// mount image: named like KServe's storage initializer, so that KServe
// injects none, it pulls nothing and exits at once (`modelx version`, in
// the modelx image the controller runs initializers with).
func placeholderInitializer(image string) corev1.Container {
	return corev1.Container{
		Name: KServeInitializerName, Image: image,
		Command: []string{"/usr/local/bin/modelx", "version"},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: InitializerSecurityContext(),
	}
}

// KServePredictorSpecHash is a short hash of what the predictor's pods
// run, without the hash annotation itself.
func KServePredictorSpecHash(p KServePredictor) string {
	p.Annotations = maps.Clone(p.Annotations)
	delete(p.Annotations, AnnotationSpecHash)
	return shortHash(p)
}

// kserveNameMax is the longest InferenceService name whose predictor
// Service name (NAME-predictor) is still a 63-character DNS label.
const kserveNameMax = validation.DNS1035LabelMaxLength - len("-predictor")

// validateKServe checks what backend kserve cannot honour, naming the fix.
func validateKServe(md *v1alpha1.ModelDeployment) error {
	spec := md.Spec
	if len(md.Name) > kserveNameMax {
		return fmt.Errorf("metadata.name %q: KServe names the predictor's Service NAME-predictor, a DNS label of at most 63 characters: use a name of at most %d", md.Name, kserveNameMax)
	}
	if ft := spec.FollowTag; ft != nil && ft.CanaryPercent > 0 {
		return fmt.Errorf("spec.followTag.canaryPercent %d: backend kserve has no traffic split in Standard mode (KServe ignores canaryTrafficPercent there); a new version rolls out in place once its pods are ready: set canaryPercent: 0, or use backend seldon for a canary", ft.CanaryPercent)
	}
	if spec.Replicas != nil && *spec.Replicas < 1 {
		return fmt.Errorf("spec.replicas %d: backend kserve needs at least one replica (KServe's Standard mode does not scale to zero)", *spec.Replicas)
	}
	if err := validateKServeExpose(spec.Expose); err != nil {
		return err
	}
	return validateKServeEnv(spec.Server)
}

// validateKServeExpose refuses what of spec.expose KServe's ingress would
// not honour: everything but expose: {}.
func validateKServeExpose(ex *v1alpha1.Expose) error {
	if ex != nil && (len(ex.Hosts) > 0 || ex.Gateway != "" || ex.CreateGateway || ex.TLS != nil || (ex.PathPrefix != "" && ex.PathPrefix != "/")) {
		return fmt.Errorf("spec.expose: with backend kserve, exposure follows KServe's ingress configuration (its domain template, ingress class or Gateway API): use expose: {} and drop hosts, gateway, createGateway, tls and pathPrefix")
	}
	return nil
}

// reservedKServeEnv are the server-container variables that KServe's
// runtimes or the model format set, with what to do instead.
var reservedKServeEnv = map[string]string{
	"MLSERVER_HTTP_PORT":            "the runtime sets the server's ports",
	"MLSERVER_GRPC_PORT":            "the runtime sets the server's ports",
	"MLSERVER_MODEL_IMPLEMENTATION": "set spec.server.implementation",
	"MLSERVER_MODEL_NAME":           "KServe names the model after the InferenceService",
	"MLSERVER_MODEL_URI":            "the model is pulled into /mnt/models",
	"MODELS_DIR":                    "the model is pulled into /mnt/models",
	"STORAGE_URI":                   "KServe sets it from the pinned storageUri",
}

// validateKServeEnv refuses a spec.server.env variable that the runtime
// sets, naming it and what to do instead.
func validateKServeEnv(server v1alpha1.Server) error {
	for _, e := range server.Env {
		if why, ok := reservedKServeEnv[e.Name]; ok {
			return fmt.Errorf("spec.server.env sets %s, which the deployment sets itself (%s): remove it", e.Name, why)
		}
	}
	return nil
}
