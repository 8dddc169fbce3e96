#!/bin/sh
# Installs what a fresh machine (Node, npm, apt, root) lacks: the Debian
# nats-server package and the npm dependencies. Quick no-op when both are there.
set -e
cd "$(dirname "$0")/.."
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "setup: installing nats-server (Debian package)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  # Not `npm ci`: the registry here lacks some platform builds that bullmq's optional
  # msgpackr-extract names, so the lock cannot list them and ci refuses it; install keeps to the lock.
  npm install --no-audit --no-fund
fi
