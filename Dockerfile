# The deploy agent's worker (and its CLI), for temporal-docker-compose.yml.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
# npm run build also writes dist/workflow-bundle.js, so the worker starts without bundling its workflows.
RUN npm run build && npm prune --omit=dev && rm -rf dist/stack dist/test

FROM node:24-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/security-rules ./security-rules
COPY --from=build /app/package.json ./

# Needs DEPLOY_AGENT_POLICY and DEPLOY_AGENT_KEYS_FILE (the payload key file, mounted read-only) or DEPLOY_AGENT_KEYS:
# without keys the worker refuses to start. The codec server runs from it too: node dist/client/cli.js codec-server.
# The CLI runs in the same image: docker run <image> node dist/client/cli.js <verb> ...
CMD ["node", "dist/worker/main.js"]
