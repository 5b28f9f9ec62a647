package controller

import (
	"context"
	"fmt"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

// seldonPlatform serves a ModelDeployment with a Seldon Core v1
// SeldonDeployment: a predictor per version, traffic split by weight,
// routed through Istio (by us, or by Seldon's own integration).
type seldonPlatform struct{}

// check has nothing to add to render.Validate for Seldon.
func (seldonPlatform) check(*Reconciler, *v1alpha1.ModelDeployment) error { return nil }

// specHash renders the SeldonDeployment with the version alone and returns
// its predictor's spec hash, which Seldon copies onto its Deployment.
func (seldonPlatform) specHash(md *v1alpha1.ModelDeployment, in render.Inputs, v render.Version) (string, error) {
	in.Versions = []render.Version{v}
	sd, err := render.RenderSeldonDeployment(md, in)
	if err != nil {
		return "", err
	}
	return sd.Spec.Predictors[0].Annotations[render.AnnotationSpecHash], nil
}

// apply renders the SeldonDeployment and the Istio objects of md and
// server-side-applies them, owned by md; an InferenceService md owned
// (backend kserve before) goes.
func (seldonPlatform) apply(ctx context.Context, r *Reconciler, md *v1alpha1.ModelDeployment, in render.Inputs) error {
	sd, err := render.RenderSeldonDeployment(md, in)
	if err != nil {
		return err
	}
	if err := r.checkImageVolumes(ctx, md, sd, seldonCRDFix); err != nil {
		return err
	}
	if err := r.applyObject(ctx, md, sd); err != nil {
		return fmt.Errorf("apply SeldonDeployment: %w", err)
	}
	if r.Platforms.KServe {
		if err := r.deleteOwned(ctx, md, render.InferenceServiceGVK, md.Name); err != nil {
			return err
		}
	}
	if !in.Routing.Istio {
		return nil
	}
	vs, err := render.RenderVirtualService(md, in)
	if err != nil {
		return err
	}
	// Before our objects were named render.RoutingName(md) they were
	// named md.Name: those go too.
	if vs != nil {
		if err := r.applyObject(ctx, md, vs); err != nil {
			return fmt.Errorf("apply VirtualService: %w", err)
		}
	} else if err := r.deleteOwned(ctx, md, render.VirtualServiceGVK, render.RoutingName(md)); err != nil {
		return err
	}
	if err := r.deleteOwned(ctx, md, render.VirtualServiceGVK, md.Name); err != nil {
		return err
	}
	gw, err := render.RenderGateway(md, in)
	if err != nil {
		return err
	}
	if gw != nil {
		if err := r.applyObject(ctx, md, gw); err != nil {
			return fmt.Errorf("apply Gateway: %w", err)
		}
	} else if err := r.deleteOwned(ctx, md, render.GatewayGVK, render.RoutingName(md)); err != nil {
		return err
	}
	if err := r.deleteOwned(ctx, md, render.GatewayGVK, md.Name); err != nil {
		return err
	}
	return nil
}
