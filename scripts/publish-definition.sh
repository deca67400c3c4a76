#!/usr/bin/env bash
# Publishes Teams Presence as a service-catalog Managed Application definition with the offer's
# access model (arm/publishing/access-model.json): the publisher's group gets Reader only, the
# managed resource group is locked read-only except the customer's allowed actions and the data
# actions the app's own identity needs, and lifecycle events go to the install-notification
# receiver (publisher/), authenticated by a `sig` token in its URL.
#
# `az managedapp definition create` sets only the lock level, authorizations and package; it has
# no option for the locking policy or the notification endpoint (azure-cli,
# command_modules/resource/custom.py). So the definition is PUT as one resource, everything at
# once, through `az rest` (Microsoft.Solutions/applicationDefinitions, api-version 2021-07-01):
# no moment exists in which customers could install it without its locking policy.
#
# Needs: the az CLI, signed in with rights to create the definition in the resource group; jq.
#
# Usage:
#   publish-definition.sh --resource-group <group> --name <definition> --location <region>
#       --package-uri <https URL of app.zip> --publisher-principal-id <object id of the support group>
#       [--notification-uri <https URL of the receiver, without query>] [--app-version <x.y.z>]
#       [--display-name <text>] [--description <text>]
# Environment:
#   NOTIFICATION_SIG  the receiver's token (required with --notification-uri); read from the
#                     environment so it never shows in a process list or a shell history
#   ARM_URL           Resource Manager endpoint (default https://management.azure.com)
#   ACCESS_MODEL      the access model file (default arm/publishing/access-model.json)
set -euo pipefail
cd "$(dirname "$0")/.."

readonly API_VERSION="2021-07-01"
readonly ARM_URL="${ARM_URL:-https://management.azure.com}"
readonly ACCESS_MODEL="${ACCESS_MODEL:-arm/publishing/access-model.json}"
readonly GUID_RE='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
# Definition names: letters, digits, '-', '_', '.', up to 64 characters.
readonly NAME_RE='^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
readonly SIG_RE='^[A-Za-z0-9_-]{32,128}$'

say() { printf 'publish: %s\n' "$*"; }
die() { printf 'publish: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n 's/^#   //p' "$0" >&2
  exit 2
}

az_do() {
  local what="$1"
  shift
  local out err status=0
  err="$(mktemp)"
  out="$(az "$@" 2>"${err}")" || status=$?
  if [ "${status}" -ne 0 ]; then
    local message
    message="$(tr '\n' ' ' <"${err}")"
    rm -f "${err}"
    die "${what} failed (az exited ${status}): ${message:-no message}"
  fi
  rm -f "${err}"
  printf '%s' "${out}"
}

resource_group="" name="" location="" package_uri="" principal="" notification_uri=""
# A service-catalog notification names no version: the endpoint URL carries it to the receiver.
app_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
display_name="Teams Presence"
description="Teams presence history for Entra ID groups"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --resource-group) resource_group="${2:-}"; shift 2 || usage ;;
    --name) name="${2:-}"; shift 2 || usage ;;
    --location) location="${2:-}"; shift 2 || usage ;;
    --package-uri) package_uri="${2:-}"; shift 2 || usage ;;
    --publisher-principal-id) principal="${2:-}"; shift 2 || usage ;;
    --notification-uri) notification_uri="${2:-}"; shift 2 || usage ;;
    --app-version) app_version="${2:-}"; shift 2 || usage ;;
    --display-name) display_name="${2:-}"; shift 2 || usage ;;
    --description) description="${2:-}"; shift 2 || usage ;;
    -h|--help) usage ;;
    *) printf 'publish: error: unknown argument %q\n' "$1" >&2; usage ;;
  esac
done

problems=()
[ -n "${resource_group}" ] || problems+=("--resource-group is missing")
[[ "${name}" =~ ${NAME_RE} ]] || problems+=("--name ${name@Q} is not a definition name (letters, digits, . _ -, up to 64)")
[ -n "${location}" ] || problems+=("--location is missing (for example westeurope)")
[[ "${package_uri}" =~ ^https://[^[:space:]]+/app\.zip(\?[^[:space:]]*)?$ ]] \
  || problems+=("--package-uri ${package_uri@Q} is not an https:// URL of app.zip")
[[ "${principal}" =~ ${GUID_RE} ]] \
  || problems+=("--publisher-principal-id ${principal@Q} is not an object id (GUID)")
if [ -n "${notification_uri}" ]; then
  [[ "${notification_uri}" =~ ^https://[^[:space:]?#]+$ ]] \
    || problems+=("--notification-uri ${notification_uri@Q} is not an https:// URL without query (the sig is added here)")
  [[ "${NOTIFICATION_SIG:-}" =~ ${SIG_RE} ]] \
    || problems+=("NOTIFICATION_SIG must hold the receiver's token: 32 to 128 letters, digits, - or _")
fi
[[ "${app_version}" =~ ^[A-Za-z0-9._-]{1,50}$ ]] || problems+=("--app-version ${app_version@Q} is not a version such as 1.2.0")
[ -f "${ACCESS_MODEL}" ] || problems+=("no access model at ${ACCESS_MODEL}")
command -v jq >/dev/null 2>&1 || problems+=("jq is needed")
if [ "${#problems[@]}" -gt 0 ]; then
  for p in "${problems[@]}"; do printf 'publish: error: %s\n' "${p}" >&2; done
  exit 2
fi

# The access model must keep the policy's promise before it is published.
jq -e '[.publisherAuthorizations[] | select(.access == "permanent") | .roleDefinitionId] == ["acdd72a7-3385-48ef-bd42-f606fba81ae7"]' \
  "${ACCESS_MODEL}" >/dev/null \
  || die "${ACCESS_MODEL}: the publisher's only permanent authorization must be Reader (acdd72a7-3385-48ef-bd42-f606fba81ae7)"

subscription="$(az_do "reading the signed-in subscription" account show --query id --output tsv)"
[[ "${subscription}" =~ ${GUID_RE} ]] || die "az account show gave no subscription id (${subscription@Q})"

body="$(mktemp)"
trap 'rm -f "${body}"' EXIT
chmod 600 "${body}"
jq -n \
  --slurpfile model "${ACCESS_MODEL}" \
  --arg location "${location}" --arg displayName "${display_name}" --arg description "${description}" \
  --arg package "${package_uri}" --arg principal "${principal}" \
  --arg notification "${notification_uri}" --arg sig "${NOTIFICATION_SIG:-}" --arg version "${app_version}" '
  $model[0] as $m
  | {
      location: $location,
      properties: ({
        lockLevel: $m.lockLevel,
        displayName: $displayName,
        description: $description,
        isEnabled: true,
        packageFileUri: $package,
        deploymentPolicy: { deploymentMode: "Incremental" },
        authorizations: [ $m.publisherAuthorizations[] | { principalId: $principal, roleDefinitionId: .roleDefinitionId } ],
        lockingPolicy: {
          allowedActions: [ $m.lockingPolicy.allowedActions[].action ],
          allowedDataActions: [ $m.lockingPolicy.allowedDataActions[].action ]
        }
      } + (if $notification == "" then {} else
            { notificationPolicy: { notificationEndpoints: [ { uri: ($notification + "?sig=" + $sig + "&version=" + $version) } ] } } end))
    }' >"${body}"

url="${ARM_URL}/subscriptions/${subscription}/resourceGroups/${resource_group}/providers/Microsoft.Solutions/applicationDefinitions/${name}?api-version=${API_VERSION}"
result="$(az_do "creating the definition ${name}" rest --method PUT --url "${url}" --body "@${body}")"
id="$(printf '%s' "${result}" | jq -r '.id // empty')"
[ -n "${id}" ] || die "the definition was not created: the answer has no id"

say "definition ${id}"
say "lock ReadOnly; publisher ${principal}: Reader only (acdd72a7-3385-48ef-bd42-f606fba81ae7)"
say "customer allowed actions: $(jq -r '[.lockingPolicy.allowedActions[].action] | join(", ")' "${ACCESS_MODEL}")"
say "allowed data actions (the app's identity): $(jq -r '[.lockingPolicy.allowedDataActions[].action] | join(", ")' "${ACCESS_MODEL}")"
if [ -n "${notification_uri}" ]; then
  say "notifications to ${notification_uri}?sig=<NOTIFICATION_SIG>&version=${app_version}"
else
  say "no notification endpoint: installs are not counted"
fi
