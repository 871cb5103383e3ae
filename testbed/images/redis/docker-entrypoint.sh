#!/usr/bin/env bash
# Entrypoint mirroring the official redis image. Upstream patches the built-in defaults
# to `protected-mode no` and `bind * -::*`; Debian's binary has the stock defaults, so
# pass them as options instead (placed before the user's options so those still win).
set -euo pipefail

# `docker run IMAGE --appendonly yes` or `IMAGE my.conf` means redis-server with those args.
if [ $# = 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

# Same umask as upstream: dumps and AOF files readable by the redis user only.
if [ "$(umask)" = 0022 ]; then umask 0077; fi

if [ "$1" = redis-server ] || [ "$1" = /usr/bin/redis-server ]; then
  shift
  conf=()
  # A config file must stay the first argument after redis-server.
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then conf=("$1"); shift; fi
  # "-::*" means "IPv6 if the container has it", so startup never fails on IPv4-only hosts.
  set -- redis-server "${conf[@]}" --protected-mode no --bind '*' '-::*' "$@"

  if [ "$(id -u)" = 0 ]; then
    # Named volumes start root-owned: hand /data to redis, then drop privileges.
    find . \! -user redis -exec chown redis:redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi

exec "$@"
