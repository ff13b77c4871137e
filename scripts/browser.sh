#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test (tests/orchestration/test_orchestration_ui.py)
# if it is missing. Needs root and the Debian mirror; Playwright's own browser download is not
# used (it cannot reach its CDN from CI).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
