// Package v1alpha1 is the deploy.modelx.io/v1alpha1 API: ModelDeployment,
// a tagged model served by Seldon Core (MLServer or Triton) behind Istio.
// +kubebuilder:object:generate=true
// +groupName=deploy.modelx.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of these types.
	GroupVersion = schema.GroupVersion{Group: "deploy.modelx.io", Version: "v1alpha1"}
	// SchemeBuilder registers the types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
	// AddToScheme adds the types of this group to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
