package render

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

const (
	imageA = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	imageB = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// imageBase is base() with mount image and a pull secret.
func imageBase() *v1alpha1.ModelDeployment {
	md := base()
	md.Spec.Model.Mount = v1alpha1.MountImage
	md.Spec.Model.ImagePullSecret = "modelx-pull"
	return md
}

// oneImage serves digestA, whose image form is imageA, alone.
func oneImage() Inputs {
	return Inputs{Versions: []Version{{Digest: digestA, Traffic: 100, ImageDigest: imageA}}, InitializerImage: "modelx/modelx:1.0"}
}

func TestImageReference(t *testing.T) {
	for _, tc := range []struct {
		registry, image string
		want            string // "" for an error
	}{
		{"http://modelxd.modelx:8080", imageA, "modelxd.modelx:8080/nlp/bert/image@" + imageA},
		{"https://models.example.com/", imageA, "models.example.com/nlp/bert/image@" + imageA},
		{"http://modelxd:8080", imageA, "modelxd:8080/nlp/bert/image@" + imageA},
		{"http://localhost", imageA, "localhost/nlp/bert/image@" + imageA},
		{"http://10.0.0.7", imageA, "10.0.0.7/nlp/bert/image@" + imageA},
		{"http://modelxd", imageA, ""}, // a namespace of the default registry to a runtime
		{"ftp://models.example.com", imageA, ""},
		{"http://modelxd.modelx:8080", "", ""},
		{"http://modelxd.modelx:8080", "sha256:abc", ""},
	} {
		got, err := ImageReference(v1alpha1.ModelSource{Registry: tc.registry, Name: "nlp/bert"}, tc.image)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("ImageReference(%q, %q) = %q, %v; want %q", tc.registry, tc.image, got, err, tc.want)
		}
	}
}

// podOf is the pod spec of a SeldonDeployment's only predictor.
func podOf(sd *SeldonDeployment) corev1.PodSpec {
	return sd.Spec.Predictors[0].ComponentSpecs[0].Spec
}

// checkImageMount checks that pod mounts the image form at ref, read-only
// at ModelMountPath in its container named server, pulled with the pull
// secret, and runs no init container.
func checkImageMount(t *testing.T, pod corev1.PodSpec, volumes []corev1.Volume, pullSecrets []corev1.LocalObjectReference, server corev1.Container, ref string) {
	t.Helper()
	if len(volumes) != 1 || volumes[0].Name != ImageVolumeName || volumes[0].Image == nil ||
		volumes[0].Image.Reference != ref || volumes[0].Image.PullPolicy != corev1.PullIfNotPresent {
		t.Errorf("volumes %+v, want only the image volume of %s, pulled if not present", volumes, ref)
	}
	if m := server.VolumeMounts; len(m) != 1 || !reflect.DeepEqual(m[0], corev1.VolumeMount{Name: ImageVolumeName, MountPath: ModelMountPath, ReadOnly: true}) {
		t.Errorf("server mounts %+v, want the image volume read-only at %s", m, ModelMountPath)
	}
	if len(pullSecrets) != 1 || pullSecrets[0].Name != "modelx-pull" {
		t.Errorf("image pull secrets %+v", pullSecrets)
	}
	if len(pod.InitContainers) != 0 {
		t.Errorf("init containers %+v with mount image", pod.InitContainers)
	}
}

func TestRenderSeldonDeploymentMountImage(t *testing.T) {
	ref := "modelxd.modelx:8080/nlp/bert/image@" + imageA
	for _, tc := range []struct {
		name   string
		server v1alpha1.ServerType
		check  func(t *testing.T, sd *SeldonDeployment)
	}{
		{"mlserver", v1alpha1.ServerMLServer, func(t *testing.T, sd *SeldonDeployment) {
			g := sd.Spec.Predictors[0].Graph
			// No modelUri: Seldon injects no initializer into a custom server.
			if g.ModelURI != "" || g.StorageInitializerImage != "" || g.Implementation != "" || g.EnvSecretRefName != "" {
				t.Errorf("graph %+v", g)
			}
			c := podOf(sd).Containers[0]
			if v, _ := env(c, EnvMLServerModelURI); v != ModelMountPath {
				t.Errorf("%s %q, want %s as Seldon sets it for a modelUri", EnvMLServerModelURI, v, ModelMountPath)
			}
		}},
		{"triton", v1alpha1.ServerTriton, func(t *testing.T, sd *SeldonDeployment) {
			g := sd.Spec.Predictors[0].Graph
			// Seldon passes the modelUri as Triton's model repository
			// when told to inject no storage initializer.
			if g.Implementation != ImplementationTriton || g.ModelURI != ModelMountPath || g.StorageInitializerImage != "" ||
				len(g.Parameters) != 1 || g.Parameters[0] != (Parameter{Name: "strict_model_config", Value: "false", Type: "STRING"}) {
				t.Errorf("graph %+v", g)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := imageBase()
			md.Spec.Server.Type = tc.server
			sd, err := RenderSeldonDeployment(md, oneImage())
			if err != nil {
				t.Fatal(err)
			}
			pod := podOf(sd)
			checkImageMount(t, pod, pod.Volumes, pod.ImagePullSecrets, pod.Containers[0], ref)
			if sd.Spec.Annotations[AnnotationSeldonNoStorageInitializer] != "true" {
				t.Errorf("spec.annotations %v", sd.Spec.Annotations)
			}
			p := sd.Spec.Predictors[0]
			if p.Annotations[AnnotationImageDigest] != imageA || p.Annotations[AnnotationDigest] != digestA || p.Name != PredictorName(digestA) {
				t.Errorf("predictor %s annotations %v", p.Name, p.Annotations)
			}
			tc.check(t, sd)
		})
	}
	// The default mount renders no image volume and tells Seldon nothing.
	sd, err := RenderSeldonDeployment(base(), oneImage())
	if err != nil {
		t.Fatal(err)
	}
	if pod := podOf(sd); len(pod.Volumes) != 0 || len(pod.ImagePullSecrets) != 0 || sd.Spec.Annotations != nil || sd.Spec.Predictors[0].Graph.ModelURI == "" {
		t.Errorf("initContainer mount rendered %+v, spec annotations %v", pod, sd.Spec.Annotations)
	}
}

func TestRenderInferenceServiceMountImage(t *testing.T) {
	md := imageBase()
	md.Spec.Backend = v1alpha1.BackendKServe
	isvc, err := RenderInferenceService(md, Inputs{Versions: []Version{{Digest: digestA, ImageDigest: imageA}, {Digest: digestB, Traffic: 100, ImageDigest: imageB}}, InitializerImage: "modelx/modelx:1.0"})
	if err != nil {
		t.Fatal(err)
	}
	p := isvc.Spec.Predictor
	// A storageUri keeps KServe off its multi-model path, and the
	// placeholder its storage initializer out.
	if p.Model.StorageURI != ModelMountPath {
		t.Errorf("storageUri %q, want the local path %s", p.Model.StorageURI, ModelMountPath)
	}
	if ic := p.InitContainers; len(ic) != 1 || ic[0].Name != "storage-initializer" || ic[0].Image != "modelx/modelx:1.0" ||
		!reflect.DeepEqual(ic[0].Command, []string{"/usr/local/bin/modelx", "version"}) || len(ic[0].Args) != 0 || len(ic[0].VolumeMounts) != 0 || !*ic[0].SecurityContext.RunAsNonRoot {
		t.Errorf("init containers %+v, want the placeholder that pulls nothing", ic)
	}
	server := corev1.Container{VolumeMounts: p.Model.VolumeMounts}
	checkImageMount(t, corev1.PodSpec{}, p.Volumes, p.ImagePullSecrets, server, "modelxd.modelx:8080/nlp/bert/image@"+imageB)
	if p.Annotations[AnnotationImageDigest] != imageB || p.Annotations[AnnotationDigest] != digestB || p.ServiceAccountName != "" {
		t.Errorf("predictor annotations %v service account %q", p.Annotations, p.ServiceAccountName)
	}
	in := oneImage()
	in.InitializerImage = ""
	if _, err := RenderInferenceService(md, in); err == nil || !strings.Contains(err.Error(), "--initializer-image") {
		t.Errorf("without an initializer image: %v", err)
	}
}

// TestSpecHashFollowsTheImage: the pods of a version run what its image
// form's digest names, so a change of that digest is a change of spec.
func TestSpecHashFollowsTheImage(t *testing.T) {
	in := func(image string) Inputs {
		return Inputs{Versions: []Version{{Digest: digestA, Traffic: 100, ImageDigest: image}}, InitializerImage: "modelx/modelx:1.0"}
	}
	md := imageBase()
	a, errA := RenderSeldonDeployment(md, in(imageA))
	b, errB := RenderSeldonDeployment(md, in(imageB))
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if ha, hb := a.Spec.Predictors[0].Annotations[AnnotationSpecHash], b.Spec.Predictors[0].Annotations[AnnotationSpecHash]; ha == hb {
		t.Errorf("Seldon spec hash %s for both image digests", ha)
	}
	md.Spec.Backend = v1alpha1.BackendKServe
	ka, errA := RenderInferenceService(md, in(imageA))
	kb, errB := RenderInferenceService(md, in(imageB))
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if ha, hb := ka.Spec.Predictor.Annotations[AnnotationSpecHash], kb.Spec.Predictor.Annotations[AnnotationSpecHash]; ha == hb {
		t.Errorf("KServe spec hash %s for both image digests", ha)
	}
	// With the default mount the image digest is not used.
	c, _ := RenderSeldonDeployment(base(), in(imageA))
	d, _ := RenderSeldonDeployment(base(), in(imageB))
	if c.Spec.Predictors[0].Annotations[AnnotationSpecHash] != d.Spec.Predictors[0].Annotations[AnnotationSpecHash] {
		t.Error("the image digest changed the spec hash of an initContainer mount")
	}
}

func TestRenderMountImageRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.ModelDeployment)
		in     Inputs
		want   string
	}{
		{"files", func(md *v1alpha1.ModelDeployment) { md.Spec.Model.Files = []string{"*.onnx"} }, oneImage(), "mounts every file"},
		{"secret credentials", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Credentials = &v1alpha1.Credentials{SecretName: "modelx-token"}
		}, oneImage(), "spec.model.imagePullSecret"},
		{"service-account token", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Credentials = &v1alpha1.Credentials{ServiceAccountToken: &v1alpha1.ServiceAccountToken{}}
		}, oneImage(), "spec.model.imagePullSecret"},
		{"pull secret without mount image", func(md *v1alpha1.ModelDeployment) { md.Spec.Model.Mount = "" }, oneImage(), "imagePullSecret is for mount: image"},
		{"unknown mount", func(md *v1alpha1.ModelDeployment) { md.Spec.Model.Mount = "nfs" }, oneImage(), `mount "nfs"`},
		{"image digest not resolved", func(*v1alpha1.ModelDeployment) {}, one(), "has not resolved it"},
		{"host a runtime reads as a namespace", func(md *v1alpha1.ModelDeployment) { md.Spec.Model.Registry = "http://modelxd" }, oneImage(), "default registry"},
	} {
		for _, backend := range []v1alpha1.Backend{v1alpha1.BackendSeldon, v1alpha1.BackendKServe} {
			md := imageBase()
			md.Spec.Backend = backend
			tc.mutate(md)
			var err error
			if backend == v1alpha1.BackendKServe {
				_, err = RenderInferenceService(md, tc.in)
			} else {
				_, err = RenderSeldonDeployment(md, tc.in)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s on %s: %v, want an error containing %q", tc.name, backend, err, tc.want)
			}
		}
	}
}
