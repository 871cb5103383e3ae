#!/usr/bin/env bash
# Entrypoint of the official adminer image: ADMINER_DESIGN picks a CSS theme (on the first
# start only, so later edits survive), ADMINER_PLUGINS enables plugins; then exec the CMD.
set -euo pipefail
cd /var/www/html

if [ -n "${ADMINER_DESIGN:-}" ] && [ ! -e .adminer-init ]; then
  ln -sf "designs/$ADMINER_DESIGN/adminer.css" .
fi

number=1
for plugin in ${ADMINER_PLUGINS:-}; do
  # Write then rename, so a failing plugin leaves no empty file behind.
  file=plugins-enabled/$(printf '%03d' "$number")-$plugin.php
  php plugin-loader.php "$plugin" >"$file.tmp"
  mv "$file.tmp" "$file"
  number=$((number + 1))
done

touch .adminer-init 2>/dev/null || true
exec "$@"
