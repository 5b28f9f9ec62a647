package controller

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// TestSetRolloutStatus: each argument of setRolloutStatus shows in the
// status it sets: the plan's versions with traffic and its rollout, the
// versions' health, and the phase before (a deployment that never served
// is Pending, one that served and lost its version Degraded).
func TestSetRolloutStatus(t *testing.T) {
	canary := &v1alpha1.Rollout{Digest: dNew, Step: v1alpha1.StepCanary, Traffic: 20}
	starting := &v1alpha1.Rollout{Digest: dNew, Step: v1alpha1.StepStarting}
	aborted := &v1alpha1.AbortedRollout{Digest: dNew, Reason: ReasonVersionFailed, Message: "CrashLoopBackOff"}
	for _, c := range []struct {
		name        string
		plan        plan
		cluster     cluster
		phaseBefore string

		phase                    string
		ready                    metav1.ConditionStatus
		readyReason, readyMsg    string // readyMsg: a part of the message
		progressing              metav1.ConditionStatus
		progressReason, progrMsg string
	}{
		{name: "serving", plan: plan{Serving: dOld, Versions: []served{{dOld, 100}}}, cluster: cluster{dOld: up}, phaseBefore: v1alpha1.PhasePending,
			phase: v1alpha1.PhaseServing, ready: metav1.ConditionTrue, readyReason: ReasonAvailable, readyMsg: "serving " + short(dOld),
			progressing: metav1.ConditionFalse, progressReason: ReasonRolledOut, progrMsg: "serving " + short(dOld)},
		{name: "first version not yet available", plan: plan{Serving: dOld, Versions: []served{{dOld, 100}}}, cluster: cluster{dOld: down}, phaseBefore: "",
			phase: v1alpha1.PhasePending, ready: metav1.ConditionFalse, readyReason: ReasonRollingOut, readyMsg: short(dOld) + ": " + down.Detail,
			progressing: metav1.ConditionFalse, progressReason: ReasonRolledOut},
		{name: "still pending", plan: plan{Serving: dOld, Versions: []served{{dOld, 100}}}, cluster: cluster{dOld: down}, phaseBefore: v1alpha1.PhasePending,
			phase: v1alpha1.PhasePending, ready: metav1.ConditionFalse, readyReason: ReasonRollingOut,
			progressing: metav1.ConditionFalse, progressReason: ReasonRolledOut},
		{name: "served before: degraded", plan: plan{Serving: dOld, Versions: []served{{dOld, 100}}}, cluster: cluster{dOld: down}, phaseBefore: v1alpha1.PhaseServing,
			phase: v1alpha1.PhaseDegraded, ready: metav1.ConditionFalse, readyReason: ReasonRollingOut,
			progressing: metav1.ConditionFalse, progressReason: ReasonRolledOut},
		{name: "failed", plan: plan{Serving: dOld, Versions: []served{{dOld, 100}}}, cluster: cluster{dOld: broken}, phaseBefore: v1alpha1.PhaseServing,
			phase: v1alpha1.PhaseDegraded, ready: metav1.ConditionFalse, readyReason: ReasonServerError, readyMsg: short(dOld) + ": " + broken.Failed,
			progressing: metav1.ConditionFalse, progressReason: ReasonRolledOut},
		{name: "a failure outweighs a version on its way, in either order", plan: plan{Serving: dOld, Rollout: canary, Versions: []served{{dOld, 80}, {dNew, 20}}},
			cluster: cluster{dOld: broken, dNew: down}, phaseBefore: v1alpha1.PhaseRollingOut,
			phase: v1alpha1.PhaseRollingOut, ready: metav1.ConditionFalse, readyReason: ReasonServerError, readyMsg: short(dNew) + ": " + down.Detail,
			progressing: metav1.ConditionTrue, progressReason: v1alpha1.StepCanary},
		{name: "a version without traffic does not count", plan: plan{Serving: dOld, Rollout: starting, Versions: []served{{dOld, 100}, {dNew, 0}}},
			cluster: cluster{dOld: up, dNew: down}, phaseBefore: v1alpha1.PhaseServing,
			phase: v1alpha1.PhaseRollingOut, ready: metav1.ConditionTrue, readyReason: ReasonAvailable, readyMsg: "step Starting with 0% of traffic",
			progressing: metav1.ConditionTrue, progressReason: v1alpha1.StepStarting, progrMsg: "waiting: " + down.Detail},
		{name: "aborted", plan: plan{Serving: dOld, LastAborted: aborted, Versions: []served{{dOld, 100}}}, cluster: cluster{dOld: up}, phaseBefore: v1alpha1.PhaseRollingOut,
			phase: v1alpha1.PhaseServing, ready: metav1.ConditionTrue, readyReason: ReasonAvailable,
			progressing: metav1.ConditionFalse, progressReason: ReasonRolloutAborted, progrMsg: "abandoned " + short(dNew) + " (VersionFailed): CrashLoopBackOff"},
	} {
		t.Run(c.name, func(t *testing.T) {
			md := &v1alpha1.ModelDeployment{}
			md.Generation = 7
			setRolloutStatus(md, c.plan, c.cluster.health, c.phaseBefore)
			if md.Status.Phase != c.phase {
				t.Errorf("phase %q, want %q", md.Status.Phase, c.phase)
			}
			ready, progressing := meta.FindStatusCondition(md.Status.Conditions, v1alpha1.ConditionReady), meta.FindStatusCondition(md.Status.Conditions, v1alpha1.ConditionProgressing)
			if ready == nil || progressing == nil {
				t.Fatalf("conditions %+v", md.Status.Conditions)
			}
			if ready.Status != c.ready || ready.Reason != c.readyReason || !strings.Contains(ready.Message, c.readyMsg) || ready.ObservedGeneration != 7 {
				t.Errorf("Ready %s %s %q (generation %d), want %s %s with %q", ready.Status, ready.Reason, ready.Message, ready.ObservedGeneration, c.ready, c.readyReason, c.readyMsg)
			}
			if progressing.Status != c.progressing || progressing.Reason != c.progressReason || !strings.Contains(progressing.Message, c.progrMsg) || progressing.ObservedGeneration != 7 {
				t.Errorf("Progressing %s %s %q (generation %d), want %s %s with %q", progressing.Status, progressing.Reason, progressing.Message, progressing.ObservedGeneration, c.progressing, c.progressReason, c.progrMsg)
			}
		})
	}
}
