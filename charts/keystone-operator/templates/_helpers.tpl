{{/* Release-scoped name prefix, at most 40 characters so that derived names fit. */}}
{{- define "keystone-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object that are not selector labels. */}}
{{- define "keystone-operator.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels on objects shared by all controllers. */}}
{{- define "keystone-operator.labels" -}}
{{ include "keystone-operator.commonLabels" . }}
app.kubernetes.io/name: keystone-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels for one controller ("ctx" is a dict: root, controller, scope). */}}
{{- define "keystone-operator.selector" -}}
app.kubernetes.io/name: keystone-operator
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .controller }}-controller
{{- if .scope }}
keystone.openstack.org/watch-namespace: {{ .scope }}
{{- end }}
{{- end -}}

{{/* The watch scopes: one empty string (all namespaces) or the listed namespaces. */}}
{{- define "keystone-operator.scopes" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else -}}
{{- toJson (list "") -}}
{{- end -}}
{{- end -}}

{{/* Name of one controller's objects, per scope. */}}
{{- define "keystone-operator.controllerName" -}}
{{- if .scope -}}
{{- printf "%s-%s-%s" (include "keystone-operator.fullname" .root) .controller .scope | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" (include "keystone-operator.fullname" .root) .controller -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount of one controller (shared by its scopes). */}}
{{- define "keystone-operator.serviceAccount" -}}
{{- printf "%s-%s" (include "keystone-operator.fullname" .root) .controller -}}
{{- end -}}

{{/*
OpenShift: whether the chart creates the dedicated SCC for the Keystone API pods (uid and fsGroup pinned to 42425).
*/}}
{{- define "keystone-operator.dedicatedSCC" -}}
{{- $mode := .Values.openshift.scc -}}
{{- if or (eq $mode "create") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "security.openshift.io/v1")) -}}
true
{{- end -}}
{{- end -}}

{{/*
The dedicated SCC's name (cluster-scoped: the release namespace keeps two releases apart).
*/}}
{{- define "keystone-operator.sccName" -}}
{{- printf "%s-%s-keystone" .Release.Namespace (include "keystone-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The ClusterRole the api controller binds the Keystone pods' ServiceAccount to: `use` of the dedicated SCC, or
OpenShift's nonroot-v2 without it.
*/}}
{{- define "keystone-operator.sccClusterRole" -}}
{{- if include "keystone-operator.dedicatedSCC" . -}}
{{- printf "%s-scc" (include "keystone-operator.sccName" . | trunc 59 | trimSuffix "-") -}}
{{- else -}}
system:openshift:scc:nonroot-v2
{{- end -}}
{{- end -}}
