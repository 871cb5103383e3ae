#!/usr/bin/env bash
# The real dev servers the host-app tests and bench run under devenv: Vite (the web
# frontend) and Metro (the React Native bundler) in testbed/devservers/, and Expo's CLI
# (SDK 52, with React Native: about 860 packages, 320 MB) in testbed/devservers/expo/,
# installed from the npm registry once (gitignored); later runs find them there and stay
# offline. Node and npm come from Debian when the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="testbed/devservers"
# bump when the pinned versions below change, so a cached tree is replaced
stamp="vite@5.4.11 metro@0.81.0 metro-config@0.81.0"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-devservers: installing Debian's nodejs and npm" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

install_expo() {
  local expo="$dir/expo" expo_stamp="expo@52.0.49 expo-asset@11.0.5 react@18.3.1 react-native@0.76.9"
  if [ -f "$expo/.stamp" ] && [ "$(cat "$expo/.stamp")" = "$expo_stamp" ] \
      && [ -x "$expo/node_modules/.bin/expo" ]; then
    return 0
  fi
  mkdir -p "$expo"
  cat > "$expo/package.json" <<'JSON'
{
  "name": "devenv-devservers-expo",
  "private": true,
  "description": "Expo's CLI for devenv's host-app tests (scripts/install-devservers.sh)",
  "dependencies": {
    "expo": "52.0.49",
    "expo-asset": "11.0.5",
    "react": "18.3.1",
    "react-native": "0.76.9"
  }
}
JSON
  local started
  started=$(date +%s)
  (cd "$expo" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$expo_stamp" > "$expo/.stamp"
  echo "install-devservers: expo installed in $(( $(date +%s) - started )) s" >&2
}

if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] \
    && [ -x "$dir/node_modules/.bin/vite" ] && [ -x "$dir/node_modules/.bin/metro" ]; then
  install_expo
  exit 0
fi

mkdir -p "$dir"
cat > "$dir/package.json" <<'JSON'
{
  "name": "devenv-devservers",
  "private": true,
  "description": "Dev servers for devenv's host-app tests (scripts/install-devservers.sh)",
  "devDependencies": {
    "vite": "5.4.11",
    "metro": "0.81.0",
    "metro-config": "0.81.0"
  }
}
JSON
started=$(date +%s)
(cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
echo "$stamp" > "$dir/.stamp"
echo "install-devservers: vite and metro installed in $(( $(date +%s) - started )) s" >&2
install_expo
