package render

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// With spec.model.mount image the model reaches the server as a Kubernetes
// image volume of the version's image form, which modelxd serves under
// /v2/REPOSITORY/NAME/image (docs/oci.md): an OCI image index whose root
// filesystem is the version's files. The node's container runtime pulls it
// (once per node) and the kubelet mounts it read-only at ModelMountPath;
// no init container runs. The reference pins the index digest, which the
// controller resolves from the version's manifest digest.

// ImageVolumeName is the pod volume of the model's image form.
const ImageVolumeName = "modelx-image"

// AnnotationImageDigest carries, with mount image, the digest of the
// image form a predictor mounts; Seldon and KServe copy it onto the pods.
const AnnotationImageDigest = "deploy.modelx.io/image-digest"

// AnnotationSeldonNoStorageInitializer, in a SeldonDeployment's
// spec.annotations, keeps Seldon v1.19 from injecting its storage
// initializer into a prepackaged server (TRITON_SERVER), which then takes
// the graph node's modelUri as its model repository
// (operator/controllers/seldondeployment_prepackaged_servers.go,
// addTritonServer).
const AnnotationSeldonNoStorageInitializer = "seldon.io/no-storage-initializer"

// MountOf is how md's model reaches the server; an object stored before
// spec.model.mount existed (empty) pulls it in an init container.
func MountOf(md *v1alpha1.ModelDeployment) v1alpha1.Mount {
	if md.Spec.Model.Mount == "" {
		return v1alpha1.MountInitContainer
	}
	return md.Spec.Model.Mount
}

// ImageReference is the image volume reference of a version's image form:
// HOST[:PORT]/REPOSITORY/NAME/image@INDEXDIGEST, the host and port of the
// registry URL. It refuses a registry whose host a container runtime would
// take for a namespace of its default registry (no dot, no port, not
// localhost).
func ImageReference(src v1alpha1.ModelSource, imageDigest string) (string, error) {
	u, err := url.Parse(src.Registry)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("spec.model.registry %q is not an http(s) URL", src.Registry)
	}
	if host := u.Hostname(); u.Port() == "" && host != "localhost" && !strings.Contains(host, ".") && net.ParseIP(host) == nil {
		return "", fmt.Errorf("spec.model.registry %q: with mount image, container runtimes read the host %q, without a dot or a port, as a namespace of their default registry: use a fully qualified host name that the nodes resolve, or write the port", src.Registry, host)
	}
	if !digestPattern.MatchString(imageDigest) {
		return "", fmt.Errorf("image form digest %q of %s is not sha256:<64 hex digits>: the controller has not resolved it", imageDigest, src.Name)
	}
	return u.Host + "/" + src.Name + "/image@" + imageDigest, nil
}

// imageVolume is the image volume of reference, pulled only when the node
// does not have it yet: the reference pins a digest.
func imageVolume(reference string) corev1.Volume {
	return corev1.Volume{Name: ImageVolumeName, VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{
		Reference: reference, PullPolicy: corev1.PullIfNotPresent,
	}}}
}

// imageMount mounts the image volume read-only at ModelMountPath.
func imageMount() corev1.VolumeMount {
	return corev1.VolumeMount{Name: ImageVolumeName, MountPath: ModelMountPath, ReadOnly: true}
}

// imagePullSecrets are the pod's image pull secrets: spec.model.imagePullSecret.
func imagePullSecrets(src v1alpha1.ModelSource) []corev1.LocalObjectReference {
	if src.ImagePullSecret == "" {
		return nil
	}
	return []corev1.LocalObjectReference{{Name: src.ImagePullSecret}}
}

// validateMount checks what the schema checks of spec.model.mount, for
// objects stored before those rules: with mount image, no file selection
// and no init-container credentials; imagePullSecret only with it.
func validateMount(md *v1alpha1.ModelDeployment) error {
	spec := md.Spec
	switch m := MountOf(md); m {
	case v1alpha1.MountInitContainer:
		if spec.Model.ImagePullSecret != "" {
			return fmt.Errorf("spec.model.imagePullSecret is for mount: image, where the node pulls the model's image with it: remove it, or set spec.model.mount: image")
		}
		return nil
	case v1alpha1.MountImage:
	default:
		return fmt.Errorf("spec.model.mount %q is not a mount: use initContainer or image", m)
	}
	if len(spec.Model.Files) > 0 {
		return fmt.Errorf("spec.model.files selects what an init container pulls; mount: image mounts every file of the version: remove files, or use mount: initContainer")
	}
	if c := spec.Credentials; c != nil && (c.SecretName != "" || c.ServiceAccountToken != nil) {
		return fmt.Errorf("spec.credentials are the init container's, which mount: image does not run; the node pulls the model's image: remove them and name a kubernetes.io/dockerconfigjson Secret (a modelx token as the password) in spec.model.imagePullSecret")
	}
	return nil
}

// validateImageDigests checks, with mount image, that every version has
// the digest of its image form.
func validateImageDigests(md *v1alpha1.ModelDeployment, versions []Version) error {
	if MountOf(md) != v1alpha1.MountImage {
		return nil
	}
	for _, v := range versions {
		if _, err := ImageReference(md.Spec.Model, v.ImageDigest); err != nil {
			return fmt.Errorf("version %s: %w", v.Digest, err)
		}
	}
	return nil
}
