#!/usr/bin/env bash
# Builds golangci-lint with the kube-api-linter (KAL) module plugin compiled in,
# as `golangci-lint custom` would, but from the Go module proxy only:
# `golangci-lint custom` clones github.com/golangci/golangci-lint with git,
# which a machine whose only way out is the module proxy cannot do.
#
# usage: hack/build-golangci-kal.sh OUTPUT GOLANGCI_LINT_VERSION KAL_VERSION
set -euo pipefail
out=$1 golangci_version=$2 kal_version=$3

work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT

# The module's source as the proxy serves it (the same tree the tag holds).
src=$(go mod download -json "github.com/golangci/golangci-lint/v2@${golangci_version}" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
cp -r "$src" "$work/golangci-lint"
chmod -R u+w "$work/golangci-lint"
cd "$work/golangci-lint"

# What `golangci-lint custom` writes: a blank import that registers the plugin.
cat > cmd/golangci-lint/plugins.go <<'GO'
package main

import _ "sigs.k8s.io/kube-api-linter"
GO
GOFLAGS=-mod=mod go get "sigs.k8s.io/kube-api-linter@${kal_version}"
GOFLAGS=-mod=mod go mod tidy
GOFLAGS=-mod=mod go build -trimpath \
	-ldflags "-s -w -X main.version=${golangci_version#v}-kal -X main.commit=proxy -X main.date=unknown" \
	-o "$out" ./cmd/golangci-lint
