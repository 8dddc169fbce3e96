#!/bin/sh
# Installs what a fresh machine (Node, npm, apt, root) lacks: the Debian
# nats-server and chromium packages (the dashboard's browser tests drive
# /usr/bin/chromium; never a downloaded browser), iproute2 (the cluster
# tests put nodes in network namespaces with `ip netns`) and the npm
# dependencies.
# Quick no-op when all are there.
set -e
cd "$(dirname "$0")/.."
MISSING=""
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then MISSING="nats-server"; fi
if [ ! -x /usr/bin/chromium ]; then MISSING="$MISSING chromium"; fi
if ! command -v ip >/dev/null 2>&1 && [ ! -x /usr/sbin/ip ] && [ ! -x /sbin/ip ]; then MISSING="$MISSING iproute2"; fi
if [ -n "$MISSING" ]; then
  echo "setup: installing$MISSING (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  # Not `npm ci`: the registry here lacks some platform builds that bullmq's optional
  # msgpackr-extract names, so the lock cannot list them and ci refuses it; install keeps to the lock.
  npm install --no-audit --no-fund
fi
