#!/usr/bin/env bash
# Builds the envtest binaries (etcd, kube-apiserver, kubectl) from source through
# the Go module proxy, because no prebuilt binary can be downloaded here. The
# binaries land where setup-envtest would put them, so any tool that looks there
# finds them, and a second run is a no-op.
#
# Usage: hack/envtest-assets.sh            prints the assets directory on stdout
#        hack/envtest-assets.sh kube-proxy builds only kube-proxy (for the e2e test
#                                          of spec.enforce) and prints its path
# Honours KUBEBUILDER_ASSETS: when it is set, binaries already there are used as
# they are, and missing ones are built into it.
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ENVTEST_ETCD_VERSION:-3.6.16}"
GOOS="$(go env GOOS)"
GOARCH="$(go env GOARCH)"
DEST="${KUBEBUILDER_ASSETS:-${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest/k8s/${K8S_VERSION}-${GOOS}-${GOARCH}}"

log() { echo "envtest-assets: $*" >&2; }

have() { [[ -x "$DEST/$1" ]]; }

MODE="${1:-}"

if [[ "${MODE}" == kube-proxy ]] && have kube-proxy; then
  echo "$DEST/kube-proxy"
  exit 0
elif [[ "${MODE}" != kube-proxy ]] && have etcd && have kube-apiserver && have kubectl; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$DEST"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0

build_etcd() {
  local mod="$WORK/etcd"
  mkdir -p "$mod"
  cat >"$mod/go.mod" <<GOMOD
module envtest.local/etcd

go 1.26

require (
	go.etcd.io/etcd/api/v3 v${ETCD_VERSION}
	go.etcd.io/etcd/client/pkg/v3 v${ETCD_VERSION}
	go.etcd.io/etcd/client/v3 v${ETCD_VERSION}
	go.etcd.io/etcd/pkg/v3 v${ETCD_VERSION}
	go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
)
GOMOD
  printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$mod/tools.go"
  log "building etcd v${ETCD_VERSION} (about a minute with a cold cache)"
  (cd "$mod" && go mod tidy >/dev/null 2>&1 || true; cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$DEST/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$DEST/etcd.tmp" "$DEST/etcd"
}

# k8s.io/kubernetes replaces each k8s.io staging module with a local path, which
# a dependent module cannot use; the wrapper replaces each with its published
# v0.X.Y twin instead.
k8s_wrapper() {
  local mod="$WORK/kubernetes"
  [[ -f "$mod/go.mod" ]] && return
  mkdir -p "$mod"
  local gomod staging
  gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\) => \./staging/src/.*#\1#p' "$gomod" | sort -u)"
  if [[ -z "$staging" ]]; then
    log "found no staging replaces in $gomod"
    exit 1
  fi
  {
    printf 'module envtest.local/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes v%s\n\n' "$K8S_VERSION"
    for m in $staging; do printf 'replace %s => %s v0.%s\n' "$m" "$m" "${K8S_VERSION#1.}"; done
  } >"$mod/go.mod"
  local tools='\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n\t_ "k8s.io/kubectl/pkg/cmd"\n'
  [[ "${MODE}" == kube-proxy ]] && tools='\t_ "k8s.io/kubernetes/cmd/kube-proxy/app"\n'
  printf "package tools\n\nimport (\n${tools})\n" >"$mod/tools.go"
  (cd "$mod" && go mod tidy >/dev/null 2>&1 || true)
}

build_k8s() {
  local bin="$1" pkg="$2"
  k8s_wrapper
  local major="${K8S_VERSION%%.*}" rest="${K8S_VERSION#*.}"
  local minor="${rest%%.*}"
  local x=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=v${K8S_VERSION} -X $p.gitMajor=${major} -X $p.gitMinor=${minor}"
    x+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building ${bin} v${K8S_VERSION} (several minutes with a cold cache)"
  (cd "$WORK/kubernetes" && go build -trimpath -ldflags "-s -w${x}" -o "$DEST/${bin}.tmp" "$pkg")
  mv "$DEST/${bin}.tmp" "$DEST/${bin}"
}

if [[ "${MODE}" == kube-proxy ]]; then
  build_k8s kube-proxy k8s.io/kubernetes/cmd/kube-proxy
  "$DEST/kube-proxy" --version >&2
  echo "$DEST/kube-proxy"
  exit 0
fi
have etcd || build_etcd
have kube-apiserver || build_k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
have kubectl || build_k8s kubectl k8s.io/kubernetes/cmd/kubectl

"$DEST/kube-apiserver" --version >&2
echo "$DEST"
