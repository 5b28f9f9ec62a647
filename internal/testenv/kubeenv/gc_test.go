package kubeenv

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestKubeGarbageCollector(t *testing.T) {
	kube := StartKube(t)
	kube.StartGarbageCollector(t)
	c, err := client.New(kube.Config, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	for _, policy := range []metav1.DeletionPropagation{metav1.DeletePropagationBackground, metav1.DeletePropagationForeground} {
		t.Run(string(policy), func(t *testing.T) {
			ctx := t.Context()
			ns := "gc-" + strings.ToLower(string(policy))
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				t.Fatal(err)
			}
			owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
			if err := c.Create(ctx, owner); err != nil {
				t.Fatal(err)
			}
			yes := true
			child := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
				Namespace: ns,
				Name:      "child",
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion:         "v1",
					Kind:               "ConfigMap",
					Name:               owner.Name,
					UID:                owner.UID,
					Controller:         &yes,
					BlockOwnerDeletion: &yes,
				}},
			}}
			if err := c.Create(ctx, child); err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			if err := c.Delete(ctx, owner, client.PropagationPolicy(policy)); err != nil {
				t.Fatal(err)
			}
			waitGone(t, c, child, 60*time.Second)
			waitGone(t, c, owner, 60*time.Second)
			t.Logf("owner and child gone %s after the delete", time.Since(start).Round(time.Millisecond))
		})
	}
}

// waitGone polls until obj is not found, failing the test after timeout.
func waitGone(t *testing.T, c client.Client, obj client.Object, timeout time.Duration) {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	deadline := time.Now().Add(timeout)
	for {
		err := c.Get(t.Context(), key, obj)
		if apierrors.IsNotFound(err) {
			return
		}
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists %s after its owner was deleted (finalizers %v)", key, timeout, obj.GetFinalizers())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
