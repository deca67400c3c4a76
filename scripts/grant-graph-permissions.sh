#!/usr/bin/env bash
# The one post-install step of Teams Presence: grants the Function App's managed identity the
# Microsoft Graph application permissions it needs (Presence.Read.All, GroupMember.Read.All).
#
# A managed identity has no app registration, so its Graph permissions are app role assignments
# on its service principal; ARM templates cannot create them. The role ids are looked up by value
# in the tenant's Microsoft Graph service principal, never hard-coded. Safe to run again: a role
# already granted is left alone.
#
# Needs: the az CLI, signed in (`az login`) as a Global Administrator or Privileged Role
# Administrator (or with AppRoleAssignment.ReadWrite.All + Application.Read.All), and jq.
#
# Usage:
#   grant-graph-permissions.sh --principal-id <object id>
#   grant-graph-permissions.sh --function-app <name> --resource-group <managed resource group>
# Environment: GRAPH_URL (default https://graph.microsoft.com) for national clouds.
set -euo pipefail

readonly GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
readonly ROLES=("Presence.Read.All" "GroupMember.Read.All")
readonly GRAPH_URL="${GRAPH_URL:-https://graph.microsoft.com}"
readonly GUID_RE='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

say() { printf 'grant: %s\n' "$*"; }
die() { printf 'grant: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n 's/^#   //p' "$0" >&2
  exit 2
}

# Runs az, keeping its stdout; on failure, stops with what was being done and az's own message.
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

principal_id=""
function_app=""
resource_group=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --principal-id) principal_id="${2:-}"; shift 2 || usage ;;
    --function-app) function_app="${2:-}"; shift 2 || usage ;;
    --resource-group) resource_group="${2:-}"; shift 2 || usage ;;
    -h|--help) usage ;;
    *) printf 'grant: error: unknown argument %q\n' "$1" >&2; usage ;;
  esac
done

command -v az >/dev/null 2>&1 || die "the az CLI is not on PATH: install it (https://aka.ms/azcli) or use Azure Cloud Shell"
command -v jq >/dev/null 2>&1 || die "jq is not on PATH: install jq (Azure Cloud Shell has it)"

if [ -n "${principal_id}" ] && [ -n "${function_app}" ]; then
  die "give either --principal-id or --function-app with --resource-group, not both"
fi
if [ -z "${principal_id}" ] && { [ -z "${function_app}" ] || [ -z "${resource_group}" ]; }; then
  die "give --principal-id <object id>, or --function-app <name> with --resource-group <group>"
fi
if [ -n "${principal_id}" ] && ! [[ "${principal_id}" =~ ${GUID_RE} ]]; then
  die "--principal-id ${principal_id@Q} is not an object id: expected a GUID such as 6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c"
fi

az_do "checking the az sign-in (run 'az login' first)" account show --output json >/dev/null

if [ -z "${principal_id}" ]; then
  identity="$(az_do "reading the identity of Function App ${function_app} in ${resource_group}" \
    functionapp identity show --name "${function_app}" --resource-group "${resource_group}" --output json)"
  principal_id="$(jq -r '.principalId // empty' <<<"${identity}")"
  [[ "${principal_id}" =~ ${GUID_RE} ]] \
    || die "Function App ${function_app} has no system-assigned identity (principalId ${principal_id:-missing})"
fi
say "managed identity (service principal) ${principal_id}"

graph_sp="$(az_do "looking up the Microsoft Graph service principal" \
  rest --method GET --url "${GRAPH_URL}/v1.0/servicePrincipals(appId='${GRAPH_APP_ID}')")"
graph_sp_id="$(jq -r '.id // empty' <<<"${graph_sp}")"
[[ "${graph_sp_id}" =~ ${GUID_RE} ]] || die "the Microsoft Graph service principal has no id in the answer"

# Every page of a Graph list, following @odata.nextLink, as one {"value": [...]}: an identity
# with many assignments must not look as if it lacked a role that is on a later page.
list_all() {
  local what="$1" url="$2" page values='[]'
  while [ -n "${url}" ]; do
    page="$(az_do "${what}" rest --method GET --url "${url}")"
    values="$(jq -c --argjson acc "${values}" '$acc + (.value // [])' <<<"${page}")"
    url="$(jq -r '."@odata.nextLink" // empty' <<<"${page}")"
  done
  jq -cn --argjson v "${values}" '{value: $v}'
}

assignments="$(list_all "listing the app roles already granted to ${principal_id}" \
  "${GRAPH_URL}/v1.0/servicePrincipals/${principal_id}/appRoleAssignments")"

# Resolve every role first, so a tenant that lacks one gets no partial grant.
role_ids=()
for role in "${ROLES[@]}"; do
  # Application permissions are the app roles that applications (not users) can be granted.
  role_id="$(jq -r --arg v "${role}" \
    '[.appRoles[]? | select(.value == $v and (.allowedMemberTypes | index("Application")))][0].id // empty' \
    <<<"${graph_sp}")"
  [[ "${role_id}" =~ ${GUID_RE} ]] || die "Microsoft Graph has no application role ${role} in this tenant"
  role_ids+=("${role_id}")
done

granted=0
kept=0
for i in "${!ROLES[@]}"; do
  role="${ROLES[$i]}"
  role_id="${role_ids[$i]}"
  if jq -e --arg r "${role_id}" --arg g "${graph_sp_id}" \
      'any(.value[]?; .appRoleId == $r and .resourceId == $g)' <<<"${assignments}" >/dev/null; then
    say "${role} (app role ${role_id}) already granted: left as is"
    kept=$((kept + 1))
    continue
  fi
  body="$(jq -cn --arg p "${principal_id}" --arg g "${graph_sp_id}" --arg r "${role_id}" \
    '{principalId: $p, resourceId: $g, appRoleId: $r}')"
  az_do "granting ${role} (needs Global Administrator, Privileged Role Administrator or AppRoleAssignment.ReadWrite.All)" \
    rest --method POST --url "${GRAPH_URL}/v1.0/servicePrincipals/${principal_id}/appRoleAssignments" \
    --headers "Content-Type=application/json" --body "${body}" >/dev/null
  say "${role} (app role ${role_id}) granted"
  granted=$((granted + 1))
done

say "done: ${granted} granted, ${kept} already in place. New permissions can take a few minutes (up to hours, while the identity's cached token lives) to reach the app."
