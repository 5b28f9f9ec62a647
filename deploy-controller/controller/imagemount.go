package controller

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

// ReasonImageVolumesDropped: with mount image, the serving platform's CRD
// drops image volumes from the pod spec it holds, so its pods would mount
// an empty directory instead of the model.
const ReasonImageVolumesDropped = "ImageVolumesDropped"

// The fixes checkImageVolumes names for each platform's CRD. Seldon Core
// v1.19's Helm chart and bundle ship a SeldonDeployment CRD generated from
// Kubernetes types older than image volumes (1.31); the operator itself
// knows them. KServe v0.16's InferenceService CRD knows them.
const (
	seldonCRDFix = "add image volumes to the SeldonDeployment CRD's schema (kubectl patch crd seldondeployments.machinelearning.seldon.io --type=json --patch-file deploy/seldon/crd-image-volumes.json, see docs/deploy.md), use backend kserve, or use model.mount: initContainer"
	kserveCRDFix = "install a KServe whose InferenceService CRD knows image volumes (v0.16 does), or use model.mount: initContainer"
)

// notServableError is a failure to apply that no retry of the same request
// mends: it is reported as the Ready condition's reason, and tried again
// later, as the cluster may change.
type notServableError struct {
	reason string
	err    error
}

func (e *notServableError) Error() string { return e.err.Error() }

func (e *notServableError) Unwrap() error { return e.err }

// imageDigests maps each of digests to the digest of its image form, with
// mount image (nil otherwise): from the status, from resolved, or else
// asked of the registry (a version chosen before the mount changed).
func (r *Reconciler) imageDigests(ctx context.Context, md *v1alpha1.ModelDeployment, resolved Resolved, digests ...string) (map[string]string, error) {
	if render.MountOf(md) != v1alpha1.MountImage {
		return nil, nil
	}
	known := map[string]string{}
	if md.Status.Digest != "" && md.Status.ImageDigest != "" {
		known[md.Status.Digest] = md.Status.ImageDigest
	}
	if ro := md.Status.Rollout; ro != nil && ro.ImageDigest != "" {
		known[ro.Digest] = ro.ImageDigest
	}
	if resolved.Digest != "" && resolved.ImageDigest != "" {
		known[resolved.Digest] = resolved.ImageDigest
	}
	for _, d := range digests {
		if d == "" || known[d] != "" {
			continue
		}
		src := md.Spec.Model
		src.Tag, src.Digest, src.Mount = "", d, v1alpha1.MountImage
		res, err := r.Resolver.Resolve(ctx, src)
		if err != nil {
			return nil, err
		}
		known[d] = res.ImageDigest
	}
	return known, nil
}

// checkImageVolumes applies obj, rendered for md, as a server-side dry run
// and refuses it when the platform's CRD does not hold its image volumes:
// server-side apply refuses volumes[].image when the CRD's schema does not
// declare it, and were the field pruned instead, the volume left without
// a source would default to an emptyDir. fix says what to do about it. It
// does nothing without mount image.
func (r *Reconciler) checkImageVolumes(ctx context.Context, md *v1alpha1.ModelDeployment, obj any, fix string) error {
	if render.MountOf(md) != v1alpha1.MountImage {
		return nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	kind, _ := m["kind"].(string)
	dropped := &notServableError{reason: ReasonImageVolumesDropped, err: fmt.Errorf(
		"the %s CRD of this cluster does not know image volumes (volumes[].image) in the pod spec it holds: its schema predates them, and its pods could not mount the model at %s: %s",
		kind, render.ModelMountPath, fix)}
	u, err := r.applyUnstructured(ctx, md, obj, client.DryRunAll)
	switch {
	case err != nil && undeclaredImageField.MatchString(err.Error()):
		return dropped
	case err != nil:
		return fmt.Errorf("apply %s as a dry run: %w", kind, err)
	case !slices.Equal(imageReferences(m["spec"]), imageReferences(u.Object["spec"])):
		return dropped
	}
	return nil
}

// undeclaredImageField matches server-side apply's refusal of an image
// volume that the object's schema does not declare, e.g.
// ".spec.predictors[0].componentSpecs[0].spec.volumes[0].image: field not
// declared in schema".
var undeclaredImageField = regexp.MustCompile(`volumes\[\d+\]\.image: field not declared in schema`)

// imageReferences lists, sorted, the references of the image volumes in
// every volumes list of v, an object's spec.
func imageReferences(v any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if vols, ok := x["volumes"].([]any); ok {
				for _, vol := range vols {
					if ref, ok, _ := unstructured.NestedString(asMap(vol), "image", "reference"); ok {
						out = append(out, ref)
					}
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	slices.Sort(out)
	return out
}

// asMap is v as a JSON object, or nil.
func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// asNotServable reports whether err is a notServableError, and which.
func asNotServable(err error) (*notServableError, bool) {
	var ns *notServableError
	return ns, errors.As(err, &ns)
}
