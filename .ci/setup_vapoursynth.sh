#!/usr/bin/env bash
# Builds the Python 3.12 environment the VapourSynth front is tested in (VapourSynth's wheel needs Python >= 3.12)
# and prints its interpreter's path on the last line. Idempotent: steps already done are skipped.
#   bash .ci/setup_vapoursynth.sh            # -> /path/to/repo/.venv312/bin/python
# VENV (default .venv312 in the repository) and PYTHON312 (a python3.12 to build it with; default: pyenv's, else
# python3.12 on PATH) may be set. Everything but the final path goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-$REPO/.venv312}
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"

find_python312() {
    if [ -n "${PYTHON312:-}" ]; then echo "$PYTHON312"; return; fi
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")   # pyenv's folder, also when not on PATH
    for candidate in "$root"/versions/3.12*/bin/python3.12; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    if command -v python3.12 >/dev/null 2>&1 && python3.12 -c '' 2>/dev/null; then command -v python3.12; return; fi
    echo "error: no Python 3.12 found (VapourSynth's wheel needs it): install one, or set PYTHON312" >&2
    exit 2
}

{
    if [ ! -x "$VENV/bin/python" ]; then
        "$(find_python312)" -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
    if ! "$PY" -c 'from importlib.metadata import version as v; import sys
sys.exit(v("torch").split("+")[0] != "2.14.1" or v("torchvision").split("+")[0] != "0.29.1")' 2>/dev/null; then
        "$PY" -m pip install -q $TORCH_PINS
    fi
    # The project with the vapoursynth and test extras (editable, so the tests see this working tree).
    if ! "$PY" -I -c 'import importlib.util as u, os, sys
found = [u.find_spec(name) for name in ("vapoursynth", "pytest", "av", "core")]
sys.exit(None in found or os.path.dirname(os.path.dirname(found[-1].origin)) != sys.argv[1])' "$REPO" 2>/dev/null; then
        "$PY" -m pip install -q -e "$REPO[vapoursynth,test]"
    fi
    # vspipe finds the core library and Python through this file (one per Python; ~/.config/vapoursynth).
    if ! "$VENV/bin/vspipe" --version >/dev/null 2>&1; then
        "$VENV/bin/vapoursynth" config
    fi
    "$VENV/bin/vspipe" --version | head -1
} >&2
echo "$VENV/bin/python"
