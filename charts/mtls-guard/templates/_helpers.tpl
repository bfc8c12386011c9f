{{/*
Every object is named after the release, nothing appended: `helm install mtls-guard ...` gives
the names the README and the generated manifests use. Objects that need a second name add a
suffix (-tls, -mesh-config, -cert-secret, -selfsigned).
*/}}
{{- define "mtls-guard.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. No helm.sh/chart or managed-by: the same objects are applied with kubectl. */}}
{{- define "mtls-guard.labels" -}}
{{ include "mtls-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* What selectors match: stable across upgrades, distinct per release. */}}
{{- define "mtls-guard.selectorLabels" -}}
app.kubernetes.io/name: mtls-guard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Secret with the serving certificate. */}}
{{- define "mtls-guard.secretName" -}}
{{- .Values.certificates.secretName | default (printf "%s-tls" (include "mtls-guard.fullname" .)) -}}
{{- end -}}

{{/* certificates.mode, checked. */}}
{{- define "mtls-guard.certMode" -}}
{{- $m := .Values.certificates.mode -}}
{{- if not (has $m (list "self" "cert-manager" "secret")) -}}
{{- fail (printf "certificates.mode must be self, cert-manager or secret, not %q" $m) -}}
{{- end -}}
{{- $m -}}
{{- end -}}

{{/* Namespaces the webhook never reviews, quoted and comma-separated: excludedNamespaces plus the release namespace. */}}
{{- define "mtls-guard.excludedNamespaces" -}}
{{- $quoted := list -}}
{{- range append .Values.excludedNamespaces .Release.Namespace | uniq -}}
{{- $quoted = append $quoted (quote .) -}}
{{- end -}}
{{- join ", " $quoted -}}
{{- end -}}

{{/*
The webhook's clientConfig, the same for each of its webhooks.
*/}}
{{- define "mtls-guard.clientConfig" -}}
{{- $certMode := include "mtls-guard.certMode" . -}}
{{- if eq $certMode "self" -}}
# No caBundle: the guard injects its CA here once it has created it. Neither kubectl apply
# nor helm upgrade ever sets the field, so neither takes it away again.
{{- else if eq $certMode "secret" -}}
caBundle: {{ required "certificates.caBundle (base64 PEM CA) is required with certificates.mode=secret" .Values.certificates.caBundle }}
{{- end }}
service:
  name: {{ include "mtls-guard.fullname" . }}
  namespace: {{ .Release.Namespace }}
  path: /validate
  port: 443
{{- end }}
