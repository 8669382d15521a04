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

{{/*
The full name the Go operator's chart derived the default monitored id from. It differs from
ours: when the chart's name occurs in the release *namespace*, it is that namespace; otherwise
<release>-<chart name>. Namespaces labelled by hand for an install of that chart stay monitored
after an upgrade to this one only if the default id is the same, so only the id uses this rule.
*/}}
{{- define "quarks-job.originalFullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Namespace -}}
{{- .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The monitored id: global.monitoredID, else the Go operator's chart's default for the same release name and namespace. */}}
{{- define "quarks-job.monitoredID" -}}
{{- default (include "quarks-job.originalFullname" .) .Values.global.monitoredID -}}
{{- end -}}

{{/* "true" when image.org names the Go operator's images (values of the original chart): that image cannot run this chart's Deployment, so ours is used. */}}
{{- define "quarks-job.goImage" -}}
{{- eq .Values.image.org "cfcontainerization" -}}
{{- end -}}

{{/* The operator's image, also the output helper's. */}}
{{- define "quarks-job.image" -}}
{{- if eq (include "quarks-job.goImage" .) "true" -}}
{{- printf "ghcr.io/quarks-job/quarks-job:%s" .Chart.AppVersion -}}
{{- else -}}
{{- printf "%s/%s:%s" .Values.image.org .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The pull secret the chart makes of global.image.credentials (the original chart's name for it). */}}
{{- define "quarks-job.pullSecretName" -}}
{{- printf "%s-pull-secret" (include "quarks-job.serviceAccountName" .) | trunc 253 -}}
{{- end -}}

{{/* Names of the pull secrets of the operator's pod and of the output helper: imagePullSecrets, then the one made of global.image.credentials. */}}
{{- define "quarks-job.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- if .Values.global.image.credentials -}}
{{- $names = append $names (include "quarks-job.pullSecretName" .) -}}
{{- end -}}
{{- $names | uniq | join "," -}}
{{- end -}}

{{/* The output helper's service account (fixed by the operator: quarks-job-persist-output). */}}
{{- define "quarks-job.helperName" -}}
quarks-job-persist-output
{{- end -}}

{{/* The output helper's ClusterRole (persistOutputClusterRole.name, the original chart's default). */}}
{{- define "quarks-job.helperClusterRole" -}}
{{- .Values.persistOutputClusterRole.name | default "qjob-persist-output" -}}
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

{{/* The ClusterRole a namespace's RoleBinding grants the operator (README "RBAC"). */}}
{{- define "quarks-job.namespaceRole" -}}
{{- printf "%s-namespace" (include "quarks-job.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The namespaces the chart binds the namespace ClusterRole in, as a JSON list: the created namespace (global.singleNamespace) and operator.namespaces. */}}
{{- define "quarks-job.boundNamespaces" -}}
{{- $names := list -}}
{{- if .Values.global.singleNamespace.create -}}
{{- $names = append $names .Values.global.singleNamespace.name -}}
{{- end -}}
{{- range .Values.operator.namespaces -}}
{{- $names = append $names . -}}
{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}
