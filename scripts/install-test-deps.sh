#!/usr/bin/env bash
# Installs the OS tools the tests run, when missing (Debian/Ubuntu, apt-get, as root):
#   prlimit, setpriv (util-linux)  tests/store_disk_faults.rs: a file-size limit on the running
#                                  handler, and the handler as `nobody` when the tests run as root
#   mount, umount (mount)          tests/store_disk_faults.rs: a small tmpfs (mounting needs root)
#   python3                        tests/arm_ui.rs, tests/package_script.rs, scripts/package.sh
#   objdump (binutils)             tests/package_script.rs, scripts/package.sh (glibc baseline)
#   jq                             tests/grant_script.rs (scripts/grant-graph-permissions.sh)
#   chromium                       tests/report_page.rs: the HTML report rendered headless (fails
#                                  without it, CI or not)
# Quiet and quick when everything is there. Not root, or no apt-get: prints what is missing and
# how to get it, and exits 0; a test that needs a missing tool then fails under CI=true and says so.
set -euo pipefail

declare -A package_of=(
  [prlimit]=util-linux
  [setpriv]=util-linux
  [mount]=mount
  [umount]=mount
  [python3]=python3
  [objdump]=binutils
  [jq]=jq
  [chromium]=chromium
)

missing=()
for tool in "${!package_of[@]}"; do
  command -v "${tool}" >/dev/null 2>&1 || missing+=("${package_of[${tool}]}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: missing ${packages[*]}; install them (e.g. apt-get install ${packages[*]}) as root." \
    "Tests that need them fail (the disk-fault cases print SKIPPED instead, unless CI=true)." >&2
  exit 0
fi

echo "install-test-deps: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
