#!/usr/bin/env bash
# Debian packages that Qt, OpenGL and a virtual X server (Xvfb) need to run napari headless
# (see README.md and tests/test_widgets.py), and with NAPARI_ZONATION_LLAMA=1 what building
# llama.cpp's llama-server needs (scripts/llama-server.sh). Installs only what is missing;
# needs root or sudo.
set -euo pipefail
pkgs=(xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3
      libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0
      libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0
      libxcb-xinerama0 libxcb-xkb1)
python3 -c "import ensurepip, venv" 2>/dev/null || pkgs+=(python3-venv python3-pip)
[ "${NAPARI_ZONATION_LLAMA:-0}" = 1 ] && pkgs+=(cmake g++ make)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to apt-get install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
