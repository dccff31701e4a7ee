#!/usr/bin/env bash
# What the optional fronts' tests need, so that the test command runs them (UPR_REQUIRE_FRONTS=1 makes a missing
# piece a failure, not a skip): Debian's Chromium and Playwright for the web app (.ci/setup_browser.sh, apt-get
# needs root) and the Python 3.12 environment .venv312 with VapourSynth (.ci/setup_vapoursynth.sh).
# Run inside the project's virtual environment. Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup_browser.sh
bash .ci/setup_vapoursynth.sh >/dev/null
echo "fronts ready: /usr/bin/chromium, playwright, .venv312 (VapourSynth)"
