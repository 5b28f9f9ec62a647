// Package controller reconciles ModelDeployments: it resolves the model's
// tag to a digest through modelxd, rolls a new digest out beside the one
// serving (rollout.go: a predictor per version, canary, promotion, or
// abandon), renders the SeldonDeployment and Istio objects with the
// digests pinned and applies them owned by the ModelDeployment, holds the
// versions in service in the registry (holds.go), and reports status and
// events.
package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

// FieldOwner is the server-side-apply manager of everything we render.
const FieldOwner = "modelx-controller"

// Reasons of the Ready condition, and of the warning events about holds
// and an ignored implementation.
const (
	ReasonAvailable   = "Available"
	ReasonRollingOut  = "RollingOut"
	ReasonServerError = "ServerFailed"
	ReasonNotResolved = "NotResolved"
	ReasonInvalidSpec = "InvalidSpec"
	ReasonHoldFailed  = "HoldFailed"
	// ReasonImplementationIgnored warns that the model's own
	// model-settings.json overrides spec.server.implementation.
	ReasonImplementationIgnored = "ImplementationIgnored"
)

// Reconciler reconciles ModelDeployment objects.
type Reconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	Resolver Resolver
	// InitializerImage is the modelx image Seldon runs to pull models.
	InitializerImage string
	// Initializer configures the initializer container render writes.
	Initializer render.InitializerOptions
	// Routing is what the cluster offers for spec.expose; without
	// Routing.Istio no Istio object is watched or rendered.
	Routing render.Routing
	// Platforms are the serving platforms the cluster serves
	// (DetectPlatforms); only their kinds are watched.
	Platforms Platforms
	// KServeSecretName is the Secret from which the modelx
	// ClusterStorageContainer reads MODELX_TOKEN in a namespace; with
	// backend kserve, spec.credentials.secretName must name it. Default
	// DefaultKServeSecretName.
	KServeSecretName string
	// RetryAfter is the pause after a failed hold, and the first after a
	// failed resolution (backoff then grows it); default 30s.
	RetryAfter time.Duration
	// Drain is how long an old version keeps running without traffic after
	// a new one took all of it; default DefaultDrain.
	Drain time.Duration
	// Holds, when set, keeps the served digests safe from the registry's
	// garbage collection; nil holds nothing.
	Holds Holds
	// ClusterName names this cluster in the registry holds it makes.
	ClusterName string
	// Clock returns the current time; default time.Now.
	Clock func() time.Time
}

// +kubebuilder:rbac:groups=deploy.modelx.io,resources=modeldeployments,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=deploy.modelx.io,resources=modeldeployments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=machinelearning.seldon.io,resources=seldondeployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=serving.kserve.io,resources=inferenceservices,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;gateways,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Reconcile brings the rendered objects and the status in line with md.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var md v1alpha1.ModelDeployment
	if err := r.Get(ctx, req.NamespacedName, &md); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !md.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &md)
	}
	if err := r.ensureFinalizer(ctx, &md); err != nil {
		return ctrl.Result{}, err
	}
	before := md.Status.DeepCopy()
	now := r.now()

	resolved, resolveErr := r.target(ctx, &md)
	target := resolved.Digest
	if resolveErr != nil {
		r.resolveFailed(&md, resolveErr)
		if md.Status.Digest == "" {
			meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonNotResolved, Message: "nothing is served until the model resolves", ObservedGeneration: md.Generation})
			md.Status.Phase = v1alpha1.PhasePending
			return r.finish(ctx, &md, before, ctrl.Result{RequeueAfter: r.backoff(&md)})
		}
		// What runs keeps running, and a rollout under way goes on.
		target = md.Status.Digest
		if md.Status.Rollout != nil {
			target = md.Status.Rollout.Digest
		}
	} else {
		msg := fmt.Sprintf("%s@%s is %s", md.Spec.Model.Name, refOf(md.Spec.Model), short(target))
		if resolved.ImageDigest != "" {
			msg += ", its image form " + short(resolved.ImageDigest)
		}
		meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionResolved, Status: metav1.ConditionTrue, Reason: ReasonResolved, Message: msg, ObservedGeneration: md.Generation})
		r.warnIgnoredImplementation(&md, resolved)
	}

	pf, err := r.platformFor(&md)
	if err != nil {
		return r.notServable(ctx, &md, before, ReasonBackendNotInstalled, err)
	}
	if err := pf.check(r, &md); err != nil {
		return r.invalidSpec(ctx, &md, before, err)
	}
	images, err := r.imageDigests(ctx, &md, resolved, md.Status.Digest, digestOf(md.Status.Rollout), target)
	if err != nil {
		// A version in service whose image form is not known: nothing
		// changes until it is.
		r.resolveFailed(&md, err)
		meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonNotResolved, Message: "the image form of a version to serve is not resolved: " + err.Error(), ObservedGeneration: md.Generation})
		return r.finish(ctx, &md, before, ctrl.Result{RequeueAfter: r.backoff(&md)})
	}
	in := r.Inputs(nil)
	hashes, err := specHashes(pf, &md, in, images, md.Status.Digest, digestOf(md.Status.Rollout), target)
	if err != nil {
		return r.invalidSpec(ctx, &md, before, err)
	}
	obs, err := pf.observe(ctx, r, &md)
	if err != nil {
		return ctrl.Result{}, err
	}
	health := func(digest string) Health { return pf.health(obs, &md, digest, hashes[digest]) }
	p := planRollout(now, &md.Status, md.Generation, target, policyOf(&md, r.Drain), health)

	in.Versions = nil
	for _, v := range p.Versions {
		in.Versions = append(in.Versions, render.Version{Digest: v.Digest, Traffic: v.Traffic, ImageDigest: images[v.Digest]})
	}
	if err := pf.apply(ctx, r, &md, in); err != nil {
		if ns, ok := asNotServable(err); ok {
			// Nothing was applied; the cluster may change: look again later.
			if _, err := r.notServable(ctx, &md, before, ns.reason, ns.err); err != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{RequeueAfter: r.retryAfter()}, nil
		}
		r.Recorder.Eventf(&md, nil, "Warning", "ApplyFailed", "Apply", "%s", err.Error())
		return ctrl.Result{}, err
	}
	for _, e := range p.Events {
		r.Recorder.Eventf(&md, nil, e.Type, e.Reason, "Rollout", "%s", e.Message)
		rolloutsTotal.WithLabelValues(e.Reason).Inc()
	}
	if md.Status.Digest == "" {
		r.Recorder.Eventf(&md, nil, "Normal", ReasonResolved, "Rollout", "serving %s", short(p.Serving))
		rolloutsTotal.WithLabelValues("Initial").Inc()
	}

	md.Status.Digest, md.Status.ShortDigest, md.Status.ImageDigest = p.Serving, short(p.Serving), images[p.Serving]
	if p.Rollout != nil {
		p.Rollout.ImageDigest = images[p.Rollout.Digest]
	}
	md.Status.Rollout, md.Status.LastAborted, md.Status.CanaryDigest = p.Rollout, p.LastAborted, digestOf(p.Rollout)
	md.Status.URL = render.URL(&md, in)
	if obs.url != "" {
		md.Status.URL = obs.url
	}
	exposed, reason, msg := render.Exposed(&md, in)
	meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionExposed, Status: exposed, Reason: reason, Message: msg, ObservedGeneration: md.Generation})
	md.Status.ObservedGeneration = md.Generation
	setRolloutStatus(&md, p, health, before.Phase)

	wake := p.Wake
	if err := r.hold(ctx, &md, p); err != nil {
		r.Recorder.Eventf(&md, nil, "Warning", ReasonHoldFailed, "Hold", "%s", err.Error())
		wake = minPositive(wake, r.retryAfter())
	}
	wake = minPositive(wake, r.holdWake(&md))
	logger.V(1).Info("reconciled", "serving", p.Serving, "rollout", md.Status.CanaryDigest, "phase", md.Status.Phase)
	if ft := md.Spec.FollowTag; ft != nil && ft.Enabled {
		interval := ft.Interval.Duration
		if interval <= 0 {
			interval = time.Minute
		}
		wake = minPositive(wake, interval)
	}
	return r.finish(ctx, &md, before, ctrl.Result{RequeueAfter: wake})
}

// warnIgnoredImplementation warns, once for each version chosen or spec
// changed, when spec.server.implementation will not take effect because
// the version ships its own model-settings.json.
func (r *Reconciler) warnIgnoredImplementation(md *v1alpha1.ModelDeployment, resolved Resolved) {
	impl := md.Spec.Server.Implementation
	if impl == "" || resolved.Files == nil || !render.ImplementationIgnored(resolved.Files, impl) {
		return
	}
	news := resolved.Digest != md.Status.Digest && resolved.Digest != digestOf(md.Status.Rollout)
	if !news && md.Status.ObservedGeneration == md.Generation {
		return
	}
	r.Recorder.Eventf(md, nil, "Warning", ReasonImplementationIgnored, "Resolve",
		"%s ships %s, whose settings MLServer takes over spec.server.implementation %q: set the implementation in that file, or remove it from the model", short(resolved.Digest), render.ModelSettingsFile, impl)
}

// resolveFailed reports a failed resolution in the Resolved condition and
// an event.
func (r *Reconciler) resolveFailed(md *v1alpha1.ModelDeployment, err error) {
	reason := ReasonRegistryUnreachable
	var re *ResolveError
	if errors.As(err, &re) {
		reason = re.Reason
	}
	meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionResolved, Status: metav1.ConditionFalse, Reason: reason, Message: err.Error(), ObservedGeneration: md.Generation})
	r.Recorder.Eventf(md, nil, "Warning", reason, "Resolve", "%s", err.Error())
}

// finish writes the status if it changed and returns res. A conflict means
// the object changed since it was read: the request is queued again, to
// decide on the fresh object, instead of dropping what was decided.
func (r *Reconciler) finish(ctx context.Context, md *v1alpha1.ModelDeployment, before *v1alpha1.ModelDeploymentStatus, res ctrl.Result) (ctrl.Result, error) {
	if equality.Semantic.DeepEqual(*before, md.Status) {
		return res, nil
	}
	if err := r.Status().Update(ctx, md); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, err
	}
	return res, nil
}

// invalidSpec reports a spec that cannot be rendered; nothing changes in
// the cluster until it is fixed.
func (r *Reconciler) invalidSpec(ctx context.Context, md *v1alpha1.ModelDeployment, before *v1alpha1.ModelDeploymentStatus, err error) (ctrl.Result, error) {
	return r.notServable(ctx, md, before, ReasonInvalidSpec, err)
}

// notServable reports, as the Ready condition's reason, why md cannot be
// served as it stands; nothing changes in the cluster until that changes.
func (r *Reconciler) notServable(ctx context.Context, md *v1alpha1.ModelDeployment, before *v1alpha1.ModelDeploymentStatus, reason string, err error) (ctrl.Result, error) {
	meta.SetStatusCondition(&md.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: err.Error(), ObservedGeneration: md.Generation})
	r.Recorder.Eventf(md, nil, "Warning", reason, "Render", "%s", err.Error())
	return r.finish(ctx, md, before, ctrl.Result{})
}

func (r *Reconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

func (r *Reconciler) retryAfter() time.Duration {
	if r.RetryAfter > 0 {
		return r.RetryAfter
	}
	return 30 * time.Second
}

// minPositive is the smaller of two durations, ignoring those <= 0.
func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// digestOf is the digest of a rollout, or "" for none.
func digestOf(ro *v1alpha1.Rollout) string {
	if ro != nil {
		return ro.Digest
	}
	return ""
}

// specHashes returns, by digest, the spec hash (render.AnnotationSpecHash)
// of the pods that would serve each digest given on pf, with the image
// form of each in images (mount image).
func specHashes(pf platform, md *v1alpha1.ModelDeployment, in render.Inputs, images map[string]string, digests ...string) (map[string]string, error) {
	hashes := map[string]string{}
	for _, d := range digests {
		if d == "" || hashes[d] != "" {
			continue
		}
		h, err := pf.specHash(md, in, render.Version{Digest: d, Traffic: 100, ImageDigest: images[d]})
		if err != nil {
			return nil, err
		}
		hashes[d] = h
	}
	return hashes, nil
}

// setRolloutStatus sets the phase and the Ready and Progressing conditions
// from the plan and the versions' health.
func setRolloutStatus(md *v1alpha1.ModelDeployment, p plan, health func(string) Health, phaseBefore string) {
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonAvailable, ObservedGeneration: md.Generation}
	var waiting []string
	for _, v := range p.Versions {
		if v.Traffic == 0 {
			continue
		}
		h := health(v.Digest)
		switch {
		case h.Failed != "":
			ready.Status, ready.Reason = metav1.ConditionFalse, ReasonServerError
			waiting = append(waiting, short(v.Digest)+": "+h.Failed)
		case !h.Available:
			if ready.Reason != ReasonServerError {
				ready.Status, ready.Reason = metav1.ConditionFalse, ReasonRollingOut
			}
			waiting = append(waiting, short(v.Digest)+": "+h.Detail)
		}
	}
	if ready.Status == metav1.ConditionTrue {
		ready.Message = "serving " + short(p.Serving)
		if p.Rollout != nil {
			ready.Message = fmt.Sprintf("serving %s; %s is at step %s with %d%% of traffic", short(p.Serving), short(p.Rollout.Digest), p.Rollout.Step, p.Rollout.Traffic)
		}
	} else {
		ready.Message = strings.Join(waiting, "; ")
	}
	meta.SetStatusCondition(&md.Status.Conditions, ready)

	progressing := metav1.Condition{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: ReasonRolledOut, Message: "serving " + short(p.Serving), ObservedGeneration: md.Generation}
	switch {
	case p.Rollout != nil:
		progressing.Status, progressing.Reason = metav1.ConditionTrue, p.Rollout.Step
		progressing.Message = fmt.Sprintf("%s is at step %s with %d%% of traffic", short(p.Rollout.Digest), p.Rollout.Step, p.Rollout.Traffic)
		if h := health(p.Rollout.Digest); p.Rollout.Step == v1alpha1.StepStarting && h.Detail != "" {
			progressing.Message += "; waiting: " + h.Detail
		}
	case p.LastAborted != nil:
		progressing.Reason = ReasonRolloutAborted
		progressing.Message = fmt.Sprintf("abandoned %s (%s): %s; %s keeps all traffic", short(p.LastAborted.Digest), p.LastAborted.Reason, p.LastAborted.Message, short(p.Serving))
	}
	meta.SetStatusCondition(&md.Status.Conditions, progressing)

	switch {
	case p.Rollout != nil:
		md.Status.Phase = v1alpha1.PhaseRollingOut
	case ready.Status == metav1.ConditionTrue:
		md.Status.Phase = v1alpha1.PhaseServing
	case phaseBefore == "" || phaseBefore == v1alpha1.PhasePending:
		md.Status.Phase = v1alpha1.PhasePending
	default:
		md.Status.Phase = v1alpha1.PhaseDegraded
	}
}

// maxRetryAfter caps the backoff of a failing resolution.
const maxRetryAfter = 5 * time.Minute

// backoff is the pause before the next resolution attempt: RetryAfter at
// first, then as long as the failure has lasted (so it roughly doubles),
// at most maxRetryAfter.
func (r *Reconciler) backoff(md *v1alpha1.ModelDeployment) time.Duration {
	base := r.retryAfter()
	c := meta.FindStatusCondition(md.Status.Conditions, v1alpha1.ConditionResolved)
	if c == nil || c.Status != metav1.ConditionFalse {
		return base
	}
	return min(max(base, r.now().Sub(c.LastTransitionTime.Time)), maxRetryAfter)
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// target is the version the spec asks for now. The reference (a tag, or a
// pinned digest, which must exist) is resolved when the spec changed, when
// nothing is chosen yet, and with followTag on every check; otherwise the
// version already chosen stays (Files then empty).
func (r *Reconciler) target(ctx context.Context, md *v1alpha1.ModelDeployment) (Resolved, error) {
	chosen := md.Status.Digest
	if md.Status.Rollout != nil {
		chosen = md.Status.Rollout.Digest
	}
	follow := md.Spec.FollowTag != nil && md.Spec.FollowTag.Enabled
	if !follow && md.Status.ObservedGeneration == md.Generation && chosen != "" {
		return Resolved{Digest: chosen}, nil
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
		return Resolved{}, err
	}
	resolvesTotal.WithLabelValues(ReasonResolved).Inc()
	return resolved, nil
}

// applyObject server-side-applies obj (a rendered object), owned by md.
func (r *Reconciler) applyObject(ctx context.Context, md *v1alpha1.ModelDeployment, obj any) error {
	_, err := r.applyUnstructured(ctx, md, obj)
	return err
}

// applyUnstructured server-side-applies obj (a rendered object), owned by
// md, with opts, and returns the object as the apiserver answered it.
func (r *Reconciler) applyUnstructured(ctx context.Context, md *v1alpha1.ModelDeployment, obj any, opts ...client.PatchOption) (*unstructured.Unstructured, error) {
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
	opts = append([]client.PatchOption{client.FieldOwner(FieldOwner), client.ForceOwnership}, opts...)
	return u, r.Patch(ctx, u, client.Apply, opts...)
}

// deleteOwned removes the object of kind gvk and name in md's namespace,
// if md controls it (Seldon's VirtualService, named md.Name, is Seldon's).
func (r *Reconciler) deleteOwned(ctx context.Context, md *v1alpha1.ModelDeployment, gvk schema.GroupVersionKind, name string) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := r.Get(ctx, client.ObjectKey{Namespace: md.Namespace, Name: name}, u); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(u, md) {
		return nil
	}
	return client.IgnoreNotFound(r.Delete(ctx, u))
}

// SetupWithManager registers the reconciler; it watches the objects it owns.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	owned := func(gvk schema.GroupVersionKind) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		return u
	}
	// Seldon's Deployments and their pods carry the ModelDeployment's
	// name: a change in their readiness is a reason to look again.
	byName := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[render.LabelName]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	})
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ModelDeployment{}).
		Watches(&appsv1.Deployment{}, byName).
		Watches(&corev1.Pod{}, byName)
	// A platform's kind is watched only where it is served: a watch on a
	// kind the cluster does not serve keeps the manager from starting.
	if r.Platforms.Seldon {
		b = b.Owns(owned(render.SeldonDeploymentGVK))
	}
	if r.Platforms.KServe {
		b = b.Owns(owned(render.InferenceServiceGVK))
	}
	if r.Routing.Istio {
		b = b.Owns(owned(render.VirtualServiceGVK)).Owns(owned(render.GatewayGVK))
	}
	return b.Named("modeldeployment").Complete(r)
}
