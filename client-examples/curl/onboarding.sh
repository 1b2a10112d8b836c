#!/usr/bin/env bash
# Walks the onboarding flow against a running Baton with nothing but curl
# and jq: startFlow, then submit each screen until the session completes.
#
#   cargo run --release &            # or any running Baton
#   client-examples/curl/onboarding.sh
#
# BATON_URL overrides the server (default http://127.0.0.1:8080).
set -euo pipefail

BATON_URL=${BATON_URL:-http://127.0.0.1:8080}
SCREEN='status screen { id title errors { field code message } components { kind ... on TextComponent { text } ... on HeadingComponent { text } } }'

gql() { # gql QUERY VARIABLES_JSON [TOKEN] -> prints the response, fails on GraphQL errors
  local body auth=()
  body=$(jq -n --arg q "$1" --argjson v "$2" '{query: $q, variables: $v}')
  [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
  local resp
  resp=$(curl -sS --fail-with-body -X POST "$BATON_URL/graphql" \
    -H 'Content-Type: application/json' -H 'Accept: application/graphql-response+json' \
    "${auth[@]}" -d "$body")
  if jq -e '.errors' >/dev/null <<<"$resp"; then
    echo "GraphQL error: $resp" >&2
    return 1
  fi
  printf '%s' "$resp"
}

show() { jq -r '"[\(.status)] screen \(.screen.id // "-"): \(.screen.title // "")"' <<<"$1"; }

resp=$(gql "mutation(\$i: StartFlowInput!) { startFlow(input: \$i) { id token $SCREEN } }" \
  '{"i": {"flowId": "onboarding", "user": {"id": "curl-user", "attributes": {"first_name": "Sam"}}, "client": {"platform": "web", "locale": "en"}}}')
session=$(jq '.data.startFlow' <<<"$resp")
id=$(jq -r '.id' <<<"$session")
token=$(jq -r '.token' <<<"$session")
show "$session"

submit() { # submit SCREEN ACTION VALUES_JSON
  local vars
  vars=$(jq -n --arg s "$id" --arg sc "$1" --arg a "$2" --argjson v "$3" --arg k "$(date +%s%N)-$1" \
    '{i: {sessionId: $s, screenId: $sc, action: $a, values: $v, idempotencyKey: $k}}')
  session=$(gql "mutation(\$i: SubmitInput!) { submit(input: \$i) { $SCREEN } }" "$vars" "$token" | jq '.data.submit')
  show "$session"
}

submit welcome next '{}'
# A wrong submit: the same screen comes back with field errors.
submit profile submit '{"name": "S", "email": "nope"}'
jq -r '.screen.errors[] | "  error: \(.field) \(.code): \(.message)"' <<<"$session"
submit profile submit '{"name": "Sam", "email": "sam@example.com", "goal": "save", "terms": true}'

status=$(jq -r '.status' <<<"$session")
jq -r '.screen.components[] | select(.text) | "  " + .text' <<<"$session"
[ "$status" = "COMPLETED" ] || { echo "expected COMPLETED, got $status" >&2; exit 1; }
echo "onboarding completed"
