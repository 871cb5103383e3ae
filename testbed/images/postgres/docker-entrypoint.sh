#!/usr/bin/env bash
# Entrypoint mirroring the official postgres image: on first start (no PG_VERSION in
# PGDATA) run initdb, create POSTGRES_DB and run /docker-entrypoint-initdb.d; then exec
# the server as the postgres user.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%F %T UTC')" "$*" >&2; }

# `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`, as upstream.
if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
: "${POSTGRES_INITDB_ARGS:=}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export POSTGRES_USER POSTGRES_DB POSTGRES_PASSWORD POSTGRES_INITDB_ARGS POSTGRES_HOST_AUTH_METHOD

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  # Named volumes start root-owned: hand PGDATA and the socket dir to postgres,
  # then re-run this script as postgres.
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 700 "$PGDATA"
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# psql for the init steps: local socket, stop at the first error, no psqlrc.
process_sql() {
  PGHOST=/var/run/postgresql PGPORT=5432 PGUSER="$POSTGRES_USER" PGPASSWORD='' \
    psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password "$@"
}

init_database() {
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    log 'Error: Database is uninitialized and superuser password is not specified.'
    log '  Set POSTGRES_PASSWORD to a non-empty value, or POSTGRES_HOST_AUTH_METHOD=trust'
    log '  to allow all connections without a password (not recommended).'
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA" 2>/dev/null || true

  log "initdb in $PGDATA"
  # The password reaches initdb through a file descriptor, never through SQL or a
  # command line. POSTGRES_INITDB_ARGS is word-split with shell quoting, as upstream.
  eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"

  # Local socket: trust (initdb default); any TCP client: password (or trust on request).
  {
    printf '\n'
    [ "$POSTGRES_HOST_AUTH_METHOD" = trust ] && printf '# warning trust is enabled for all connections\n'
    printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
  } >>"$PGDATA/pg_hba.conf"

  # Temporary server on the unix socket only, so nobody connects before init ends.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start

  if [ "$POSTGRES_DB" != postgres ]; then
    # Name passed as a psql variable and quoted by psql (:"db"), not interpolated.
    # psql expands variables only in statements read from stdin or a file, not from -c.
    exists=$(printf '%s\n' "SELECT 1 FROM pg_database WHERE datname = :'db';" \
      | process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only --no-align)
    if [ -z "$exists" ]; then
      printf '%s\n' 'CREATE DATABASE :"db";' | process_sql --dbname postgres --set db="$POSTGRES_DB"
    fi
  fi

  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case $f in
      *.sh)
        if [ -x "$f" ]; then log "running $f"; "$f"
        else log "sourcing $f"; # shellcheck disable=SC1090
          . "$f"; fi ;;
      *.sql) log "running $f"; process_sql --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | process_sql --dbname "$POSTGRES_DB" ;;
      *.sql.xz) log "running $f"; xzcat "$f" | process_sql --dbname "$POSTGRES_DB" ;;
      *) log "ignoring $f" ;;
    esac
  done

  pg_ctl -D "$PGDATA" -m fast -w stop
  log 'PostgreSQL init process complete; ready for start up.'
}

if [ "$1" = postgres ]; then
  if [ -s "$PGDATA/PG_VERSION" ]; then
    log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
  else
    init_database
  fi
fi

exec "$@"
