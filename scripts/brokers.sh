#!/usr/bin/env bash
# The message brokers the event tests use, for CI and for a developer:
#
#   . scripts/brokers.sh          # source it: starts what is missing, exports the test URLs
#   scripts/brokers.sh stop       # stops the tansu broker it started
#
# - NATS JetStream: expected on 127.0.0.1:4222 (it runs on these machines); when it answers,
#   MALL_TEST_NATS_URL=nats://127.0.0.1:4222 is exported.
# - Kafka: a tansu broker (Kafka-API compatible, in-memory storage) on a free loopback port,
#   MALL_TEST_KAFKA_URL=kafka://127.0.0.1:PORT exported. tansu is built once, with the
#   `dynostore` feature (its `memory://` storage; a default `cargo install tansu` has no storage
#   engine at all and exits with "FeatureNotEnabled dynostore"), into $TANSU_ROOT.
#
# Idempotent: a broker it started earlier (pid file under $BROKERS_STATE) is reused while it
# answers. Nothing here touches the fixed fleet ports 8000-8007.

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
TANSU_ROOT="${TANSU_ROOT:-$HOME/.cache/tansu-dynostore}"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
BROKERS_STATE="${BROKERS_STATE:-/tmp/tiktokmall-brokers}"

_brokers_answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

_brokers_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_brokers_stop() {
  if [ -f "$BROKERS_STATE/tansu.pid" ]; then
    kill "$(cat "$BROKERS_STATE/tansu.pid")" 2>/dev/null || true
    rm -f "$BROKERS_STATE/tansu.pid" "$BROKERS_STATE/tansu.port"
    echo "tansu stopped"
  fi
}

_brokers_tansu() {
  if [ ! -x "$TANSU_BIN" ]; then
    echo "building tansu $TANSU_VERSION (dynostore) into $TANSU_ROOT; once, several minutes"
    CARGO_TARGET_DIR="${TANSU_TARGET_DIR:-$HOME/.cache/tansu-build}" \
      cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore \
      --root "$TANSU_ROOT" >"$BROKERS_STATE/tansu-install.log" 2>&1 || {
      echo "tansu install failed; see $BROKERS_STATE/tansu-install.log" >&2
      return 1
    }
  fi
  local pid port
  if [ -f "$BROKERS_STATE/tansu.pid" ] && [ -f "$BROKERS_STATE/tansu.port" ]; then
    pid="$(cat "$BROKERS_STATE/tansu.pid")"
    port="$(cat "$BROKERS_STATE/tansu.port")"
    if kill -0 "$pid" 2>/dev/null && _brokers_answers 127.0.0.1 "$port"; then
      export MALL_TEST_KAFKA_URL="kafka://127.0.0.1:$port"
      return 0
    fi
  fi
  port="$(_brokers_free_port)"
  nohup "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" >"$BROKERS_STATE/tansu.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do
    if _brokers_answers 127.0.0.1 "$port"; then
      echo "$pid" >"$BROKERS_STATE/tansu.pid"
      echo "$port" >"$BROKERS_STATE/tansu.port"
      export MALL_TEST_KAFKA_URL="kafka://127.0.0.1:$port"
      echo "tansu (pid $pid) on 127.0.0.1:$port"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  echo "tansu did not start; see $BROKERS_STATE/tansu.log" >&2
  return 1
}

_brokers_main() {
  mkdir -p "$BROKERS_STATE"
  if [ "${1:-}" = "stop" ]; then
    _brokers_stop
    return 0
  fi
  if _brokers_answers 127.0.0.1 4222; then
    export MALL_TEST_NATS_URL="nats://127.0.0.1:4222"
  else
    echo "NATS is not answering on 127.0.0.1:4222: the JetStream cases will be skipped" >&2
  fi
  _brokers_tansu || echo "no Kafka broker: the Kafka cases will be skipped" >&2
  echo "MALL_TEST_NATS_URL=${MALL_TEST_NATS_URL:-} MALL_TEST_KAFKA_URL=${MALL_TEST_KAFKA_URL:-}"
}

_brokers_main "$@"
