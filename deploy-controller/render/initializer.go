package render

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// InitializerContainerName is the name Seldon gives the storage initializer
// of the graph node (NODE-model-initializer): Seldon injects none when an
// init container of that name exists, and then only mounts the shared
// volume into the server.
const InitializerContainerName = GraphNodeName + "-model-initializer"

// initializerVolumeName is the emptyDir Seldon mounts at /mnt/models in the
// server when the initializer is already there (NODE-provision-location).
const initializerVolumeName = GraphNodeName + "-provision-location"

// InitializerOptions configure the initializer container that render
// writes itself (service-account-token credentials). The one Seldon
// injects for secretName credentials takes its resources from Seldon's
// seldon-config ConfigMap (storageInitializer) instead.
type InitializerOptions struct {
	// Resources of the container. A request or limit left out takes its
	// value from DefaultInitializerResources.
	Resources corev1.ResourceRequirements
}

// DefaultInitializerResources are the initializer's requests and limits
// when InitializerOptions leave them out: cpu 100m/1, memory 256Mi/1Gi.
func DefaultInitializerResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
}

// initializerResources fills what opts leave out from the defaults.
func initializerResources(opts InitializerOptions) corev1.ResourceRequirements {
	out := DefaultInitializerResources()
	for name, q := range opts.Resources.Requests {
		out.Requests[name] = q
	}
	for name, q := range opts.Resources.Limits {
		out.Limits[name] = q
	}
	return out
}

// InitializerSecurityContext is the initializer container's security
// context: no root, no privilege escalation, no capabilities, a read-only
// root filesystem (it writes only to /mnt/models) and the runtime's default
// seccomp profile. The image must run as a numeric non-root user, as the
// modelx image does (USER 65532 in build/modelx.Dockerfile).
func InitializerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// addTokenInitializer renders the storage initializer ourselves so it can
// read a projected service-account token: Seldon injects none when an init
// container of its name exists.
func addTokenInitializer(pod *corev1.PodSpec, sat *v1alpha1.ServiceAccountToken, uri, image string, opts InitializerOptions) {
	pod.ServiceAccountName = sat.ServiceAccountName
	pod.Volumes = append(pod.Volumes,
		corev1.Volume{Name: initializerVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		tokenVolume(sat))
	pod.InitContainers = append(pod.InitContainers, corev1.Container{
		Name: InitializerContainerName, Image: image, Args: []string{uri, ModelMountPath},
		Env: []corev1.EnvVar{{Name: "MODELX_TOKEN_FILE", Value: TokenMountPath + "/token"}},
		VolumeMounts: []corev1.VolumeMount{
			{Name: initializerVolumeName, MountPath: ModelMountPath},
			{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true},
		},
		Resources:       initializerResources(opts),
		SecurityContext: InitializerSecurityContext(),
	})
}

// TokenVolumeName is the pod volume that holds the projected
// service-account token for modelxd: rendered by the controller, mounted
// at TokenMountPath by the initializer (ours for Seldon; the
// modelx-serviceaccount ClusterStorageContainer's for KServe).
const TokenVolumeName = "modelx-token"

// tokenVolume is the projected service-account token volume for modelxd.
func tokenVolume(sat *v1alpha1.ServiceAccountToken) corev1.Volume {
	audience := sat.Audience
	if audience == "" {
		audience = "modelx"
	}
	return corev1.Volume{Name: TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: audience, ExpirationSeconds: ptr.To[int64](3600), Path: "token"}}},
	}}}
}
