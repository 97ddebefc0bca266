#!/usr/bin/env bash
# Provisions the local Kubernetes control plane: etcd (Debian), kube-apiserver, kube-controller-manager and
# kube-scheduler built from Go modules at KUBE_VERSION, kubectl at the same version (for the bench and for people),
# and kwok at KWOK_VERSION. Idempotent; silent when cached.
#
#   bash stack/provision-kube.sh        # prints nothing when everything is cached
#
# Outputs:
#   $DEPLOY_AGENT_CACHE/kubernetes-$KUBE_VERSION/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $DEPLOY_AGENT_CACHE/kwok-$KWOK_VERSION/kwok
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=stack/versions.sh
. "$here/versions.sh"

PROVISION_NAME=provision-kube
# shellcheck source=stack/provision-common.sh
. "$here/provision-common.sh"
# Static binaries: nothing here needs cgo, and static ones survive a libc change on the machine.
export CGO_ENABLED=0
# The machine's Go must build these versions as-is; fetching another toolchain would hide a version drift.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:-} -modcacherw"

install_etcd() {
  if command -v etcd >/dev/null 2>&1; then
    return 0
  fi
  log "installing Debian etcd-server"
  # Another install may hold the dpkg lock for a while; wait for it rather than fail.
  run_logged "$logs_dir/apt-etcd.log" apt-get -o DPkg::Lock::Timeout=900 update
  DEBIAN_FRONTEND=noninteractive run_logged "$logs_dir/apt-etcd.log" \
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends etcd-server
  # Debian starts a system-wide etcd on the default ports; the stack runs its own on free ports.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

build_kubernetes() {
  local version="$KUBE_VERSION"
  local home="$DEPLOY_AGENT_CACHE/kubernetes-$version"
  local bin="$home/bin"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  # A cache of this version builds only the commands it lacks (one built before kubectl joined gets kubectl alone);
  # a cache of another version builds them all.
  local todo=() c
  if [ -f "$bin/.version" ] && [ "$(cat "$bin/.version")" = "$version" ]; then
    for c in "${cmds[@]}"; do
      [ -x "$bin/$c" ] || todo+=("$c")
    done
  else
    todo=("${cmds[@]}")
  fi
  if [ "${#todo[@]}" = 0 ]; then
    return 0
  fi

  log "building Kubernetes $version ${todo[*]} into $bin (about 7-10 min cold on 2 cores)"
  local minor_patch="${version#v1.}"          # 35.8
  local major="1" minor="${minor_patch%%.*}" # 35
  local staging_version="v0.$minor_patch"   # v0.35.8
  local src="$home/src"
  mkdir -p "$src" "$bin"

  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with in-tree paths that do not
  # exist in the module zip; a scratch main module pins each of them to its published tag instead.
  local upstream_mod="$src/kubernetes.mod"
  run_logged "$logs_dir/kube-build.log" go mod download -json "k8s.io/kubernetes@$version"
  cp "$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')" "$upstream_mod"
  local staging
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$upstream_mod" | sort -u)"
  if [ -z "$staging" ]; then
    log "no staging replaces found in k8s.io/kubernetes@$version go.mod"
    return 1
  fi

  {
    echo "module deploy-agent.local/kube-build"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$upstream_mod")"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    local m
    for m in $staging; do
      echo "	$m => $m $staging_version"
    done
    echo ")"
  } >"$src/go.mod"
  rm -f "$src/go.sum"

  local pkgs=() c2
  for c2 in "${todo[@]}"; do
    pkgs+=("k8s.io/kubernetes/cmd/$c2")
  done
  (cd "$src" && run_logged "$logs_dir/kube-build.log" go get "${pkgs[@]/%/@$version}")

  local vpkg="k8s.io/component-base/version"
  local ldflags="-s -w -X $vpkg.gitVersion=$version -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor"
  ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  (cd "$src" && run_logged "$logs_dir/kube-build.log" go build -trimpath -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}")
  echo "$version" >"$bin/.version"
}

build_kwok() {
  local version="$KWOK_VERSION"
  local home="$DEPLOY_AGENT_CACHE/kwok-$version"
  if [ -x "$home/kwok" ]; then
    return 0
  fi
  log "building kwok $version into $home"
  mkdir -p "$home"
  GOBIN="$home" run_logged "$logs_dir/kwok-build.log" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$version"
}

install_etcd
build_kubernetes
build_kwok
