# shellcheck shell=bash
# debian_mirror [APT_DIR]: print the Debian archive address this machine's apt already uses
# (a company mirror or proxy included), read from APT_DIR/sources.list and
# APT_DIR/sources.list.d/*.list (one-line format) and *.sources (deb822 `URIs:`).
# Only enabled `deb` entries for a Debian suite count; security archives and
# non-http(s)/file transports are skipped. Prints nothing (status 1) when none is found.
# Sourced by scripts/install-docker.sh and scripts/build-test-images.sh.

debian_mirror() {
  local dir=${1:-/etc/apt} files=() f
  [ -f "$dir/sources.list" ] && files+=("$dir/sources.list")
  for f in "$dir"/sources.list.d/*.list "$dir"/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 1
  local found
  found=$(awk '
    function debian_suite(s) {
      sub(/-(updates|backports|proposed-updates)$/, "", s)
      return s ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|stable|testing|unstable|oldstable|oldoldstable)$/
    }
    function usable(uri) {
      return uri ~ /^(https?|file):/ && uri !~ /security/
    }
    function consider(uri, suites,    n, i, s) {
      if (done || !usable(uri)) return
      n = split(suites, s, /[ \t]+/)
      for (i = 1; i <= n; i++) if (debian_suite(s[i])) { print uri; done = 1; return }
    }
    function set(key, value) {
      if (key == "types") types = value
      else if (key == "uris") uris = value
      else if (key == "suites") suites = value
      else if (key == "enabled") enabled = tolower(value)
    }
    function get(key) {
      return key == "types" ? types : key == "uris" ? uris : key == "suites" ? suites : enabled
    }
    function flush() {
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
        n = split(uris, u, /[ \t]+/)
        for (j = 1; j <= n; j++) if (u[j] != "") consider(u[j], suites)
      }
      types = ""; uris = ""; suites = ""; enabled = ""; last = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*#/) next
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      value = $0; sub(/[ \t]+$/, "", value)
      if ($0 ~ /^[ \t]/) {  # a continuation line
        if (last != "") { sub(/^[ \t]+/, "", value); set(last, get(last) " " value) }
        next
      }
      key = tolower($0); sub(/:.*/, "", key)
      sub(/^[^:]*:[ \t]*/, "", value)
      set(key, value); last = key
      next
    }
    {
      line = $0
      sub(/#.*/, "", line)
      gsub(/\[[^]]*\]/, "", line)
      n = split(line, w, /[ \t]+/)
      k = 1
      if (w[k] == "") k++
      if (w[k] != "deb") next
      consider(w[k + 1], w[k + 2])
    }
    END { if (!done) flush() }
  ' "${files[@]}")
  [ -n "$found" ] || return 1
  printf '%s\n' "${found%/}"
}
