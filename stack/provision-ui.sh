#!/usr/bin/env bash
# Provisions what the browser tests need: Debian's chromium with the NSS tools (a test CA is trusted through a
# private NSS database), and the standalone Temporal Web UI server built from the Go module proxy at
# TEMPORAL_UI_SERVER_VERSION (the dev server's built-in UI cannot sign people in nor pass a token to a codec server).
# Idempotent; silent when cached. playwright-core, which drives chromium, is a devDependency (stack/provision.sh).
#
# Outputs:
#   /usr/bin/chromium, certutil
#   $DEPLOY_AGENT_CACHE/temporal-ui-server-$TEMPORAL_UI_SERVER_VERSION/temporal-ui-server
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=stack/versions.sh
. "$here/versions.sh"

PROVISION_NAME=provision-ui
# shellcheck source=stack/provision-common.sh
. "$here/provision-common.sh"


install_ui_server() {
  local home="$DEPLOY_AGENT_CACHE/temporal-ui-server-$TEMPORAL_UI_SERVER_VERSION"
  [ -x "$home/temporal-ui-server" ] && return 0
  if ! command -v go >/dev/null 2>&1; then
    log "Go is required to build the Temporal UI server $TEMPORAL_UI_SERVER_VERSION (not on PATH)"
    return 1
  fi
  log "building the Temporal UI server $TEMPORAL_UI_SERVER_VERSION into $home (about 1 min cold)"
  local build="$home.build"
  rm -rf "$build"
  mkdir -p "$build"
  # Static, so a libc change on the machine cannot break the cached binary; -modcacherw keeps the cache removable.
  CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -modcacherw" GOBIN="$build" \
    run_logged "$logs_dir/temporal-ui-server.log" \
    go install "github.com/temporalio/ui-server/v2/cmd/server@$TEMPORAL_UI_SERVER_VERSION"
  # The module's command is called `server`; renamed and moved in one step, so a half build is never taken as done.
  mkdir -p "$home"
  mv "$build/server" "$home/temporal-ui-server"
  rm -rf "$build"
}

install_debian_packages chromium libnss3-tools
install_ui_server
