#!/usr/bin/env bash
# Installs and builds everything the local stack needs on a fresh machine: Debian packages, the Temporal CLI
# (dev server), the Java time-skipping test server with a start-up wrapper, and node_modules. Idempotent: each
# step is keyed by version in $DEPLOY_AGENT_CACHE and prints nothing when already done.
#
# Outputs:
#   $DEPLOY_AGENT_CACHE/temporal-cli-$TEMPORAL_CLI_VERSION/temporal
#   $DEPLOY_AGENT_CACHE/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION/test-server   (<port> [--enable-time-skipping])
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=stack/versions.sh
. "$here/versions.sh"

PROVISION_NAME=provision
# shellcheck source=stack/provision-common.sh
. "$here/provision-common.sh"

APT_PACKAGES=(docker.io docker-registry etcd-server prometheus busybox-static docker-compose nginx-light openssl curl)

install_stack_packages() {
  local wanted=("${APT_PACKAGES[@]}") p
  command -v java >/dev/null 2>&1 || wanted+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || wanted+=(maven)
  install_debian_packages "${wanted[@]}"
  # Packages may start system-wide daemons on default ports; the stack runs its own instances on free ports.
  if command -v systemctl >/dev/null 2>&1; then
    for p in docker containerd docker-registry etcd prometheus nginx; do
      if systemctl is-active --quiet "$p" 2>/dev/null; then systemctl disable --now "$p" >/dev/null 2>&1 || true; fi
    done
  fi
}

install_temporal_cli() {
  local home="$DEPLOY_AGENT_CACHE/temporal-cli-$TEMPORAL_CLI_VERSION"
  [ -x "$home/temporal" ] && return 0
  if ! command -v go >/dev/null 2>&1; then
    log "Go is required to build the Temporal CLI $TEMPORAL_CLI_VERSION (not on PATH)"
    return 1
  fi
  log "building the Temporal CLI $TEMPORAL_CLI_VERSION into $home (5-10 min cold)"
  mkdir -p "$home"
  # Static, so a libc change on the machine cannot break the cached binary; -modcacherw keeps the cache removable.
  CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -modcacherw" GOBIN="$home" \
    run_logged "$logs_dir/temporal.log" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION"
}

# The SDK starts the test server as `<path> <port> [--enable-time-skipping]`, kills only that pid and gives it about
# 5 s to answer. A cold JVM on 2 cores needs most of that, so the wrapper uses the C1 compiler only, the serial
# GC and an application class-data archive recorded here from a real start.
install_test_server() {
  local version="$TEMPORAL_TEST_SERVER_VERSION"
  local home="$DEPLOY_AGENT_CACHE/temporal-test-server-$version"
  local wrapper="$home/test-server" archive="$home/classes.jsa" stamp="$home/.complete"
  local java_version
  java_version="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.runtime.version = //p')"
  local want="$version slf4j-nop-$SLF4J_NOP_VERSION java-$java_version"
  if [ -x "$wrapper" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "fetching the Temporal test server $version from Maven Central into $home"
  rm -rf "$home"
  mkdir -p "$home/lib"
  cat >"$home/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.deploy-agent</groupId>
  <artifactId>temporal-test-server-fetch</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.temporal</groupId>
      <artifactId>temporal-test-server</artifactId>
      <version>$version</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-nop</artifactId>
      <version>$SLF4J_NOP_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  run_logged "$logs_dir/temporal-test-server.log" mvn -B -q -f "$home/pom.xml" \
    "-Dmaven.repo.local=$DEPLOY_AGENT_CACHE/maven-repository" \
    "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN_VERSION:copy-dependencies" \
    "-DoutputDirectory=$home/lib" -DincludeScope=runtime

  # CDS needs the exact class path of the recording run, so it is spelled out in a fixed order.
  local classpath
  classpath="$(find "$home/lib" -name '*.jar' | LC_ALL=C sort | paste -sd:)"
  cat >"$wrapper" <<EOF
#!/bin/sh
# Temporal time-skipping test server $version. Usage: test-server <port> [--enable-time-skipping]
exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto -XX:SharedArchiveFile=$archive \\
  -Xlog:cds=off -Xlog:cds+dynamic=off \${TEMPORAL_TEST_SERVER_JAVA_OPTS:-} \\
  -cp $classpath io.temporal.testserver.TestServer "\$@"
EOF
  chmod +x "$wrapper"
  record_class_archive "$home" "$classpath" "$archive"
  echo "$want" >"$stamp"
}

# Records the classes a real start loads (serve, then SIGTERM, which dumps at exit) into a dynamic CDS archive.
record_class_archive() {
  local home="$1" classpath="$2" archive="$3" port pid i
  port="$(free_port)"
  java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ArchiveClassesAtExit="$archive" \
    -Xlog:cds=off -Xlog:cds+dynamic=off \
    -cp "$classpath" io.temporal.testserver.TestServer "$port" --enable-time-skipping \
    >>"$logs_dir/temporal-test-server.log" 2>&1 &
  pid=$!
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  # A request through the gRPC stack loads its classes too, so they land in the archive.
  local cli="$DEPLOY_AGENT_CACHE/temporal-cli-$TEMPORAL_CLI_VERSION/temporal"
  if [ -x "$cli" ]; then
    timeout 20 "$cli" workflow start --address "127.0.0.1:$port" --task-queue warm-up --type WarmUp \
      --workflow-id warm-up >/dev/null 2>&1 || true
    timeout 20 "$cli" workflow describe --address "127.0.0.1:$port" --workflow-id warm-up >/dev/null 2>&1 || true
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  if [ ! -s "$archive" ]; then
    # Not fatal: without the archive the JVM starts without it, only slower.
    log "warning: no class-data archive recorded for the test server (see $logs_dir/temporal-test-server.log)"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

install_node_modules() {
  # Reinstall whenever package.json or the lock file changed since the last install.
  local stamp="$root/node_modules/.deploy-agent-install"
  local wanted
  wanted=$(cat "$root/package.json" "$root/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && return 0
  # shellcheck source=stack/node.sh
  . "$here/node.sh"
  log "installing node_modules"
  # Not `npm ci`: the registry mirror here serves only this platform's optional packages (other platforms' @swc/core
  # builds answer 404), so a lock file can never list them all and `npm ci` refuses it. `npm install` honours the
  # lock file for everything it does list.
  (cd "$root" && run_logged "$logs_dir/npm.log" npm install --no-audit --no-fund)
  # npm may have rewritten the lock file: stamp what is there now.
  cat "$root/package.json" "$root/package-lock.json" | sha256sum | cut -d' ' -f1 >"$stamp"
}

install_stack_packages
install_temporal_cli
install_test_server
install_node_modules
