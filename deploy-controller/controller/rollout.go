package controller

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// Reasons of rollout events and of the Progressing condition.
const (
	ReasonRolloutStarted   = "RolloutStarted"
	ReasonCanaryStarted    = "CanaryStarted"
	ReasonPromoting        = "Promoting"
	ReasonPromoted         = "Promoted"
	ReasonRolloutWithdrawn = "RolloutWithdrawn"
	ReasonRolloutAborted   = "RolloutAborted"
	ReasonRolledOut        = "RolledOut"
	// Reasons of an aborted rollout (status.lastAborted.reason).
	ReasonVersionFailed            = "VersionFailed"
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
)

// Health is what the cluster shows of one version's pods.
type Health struct {
	// Available: the version's Deployments run the rendered spec and every
	// replica is available.
	Available bool
	// Failed, when not empty, says why the version will not become
	// available without a change: a crash loop, an image that cannot be
	// pulled, Kubernetes' progress deadline.
	Failed string
	// Detail says what the version waits for, for messages.
	Detail string
}

// rolloutPolicy is the spec's rollout settings, with defaults applied.
type rolloutPolicy struct {
	// CanaryPercent is the new version's share during the canary step; 0
	// skips the step.
	CanaryPercent int32
	// CanaryDuration is how long the canary step lasts.
	CanaryDuration time.Duration
	// ProgressDeadline bounds the Starting step.
	ProgressDeadline time.Duration
	// Drain is how long the old version keeps running, without traffic,
	// after the new one took all of it.
	Drain time.Duration
}

// Defaults of the rollout settings.
const (
	DefaultCanaryDuration   = 5 * time.Minute
	DefaultProgressDeadline = 10 * time.Minute
	DefaultDrain            = 30 * time.Second
)

func policyOf(md *v1alpha1.ModelDeployment, drain time.Duration) rolloutPolicy {
	p := rolloutPolicy{
		CanaryDuration:   DefaultCanaryDuration,
		ProgressDeadline: md.Spec.ProgressDeadline.Duration,
		Drain:            drain,
	}
	if ft := md.Spec.FollowTag; ft != nil {
		p.CanaryPercent = ft.CanaryPercent
		if ft.CanaryDuration.Duration > 0 {
			p.CanaryDuration = ft.CanaryDuration.Duration
		}
	}
	if p.ProgressDeadline <= 0 {
		p.ProgressDeadline = DefaultProgressDeadline
	}
	if p.Drain <= 0 {
		p.Drain = DefaultDrain
	}
	return p
}

// served is one version in the SeldonDeployment and its share of traffic.
type served struct {
	Digest  string
	Traffic int32
}

// event is an event the reconciler records on the ModelDeployment.
type event struct {
	Type, Reason, Message string
}

// plan is the outcome of one rollout step.
type plan struct {
	// Serving is the digest that is (or stays) the serving version.
	Serving string
	// Rollout is the new version on its way, nil when none.
	Rollout *v1alpha1.Rollout
	// LastAborted is the abandoned rollout to report: a new one when this
	// step abandoned it, the status's while the spec still asks for its
	// digest, else nil.
	LastAborted *v1alpha1.AbortedRollout
	// Versions are the predictors to render, the serving one first.
	Versions []served
	Events   []event
	// Wake is when a timer of the rollout runs out (0: no timer runs).
	Wake time.Duration
}

// planRollout takes one step of a rollout from the status towards target,
// the digest the spec asks for. It never changes a running version: a new
// version runs beside the serving one under its own predictor, takes
// traffic only once its own pods are available (canaryPercent for
// canaryDuration, then all of it), and the old one is removed after a
// drain. A new version that fails, or is not available within the
// progress deadline, is abandoned and the serving one keeps all traffic.
// health reports a version's pods; now is the current time.
func planRollout(now time.Time, st *v1alpha1.ModelDeploymentStatus, generation int64, target string, pol rolloutPolicy, health func(digest string) Health) plan {
	p := plan{Serving: st.Digest}
	if st.LastAborted != nil && st.LastAborted.Digest == target {
		p.LastAborted = st.LastAborted.DeepCopy()
	}
	if p.Serving == "" { // the first version has nothing to run beside
		p.Serving = target
		p.Versions = []served{{Digest: target, Traffic: 100}}
		return p
	}
	var ro *v1alpha1.Rollout
	if st.Rollout != nil {
		ro = st.Rollout.DeepCopy()
	}
	if ro != nil && ro.Digest != target {
		p.Events = append(p.Events, event{"Normal", ReasonRolloutWithdrawn, fmt.Sprintf("withdrew %s: the spec now asks for %s; %s keeps all traffic", short(ro.Digest), short(target), short(p.Serving))})
		ro = nil
	}
	if ro == nil && target != p.Serving && !retriedTooSoon(p.LastAborted, generation) {
		ro = &v1alpha1.Rollout{Digest: target, Step: v1alpha1.StepStarting, StartedAt: metav1.NewTime(now), StepSince: metav1.NewTime(now)}
		p.Events = append(p.Events, event{"Normal", ReasonRolloutStarted, fmt.Sprintf("starting %s beside %s, without traffic until its pods are available", short(target), short(p.Serving))})
	}
	abort := func(reason, msg string) {
		p.LastAborted = &v1alpha1.AbortedRollout{Digest: ro.Digest, Reason: reason, Message: msg, At: metav1.NewTime(now), Generation: generation}
		p.Events = append(p.Events, event{"Warning", ReasonRolloutAborted, fmt.Sprintf("abandoned %s: %s; %s keeps all traffic", short(ro.Digest), msg, short(p.Serving))})
		ro = nil
	}
	step := func(to string, traffic int32, reason, msg string) {
		ro.Step, ro.Traffic, ro.StepSince = to, traffic, metav1.NewTime(now)
		p.Events = append(p.Events, event{"Normal", reason, msg})
	}
	if ro != nil {
		h := health(ro.Digest)
		elapsed := now.Sub(ro.StepSince.Time)
		switch {
		case h.Failed != "":
			abort(ReasonVersionFailed, h.Failed)
		case ro.Step == v1alpha1.StepStarting && h.Available:
			if pol.CanaryPercent > 0 && health(p.Serving).Available {
				step(v1alpha1.StepCanary, pol.CanaryPercent, ReasonCanaryStarted, fmt.Sprintf("canary %s is available and takes %d%% of traffic for %s", short(ro.Digest), pol.CanaryPercent, pol.CanaryDuration))
				p.Wake = pol.CanaryDuration
			} else {
				step(v1alpha1.StepPromoting, 100, ReasonPromoting, fmt.Sprintf("%s is available and takes all traffic; %s drains for %s", short(ro.Digest), short(p.Serving), pol.Drain))
				p.Wake = pol.Drain
			}
		case ro.Step == v1alpha1.StepStarting:
			if elapsed >= pol.ProgressDeadline {
				abort(ReasonProgressDeadlineExceeded, fmt.Sprintf("not available after %s (%s)", pol.ProgressDeadline, h.Detail))
			} else {
				p.Wake = pol.ProgressDeadline - elapsed
			}
		case !h.Available:
			// A canary or promoted version that stops being available
			// loses its traffic at once: the serving version still runs.
			abort(ReasonVersionFailed, fmt.Sprintf("became unavailable during the %s step (%s)", ro.Step, h.Detail))
		case ro.Step == v1alpha1.StepCanary && elapsed >= pol.CanaryDuration:
			step(v1alpha1.StepPromoting, 100, ReasonPromoting, fmt.Sprintf("canary %s stayed available for %s and takes all traffic; %s drains for %s", short(ro.Digest), pol.CanaryDuration, short(p.Serving), pol.Drain))
			p.Wake = pol.Drain
		case ro.Step == v1alpha1.StepCanary:
			p.Wake = pol.CanaryDuration - elapsed
		case ro.Step == v1alpha1.StepPromoting && elapsed >= pol.Drain:
			p.Events = append(p.Events, event{"Normal", ReasonPromoted, fmt.Sprintf("%s serves; %s is removed", short(ro.Digest), short(p.Serving))})
			p.Serving, ro = ro.Digest, nil
		case ro.Step == v1alpha1.StepPromoting:
			p.Wake = pol.Drain - elapsed
		}
	}
	p.Rollout = ro
	if ro == nil {
		p.Versions = []served{{Digest: p.Serving, Traffic: 100}}
	} else {
		p.Versions = []served{{Digest: p.Serving, Traffic: 100 - ro.Traffic}, {Digest: ro.Digest, Traffic: ro.Traffic}}
	}
	return p
}

// retriedTooSoon reports whether the abandoned rollout of the digest the
// spec asks for ran under the same spec: it is not tried again until the
// spec changes or the tag points elsewhere (which forgets it).
func retriedTooSoon(last *v1alpha1.AbortedRollout, generation int64) bool {
	return last != nil && last.Generation == generation
}
