{{/* Names */}}
{{- define "lethe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lethe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lethe.gateway.fullname" -}}
{{- printf "%s-gateway" (include "lethe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lethe.engine.fullname" -}}
{{- printf "%s-engine" (include "lethe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lethe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: the standard app.kubernetes.io set */}}
{{- define "lethe.labels" -}}
helm.sh/chart: {{ include "lethe.chart" . }}
app.kubernetes.io/name: {{ include "lethe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lethe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "lethe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lethe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lethe.gateway.labels" -}}
{{ include "lethe.labels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "lethe.gateway.selectorLabels" -}}
{{ include "lethe.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "lethe.engine.labels" -}}
{{ include "lethe.labels" . }}
app.kubernetes.io/component: engine
{{- end }}

{{- define "lethe.engine.selectorLabels" -}}
{{ include "lethe.selectorLabels" . }}
app.kubernetes.io/component: engine
{{- end }}

{{- define "lethe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lethe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference: `digest` (sha256:...) pins it and wins over the tag. */}}
{{- define "lethe.image" -}}
{{- $image := index . 0 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default (index . 1) $image.tag) }}
{{- end }}
{{- end }}

{{- define "lethe.gateway.image" -}}
{{- include "lethe.image" (list .Values.gateway.image .Chart.AppVersion) }}
{{- end }}

{{- define "lethe.engine.image" -}}
{{- include "lethe.image" (list .Values.engine.image .Chart.AppVersion) }}
{{- end }}

{{/* The engine replicas' own addresses (A records of every pod, ready or not), for the
adapter manager; completions still go through the engine Service. */}}
{{- define "lethe.engine.headless" -}}
{{- printf "%s-pods" (include "lethe.engine.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lethe.engine.apiKeySecretName" -}}
{{- default (printf "%s-engine-api-key" (include "lethe.fullname" .)) .Values.engine.apiKey.existingSecret }}
{{- end }}

{{/* Whether the gateway sends an API key to the engine (and the engine requires one). */}}
{{- define "lethe.engine.apiKeyOn" -}}
{{- if and .Values.engine.apiKey.enabled (or .Values.engine.enabled .Values.engine.apiKey.existingSecret) }}true{{ end }}
{{- end }}

{{/* The gateway's metrics port name: its own port when gateway.metricsPort is set. */}}
{{- define "lethe.gateway.metricsPortName" -}}
{{- if .Values.gateway.metricsPort }}metrics{{ else }}http{{ end }}
{{- end }}

{{/* Adapters travel through one shared claim, mounted on the gateway and on every engine. */}}
{{- define "lethe.adapters.on" -}}
{{- if and .Values.engine.enabled .Values.engine.lora.enabled .Values.engine.lora.existingClaim }}true{{ end }}
{{- end }}

{{/* Where the gateway reads the served model's tokenizer (LETHE_TOKENIZER_DIR), by source. */}}
{{- define "lethe.tokenizer.source" -}}
{{- $t := .Values.tokenizer }}
{{- if $t.dir }}dir
{{- else if not .Values.engine.enabled }}image
{{- else if and .Values.engine.model.existingClaim $t.mountEngineClaim }}engineClaim
{{- else if and .Values.engine.model.hubId (not .Values.engine.model.existingClaim) $t.fetchFromHub }}hub
{{- else }}image
{{- end }}
{{- end }}

{{- define "lethe.tokenizer.dir" -}}
{{- $source := include "lethe.tokenizer.source" . }}
{{- if eq $source "dir" }}{{ .Values.tokenizer.dir }}
{{- else if eq $source "engineClaim" }}{{ printf "%s/%s" .Values.tokenizer.engineModelMountPath (trimPrefix "/" .Values.engine.model.path) }}
{{- else if eq $source "hub" }}/opt/lethe/tokenizer
{{- end }}
{{- end }}

{{/* The vLLM URL the gateway calls. */}}
{{- define "lethe.upstream" -}}
{{- if .Values.gateway.upstream }}
{{- .Values.gateway.upstream }}
{{- else if .Values.engine.enabled }}
{{- printf "http://%s:%d" (include "lethe.engine.fullname" .) (int .Values.engine.service.port) }}
{{- else }}
{{- fail "gateway.upstream is required when engine.enabled is false" }}
{{- end }}
{{- end }}

{{/* Policy files: ConfigMap keys cannot hold "/", so "data/x.txt" is stored as "data__x.txt". */}}
{{- define "lethe.policies.key" -}}
{{- . | replace "/" "__" }}
{{- end }}

{{- define "lethe.policies.configMapName" -}}
{{- if .Values.policies.existingConfigMap }}
{{- .Values.policies.existingConfigMap }}
{{- else if .Values.policies.files }}
{{- printf "%s-policies" (include "lethe.fullname" .) }}
{{- end }}
{{- end }}

{{- define "lethe.auth.secretName" -}}
{{- default (printf "%s-auth" (include "lethe.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Render-time checks that a schema cannot express. */}}
{{- define "lethe.validate" -}}
{{- $g := .Values.gateway }}
{{- $needed := add (int $g.preStopDelaySeconds) (int $g.drainSeconds) 10 }}
{{- if le (int $g.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%d) must exceed preStopDelaySeconds + drainSeconds + 10 (%d), or pods are killed mid-stream" (int $g.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) (not .Values.auth.apiKeys) }}
{{- fail "auth.enabled is true: set auth.apiKeys (and auth.adminKey) or auth.existingSecret, or set auth.enabled=false" }}
{{- end }}
{{- if and .Values.engine.enabled (not .Values.engine.model.existingClaim) (not .Values.engine.model.hubId) }}
{{- fail "engine.model: set existingClaim (a PVC with the model directory) or hubId" }}
{{- end }}
{{- if and .Values.policies.existingConfigMap .Values.policies.files }}
{{- fail "policies: set files or existingConfigMap, not both" }}
{{- end }}
{{- if and $g.metricsPort (eq (int $g.metricsPort) (int $g.port)) }}
{{- fail "gateway.metricsPort must differ from gateway.port (0 serves /metrics on the serving port)" }}
{{- end }}
{{- if .Values.engine.enabled }}
{{- $e := .Values.engine }}
{{- range $e.extraEnv }}
{{- if and (eq .name "HF_TOKEN") (hasKey . "value") }}
{{- fail "engine.extraEnv: HF_TOKEN must not be a plain value; set engine.hfTokenSecret (a secretKeyRef)" }}
{{- end }}
{{- end }}
{{- $startup := mul (int $e.startupProbe.periodSeconds) (int $e.startupProbe.failureThreshold) }}
{{- if lt (int $e.progressDeadlineSeconds) (int $startup) }}
{{- fail (printf "engine.progressDeadlineSeconds (%d) must be at least the start-up probe's budget, periodSeconds x failureThreshold (%d), or every slow start is reported as a failed rollout" (int $e.progressDeadlineSeconds) (int $startup)) }}
{{- end }}
{{- $cache := $e.modelCache }}
{{- if and $cache.enabled (not $e.model.existingClaim) (not $cache.existingClaim) (gt (int $e.replicas) 1) (not (has "ReadWriteMany" $cache.accessModes)) }}
{{- fail (printf "engine.modelCache: %d engine replicas cannot share a ReadWriteOnce claim across nodes; set engine.modelCache.accessModes [ReadWriteMany] or engine.modelCache.existingClaim" (int $e.replicas)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Every scraped series carries `release` (the dashboard's and the alerts' filter). */}}
{{- define "lethe.serviceMonitor.relabelings" -}}
- sourceLabels: [__meta_kubernetes_service_label_app_kubernetes_io_instance]
  targetLabel: release
{{- end }}
