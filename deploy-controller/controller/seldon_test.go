package controller_test

import (
	"context"
	"fmt"
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/deploy-controller/render"
)

// cluster is the part of a cluster the controller's tests drive: what
// Seldon's operator makes of a SeldonDeployment (a Deployment per
// predictor, carrying the predictor's labels and annotations on itself and
// its pod template) and what becomes of those pods.
//
// This one plays Seldon and the kubelet from the test: it creates the
// predictor's Deployment as Seldon v1.19 names and labels it
// (SDNAME-PREDICTOR-0-model, predictor labels and annotations copied) and
// sets the Deployment and pod status the deployment controller and kubelet
// would report.
type cluster struct {
	s *suite
}

// deployment is the Deployment Seldon makes for the predictor that serves
// digest in the SeldonDeployment name, as it is rendered now.
func (c cluster) deployment(name, digest string) *appsv1.Deployment {
	c.s.t.Helper()
	sd, err := c.s.get(render.SeldonDeploymentGVK, name)
	if err != nil {
		c.s.t.Fatal(err)
	}
	for _, p := range predictors(sd) {
		if p["name"] != render.PredictorName(digest) {
			continue
		}
		labels, annotations := map[string]string{}, map[string]string{}
		for k, v := range p["labels"].(map[string]any) {
			labels[k] = v.(string)
		}
		for k, v := range p["annotations"].(map[string]any) {
			annotations[k] = v.(string)
		}
		replicas, _ := p["replicas"].(int64)
		podLabels := maps.Clone(labels)
		podLabels["seldon-deployment-id"] = name
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s-0-model", name, p["name"]), Namespace: "ml", Labels: labels, Annotations: annotations},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(replicas)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"seldon-deployment-id": name, render.LabelName: labels[render.LabelName], "deploy.modelx.io/digest": labels["deploy.modelx.io/digest"]}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: annotations},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: render.GraphNodeName, Image: "server"}}},
				},
			},
		}
	}
	c.s.t.Fatalf("no predictor serves %s in %v", digest, predictors(sd))
	return nil
}

// makeDeployment creates (or brings up to date) the predictor's
// Deployment, its pods not available yet.
func (c cluster) makeDeployment(name, digest string) {
	c.s.t.Helper()
	want := c.deployment(name, digest)
	ctx := context.Background()
	var got appsv1.Deployment
	err := c.s.k8s.Get(ctx, client.ObjectKeyFromObject(want), &got)
	switch {
	case apierrors.IsNotFound(err):
		err = c.s.k8s.Create(ctx, want)
	case err == nil:
		got.Labels, got.Annotations, got.Spec = want.Labels, want.Annotations, want.Spec
		err = c.s.k8s.Update(ctx, &got)
	}
	if err != nil {
		c.s.t.Fatal(err)
	}
}

// podsReady makes the predictor's Deployment available: every replica
// updated, ready and available, as the deployment controller reports
// once the kubelet runs its pods.
func (c cluster) podsReady(name, digest string) {
	c.s.t.Helper()
	c.makeDeployment(name, digest)
	want := c.deployment(name, digest)
	c.s.eventually("Deployment status", func() error {
		var d appsv1.Deployment
		if err := c.s.k8s.Get(context.Background(), client.ObjectKeyFromObject(want), &d); err != nil {
			return err
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}}
		return c.s.k8s.Status().Update(context.Background(), &d)
	})
}

// crashLoop gives the predictor's Deployment a pod whose server container
// keeps crashing, as the kubelet reports it.
func (c cluster) crashLoop(name, digest string) {
	c.s.t.Helper()
	c.makeDeployment(name, digest)
	d := c.deployment(name, digest)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-crash", Namespace: "ml", Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
		Spec:       d.Spec.Template.Spec,
	}
	c.s.create(pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: render.GraphNodeName, RestartCount: 4,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}},
	}}}
	if err := c.s.k8s.Status().Update(context.Background(), pod); err != nil {
		c.s.t.Fatal(err)
	}
}
