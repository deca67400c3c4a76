#!/usr/bin/env bash
# Builds the two deliverables into dist/:
#   dist/function-package.zip  the Functions code package: handler (0755), host.json, function-*/
#   dist/app.zip               the Managed Application package: mainTemplate.json,
#                              createUiDefinition.json, viewDefinition.json at the zip root
#   dist/grant-graph-permissions.sh
#                              the post-install step, published beside function-package.zip:
#                              the installed application's overview tells the admin to fetch it
#                              from there
#
# The binary is built for glibc 2.17 with cargo-zigbuild (Zig from PyPI), so it runs on every
# Functions Linux image whatever glibc it ships; rustup cannot add another target here, and Zig
# brings its own libc headers for any glibc version. Tools are installed only when missing.
#
# Environment:
#   HANDLER_BINARY   package this already-built binary instead of building one (tests use it)
#   DIST_DIR         output folder (default: dist)
#   GLIBC_BASELINE   highest glibc symbol version allowed (default 2.17)
#   PACKAGE_URI      https URL where function-package.zip will be published; written into the
#                    form's "Code package URL" default so the installing admin need not type it
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

build_handler() {
  install_tools
  say "building handler for ${TARGET}"
  cargo zigbuild --release --locked --bin handler --target "${TARGET}" >&2 \
    || die "cargo zigbuild failed for ${TARGET}"
  HANDLER_BINARY="target/x86_64-unknown-linux-gnu/release/handler"
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

# The form to ship: the repository's, with the package URL as the field's default when given.
ui_definition() {
  local out="$1"
  if [ -z "${PACKAGE_URI:-}" ]; then
    cp arm/createUiDefinition.json "${out}"
    return
  fi
  python3 - "${PACKAGE_URI}" arm/createUiDefinition.json "${out}" <<'PY'
import json, sys
uri, source, out = sys.argv[1:]
ui = json.load(open(source))
fields = [e for s in ui["parameters"]["steps"] for e in s["elements"] if e["name"] == "packageUri"]
if len(fields) != 1:
    sys.exit("package: error: createUiDefinition.json has no single packageUri field")
fields[0]["defaultValue"] = uri
json.dump(ui, open(out, "w"), indent=2)
PY
}

main() {
  if [ -n "${PACKAGE_URI:-}" ] && ! [[ "${PACKAGE_URI}" =~ ^https://[^[:space:]]+$ ]]; then
    die "PACKAGE_URI ${PACKAGE_URI@Q} is not an https:// URL without spaces"
  fi
  if [ -z "${HANDLER_BINARY:-}" ]; then
    build_handler
  fi
  [ -f "${HANDLER_BINARY}" ] || die "no handler binary at ${HANDLER_BINARY}"
  local needed
  needed="$(glibc_needed "${HANDLER_BINARY}")"
  check_glibc "${needed}"

  local functions=()
  local dir
  shopt -s nullglob
  for dir in function-*/; do
    dir="${dir%/}"
    [ -f "${dir}/function.json" ] || die "${dir}/ has no function.json"
    functions+=("${dir}/function.json" "${dir}/function.json")
  done
  [ "${#functions[@]}" -gt 0 ] || die "no function-*/function.json folders found"
  [ -f host.json ] || die "host.json is missing"
  for f in mainTemplate.json createUiDefinition.json viewDefinition.json; do
    [ -f "arm/${f}" ] || die "arm/${f} is missing"
  done

  mkdir -p "${DIST_DIR}"
  rm -f "${DIST_DIR}/function-package.zip" "${DIST_DIR}/app.zip" "${DIST_DIR}/grant-graph-permissions.sh"
  write_zip "${DIST_DIR}/function-package.zip" \
    "${HANDLER_BINARY}" "handler*" host.json host.json "${functions[@]}"
  local ui
  ui="$(mktemp)"
  ui_definition "${ui}"
  write_zip "${DIST_DIR}/app.zip" \
    arm/mainTemplate.json mainTemplate.json \
    "${ui}" createUiDefinition.json \
    arm/viewDefinition.json viewDefinition.json
  rm -f "${ui}"
  install -m 0755 scripts/grant-graph-permissions.sh "${DIST_DIR}/grant-graph-permissions.sh"

  say "handler: $(stat -c %s "${HANDLER_BINARY}") bytes, highest glibc symbol ${needed}"
  say "${DIST_DIR}/function-package.zip: $(stat -c %s "${DIST_DIR}/function-package.zip") bytes"
  say "${DIST_DIR}/app.zip: $(stat -c %s "${DIST_DIR}/app.zip") bytes"
}

main "$@"
