#!/usr/bin/env bash
# Builds the three images this repository ships, with the real Dockerfiles, and prints their sizes:
#   $INTAKE_IMAGE (default intake:local)       from Dockerfile
#   $GO_APP_IMAGE (default go-app:local)       from go-app/Dockerfile
#   $NATS_IMAGE_TAG (default intake-nats:local) from deploy/nats/Dockerfile
# Base images are the Dockerfiles' defaults (official images) unless NODE_IMAGE, GO_IMAGE or
# NATS_IMAGE are set (scripts/containers/base-images.sh prints local ones). Without BuildKit (buildx)
# the classic builder is used.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

INTAKE_IMAGE=${INTAKE_IMAGE:-intake:local}
GO_APP_IMAGE=${GO_APP_IMAGE:-go-app:local}
NATS_IMAGE_TAG=${NATS_IMAGE_TAG:-intake-nats:local}
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

# build TAG CONTEXT [ARG_NAME…]: passes each named build argument only when it is set.
build() {
  local tag=$1 context=$2 args=() name started
  shift 2
  for name in "$@"; do
    [[ -n ${!name:-} ]] && args+=(--build-arg "$name=${!name}")
  done
  started=$SECONDS
  printf 'build-images: %s from %s %s\n' "$tag" "${context#"$ROOT"/}" "${args[*]:-(official bases)}" >&2
  docker build --quiet --label "org.opencontainers.image.revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "${args[@]}" -t "$tag" "$context" >/dev/null
  printf 'build-images: %s built in %ss\n' "$tag" $((SECONDS - started)) >&2
}

build "$INTAKE_IMAGE" "$ROOT" NODE_IMAGE
build "$GO_APP_IMAGE" "$ROOT/go-app" GO_IMAGE
build "$NATS_IMAGE_TAG" "$ROOT/deploy/nats" NATS_IMAGE

for tag in "$INTAKE_IMAGE" "$GO_APP_IMAGE" "$NATS_IMAGE_TAG"; do
  printf 'image size: %-24s %6.1f MB\n' "$tag" "$(docker image inspect --format '{{.Size}}' "$tag" | awk '{print $1 / 1e6}')"
done
