#!/usr/bin/env bash
# A Docker engine for the container tests (docs/deployment.md#container-tests).
#
#   eval "$(scripts/containers/engine.sh start)"   # prints DOCKER_HOST=… and INTAKE_ENGINE_STARTED=0|1
#   scripts/containers/engine.sh stop              # stops the dockerd this script started, by its PID
#
# start uses, in order: $DOCKER_HOST if it answers, the system socket /var/run/docker.sock if it answers,
# a dockerd this script started earlier (its pid file and socket), and otherwise starts one: Debian's
# docker.io (installed if missing) with its own --data-root, --exec-root and socket, so it never touches
# a system engine's state. The data root lives in the cache directory, so images (the local base images,
# build layers) survive between runs where the machine keeps /var/cache; nothing depends on that.
set -euo pipefail

CACHE=${INTAKE_CONTAINER_CACHE:-/var/cache/intake-containers}
EXEC_ROOT=${INTAKE_DOCKERD_EXEC_ROOT:-/run/intake-docker}
SOCKET=$EXEC_ROOT/docker.sock
STARTED_PID=$EXEC_ROOT/started-by-intake.pid

log() { printf 'engine: %s\n' "$*" >&2; }

answers() { DOCKER_HOST=$1 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

ours_alive() {
  [[ -s $STARTED_PID ]] || return 1
  local pid
  pid=$(<"$STARTED_PID")
  [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == dockerd ]]
}

install_engine() {
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && return 0
  log "installing docker.io"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
}

start() {
  if [[ -n ${DOCKER_HOST:-} ]] && answers "$DOCKER_HOST"; then
    log "using DOCKER_HOST=$DOCKER_HOST"
    printf 'export DOCKER_HOST=%q INTAKE_ENGINE_STARTED=0\n' "$DOCKER_HOST"
    return
  fi
  install_engine
  if answers unix:///var/run/docker.sock; then
    log "using the system engine"
    printf 'export DOCKER_HOST=%q INTAKE_ENGINE_STARTED=0\n' unix:///var/run/docker.sock
    return
  fi
  if ours_alive && answers "unix://$SOCKET"; then
    log "reusing the dockerd started earlier (pid $(<"$STARTED_PID"))"
    printf 'export DOCKER_HOST=%q INTAKE_ENGINE_STARTED=1\n' "unix://$SOCKET"
    return
  fi
  mkdir -p "$CACHE/docker" "$EXEC_ROOT"
  log "starting dockerd (data root $CACHE/docker, socket $SOCKET)"
  # setsid: its own session, so a terminal's Ctrl-C reaches the test run, not the engine.
  setsid dockerd --data-root "$CACHE/docker" --exec-root "$EXEC_ROOT" -H "unix://$SOCKET" \
    --pidfile "$EXEC_ROOT/dockerd.pid" >>"$CACHE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STARTED_PID"
  for _ in $(seq 1 120); do
    if answers "unix://$SOCKET"; then
      printf 'export DOCKER_HOST=%q INTAKE_ENGINE_STARTED=1\n' "unix://$SOCKET"
      return
    fi
    ours_alive || break
    sleep 0.5
  done
  log "dockerd did not come up; last lines of $CACHE/dockerd.log:"
  tail -n 20 "$CACHE/dockerd.log" >&2
  stop
  exit 1
}

stop() {
  ours_alive || { rm -f "$STARTED_PID"; return 0; }
  local pid
  pid=$(<"$STARTED_PID")
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    [[ -e /proc/$pid ]] || break
    sleep 0.5
  done
  if [[ -e /proc/$pid ]]; then
    log "dockerd (pid $pid) did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STARTED_PID"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
