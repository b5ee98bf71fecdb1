#!/usr/bin/env bash
# The browser test (tests/e2e/test_browser_ui.py) drives Debian's headless Chromium. Installs it
# with apt-get when it is missing and this user can (root, Debian); otherwise says how, and the
# browser test skips — unless HEADRACE_REQUIRE_BROWSER=1 (CI sets it), which makes it fail.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the browser test (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null; }
  command -v chromium >/dev/null 2>&1 && exit 0
fi
echo "headrace: chromium not installed (Debian: sudo apt-get install chromium); the browser test will skip" >&2
if [ "${HEADRACE_REQUIRE_BROWSER:-0}" = "1" ]; then
  exit 1
fi
