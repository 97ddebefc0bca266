#!/usr/bin/env bash
# Provisions Keycloak, the OpenID Connect provider the identity tests run against: its Quarkus distribution from
# Maven Central at KEYCLOAK_VERSION, and the Java 25 runtime it needs, found on the machine. Idempotent; silent when
# cached.
#
#   bash stack/provision-keycloak.sh        # prints nothing when everything is cached
#
# Outputs:
#   $DEPLOY_AGENT_CACHE/keycloak-$KEYCLOAK_VERSION/bin/kc.sh
#   $DEPLOY_AGENT_CACHE/keycloak-$KEYCLOAK_VERSION/.java-home    (the JAVA_HOME stack/keycloak.ts starts it with)
#
# The distribution is also built once here for development mode with an in-memory database (the options
# stack/keycloak.ts starts it with), so no test start pays for that build and no two starts write it at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=stack/versions.sh
. "$here/versions.sh"

PROVISION_NAME=provision-keycloak
# shellcheck source=stack/provision-common.sh
. "$here/provision-common.sh"

# The machine's default java is 17; Keycloak is run and measured with the Temurin 25 these machines ship, so a JDK 25
# must be there already.
find_java_home() {
  local candidate
  for candidate in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25-jdk* /usr/lib/jvm/*; do
    [ -x "$candidate/bin/java" ] || continue
    if grep -q '^JAVA_VERSION="25[."]' "$candidate/release" 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

install_keycloak() {
  local version="$KEYCLOAK_VERSION"
  local home="$DEPLOY_AGENT_CACHE/keycloak-$version"
  local stamp="$home/.complete"
  local java_home
  if ! java_home="$(find_java_home)"; then
    log "Keycloak $version needs a Java 25 JDK, and none was found under /usr/lib/jvm" \
      "(expected /usr/lib/jvm/temurin-25-jdk-amd64; the default java is $(java -version 2>&1 | head -n 1))"
    return 1
  fi
  if [ -x "$home/bin/kc.sh" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
    # The JDK may have moved since (a new machine image): follow it without fetching again.
    [ "$(cat "$home/.java-home" 2>/dev/null)" = "$java_home" ] || echo "$java_home" >"$home/.java-home"
    return 0
  fi

  log "fetching Keycloak $version from Maven Central into $home (169 MB)"
  local download="$DEPLOY_AGENT_CACHE/keycloak-$version.download"
  rm -rf "$home" "$download"
  mkdir -p "$download"
  run_logged "$logs_dir/keycloak.log" mvn -B -q \
    "-Dmaven.repo.local=$DEPLOY_AGENT_CACHE/maven-repository" \
    "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN_VERSION:copy" \
    "-Dartifact=org.keycloak:keycloak-quarkus-dist:$version:tar.gz" "-DoutputDirectory=$download"
  local tarball="$download/keycloak-quarkus-dist-$version.tar.gz"
  if [ ! -s "$tarball" ]; then
    log "Maven reported success but left no $tarball"
    return 1
  fi
  mkdir -p "$home"
  run_logged "$logs_dir/keycloak.log" tar -xzf "$tarball" -C "$home" --strip-components=1
  rm -rf "$download"
  echo "$java_home" >"$home/.java-home"
  build_for_dev_mode "$home" "$java_home"
  echo "$version" >"$stamp"
}

# `kc.sh build` refuses the development profile: the only way to build for it is a first start-dev, which builds,
# restarts itself and serves. Its options that are fixed at build time (--db) must equal stack/keycloak.ts's.
build_for_dev_mode() {
  local home="$1" java_home="$2" port management_port pid i
  port="$(free_port)"
  management_port="$(free_port)"
  log "building Keycloak for development mode (about 40 s)"
  JAVA_HOME="$java_home" setsid "$home/bin/kc.sh" start-dev --db=dev-mem --http-host=127.0.0.1 \
    "--http-port=$port" "--http-management-port=$management_port" "--hostname=http://127.0.0.1:$port" \
    >>"$logs_dir/keycloak.log" 2>&1 &
  pid=$!
  local ready=0
  for i in $(seq 1 360); do
    if http_ok "http://127.0.0.1:$port/realms/master/.well-known/openid-configuration"; then
      ready=1
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  # setsid made the start script a group leader: the signal reaches the JVM it started too.
  kill -TERM -- "-$pid" 2>/dev/null || true
  for i in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$home/data"
  if [ "$ready" != 1 ]; then
    tail -n 60 "$logs_dir/keycloak.log" >&2
    log "Keycloak did not start for its first build (full log: $logs_dir/keycloak.log)"
    return 1
  fi
}

http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -sf -o /dev/null --max-time 2 "$1"
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

install_keycloak
