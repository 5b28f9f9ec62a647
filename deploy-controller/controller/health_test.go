package controller

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

func TestHealth(t *testing.T) {
	const hash = "h1"
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Generation: 2, Annotations: map[string]string{render.AnnotationDigest: dNew, render.AnnotationSpecHash: hash}}
	}
	dep := func(mut func(*appsv1.Deployment)) appsv1.Deployment {
		d := appsv1.Deployment{ObjectMeta: meta("sd-v-222-0-model"), Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2}}
		if mut != nil {
			mut(&d)
		}
		return d
	}
	pod := func(mut func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: meta("sd-v-222-0-model-abc"), Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "model", Ready: true}}}}
		if mut != nil {
			mut(&p)
		}
		return p
	}
	for _, c := range []struct {
		name      string
		obs       observed
		available bool
		failed    string // substring of Failed
		detail    string // substring of Detail
	}{
		{name: "available", obs: observed{deployments: []appsv1.Deployment{dep(nil)}, pods: []corev1.Pod{pod(nil)}}, available: true},
		{name: "no Deployment yet", obs: observed{}, detail: "not created"},
		{name: "Seldon failed before creating it", obs: observed{seldonState: "Failed", seldonDescription: "bad graph"}, failed: "Seldon reports: bad graph"},
		{name: "old spec", obs: observed{deployments: []appsv1.Deployment{dep(func(d *appsv1.Deployment) { d.Annotations[render.AnnotationSpecHash] = "h0" })}}, detail: "does not run the rendered spec"},
		{name: "spec not observed", obs: observed{deployments: []appsv1.Deployment{dep(func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 1 })}}, detail: "has not seen"},
		{name: "old pods remain", obs: observed{deployments: []appsv1.Deployment{dep(func(d *appsv1.Deployment) { d.Status.Replicas = 3 })}}, detail: "2 of 2 pods updated"},
		{name: "not all available", obs: observed{deployments: []appsv1.Deployment{dep(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 })}}, detail: "1 of 2 pods available"},
		{name: "progress deadline", obs: observed{deployments: []appsv1.Deployment{dep(func(d *appsv1.Deployment) {
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet x has timed out progressing."}}
		})}}, failed: "timed out progressing"},
		{name: "init container crash loop", obs: observed{deployments: []appsv1.Deployment{dep(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 0 })}, pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "model-model-initializer", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}}}}
		})}}, failed: "container model-model-initializer: CrashLoopBackOff: back-off 40s"},
		{name: "restarts between back-offs", obs: observed{deployments: []appsv1.Deployment{dep(nil)}, pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "model", RestartCount: 3, LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}
		})}}, failed: "restarted 3 times (last exit code 137: OOMKilled)"},
		{name: "image pull", obs: observed{deployments: []appsv1.Deployment{dep(nil)}, pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}
		})}}, failed: "ImagePullBackOff"},
		{name: "a failing pod of an older spec does not count", obs: observed{deployments: []appsv1.Deployment{dep(nil)}, pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			p.Annotations[render.AnnotationSpecHash] = "h0"
			p.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
		})}}, available: true},
		{name: "another version's Deployment does not count", obs: observed{deployments: []appsv1.Deployment{dep(func(d *appsv1.Deployment) { d.Annotations[render.AnnotationDigest] = dOld })}}, detail: "not created"},
		{name: "image volume kept", obs: observed{deployments: []appsv1.Deployment{dep(withImageVolume(&corev1.ImageVolumeSource{Reference: "r:5000/nlp/bert/image@" + imageDigest}))}, pods: []corev1.Pod{pod(nil)}}, available: true},
		{name: "image volume made an emptyDir", obs: observed{deployments: []appsv1.Deployment{dep(withImageVolume(nil))}, pods: []corev1.Pod{pod(nil)}}, failed: "lost the image volume"},
		{name: "image volume of another image", obs: observed{deployments: []appsv1.Deployment{dep(withImageVolume(&corev1.ImageVolumeSource{Reference: "r:5000/nlp/bert/image@sha256:0"}))}, pods: []corev1.Pod{pod(nil)}}, failed: "lost the image volume"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := seldonPlatform{}.health(&c.obs, nil, dNew, hash)
			if h.Available != c.available || !strings.Contains(h.Failed, c.failed) || (c.failed == "") != (h.Failed == "") || !strings.Contains(h.Detail, c.detail) {
				t.Fatalf("health %+v, want available=%v failed~%q detail~%q", h, c.available, c.failed, c.detail)
			}
		})
	}
}

// imageDigest is the image form in the health tests' image volumes.
const imageDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// withImageVolume makes a Deployment one made with mount image, whose
// model volume has this image source (nil: the emptyDir Kubernetes makes
// of a volume without a source).
func withImageVolume(img *corev1.ImageVolumeSource) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations = map[string]string{render.AnnotationImageDigest: imageDigest}
		v := corev1.Volume{Name: render.ImageVolumeName, VolumeSource: corev1.VolumeSource{Image: img}}
		if img == nil {
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
		d.Spec.Template.Spec.Volumes = []corev1.Volume{v}
	}
}

// TestKServeHealth: KServe runs one Deployment; a version is available
// once as many of its own pods are ready as the spec asks, whatever the
// other version's pods do beside them during the roll.
func TestKServeHealth(t *testing.T) {
	const hash = "h1"
	md := &v1alpha1.ModelDeployment{Spec: v1alpha1.ModelDeploymentSpec{Backend: v1alpha1.BackendKServe, Replicas: ptr.To[int32](2)}}
	pod := func(name, digest string, ready bool, mut func(*corev1.Pod)) corev1.Pod {
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		p := corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{render.AnnotationDigest: digest, render.AnnotationSpecHash: hash}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "kserve-container", Ready: ready}}},
		}
		if mut != nil {
			mut(&p)
		}
		return p
	}
	for _, c := range []struct {
		name      string
		obs       observed
		digest    string
		available bool
		failed    string
		detail    string
	}{
		{name: "nothing yet", obs: observed{}, digest: dNew, detail: "has not started its pods"},
		{name: "KServe refuses", obs: observed{kserveNotReady: "storage URI not supported"}, digest: dNew, detail: "KServe reports: storage URI not supported"},
		{name: "rolling: old serves", obs: observed{pods: []corev1.Pod{pod("o1", dOld, true, nil), pod("o2", dOld, true, nil), pod("n1", dNew, false, nil)}}, digest: dOld, available: true},
		{name: "rolling: new waits", obs: observed{pods: []corev1.Pod{pod("o1", dOld, true, nil), pod("o2", dOld, true, nil), pod("n1", dNew, true, nil), pod("n2", dNew, false, nil)}}, digest: dNew, detail: "1 of 2 pods ready"},
		{name: "rolled", obs: observed{pods: []corev1.Pod{pod("n1", dNew, true, nil), pod("n2", dNew, true, nil)}}, digest: dNew, available: true},
		{name: "terminating pods do not count", obs: observed{pods: []corev1.Pod{pod("n1", dNew, true, nil), pod("n2", dNew, true, func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} })}}, digest: dNew, detail: "1 of 2"},
		{name: "another spec does not count", obs: observed{pods: []corev1.Pod{pod("n1", dNew, true, nil), pod("n2", dNew, true, func(p *corev1.Pod) { p.Annotations[render.AnnotationSpecHash] = "h0" })}}, digest: dNew, detail: "1 of 2"},
		{name: "initializer crash loop", obs: observed{pods: []corev1.Pod{pod("n1", dNew, false, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "storage-initializer", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		})}}, digest: dNew, failed: "container storage-initializer: CrashLoopBackOff"},
		{name: "progress deadline", obs: observed{deployments: []appsv1.Deployment{{
			ObjectMeta: metav1.ObjectMeta{Name: "bert-predictor"},
			Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{render.AnnotationDigest: dNew}}}},
			Status:     appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "too slow"}}},
		}}}, digest: dNew, failed: "too slow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := kservePlatform{}.health(&c.obs, md, c.digest, hash)
			if h.Available != c.available || !strings.Contains(h.Failed, c.failed) || (c.failed == "") != (h.Failed == "") || !strings.Contains(h.Detail, c.detail) {
				t.Fatalf("health %+v, want available=%v failed~%q detail~%q", h, c.available, c.failed, c.detail)
			}
		})
	}
}
