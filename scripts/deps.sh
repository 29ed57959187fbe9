#!/usr/bin/env bash
# Installs what Sky needs on a fresh Debian machine: Debian packages from scripts/debian-packages.txt, npm
# packages, and the compiled JS. Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
  pkg=${pkg%%#*}; pkg=${pkg//[[:space:]]/}
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/debian-packages.txt

if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "[deps] error: installing packages needs root (run as root or install: ${missing[*]})" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/sky-apt.log 2>&1 || { tail -30 /tmp/sky-apt.log >&2; exit 1; }
fi

if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "[deps] installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error 2>&1 | grep -v "install-scripts" || true
fi

# tracefs makes syscall tracepoints available to bpftrace; harmless if already mounted or impossible.
if [ ! -d /sys/kernel/tracing/events ] && [ "$(id -u)" -eq 0 ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
fi

echo "[deps] building"
npx tsc -p tsconfig.json
