#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for the dashboard's
# real-browser tests (tests/e2e/test_dashboard_browser.py drives them with selenium). Nothing
# downloads a browser build: selenium is given /usr/bin/chromium and /usr/bin/chromedriver.
# Idempotent: installs only what is missing.
set -euo pipefail

log() { printf 'install-browser: %s\n' "$*" >&2; }

# certutil (libnss3-tools): the HTTPS test puts devenv's CA into a throwaway NSS database
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
    && command -v certutil >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "needs root to install chromium and chromium-driver (run with sudo)"; exit 1
fi
log "installing chromium, chromium-driver and libnss3-tools"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver libnss3-tools \
  fonts-dejavu-core \
  >/dev/null
