#!/usr/bin/env bash
# Installs what Ferry's demo and tests need when it is missing: redis-server and redis-cli
# (Debian/Ubuntu through apt-get). Elsewhere it says what to install and fails.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v go >/dev/null 2>&1; then
  echo "ensure-deps: Go is not installed; install Go 1.24 or newer from https://go.dev/dl/" >&2
  exit 1
fi

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "ensure-deps: need root to install ${need[*]}: run 'apt-get install -y redis-server redis-tools' as root" >&2
      exit 1
    fi
  fi
  echo "ensure-deps: installing redis-server and redis-tools with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package's service is not used (tests start their own servers on free ports); tell
  # invoke-rc.d not to start it where that is possible.
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
  exit 0
fi

echo "ensure-deps: redis-server is missing and this is not a Debian/Ubuntu system." >&2
echo "Install Redis 7.x (redis-server, redis-cli, redis-benchmark) with your package manager," >&2
echo "e.g. 'brew install redis' on macOS or 'dnf install redis' on Fedora, then run make again." >&2
exit 1
