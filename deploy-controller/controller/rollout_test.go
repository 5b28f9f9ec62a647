package controller

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

const (
	dOld = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	dNew = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	dAlt = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

// cluster is a scripted view of the versions' pods.
type cluster map[string]Health

func (c cluster) health(d string) Health {
	if h, ok := c[d]; ok {
		return h
	}
	return Health{Detail: "no Deployment yet"}
}

var (
	up     = Health{Available: true}
	down   = Health{Detail: "0/1 pods available"}
	broken = Health{Failed: "pod x: container model: CrashLoopBackOff"}
)

func TestPlanRollout(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	pol := rolloutPolicy{CanaryPercent: 20, CanaryDuration: 5 * time.Minute, ProgressDeadline: 10 * time.Minute, Drain: 30 * time.Second}
	blueGreen := pol
	blueGreen.CanaryPercent = 0
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	rollout := func(step string, traffic int32, since time.Duration) *v1alpha1.Rollout {
		return &v1alpha1.Rollout{Digest: dNew, Step: step, Traffic: traffic, StartedAt: metav1.NewTime(t0), StepSince: metav1.NewTime(at(since))}
	}
	aborted := &v1alpha1.AbortedRollout{Digest: dNew, Reason: ReasonVersionFailed, Generation: 3}

	for _, c := range []struct {
		name     string
		now      time.Time
		status   v1alpha1.ModelDeploymentStatus
		target   string
		pol      rolloutPolicy
		cluster  cluster
		serving  string
		rollout  *v1alpha1.Rollout
		versions []served
		event    string // reason of the last event, "" for none
		aborted  string // reason of a new abort
		wake     time.Duration
	}{
		{name: "first version", now: t0, target: dNew, serving: dNew,
			versions: []served{{dNew, 100}}},
		{name: "steady", now: t0, status: v1alpha1.ModelDeploymentStatus{Digest: dOld}, target: dOld, cluster: cluster{dOld: up}, serving: dOld,
			versions: []served{{dOld, 100}}},
		{name: "new version starts beside the old without traffic", now: t0, status: v1alpha1.ModelDeploymentStatus{Digest: dOld}, target: dNew, pol: pol, cluster: cluster{dOld: up},
			serving: dOld, rollout: rollout(v1alpha1.StepStarting, 0, 0), versions: []served{{dOld, 100}, {dNew, 0}}, event: ReasonRolloutStarted, wake: 10 * time.Minute},
		{name: "starting and not yet available: no traffic", now: at(4 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepStarting, 0, 0)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: down},
			serving: dOld, rollout: rollout(v1alpha1.StepStarting, 0, 0), versions: []served{{dOld, 100}, {dNew, 0}}, wake: 6 * time.Minute},
		{name: "available: canary share", now: at(time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepStarting, 0, 0)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: up},
			serving: dOld, rollout: rollout(v1alpha1.StepCanary, 20, time.Minute), versions: []served{{dOld, 80}, {dNew, 20}}, event: ReasonCanaryStarted, wake: 5 * time.Minute},
		{name: "available without canary: all traffic, old drains", now: at(time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepStarting, 0, 0)}, target: dNew, pol: blueGreen, cluster: cluster{dOld: up, dNew: up},
			serving: dOld, rollout: rollout(v1alpha1.StepPromoting, 100, time.Minute), versions: []served{{dOld, 0}, {dNew, 100}}, event: ReasonPromoting, wake: 30 * time.Second},
		{name: "no canary in front of a serving version that is down", now: at(time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepStarting, 0, 0)}, target: dNew, pol: pol, cluster: cluster{dOld: down, dNew: up},
			serving: dOld, rollout: rollout(v1alpha1.StepPromoting, 100, time.Minute), versions: []served{{dOld, 0}, {dNew, 100}}, event: ReasonPromoting, wake: 30 * time.Second},
		{name: "canary runs its course", now: at(3 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepCanary, 20, time.Minute)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: up},
			serving: dOld, rollout: rollout(v1alpha1.StepCanary, 20, time.Minute), versions: []served{{dOld, 80}, {dNew, 20}}, wake: 3 * time.Minute},
		{name: "canary promoted by shifting traffic", now: at(6 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepCanary, 20, time.Minute)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: up},
			serving: dOld, rollout: rollout(v1alpha1.StepPromoting, 100, 6*time.Minute), versions: []served{{dOld, 0}, {dNew, 100}}, event: ReasonPromoting, wake: 30 * time.Second},
		{name: "old version removed after the drain", now: at(7 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepPromoting, 100, 6*time.Minute)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: up},
			serving: dNew, versions: []served{{dNew, 100}}, event: ReasonPromoted},
		{name: "failing new version is abandoned", now: at(time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepStarting, 0, 0)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: broken},
			serving: dOld, versions: []served{{dOld, 100}}, event: ReasonRolloutAborted, aborted: ReasonVersionFailed},
		{name: "failing canary loses its traffic", now: at(2 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepCanary, 20, time.Minute)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: broken},
			serving: dOld, versions: []served{{dOld, 100}}, event: ReasonRolloutAborted, aborted: ReasonVersionFailed},
		{name: "canary that stops being available is abandoned", now: at(2 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepCanary, 20, time.Minute)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: down},
			serving: dOld, versions: []served{{dOld, 100}}, event: ReasonRolloutAborted, aborted: ReasonVersionFailed},
		{name: "promoted version failing during the drain: traffic back", now: at(6*time.Minute + 10*time.Second), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepPromoting, 100, 6*time.Minute)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: broken},
			serving: dOld, versions: []served{{dOld, 100}}, event: ReasonRolloutAborted, aborted: ReasonVersionFailed},
		{name: "deadline exceeded", now: at(10 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepStarting, 0, 0)}, target: dNew, pol: pol, cluster: cluster{dOld: up, dNew: down},
			serving: dOld, versions: []served{{dOld, 100}}, event: ReasonRolloutAborted, aborted: ReasonProgressDeadlineExceeded},
		{name: "abandoned digest is not retried under the same spec", now: at(time.Hour), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, LastAborted: aborted}, target: dNew, pol: pol, cluster: cluster{dOld: up},
			serving: dOld, versions: []served{{dOld, 100}}},
		{name: "tag moved on: withdrawn, and the next version starts", now: at(2 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepCanary, 20, time.Minute)}, target: dAlt, pol: pol, cluster: cluster{dOld: up, dNew: up},
			serving: dOld, rollout: &v1alpha1.Rollout{Digest: dAlt, Step: v1alpha1.StepStarting, StartedAt: metav1.NewTime(at(2 * time.Minute)), StepSince: metav1.NewTime(at(2 * time.Minute))},
			versions: []served{{dOld, 100}, {dAlt, 0}}, event: ReasonRolloutStarted, wake: 10 * time.Minute},
		{name: "tag moved back: withdrawn", now: at(2 * time.Minute), status: v1alpha1.ModelDeploymentStatus{Digest: dOld, Rollout: rollout(v1alpha1.StepPromoting, 100, time.Minute)}, target: dOld, pol: pol, cluster: cluster{dOld: up, dNew: up},
			serving: dOld, versions: []served{{dOld, 100}}, event: ReasonRolloutWithdrawn},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := planRollout(c.now, &c.status, 3, c.target, c.pol, c.cluster.health)
			if p.Serving != c.serving {
				t.Errorf("serving %s, want %s", short(p.Serving), short(c.serving))
			}
			if !reflect.DeepEqual(p.Rollout, c.rollout) {
				t.Errorf("rollout %+v, want %+v", p.Rollout, c.rollout)
			}
			if !reflect.DeepEqual(p.Versions, c.versions) {
				t.Errorf("versions %v, want %v", p.Versions, c.versions)
			}
			var total int32
			for _, v := range p.Versions {
				total += v.Traffic
			}
			if total != 100 {
				t.Errorf("traffic sums to %d (Seldon's webhook wants 100)", total)
			}
			last := ""
			if len(p.Events) > 0 {
				last = p.Events[len(p.Events)-1].Reason
			}
			if last != c.event {
				t.Errorf("last event %q, want %q (%v)", last, c.event, p.Events)
			}
			if c.aborted != "" {
				if p.LastAborted == nil || p.LastAborted.Reason != c.aborted || p.LastAborted.Digest != dNew || !p.LastAborted.At.Time.Equal(c.now) || p.LastAborted.Generation != 3 {
					t.Errorf("aborted %+v, want reason %s", p.LastAborted, c.aborted)
				}
				if !strings.Contains(p.Events[len(p.Events)-1].Message, short(dOld)+" keeps all traffic") {
					t.Errorf("abort event %q does not say what keeps serving", p.Events[len(p.Events)-1].Message)
				}
			}
			if p.Wake != c.wake {
				t.Errorf("wake after %s, want %s", p.Wake, c.wake)
			}
		})
	}

	t.Run("abandoned digest is forgotten once the spec asks for another", func(t *testing.T) {
		st := v1alpha1.ModelDeploymentStatus{Digest: dOld, LastAborted: aborted}
		if p := planRollout(t0, &st, 3, dOld, pol, cluster{dOld: up}.health); p.LastAborted != nil {
			t.Fatalf("kept %+v", p.LastAborted)
		}
		if p := planRollout(t0, &st, 4, dNew, pol, cluster{dOld: up}.health); p.Rollout == nil || p.Rollout.Digest != dNew {
			t.Fatalf("a changed spec does not retry: %+v", p.Rollout)
		}
	})
}
