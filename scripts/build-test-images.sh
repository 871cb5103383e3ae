#!/usr/bin/env bash
# Build the offline test images devenv-test/* from Debian packages (no registry needed):
#   devenv-test/base:bookworm  one debootstrap rootfs holding every package (testbed/base.packages)
#   devenv-test/<name>:latest  one per testbed/images/<name>/, each FROM the base
# Idempotent and cached: every image carries a content hash label and is rebuilt only
# when that hash changes, so a rerun with nothing changed only inspects images.
#
# Usage: bash scripts/build-test-images.sh [--force] [NAME...]
#   NAME     build only these images (the base is always checked); default: all
#   --force  rebuild everything (debootstrap too) even when the hashes match
# Env: DEVENV_TESTBED_MIRROR (default: the Debian mirror this machine's apt uses, else
#      http://deb.debian.org/debian), TMPDIR,
#      DEVENV_TESTBED_PREFIX (default devenv-test: image names are PREFIX/NAME).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTBED=$ROOT/testbed
# The prefix only changes for side-by-side experiments (e.g. timing a cold build).
PREFIX=${DEVENV_TESTBED_PREFIX:-devenv-test}
BASE_IMAGE=$PREFIX/base:bookworm
SUITE=bookworm
# shellcheck source=lib/apt-mirror.sh
. "$ROOT/scripts/lib/apt-mirror.sh"
# Not part of the base image's hash: the same packages from another mirror are the same.
MIRROR=${DEVENV_TESTBED_MIRROR:-$(debian_mirror || echo http://deb.debian.org/debian)}
HASH_LABEL=devenv.testbed.hash
# No buildx plugin here and nothing to pull: the classic builder works offline.
export DOCKER_BUILDKIT=0

log() { printf 'build-test-images: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

force=0
no_cache=()
wanted=()
for arg in "$@"; do
  case $arg in
    --force) force=1; no_cache=(--no-cache) ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) [ -d "$TESTBED/images/$arg" ] || die "no such image: testbed/images/$arg"; wanted+=("$arg") ;;
  esac
done
if [ ${#wanted[@]} = 0 ]; then
  for d in "$TESTBED"/images/*/; do
    if [ -f "$d/Dockerfile" ]; then wanted+=("$(basename "$d")"); fi
  done
fi

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "docker engine does not answer (try: bash scripts/install-docker.sh)"

# One build at a time on this machine: concurrent runs would debootstrap twice and
# race on the tags. The second run waits, then finds everything up to date.
exec 9>"${TMPDIR:-/tmp}/devenv-build-test-images.lock"
flock 9

# Images replaced by this or an earlier run; removed at the end once nothing uses them.
# The file remembers ids that were still in use, so a later run retries them.
STALE_FILE=${TMPDIR:-/tmp}/devenv-build-test-images.stale
replaced=()
[ ! -s "$STALE_FILE" ] || mapfile -t replaced <"$STALE_FILE"
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# Label value of an image, empty when the image or label is missing.
image_hash() {
  docker image inspect --format "{{index .Config.Labels \"$HASH_LABEL\"}}" "$1" 2>/dev/null || true
}

packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$TESTBED/base.packages"; }

# Paths dropped from the rootfs: caches and docs no test needs (C.UTF-8 lives in
# usr/lib/locale, so usr/share/locale can go except the alias file).
prune_rootfs() {
  local dir=$1
  rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
    "$dir"/usr/share/lintian "$dir"/usr/share/linda \
    "$dir"/var/cache/debconf/*-old "$dir"/var/lib/dpkg/*-old \
    "$dir"/var/log/apt/* "$dir"/var/log/*.log "$dir"/var/cache/man/*
  find "$dir"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  # Locale sources (C.UTF-8 is prebuilt) and the 200 MB per-zone data of moment-timezone,
  # a prometheus web UI dependency that only loads moment-timezone-with-data.min.js.
  rm -rf "$dir"/usr/share/i18n "$dir"/usr/share/javascript/moment-timezone/data
  # The Debian postinst creates a cluster 15/main; the postgres image uses PGDATA instead.
  rm -rf "$dir"/var/lib/postgresql/15 "$dir"/etc/postgresql/15
  # Services must never start inside a container build (no init there anyway).
  printf '#!/bin/sh\nexit 101\n' >"$dir"/usr/sbin/policy-rc.d
  chmod 755 "$dir"/usr/sbin/policy-rc.d
}

# Unmount anything debootstrap left mounted below $1, then delete it without
# crossing into other filesystems (a leftover bind mount of /dev must survive).
remove_rootfs() {
  local dir=$1 mnt
  [ -d "$dir" ] || return 0
  while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done \
    < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
  rm -rf --one-file-system "$dir"
}

build_base() {
  local hash=$1 tmp
  command -v debootstrap >/dev/null || die "debootstrap missing (try: bash scripts/install-docker.sh)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/devenv-testbed.XXXXXX")
  # shellcheck disable=SC2064  # expand $tmp now: the trap must clean this very dir
  trap "remove_rootfs '$tmp'" EXIT
  log "debootstrap $SUITE into $tmp (takes a minute or two)"
  debootstrap --variant=minbase --include="$(packages | paste -sd, -)" \
    "$SUITE" "$tmp/rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 \
    || { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  prune_rootfs "$tmp/rootfs"
  log "importing $BASE_IMAGE ($(du -sh --one-file-system "$tmp/rootfs" | cut -f1))"
  tar --one-file-system -C "$tmp/rootfs" -c . | docker import \
    --change "LABEL $HASH_LABEL=$hash" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    - "$BASE_IMAGE" >/dev/null
  remove_rootfs "$tmp"
  trap - EXIT
}

# The base hash covers the package list, suite and the code that builds the rootfs,
# not the rest of this script, so editing image logic does not redo debootstrap.
base_hash=$( { echo "$SUITE"; packages; declare -f prune_rootfs build_base; } | sha256sum | cut -c1-16)
if [ $force = 0 ] && [ "$(image_hash "$BASE_IMAGE")" = "$base_hash" ]; then
  log "$BASE_IMAGE up to date ($base_hash)"
else
  start=$SECONDS
  replaced+=("$(image_id "$BASE_IMAGE")")
  build_base "$base_hash"
  log "$BASE_IMAGE built in $((SECONDS - start)) s"
fi
base_id=$(image_id "$BASE_IMAGE")

# Hash of an image directory: every file's path, mode and content, plus the base id.
dir_hash() {
  local dir=$1
  {
    echo "$base_id"
    cd "$dir"
    find . -type f -printf '%m %p\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
  } | sha256sum | cut -c1-16
}

for name in "${wanted[@]}"; do
  dir=$TESTBED/images/$name
  tag=$PREFIX/$name:latest
  hash=$(dir_hash "$dir")
  if [ $force = 0 ] && [ "$(image_hash "$tag")" = "$hash" ]; then
    log "$tag up to date ($hash)"
    continue
  fi
  start=$SECONDS
  replaced=("$(image_id "$tag")" "${replaced[@]}")
  log "building $tag"
  # Keep the build log quiet unless the build fails.
  if ! out=$(docker build --force-rm "${no_cache[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      --label "$HASH_LABEL=$hash" --tag "$tag" "$dir" 2>&1); then
    printf '%s\n' "$out" | tail -n 40 >&2
    die "building $tag failed"
  fi
  log "$tag built in $((SECONDS - start)) s"
done

# Drop the versions replaced (children first, the old base last). Only these exact ids,
# never other untagged images; one still used by a container is kept for a later run.
kept=()
for id in "${replaced[@]}"; do
  [ -n "$id" ] || continue
  docker image inspect "$id" >/dev/null 2>&1 || continue
  # Still tagged (an identical rebuild): removing it by id would drop the tag.
  [ "$(docker image inspect --format '{{len .RepoTags}}' "$id")" = 0 ] || continue
  if ! docker image rm "$id" >/dev/null 2>&1; then
    log "kept old image ${id#sha256:} (still in use; removed by a later run)"
    kept+=("$id")
  fi
done
if [ ${#kept[@]} -gt 0 ]; then printf '%s\n' "${kept[@]}" >"$STALE_FILE"; else rm -f "$STALE_FILE"; fi

docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | { grep "^$PREFIX/" || true; } | sort >&2
