#!/usr/bin/env bash
# What the web app's browser test (tests/test_app.py) needs: Debian's headless Chromium and Playwright (Python).
# Playwright's own browser download is not used (not reachable here): the test launches /usr/bin/chromium.
# Run as root inside the project's virtual environment (.ci/run activates .venv first).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium
fi
python -m pip install -q "playwright>=1.40"
/usr/bin/chromium --version 2>/dev/null
python -c "from importlib.metadata import version; import playwright.sync_api; print('playwright', version('playwright'))"
