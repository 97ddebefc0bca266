#!/usr/bin/env bash
# The whole test suite against the real components; installs and builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash stack/provision.sh
bash stack/provision-kube.sh
bash stack/provision-keycloak.sh
bash stack/provision-ui.sh
. stack/node.sh
npm run --silent build
npm run --silent lint
# One Keycloak for the whole run (it takes 20-40 s to start): the tests find it through DEPLOY_AGENT_TEST_OIDC_URL.
# The --owner check stops it even if this script is killed before its trap can run.
oidc_dir="$(mktemp -d)"
trap 'node dist/stack/keycloak.js stop --state "$oidc_dir/keycloak.json"; rm -rf "$oidc_dir"' EXIT
DEPLOY_AGENT_TEST_OIDC_URL="$(node dist/stack/keycloak.js start --state "$oidc_dir/keycloak.json" --owner $$)"
export DEPLOY_AGENT_TEST_OIDC_URL
npm test
