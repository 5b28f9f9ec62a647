package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

// platform is one serving platform behind the ModelDeployment API: it
// renders and applies what serves md, and tells how a version's pods are.
type platform interface {
	// check refuses what render.Validate cannot know: what the platform's
	// cluster-side configuration rules out.
	check(r *Reconciler, md *v1alpha1.ModelDeployment) error
	// specHash is the spec hash (render.AnnotationSpecHash) that the pods
	// of version v carry once they run what md asks.
	specHash(md *v1alpha1.ModelDeployment, in render.Inputs, v render.Version) (string, error)
	// apply renders md for in and applies it, and removes what md owns on
	// the other platform (a backend switch). With mount image it first
	// checks, by a dry run, that the platform's object keeps the image
	// volumes (checkImageVolumes).
	apply(ctx context.Context, r *Reconciler, md *v1alpha1.ModelDeployment, in render.Inputs) error
	// observe reads the platform's object of md and the Deployments and
	// pods made for it.
	observe(ctx context.Context, r *Reconciler, md *v1alpha1.ModelDeployment) (*observed, error)
	// health reports the version with this digest whose pods carry wantHash.
	health(o *observed, md *v1alpha1.ModelDeployment, digest, wantHash string) Health
}

// Platforms says which serving platforms the cluster serves. It is checked
// once, at start: restart the controller after installing one.
type Platforms struct {
	// Seldon: machinelearning.seldon.io/v1 SeldonDeployment is served.
	Seldon bool
	// KServe: serving.kserve.io/v1beta1 InferenceService is served.
	KServe bool
}

// DetectPlatforms asks the cluster which serving platforms it serves.
func DetectPlatforms(mapper meta.RESTMapper) Platforms {
	return Platforms{Seldon: kindServed(mapper, render.SeldonDeploymentGVK), KServe: kindServed(mapper, render.InferenceServiceGVK)}
}

// kindServed is true when the cluster serves the kind gvk.
func kindServed(mapper meta.RESTMapper, gvk schema.GroupVersionKind) bool {
	_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	return err == nil
}

// ReasonBackendNotInstalled: the cluster does not serve md's backend.
const ReasonBackendNotInstalled = "BackendNotInstalled"

// platformFor is md's backend, or an error that says how to get it when
// the cluster does not serve it.
func (r *Reconciler) platformFor(md *v1alpha1.ModelDeployment) (platform, error) {
	switch render.BackendOf(md) {
	case v1alpha1.BackendKServe:
		if !r.Platforms.KServe {
			return nil, fmt.Errorf("backend kserve: KServe's serving.kserve.io/v1beta1 InferenceService is not served in this cluster: install KServe with the modelx ClusterStorageContainers (deploy/kserve, or the Helm chart's kserve.storageContainers) and restart the controller, or use backend seldon")
		}
		return kservePlatform{}, nil
	default:
		if !r.Platforms.Seldon {
			return nil, fmt.Errorf("backend seldon: Seldon Core's machinelearning.seldon.io/v1 SeldonDeployment is not served in this cluster: install Seldon Core v1 and restart the controller, or use backend kserve")
		}
		return seldonPlatform{}, nil
	}
}
