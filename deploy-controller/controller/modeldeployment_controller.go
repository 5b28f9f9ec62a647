// Package controller reconciles ModelDeployments: it resolves the model's
// tag to a digest through modelxd, renders the SeldonDeployment and Istio
// objects with that digest pinned, applies them owned by the
// ModelDeployment, and reports status and events.
package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

// FieldOwner is the server-side-apply manager of everything we render.
const FieldOwner = "modelx-controller"

// Reasons of the Ready condition.
const (
	ReasonAvailable   = "Available"
	ReasonRollingOut  = "RollingOut"
	ReasonCanary      = "CanaryRunning"
	ReasonServerError = "ServerFailed"
	ReasonNotResolved = "NotResolved"
)

// Reconciler reconciles ModelDeployment objects.
type Reconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	Resolver Resolver
	// InitializerImage is the modelx image Seldon runs to pull models.
	InitializerImage string
	// RetryAfter is the pause after a failed resolution; default 30s.
	RetryAfter time.Duration
}

// +kubebuilder:rbac:groups=deploy.modelx.io,resources=modeldeployments,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=deploy.modelx.io,resources=modeldeployments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=machinelearning.seldon.io,resources=seldondeployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;gateways,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the rendered objects and the status in line with md.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var md v1alpha1.ModelDeployment
	if err := r.Get(ctx, req.NamespacedName, &md); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := md.Status.DeepCopy()

	digest, canary, err := r.versions(ctx, &md)
	if err != nil {
		var re *ResolveError
		reason := ReasonRegistryUnreachable
		if errors.As(err, &re) {
			reason = re.Reason
		}
		delay := r.backoff(&md)
		meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionResolved, Status: metav1.ConditionFalse, Reason: reason, Message: err.Error(), ObservedGeneration: md.Generation})
		if md.Status.Digest == "" {
			meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonNotResolved, Message: "nothing is served until the model resolves", ObservedGeneration: md.Generation})
		}
		r.Recorder.Eventf(&md, nil, "Warning", reason, "Resolve", "%s", err.Error())
		if serr := r.updateStatus(ctx, &md, before); serr != nil {
			return ctrl.Result{}, serr
		}
		// Nothing rendered changes: the objects keep serving the last good digest.
		return ctrl.Result{RequeueAfter: delay}, nil
	}
	meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionResolved, Status: metav1.ConditionTrue, Reason: ReasonResolved, Message: fmt.Sprintf("%s@%s is %s", md.Spec.Model.Name, refOf(md.Spec.Model), short(digest)), ObservedGeneration: md.Generation})
	if digest != md.Status.Digest {
		if md.Status.Digest != "" {
			r.Recorder.Eventf(&md, nil, "Normal", ReasonRollingOut, "Rollout", "rolling out %s (was %s)", short(digest), short(md.Status.Digest))
			rolloutsTotal.WithLabelValues("update").Inc()
		} else {
			r.Recorder.Eventf(&md, nil, "Normal", ReasonResolved, "Resolve", "serving %s", short(digest))
			rolloutsTotal.WithLabelValues("initial").Inc()
		}
	}
	if canary != "" && canary != md.Status.CanaryDigest {
		r.Recorder.Eventf(&md, nil, "Normal", ReasonCanary, "Rollout", "canary %s takes %d%% of traffic", short(canary), md.Spec.FollowTag.CanaryPercent)
		rolloutsTotal.WithLabelValues("canary").Inc()
	}

	sd, err := r.apply(ctx, &md, render.Inputs{Digest: digest, CanaryDigest: canary, InitializerImage: r.InitializerImage})
	if err != nil {
		r.Recorder.Eventf(&md, nil, "Warning", "ApplyFailed", "Apply", "%s", err.Error())
		return ctrl.Result{}, err
	}
	md.Status.Digest, md.Status.ShortDigest, md.Status.CanaryDigest = digest, short(digest), canary
	md.Status.URL = render.URL(&md)
	md.Status.ObservedGeneration = md.Generation
	r.setReady(&md, sd, digest, canary)
	if err := r.updateStatus(ctx, &md, before); err != nil {
		return ctrl.Result{}, err
	}
	logger.V(1).Info("reconciled", "digest", digest, "canary", canary)
	if ft := md.Spec.FollowTag; ft != nil && ft.Enabled {
		interval := ft.Interval.Duration
		if interval <= 0 {
			interval = time.Minute
		}
		return ctrl.Result{RequeueAfter: interval}, nil
	}
	return ctrl.Result{}, nil
}

// maxRetryAfter caps the backoff of a failing resolution.
const maxRetryAfter = 5 * time.Minute

// backoff is the pause before the next resolution attempt: RetryAfter at
// first, then as long as the failure has lasted (so it roughly doubles),
// at most maxRetryAfter.
func (r *Reconciler) backoff(md *v1alpha1.ModelDeployment) time.Duration {
	base := r.RetryAfter
	if base <= 0 {
		base = 30 * time.Second
	}
	c := meta.FindStatusCondition(md.Status.Conditions, v1alpha1.ConditionResolved)
	if c == nil || c.Status != metav1.ConditionFalse {
		return base
	}
	return min(max(base, time.Since(c.LastTransitionTime.Time)), maxRetryAfter)
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// versions decides what the main predictor serves and what, if anything,
// runs as canary. A pinned digest is served as is; a tag is resolved when
// the spec changed or, with followTag, on every check. A canary that is
// Ready is promoted.
func (r *Reconciler) versions(ctx context.Context, md *v1alpha1.ModelDeployment) (digest, canary string, err error) {
	cur, curCanary := md.Status.Digest, md.Status.CanaryDigest
	follow := md.Spec.FollowTag != nil && md.Spec.FollowTag.Enabled
	specChanged := md.Status.ObservedGeneration != md.Generation
	if curCanary != "" && r.canaryReady(ctx, md) {
		cur, curCanary = curCanary, "" // promote
	}
	if md.Spec.Model.Digest != "" {
		return md.Spec.Model.Digest, "", nil
	}
	if !follow && !specChanged && cur != "" {
		return cur, "", nil
	}
	resolved, err := r.Resolver.Resolve(ctx, md.Spec.Model)
	if err != nil {
		reason := ReasonRegistryUnreachable
		var re *ResolveError
		if errors.As(err, &re) {
			reason = re.Reason
		}
		resolvesTotal.WithLabelValues(reason).Inc()
		registryErrorsTotal.WithLabelValues(reason).Inc()
		return "", "", err
	}
	resolvesTotal.WithLabelValues(ReasonResolved).Inc()
	switch {
	case cur == "" || specChanged && !follow:
		return resolved, "", nil
	case resolved == cur:
		return cur, "", nil
	case md.Spec.FollowTag.CanaryPercent > 0:
		return cur, resolved, nil
	default:
		return resolved, "", nil
	}
}

// canaryReady reads the SeldonDeployment: Available while the canary
// predictor is rendered means the canary answers.
func (r *Reconciler) canaryReady(ctx context.Context, md *v1alpha1.ModelDeployment) bool {
	sd := &unstructured.Unstructured{}
	sd.SetGroupVersionKind(render.SeldonDeploymentGVK)
	if err := r.Get(ctx, client.ObjectKeyFromObject(md), sd); err != nil {
		return false
	}
	state, _, _ := unstructured.NestedString(sd.Object, "status", "state")
	return state == "Available" && len(predictorNames(sd)) == 2
}

func predictorNames(sd *unstructured.Unstructured) []string {
	preds, _, _ := unstructured.NestedSlice(sd.Object, "spec", "predictors")
	var names []string
	for _, p := range preds {
		if m, ok := p.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				names = append(names, n)
			}
		}
	}
	return names
}

// apply renders and server-side-applies every object, owned by md.
func (r *Reconciler) apply(ctx context.Context, md *v1alpha1.ModelDeployment, in render.Inputs) (*unstructured.Unstructured, error) {
	sd, err := render.RenderSeldonDeployment(md, in)
	if err != nil {
		return nil, err
	}
	applied, err := r.applyObject(ctx, md, sd)
	if err != nil {
		return nil, fmt.Errorf("apply SeldonDeployment: %w", err)
	}
	if vs := render.RenderVirtualService(md, sd); vs != nil {
		if _, err := r.applyObject(ctx, md, vs); err != nil {
			return nil, fmt.Errorf("apply VirtualService: %w", err)
		}
	} else if err := r.deleteOwned(ctx, md, render.VirtualServiceGVK); err != nil {
		return nil, err
	}
	if gw := render.RenderGateway(md); gw != nil {
		if _, err := r.applyObject(ctx, md, gw); err != nil {
			return nil, fmt.Errorf("apply Gateway: %w", err)
		}
	} else if err := r.deleteOwned(ctx, md, render.GatewayGVK); err != nil {
		return nil, err
	}
	return applied, nil
}

func (r *Reconciler) applyObject(ctx context.Context, md *v1alpha1.ModelDeployment, obj any) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	if err := controllerutil.SetControllerReference(md, u, r.Scheme); err != nil {
		return nil, err
	}
	if err := r.Patch(ctx, u, client.Apply, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return nil, err
	}
	return u, nil
}

// deleteOwned removes an object of kind gvk named like md, if md owns it.
func (r *Reconciler) deleteOwned(ctx context.Context, md *v1alpha1.ModelDeployment, gvk schema.GroupVersionKind) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := r.Get(ctx, client.ObjectKeyFromObject(md), u); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(u, md) {
		return nil
	}
	return client.IgnoreNotFound(r.Delete(ctx, u))
}

// setReady maps Seldon's state to the Ready condition.
func (r *Reconciler) setReady(md *v1alpha1.ModelDeployment, applied *unstructured.Unstructured, digest, canary string) {
	state, description := "", ""
	current := &unstructured.Unstructured{}
	current.SetGroupVersionKind(render.SeldonDeploymentGVK)
	if err := r.Get(context.Background(), client.ObjectKeyFromObject(md), current); err == nil {
		state, _, _ = unstructured.NestedString(current.Object, "status", "state")
		description, _, _ = unstructured.NestedString(current.Object, "status", "description")
	}
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: md.Generation}
	switch state {
	case "Available":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonAvailable, "serving "+short(digest)
		if canary != "" {
			cond.Reason, cond.Message = ReasonCanary, fmt.Sprintf("serving %s; canary %s rolling out", short(digest), short(canary))
		}
	case "Failed":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonServerError, "Seldon reports: "+description
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonRollingOut, "waiting for the SeldonDeployment to become Available"
	}
	if cond.Status == metav1.ConditionFalse && cond.Reason == ReasonServerError {
		r.Recorder.Eventf(md, nil, "Warning", ReasonServerError, "Serve", "%s", cond.Message)
	}
	meta.SetStatusCondition(&md.Status.Conditions, cond)
}

func (r *Reconciler) updateStatus(ctx context.Context, md *v1alpha1.ModelDeployment, before *v1alpha1.ModelDeploymentStatus) error {
	if equalStatus(before, &md.Status) {
		return nil
	}
	if err := r.Status().Update(ctx, md); err != nil && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

func equalStatus(a, b *v1alpha1.ModelDeploymentStatus) bool {
	if a.Digest != b.Digest || a.CanaryDigest != b.CanaryDigest || a.URL != b.URL || a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

// SetupWithManager registers the reconciler; it watches the objects it owns.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	owned := func(gvk schema.GroupVersionKind) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		return u
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ModelDeployment{}).
		Owns(owned(render.SeldonDeploymentGVK)).
		Owns(owned(render.VirtualServiceGVK)).
		Owns(owned(render.GatewayGVK)).
		Named("modeldeployment").
		Complete(r)
}
