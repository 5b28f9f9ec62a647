package kubeenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HostRun says how RunContainer runs a container of a pod on the host.
type HostRun struct {
	// Entrypoints maps an image to the host command that stands for its
	// entrypoint, e.g. "modelx/modelx:test" to {"/tmp/bin/modelx", "pull"}
	// (build/modelx.Dockerfile's ENTRYPOINT is `modelx pull`). A container
	// with a command of its own is refused: nothing here knows its image's
	// file system.
	Entrypoints map[string][]string
	// Timeout bounds the run; default two minutes.
	Timeout time.Duration
}

// ContainerRun is what RunContainer did.
type ContainerRun struct {
	// Volumes maps each volume the container mounts to the host directory
	// that stood for it.
	Volumes map[string]string
	// Output is what the process wrote to stdout and stderr.
	Output string
	// Err is the process's error (nil when it exited 0).
	Err error
}

// RunContainer runs the container named name (an init container or a
// container) of pod on the host, as the pod says: its image's entrypoint
// (run.Entrypoints) with its args, its environment (values, and
// secretKeyRef, configMapKeyRef and the pod's name and namespace from the
// cluster), and its volume mounts, each a host directory: an emptyDir is an
// empty directory, a projected serviceAccountToken is a token the apiserver
// issues for the pod's service account with the projection's audience and
// lifetime, a Secret or ConfigMap volume (or projection) holds its keys. Paths under a
// mount path, in args and environment values, are rewritten to the host
// directory. A volume or source this cannot stand in for fails the test.
func (k *Kube) RunContainer(t testing.TB, pod *corev1.Pod, name string, run HostRun) ContainerRun {
	t.Helper()
	ctx := t.Context()
	c := findContainer(pod, name)
	if c == nil {
		t.Fatalf("pod %s/%s has no container %s", pod.Namespace, pod.Name, name)
	}
	if len(c.Command) > 0 {
		t.Fatalf("container %s has its own command %v: RunContainer runs only image entrypoints", name, c.Command)
	}
	entry, ok := run.Entrypoints[c.Image]
	if !ok || len(entry) == 0 {
		t.Fatalf("container %s runs image %q, which HostRun.Entrypoints does not map to a host command", name, c.Image)
	}

	out := ContainerRun{Volumes: map[string]string{}}
	var mounts []hostMount
	for _, m := range c.VolumeMounts {
		dir := out.Volumes[m.Name]
		if dir == "" {
			v := findVolume(pod, m.Name)
			if v == nil {
				t.Fatalf("container %s mounts volume %q, which pod %s does not have", name, m.Name, pod.Name)
			}
			dir = t.TempDir()
			if err := k.fillVolume(ctx, pod, v, dir); err != nil {
				t.Fatalf("volume %s: %v", m.Name, err)
			}
			out.Volumes[m.Name] = dir
		}
		host := dir
		if m.SubPath != "" {
			host = filepath.Join(dir, m.SubPath)
		}
		mounts = append(mounts, hostMount{container: m.MountPath, host: host})
	}
	// The longest mount path first, so a path under two mounts takes the
	// inner one.
	slices.SortFunc(mounts, func(a, b hostMount) int { return len(b.container) - len(a.container) })
	rewrite := func(s string) string {
		for _, m := range mounts {
			if s == m.container || strings.HasPrefix(s, m.container+"/") {
				return m.host + strings.TrimPrefix(s, m.container)
			}
		}
		return s
	}

	env := []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		value, present, err := k.envValue(ctx, pod, e)
		if err != nil {
			t.Fatalf("container %s env %s: %v", name, e.Name, err)
		}
		if present {
			env = append(env, e.Name+"="+rewrite(value))
		}
	}
	args := slices.Clone(entry[1:])
	for _, a := range c.Args {
		args = append(args, rewrite(a))
	}
	timeout := run.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, entry[0], args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	b, err := cmd.CombinedOutput()
	out.Output, out.Err = string(b), err
	return out
}

// hostMount is a container path and the host directory that stands for it.
type hostMount struct{ container, host string }

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func findVolume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

// fillVolume writes into dir what the kubelet would put in volume v of pod.
func (k *Kube) fillVolume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, dir string) error {
	switch src := v.VolumeSource; {
	case src.EmptyDir != nil:
		return nil
	case src.Secret != nil:
		// A Secret or ConfigMap volume holds what its projection would.
		return k.fillProjection(ctx, pod, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: src.Secret.SecretName}, Items: src.Secret.Items}}, dir)
	case src.ConfigMap != nil:
		return k.fillProjection(ctx, pod, corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{
			LocalObjectReference: src.ConfigMap.LocalObjectReference, Items: src.ConfigMap.Items}}, dir)
	case src.Projected != nil:
		for _, p := range src.Projected.Sources {
			if err := k.fillProjection(ctx, pod, p, dir); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("volume %s: only emptyDir, secret, configMap and projected volumes are stood in for", v.Name)
}

// fillProjection writes one source of a projected volume into dir: a
// service-account token, a Secret's or ConfigMap's keys, or the pod's name
// and namespace (the service-account volume the apiserver adds to every
// container has the last three).
func (k *Kube) fillProjection(ctx context.Context, pod *corev1.Pod, p corev1.VolumeProjection, dir string) error {
	switch {
	case p.ServiceAccountToken != nil:
		token, err := k.podToken(ctx, pod, p.ServiceAccountToken)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p.ServiceAccountToken.Path), []byte(token), 0o600)
	case p.ConfigMap != nil:
		var cm corev1.ConfigMap
		if err := k.client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: p.ConfigMap.Name}, &cm); err != nil {
			return err
		}
		data := map[string][]byte{}
		for key, v := range cm.Data {
			data[key] = []byte(v)
		}
		return writeKeys(dir, data, p.ConfigMap.Items)
	case p.Secret != nil:
		var s corev1.Secret
		if err := k.client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: p.Secret.Name}, &s); err != nil {
			return err
		}
		return writeKeys(dir, s.Data, p.Secret.Items)
	case p.DownwardAPI != nil:
		data := map[string][]byte{}
		var items []corev1.KeyToPath
		for _, f := range p.DownwardAPI.Items {
			if f.FieldRef == nil {
				return fmt.Errorf("downward API item %s: only fieldRef items are stood in for", f.Path)
			}
			v, _, err := podField(pod, f.FieldRef.FieldPath)
			if err != nil {
				return err
			}
			data[f.Path] = []byte(v)
			items = append(items, corev1.KeyToPath{Key: f.Path, Path: f.Path})
		}
		return writeKeys(dir, data, items)
	}
	return fmt.Errorf("projected source %+v is not stood in for", p)
}

// podField is the value of a downward-API field of pod.
func podField(pod *corev1.Pod, path string) (string, bool, error) {
	switch path {
	case "metadata.name":
		return pod.Name, true, nil
	case "metadata.namespace":
		return pod.Namespace, true, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, true, nil
	}
	return "", false, fmt.Errorf("field %s is not stood in for", path)
}

// writeKeys writes data's keys (or the items named) as files in dir.
func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath) error {
	if len(items) == 0 {
		for key := range data {
			items = append(items, corev1.KeyToPath{Key: key, Path: key})
		}
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("no key %q", it.Key)
		}
		p := filepath.Join(dir, it.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, v, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// podToken asks the apiserver for a token of pod's service account, as the
// kubelet does for a projected serviceAccountToken: bound to the pod, with
// the projection's audience (default: the apiserver's) and lifetime.
func (k *Kube) podToken(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(ptr.Deref(p.ExpirationSeconds, 3600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if p.Audience != "" {
		req.Spec.Audiences = []string{p.Audience}
	}
	account := &corev1.ServiceAccount{}
	if err := k.client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: sa}, account); err != nil {
		return "", fmt.Errorf("service account %s/%s: %w", pod.Namespace, sa, err)
	}
	if err := k.client.SubResource("token").Create(ctx, account, req); err != nil {
		return "", fmt.Errorf("token request for %s/%s: %w", pod.Namespace, sa, err)
	}
	return req.Status.Token, nil
}

// envValue is the value of e in pod, and whether the variable is set at
// all (an optional reference to a missing key or object is not).
func (k *Kube) envValue(ctx context.Context, pod *corev1.Pod, e corev1.EnvVar) (string, bool, error) {
	from := e.ValueFrom
	if from == nil {
		return e.Value, true, nil
	}
	switch {
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		var s corev1.Secret
		err := k.client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, &s)
		if apierrors.IsNotFound(err) && ptr.Deref(ref.Optional, false) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		v, ok := s.Data[ref.Key]
		if !ok && ptr.Deref(ref.Optional, false) {
			return "", false, nil
		}
		if !ok {
			return "", false, fmt.Errorf("secret %s has no key %s", ref.Name, ref.Key)
		}
		return string(v), true, nil
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		var cm corev1.ConfigMap
		err := k.client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, &cm)
		if apierrors.IsNotFound(err) && ptr.Deref(ref.Optional, false) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		v, ok := cm.Data[ref.Key]
		if !ok && !ptr.Deref(ref.Optional, false) {
			return "", false, fmt.Errorf("config map %s has no key %s", ref.Name, ref.Key)
		}
		return v, ok, nil
	case from.FieldRef != nil:
		return podField(pod, from.FieldRef.FieldPath)
	}
	return "", false, fmt.Errorf("valueFrom %+v is not stood in for", from)
}
