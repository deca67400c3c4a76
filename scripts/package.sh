#!/usr/bin/env bash
# Builds the deliverables into dist/:
#   dist/app.zip               the one Managed Application package that is uploaded (Partner
#                              Center plan, or the service-catalog definition's --package-uri):
#                              mainTemplate.json, createUiDefinition.json, viewDefinition.json and
#                              function-package.zip at the zip root. The template deploys the code
#                              from function-package.zip beside itself (_artifactsLocation).
#   dist/function-package.zip  the same Functions code package, alone: handler (0755), host.json,
#                              function-*/ (for the documented fallback, FUNCTION_PACKAGE_URI)
#   dist/grant-graph-permissions.sh
#                              the post-install step, published with each release beside app.zip
#   dist/install-notifications.zip
#                              the publisher's own install-notification receiver (publisher/):
#                              install-notifications (0755), host.json, its function folder
#
# The binaries are built for glibc 2.17 with cargo-zigbuild (Zig from PyPI), so they run on every
# Functions Linux image whatever glibc it ships; rustup cannot add another target here, and Zig
# brings its own libc headers for any glibc version. Tools are installed only when missing.
#
# Environment:
#   HANDLER_BINARY, RECEIVER_BINARY
#                    package these already-built binaries instead of building them (tests)
#   DIST_DIR         output folder (default: dist)
#   GLIBC_BASELINE   highest glibc symbol version allowed (default 2.17)
#   FUNCTION_PACKAGE_URI
#                    fallback only (docs/deployment.md, "Where the code comes from"): a public
#                    https URL (no query string, so no SAS) where dist/function-package.zip will
#                    be published; written as the default of the template's packageUriOverride
set -euo pipefail
cd "$(dirname "$0")/.."

readonly GLIBC_BASELINE="${GLIBC_BASELINE:-2.17}"
readonly TARGET="x86_64-unknown-linux-gnu.${GLIBC_BASELINE}"
readonly ZIGLANG_VERSION="0.17.1"
readonly CARGO_ZIGBUILD_VERSION="0.24.1"
readonly DIST_DIR="${DIST_DIR:-dist}"

say() { printf 'package: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

install_tools() {
  if ! python3 -c 'import ziglang' 2>/dev/null; then
    say "installing ziglang==${ZIGLANG_VERSION} from PyPI"
    python3 -m pip install --quiet "ziglang==${ZIGLANG_VERSION}" || die "pip could not install ziglang"
  fi
  if ! cargo zigbuild --help >/dev/null 2>&1; then
    say "installing cargo-zigbuild ${CARGO_ZIGBUILD_VERSION} from crates.io"
    cargo install --locked --quiet cargo-zigbuild --version "${CARGO_ZIGBUILD_VERSION}" \
      || die "cargo could not install cargo-zigbuild"
  fi
}

build_binaries() {
  install_tools
  say "building handler and install-notifications for ${TARGET}"
  cargo zigbuild --release --locked --bin handler --bin install-notifications --target "${TARGET}" >&2 \
    || die "cargo zigbuild failed for ${TARGET}"
  HANDLER_BINARY="target/x86_64-unknown-linux-gnu/release/handler"
  RECEIVER_BINARY="target/x86_64-unknown-linux-gnu/release/install-notifications"
}

# The highest GLIBC_x.y symbol version the binary needs, or "none" for a static binary.
glibc_needed() {
  command -v objdump >/dev/null 2>&1 || die "objdump (binutils) is needed to check the glibc baseline"
  local found
  found="$(objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)"
  echo "${found:-none}"
}

check_glibc() {
  local needed="$1"
  [ "${needed}" = "none" ] && return 0
  local highest
  highest="$(printf '%s\n%s\n' "${needed#GLIBC_}" "${GLIBC_BASELINE}" | sort -V | tail -1)"
  [ "${highest}" = "${GLIBC_BASELINE}" ] \
    || die "handler needs ${needed}, newer than the baseline GLIBC_${GLIBC_BASELINE}"
}

# Writes a zip with fixed timestamps (the same inputs give the same bytes) and explicit modes:
# Premium and Dedicated plans do not add the execute bit, so it must travel in the zip.
# Arguments: ZIP then pairs of SOURCE ARCHIVE-NAME; a name ending in "*" marks it executable.
write_zip() {
  python3 - "$@" <<'PY'
import sys, zipfile
out, pairs = sys.argv[1], sys.argv[2:]
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for source, name in zip(pairs[0::2], pairs[1::2]):
        mode = 0o755 if name.endswith("*") else 0o644
        info = zipfile.ZipInfo(name.rstrip("*"), date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3  # Unix, so the mode bits below are honoured on extraction
        info.external_attr = (0o100000 | mode) << 16
        with open(source, "rb") as f:
            z.writestr(info, f.read())
PY
}

# The template to ship: the repository's, with the fallback package URL as the default of
# packageUriOverride when FUNCTION_PACKAGE_URI is given.
main_template() {
  local out="$1"
  if [ -z "${FUNCTION_PACKAGE_URI:-}" ]; then
    cp arm/mainTemplate.json "${out}"
    return
  fi
  python3 - "${FUNCTION_PACKAGE_URI}" arm/mainTemplate.json "${out}" <<'PY'
import json, sys
uri, source, out = sys.argv[1:]
template = json.load(open(source))
if "packageUriOverride" not in template["parameters"]:
    sys.exit("package: error: mainTemplate.json has no packageUriOverride parameter")
template["parameters"]["packageUriOverride"]["defaultValue"] = uri
json.dump(template, open(out, "w"), indent=2)
PY
}

main() {
  if [ -n "${FUNCTION_PACKAGE_URI:-}" ] && ! [[ "${FUNCTION_PACKAGE_URI}" =~ ^https://[^[:space:]?#]+$ ]]; then
    die "FUNCTION_PACKAGE_URI ${FUNCTION_PACKAGE_URI@Q} is not an https:// URL without spaces or query string (a SAS would be readable in every customer's deployment)"
  fi
  if [ -z "${HANDLER_BINARY:-}" ] || [ -z "${RECEIVER_BINARY:-}" ]; then
    build_binaries
  fi
  local binary needed
  for binary in "${HANDLER_BINARY}" "${RECEIVER_BINARY}"; do
    [ -f "${binary}" ] || die "no binary at ${binary}"
    needed="$(glibc_needed "${binary}")"
    check_glibc "${needed}"
  done
  needed="$(glibc_needed "${HANDLER_BINARY}")"

  local functions=()
  local dir
  shopt -s nullglob
  for dir in function-*/; do
    dir="${dir%/}"
    [ -f "${dir}/function.json" ] || die "${dir}/ has no function.json"
    functions+=("${dir}/function.json" "${dir}/function.json")
  done
  [ "${#functions[@]}" -gt 0 ] || die "no function-*/function.json folders found"
  local receiver=()
  for dir in publisher/function-*/; do
    dir="${dir%/}"
    [ -f "${dir}/function.json" ] || die "${dir}/ has no function.json"
    receiver+=("${dir}/function.json" "${dir#publisher/}/function.json")
  done
  [ "${#receiver[@]}" -gt 0 ] || die "no publisher/function-*/function.json folders found"
  [ -f host.json ] || die "host.json is missing"
  [ -f publisher/host.json ] || die "publisher/host.json is missing"
  for f in mainTemplate.json createUiDefinition.json viewDefinition.json; do
    [ -f "arm/${f}" ] || die "arm/${f} is missing"
  done

  mkdir -p "${DIST_DIR}"
  rm -f "${DIST_DIR}/function-package.zip" "${DIST_DIR}/app.zip" "${DIST_DIR}/grant-graph-permissions.sh" \
    "${DIST_DIR}/install-notifications.zip"
  write_zip "${DIST_DIR}/function-package.zip" \
    "${HANDLER_BINARY}" "handler*" host.json host.json "${functions[@]}"
  local template
  template="$(mktemp)"
  main_template "${template}"
  write_zip "${DIST_DIR}/app.zip" \
    "${template}" mainTemplate.json \
    arm/createUiDefinition.json createUiDefinition.json \
    arm/viewDefinition.json viewDefinition.json \
    "${DIST_DIR}/function-package.zip" function-package.zip
  rm -f "${template}"
  write_zip "${DIST_DIR}/install-notifications.zip" \
    "${RECEIVER_BINARY}" "install-notifications*" publisher/host.json host.json "${receiver[@]}"
  install -m 0755 scripts/grant-graph-permissions.sh "${DIST_DIR}/grant-graph-permissions.sh"

  say "handler: $(stat -c %s "${HANDLER_BINARY}") bytes, highest glibc symbol ${needed}"
  say "${DIST_DIR}/function-package.zip: $(stat -c %s "${DIST_DIR}/function-package.zip") bytes"
  say "${DIST_DIR}/app.zip: $(stat -c %s "${DIST_DIR}/app.zip") bytes (holds function-package.zip)"
  say "${DIST_DIR}/install-notifications.zip: $(stat -c %s "${DIST_DIR}/install-notifications.zip") bytes"
}

main "$@"
