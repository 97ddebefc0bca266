#!/usr/bin/env bash
# The whole test suite against the real components; installs and builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash stack/provision.sh
bash stack/provision-kube.sh
. stack/node.sh
npm run --silent build
npm run --silent lint
npm test
