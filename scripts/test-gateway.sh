#!/usr/bin/env bash
# The gateway end to end, on NATS, from the outside: a curl publish reaches Python
# subscribers masked per principal; schemathesis fuzzes the OpenAPI description against
# the running gateway; the admin page is driven in Debian's Chromium (playwright-core).
# Installs what it needs when missing: chromium (apt-get), schemathesis (.venv-gateway),
# playwright-core (gateway/browser/node_modules), the Python module (.venv-python, as
# scripts/test-python.sh builds it). The screenshot is kept in target/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n--> gateway: %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "build busbar-gateway and busbar"
cargo build --quiet --locked -p busbar-gateway -p busbar-cli
GATEWAY="$ROOT/target/debug/busbar-gateway"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

step "a private nats-server"
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" -l "$WORK/nats.log" &
PIDS+=($!)
NATS_URL="nats://127.0.0.1:$NATS_PORT"
for _ in $(seq 100); do grep -q "Server is ready" "$WORK/nats.log" 2>/dev/null && break; sleep 0.1; done

# Tokens (opaque, stored by SHA-256) and the PHI policy of the tests.
BILLING=billing-$RANDOM$RANDOM$RANDOM
CLINICIAN=clinician-$RANDOM$RANDOM$RANDOM
ADMIN=admin-$RANDOM$RANDOM$RANDOM
export BILLING CLINICIAN ADMIN
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
cat > "$WORK/tokens.json" <<JSON
{"tokens": [
  {"sha256": "$(sha "$BILLING")", "principal": "billing-svc", "roles": ["billing"]},
  {"sha256": "$(sha "$CLINICIAN")", "principal": "dr-who", "roles": ["clinician"]},
  {"sha256": "$(sha "$ADMIN")", "principal": "ops", "roles": ["admin"]}
]}
JSON
cat > "$WORK/policy.json" <<'JSON'
{"classes": ["pii", "phi"],
 "fields": [{"path": "/ssn", "class": "pii", "action": "partial", "keep": 4},
            {"path": "/diagnosis", "class": "phi", "action": "redact"}],
 "restricted": [{"subjects": ["psych.>"], "roles": ["clinician"]}],
 "grants": {"billing": ["pii"], "clinician": ["pii", "phi"]}}
JSON

step "busbar-gateway on NATS (policy, audit log, stream JOBS)"
BUSBAR_BACKEND=nats BUSBAR_NATS_URL="$NATS_URL" BUSBAR_POLICY="$WORK/policy.json" \
    BUSBAR_AUDIT_LOG="$WORK/audit.log" \
    "$GATEWAY" --listen 127.0.0.1:0 --tokens "$WORK/tokens.json" --stream 'JOBS=jobs.>' \
    > "$WORK/gateway.out" 2> "$WORK/gateway.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q "listening on" "$WORK/gateway.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$WORK/gateway.out")
[ -n "$BASE" ] || { cat "$WORK/gateway.err"; fail "the gateway did not start"; }
echo "gateway at $BASE"

step "no token: 401 with a JSON code; health and the OpenAPI description answer"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' -X POST "$BASE/v1/publish/claims.new" -d '{}')
[ "$code" = 401 ] && grep -q '"code":"unauthorized"' "$WORK/body" || fail "publish without a token: $code $(cat "$WORK/body")"
curl -sf "$BASE/healthz" >/dev/null && curl -sf "$BASE/readyz" >/dev/null && curl -sf "$BASE/v1/openapi.json" >/dev/null

step "Python: the module from .venv-python (built as scripts/test-python.sh does when missing)"
PY=.venv-python/bin/python
if ! "$PY" -c 'import busbar' 2>/dev/null; then
    python3 -m venv .venv-python
    "$PY" -m pip install --quiet --disable-pip-version-check "maturin>=1.9.4,<2"
    "$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./bindings-python
fi

step "a curl publish reaches Python subscribers masked per principal"
start_sub() { # principal roles output-file
    "$PY" gateway/tests/python/subscriber.py "$NATS_URL" "$WORK/policy.json" "$1" "$2" 'claims.>' > "$3" &
    PIDS+=($!)
}
start_sub billing-svc billing "$WORK/py-billing"
start_sub dr-who clinician "$WORK/py-clinician"
start_sub web web "$WORK/py-web"
for f in py-billing py-clinician py-web; do
    for _ in $(seq 200); do grep -q ready "$WORK/$f" 2>/dev/null && break; sleep 0.1; done
done
curl -sf -X POST "$BASE/v1/publish/claims.new" -H "Authorization: Bearer $CLINICIAN" \
    -H 'Content-Type: application/json' -H 'ce-type: claim.filed' \
    -d '{"ssn":"123-45-6789","diagnosis":"flu"}' >/dev/null
for _ in $(seq 100); do [ "$(wc -l < "$WORK/py-web")" -ge 2 ] && [ "$(wc -l < "$WORK/py-billing")" -ge 2 ] && [ "$(wc -l < "$WORK/py-clinician")" -ge 2 ] && break; sleep 0.1; done
check() { # file expected
    got=$(sed -n 2p "$WORK/$1")
    [ "$got" = "$2" ] || fail "$1 got $got, expected $2"
    echo "$1: $got"
}
check py-billing '{"ssn":"123-45-6789","diagnosis":"[REDACTED]"}'
check py-clinician '{"ssn":"123-45-6789","diagnosis":"flu"}'
check py-web '{"ssn":"*******6789","diagnosis":"[REDACTED]"}'
code=$(curl -s -o "$WORK/body" -w '%{http_code}' "$BASE/v1/subscribe/psych.%3E" -H "Authorization: Bearer $BILLING")
[ "$code" = 403 ] && grep -q '"code":"forbidden"' "$WORK/body" || fail "restricted subject: $code $(cat "$WORK/body")"
echo "restricted subject over HTTP: 403 forbidden"

step "schemathesis (.venv-gateway): every error a JSON body with a code, no 5xx but a short request's timeout"
# A responder on every subject: a fuzzed request is answered, so no_responders (503) is a finding.
"$PY" gateway/tests/python/responder.py "$NATS_URL" "$WORK/policy.json" > "$WORK/responder.out" 2> "$WORK/responder.err" &
RESPONDER=$!
PIDS+=("$RESPONDER")
for _ in $(seq 200); do grep -q ready "$WORK/responder.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/responder.out" || { cat "$WORK/responder.err"; fail "the responder did not start"; }
ST=.venv-gateway/bin/st
if [ ! -x "$ST" ]; then
    python3 -m venv .venv-gateway
    .venv-gateway/bin/pip install --quiet --disable-pip-version-check "schemathesis>=4,<5"
fi
SCHEMATHESIS_HOOKS=gateway_hooks PYTHONPATH=gateway/tests/schemathesis "$ST" run "$BASE/v1/openapi.json" \
    --header "Authorization: Bearer $ADMIN" \
    --checks status_code_conformance,content_type_conformance,response_schema_conformance,error_has_code \
    --exclude-path-regex '^/v1/(subscribe|ws)' --max-examples 40 --request-timeout 10 --no-color \
    > "$WORK/schemathesis.log" 2>&1 || { tail -150 "$WORK/schemathesis.log"; fail "schemathesis found failures"; }
tail -5 "$WORK/schemathesis.log"
grep 'gateway_hooks:' "$WORK/schemathesis.log" || true
kill -0 "${PIDS[1]}" || fail "the gateway died under schemathesis"
# The echo answers every message with a reply subject, a JetStream publish's acknowledgement
# inbox too (a durable publish then gets the echo, not the stream's answer): it served the
# fuzzer and must not race the stream below.
kill "$RESPONDER"
wait "$RESPONDER" 2>/dev/null || true

step "the admin page in Chromium (playwright-core)"
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
if [ ! -d gateway/browser/node_modules/playwright-core ]; then
    (cd gateway/browser && npm install --no-audit --no-fund --silent)
fi
"$PY" gateway/tests/python/dead_letter.py "$NATS_URL"
mkdir -p target/artifacts
CHROMIUM=$(command -v chromium) node gateway/browser/admin-page.mjs "$BASE" "$ROOT/target/artifacts/gateway-admin.png"

step "graceful shutdown"
kill -TERM "${PIDS[1]}"
for _ in $(seq 50); do kill -0 "${PIDS[1]}" 2>/dev/null || break; sleep 0.1; done
kill -0 "${PIDS[1]}" 2>/dev/null && fail "the gateway did not stop on SIGTERM"
echo "gateway stopped on SIGTERM"
printf '\ngateway suite passed\n'
