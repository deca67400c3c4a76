#!/usr/bin/env bash
# Installs Debian's `chromium` (and a font for its text) when it is missing: the report page test
# (tests/report_page.rs) renders the HTML report headless and screenshots it. Idempotent: does
# nothing when `chromium` is already on PATH. Needs root (CI runs as root on Debian) or sudo.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium.sh: chromium is missing and apt-get is not available: install Chromium with this system's package manager" >&2
  exit 1
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "install-chromium.sh: chromium is missing and this is not root (no sudo): run 'apt-get install chromium fonts-dejavu-core' as root" >&2
    exit 1
  fi
fi
echo "install-chromium.sh: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
echo "install-chromium.sh: $(chromium --version 2>/dev/null || echo chromium installed)" >&2
