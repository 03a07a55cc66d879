# syntax=docker/dockerfile:1
# intake: API, worker, migrations and the pod watcher, all from one image.
#   docker build -t intake .
#   docker run --rm intake help
# Node is pinned to an exact 24.x release and to the digest of that tag's multi-platform index, so a
# rebuild of the tag upstream cannot change what we build on (Renovate/Dependabot keeps both fresh; the
# digest is the one docker-library/repo-info records for node:24.21.0-bookworm-slim). A machine without
# registry access passes a local image with node and npm instead (--build-arg NODE_IMAGE=…, made by
# scripts/containers/base-images.sh); the official image stays the default. .ci/run tests the same
# Node release (NODE24_VERSION).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6

# 1. Compile TypeScript with the full dependency tree (tsc and types are dev dependencies).
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only. --omit=optional drops the ~60 MB embedded-PostgreSQL binaries: in a
#    container DATABASE_URL is always set (NODE_ENV=production requires it). No install scripts are
#    needed by the runtime dependencies, so none run.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund && npm cache clean --force

# 3. Runtime: no compiler, no npm cache, no sources; runs as an unprivileged numeric uid so Kubernetes
#    can verify runAsNonRoot. Nothing is written under /app, so the root filesystem can be read-only;
#    the only writable path needed is /tmp (an emptyDir or tmpfs), used for INTAKE_DATA_DIR and heap
#    snapshots.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    INTAKE_DATA_DIR=/tmp/intake \
    INTAKE_HEAPSNAPSHOT_DIR=/tmp/heapsnapshots
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# Migrations are read at runtime by `intake migrate` (dist/store/migrate.js resolves ../../sql).
COPY sql ./sql
# A name for uid 10001: Node's os.userInfo() (the audit actor of `intake pii`) fails for a uid that has
# no entry in /etc/passwd. The package managers the base image ships (npm, npx, corepack, yarn) are
# removed: the runtime installs nothing, and a shell in a compromised container should not find a
# ready way to fetch and run packages.
RUN echo 'intake:x:10001:10001:intake:/tmp:/usr/sbin/nologin' >>/etc/passwd \
    && echo 'intake:x:10001:' >>/etc/group \
    && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-v* \
        /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg
USER 10001:10001
EXPOSE 8080 8081 9090
# node is PID 1: intake handles SIGTERM/SIGINT itself (staged drain) and spawns no children in a
# container, so there are no zombies to reap and no need for tini.
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["start"]
