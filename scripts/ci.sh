#!/usr/bin/env bash
# The whole CI run, on a fresh clone:
#   1. make sure MariaDB and Redis are installed and running (fails if they stay unreachable);
#   2. cargo fmt --check, cargo clippy -D warnings, no unused dependency (cargo-machete);
#   3. the README's test command (`cargo test --workspace`) with MALL_TEST_MYSQL_URL,
#      MALL_TEST_REDIS_URL, MALL_TEST_NATS_URL and MALL_TEST_KAFKA_URL set (scripts/brokers.sh
#      starts tansu), so the storage and event suites run against the real backends (and tiny
#      runs of every benchmark, `loadgen floor` included: crates/loadgen/tests/smoke.rs);
#   4. the same tests once more on the embedded defaults (SQLite + in-process cache);
#   5. the deploy files: promtool on the Prometheus config and rules, compose/YAML syntax;
#   6. a smoke test: the release `mall` binary called with the real grpcurl; then a trace smoke:
#      one purchase's trace, exported over OTLP to a real receiver (rotel), spans five services;
#   7. end to end: the fleet as separate processes on MariaDB + Redis under a minute of load
#      with one of each fault (scripts/e2e.sh --short): no violated invariant, no INTERNAL or
#      UNKNOWN in any service's /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one build directory across runs (CI runs in a fresh clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tiktokmall-target}"
export CARGO_TERM_COLOR=never
# Incremental artifacts only help repeated local edits; in CI they cost gigabytes of disk.
export CARGO_INCREMENTAL=0

step() { printf '\n=== %s ===\n' "$*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  fi
}

step "backends"
apt_install mariadb-server mariadb-client redis-server redis-tools prometheus python3-yaml curl openssl
if ! mysqladmin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
  echo "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 1 60); do
  mysqladmin -uroot -h127.0.0.1 ping >/dev/null 2>&1 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break
  sleep 1
done
mysqladmin -uroot -h127.0.0.1 ping >/dev/null 2>&1 || { echo "MariaDB is unreachable on 127.0.0.1:3306"; exit 1; }
redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || { echo "Redis is unreachable on 127.0.0.1:6379"; exit 1; }
echo "MariaDB and Redis are up"

step "brokers: NATS JetStream and a Kafka-API broker (tansu) for the event tests"
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  echo "starting NATS with JetStream"
  command -v nats-server >/dev/null 2>&1 || apt_install nats-server
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
  sleep 2
fi
# Exports MALL_TEST_NATS_URL and MALL_TEST_KAFKA_URL (builds tansu once into ~/.cache).
. scripts/brokers.sh
trap 'scripts/brokers.sh stop >/dev/null 2>&1 || true' EXIT
[ -n "${MALL_TEST_NATS_URL:-}" ] || { echo "NATS JetStream is unreachable on 127.0.0.1:4222"; exit 1; }
[ -n "${MALL_TEST_KAFKA_URL:-}" ] || { echo "the tansu broker did not start"; exit 1; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# loadgen's allocator trial (`loadgen floor memory`) builds the binary with mimalloc too.
cargo clippy -p loadgen --features mimalloc --all-targets -- -D warnings
command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --locked --version 0.9.2
cargo machete
# The event buses are features of mall-common: a service that neither publishes nor consumes
# links neither librdkafka nor the NATS client.
for pkg in cart user checkout; do
  if cargo tree -p "$pkg" -e normal --prefix none | grep -Eq '^(rdkafka|async-nats) '; then
    echo "$pkg links an event-bus client it does not use"; exit 1
  fi
done

step "tests on MariaDB + Redis (README: cargo test --workspace)"
MALL_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306 \
MALL_TEST_REDIS_URL=redis://127.0.0.1:6379 \
  cargo test --workspace

step "tests on the embedded defaults (SQLite + in-process cache + in-process event bus)"
env -u MALL_TEST_MYSQL_URL -u MALL_TEST_REDIS_URL -u MALL_TEST_NATS_URL -u MALL_TEST_KAFKA_URL \
  cargo test --workspace

step "deploy files"
scripts/check-deploy.sh

step "smoke: release fleet + grpcurl"
scripts/smoke.sh

step "trace smoke: the release fleet exports one purchase's trace to a real OTLP receiver (rotel)"
scripts/trace-smoke.sh

step "e2e: the fleet as separate processes, under load and faults"
scripts/e2e.sh --short --shoppers 16

echo
echo "CI passed"
