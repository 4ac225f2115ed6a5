#!/usr/bin/env bash
# Copies what is generated or kept elsewhere into the Helm chart (dist/chart):
# the CRD (wrapped in crd.enable, kept on uninstall with crd.keep) and the
# manager's ClusterRole from `make manifests`, the alerts and the dashboard.
# `make helm-chart` runs it; test/manifests fails when the chart is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=dist/chart
crd=circuit.resilience.dev_circuitbreakers.yaml

{
  echo '{{- if .Values.crd.enable }}'
  awk '{ print } /^  annotations:$/ && !done { print "    {{- if .Values.crd.keep }}"; print "    helm.sh/resource-policy: keep"; print "    {{- end }}"; done = 1 }' "config/crd/bases/$crd"
  echo '{{- end }}'
} > "$chart/templates/crd/$crd"

{
  echo '{{- if .Values.rbac.enable }}'
  awk '/^  name: manager-role$/ { print "  name: {{ include \"chart.name\" . }}-manager-role"; print "  labels:"; print "    {{- include \"chart.labels\" . | nindent 4 }}"; next } /^---$/ { next } { print }' config/rbac/role.yaml
  echo '{{- end }}'
} > "$chart/templates/rbac/role.yaml"

cp config/prometheus/rules.yaml "$chart/files/rules.yaml"
cp config/grafana/circuitbreaker-dashboard.json "$chart/files/circuitbreaker-dashboard.json"
