{{/*
The release's base name: the release name, with "-modelx" unless it already
says modelx. Kubernetes names are at most 63 characters.
*/}}
{{- define "modelx.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelx.registry.name" -}}
{{- printf "%s-registry" (include "modelx.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelx.controller.name" -}}
{{- printf "%s-controller" (include "modelx.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelx.registry.serviceAccountName" -}}
{{- if .Values.registry.serviceAccount.create -}}
{{- default (include "modelx.registry.name" .) .Values.registry.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.registry.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelx.controller.serviceAccountName" -}}
{{- default (include "modelx.controller.name" .) .Values.controller.serviceAccount.name -}}
{{- end -}}

{{/* Labels of every object; pass a dict with "ctx" (the root) and "component". */}}
{{- define "modelx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modelx
{{ include "modelx.selectorLabels" . }}
{{- end -}}

{{/* Labels that select a component's pods; same dict as modelx.labels. */}}
{{- define "modelx.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The tag of the chart's images. */}}
{{- define "modelx.tag" -}}
{{- default .Chart.AppVersion .Values.images.tag -}}
{{- end -}}

{{- define "modelx.registry.image" -}}
{{- default (printf "%s/modelxd:%s" .Values.images.repo (include "modelx.tag" .)) .Values.registry.image -}}
{{- end -}}

{{- define "modelx.controller.image" -}}
{{- default (printf "%s/modelx-controller:%s" .Values.images.repo (include "modelx.tag" .)) .Values.controller.image -}}
{{- end -}}

{{- define "modelx.initializer.image" -}}
{{- default (printf "%s/modelx:%s" .Values.images.repo (include "modelx.tag" .)) .Values.controller.initializerImage -}}
{{- end -}}

{{/* The S3 secret key's Secret: an existing one, or the chart's. */}}
{{- define "modelx.registry.s3SecretName" -}}
{{- default (printf "%s-s3" (include "modelx.registry.name" .)) .Values.registry.storage.s3.secretKey.existingSecret -}}
{{- end -}}

{{/* Whether modelxd gets an --auth-config file. */}}
{{- define "modelx.registry.authConfig" -}}
{{- $r := .Values.registry -}}
{{- if or $r.oidc.issuer $r.auth.issuers $r.auth.robots -}}true{{- end -}}
{{- end -}}

{{/*
Checks the registry's values and fails the render with a message that says
what to change.
*/}}
{{- define "modelx.registry.validate" -}}
{{- $r := .Values.registry -}}
{{- $type := $r.storage.type -}}
{{- if not (has $type (list "fs" "s3")) -}}
{{- fail (printf "registry.storage.type is %q: use fs or s3" $type) -}}
{{- end -}}
{{- if and (eq $type "fs") (gt (int $r.replicas) 1) -}}
{{- fail (printf "registry.replicas is %d, but registry.storage.type fs runs exactly one replica (one ReadWriteOnce volume): set registry.replicas=1, or use registry.storage.type=s3 for more" (int $r.replicas)) -}}
{{- end -}}
{{- if eq $type "s3" -}}
{{- if not $r.storage.s3.bucket -}}
{{- fail "registry.storage.s3.bucket is empty: name an existing bucket" -}}
{{- end -}}
{{- $secret := or $r.storage.s3.secretKey.existingSecret $r.storage.s3.secretKey.value -}}
{{- if and $r.storage.s3.accessKey (not $secret) -}}
{{- fail "registry.storage.s3.accessKey is set without a secret key: set registry.storage.s3.secretKey.existingSecret (or .value)" -}}
{{- end -}}
{{- if and $secret (not $r.storage.s3.accessKey) -}}
{{- fail "registry.storage.s3.secretKey is set without registry.storage.s3.accessKey: static keys need both (leave both empty for the AWS default credential chain)" -}}
{{- end -}}
{{- end -}}
{{- if and $r.enableRedirect (ne $type "s3") -}}
{{- fail "registry.enableRedirect needs registry.storage.type=s3: only S3 presigns URLs" -}}
{{- end -}}
{{- if or $r.oidc.issuer $r.oidc.audience -}}
{{- if not (and $r.oidc.issuer $r.oidc.audience) -}}
{{- fail "registry.oidc.issuer and registry.oidc.audience go together: set both" -}}
{{- end -}}
{{- end -}}
{{- if and $r.oidc.caConfigMap.name (not $r.oidc.issuer) -}}
{{- fail "registry.oidc.caConfigMap is set without registry.oidc.issuer" -}}
{{- end -}}
{{- $clusters := list -}}
{{- range $r.auth.issuers -}}
{{- if .cluster -}}
{{- $clusters = append $clusters .cluster -}}
{{- end -}}
{{- end -}}
{{- range $i, $rule := (default list $r.policy.rules) -}}
{{- range $rule.serviceAccounts -}}
{{- $parts := splitList "/" . -}}
{{- if ne (len $parts) 3 -}}
{{- fail (printf "registry.policy.rules[%d].serviceAccounts: %q is not CLUSTER/NAMESPACE/NAME: put first the cluster name that registry.auth.issuers[].cluster gives the cluster's service-account issuer (e.g. CLUSTER/%s)" $i . .) -}}
{{- end -}}
{{- if not (has (first $parts) $clusters) -}}
{{- fail (printf "registry.policy.rules[%d].serviceAccounts: %q names cluster %q, but no entry of registry.auth.issuers has cluster: %s" $i . (first $parts) (first $parts)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not (has $r.logFormat (list "text" "json")) -}}
{{- fail (printf "registry.logFormat is %q: use text or json" $r.logFormat) -}}
{{- end -}}
{{- end -}}
