{{/* The chart's name, shortened to a DNS label. */}}
{{- define "quarks-job.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the prefix of every object the chart creates. */}}
{{- define "quarks-job.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's service account. */}}
{{- define "quarks-job.serviceAccountName" -}}
{{- default (include "quarks-job.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The monitored id: global.monitoredID, else the release's full name (as the original chart). */}}
{{- define "quarks-job.monitoredID" -}}
{{- default (include "quarks-job.fullname" .) .Values.global.monitoredID -}}
{{- end -}}

{{/* The operator's image, also the output helper's. */}}
{{- define "quarks-job.image" -}}
{{- printf "%s/%s:%s" .Values.image.org .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The output helper's service account (fixed by the operator: quarks-job-persist-output). */}}
{{- define "quarks-job.helperName" -}}
quarks-job-persist-output
{{- end -}}

{{- define "quarks-job.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{ include "quarks-job.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "quarks-job.selectorLabels" -}}
app.kubernetes.io/name: {{ include "quarks-job.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
