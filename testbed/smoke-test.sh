#!/usr/bin/env bash
# Smoke test of the devenv-test/* images: start each one the way a Compose file would
# (user-defined network, ports published on 127.0.0.1, a named volume for postgres),
# check it answers like the official image, and check `docker stop` is quick.
# Everything it creates is named tb-smoke-<pid>-* and removed on exit.
# Usage: bash testbed/smoke-test.sh   (after bash scripts/build-test-images.sh)
set -euo pipefail

PREFIX=${DEVENV_TESTBED_PREFIX:-devenv-test}
RUN=tb-smoke-$$
NET=$RUN-net
VOL=$RUN-pgdata
# Characters that break naive quoting: $ " ' space backslash colon # @
PASSWORD='p@ss$w"o'"'"'rd #1:x \b'
STOP_LIMIT_MS=${STOP_LIMIT_MS:-2000}
failures=0

log() { printf 'smoke: %s\n' "$*" >&2; }
ok() { log "ok   $*"; }
fail() { log "FAIL $*"; failures=$((failures + 1)); }

cleanup() {
  local ids
  ids=$(docker ps -aq --filter "name=^$RUN-")
  # shellcheck disable=SC2086  # one id per word
  [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
  docker volume rm "$VOL" >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Host port published for container port $2 of container $1.
host_port() { docker port "$1" "$2" | sed -n 's/^127\.0\.0\.1://p' | head -n1; }

# Retry "$@" for up to $1 seconds.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.3
  done
}

# `docker stop` duration in ms; fails when above STOP_LIMIT_MS.
check_stop() {
  local name=$1 t0 ms
  t0=$(date +%s%N)
  docker stop "$name" >/dev/null
  ms=$((($(date +%s%N) - t0) / 1000000))
  if [ $ms -le "$STOP_LIMIT_MS" ]; then ok "$name stopped in ${ms} ms"; else fail "$name took ${ms} ms to stop"; fi
}

psql_in_net() {
  docker run --rm --network "$NET" -e PGPASSWORD="$PASSWORD" "$PREFIX/postgres:latest" \
    psql -h "$RUN-pg" -U devenv -d 'app db' -v ON_ERROR_STOP=1 -Atc "$1"
}

docker network create "$NET" >/dev/null
docker volume create "$VOL" >/dev/null

start_pg() {
  docker run -d --name "$RUN-pg" --network "$NET" -p 127.0.0.1::5432 \
    -v "$VOL:/var/lib/postgresql/data" \
    -e POSTGRES_USER=devenv -e POSTGRES_PASSWORD="$PASSWORD" -e POSTGRES_DB='app db' \
    "$PREFIX/postgres:latest" >/dev/null
  # pg_isready alone would also answer during the socket-only init server.
  wait_for 60 psql_in_net 'SELECT 1'
}

# --- postgres ---------------------------------------------------------------------------
if start_pg; then ok "postgres: password login over the network (special characters)"
else fail "postgres: login"; docker logs "$RUN-pg" 2>&1 | tail -n 20 >&2; fi
docker exec "$RUN-pg" pg_isready -q && ok "postgres: pg_isready" || fail "postgres: pg_isready"
port=$(host_port "$RUN-pg" 5432)
if command -v psql >/dev/null; then
  [ "$(PGPASSWORD="$PASSWORD" psql -h 127.0.0.1 -p "$port" -U devenv -d 'app db' -Atc 'SELECT 1')" = 1 ] \
    && ok "postgres: SELECT 1 via published port $port" || fail "postgres: published port"
fi
docker run --rm --network "$NET" -e PGPASSWORD=wrong "$PREFIX/postgres:latest" \
  psql -h "$RUN-pg" -U devenv -d 'app db' -c 'SELECT 1' >/dev/null 2>&1 \
  && fail "postgres: wrong password accepted" || ok "postgres: wrong password refused"
psql_in_net 'CREATE TABLE smoke (x int); INSERT INTO smoke VALUES (42)' >/dev/null || fail "postgres: CREATE TABLE"
check_stop "$RUN-pg"
docker rm "$RUN-pg" >/dev/null
start_pg || true
[ "$(psql_in_net 'SELECT x FROM smoke' 2>/dev/null)" = 42 ] \
  && grep -q 'Skipping initialization' <<<"$(docker logs "$RUN-pg" 2>&1)" \
  && ok "postgres: data kept on the volume, initdb skipped" || fail "postgres: persistence"

# --- redis ------------------------------------------------------------------------------
docker run -d --name "$RUN-redis" --network "$NET" -p 127.0.0.1::6379 \
  "$PREFIX/redis:latest" redis-server --appendonly yes >/dev/null
port=$(host_port "$RUN-redis" 6379)
redis_ping() {
  local reply
  reply=$(exec 3<>"/dev/tcp/127.0.0.1/$port"; printf 'PING\r\n' >&3; head -c 5 <&3)
  [ "$reply" = +PONG ]
}
wait_for 20 redis_ping && ok "redis: PING via published port $port" || fail "redis: PING"
[ "$(docker exec "$RUN-redis" redis-cli config get appendonly | tail -n1)" = yes ] \
  && ok "redis: extra args passed through" || fail "redis: --appendonly yes ignored"
[ "$(docker run --rm --network "$NET" "$PREFIX/redis:latest" redis-cli -h "$RUN-redis" ping)" = PONG ] \
  && ok "redis: reachable from the network (protected mode off)" || fail "redis: network access"
check_stop "$RUN-redis"

# --- prometheus -------------------------------------------------------------------------
docker run -d --name "$RUN-prom" --network "$NET" -p 127.0.0.1::9090 "$PREFIX/prometheus:latest" >/dev/null
port=$(host_port "$RUN-prom" 9090)
wait_for 30 curl -fsS "http://127.0.0.1:$port/-/healthy" && ok "prometheus: /-/healthy" || fail "prometheus: /-/healthy"
# Service discovery fills the target list a few seconds after start.
targets() { curl -fsS "http://127.0.0.1:$port/api/v1/targets" | grep '"job":"prometheus"'; }
wait_for 20 targets && ok "prometheus: /api/v1/targets lists itself" || fail "prometheus: /api/v1/targets"
docker exec "$RUN-prom" wget -q -O /dev/null http://127.0.0.1:9090/-/healthy \
  && ok "prometheus: wget healthcheck" || fail "prometheus: wget healthcheck"
check_stop "$RUN-prom"

# --- adminer ----------------------------------------------------------------------------
docker run -d --name "$RUN-adminer" --network "$NET" -p 127.0.0.1::8080 \
  -e ADMINER_DEFAULT_SERVER="$RUN-pg" "$PREFIX/adminer:latest" >/dev/null
port=$(host_port "$RUN-adminer" 8080)
jar=$(mktemp)
wait_for 20 curl -fsS "http://127.0.0.1:$port/" || true
page=$(curl -fsS -c "$jar" -b "$jar" "http://127.0.0.1:$port/" || true)
grep -q "name=\"auth\[server\]\" value=\"$RUN-pg\"" <<<"$page" && ok "adminer: ADMINER_DEFAULT_SERVER pre-fills the login form" || fail "adminer: default server"
page=$(curl -fsS -L -c "$jar" -b "$jar" \
  --data-urlencode 'auth[driver]=pgsql' --data-urlencode "auth[server]=$RUN-pg" \
  --data-urlencode 'auth[username]=devenv' --data-urlencode "auth[password]=$PASSWORD" \
  --data-urlencode 'auth[db]=app db' "http://127.0.0.1:$port/" || true)
rm -f "$jar"
grep -q 'select=smoke' <<<"$page" && ok "adminer: pgsql login shows the database's table" \
  || fail "adminer: login ($(grep -o "class='error'>[^<]*" <<<"$page" || echo 'no table listed'))"
check_stop "$RUN-adminer"

# --- grafana (stand-in) -----------------------------------------------------------------
docker run -d --name "$RUN-grafana" --network "$NET" -p 127.0.0.1::3000 "$PREFIX/grafana:latest" >/dev/null
port=$(host_port "$RUN-grafana" 3000)
wait_for 20 curl -fsS "http://127.0.0.1:$port/api/health" || true
[ "$(curl -fsS "http://127.0.0.1:$port/api/health" | tr -d ' \n')" = \
  '{"commit":"devenv-stand-in","database":"ok","version":"stand-in"}' ] && ok "grafana: /api/health" || fail "grafana: /api/health"
docker exec "$RUN-grafana" wget -q -O /dev/null http://127.0.0.1:3000/api/health \
  && ok "grafana: wget healthcheck" || fail "grafana: wget healthcheck"
check_stop "$RUN-grafana"

check_stop "$RUN-pg"

if [ $failures = 0 ]; then log "all checks passed"; else log "$failures check(s) failed"; exit 1; fi
