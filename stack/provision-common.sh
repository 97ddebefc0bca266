# Shared by the provision scripts: sourced after they set PROVISION_NAME and read stack/versions.sh.
# shellcheck shell=bash

log() { echo "${PROVISION_NAME:-provision}: $*" >&2; }

# Output of a step is shown only when it fails, so a warm run stays quiet and a cold one stays readable.
run_logged() {
  local logfile="$1"
  shift
  if ! "$@" >>"$logfile" 2>&1; then
    tail -n 60 "$logfile" >&2
    log "failed: $* (full log: $logfile)"
    return 1
  fi
}

logs_dir="$DEPLOY_AGENT_CACHE/logs"
mkdir -p "$logs_dir"

# Installs the Debian packages given that are not installed yet; returns 0 at once when none is missing.
install_debian_packages() {
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  # Another install may hold the dpkg lock for a while; wait for it rather than fail.
  run_logged "$logs_dir/apt.log" apt-get -o DPkg::Lock::Timeout=900 update
  DEBIAN_FRONTEND=noninteractive run_logged "$logs_dir/apt.log" \
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}"
}
