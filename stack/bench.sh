#!/usr/bin/env bash
# `npm run bench`: the benchmark suite against the same real components as the tests; installs what it needs first.
# Arguments go to the suite: --smoke, --runs N, --concurrency N, --only <suite> (repeatable).
set -euo pipefail
cd "$(dirname "$0")/.."
bash stack/provision.sh
bash stack/provision-kube.sh
. stack/node.sh
npm run --silent build
exec node dist/bench/main.js "$@"
