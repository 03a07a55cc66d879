#!/usr/bin/env bash
# npm run test:containers: every image built with the real Dockerfiles and checked as real containers
# (test/containers/). Needs root (it may install docker.io and mmdebstrap, and start dockerd).
#   1. a Docker engine (scripts/containers/engine.sh; one it starts is stopped at the end, by PID);
#   2. local base images, unless INTAKE_BASE_IMAGES=official (the Dockerfiles' defaults, pulled);
#   3. the intake, go-app and NATS images (scripts/containers/build-images.sh);
#   4. node scripts/run-tests.mjs test/containers.
# Extra arguments narrow step 4 to some test files. Each step's duration is printed at the end.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cd "$HERE/../.."

timings=()
step() {
  local name=$1 started=$SECONDS
  shift
  "$@"
  timings+=("$(printf '%-22s %4ss' "$name" $((SECONDS - started)))")
}
report() {
  printf '\n== container suite timings\n'
  printf '  %s\n' "${timings[@]}"
}

start_engine() { eval "$("$HERE/engine.sh" start)"; }
step engine start_engine
if [[ ${INTAKE_ENGINE_STARTED:-0} == 1 ]]; then
  trap 'report; "$HERE/engine.sh" stop' EXIT
else
  trap report EXIT
fi
# Ctrl-C or a kill still runs the EXIT trap (an engine this script started is stopped).
trap 'exit 130' INT
trap 'exit 143' TERM

# Containers an interrupted earlier run left behind: the tests label theirs intake-test=1, and their
# compose projects are named intake-t-…; nothing else is touched.
leftovers() {
  {
    docker ps -aq --filter label=intake-test=1
    docker ps -a --format '{{.ID}} {{.Label "com.docker.compose.project"}}' | awk '$2 ~ /^intake-t-/ { print $1 }'
  } | sort -u
}
mapfile -t stale < <(leftovers)
if ((${#stale[@]})); then
  echo "run-suite: removing ${#stale[@]} containers left by an interrupted run" >&2
  docker rm --force --volumes "${stale[@]}" >/dev/null
fi

base_images() { eval "$("$HERE/base-images.sh")"; }
if [[ ${INTAKE_BASE_IMAGES:-local} == local ]]; then step base-images base_images; fi

export INTAKE_IMAGE=${INTAKE_IMAGE:-intake:local} GO_APP_IMAGE=${GO_APP_IMAGE:-go-app:local} \
  NATS_IMAGE_TAG=${NATS_IMAGE_TAG:-intake-nats:local} POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:16.9-bookworm}
step build "$HERE/build-images.sh"
# The compose test's database: pulled when it is an official image (made locally otherwise).
docker image inspect "$POSTGRES_IMAGE" >/dev/null 2>&1 || docker pull --quiet "$POSTGRES_IMAGE" >/dev/null
# Untagged images older than a week: layers of builds long replaced. Recent ones are the classic
# builder's cache of the build stages (npm ci), which the next run reuses.
docker image prune --force --filter until=168h >/dev/null

step tests node scripts/run-tests.mjs "${@:-test/containers}"
