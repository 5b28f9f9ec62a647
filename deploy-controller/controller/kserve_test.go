package controller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/internal/testenv/kubeenv"
)

// kserveFetch fetches, before the test enters its network namespace, what
// the KServe suite reads from the module cache there.
func kserveFetch(t testing.TB) {
	kubeenv.SeldonCRD(t)
	kubeenv.IstioCRDs(t)
	kubeenv.PrefetchKServe(t)
}

// installStorageContainers creates the ClusterStorageContainers that
// deploy/kserve ships, with the test's initializer image.
func (s *suite) installStorageContainers(image string) {
	s.t.Helper()
	s.kube.CreateFromFile(s.t, filepath.Join("..", "..", "deploy", "kserve", "clusterstoragecontainers.yaml"), func(u *unstructured.Unstructured) {
		unstructured.SetNestedField(u.Object, image, "spec", "container", "image")
	})
}

// TestKServeBackend runs ModelDeployments with backend kserve against the
// real KServe v0.16.0 controller and its webhooks: the InferenceService we
// render is admitted, KServe makes the Deployment, its pod webhook injects
// our storage initializer, the initializer run as the Pod says pulls the
// pinned version, and a moving tag rolls out in place or back.
func TestKServeBackend(t *testing.T) {
	if testenv.InNetworkNamespace(t, kserveFetch) {
		return
	}
	s := startSuite(t, suiteOptions{kserve: true, versions: map[string]string{
		"k1": "", "k2": "", "kbad": kubeenv.BehaviourCrashLoop,
	}})
	s.installStorageContainers("modelx/modelx:test")
	s.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller", Namespace: "ml"}})
	k1 := s.tag("iris", "k1")
	s.create(&v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "iris", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Backend:          v1alpha1.BackendKServe,
			Model:            v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "iris"},
			FollowTag:        &v1alpha1.FollowTag{Enabled: true, Interval: metav1.Duration{Duration: 500 * time.Millisecond}},
			Server:           v1alpha1.Server{Type: v1alpha1.ServerMLServer, Implementation: "mlserver_sklearn.SKLearnModel"},
			Replicas:         ptr.To[int32](2),
			Credentials:      &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{ServiceAccountName: "puller", Audience: "modelx"}},
			ProgressDeadline: metav1.Duration{Duration: time.Minute},
		},
	})

	t.Run("ServesThePinnedVersion", func(t *testing.T) {
		s.t = t
		s.eventually("iris serving k1", func() error {
			md := s.md("iris")
			if c := condition(md, v1alpha1.ConditionReady); md.Status.Digest != k1 || c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("digest %s, ready %+v", md.Status.Digest, c)
			}
			return nil
		})
		isvc, err := s.get(render.InferenceServiceGVK, "iris")
		if err != nil {
			t.Fatal(err)
		}
		uri, _, _ := unstructured.NestedString(isvc.Object, "spec", "predictor", "model", "storageUri")
		if !strings.HasPrefix(uri, "modelx://serviceaccount@127.0.0.1:") || !strings.Contains(uri, "/nlp/bert@"+k1+"?") {
			t.Fatalf("storageUri %q", uri)
		}
		md := s.md("iris")
		if md.Status.URL == "" || condition(md, v1alpha1.ConditionExposed).Reason != render.ReasonNotExposed {
			t.Errorf("url %q exposed %+v", md.Status.URL, condition(md, v1alpha1.ConditionExposed))
		}
		if h := md.Status.Hold; h == nil || fmt.Sprint(h.Digests) != "["+k1+"]" {
			t.Errorf("hold %+v, want k1 held", md.Status.Hold)
		}

		// The pods KServe's Deployment made, with the initializer its
		// webhook injected from our ClusterStorageContainer.
		pods := s.podsOf("iris", k1)
		if len(pods) != 2 {
			t.Fatalf("%d pods of k1, want 2", len(pods))
		}
		pod := pods[0]
		i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "storage-initializer" })
		if i < 0 {
			t.Fatalf("init containers %+v: KServe injected no storage-initializer", pod.Spec.InitContainers)
		}
		init := pod.Spec.InitContainers[i]
		if init.Image != "modelx/modelx:test" || fmt.Sprint(init.Args) != fmt.Sprint([]string{uri, render.ModelMountPath}) {
			t.Errorf("initializer image %q args %q", init.Image, init.Args)
		}
		if v, ok := envOf(init, "MODELX_TOKEN_FILE"); !ok || v != render.TokenMountPath+"/token" {
			t.Errorf("initializer env %+v", init.Env)
		}
		if !mounts(init, render.TokenVolumeName, render.TokenMountPath) {
			t.Errorf("initializer mounts %+v: no token", init.VolumeMounts)
		}
		if sc := init.SecurityContext; sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
			t.Errorf("initializer security context %+v", init.SecurityContext)
		}
		if q := init.Resources.Limits.Memory(); q.String() != "1Gi" {
			t.Errorf("initializer memory limit %s, want the ClusterStorageContainer's 1Gi", q)
		}
		server := pod.Spec.Containers[slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "kserve-container" })]
		if v, _ := envOf(server, "MLSERVER_MODEL_IMPLEMENTATION"); v != "mlserver_sklearn.SKLearnModel" {
			t.Errorf("server env %+v: the runtime takes the implementation from the modelClass label", server.Env)
		}

		// Run it, as the pod says: the model lands verified.
		mnt := s.runInitContainer(&pod, init)
		if data, err := os.ReadFile(filepath.Join(mnt, "model.onnx")); err != nil || string(data) != "weights k1" {
			t.Fatalf("model.onnx: %q %v", data, err)
		}
		if _, err := os.Stat(filepath.Join(mnt, ".modelx")); !os.IsNotExist(err) {
			t.Errorf("the initializer left .modelx in the model directory: %v", err)
		}
	})

	t.Run("TagMoveRollsOutInPlace", func(t *testing.T) {
		s.t = t
		k2 := s.tag("iris", "k2")
		s.eventually("iris serving k2", func() error {
			md := s.md("iris")
			if md.Status.Digest != k2 || md.Status.Rollout != nil || md.Status.Phase != v1alpha1.PhaseServing {
				return fmt.Errorf("digest %s rollout %+v phase %s", md.Status.Digest, md.Status.Rollout, md.Status.Phase)
			}
			return nil
		})
		s.event("iris", "Promoted", k2[:19])
		isvc, _ := s.get(render.InferenceServiceGVK, "iris")
		if uri, _, _ := unstructured.NestedString(isvc.Object, "spec", "predictor", "model", "storageUri"); !strings.Contains(uri, k2) {
			t.Fatalf("storageUri %q, want k2", uri)
		}
		s.eventually("k1's pods gone", func() error {
			if n := len(s.podsOf("iris", s.digests["k1"])); n != 0 {
				return fmt.Errorf("%d pods of k1", n)
			}
			return nil
		})
	})

	t.Run("FailingVersionIsRolledBack", func(t *testing.T) {
		s.t = t
		k2 := s.digests["k2"]
		bad := s.tag("iris", "kbad")
		s.eventually("kbad abandoned", func() error {
			md := s.md("iris")
			if a := md.Status.LastAborted; a == nil || a.Digest != bad || md.Status.Digest != k2 {
				return fmt.Errorf("digest %s last aborted %+v", md.Status.Digest, md.Status.LastAborted)
			}
			return nil
		})
		s.eventually("the InferenceService back on k2, and ready", func() error {
			isvc, err := s.get(render.InferenceServiceGVK, "iris")
			if err != nil {
				return err
			}
			if uri, _, _ := unstructured.NestedString(isvc.Object, "spec", "predictor", "model", "storageUri"); !strings.Contains(uri, k2) {
				return fmt.Errorf("storageUri %q", uri)
			}
			if c := condition(s.md("iris"), v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("ready %+v", c)
			}
			return nil
		})
	})

	t.Run("TritonOnAGPUExposedByKServe", func(t *testing.T) {
		s.t = t
		k1 := s.digests["k1"]
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "triton", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Backend:      v1alpha1.BackendKServe,
				Model:        v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Digest: k1},
				Server:       v1alpha1.Server{Type: v1alpha1.ServerTriton},
				Resources:    v1alpha1.Resources{GPU: 1},
				NodeSelector: map[string]string{"nvidia.com/gpu.present": "true"},
				Tolerations:  []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
				Expose:       &v1alpha1.Expose{},
			},
		})
		var isvcURL string
		s.eventually("triton ready at KServe's URL", func() error {
			md := s.md("triton")
			if c := condition(md, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("ready %+v", c)
			}
			isvc, err := s.get(render.InferenceServiceGVK, "triton")
			if err != nil {
				return err
			}
			isvcURL, _, _ = unstructured.NestedString(isvc.Object, "status", "url")
			if isvcURL == "" || md.Status.URL != isvcURL {
				return fmt.Errorf("url %q, KServe's %q", md.Status.URL, isvcURL)
			}
			return nil
		})
		if c := condition(s.md("triton"), v1alpha1.ConditionExposed); c.Status != metav1.ConditionTrue || c.Reason != render.ReasonKServeIngress {
			t.Errorf("exposed %+v", c)
		}
		if strings.Contains(isvcURL, ".svc.cluster.local") {
			t.Errorf("KServe's URL %q is cluster-local: expose: {} leaves exposure to its ingress", isvcURL)
		}
		pods := s.podsOf("triton", k1)
		if len(pods) != 1 {
			t.Fatalf("%d pods", len(pods))
		}
		pod := pods[0]
		if pod.Spec.NodeName != "kwok-gpu-0" {
			t.Errorf("scheduled on %q, want the GPU node", pod.Spec.NodeName)
		}
		server := pod.Spec.Containers[slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "kserve-container" })]
		if q := server.Resources.Limits[kubeenv.GPUResource]; q.String() != "1" {
			t.Errorf("server limits %v, want one %s", server.Resources.Limits, kubeenv.GPUResource)
		}
		if !slices.Contains(server.Args, "--model-store=/mnt/models") {
			t.Errorf("server args %q: not KServe's Triton runtime", server.Args)
		}
	})

	t.Run("SecretMustBeTheStorageContainers", func(t *testing.T) {
		s.t = t
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "other-secret", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Backend:     v1alpha1.BackendKServe,
				Model:       v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "k1"},
				Server:      v1alpha1.Server{Type: v1alpha1.ServerMLServer},
				Credentials: &v1alpha1.Credentials{SecretName: "my-token"},
			},
		})
		s.eventually("refused", func() error {
			c := condition(s.md("other-secret"), v1alpha1.ConditionReady)
			if c == nil || c.Reason != "InvalidSpec" || !strings.Contains(c.Message, `"modelx-credentials"`) {
				return fmt.Errorf("ready %+v", c)
			}
			return nil
		})
		if _, err := s.get(render.InferenceServiceGVK, "other-secret"); err == nil {
			t.Error("an InferenceService was rendered for a refused spec")
		}
	})

	t.Run("MountImage", func(t *testing.T) {
		s.t = t
		k1, k2 := s.tag("mounted", "k1"), s.digests["k2"]
		s.pullSecret("modelx-pull")
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "mounted", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Backend:   v1alpha1.BackendKServe,
				Model:     v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "mounted", Mount: v1alpha1.MountImage, ImagePullSecret: "modelx-pull"},
				FollowTag: &v1alpha1.FollowTag{Enabled: true, Interval: metav1.Duration{Duration: 500 * time.Millisecond}},
				Server:    v1alpha1.Server{Type: v1alpha1.ServerMLServer, Implementation: "mlserver_sklearn.SKLearnModel"},
			},
		})
		var image1 string
		s.eventually("mounted serving k1 from its image form", func() error {
			md := s.md("mounted")
			if c := condition(md, v1alpha1.ConditionReady); md.Status.Digest != k1 || md.Status.ImageDigest == "" || c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("digest %s image %s ready %+v", md.Status.Digest, md.Status.ImageDigest, c)
			}
			image1 = md.Status.ImageDigest
			return nil
		})
		isvc, err := s.get(render.InferenceServiceGVK, "mounted")
		if err != nil {
			t.Fatal(err)
		}
		if uri, _, _ := unstructured.NestedString(isvc.Object, "spec", "predictor", "model", "storageUri"); uri != render.ModelMountPath {
			t.Errorf("storageUri %q, want the local path %s: without one KServe takes the predictor for a multi-model server", uri, render.ModelMountPath)
		}
		// The pods KServe's Deployment made: the image volume intact, no
		// storage initializer from its webhook beside our placeholder, and
		// no model agent.
		pod := s.onePodOf("mounted", k1)
		checkKServeImagePod(t, pod.Spec, s.imageRef(image1))
		s.wantFiles(s.pullImageVolume(&pod, "kserve-container"), "weights k1")

		// A moving tag rolls the new version's image form out in place.
		s.tag("mounted", "k2")
		image2 := s.servingNewImage("mounted", k2, image1)
		pod = s.onePodOf("mounted", k2)
		checkKServeImagePod(t, pod.Spec, s.imageRef(image2))
		s.wantFiles(s.pullImageVolume(&pod, "kserve-container"), "weights k2")
		s.eventually("k1's pods gone", func() error {
			if n := len(s.podsOf("mounted", k1)); n != 0 {
				return fmt.Errorf("%d pods of k1", n)
			}
			return nil
		})
	})

	t.Run("SwitchToSeldon", func(t *testing.T) {
		s.t = t
		md := s.md("iris")
		md.Spec.Backend = v1alpha1.BackendSeldon
		md.Spec.Server.Runtime, md.Spec.Server.ModelFormat = "", nil
		if err := s.k8s.Update(context.Background(), md); err != nil {
			t.Fatal(err)
		}
		s.eventually("a SeldonDeployment instead of the InferenceService", func() error {
			if _, err := s.get(render.SeldonDeploymentGVK, "iris"); err != nil {
				return err
			}
			if _, err := s.get(render.InferenceServiceGVK, "iris"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the InferenceService is still there (%v)", err)
			}
			return nil
		})
	})
}

// checkKServeImagePod checks a pod KServe made for mount image: only the
// placeholder init container, which pulls nothing; no model agent; the
// image volume of ref at the model path of kserve-container, and nothing
// else there.
func checkKServeImagePod(t *testing.T, pod corev1.PodSpec, ref string) {
	t.Helper()
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != render.KServeInitializerName ||
		pod.InitContainers[0].Image != "modelx/modelx:test" || fmt.Sprint(pod.InitContainers[0].Command) != "[/usr/local/bin/modelx version]" || len(pod.InitContainers[0].Args) > 0 {
		t.Errorf("init containers %+v: want only the placeholder, which pulls nothing", pod.InitContainers)
	}
	for _, c := range pod.Containers {
		if c.Name != "kserve-container" {
			t.Errorf("container %s beside the server: KServe took the predictor for a multi-model server", c.Name)
		}
	}
	for _, v := range pod.Volumes {
		if v.EmptyDir != nil {
			t.Errorf("volume %+v: KServe added a model directory", v)
		}
	}
	pod.InitContainers = nil
	checkImagePod(t, pod, "kserve-container", ref)
	if len(pod.ImagePullSecrets) != 1 {
		t.Errorf("image pull secrets %+v", pod.ImagePullSecrets)
	}
}

// envOf is the value of c's variable name.
func envOf(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// mounts is true when c mounts volume at path.
func mounts(c corev1.Container, volume, path string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume && m.MountPath == path })
}
