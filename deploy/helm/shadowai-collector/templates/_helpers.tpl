{{/* The full name of the release's objects (at most 63 characters). */}}
{{- define "shadowai.fullname" -}}
{{- printf "%s-shadowai-collector" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "shadowai.labels" -}}
app.kubernetes.io/name: shadowai-collector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "shadowai.selectorLabels" -}}
app.kubernetes.io/name: shadowai-collector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
