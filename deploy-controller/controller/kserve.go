package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

// DefaultKServeSecretName is the Secret from which the modelx
// ClusterStorageContainer (deploy/kserve) reads MODELX_TOKEN.
const DefaultKServeSecretName = "modelx-credentials"

// kservePlatform serves a ModelDeployment with one KServe InferenceService
// in Standard mode. KServe runs one Deployment for it: a new version
// replaces the old pods in place, and the old ones serve until the new are
// ready (render.RenderInferenceService).
type kservePlatform struct{}

// check refuses a credentials Secret that KServe's initializer would not
// read: the ClusterStorageContainer names its Secret, not the pod.
func (kservePlatform) check(r *Reconciler, md *v1alpha1.ModelDeployment) error {
	c := md.Spec.Credentials
	if c == nil || c.SecretName == "" {
		return nil
	}
	want := r.KServeSecretName
	if want == "" {
		want = DefaultKServeSecretName
	}
	if c.SecretName != want {
		return fmt.Errorf("spec.credentials.secretName %q: with backend kserve, KServe injects the storage initializer, and the modelx ClusterStorageContainer reads MODELX_TOKEN from the Secret %q of the namespace: put the token in that Secret and name it here, or use serviceAccountToken", c.SecretName, want)
	}
	return nil
}

// specHash renders the InferenceService for the version alone and returns
// its predictor's spec hash, which KServe copies onto the pods.
func (kservePlatform) specHash(md *v1alpha1.ModelDeployment, in render.Inputs, v render.Version) (string, error) {
	in.Versions = []render.Version{v}
	isvc, err := render.RenderInferenceService(md, in)
	if err != nil {
		return "", err
	}
	return isvc.Spec.Predictor.Annotations[render.AnnotationSpecHash], nil
}

// apply renders the InferenceService of md and server-side-applies it,
// owned by md; what md owned as backend seldon (SeldonDeployment, Istio
// objects) goes.
func (kservePlatform) apply(ctx context.Context, r *Reconciler, md *v1alpha1.ModelDeployment, in render.Inputs) error {
	isvc, err := render.RenderInferenceService(md, in)
	if err != nil {
		return err
	}
	if err := r.checkImageVolumes(ctx, md, isvc, kserveCRDFix); err != nil {
		return err
	}
	if err := r.applyObject(ctx, md, isvc); err != nil {
		return fmt.Errorf("apply InferenceService: %w", err)
	}
	if r.Platforms.Seldon {
		if err := r.deleteOwned(ctx, md, render.SeldonDeploymentGVK, md.Name); err != nil {
			return err
		}
	}
	if r.Routing.Istio {
		for _, o := range []struct {
			gvk  schema.GroupVersionKind
			name string
		}{
			{render.VirtualServiceGVK, render.RoutingName(md)}, {render.VirtualServiceGVK, md.Name},
			{render.GatewayGVK, render.RoutingName(md)}, {render.GatewayGVK, md.Name},
		} {
			if err := r.deleteOwned(ctx, md, o.gvk, o.name); err != nil {
				return err
			}
		}
	}
	return nil
}

// observe reads the InferenceService's address and readiness and lists
// the Deployment and pods KServe made for md.
func (kservePlatform) observe(ctx context.Context, r *Reconciler, md *v1alpha1.ModelDeployment) (*observed, error) {
	o := &observed{}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(render.InferenceServiceGVK)
	switch err := r.Get(ctx, client.ObjectKeyFromObject(md), u); {
	case err == nil:
		var isvc render.InferenceService
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &isvc); err != nil {
			return nil, fmt.Errorf("read InferenceService: %w", err)
		}
		if st := isvc.Status; st != nil {
			o.url = st.URL
			for _, c := range st.Conditions {
				if c.Type == "Ready" && c.Status == string(corev1.ConditionFalse) && c.Message != "" {
					o.kserveNotReady = c.Message
				}
			}
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read InferenceService: %w", err)
	}
	return o, r.listWorkloads(ctx, md, o)
}

// health reports the version with this digest whose pods carry wantHash:
// available once as many of its pods are ready as md asks for. In a
// rollout the old version's pods serve beside the new until KServe's
// Deployment has replaced them.
func (kservePlatform) health(o *observed, md *v1alpha1.ModelDeployment, digest, wantHash string) Health {
	for i := range o.deployments {
		d := &o.deployments[i]
		if d.Spec.Template.Annotations[render.AnnotationDigest] != digest {
			continue
		}
		if failed := deploymentFailure(d); failed != "" {
			return Health{Failed: failed}
		}
		if lost := imageVolumeLost(d); lost != "" {
			return Health{Failed: lost}
		}
	}
	if failed := o.podFailure(digest, wantHash); failed != "" {
		return Health{Failed: failed}
	}
	want := ptr.Deref(md.Spec.Replicas, 1)
	ready, running := 0, 0
	for i := range o.pods {
		p := &o.pods[i]
		if p.Annotations[render.AnnotationDigest] != digest || p.Annotations[render.AnnotationSpecHash] != wantHash || p.DeletionTimestamp != nil {
			continue
		}
		running++
		if podReady(p) {
			ready++
		}
	}
	switch {
	case int32(ready) >= want:
		return Health{Available: true}
	case running == 0 && o.kserveNotReady != "":
		return Health{Detail: "KServe reports: " + o.kserveNotReady}
	case running == 0:
		return Health{Detail: "KServe has not started its pods yet"}
	}
	return Health{Detail: fmt.Sprintf("%d of %d pods ready", ready, want)}
}

// podReady is true when the pod's Ready condition is True.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
