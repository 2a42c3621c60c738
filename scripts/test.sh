#!/usr/bin/env bash
# Set up what a fresh machine lacks (Chromium, the virtual environment), lint, run the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k imaging`. `--fast` first skips the tests
# marked slow (servers, browser, wheel build, the shipped models): the edit-test loop, not CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/ruff check .
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -m "not slow" "$@"
fi
exec .venv/bin/python -m pytest "$@"
