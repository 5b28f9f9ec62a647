package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
)

// crashLoopRestarts is how many restarts of a container that is not ready
// make a version Failed, even between two CrashLoopBackOff waits.
const crashLoopRestarts = 3

// stuckWaiting are the waiting reasons of a container that will not start
// without a change to the spec or the cluster.
var stuckWaiting = map[string]bool{
	"CrashLoopBackOff":           true,
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
}

// observed is the cluster's side of a ModelDeployment: the Deployments
// its platform made and their pods, and what the platform reports.
type observed struct {
	deployments []appsv1.Deployment
	pods        []corev1.Pod
	// seldonState and seldonDescription are the SeldonDeployment's status.
	seldonState, seldonDescription string
	// kserveNotReady is what KServe says of an InferenceService whose
	// Ready condition is False (its message).
	kserveNotReady string
	// url is where the platform says the model answers ("" when it says
	// nothing): the InferenceService's status.url.
	url string
}

// listWorkloads lists the Deployments and pods made for md: they carry the
// ModelDeployment's label (Seldon copies predictor labels, KServe the
// InferenceService's, onto both).
func (r *Reconciler) listWorkloads(ctx context.Context, md *v1alpha1.ModelDeployment, o *observed) error {
	sel := client.MatchingLabels{render.LabelName: md.Name}
	var deps appsv1.DeploymentList
	if err := r.List(ctx, &deps, client.InNamespace(md.Namespace), sel); err != nil {
		return fmt.Errorf("list Deployments: %w", err)
	}
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(md.Namespace), sel); err != nil {
		return fmt.Errorf("list Pods: %w", err)
	}
	o.deployments, o.pods = deps.Items, pods.Items
	return nil
}

// observe reads the SeldonDeployment's state and lists what Seldon made
// for md.
func (seldonPlatform) observe(ctx context.Context, r *Reconciler, md *v1alpha1.ModelDeployment) (*observed, error) {
	o := &observed{}
	sd := &unstructured.Unstructured{}
	sd.SetGroupVersionKind(render.SeldonDeploymentGVK)
	if err := r.Get(ctx, client.ObjectKeyFromObject(md), sd); err == nil {
		o.seldonState, _, _ = unstructured.NestedString(sd.Object, "status", "state")
		o.seldonDescription, _, _ = unstructured.NestedString(sd.Object, "status", "description")
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read SeldonDeployment: %w", err)
	}
	return o, r.listWorkloads(ctx, md, o)
}

// health reports the version with this digest, whose predictor was
// rendered with spec hash wantHash (render.AnnotationSpecHash): Seldon runs
// a Deployment per predictor.
func (seldonPlatform) health(o *observed, _ *v1alpha1.ModelDeployment, digest, wantHash string) Health {
	var mine []*appsv1.Deployment
	for i := range o.deployments {
		if o.deployments[i].Annotations[render.AnnotationDigest] == digest {
			mine = append(mine, &o.deployments[i])
		}
	}
	if len(mine) == 0 {
		detail := "Seldon has not created its Deployment yet"
		if o.seldonState == "Failed" && o.seldonDescription != "" {
			return Health{Failed: "Seldon reports: " + o.seldonDescription}
		}
		return Health{Detail: detail}
	}
	for _, d := range mine {
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
	for _, d := range mine {
		if detail := deploymentWaiting(d, wantHash); detail != "" {
			return Health{Detail: detail}
		}
	}
	return Health{Available: true}
}

// imageVolumeLost says how a Deployment made with mount image (its pod
// template carries render.AnnotationImageDigest) lost the model's image
// volume; "" when it mounts it. A platform that read our object without
// volumes[].image writes the volume without a source, which Kubernetes
// makes an emptyDir: the server would start on an empty model directory.
func imageVolumeLost(d *appsv1.Deployment) string {
	image := d.Spec.Template.Annotations[render.AnnotationImageDigest]
	if image == "" {
		return ""
	}
	i := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == render.ImageVolumeName })
	if i >= 0 {
		if img := d.Spec.Template.Spec.Volumes[i].Image; img != nil && strings.HasSuffix(img.Reference, "@"+image) {
			return ""
		}
	}
	return fmt.Sprintf("Deployment %s lost the image volume %s of the model's image form %s, and its pods would start on an empty %s: the platform read its object without volumes[].image. Its CRD's schema must know image volumes (docs/deploy.md); an operator that was running when the CRD was patched keeps the copy it read until the object changes or the operator restarts: restart it",
		d.Name, render.ImageVolumeName, short(image), render.ModelMountPath)
}

// deploymentFailure is why Kubernetes gave up on a Deployment's rollout.
func deploymentFailure(d *appsv1.Deployment) string {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return fmt.Sprintf("Deployment %s: %s", d.Name, c.Message)
		}
	}
	return ""
}

// deploymentWaiting says what a Deployment waits for before all its
// replicas run wantHash and are available; "" when none.
func deploymentWaiting(d *appsv1.Deployment, wantHash string) string {
	if got := d.Annotations[render.AnnotationSpecHash]; got != wantHash {
		return fmt.Sprintf("Deployment %s does not run the rendered spec yet", d.Name)
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	switch {
	case s.ObservedGeneration < d.Generation:
		return fmt.Sprintf("Deployment %s: the deployment controller has not seen the new spec yet", d.Name)
	case s.UpdatedReplicas < want || s.Replicas > s.UpdatedReplicas:
		return fmt.Sprintf("Deployment %s: %d of %d pods updated", d.Name, s.UpdatedReplicas, want)
	case s.AvailableReplicas < want:
		return fmt.Sprintf("Deployment %s: %d of %d pods available", d.Name, s.AvailableReplicas, want)
	}
	return ""
}

// podFailure is the first reason, in pod name order, why a pod of the
// version at wantHash will not become ready.
func (o *observed) podFailure(digest, wantHash string) string {
	var reasons []string
	for i := range o.pods {
		p := &o.pods[i]
		if p.Annotations[render.AnnotationDigest] != digest || p.Annotations[render.AnnotationSpecHash] != wantHash || p.DeletionTimestamp != nil {
			continue
		}
		if why := podStuck(p); why != "" {
			reasons = append(reasons, why)
		}
	}
	if len(reasons) == 0 {
		return ""
	}
	sort.Strings(reasons)
	return reasons[0]
}

// podStuck says why a pod will not become ready on its own; "" when it
// may still.
func podStuck(p *corev1.Pod) string {
	if p.Status.Phase == corev1.PodFailed {
		return fmt.Sprintf("pod %s failed: %s", p.Name, strings.TrimSpace(p.Status.Reason+" "+p.Status.Message))
	}
	statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil && stuckWaiting[w.Reason] {
			return fmt.Sprintf("pod %s: container %s: %s", p.Name, cs.Name, strings.TrimSuffix(strings.TrimSpace(w.Reason+": "+w.Message), ":"))
		}
		if cs.RestartCount >= crashLoopRestarts && !cs.Ready {
			msg := fmt.Sprintf("pod %s: container %s restarted %d times", p.Name, cs.Name, cs.RestartCount)
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf(" (last exit code %d: %s)", t.ExitCode, strings.TrimSpace(t.Reason+" "+t.Message))
			}
			return msg
		}
	}
	return ""
}

// CacheOptions limits the manager's cache of Deployments and Pods to those
// Seldon made for ModelDeployments (they carry render.LabelName): the
// controller must not hold every pod of the cluster in memory.
func CacheOptions() cache.Options {
	ours, err := labels.Parse(render.LabelName)
	if err != nil {
		panic(err) // a constant label key
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}: {Label: ours},
		&corev1.Pod{}:        {Label: ours},
	}}
}
