{{/* The name of a service's objects: <namePrefix><service>. */}}
{{- define "tiktokmall.name" -}}
{{- printf "%s%s" .root.Values.namePrefix .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "tiktokmall.labels" -}}
app.kubernetes.io/name: tiktokmall
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- if .service }}
app.kubernetes.io/component: {{ .service }}
{{- end }}
{{- end -}}

{{/* The selector of one service's pods. */}}
{{- define "tiktokmall.selector" -}}
app.kubernetes.io/name: tiktokmall
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "tiktokmall.serviceAccountName" -}}
{{- default (printf "%stiktokmall" .Values.namePrefix) .Values.serviceAccount.name -}}
{{- end -}}

{{/* A service's settings: `defaults` overridden by its entry in `services`. */}}
{{- define "tiktokmall.merged" -}}
{{- $svc := get .root.Values.services .service -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy $svc)) -}}
{{- end -}}

{{/* The services that call `.service` (the reverse of `calls`), sorted. */}}
{{- define "tiktokmall.callers" -}}
{{- $callers := list -}}
{{- range $name, $svc := .root.Values.services -}}
{{- if and $svc.enabled (has $.service ($svc.calls | default list)) -}}
{{- $callers = append $callers $name -}}
{{- end -}}
{{- end -}}
{{- toJson (sortAlpha $callers) -}}
{{- end -}}
