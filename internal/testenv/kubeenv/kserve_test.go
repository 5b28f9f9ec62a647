package kubeenv

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/testenv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestKServe runs the real KServe manager and checks what it makes of an
// InferenceService whose storageUri is a modelx:// reference: refused
// while no ClusterStorageContainer claims the scheme; with one, a pod whose
// storage-initializer init container is the ClusterStorageContainer's
// container with KServe's arguments and model volume.
func TestKServe(t *testing.T) {
	if testenv.InNetworkNamespace(t, PrefetchKServe) {
		return
	}
	start := time.Now()
	k := StartCluster(t, ClusterOptions{CRDPaths: []string{KServeCRDs(t)}})
	StartKServe(t, k, KServeOptions{})
	t.Logf("cluster and KServe up in %s", time.Since(start).Round(time.Millisecond))
	ctx := t.Context()
	if err := k.ensureNamespace(ctx, "models"); err != nil {
		t.Fatal(err)
	}
	const uri = "modelx://127.0.0.1:5000/nlp/bert@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef?insecure=true"

	t.Run("modelx URI without a ClusterStorageContainer", func(t *testing.T) {
		isvc := inferenceService("models", "unclaimed", uri)
		if err := k.client.Create(ctx, isvc); err != nil {
			t.Fatal(err)
		}
		want := "StorageURI not supported: storageUri, must be one of: [gs://, s3://, pvc://, file://, https://, http://, hdfs://, webhdfs://, oci://, hf://]"
		var events corev1.EventList
		waitFor(t, 30*time.Second, "KServe's InternalError event on InferenceService unclaimed", func(ctx context.Context) (bool, error) {
			if err := k.client.List(ctx, &events, client.InNamespace("models"), client.MatchingFields{"involvedObject.name": "unclaimed"}); err != nil {
				return false, err
			}
			return slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
				return e.Reason == "InternalError" && strings.Contains(e.Message, want) && strings.Contains(e.Message, "StorageUri ["+uri+"] is not supported")
			}), nil
		})
		var deployments appsv1.DeploymentList
		if err := k.client.List(ctx, &deployments, client.InNamespace("models")); err != nil {
			t.Fatal(err)
		}
		if len(deployments.Items) != 0 {
			t.Errorf("KServe made %d Deployments for a refused InferenceService", len(deployments.Items))
		}
		if err := k.client.Delete(ctx, isvc); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("storage initializer from the ClusterStorageContainer", func(t *testing.T) {
		csc := modelxStorageContainer()
		if err := k.client.Create(ctx, csc); err != nil {
			t.Fatal(err)
		}
		isvc := inferenceService("models", "bert", uri)
		// A volume of the pod that the ClusterStorageContainer mounts.
		if err := unstructured.SetNestedSlice(isvc.Object, []any{map[string]any{"name": "modelx-cache", "emptyDir": map[string]any{}}},
			"spec", "predictor", "volumes"); err != nil {
			t.Fatal(err)
		}
		if err := k.client.Create(ctx, isvc); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "InferenceService bert Ready", func(ctx context.Context) (bool, error) {
			if err := k.client.Get(ctx, client.ObjectKeyFromObject(isvc), isvc); err != nil {
				return false, err
			}
			return conditionTrue(isvc, "Ready"), nil
		})
		pod := inferenceServicePod(t, k, isvc)
		if b, err := json.MarshalIndent(pod.Spec.InitContainers, "", "  "); err == nil {
			t.Logf("init containers of pod %s:\n%s", pod.Name, b)
		}
		checkStorageInitializer(t, pod, uri)
	})
}

// checkStorageInitializer checks the storage-initializer init container of
// pod against modelxStorageContainer, and the model volume's mounts.
func checkStorageInitializer(t *testing.T, pod *corev1.Pod, uri string) {
	t.Helper()
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "storage-initializer" {
		t.Fatalf("init containers %v, want storage-initializer alone", containerNames(pod.Spec.InitContainers))
	}
	want := modelxContainer()
	got := pod.Spec.InitContainers[0]
	if got.Image != want.Image {
		t.Errorf("image %q, want the ClusterStorageContainer's %q", got.Image, want.Image)
	}
	if !slices.Equal(got.Args, []string{uri, "/mnt/models"}) {
		t.Errorf("args %q, want [storageUri /mnt/models]", got.Args)
	}
	if !reflect.DeepEqual(got.Resources, want.Resources) {
		t.Errorf("resources %v, want the ClusterStorageContainer's %v", got.Resources, want.Resources)
	}
	if !reflect.DeepEqual(got.SecurityContext, want.SecurityContext) {
		t.Errorf("securityContext %+v, want the ClusterStorageContainer's %+v", got.SecurityContext, want.SecurityContext)
	}
	if !slices.ContainsFunc(got.Env, func(e corev1.EnvVar) bool { return reflect.DeepEqual(e, want.Env[0]) }) {
		t.Errorf("env %v lacks the ClusterStorageContainer's %v", got.Env, want.Env[0])
	}
	models := corev1.VolumeMount{Name: "kserve-provision-location", MountPath: "/mnt/models"}
	for _, m := range append([]corev1.VolumeMount{models}, want.VolumeMounts...) {
		if !hasMount(got.VolumeMounts, m) {
			t.Errorf("storage-initializer volume mounts %v lack %v", got.VolumeMounts, m)
		}
	}
	server := pod.Spec.Containers[slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "kserve-container" })]
	models.ReadOnly = true
	if !hasMount(server.VolumeMounts, models) {
		t.Errorf("kserve-container volume mounts %v lack %v", server.VolumeMounts, models)
	}
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == models.Name && v.EmptyDir != nil }) {
		t.Errorf("no emptyDir volume %s in %v", models.Name, pod.Spec.Volumes)
	}
}

// modelxContainer is the container of modelxStorageContainer.
func modelxContainer() corev1.Container {
	return corev1.Container{
		Name:  "storage-initializer",
		Image: "modelx/modelx:test",
		Env: []corev1.EnvVar{{Name: "MODELX_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "modelx-pull"}, Key: "token",
		}}}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](65532),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "modelx-cache", MountPath: "/var/cache/modelx"}},
	}
}

// modelxStorageContainer is a ClusterStorageContainer that claims
// modelx:// URIs for modelxContainer.
func modelxStorageContainer() *unstructured.Unstructured {
	container, err := json.Marshal(modelxContainer())
	if err != nil {
		panic(err)
	}
	var c map[string]any
	if err := json.Unmarshal(container, &c); err != nil {
		panic(err)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.kserve.io/v1alpha1",
		"kind":       "ClusterStorageContainer",
		"metadata":   map[string]any{"name": "modelx"},
		"spec": map[string]any{
			"container":                  c,
			"supportedUriFormats":        []any{map[string]any{"prefix": "modelx://"}},
			"supportsMultiModelDownload": false,
		},
	}}
}

// inferenceService is an InferenceService in Standard mode serving an
// sklearn model from uri with the kserve-mlserver runtime.
func inferenceService(ns, name, uri string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.kserve.io/v1beta1",
		"kind":       "InferenceService",
		"metadata": map[string]any{
			"name": name, "namespace": ns,
			"annotations": map[string]any{"serving.kserve.io/deploymentMode": "Standard"},
		},
		"spec": map[string]any{"predictor": map[string]any{"model": map[string]any{
			"modelFormat": map[string]any{"name": "sklearn"},
			"runtime":     "kserve-mlserver",
			"storageUri":  uri,
		}}},
	}}
}

// conditionTrue reports whether an object's status condition of type
// typ is True.
func conditionTrue(obj *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	return slices.ContainsFunc(conds, func(c any) bool {
		m, _ := c.(map[string]any)
		return m["type"] == typ && m["status"] == "True"
	})
}

// inferenceServicePod returns the one pod of an InferenceService.
func inferenceServicePod(t *testing.T, k *Kube, isvc *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := k.client.List(t.Context(), &pods, client.InNamespace(isvc.GetNamespace()),
		client.MatchingLabels{"serving.kserve.io/inferenceservice": isvc.GetName()}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("%d pods of InferenceService %s, want 1", len(pods.Items), isvc.GetName())
	}
	return &pods.Items[0]
}

// hasMount reports whether mounts holds m.
func hasMount(mounts []corev1.VolumeMount, m corev1.VolumeMount) bool {
	return slices.ContainsFunc(mounts, func(x corev1.VolumeMount) bool { return reflect.DeepEqual(x, m) })
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}
