#!/usr/bin/env bash
# The README's test command (`npm test`). Installs what the tests need on a fresh Debian machine (scripts/deps.sh:
# Debian packages, npm packages, build), makes sure tracefs is mounted for the tracer tests, then runs every test
# under test/ with vitest and exits with its code. Extra arguments go to vitest (e.g. `npm test -- test/unit`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

# The eBPF tracer attaches to syscall tracepoints under tracefs; mount it when the kernel has not.
if [ "$(id -u)" -eq 0 ] && [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null \
    || echo "[test] warning: could not mount tracefs; eBPF tracer tests may be skipped or fail" >&2
fi

exec npx vitest run "${@:-test}"
