package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// These are our own minimal typed subsets of the third-party objects we
// render: only the fields we set or read, with the JSON names of the real
// CRDs (machinelearning.seldon.io/v1 from seldon-core v1.19, and
// networking.istio.io/v1). The envtest suite proves them against the real
// CRDs: what we write reads back intact.

// SeldonDeploymentGVK is the kind the controller renders.
var SeldonDeploymentGVK = schema.GroupVersionKind{Group: "machinelearning.seldon.io", Version: "v1", Kind: "SeldonDeployment"}

// VirtualServiceGVK and GatewayGVK are the Istio kinds the controller renders.
var (
	VirtualServiceGVK = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}
	GatewayGVK        = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "Gateway"}
)

// SeldonDeployment is machinelearning.seldon.io/v1 SeldonDeployment.
type SeldonDeployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SeldonDeploymentSpec    `json:"spec"`
	Status            *SeldonDeploymentStatus `json:"status,omitempty"`
}

// SeldonDeploymentSpec holds the predictors.
type SeldonDeploymentSpec struct {
	Name        string            `json:"name,omitempty"`
	Protocol    string            `json:"protocol,omitempty"`
	Predictors  []PredictorSpec   `json:"predictors"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PredictorSpec is one version of the model and its traffic share.
type PredictorSpec struct {
	Name           string            `json:"name"`
	Graph          PredictiveUnit    `json:"graph"`
	ComponentSpecs []SeldonPodSpec   `json:"componentSpecs,omitempty"`
	Replicas       *int32            `json:"replicas,omitempty"`
	Traffic        int32             `json:"traffic,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
}

// PredictiveUnit is a node of the inference graph; ours has one.
type PredictiveUnit struct {
	Name                    string           `json:"name"`
	Type                    string           `json:"type,omitempty"`
	Implementation          string           `json:"implementation,omitempty"`
	ModelURI                string           `json:"modelUri,omitempty"`
	EnvSecretRefName        string           `json:"envSecretRefName,omitempty"`
	ServiceAccountName      string           `json:"serviceAccountName,omitempty"`
	StorageInitializerImage string           `json:"storageInitializerImage,omitempty"`
	Parameters              []Parameter      `json:"parameters,omitempty"`
	Children                []PredictiveUnit `json:"children,omitempty"`
}

// Parameter is a graph-node parameter.
type Parameter struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type"`
}

// SeldonPodSpec customises the predictor's pods.
type SeldonPodSpec struct {
	Metadata metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec     corev1.PodSpec    `json:"spec"`
}

// SeldonDeploymentStatus is what Seldon reports.
type SeldonDeploymentStatus struct {
	State       string         `json:"state,omitempty"`
	Description string         `json:"description,omitempty"`
	Address     *SeldonAddress `json:"address,omitempty"`
}

// SeldonAddress is where the deployment answers inside the cluster.
type SeldonAddress struct {
	URL string `json:"url,omitempty"`
}

// VirtualService is networking.istio.io/v1 VirtualService.
type VirtualService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              VirtualServiceSpec `json:"spec"`
}

// VirtualServiceSpec routes hosts to destinations.
type VirtualServiceSpec struct {
	Hosts    []string    `json:"hosts"`
	Gateways []string    `json:"gateways,omitempty"`
	HTTP     []HTTPRoute `json:"http"`
}

// HTTPRoute is one routing rule.
type HTTPRoute struct {
	Name    string                 `json:"name,omitempty"`
	Match   []HTTPMatchRequest     `json:"match,omitempty"`
	Rewrite *HTTPRewrite           `json:"rewrite,omitempty"`
	Route   []HTTPRouteDestination `json:"route"`
}

// HTTPMatchRequest matches requests by URI.
type HTTPMatchRequest struct {
	URI *StringMatch `json:"uri,omitempty"`
}

// StringMatch matches by prefix.
type StringMatch struct {
	Prefix string `json:"prefix,omitempty"`
}

// HTTPRewrite rewrites the URI.
type HTTPRewrite struct {
	URI string `json:"uri,omitempty"`
}

// HTTPRouteDestination is a weighted destination.
type HTTPRouteDestination struct {
	Destination Destination `json:"destination"`
	Weight      int32       `json:"weight,omitempty"`
}

// Destination is a Service host and port.
type Destination struct {
	Host string        `json:"host"`
	Port *PortSelector `json:"port,omitempty"`
}

// PortSelector selects a Service port.
type PortSelector struct {
	Number uint32 `json:"number"`
}

// Gateway is networking.istio.io/v1 Gateway.
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              GatewaySpec `json:"spec"`
}

// GatewaySpec exposes servers on the ingress gateway pods.
type GatewaySpec struct {
	Selector map[string]string `json:"selector"`
	Servers  []GatewayServer   `json:"servers"`
}

// GatewayServer is one listening port and its hosts.
type GatewayServer struct {
	Port  GatewayPort        `json:"port"`
	Hosts []string           `json:"hosts"`
	TLS   *ServerTLSSettings `json:"tls,omitempty"`
}

// ServerTLSSettings is a server's TLS: an HTTPS redirect on a plain port,
// or mode SIMPLE with the certificate in the Secret credentialName.
type ServerTLSSettings struct {
	HTTPSRedirect  bool   `json:"httpsRedirect,omitempty"`
	Mode           string `json:"mode,omitempty"`
	CredentialName string `json:"credentialName,omitempty"`
}

// GatewayPort names a listening port.
type GatewayPort struct {
	Number   uint32 `json:"number"`
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
}
