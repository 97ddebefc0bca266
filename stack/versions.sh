# Pinned versions of every tool the local stack builds or installs. Changing one invalidates its cache entry.
NODE_MAJOR=24
TEMPORAL_CLI_VERSION=v1.5.1
TEMPORAL_TEST_SERVER_VERSION=1.38.0
SLF4J_NOP_VERSION=2.0.17
MAVEN_DEPENDENCY_PLUGIN_VERSION=3.8.1
DEPLOY_AGENT_CACHE="${DEPLOY_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deploy-agent}"
KUBE_VERSION=v1.35.8
KWOK_VERSION=v0.8.0
