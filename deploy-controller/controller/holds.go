package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// Holds keeps the versions a ModelDeployment serves safe from the
// registry's garbage collection: a hold is a named reference in the
// registry that collection respects like a tag, and that lapses unless
// renewed.
type Holds interface {
	// Hold puts or renews the hold named holder on digests of the model
	// src names, and returns when it expires.
	Hold(ctx context.Context, src v1alpha1.ModelSource, holder string, digests []string) (time.Time, error)
	// Release removes the hold; a hold that is gone already is no error.
	Release(ctx context.Context, src v1alpha1.ModelSource, holder string) error
}

// HoldFinalizer keeps a deleted ModelDeployment until its registry hold is
// released.
const HoldFinalizer = "deploy.modelx.io/registry-hold"

// releaseGiveUp is how long a deleted ModelDeployment waits for the
// registry to release its hold; after that it goes, and the hold lapses
// when it expires.
const releaseGiveUp = 10 * time.Minute

// holderName names md's hold in the registry: one per ModelDeployment of
// one cluster.
func (r *Reconciler) holderName(md *v1alpha1.ModelDeployment) string {
	cluster := r.ClusterName
	if cluster == "" {
		cluster = "default"
	}
	return fmt.Sprintf("modelx-controller:%s:%s:%s", cluster, md.Namespace, md.Name)
}

// hold puts, moves or renews md's hold so that it covers every version the
// plan renders, and records it in the status. It renews a hold once half
// its lifetime has passed.
func (r *Reconciler) hold(ctx context.Context, md *v1alpha1.ModelDeployment, p plan) error {
	if r.Holds == nil {
		return nil
	}
	var digests []string
	for _, v := range p.Versions {
		digests = append(digests, v.Digest)
	}
	slices.Sort(digests)
	now := r.now()
	h, src := md.Status.Hold, md.Spec.Model
	if h != nil && (h.Registry != src.Registry || h.Model != src.Name) {
		// The spec names another model: the old hold goes first.
		old := v1alpha1.ModelSource{Registry: h.Registry, Name: h.Model}
		if err := r.Holds.Release(ctx, old, h.Holder); err != nil {
			return fmt.Errorf("release the hold on %s: %w", h.Model, err)
		}
		md.Status.Hold, h = nil, nil
	}
	if h != nil && slices.Equal(h.Digests, digests) && now.Before(renewAt(h)) {
		return nil
	}
	holder := r.holderName(md)
	expires, err := r.Holds.Hold(ctx, src, holder, digests)
	if err != nil {
		return fmt.Errorf("hold %s in %s: %w", src.Name, src.Registry, err)
	}
	md.Status.Hold = &v1alpha1.RegistryHold{Registry: src.Registry, Model: src.Name, Holder: holder, Digests: digests, Renewed: metav1.NewTime(now), Expires: metav1.NewTime(expires)}
	return nil
}

// renewAt is when a hold is renewed: half way through its lifetime.
func renewAt(h *v1alpha1.RegistryHold) time.Time {
	return h.Renewed.Add(h.Expires.Sub(h.Renewed.Time) / 2)
}

// holdWake is when md's hold needs renewing, from now; 0 without a hold.
func (r *Reconciler) holdWake(md *v1alpha1.ModelDeployment) time.Duration {
	if r.Holds == nil || md.Status.Hold == nil {
		return 0
	}
	return max(renewAt(md.Status.Hold).Sub(r.now()), time.Second)
}

// ensureFinalizer adds HoldFinalizer when the reconciler holds versions.
func (r *Reconciler) ensureFinalizer(ctx context.Context, md *v1alpha1.ModelDeployment) error {
	if r.Holds == nil || controllerutil.ContainsFinalizer(md, HoldFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(md.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(md, HoldFinalizer)
	return r.Patch(ctx, md, patch)
}

// finalize releases a deleted ModelDeployment's hold, then lets it go.
// When the registry does not answer it retries, and gives up after
// releaseGiveUp: the hold then lapses when it expires.
func (r *Reconciler) finalize(ctx context.Context, md *v1alpha1.ModelDeployment) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(md, HoldFinalizer) {
		return ctrl.Result{}, nil
	}
	if h := md.Status.Hold; h != nil && r.Holds != nil {
		err := r.Holds.Release(ctx, v1alpha1.ModelSource{Registry: h.Registry, Name: h.Model}, h.Holder)
		if err != nil {
			if r.now().Sub(md.DeletionTimestamp.Time) < releaseGiveUp {
				r.Recorder.Eventf(md, nil, "Warning", ReasonHoldFailed, "Release", "release the registry hold %s: %v; retrying", h.Holder, err)
				return ctrl.Result{RequeueAfter: r.retryAfter()}, nil
			}
			r.Recorder.Eventf(md, nil, "Warning", ReasonHoldFailed, "Release", "gave up releasing the registry hold %s after %s (%v): it lapses on %s", h.Holder, releaseGiveUp, err, h.Expires.UTC().Format(time.RFC3339))
		}
	}
	patch := client.MergeFromWithOptions(md.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(md, HoldFinalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, md, patch))
}
