#!/usr/bin/env bash
# The raw Docker deploy the bench compares the agent with: the same replace and health wait, by hand, with the
# docker CLI against DOCKER_HOST. Pull, stop the old container with the grace period the agent gives it and remove
# it, run the new one on the same port mapping and limits, then poll the health endpoint until it answers 200.
#
#   docker-raw-deploy.sh IMAGE NAME HOST_PORT CONTAINER_PORT HEALTH_PATH GRACE_SECONDS POLL_SECONDS HEALTHY_WITHIN_SECONDS
set -euo pipefail
image=$1 name=$2 host_port=$3 container_port=$4 health_path=$5 grace=$6 poll=$7 healthy_within=$8

docker pull --quiet "$image" >/dev/null
if docker container inspect "$name" >/dev/null 2>&1; then
  docker stop -t "$grace" "$name" >/dev/null
  docker rm "$name" >/dev/null
fi
docker run --detach --name "$name" --restart unless-stopped --memory 64m --cpus 0.5 --stop-timeout "$grace" \
  --publish "127.0.0.1:$host_port:$container_port" "$image" >/dev/null

deadline=$((SECONDS + healthy_within))
until curl --silent --fail --output /dev/null --max-time 1 "http://127.0.0.1:$host_port$health_path"; do
  if ((SECONDS >= deadline)); then
    echo "$name: not healthy within ${healthy_within}s" >&2
    exit 1
  fi
  sleep "$poll"
done
