#!/bin/sh
# Entrypoint of the local PostgreSQL test image (scripts/containers/base-images.sh). It honours the part
# of the official postgres image's contract that compose.yaml uses: on an empty $PGDATA it creates the
# cluster with superuser $POSTGRES_USER (password $POSTGRES_PASSWORD, required) and the database
# $POSTGRES_DB, runs the *.sql files of /docker-entrypoint-initdb.d, accepts password (scram-sha-256)
# connections from anywhere, then runs the server as PID 1.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\"" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  # As the official image: *.sql in /docker-entrypoint-initdb.d run once, in $POSTGRES_DB, as the
  # superuser (compose.yaml mounts deploy/postgres/compose-roles.sql there).
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    postgres --single -D "$PGDATA" -j "$db" <"$f" >/dev/null
    echo "postgres-entrypoint: ran $f"
  done
  echo "postgres-entrypoint: initialised $PGDATA (user $user, database $db)"
fi
if [ "$1" = postgres ]; then shift; exec postgres -D "$PGDATA" "$@"; fi
exec "$@"
