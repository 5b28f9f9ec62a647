package controller_test

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"fmt"
	"io"
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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/controller"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/internal/testenv/kubeenv"
)

// seldonCRD names Seldon's SeldonDeployment CRD, and seldonCRDPatch is the
// JSON patch that teaches it image volumes (docs/deploy.md).
const seldonCRD = "seldondeployments.machinelearning.seldon.io"

var seldonCRDPatch = filepath.Join("..", "..", "deploy", "seldon", "crd-image-volumes.json")

// TestMountImage serves versions as image volumes through the real Seldon
// Core v1.19 operator, its CRD patched with deploy/seldon's patch before it
// starts (TestMountImageRefusedBySeldonsCRD: without): Seldon's pods mount
// the pinned image form, with no initializer; crane pulls what the kubelet
// would, with the pod's pull secret, and finds exactly the pushed files; a
// moving tag rolls out the new image.
func TestMountImage(t *testing.T) {
	s := startSuite(t, suiteOptions{noIstio: true, seldonImageVolumes: true, versions: map[string]string{"m1": "", "m2": ""}})
	m1 := s.tag("mounted", "m1")
	s.pullSecret("modelx-pull")
	s.create(&v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "mounted", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:     v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "mounted", Mount: v1alpha1.MountImage, ImagePullSecret: "modelx-pull"},
			FollowTag: &v1alpha1.FollowTag{Enabled: true, Interval: metav1.Duration{Duration: 300 * time.Millisecond}},
			Server:    v1alpha1.Server{Type: v1alpha1.ServerMLServer, Implementation: "mlserver_sklearn.SKLearnModel"},
		},
	})

	var image1 string
	t.Run("SeldonMountsTheImageForm", func(t *testing.T) {
		s.t = t
		s.eventually("serving m1 from its image form", func() error {
			md := s.md("mounted")
			if c := condition(md, v1alpha1.ConditionReady); md.Status.Digest != m1 || md.Status.ImageDigest == "" || c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("digest %s image %s ready %+v", md.Status.Digest, md.Status.ImageDigest, c)
			}
			return nil
		})
		image1 = s.md("mounted").Status.ImageDigest
		ref := s.imageRef(image1)
		dep := s.deploymentOf("mounted", m1)
		checkImagePod(t, dep.Spec.Template.Spec, render.GraphNodeName, ref)
		if dep.Spec.Template.Annotations[render.AnnotationImageDigest] != image1 {
			t.Errorf("pod template annotations %v", dep.Spec.Template.Annotations)
		}
		pod := s.onePodOf("mounted", m1)
		checkImagePod(t, pod.Spec, render.GraphNodeName, ref)
		server := pod.Spec.Containers[slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == render.GraphNodeName })]
		if v, _ := envOf(server, render.EnvMLServerModelURI); v != render.ModelMountPath {
			t.Errorf("server env %+v: MLServer finds the model by %s", server.Env, render.EnvMLServerModelURI)
		}
		s.wantFiles(s.pullImageVolume(&pod, render.GraphNodeName), "weights m1")
	})

	t.Run("TritonMountsTheImageFormToo", func(t *testing.T) {
		s.t = t
		s.create(&v1alpha1.ModelDeployment{
			ObjectMeta: metav1.ObjectMeta{Name: "mounted-triton", Namespace: "ml"},
			Spec: v1alpha1.ModelDeploymentSpec{
				Model:  v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Digest: m1, Mount: v1alpha1.MountImage},
				Server: v1alpha1.Server{Type: v1alpha1.ServerTriton},
			},
		})
		s.eventually("triton ready", func() error {
			if c := condition(s.md("mounted-triton"), v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("ready %+v", c)
			}
			return nil
		})
		// The same version has the same image form.
		if got := s.md("mounted-triton").Status.ImageDigest; got != image1 {
			t.Errorf("image digest %s, want %s", got, image1)
		}
		pod := s.deploymentOf("mounted-triton", m1).Spec.Template.Spec
		checkImagePod(t, pod, render.GraphNodeName, s.imageRef(image1))
		server := pod.Containers[slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == render.GraphNodeName })]
		for _, arg := range []string{"--model-repository=" + render.ModelMountPath, "--strict-model-config=false"} {
			if !slices.Contains(server.Args, arg) {
				t.Errorf("Triton args %q, want %s", server.Args, arg)
			}
		}
	})

	t.Run("TagMoveRollsOutTheNewImage", func(t *testing.T) {
		s.t = t
		m2 := s.tag("mounted", "m2")
		s.event("mounted", controller.ReasonPromoted, m2[:19])
		image2 := s.servingNewImage("mounted", m2, image1)
		pod := s.onePodOf("mounted", m2)
		checkImagePod(t, pod.Spec, render.GraphNodeName, s.imageRef(image2))
		s.wantFiles(s.pullImageVolume(&pod, render.GraphNodeName), "weights m2")
		s.eventually("m1's pods gone", func() error {
			if n := len(s.podsOf("mounted", m1)); n != 0 {
				return fmt.Errorf("%d pods of m1", n)
			}
			return nil
		})
	})
}

// checkImagePod checks a pod spec made for mount image: the image volume
// of ref, pulled if not present, mounted read-only at the model path in
// the container server; the pull secret; and no init container at all.
func checkImagePod(t *testing.T, pod corev1.PodSpec, server, ref string) {
	t.Helper()
	if len(pod.InitContainers) != 0 {
		t.Errorf("init containers %+v: nothing may pull the model but the node", pod.InitContainers)
	}
	i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == render.ImageVolumeName })
	if i < 0 {
		t.Fatalf("volumes %+v: no %s", pod.Volumes, render.ImageVolumeName)
	}
	if v := pod.Volumes[i]; v.Image == nil || v.Image.Reference != ref || v.Image.PullPolicy != corev1.PullIfNotPresent {
		t.Errorf("volume %+v, want the image volume of %s, pulled if not present", v, ref)
	}
	c := pod.Containers[slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == server })]
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == render.ImageVolumeName && m.MountPath == render.ModelMountPath && m.ReadOnly
	}) {
		t.Errorf("%s mounts %+v: not the image read-only at %s", server, c.VolumeMounts, render.ModelMountPath)
	}
	if len(pod.ImagePullSecrets) > 0 && pod.ImagePullSecrets[0].Name != "modelx-pull" {
		t.Errorf("image pull secrets %+v", pod.ImagePullSecrets)
	}
}

// imageRef is the image volume reference of the image form with this
// digest in the suite's registry.
// servingNewImage waits until the deployment name serves version d with
// an image form other than before, and returns that image's digest.
func (s *suite) servingNewImage(name, d, before string) string {
	s.t.Helper()
	var image string
	s.eventually(name+" serving "+d, func() error {
		md := s.md(name)
		if md.Status.Digest != d || md.Status.Rollout != nil || md.Status.Phase != v1alpha1.PhaseServing {
			return fmt.Errorf("digest %s rollout %+v phase %s", md.Status.Digest, md.Status.Rollout, md.Status.Phase)
		}
		image = md.Status.ImageDigest
		return nil
	})
	if image == "" || image == before {
		s.t.Fatalf("image digest %q after the move, %q before", image, before)
	}
	return image
}

func (s *suite) imageRef(image string) string {
	return strings.TrimPrefix(s.registry, "http://") + "/nlp/bert/image@" + image
}

// onePodOf waits for a pod that serves the version and returns it.
func (s *suite) onePodOf(name, digest string) corev1.Pod {
	s.t.Helper()
	var pod corev1.Pod
	s.eventually("a pod of "+digest[:19], func() error {
		pods := s.podsOf(name, digest)
		if len(pods) == 0 {
			return fmt.Errorf("no pods")
		}
		pod = pods[0]
		return nil
	})
	return pod
}

// pullSecret creates the Secret `kubectl create secret docker-registry
// NAME --docker-server=HOST:PORT --docker-username=robot
// --docker-password=TOKEN` makes, with the node robot's token.
func (s *suite) pullSecret(name string) {
	s.t.Helper()
	host := strings.TrimPrefix(s.registry, "http://")
	auth := base64.StdEncoding.EncodeToString([]byte("robot:" + nodeToken))
	config := fmt.Sprintf(`{"auths":{%q:{"username":"robot","password":%q,"auth":%q}}}`, host, nodeToken, auth)
	s.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(config)}})
}

// TestMountImageRefusedBySeldonsCRD: Seldon's CRD, as its Helm chart and
// bundle ship it, does not know image volumes; the controller writes no
// SeldonDeployment whose pods could not mount the model, and says how to
// fix it.
func TestMountImageRefusedBySeldonsCRD(t *testing.T) {
	s := startSuite(t, suiteOptions{noIstio: true, versions: map[string]string{"m1": ""}})
	s.tag("mounted", "m1")
	s.create(&v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "mounted", Namespace: "ml"},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:  v1alpha1.ModelSource{Registry: s.registry, Name: "nlp/bert", Tag: "mounted", Mount: v1alpha1.MountImage},
			Server: v1alpha1.Server{Type: v1alpha1.ServerMLServer},
		},
	})
	s.eventually("refused, naming the fix", func() error {
		c := condition(s.md("mounted"), v1alpha1.ConditionReady)
		if c == nil || c.Reason != controller.ReasonImageVolumesDropped || !strings.Contains(c.Message, "crd-image-volumes.json") {
			return fmt.Errorf("ready %+v", c)
		}
		return nil
	})
	if _, err := s.get(render.SeldonDeploymentGVK, "mounted"); !apierrors.IsNotFound(err) {
		t.Fatalf("a SeldonDeployment whose pods could not mount the model was written: %v", err)
	}
}

// patchSeldonCRD applies deploy/seldon/crd-image-volumes.json to Seldon's
// CRD, as `kubectl patch crd NAME --type=json --patch-file FILE` does, and
// waits until the apiserver holds a SeldonDeployment's image volume.
func patchSeldonCRD(t testing.TB, kube *kubeenv.Kube) {
	t.Helper()
	data, err := os.ReadFile(seldonCRDPatch)
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	crd.SetName(seldonCRD)
	if err := k8s.Patch(ctx, crd, client.RawPatch(types.JSONPatchType, data)); err != nil {
		t.Fatalf("patch CRD %s with %s: %v", seldonCRD, seldonCRDPatch, err)
	}
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": render.SeldonDeploymentGVK.GroupVersion().String(), "kind": render.SeldonDeploymentGVK.Kind,
		"metadata": map[string]any{"name": "probe", "namespace": "default"},
		"spec": map[string]any{"predictors": []any{map[string]any{"name": "p", "graph": map[string]any{"name": "model"},
			"componentSpecs": []any{map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "model"}},
				"volumes": []any{map[string]any{"name": "m", "image": map[string]any{"reference": "r.example.com/m@sha256:0"}}}}}}}}},
	}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := k8s.Create(ctx, probe.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict"))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the patched CRD does not hold image volumes after 30s: %v", err)
		}
	}
}

// pullImageVolume does what the node does for the image volume mounted at
// the model path in the pod's container: it pulls the volume's reference
// for linux/amd64 with the credentials of the pod's image pull secrets
// (crane export, as the runtime would unpack it) and returns the files of
// the image's root filesystem by path.
func (s *suite) pullImageVolume(pod *corev1.Pod, container string) map[string]string {
	s.t.Helper()
	ci := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == container })
	if ci < 0 {
		s.t.Fatalf("pod %s has no container %s", pod.Name, container)
	}
	mi := slices.IndexFunc(pod.Spec.Containers[ci].VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == render.ModelMountPath })
	if mi < 0 {
		s.t.Fatalf("nothing is mounted at %s in %s", render.ModelMountPath, container)
	}
	name := pod.Spec.Containers[ci].VolumeMounts[mi].Name
	vi := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	if vi < 0 || pod.Spec.Volumes[vi].Image == nil {
		s.t.Fatalf("the volume %s at %s is not an image volume: %+v", name, render.ModelMountPath, pod.Spec.Volumes)
	}
	dockerConfig := s.t.TempDir()
	for _, ref := range pod.Spec.ImagePullSecrets {
		var secret corev1.Secret
		if err := s.k8s.Get(context.Background(), client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, &secret); err != nil {
			s.t.Fatalf("image pull secret %s: %v", ref.Name, err)
		}
		if secret.Type != corev1.SecretTypeDockerConfigJson {
			s.t.Fatalf("image pull secret %s has type %s", ref.Name, secret.Type)
		}
		if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), secret.Data[corev1.DockerConfigJsonKey], 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	out := filepath.Join(s.t.TempDir(), "out.tar")
	if _, err := testenv.Crane(s.t, []string{"DOCKER_CONFIG=" + dockerConfig}, "export", "--insecure", "--platform", "linux/amd64", pod.Spec.Volumes[vi].Image.Reference, out); err != nil {
		s.t.Fatalf("crane export: %v", err)
	}
	f, err := os.Open(out)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	files := map[string]string{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			s.t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				s.t.Fatal(err)
			}
			files[strings.TrimPrefix(hdr.Name, "./")] = string(data)
		}
	}
}

// wantFiles fails unless files are, byte for byte, those of the model
// pushed with this content.
func (s *suite) wantFiles(files map[string]string, content string) {
	s.t.Helper()
	want := modelFiles(content)
	if fmt.Sprint(files) != fmt.Sprint(want) {
		s.t.Fatalf("the image volume holds %q, want the pushed files %q", files, want)
	}
}
