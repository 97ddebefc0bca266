#!/usr/bin/env bash
# The main job: a local Temporal dev server, worker and OpenID provider (Keycloak), then the bundled example through
# deploy, approval, a failing release and its automatic rollback. DEPLOY_AGENT_DEMO_EXIT=1 exits when the flow ends;
# --target kubernetes runs it on a local Kubernetes control plane instead of a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash stack/provision.sh
bash stack/provision-keycloak.sh
case " $* " in *kubernetes*) bash stack/provision-kube.sh ;; esac
. stack/node.sh
npm run --silent build
exec node dist/client/cli.js demo "$@"
