#!/usr/bin/env bash
# Builds the test control plane from the Go module proxy: kube-apiserver, kube-scheduler and
# kube-controller-manager from k8s.io/kubernetes (tools/k8s/go.mod pins the release and replaces its staging
# modules with their published versions) and etcd from go.etcd.io/etcd/server/v3 (tools/etcd/go.mod).
# The binaries go to a cache outside the work tree, keyed by the pinned versions, and are linked at
# .tools/k8s/bin/. A second run with the same pins only relinks them.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

cache_root="${KUBETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune}/control-plane"
key=$(cat tools/k8s/go.mod tools/k8s/go.sum tools/etcd/go.mod tools/etcd/go.sum "$0" | sha256sum | cut -c1-16)
cache="$cache_root/$key"
links=.tools/k8s/bin
components=(kube-apiserver kube-scheduler kube-controller-manager etcd)

if [ ! -x "$cache/etcd" ]; then
  kubernetes=$(cd tools/k8s && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  etcd=$(cd tools/etcd && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  minor=$(echo "$kubernetes" | cut -d. -f2)
  stamp="-X k8s.io/component-base/version.gitVersion=$kubernetes -X k8s.io/component-base/version.gitMajor=1"
  stamp="$stamp -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  building="$cache.building.$$"
  mkdir -p "$building"
  started=$(date +%s)
  echo "building the control plane (Kubernetes $kubernetes, etcd $etcd) into $cache; the first build takes a" \
    "while (about 15 minutes on 2 cores)" >&2
  (cd tools/k8s && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $stamp" -o "$building/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-controller-manager)
  (cd tools/etcd && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$building/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$cache"
  mv "$building" "$cache"
  echo "built the control plane in $(( $(date +%s) - started )) s" >&2
fi

mkdir -p "$top/$links"
for name in "${components[@]}"; do
  ln -sfn "$cache/$name" "$top/$links/$name"
done
"$top/$links/kube-apiserver" --version >&2
