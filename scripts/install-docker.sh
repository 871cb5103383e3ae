#!/usr/bin/env bash
# Make a Docker engine and Compose v2 answer on this machine (Debian, as root).
# Idempotent: installs only what is missing, starts dockerd only when it does not answer.
# Env: DEVENV_TESTBED_MIRROR (default: the Debian mirror this machine's apt uses, else
#      http://deb.debian.org/debian), for the trixie source Compose v2 comes from.
set -euo pipefail
# shellcheck source=lib/apt-mirror.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/apt-mirror.sh"

log() { printf 'install-docker: %s\n' "$*" >&2; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if [ "$(id -u)" != 0 ]; then
  engine_answers && docker compose version >/dev/null 2>&1 && exit 0
  log "needs root to install or start Docker (run with sudo)"; exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { apt-get update -qq; apt_updated=1; }; }

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Docker Engine (docker.io)"
  apt_update
  apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing Compose v2 from Debian trixie (pinned at priority 100)"
  if [ ! -f /etc/apt/sources.list.d/trixie.sources ]; then
    mirror=${DEVENV_TESTBED_MIRROR:-$(debian_mirror || echo http://deb.debian.org/debian)}
    log "trixie from $mirror"
    cat >/etc/apt/sources.list.d/trixie.sources <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat >/etc/apt/preferences.d/trixie-pin <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    apt_updated=0
  fi
  apt_update
  apt-get install -y -qq --no-install-recommends -t trixie docker-compose >/dev/null
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap (offline test images)"
  apt_update
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

if ! command -v ip >/dev/null 2>&1; then
  # the LAN publishing test gives itself a test address (tests/e2e/test_loop.py)
  log "installing iproute2 (the inner-loop tests' LAN address)"
  apt_update
  apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi

if ! command -v ssh >/dev/null 2>&1; then
  log "installing openssh-client (devenv tunnel runs the system ssh)"
  apt_update
  apt-get install -y -qq --no-install-recommends openssh-client >/dev/null
fi

if ! command -v psql >/dev/null 2>&1; then
  log "installing postgresql-client (devenv psql --tunnel runs this machine's psql)"
  apt_update
  apt-get install -y -qq --no-install-recommends postgresql-client >/dev/null
fi

if ! engine_answers; then
  if [ -n "${DOCKER_HOST:-}" ]; then
    log "DOCKER_HOST=$DOCKER_HOST does not answer; unset it to use a local dockerd"; exit 1
  fi
  log "starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 300); do
    engine_answers && break
    sleep 0.1
  done
  engine_answers || { log "dockerd did not answer within 30 s; see /var/log/dockerd.log"; tail -n 20 /var/log/dockerd.log >&2; exit 1; }
fi
log "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(docker compose version --short 2>/dev/null)"
