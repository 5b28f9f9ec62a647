package deploy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry/auth"
)

const (
	chartDir = "helm/modelx"
	// release is the release name of every render: objects are named
	// modelx-registry and modelx-controller.
	release = "modelx"
)

// A renderCase is a set of values and what the render must say.
type renderCase struct {
	name   string
	values string // YAML
	// wantErr, if set, is part of the message the render must fail with.
	wantErr string
	check   func(t *testing.T, r rendered)
}

// S3 keys the renders must keep out of everything but a Secret.
const s3SecretValue = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"

var renderCases = []renderCase{
	{
		name:   "fs-default",
		values: ``,
		check: func(t *testing.T, r rendered) {
			tag := appVersion(t)
			d := r.deployment(t, "modelx-registry")
			if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("registry: replicas %d, strategy %q; want 1 and Recreate (one pod owns the volume)", *d.Spec.Replicas, d.Spec.Strategy.Type)
			}
			c := container(t, d, "modelxd")
			if want := "modelx/modelxd:" + tag; c.Image != want {
				t.Errorf("registry image %q, want %q", c.Image, want)
			}
			wantArgs(t, c, "--data-dir=/data", "--enable-redirect=false", "--anonymous-pull=false", "--gc-interval=0s", "--gc-grace=1h", "--max-hold-ttl=720h", "--log-format=json")
			noArgPrefix(t, c, "--s3-", "--policy", "--auth-config")
			if len(c.Env) != 0 {
				t.Errorf("registry env %v, want none", c.Env)
			}
			if m := mountPath(c, "data"); m != "/data" {
				t.Errorf("data volume mounted at %q, want /data", m)
			}
			if v := volume(d, "data"); v == nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "modelx-registry-data" {
				t.Errorf("data volume %+v, want the claim modelx-registry-data", v)
			}
			checkRegistryPod(t, d, c)

			var pvc corev1.PersistentVolumeClaim
			r.object(t, "PersistentVolumeClaim", "modelx-registry-data", &pvc)
			if got := pvc.Spec.Resources.Requests.Storage().String(); got != "50Gi" {
				t.Errorf("claim size %s, want 50Gi", got)
			}
			if pvc.Spec.StorageClassName != nil {
				t.Errorf("claim storage class %q, want the cluster default (unset)", *pvc.Spec.StorageClassName)
			}
			if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
				t.Error("the data claim is not kept on uninstall")
			}
			r.absent(t, "Secret", "ConfigMap", "Ingress", "ServiceMonitor")

			var svc corev1.Service
			r.object(t, "Service", "modelx-registry", &svc)
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.String() != "http" {
				t.Errorf("service ports %+v, want 8080 to http", svc.Spec.Ports)
			}

			checkController(t, r, "modelx/modelx-controller:"+tag, "modelx/modelx:"+tag)
			cd := r.deployment(t, "modelx-controller")
			cc := container(t, cd, "manager")
			// The controller's own defaults, spelled out.
			wantArgs(t, cc, "--initializer-cpu-request=100m", "--initializer-cpu-limit=1",
				"--initializer-memory-request=256Mi", "--initializer-memory-limit=1Gi", "--gateway-selector=istio=ingress")
			noArgPrefix(t, cc, "--seldon-istio")
			if env := envVar(cc, "MODELX_TOKEN_FILE"); env == nil || env.Value != "/var/run/secrets/modelx/token" {
				t.Errorf("controller MODELX_TOKEN_FILE %+v, want the projected token", env)
			}
			v := volume(cd, "modelx-token")
			if v == nil || v.Projected == nil || len(v.Projected.Sources) != 1 || v.Projected.Sources[0].ServiceAccountToken.Audience != "modelx" {
				t.Errorf("controller token volume %+v, want a projected token with audience modelx", v)
			}
		},
	},
	{
		name: "s3-production",
		values: `
registry:
  replicas: 3
  storage:
    type: s3
    s3:
      endpoint: https://s3.example.com
      bucket: models
      region: eu-west-1
      pathStyle: true
      presignExpire: 10m
      accessKey: AKIAEXAMPLE
      secretKey: {existingSecret: modelx-s3, key: secret-access-key}
  enableRedirect: true
  anonymousPull: true
  oidc:
    issuer: https://idp.example.com
    audience: modelx-cli
    usernameClaim: preferred_username
    groupsClaim: roles
    allowUnverifiedEmail: true
    caConfigMap: {name: idp-ca, key: ca.pem}
  auth:
    issuers:
    - issuer: https://kubernetes.default.svc.cluster.local
      audience: modelx
      cluster: local
      jwksFile: /etc/modelx/cluster/jwks.json
    robots:
    - {name: ci, tokenSHA256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8, groups: [ci]}
  extraVolumes:
  - {name: cluster-jwks, configMap: {name: cluster-jwks}}
  extraVolumeMounts:
  - {name: cluster-jwks, mountPath: /etc/modelx/cluster, readOnly: true}
  policy:
    anonymousRepositories: ["public/*"]
    rules:
    - {repositories: ["*"], actions: [admin], groups: [registry-admins]}
    - {repositories: ["serving/*"], actions: [hold], serviceAccounts: ["local/prod/*"]}
  gc: {interval: 6h, grace: 2h, maxHoldTTL: 168h}
  lifecycle: {preStop: {sleep: {seconds: 5}}}
  ingress:
    enabled: true
    className: nginx
    annotations: {nginx.ingress.kubernetes.io/proxy-body-size: "0"}
    hosts: [{host: models.example.com, paths: [/]}]
    tls: [{secretName: models-tls, hosts: [models.example.com]}]
  metrics:
    serviceMonitor: {enabled: true, labels: {release: prometheus}}
  serviceAccount:
    annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/modelx"}
`,
		check: func(t *testing.T, r rendered) {
			d := r.deployment(t, "modelx-registry")
			if *d.Spec.Replicas != 3 || d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
				t.Errorf("registry: replicas %d, strategy %q; want 3, rolling", *d.Spec.Replicas, d.Spec.Strategy.Type)
			}
			c := container(t, d, "modelxd")
			wantArgs(t, c, "--s3-url=https://s3.example.com", "--s3-bucket=models", "--s3-region=eu-west-1",
				"--s3-path-style=true", "--s3-presign-expire=10m", "--enable-redirect=true", "--anonymous-pull=true",
				"--gc-interval=6h", "--gc-grace=2h", "--max-hold-ttl=168h",
				"--policy=/etc/modelx/config/policy.yaml", "--auth-config=/etc/modelx/config/auth.yaml")
			noArgPrefix(t, c, "--data-dir", "--s3-secret-key", "--s3-access-key")
			if m := mountPath(c, "data"); m != "" {
				t.Errorf("a data volume at %q with S3 storage", m)
			}
			r.absent(t, "PersistentVolumeClaim", "Secret")
			if env := envVar(c, "MODELXD_S3_ACCESS_KEY"); env == nil || env.Value != "AKIAEXAMPLE" {
				t.Errorf("MODELXD_S3_ACCESS_KEY %+v, want AKIAEXAMPLE", env)
			}
			checkSecretRef(t, c, "modelx-s3", "secret-access-key")
			checkRegistryPod(t, d, c)

			// The policy and the auth config reach modelxd as files it
			// accepts, at the paths its flags name.
			var cm corev1.ConfigMap
			r.object(t, "ConfigMap", "modelx-registry", &cm)
			if m := mountPath(c, "config"); m != "/etc/modelx/config" {
				t.Errorf("config mounted at %q, want /etc/modelx/config", m)
			}
			if v := volume(d, "config"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
				t.Errorf("config volume %+v, want the ConfigMap %s", v, cm.Name)
			}
			dir := t.TempDir()
			for name, data := range cm.Data {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			policy, err := auth.LoadPolicy(filepath.Join(dir, "policy.yaml"))
			if err != nil {
				t.Fatalf("modelxd refuses the rendered policy: %v", err)
			}
			if len(policy.Rules) != 2 || !slices.Equal(policy.AnonymousRepositories, []string{"public/*"}) || policy.Rules[1].ServiceAccounts[0] != "local/prod/*" {
				t.Errorf("rendered policy %+v is not the values' policy", policy)
			}
			cfg, err := auth.LoadConfig(filepath.Join(dir, "auth.yaml"))
			if err != nil {
				t.Fatalf("modelxd refuses the rendered auth config: %v", err)
			}
			want := auth.IssuerConfig{Issuer: "https://idp.example.com", Audience: "modelx-cli", UsernameClaim: "preferred_username",
				GroupsClaim: "roles", AllowUnverifiedEmail: true, CAFile: "/etc/modelx/oidc-ca/ca.pem", Login: true}
			if len(cfg.Issuers) != 2 || cfg.Issuers[0] != want || cfg.Issuers[1].JWKSFile != "/etc/modelx/cluster/jwks.json" || cfg.Issuers[1].Cluster != "local" {
				t.Errorf("rendered issuers %+v, want the OIDC issuer %+v then the cluster local", cfg.Issuers, want)
			}
			if err := policy.CheckClusters(cfg.Clusters()); err != nil {
				t.Errorf("modelxd refuses the rendered policy with the rendered auth config: %v", err)
			}
			if len(cfg.Robots) != 1 || cfg.Robots[0].Name != "ci" {
				t.Errorf("rendered robots %+v, want ci", cfg.Robots)
			}
			// The CA file the auth config names is the mounted ConfigMap key.
			if m := mountPath(c, "oidc-ca"); m != "/etc/modelx/oidc-ca" {
				t.Errorf("OIDC CA mounted at %q, want /etc/modelx/oidc-ca", m)
			}
			if v := volume(d, "oidc-ca"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "idp-ca" ||
				len(v.ConfigMap.Items) != 1 || v.ConfigMap.Items[0].Key != "ca.pem" || v.ConfigMap.Items[0].Path != "ca.pem" {
				t.Errorf("OIDC CA volume %+v, want key ca.pem of ConfigMap idp-ca", v)
			}
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 5 {
				t.Errorf("lifecycle %+v, want a 5s preStop sleep", c.Lifecycle)
			}
			if m := mountPath(c, "cluster-jwks"); m != "/etc/modelx/cluster" {
				t.Errorf("extra volume mounted at %q, want /etc/modelx/cluster", m)
			}

			var ing networkingv1.Ingress
			r.object(t, "Ingress", "modelx-registry", &ing)
			if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "models.example.com" ||
				ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "modelx-registry" ||
				ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name != "http" {
				t.Errorf("ingress rules %+v, want models.example.com to modelx-registry:http", ing.Spec.Rules)
			}
			if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "models-tls" || ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
				t.Errorf("ingress TLS %+v, class %v", ing.Spec.TLS, ing.Spec.IngressClassName)
			}
			sm := r.get(t, "ServiceMonitor", "modelx-registry")
			if sm.GetLabels()["release"] != "prometheus" {
				t.Errorf("ServiceMonitor labels %v, want release=prometheus", sm.GetLabels())
			}
			endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(endpoints) != 1 || endpoints[0].(map[string]any)["path"] != "/metrics" || endpoints[0].(map[string]any)["port"] != "http" {
				t.Errorf("ServiceMonitor endpoints %v, want http /metrics", endpoints)
			}
			var sa corev1.ServiceAccount
			r.object(t, "ServiceAccount", "modelx-registry", &sa)
			if sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
				t.Error("the registry's service account lost its annotations")
			}
		},
	},
	{
		name: "s3-secret-from-values",
		values: `
registry:
  storage:
    type: s3
    s3:
      bucket: models
      accessKey: AKIAEXAMPLE
      secretKey: {value: ` + s3SecretValue + `}
controller: {enabled: false}
`,
		check: func(t *testing.T, r rendered) {
			var s corev1.Secret
			r.object(t, "Secret", "modelx-registry-s3", &s)
			if string(s.Data["secret-key"]) != s3SecretValue {
				t.Errorf("Secret data %v does not hold the secret key under secret-key", s.Data)
			}
			c := container(t, r.deployment(t, "modelx-registry"), "modelxd")
			checkSecretRef(t, c, "modelx-registry-s3", "secret-key")
			noArgPrefix(t, c, "--s3-url")
			// Only the Secret holds the key, in any encoding.
			for _, o := range r.objs {
				if o.GetKind() == "Secret" {
					continue
				}
				js, err := json.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				for _, form := range []string{s3SecretValue, base64.StdEncoding.EncodeToString([]byte(s3SecretValue))} {
					if bytes.Contains(js, []byte(form)) {
						t.Errorf("%s %s holds the S3 secret key", o.GetKind(), o.GetName())
					}
				}
			}
			r.absent(t, "ClusterRole", "CustomResourceDefinition")
		},
	},
	{
		name: "controller-only",
		values: `
images: {repo: registry.example.com/ml, tag: 9.9.9, pullSecrets: [pull-secret]}
registry: {enabled: false}
controller:
  initializerImage: registry.example.com/ml/modelx-initializer:1.2.3
  initializerResources:
    requests: {cpu: 250m, memory: 512Mi}
    limits: {cpu: 2, memory: 2Gi}
  seldonIstio: true
  gatewaySelector: {tier: public, istio: ingressgateway}
  replicas: 2
  retryAfter: 1m
  registryToken: {existingSecret: modelx-token, key: token}
`,
		check: func(t *testing.T, r rendered) {
			for _, o := range r.objs {
				if o.GetLabels()["app.kubernetes.io/component"] != "controller" {
					t.Errorf("%s %s rendered with the registry disabled", o.GetKind(), o.GetName())
				}
			}
			checkController(t, r, "registry.example.com/ml/modelx-controller:9.9.9", "registry.example.com/ml/modelx-initializer:1.2.3")
			d := r.deployment(t, "modelx-controller")
			c := container(t, d, "manager")
			wantArgs(t, c, "--retry-after=1m", "--leader-elect", "--seldon-istio",
				"--initializer-cpu-request=250m", "--initializer-cpu-limit=2", "--initializer-memory-request=512Mi", "--initializer-memory-limit=2Gi",
				"--gateway-selector=istio=ingressgateway,tier=public")
			if *d.Spec.Replicas != 2 {
				t.Errorf("controller replicas %d, want 2", *d.Spec.Replicas)
			}
			if env := envVar(c, "MODELX_TOKEN"); env == nil || env.ValueFrom == nil || env.ValueFrom.SecretKeyRef == nil ||
				env.ValueFrom.SecretKeyRef.Name != "modelx-token" || env.ValueFrom.SecretKeyRef.Key != "token" || env.Value != "" {
				t.Errorf("MODELX_TOKEN %+v, want it from Secret modelx-token key token", env)
			}
			if envVar(c, "MODELX_TOKEN_FILE") != nil || volume(d, "modelx-token") != nil {
				t.Error("a projected token besides the token Secret")
			}
			if ps := d.Spec.Template.Spec.ImagePullSecrets; len(ps) != 1 || ps[0].Name != "pull-secret" {
				t.Errorf("image pull secrets %v, want pull-secret", ps)
			}
		},
	},
	{
		name:   "registry-only",
		values: `controller: {enabled: false}`,
		check: func(t *testing.T, r rendered) {
			for _, o := range r.objs {
				if o.GetLabels()["app.kubernetes.io/component"] != "registry" {
					t.Errorf("%s %s rendered with the controller disabled", o.GetKind(), o.GetName())
				}
			}
			r.absent(t, "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
			r.deployment(t, "modelx-registry")
		},
	},
	{
		name:    "fs-replicas",
		values:  `registry: {replicas: 3}`,
		wantErr: "registry.replicas is 3, but registry.storage.type fs runs exactly one replica",
	},
	{
		name:    "s3-no-bucket",
		values:  `registry: {storage: {type: s3}}`,
		wantErr: "registry.storage.s3.bucket is empty",
	},
	{
		name:    "unknown-storage",
		values:  `registry: {storage: {type: gcs}}`,
		wantErr: `/registry/storage/type': value must be one of 'fs', 's3'`, // values.schema.json
	},
	{
		name:    "redirect-fs",
		values:  `registry: {enableRedirect: true}`,
		wantErr: "registry.enableRedirect needs registry.storage.type=s3",
	},
	{
		name:    "oidc-no-audience",
		values:  `registry: {oidc: {issuer: "https://idp.example.com"}}`,
		wantErr: "registry.oidc.issuer and registry.oidc.audience go together",
	},
	{
		name:    "s3-key-without-secret",
		values:  `registry: {storage: {type: s3, s3: {bucket: b, accessKey: AKIA}}}`,
		wantErr: "registry.storage.s3.accessKey is set without a secret key",
	},
	{
		name:    "s3-secret-without-key",
		values:  `registry: {storage: {type: s3, s3: {bucket: b, secretKey: {existingSecret: s}}}}`,
		wantErr: "static keys need both",
	},
	{
		name:    "ingress-no-hosts",
		values:  `registry: {ingress: {enabled: true}}`,
		wantErr: "registry.ingress.enabled needs at least one entry in registry.ingress.hosts",
	},
	{
		name:    "service-account-without-cluster",
		values:  `registry: {auth: {issuers: [{issuer: "https://k8s", audience: modelx, cluster: prod}]}, policy: {rules: [{repositories: ["*"], actions: [pull], serviceAccounts: ["serving/*"]}]}}`,
		wantErr: `registry.policy.rules[0].serviceAccounts: "serving/*" is not CLUSTER/NAMESPACE/NAME`,
	},
	{
		name:    "service-account-unknown-cluster",
		values:  `registry: {auth: {issuers: [{issuer: "https://k8s", audience: modelx, cluster: prod}]}, policy: {rules: [{repositories: ["*"], actions: [pull], serviceAccounts: ["dev/serving/*"]}]}}`,
		wantErr: `"dev/serving/*" names cluster "dev", but no entry of registry.auth.issuers has cluster: dev`,
	},
	{
		name:   "kserve-storage-containers",
		values: `kserve: {storageContainers: {enabled: true, image: "modelx/modelx:latest"}}`,
		check: func(t *testing.T, r rendered) {
			// The chart renders what deploy/kserve ships, spec for spec.
			shipped := shippedStorageContainers(t)
			for name, want := range shipped {
				got := r.get(t, "ClusterStorageContainer", name)
				if !equalJSON(t, got.Object["spec"], want.Object["spec"]) {
					t.Errorf("ClusterStorageContainer %s: the chart renders spec %v, deploy/kserve ships %v", name, got.Object["spec"], want.Object["spec"])
				}
			}
			c := container(t, r.deployment(t, "modelx-controller"), "manager")
			wantArgs(t, c, "--kserve-secret-name=modelx-credentials")
		},
	},
	{
		name:   "kserve-secret-name",
		values: `kserve: {storageContainers: {enabled: true, secretName: ml-registry-token}}`,
		check: func(t *testing.T, r rendered) {
			var csc struct {
				Spec struct {
					Container corev1.Container `json:"container"`
				} `json:"spec"`
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.get(t, "ClusterStorageContainer", "modelx").Object, &csc); err != nil {
				t.Fatal(err)
			}
			env := csc.Spec.Container.Env
			if len(env) != 1 || env[0].ValueFrom == nil || env[0].ValueFrom.SecretKeyRef == nil || env[0].ValueFrom.SecretKeyRef.Name != "ml-registry-token" {
				t.Errorf("modelx storage container env %+v, want MODELX_TOKEN from the Secret ml-registry-token", env)
			}
			if want := "modelx/modelx:" + appVersion(t); csc.Spec.Container.Image != want {
				t.Errorf("image %q, want %q", csc.Spec.Container.Image, want)
			}
			wantArgs(t, container(t, r.deployment(t, "modelx-controller"), "manager"), "--kserve-secret-name=ml-registry-token")
		},
	},
	{
		name:    "misspelled-value",
		values:  `registry: {replica: 2}`,
		wantErr: "additional properties 'replica' not allowed",
	},
}

func TestChartRender(t *testing.T) {
	helm := testenv.RequireHelm(t)
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmTemplate(t, helm, tc)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("the render succeeded, want an error with %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("render error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := parseObjects(t, out)
			ns := namespaceOf(tc)
			for _, o := range r.objs {
				if o.GetName() == "" || o.GetKind() == "" {
					t.Errorf("an object without kind or name: %v", o.Object)
				}
				if o.GetNamespace() != "" && o.GetNamespace() != ns {
					t.Errorf("%s %s in namespace %q, want the release's %q", o.GetKind(), o.GetName(), o.GetNamespace(), ns)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestChartLint runs `helm lint --strict` with the default values and with
// the production example's.
func TestChartLint(t *testing.T) {
	helm := testenv.RequireHelm(t)
	trackInputs(t, nil, chartDir)
	for _, name := range []string{"fs-default", "s3-production"} {
		tc := caseNamed(t, name)
		values := writeValues(t, tc.values)
		cmd := exec.Command(helm, "lint", "--strict", chartDir, "--namespace", namespaceOf(tc), "-f", values)
		cmd.Env = helmEnv(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("helm lint %s: %v\n%s", name, err, out)
		}
	}
}

// TestChartCopies keeps the chart's copies of the generated CRD and RBAC
// role identical to deploy-controller/config (regenerated by `make
// generate`).
func TestChartCopies(t *testing.T) {
	generated, err := filepath.Glob("../deploy-controller/config/crd/*.yaml")
	if err != nil || len(generated) == 0 {
		t.Fatalf("no generated CRDs: %v", err)
	}
	copies, err := filepath.Glob(chartDir + "/crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string]string{"../deploy-controller/config/rbac/role.yaml": chartDir + "/files/controller-role.yaml"}
	var names []string
	for _, g := range generated {
		pairs[g] = filepath.Join(chartDir, "crds", filepath.Base(g))
		names = append(names, filepath.Base(g))
	}
	for _, c := range copies {
		if !slices.Contains(names, filepath.Base(c)) {
			t.Errorf("%s is not generated in deploy-controller/config/crd: remove it", c)
		}
	}
	for src, dst := range pairs {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s: cp %s %s", dst, src, strings.TrimPrefix(src, "../"), "deploy/"+dst)
		}
	}
}

// TestChartArgsAccepted runs modelxd and modelx-controller with the
// rendered arguments and environment, plus --help: each program parses
// them all (an unknown flag or a malformed value fails) and stops.
func TestChartArgsAccepted(t *testing.T) {
	helm := testenv.RequireHelm(t)
	isGo := func(p string) bool { return strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") }
	trackInputs(t, isGo, "../cmd", "../client", "../deploy-controller", "../internal", "../registry", "../spec", "../storage")
	trackInputs(t, nil, "../go.mod", "../go.sum")
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/modelxd", "./cmd/modelx-controller")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, name := range []string{"fs-default", "s3-production", "controller-only"} {
		tc := caseNamed(t, name)
		out, err := helmTemplate(t, helm, tc)
		if err != nil {
			t.Fatal(err)
		}
		r := parseObjects(t, out)
		for _, program := range []struct{ deployment, container, binary string }{
			{"modelx-registry", "modelxd", "modelxd"},
			{"modelx-controller", "manager", "modelx-controller"},
		} {
			if r.find(program.deployment, "Deployment") == nil {
				continue
			}
			c := container(t, r.deployment(t, program.deployment), program.container)
			cmd := exec.Command(filepath.Join(bin, program.binary), append(slices.Clone(c.Args), "--help")...)
			cmd.Env = []string{"HOME=" + t.TempDir()}
			for _, e := range c.Env {
				value := e.Value
				if e.ValueFrom != nil {
					value = "from-a-secret"
				}
				cmd.Env = append(cmd.Env, e.Name+"="+value)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				first, _, _ := strings.Cut(string(out), "\n")
				t.Errorf("%s: %s %v: %v: %s", name, program.binary, c.Args, err, first)
			}
		}
	}
}

// helmTemplate renders the chart with tc's values into tc's namespace; the
// error carries helm's message.
func helmTemplate(t *testing.T, helm string, tc renderCase) ([]byte, error) {
	t.Helper()
	trackInputs(t, nil, chartDir)
	values := writeValues(t, tc.values)
	cmd := exec.Command(helm, "template", release, chartDir, "--namespace", namespaceOf(tc), "-f", values)
	cmd.Env = helmEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, errors.New(strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// helmEnv keeps helm's cache, configuration and data in temp directories.
func helmEnv(t *testing.T) []string {
	dir := t.TempDir()
	return append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(dir, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HELM_DATA_HOME="+filepath.Join(dir, "data"))
}

// trackInputs reads every file under roots that keep accepts. go test
// caches a result by the files the test process opens, and helm and go
// build read the chart and the sources in subprocesses: reading them here
// makes a change to any of them run the test again.
func trackInputs(t *testing.T, keep func(path string) bool, roots ...string) {
	t.Helper()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if keep == nil || keep(p) {
				_, err = os.ReadFile(p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func writeValues(t *testing.T, values string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// namespaceOf is the release namespace of a case.
func namespaceOf(tc renderCase) string { return "modelx-" + tc.name }

func caseNamed(t *testing.T, name string) renderCase {
	t.Helper()
	for _, tc := range renderCases {
		if tc.name == name {
			return tc
		}
	}
	t.Fatalf("no render case %s", name)
	return renderCase{}
}

// appVersion is the chart's appVersion, the default tag of its images.
func appVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q, %v", chart.AppVersion, err)
	}
	return chart.AppVersion
}

// rendered is the output of one render.
type rendered struct {
	objs []*unstructured.Unstructured
}

// parseObjects splits helm's multi-document output into objects.
func parseObjects(t *testing.T, out []byte) rendered {
	t.Helper()
	var r rendered
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode the render: %v\n%s", err, out)
		}
		if len(m) == 0 {
			continue
		}
		r.objs = append(r.objs, &unstructured.Unstructured{Object: m})
	}
	if len(r.objs) == 0 {
		t.Fatalf("the render is empty:\n%s", out)
	}
	return r
}

func (r rendered) find(name, kind string) *unstructured.Unstructured {
	for _, o := range r.objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// get returns the object of this kind and name, or fails the test.
func (r rendered) get(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := r.find(name, kind)
	if o == nil {
		var have []string
		for _, o := range r.objs {
			have = append(have, o.GetKind()+"/"+o.GetName())
		}
		t.Fatalf("no %s %s rendered; have %v", kind, name, have)
	}
	return o
}

// object converts the object of this kind and name into a typed one.
func (r rendered) object(t *testing.T, kind, name string, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.get(t, kind, name).Object, into); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
}

func (r rendered) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	r.object(t, "Deployment", name, &d)
	return &d
}

// absent fails the test for every object of these kinds.
func (r rendered) absent(t *testing.T, kinds ...string) {
	t.Helper()
	for _, o := range r.objs {
		if slices.Contains(kinds, o.GetKind()) {
			t.Errorf("unexpected %s %s", o.GetKind(), o.GetName())
		}
	}
}

func container(t *testing.T, d *appsv1.Deployment, name string) *corev1.Container {
	t.Helper()
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("deployment %s has no container %s", d.Name, name)
	return nil
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func volume(d *appsv1.Deployment, name string) *corev1.Volume {
	for i := range d.Spec.Template.Spec.Volumes {
		if v := &d.Spec.Template.Spec.Volumes[i]; v.Name == name {
			return v
		}
	}
	return nil
}

func mountPath(c *corev1.Container, volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

func wantArgs(t *testing.T, c *corev1.Container, args ...string) {
	t.Helper()
	for _, a := range args {
		if !slices.Contains(c.Args, a) {
			t.Errorf("%s args %q lack %q", c.Name, c.Args, a)
		}
	}
}

func noArgPrefix(t *testing.T, c *corev1.Container, prefixes ...string) {
	t.Helper()
	for _, a := range c.Args {
		for _, p := range prefixes {
			if strings.HasPrefix(a, p) {
				t.Errorf("%s has the argument %q", c.Name, a)
			}
		}
	}
}

// checkSecretRef checks that the S3 secret key reaches modelxd only
// through its environment, from the Secret.
func checkSecretRef(t *testing.T, c *corev1.Container, secret, key string) {
	t.Helper()
	env := envVar(c, "MODELXD_S3_SECRET_KEY")
	if env == nil || env.Value != "" || env.ValueFrom == nil || env.ValueFrom.SecretKeyRef == nil ||
		env.ValueFrom.SecretKeyRef.Name != secret || env.ValueFrom.SecretKeyRef.Key != key {
		t.Errorf("MODELXD_S3_SECRET_KEY %+v, want it from Secret %s key %s", env, secret, key)
	}
	noArgPrefix(t, c, "--s3-secret-key")
}

// checkRegistryPod checks what every modelxd pod has: probes, metrics
// annotations, an unprivileged read-only container and no API token.
func checkRegistryPod(t *testing.T, d *appsv1.Deployment, c *corev1.Container) {
	t.Helper()
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "http" {
		t.Errorf("liveness probe %+v, want GET /healthz on http", p)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "http" {
		t.Errorf("readiness probe %+v, want GET /readyz on http", p)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 || c.Ports[0].Name != "http" || !slices.Contains(c.Args, "--listen=:8080") {
		t.Errorf("ports %+v, args %q: want http on 8080", c.Ports, c.Args)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "8080" || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v, want the Prometheus scrape annotations", ann)
	}
	checkSecurity(t, &d.Spec.Template.Spec, c)
	if a := d.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("modelxd pods mount a Kubernetes API token they never use")
	}
	if m := mountPath(c, "tmp"); m != "/tmp" {
		t.Errorf("no writable /tmp under a read-only root (mounted at %q)", m)
	}
}

func checkSecurity(t *testing.T, pod *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod security context %+v, want a non-root user", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s security context %+v, want a read-only root, no privilege escalation, no capabilities", c.Name, sc)
	}
}

// checkController checks the controller's objects: its images, its
// ClusterRole (the generated rules) and what binds it to its account.
func checkController(t *testing.T, r rendered, image, initializer string) {
	t.Helper()
	d := r.deployment(t, "modelx-controller")
	c := container(t, d, "manager")
	if c.Image != image {
		t.Errorf("controller image %q, want %q", c.Image, image)
	}
	wantArgs(t, c, "--initializer-image="+initializer, "--leader-elect", "--health-probe-bind-address=:8081")
	checkSecurity(t, &d.Spec.Template.Spec, c)
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("controller readiness probe %+v, want /readyz", p)
	}

	var role rbacv1.ClusterRole
	r.object(t, "ClusterRole", "modelx-controller", &role)
	data, err := os.ReadFile("../deploy-controller/config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var generated rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &generated); err != nil {
		t.Fatal(err)
	}
	gotRules, _ := json.Marshal(role.Rules)
	wantRules, _ := json.Marshal(generated.Rules)
	if !bytes.Equal(gotRules, wantRules) {
		t.Errorf("ClusterRole rules\n%s\nwant the generated\n%s", gotRules, wantRules)
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	r.get(t, "ServiceAccount", sa)
	var binding rbacv1.ClusterRoleBinding
	r.object(t, "ClusterRoleBinding", "modelx-controller", &binding)
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Name != sa || binding.Subjects[0].Namespace != d.Namespace {
		t.Errorf("ClusterRoleBinding %+v does not bind %s to %s/%s", binding, role.Name, d.Namespace, sa)
	}
	var rb rbacv1.RoleBinding
	r.object(t, "RoleBinding", "modelx-controller-leader-election", &rb)
	if len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa {
		t.Errorf("leader-election RoleBinding %+v, want %s", rb, sa)
	}
}

// shippedStorageContainers parses deploy/kserve/clusterstoragecontainers.yaml
// by name.
func shippedStorageContainers(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile("kserve/clusterstoragecontainers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, o := range parseObjects(t, data).objs {
		out[o.GetName()] = o
	}
	if len(out) != 2 {
		t.Fatalf("deploy/kserve ships %d ClusterStorageContainers, want modelx and modelx-serviceaccount", len(out))
	}
	return out
}

// equalJSON compares two decoded documents as JSON values.
func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
