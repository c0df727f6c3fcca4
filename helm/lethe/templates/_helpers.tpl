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

{{- define "lethe.gateway.image" -}}
{{- printf "%s:%s" .Values.gateway.image.repository (default .Chart.AppVersion .Values.gateway.image.tag) }}
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
{{- end }}
