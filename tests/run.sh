#!/usr/bin/env bash
# Installs what the test suite needs (Python packages, Debian's Chromium for the browser tests)
# and runs every test. Usage: bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "chromium is missing and cannot be installed here (needs root and apt-get)" >&2
    exit 1
  fi
fi

# Two workers of one thread each (tests/conftest.py): the suite waits on servers, browsers and
# processes as much as it computes, and one worker per core keeps both cores busy. Together they
# use up to about 15 GB (the whole machine's use at the suite's peak); with less memory available,
# one process runs the suite.
available_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || true)
if [ "${available_kb:-0}" -ge 16000000 ]; then
  exec python3 -m pytest tests -n 2 --dist loadfile "$@"
fi
echo "less than 16 GB of memory available: the tests run in one process"
exec python3 -m pytest tests "$@"
