package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServerType selects the inference server.
// +kubebuilder:validation:Enum=mlserver;triton
type ServerType string

// The inference servers a ModelDeployment can run.
const (
	ServerMLServer ServerType = "mlserver"
	ServerTriton   ServerType = "triton"
)

// Backend is the serving platform a ModelDeployment renders for.
// +kubebuilder:validation:Enum=seldon;kserve
type Backend string

// The serving platforms.
const (
	// BackendSeldon renders a Seldon Core v1 SeldonDeployment: a predictor
	// per version, canaries by traffic share, Istio routing.
	BackendSeldon Backend = "seldon"
	// BackendKServe renders a KServe v1beta1 InferenceService in Standard
	// (raw Deployment) mode: a new version rolls out in place, gated on
	// readiness; exposure follows KServe's ingress configuration.
	BackendKServe Backend = "kserve"
)

// Mount says how a model version reaches the server container.
// +kubebuilder:validation:Enum=initContainer;image
type Mount string

// The ways a model version reaches the server.
const (
	// MountInitContainer pulls the version into an emptyDir at /mnt/models
	// with `modelx pull` in an init container, before the server starts.
	MountInitContainer Mount = "initContainer"
	// MountImage mounts the version's image form (an OCI image whose root
	// filesystem is its files, served by modelxd at REPOSITORY/NAME/image)
	// read-only at /mnt/models as a Kubernetes image volume: the node's
	// container runtime pulls it once per node and keeps it cached.
	MountImage Mount = "image"
)

// ModelSource names the model version to serve.
// +kubebuilder:validation:XValidation:rule="has(self.tag) != has(self.digest)",message="set exactly one of tag and digest"
// +kubebuilder:validation:XValidation:rule="!has(self.mount) || self.mount != 'image' || !has(self.files) || size(self.files) == 0",message="files selects what an init container pulls; mount: image mounts every file of the version: remove files, or use mount: initContainer"
// +kubebuilder:validation:XValidation:rule="!has(self.imagePullSecret) || (has(self.mount) && self.mount == 'image')",message="imagePullSecret is for mount: image, where the node pulls the model's image with it; with mount: initContainer use spec.credentials"
type ModelSource struct {
	// Registry is the modelxd base URL, e.g. http://modelxd.modelx.svc:8080.
	// +kubebuilder:validation:Pattern=`^https?://[^/?#]+/?$`
	Registry string `json:"registry"`
	// Name is REPOSITORY/NAME, e.g. nlp/bert.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+([._-][a-z0-9]+)*/[a-z0-9]+([._-][a-z0-9]+)*$`
	Name string `json:"name"`
	// Tag to serve, e.g. prod. With followTag the deployment follows it.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`
	// +optional
	Tag string `json:"tag,omitempty"`
	// Digest pins one version (sha256:…).
	// +kubebuilder:validation:Pattern=`^sha256:[a-f0-9]{64}$`
	// +optional
	Digest string `json:"digest,omitempty"`
	// Files to pull (globs). Default: the modelFiles of modelx.yaml, or all
	// files. Only with mount initContainer: an image volume holds every file.
	// +optional
	Files []string `json:"files,omitempty"`
	// Mount is initContainer (default: an init container pulls the version
	// into /mnt/models) or image (the version's image form is mounted
	// read-only at /mnt/models as an image volume; needs Kubernetes and a
	// container runtime with image volumes, see docs/deploy.md).
	// +kubebuilder:default=initContainer
	// +optional
	Mount Mount `json:"mount,omitempty"`
	// ImagePullSecret names a Secret of type kubernetes.io/dockerconfigjson
	// in the namespace, added to the pods' imagePullSecrets, with which the
	// node pulls the model's image (mount image only): any username, and a
	// modelx token, e.g. a robot's, as the password.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ImagePullSecret string `json:"imagePullSecret,omitempty"`
}

// FollowTag keeps the deployment on the version a tag points to.
type FollowTag struct {
	// Enabled turns tag following on.
	Enabled bool `json:"enabled"`
	// Interval between checks of the tag.
	// +kubebuilder:default="1m"
	// +optional
	Interval metav1.Duration `json:"interval,omitempty"`
	// CanaryPercent, when above 0, gives a new version this share of
	// traffic for canaryDuration once its own pods are available, before it
	// takes all traffic. 0 switches traffic over as soon as the new version
	// is available (blue-green).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=99
	// +optional
	CanaryPercent int32 `json:"canaryPercent,omitempty"`
	// CanaryDuration is how long the canary must stay available at its
	// share of traffic before it is promoted.
	// +kubebuilder:default="5m"
	// +optional
	CanaryDuration metav1.Duration `json:"canaryDuration,omitempty"`
}

// Server configures the inference server.
type Server struct {
	// Type is mlserver or triton.
	// +kubebuilder:default=mlserver
	Type ServerType `json:"type"`
	// Implementation is MLServer's runtime class, e.g.
	// mlserver_sklearn.SKLearnModel; default from modelx.yaml or model-settings.json.
	// +optional
	Implementation string `json:"implementation,omitempty"`
	// Image overrides the server image.
	// +optional
	Image string `json:"image,omitempty"`
	// Protocol is the inference protocol. Only v2 (the Open Inference
	// Protocol) is served: MLServer and Triton speak it, and Seldon's
	// seldon and tensorflow protocols need servers this controller does
	// not render.
	// +kubebuilder:default=v2
	// +kubebuilder:validation:Enum=v2
	// +optional
	Protocol string `json:"protocol,omitempty"`
	// Env adds environment variables to the server container. Names that
	// Seldon, KServe's runtime or the controller set (PREDICTIVE_UNIT_*,
	// MLSERVER_HTTP_PORT, MLSERVER_MODEL_NAME, ...) are refused.
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// Runtime names the KServe ServingRuntime or ClusterServingRuntime
	// (backend kserve only). Default: kserve-mlserver for mlserver,
	// kserve-tritonserver for triton, the ClusterServingRuntimes KServe ships.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// ModelFormat is the KServe model format the runtime must support
	// (backend kserve only). Default: for triton, triton; for mlserver, the
	// format of the implementation (mlserver_sklearn.SKLearnModel: sklearn,
	// mlserver_xgboost.XGBoostModel: xgboost, mlserver_lightgbm.LightGBMModel:
	// lightgbm, mlserver_mlflow.MLflowRuntime: mlflow), else sklearn.
	// +optional
	ModelFormat *ModelFormat `json:"modelFormat,omitempty"`
}

// ModelFormat is a KServe model format and, optionally, its version.
type ModelFormat struct {
	// Name of the format, e.g. sklearn, xgboost, onnx, triton.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Version of the format, e.g. "1".
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Version string `json:"version,omitempty"`
}

// Resources of the server container.
type Resources struct {
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
	// GPU is the number of nvidia.com/gpu to request.
	// +kubebuilder:validation:Minimum=0
	// +optional
	GPU int32 `json:"gpu,omitempty"`
}

// Credentials let the pod's init container pull from an authenticated
// registry (model.mount initContainer; with mount image the node pulls
// with model.imagePullSecret instead).
// +kubebuilder:validation:XValidation:rule="!(has(self.secretName) && has(self.serviceAccountToken))",message="use either secretName or serviceAccountToken"
type Credentials struct {
	// SecretName names a Secret whose MODELX_TOKEN key is the token.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// ServiceAccountToken uses the pod's projected service-account token.
	// +optional
	ServiceAccountToken *ServiceAccountToken `json:"serviceAccountToken,omitempty"`
}

// ServiceAccountToken is a projected token for modelxd, no Secret needed.
type ServiceAccountToken struct {
	// ServiceAccountName runs the pod as this service account.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Audience of the token; modelxd must trust it.
	// +kubebuilder:default=modelx
	Audience string `json:"audience,omitempty"`
}

// Expose routes traffic to the model from outside the cluster. With
// backend seldon, through Istio, for the hosts given. With backend kserve,
// through KServe's own ingress configuration (its domain template, ingress
// class or Gateway API): expose is then empty ({}), and without it the
// InferenceService is cluster-local.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || (has(self.createGateway) && self.createGateway)",message="tls needs createGateway: an existing gateway brings its own TLS"
type Expose struct {
	// Hosts the model answers for (backend seldon, where at least one is
	// needed).
	// +optional
	Hosts []string `json:"hosts,omitempty"`
	// Gateway is an existing Istio Gateway (NAMESPACE/NAME); empty with
	// createGateway makes one.
	// +optional
	Gateway string `json:"gateway,omitempty"`
	// CreateGateway makes a Gateway for the hosts: port 80, or with tls
	// port 443 and a redirect from port 80.
	// +optional
	CreateGateway bool `json:"createGateway,omitempty"`
	// PathPrefix routes only this prefix, rewritten to "/" on the way to
	// the server; "/bert" is taken as "/bert/". Under Seldon's own Istio
	// integration (controller flag --seldon-istio) Seldon always routes
	// /seldon/NAMESPACE/NAME/, and any other prefix but "/" is reported
	// as PathPrefixUnsupported in the Exposed condition.
	// +kubebuilder:default="/"
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	PathPrefix string `json:"pathPrefix,omitempty"`
	// TLS serves the hosts over HTTPS on the Gateway the controller
	// creates (createGateway).
	// +optional
	TLS *ExposeTLS `json:"tls,omitempty"`
}

// ExposeTLS is the certificate of the created Gateway.
type ExposeTLS struct {
	// CredentialName names the Secret (type kubernetes.io/tls) with the
	// certificate and key. Istio reads it in the namespace of the ingress
	// gateway's pods, not the ModelDeployment's.
	// +kubebuilder:validation:MinLength=1
	CredentialName string `json:"credentialName"`
}

// ModelDeploymentSpec is the desired deployment.
// +kubebuilder:validation:XValidation:rule="!has(self.followTag) || !self.followTag.enabled || has(self.model.tag)",message="followTag needs model.tag"
// +kubebuilder:validation:XValidation:rule="!has(self.expose) || !has(self.expose.createGateway) || !self.expose.createGateway || !has(self.expose.gateway)",message="set expose.gateway or expose.createGateway, not both"
// +kubebuilder:validation:XValidation:rule="self.backend == 'kserve' || !has(self.expose) || (has(self.expose.hosts) && size(self.expose.hosts) > 0)",message="expose needs at least one host with backend seldon"
// +kubebuilder:validation:XValidation:rule="self.backend != 'kserve' || !has(self.expose) || (!has(self.expose.hosts) && !has(self.expose.gateway) && !has(self.expose.createGateway) && !has(self.expose.tls) && (!has(self.expose.pathPrefix) || self.expose.pathPrefix == '/'))",message="with backend kserve, exposure follows KServe's ingress configuration: use expose: {} (hosts, gateway, createGateway, tls and pathPrefix are for backend seldon)"
// +kubebuilder:validation:XValidation:rule="self.backend != 'kserve' || !has(self.followTag) || !has(self.followTag.canaryPercent) || self.followTag.canaryPercent == 0",message="backend kserve has no traffic split in Standard mode (KServe ignores canaryTrafficPercent there): a new version rolls out in place once its pods are ready; set canaryPercent: 0, or use backend seldon for a canary"
// +kubebuilder:validation:XValidation:rule="self.backend != 'kserve' || !has(self.replicas) || self.replicas >= 1",message="backend kserve needs at least one replica: KServe's Standard mode does not scale to zero"
// +kubebuilder:validation:XValidation:rule="self.backend == 'kserve' || (!has(self.server.runtime) && !has(self.server.modelFormat))",message="server.runtime and server.modelFormat are for backend kserve"
// +kubebuilder:validation:XValidation:rule="!has(self.model.mount) || self.model.mount != 'image' || !has(self.credentials) || !has(self.credentials.serviceAccountToken)",message="with model.mount: image the node's container runtime pulls the model, and it cannot present a projected service-account token to modelxd: remove credentials.serviceAccountToken and name a kubernetes.io/dockerconfigjson Secret (a modelx token as the password) in model.imagePullSecret"
// +kubebuilder:validation:XValidation:rule="!has(self.model.mount) || self.model.mount != 'image' || !has(self.credentials) || !has(self.credentials.secretName)",message="credentials.secretName is the token of the init container, which model.mount: image does not run: remove it and name a kubernetes.io/dockerconfigjson Secret (a modelx token as the password) in model.imagePullSecret"
type ModelDeploymentSpec struct {
	// Backend is seldon (a Seldon Core v1 SeldonDeployment) or kserve (a
	// KServe InferenceService in Standard mode).
	// +kubebuilder:default=seldon
	// +optional
	Backend Backend     `json:"backend,omitempty"`
	Model   ModelSource `json:"model"`
	// +optional
	FollowTag *FollowTag `json:"followTag,omitempty"`
	Server    Server     `json:"server"`
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +optional
	Resources Resources `json:"resources,omitempty"`
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// +optional
	Credentials *Credentials `json:"credentials,omitempty"`
	// +optional
	Expose *Expose `json:"expose,omitempty"`
	// ProgressDeadline bounds how long a new version may take to become
	// available (and, in a canary, how long it may stay unavailable): past
	// it the rollout is aborted and traffic stays on the serving version.
	// +kubebuilder:default="10m"
	// +optional
	ProgressDeadline metav1.Duration `json:"progressDeadline,omitempty"`
}

// Condition types of a ModelDeployment.
const (
	// ConditionResolved is True when the model reference resolved to a digest.
	ConditionResolved = "Resolved"
	// ConditionReady is True when every version that takes traffic has its
	// pods available.
	ConditionReady = "Ready"
	// ConditionProgressing is True while a new version rolls out; False
	// with reason RolledOut or RolloutAborted once it ends.
	ConditionProgressing = "Progressing"
	// ConditionExposed is True when spec.expose is in effect; False with
	// a reason (render.Exposed) when it is not set or cannot be honoured.
	ConditionExposed = "Exposed"
)

// Phases of a ModelDeployment (status.phase).
const (
	// PhasePending: nothing is served yet.
	PhasePending = "Pending"
	// PhaseServing: one version takes all traffic and is available.
	PhaseServing = "Serving"
	// PhaseRollingOut: a new version runs beside the serving one.
	PhaseRollingOut = "RollingOut"
	// PhaseDegraded: the serving version is not available.
	PhaseDegraded = "Degraded"
)

// Steps of a rollout (status.rollout.step).
const (
	// StepStarting: the new version runs beside the serving one without
	// traffic until its own pods are available.
	StepStarting = "Starting"
	// StepCanary: the new version takes canaryPercent of traffic.
	StepCanary = "Canary"
	// StepPromoting: the new version takes all traffic; the old one drains
	// and is then removed.
	StepPromoting = "Promoting"
)

// Rollout is a new version on its way to take the traffic.
type Rollout struct {
	// Digest of the new version.
	Digest string `json:"digest"`
	// ImageDigest is the digest of the new version's image form (its OCI
	// image index), with model.mount: image.
	// +optional
	ImageDigest string `json:"imageDigest,omitempty"`
	// Step is Starting, Canary or Promoting.
	Step string `json:"step"`
	// Traffic is the new version's share, in percent.
	Traffic int32 `json:"traffic"`
	// StartedAt is when the new version was first deployed.
	StartedAt metav1.Time `json:"startedAt"`
	// StepSince is when the current step began.
	StepSince metav1.Time `json:"stepSince"`
}

// AbortedRollout is the last rollout that was abandoned. Its digest is not
// tried again until the tag points elsewhere or the spec changes.
type AbortedRollout struct {
	Digest string `json:"digest"`
	// Reason is a CamelCase word: Failed, ProgressDeadlineExceeded.
	Reason  string      `json:"reason"`
	Message string      `json:"message"`
	At      metav1.Time `json:"at"`
	// Generation is the spec generation the rollout ran under.
	Generation int64 `json:"generation"`
}

// RegistryHold records the hold that keeps the served versions safe from
// the registry's garbage collection.
type RegistryHold struct {
	// Registry and Model name where the hold is.
	Registry string `json:"registry"`
	Model    string `json:"model"`
	// Holder is the hold's name in the registry.
	Holder string `json:"holder"`
	// Digests held.
	Digests []string `json:"digests,omitempty"`
	// Renewed is when the controller last put the hold.
	Renewed metav1.Time `json:"renewed"`
	// Expires is when the registry drops the hold unless it is renewed.
	Expires metav1.Time `json:"expires"`
}

// ModelDeploymentStatus is what the controller observed.
type ModelDeploymentStatus struct {
	// ObservedGeneration is the spec generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Digest is the manifest digest being served.
	// +optional
	Digest string `json:"digest,omitempty"`
	// ImageDigest is the digest of the serving version's image form (its
	// OCI image index, mounted as REGISTRY/REPOSITORY/NAME/image@DIGEST),
	// with model.mount: image.
	// +optional
	ImageDigest string `json:"imageDigest,omitempty"`
	// ShortDigest is Digest shortened for display.
	// +optional
	ShortDigest string `json:"shortDigest,omitempty"`
	// CanaryDigest is the new version rolling out, if any (rollout.digest).
	// +optional
	CanaryDigest string `json:"canaryDigest,omitempty"`
	// Phase is Pending, Serving, RollingOut or Degraded.
	// +optional
	Phase string `json:"phase,omitempty"`
	// Rollout is the new version on its way, if any.
	// +optional
	Rollout *Rollout `json:"rollout,omitempty"`
	// LastAborted is the last rollout that was abandoned.
	// +optional
	LastAborted *AbortedRollout `json:"lastAborted,omitempty"`
	// Hold is the registry hold on the served digests.
	// +optional
	Hold *RegistryHold `json:"hold,omitempty"`
	// URL is where the model answers.
	// +optional
	URL string `json:"url,omitempty"`
	// Conditions: Resolved, Ready, Progressing.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ModelDeployment serves a model version from a modelx registry.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mdep,categories=modelx
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model.name`
// +kubebuilder:printcolumn:name="Tag",type=string,JSONPath=`.spec.model.tag`
// +kubebuilder:printcolumn:name="Digest",type=string,JSONPath=`.status.shortDigest`
// +kubebuilder:printcolumn:name="Backend",type=string,JSONPath=`.spec.backend`
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.spec.server.type`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelDeployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ModelDeploymentSpec   `json:"spec,omitempty"`
	Status ModelDeploymentStatus `json:"status,omitempty"`
}

// ModelDeploymentList is a list of ModelDeployments.
// +kubebuilder:object:root=true
type ModelDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelDeployment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelDeployment{}, &ModelDeploymentList{})
}
