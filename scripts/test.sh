#!/usr/bin/env bash
# The test command (README and .ci/run): from a fresh Debian machine, install Docker and
# Compose v2, start dockerd, build the offline test images, install devenv as a wheel
# (not editable: the wheel must carry the templates) and run every test, real-Docker
# ones included (the dashboard's in headless Chromium: scripts/install-browser.sh), after
# the architecture contract (lint-imports).
# A missing daemon fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
bash scripts/install-docker.sh
bash scripts/build-test-images.sh
bash scripts/install-browser.sh
bash scripts/install-devservers.sh  # Vite and Metro for the host-app tests (npm, cached)

venv="${DEVENV_TEST_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check ".[test]"
echo "test.sh: bootstrap took $(( $(date +%s) - started )) s" >&2

# The architecture contract (pyproject.toml, [tool.importlinter]): no import cycle, no
# package importing one above it. It reads the source, so it runs before the slow tests.
"$venv/bin/lint-imports" --no-cache  # the source tree: it runs from the project root
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" -m pytest "$@"
