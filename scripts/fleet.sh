#!/usr/bin/env bash
# The fleet as separate processes: the eight release service binaries on MariaDB + Redis, with
# two instances each of product, cart and checkout, finding each other through Consul (the
# `fake-consul` binary of crates/testkit, which stands in for a real agent here).
#
#   scripts/fleet.sh up             build, start every instance, wait until all are ready and
#                                   passing in Consul (says so when the fleet is already up)
#   scripts/fleet.sh status         one line per instance: pid, alive, ports, ready, consul
#   scripts/fleet.sh kill <inst>    SIGKILL one instance
#   scripts/fleet.sh stop <inst>    SIGTERM one instance and wait: exit code, drain time
#   scripts/fleet.sh start <inst>   start one instance again and wait until it is ready
#   scripts/fleet.sh logs <inst> [-f]
#   scripts/fleet.sh prometheus     run Prometheus (foreground) on the fleet: every instance's
#                                   /metrics and the alert rules (FLEET_PROMETHEUS_LISTEN,
#                                   default 127.0.0.1:9090; data in <fleet dir>/prometheus/data)
#   scripts/fleet.sh down [--wipe]  stop everything (SIGTERM, SIGKILL after a grace period);
#                                   --wipe also drops the fleet_* databases, the fleet's MariaDB
#                                   user, the Redis `fleet:` keys, the secrets and the logs
#
# Instances: consul, auth, user, order, payment, product-1, product-2, cart-1, cart-2,
# checkout-1, checkout-2, notification. Instance 1 (or the only one) listens on the service's well-known port
# (auth 8000, user 8001, cart 8002, product 8003, order 8004, payment 8005, checkout 8006,
# notification 8007),
# instance 2 on port + 100; admin HTTP (/metrics, /readyz) is gRPC port + 1000. Consul: 8500.
#
# State lives in ${FLEET_DIR:-.fleet} (relative to the repository): <inst>.pid, <inst>.exit
# (exit code of the last run), logs/<inst>.log (JSON lines), secrets.env (the MariaDB password,
# auth.jwt_secret and checkout.fingerprint_secret, generated per fleet directory, mode 600).
#
# Events: every instance on the JetStream at 127.0.0.1:4222 under the namespace `fleet`
# (subjects fleet.<type>), or FLEET_EVENTS_URL; notification writes its mail as .eml files under
# <fleet dir>/mail (FLEET_SMTP_URL=smtp://host:port for a real server).
#
# Environment: FLEET_DIR; FLEET_BUILD=0 skips `cargo build`; FLEET_UP_TIMEOUT (seconds per
# start wave, default 90); FLEET_STOP_GRACE (seconds before SIGKILL, default 20);
# MYSQL_PWD for MariaDB's root if it has a password. Any other MALL__* variable you export
# reaches every instance (e.g. MALL__TELEMETRY__LOG_FILTER=debug).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
fleet_dir="${FLEET_DIR:-.fleet}"
case "$fleet_dir" in /*) ;; *) fleet_dir="$repo/$fleet_dir" ;; esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tiktokmall-target}"
bin_dir="$CARGO_TARGET_DIR/release"

MYSQL_HOST=127.0.0.1
MYSQL_PORT=3306
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
CONSUL_PORT=8500
DB_USER=mall_fleet
DB_PREFIX=fleet_
CACHE_NAMESPACE=fleet
UP_TIMEOUT="${FLEET_UP_TIMEOUT:-90}"
STOP_GRACE="${FLEET_STOP_GRACE:-20}"

INSTANCES=(consul auth user order payment product-1 product-2 cart-1 cart-2 checkout-1 checkout-2
  notification)
# Started in waves: one instance of everything first, so the second instances of product, cart
# and checkout join a migrated, seeded database (as in a rolling deploy).
WAVE1=(auth user order payment product-1 cart-1 checkout-1 notification)
WAVE2=(product-2 cart-2 checkout-2)

say() { printf 'fleet: %s\n' "$*"; }
die() { printf 'fleet: %s\n' "$*" >&2; exit 1; }

known_instance() {
  local i
  for i in "${INSTANCES[@]}"; do [ "$i" = "$1" ] && return 0; done
  return 1
}

# The service an instance runs (`product-2` → `product`).
service_of() {
  case "$1" in
    *-1 | *-2) echo "${1%-?}" ;;
    *) echo "$1" ;;
  esac
}

well_known_port() {
  case "$1" in
    auth) echo 8000 ;; user) echo 8001 ;; cart) echo 8002 ;; product) echo 8003 ;;
    order) echo 8004 ;; payment) echo 8005 ;; checkout) echo 8006 ;; notification) echo 8007 ;;
    consul) echo "$CONSUL_PORT" ;;
    *) return 1 ;;
  esac
}

port_of() {
  local base
  base=$(well_known_port "$(service_of "$1")")
  case "$1" in *-2) echo $((base + 100)) ;; *) echo "$base" ;; esac
}

admin_port_of() {
  [ "$1" = consul ] && { echo "-"; return; }
  echo $(($(port_of "$1") + 1000))
}

binary_of() {
  if [ "$1" = consul ]; then echo "$bin_dir/fake-consul"; else echo "$bin_dir/$(service_of "$1")"; fi
}

pid_file() { echo "$fleet_dir/$1.pid"; }
exit_file() { echo "$fleet_dir/$1.exit"; }
log_file() { echo "$fleet_dir/logs/$1.log"; }

# The pid of a running instance, or nothing (a stale pid file, or a reused pid, is not ours).
live_pid() {
  local f pid
  f=$(pid_file "$1")
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    local cmdline state
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    if [ -z "$cmdline" ]; then
      # Empty while the kernel loads the binary (exec) and once the process has exited
      # (a zombie): only the latter is gone.
      state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
      [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] || return 1
    else
      [[ "$cmdline" == *"$(binary_of "$1")"* ]] || return 1
    fi
  fi
  echo "$pid"
}

port_busy() {
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# What is listening on a port, for error messages.
port_owner() {
  command -v ss >/dev/null 2>&1 || { echo "unknown process"; return; }
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -1 || true
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (${2:-apt-get install $1})"
}

mysql_root() {
  mysql --protocol=TCP -h"$MYSQL_HOST" -P"$MYSQL_PORT" -uroot --batch --skip-column-names "$@"
}

redis() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

load_secrets() {
  local f="$fleet_dir/secrets.env"
  if [ ! -s "$f" ]; then
    mkdir -p "$fleet_dir"
    (
      umask 077
      {
        echo "FLEET_DB_PASSWORD=$(random_hex 18)"
        echo "FLEET_JWT_SECRET=$(random_hex 32)"
        echo "FLEET_FINGERPRINT_SECRET=$(random_hex 32)"
      } >"$f.tmp"
      mv "$f.tmp" "$f"
    )
    say "generated secrets in $f"
  fi
  # shellcheck disable=SC1090
  . "$f"
  if [ -z "${FLEET_SIGNING_KEY:-}" ]; then
    # The access-token pair (Ed25519 seed and public key, base64), added to older files too.
    local key
    key=$(mktemp)
    openssl genpkey -algorithm ed25519 -outform DER -out "$key"
    FLEET_SIGNING_KEY=$(tail -c 32 "$key" | base64 -w0)
    FLEET_VERIFY_KEY=$(openssl pkey -inform DER -in "$key" -pubout -outform DER | tail -c 32 | base64 -w0)
    rm -f "$key"
    (umask 077; printf 'FLEET_SIGNING_KEY=%s\nFLEET_VERIFY_KEY=%s\n' "$FLEET_SIGNING_KEY" "$FLEET_VERIFY_KEY" >>"$f")
  fi
  if [ -z "${FLEET_DB_PASSWORD:-}" ] || [ -z "${FLEET_JWT_SECRET:-}" ] || [ -z "${FLEET_FINGERPRINT_SECRET:-}" ]; then
    die "$f is incomplete: remove it (or run down --wipe) to generate new secrets"
  fi
}

check_backends() {
  need curl
  need openssl
  need mysql "apt-get install mariadb-client"
  need redis-cli "apt-get install redis-tools"
  mysql_root -e 'SELECT 1' >/dev/null 2>&1 \
    || die "MariaDB is unreachable as root on $MYSQL_HOST:$MYSQL_PORT (set MYSQL_PWD if root has a password)"
  [ "$(redis ping 2>/dev/null)" = PONG ] || die "Redis is unreachable on $REDIS_HOST:$REDIS_PORT"
}

# The fleet's own MariaDB account: the services do not run as root, and faults can KILL exactly
# the fleet's connections. Its password follows secrets.env.
ensure_db_user() {
  mysql_root <<SQL
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$FLEET_DB_PASSWORD';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$FLEET_DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`fleet\\_%\`.* TO '$DB_USER'@'127.0.0.1';
SQL
}

build() {
  [ "${FLEET_BUILD:-1}" = 0 ] && return
  say "building the release binaries"
  (cd "$repo" && cargo build --release --bins \
    -p auth -p user -p product -p cart -p order -p payment -p checkout -p notification \
    -p mall-testkit)
}

# The settings of one service instance, as MALL__ variables.
instance_env() {
  local inst=$1 svc port
  svc=$(service_of "$inst")
  port=$(port_of "$inst")
  echo "MALL__PROFILE=online"
  echo "MALL__SERVER__HOST=127.0.0.1"
  echo "MALL__SERVER__PORT=$port"
  echo "MALL__SERVER__ADMIN_PORT=$((port + 1000))"
  # Consul's clients watch for the deregistration; a second of NOT_SERVING covers the gap.
  echo "MALL__SERVER__DRAIN_DELAY=1s"
  echo "MALL__SERVER__SHUTDOWN_GRACE=10s"
  echo "MALL__DATABASE__URL=mysql://$DB_USER:$FLEET_DB_PASSWORD@$MYSQL_HOST:$MYSQL_PORT/${DB_PREFIX}{service}"
  echo "MALL__CACHE__URL=redis://$REDIS_HOST:$REDIS_PORT"
  echo "MALL__CACHE__NAMESPACE=$CACHE_NAMESPACE"
  echo "MALL__DISCOVERY__KIND=consul"
  echo "MALL__DISCOVERY__CONSUL__ADDRESS=http://127.0.0.1:$CONSUL_PORT"
  echo "MALL__DISCOVERY__CONSUL__ADVERTISE_HOST=127.0.0.1"
  echo "MALL__DISCOVERY__CONSUL__CHECK_INTERVAL=1s"
  echo "MALL__DISCOVERY__CONSUL__CHECK_TIMEOUT=1s"
  echo "MALL__DISCOVERY__CONSUL__DEREGISTER_CRITICAL_AFTER=30s"
  echo "MALL__TELEMETRY__LOG_FORMAT=json"
  echo "MALL__EVENTS__URL=${FLEET_EVENTS_URL:-nats://127.0.0.1:4222}"
  echo "MALL__EVENTS__NAMESPACE=fleet"
  echo "MALL__AUTH__JWT_SECRET=$FLEET_JWT_SECRET"
  echo "MALL__AUTH__VERIFY_KEY=$FLEET_VERIFY_KEY"
  # Only auth mints sessions.
  if [ "$svc" = auth ]; then
    echo "MALL__AUTH__SIGNING_KEY=$FLEET_SIGNING_KEY"
  fi
  if [ "$svc" = checkout ]; then
    echo "MALL__CHECKOUT__FINGERPRINT_SECRET=$FLEET_FINGERPRINT_SECRET"
  fi
  if [ "$svc" = notification ]; then
    echo "MALL__NOTIFICATION__SMTP_URL=${FLEET_SMTP_URL:-file://$fleet_dir/mail}"
  fi
}

# Starts one instance in its own session (a terminal's Ctrl-C does not reach it) under a small
# shell that records the exit code in <inst>.exit.
launch() {
  local inst=$1 bin port admin log pidf exitf args=() envs=()
  bin=$(binary_of "$inst")
  [ -x "$bin" ] || die "$bin is missing: run without FLEET_BUILD=0 (or cargo build --release)"
  port=$(port_of "$inst")
  admin=$(admin_port_of "$inst")
  for p in "$port" "$admin"; do
    [ "$p" = "-" ] && continue
    if port_busy "$p"; then
      die "cannot start $inst: port $p is in use by $(port_owner "$p") (another fleet, or \`cargo run -p mall\`?)"
    fi
  done
  log=$(log_file "$inst")
  pidf=$(pid_file "$inst")
  exitf=$(exit_file "$inst")
  mkdir -p "$fleet_dir/logs"
  rm -f "$pidf" "$exitf"
  if [ "$inst" = consul ]; then
    args=(--listen "127.0.0.1:$CONSUL_PORT")
  else
    mapfile -t envs < <(instance_env "$inst")
  fi
  printf '{"fleet":"start %s at %s"}\n' "$inst" "$(date -u +%FT%TZ)" >>"$log"
  # shellcheck disable=SC2016
  env "${envs[@]+"${envs[@]}"}" setsid bash -c '
    bin=$1 pidf=$2 exitf=$3; shift 3
    "$bin" "$@" &
    echo $! >"$pidf.tmp" && mv "$pidf.tmp" "$pidf"
    wait $!
    echo $? >"$exitf"
  ' fleet-"$inst" "$bin" "$pidf" "$exitf" "${args[@]+"${args[@]}"}" </dev/null >>"$log" 2>&1 9>&- &
  for _ in $(seq 1 50); do
    [ -s "$pidf" ] && break
    sleep 0.1
  done
  [ -s "$pidf" ] || die "$inst did not start (no pid file)"
  say "started $inst (pid $(cat "$pidf"), port $port)"
}

ready() {
  local inst=$1
  if [ "$inst" = consul ]; then
    curl -fsS -m 2 "http://127.0.0.1:$CONSUL_PORT/v1/health/service/consul" >/dev/null 2>&1
  else
    [ "$(curl -fsS -m 2 "http://127.0.0.1:$(admin_port_of "$inst")/readyz" 2>/dev/null)" = ready ]
  fi
}

# Whether Consul lists the instance as passing.
consul_passing() {
  local inst=$1 svc port
  svc=$(service_of "$inst")
  port=$(port_of "$inst")
  local passing
  passing=$(curl -fsS -m 2 "http://127.0.0.1:$CONSUL_PORT/v1/health/service/$svc?passing=true" 2>/dev/null) || return 1
  [[ "$passing" == *"\"ID\":\"$svc-127.0.0.1-$port\""* ]]
}

healthy() {
  ready "$1" || return 1
  [ "$1" = consul ] || consul_passing "$1"
}

explain_failure() {
  local inst=$1 why=$2
  echo "fleet: $inst $why" >&2
  if ! live_pid "$inst" >/dev/null; then
    echo "fleet: $inst $(describe_exit "$(recorded_exit "$inst")")" >&2
    # The kernel says whom its OOM killer took (when this user may read its log).
    dmesg 2>/dev/null | grep -iE 'out of memory|oom-kill|killed process' | tail -n 3 | sed 's/^/fleet: kernel: /' >&2 || true
  fi
  echo "--- last lines of $(log_file "$inst")" >&2
  tail -n 20 "$(log_file "$inst")" >&2 || true
}

# Waits until every named instance is ready and passing in Consul, or fails naming the first
# one that died or is still not healthy at the deadline.
wait_healthy() {
  local deadline=$((SECONDS + UP_TIMEOUT)) pending=("$@") still inst
  while [ ${#pending[@]} -gt 0 ]; do
    still=()
    for inst in "${pending[@]}"; do
      if ! live_pid "$inst" >/dev/null; then
        explain_failure "$inst" "died while starting"
        echo "fleet: the instances that did start keep running (scripts/fleet.sh status, down)" >&2
        return 1
      fi
      healthy "$inst" || still+=("$inst")
    done
    pending=("${still[@]+"${still[@]}"}")
    [ ${#pending[@]} -eq 0 ] && break
    if [ $SECONDS -ge $deadline ]; then
      for inst in "${pending[@]}"; do
        if ready "$inst"; then
          explain_failure "$inst" "is ready but not passing in Consul after ${UP_TIMEOUT}s"
        else
          explain_failure "$inst" "is not ready after ${UP_TIMEOUT}s (admin /readyz)"
        fi
      done
      echo "fleet: the instances that did start keep running (scripts/fleet.sh status, down)" >&2
      return 1
    fi
    sleep 0.5
  done
}

start_wave() {
  local inst started=()
  for inst in "$@"; do
    if live_pid "$inst" >/dev/null; then
      say "$inst is already running (pid $(live_pid "$inst"))"
    else
      launch "$inst"
    fi
    started+=("$inst")
  done
  wait_healthy "${started[@]}"
}

cmd_up() {
  local inst running=0
  for inst in "${INSTANCES[@]}"; do live_pid "$inst" >/dev/null && running=$((running + 1)); done
  if [ "$running" -eq ${#INSTANCES[@]} ]; then
    say "the fleet is already up (${#INSTANCES[@]} instances; scripts/fleet.sh status)"
    return 0
  fi
  check_backends
  mkdir -p "$fleet_dir/logs"
  load_secrets
  ensure_db_user
  build
  start_wave consul
  start_wave "${WAVE1[@]}"
  start_wave "${WAVE2[@]}"
  write_prometheus
  say "up: ${#INSTANCES[@]} instances ready and passing in Consul (logs in $fleet_dir/logs)"
}

# <fleet dir>/prometheus: deploy/prometheus/local.yml as prometheus.yml, the alert rules, and
# targets.json (file-based discovery: every instance's admin port, labelled with its service).
write_prometheus() {
  local dir="$fleet_dir/prometheus" inst sep=""
  mkdir -p "$dir"
  cp "$repo/deploy/prometheus/local.yml" "$dir/prometheus.yml"
  cp "$repo/deploy/prometheus/alerts.yml" "$dir/alerts.yml"
  {
    echo "["
    for inst in "${INSTANCES[@]}"; do
      [ "$inst" = consul ] && continue
      printf '%s  {"targets": ["127.0.0.1:%s"], "labels": {"service": "%s", "fleet_instance": "%s"}}\n' \
        "$sep" "$(admin_port_of "$inst")" "$(service_of "$inst")" "$inst"
      sep=","
    done
    echo "]"
  } >"$dir/targets.json.tmp"
  mv "$dir/targets.json.tmp" "$dir/targets.json"
}

cmd_prometheus() {
  command -v prometheus >/dev/null 2>&1 || die "prometheus is not installed (Debian: apt-get install prometheus)"
  [ -f "$fleet_dir/prometheus/targets.json" ] || write_prometheus
  exec prometheus --config.file="$fleet_dir/prometheus/prometheus.yml" \
    --storage.tsdb.path="$fleet_dir/prometheus/data" \
    --web.listen-address="${FLEET_PROMETHEUS_LISTEN:-127.0.0.1:9090}" "$@"
}

cmd_status() {
  local inst pid alive ready_s consul_s port admin bad=0
  printf '%-11s %-8s %-5s %-5s %-5s %-5s %s\n' instance pid alive port admin ready consul
  for inst in "${INSTANCES[@]}"; do
    port=$(port_of "$inst")
    admin=$(admin_port_of "$inst")
    if pid=$(live_pid "$inst"); then alive=yes; else pid=-; alive=no; fi
    if ready "$inst"; then ready_s=yes; else ready_s=no; fi
    if [ "$inst" = consul ]; then
      consul_s=-
    elif consul_passing "$inst"; then
      consul_s=passing
    else
      consul_s=no
    fi
    [ "$alive" = yes ] && [ "$ready_s" = yes ] && [ "$consul_s" != no ] || bad=1
    printf '%-11s %-8s %-5s %-5s %-5s %-5s %s\n' "$inst" "$pid" "$alive" "$port" "$admin" "$ready_s" "$consul_s"
  done
  return $bad
}

# Waits up to $2 seconds for pid $1 to exit.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# How an exit code reads: a code above 128 is the shell's way of saying "killed by a signal".
describe_exit() {
  local code=$1
  case "$code" in
    "?") echo "left no exit code" ;;
    *[!0-9]*) echo "exited with $code" ;;
    *)
      if [ "$code" -gt 128 ]; then
        echo "was killed by signal $((code - 128)) ($(kill -l $((code - 128)) 2>/dev/null || echo unknown))$([ "$code" = 137 ] && echo ": SIGKILL, the kernel's OOM killer or someone's kill -9")"
      else
        echo "exited with code $code"
      fi
      ;;
  esac
}

# The exit code the launcher recorded (it writes it just after the process is reaped).
recorded_exit() {
  local f
  f=$(exit_file "$1")
  for _ in $(seq 1 20); do
    [ -s "$f" ] && { cat "$f"; return; }
    sleep 0.1
  done
  echo "?"
}

cmd_kill() {
  local inst=$1 pid
  pid=$(live_pid "$inst") || { say "$inst is not running"; return 0; }
  kill -KILL "$pid"
  wait_gone "$pid" 10 || die "$inst (pid $pid) survived SIGKILL"
  say "killed $inst (pid $pid, SIGKILL)"
}

cmd_stop() {
  local inst=$1 pid t0 t1 code
  pid=$(live_pid "$inst") || { say "$inst is not running"; return 0; }
  t0=$(date +%s.%N)
  kill -TERM "$pid"
  if ! wait_gone "$pid" "$STOP_GRACE"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || true
    die "$inst (pid $pid) did not exit within ${STOP_GRACE}s of SIGTERM: killed"
  fi
  t1=$(date +%s.%N)
  code=$(recorded_exit "$inst")
  say "stopped $inst (pid $pid): exit $code after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s"
  [ "$code" = 0 ]
}

cmd_start() {
  local inst=$1
  if pid=$(live_pid "$inst"); then
    say "$inst is already running (pid $pid)"
  else
    load_secrets
    launch "$inst"
  fi
  wait_healthy "$inst"
  say "$inst is ready$([ "$inst" = consul ] || echo " and passing in Consul")"
}

cmd_logs() {
  local inst=$1 log
  log=$(log_file "$inst")
  [ -f "$log" ] || die "no log for $inst ($log)"
  if [ "${2:-}" = -f ]; then tail -n 50 -f "$log"; else tail -n "${LINES_SHOWN:-200}" "$log"; fi
}

cmd_down() {
  local wipe=0 inst pid pids=() names=() stopped=0
  [ "${1:-}" = --wipe ] && wipe=1
  # The services first (they deregister from Consul as they drain), the agent last.
  for inst in "${INSTANCES[@]}"; do
    [ "$inst" = consul ] && continue
    if ! pid=$(live_pid "$inst"); then
      # Started by this fleet but gone before the stop: say how it ended.
      [ -s "$(pid_file "$inst")" ] && [ -f "$(exit_file "$inst")" ] \
        && say "$inst had already stopped: it $(describe_exit "$(recorded_exit "$inst")")"
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    names+=("$inst")
  done
  stopped=${#pids[@]}
  [ ${#pids[@]} -gt 0 ] && wait_all_or_kill
  if pid=$(live_pid consul); then
    kill -TERM "$pid" 2>/dev/null || true
    pids=("$pid")
    names=(consul)
    stopped=$((stopped + 1))
    wait_all_or_kill
  fi
  for inst in "${INSTANCES[@]}"; do rm -f "$(pid_file "$inst")"; done
  [ "$stopped" = 0 ] && say "the fleet is not running"
  if [ "$wipe" = 1 ]; then wipe_state; fi
  if [ "$wipe" = 1 ]; then say "down (wiped)"; else say "down"; fi
}

# SIGTERM was sent to ${pids[@]}: wait for them, SIGKILL whatever outlives the grace period.
wait_all_or_kill() {
  local deadline=$((SECONDS + STOP_GRACE)) i alive
  while :; do
    alive=0
    for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    [ $SECONDS -ge $deadline ] && break
    sleep 0.2
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      say "${names[$i]} (pid ${pids[$i]}) still running after ${STOP_GRACE}s: SIGKILL"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    else
      say "stopped ${names[$i]} (exit $(recorded_exit "${names[$i]}"))"
    fi
  done
}

wipe_state() {
  local db dbs keys
  if mysql_root -e 'SELECT 1' >/dev/null 2>&1; then
    dbs=$(mysql_root -e "SHOW DATABASES LIKE '${DB_PREFIX//_/\\_}%'")
    for db in $dbs; do
      mysql_root -e "DROP DATABASE \`$db\`"
      say "dropped database $db"
    done
    mysql_root -e "DROP USER IF EXISTS '$DB_USER'@'127.0.0.1'"
  else
    say "MariaDB is unreachable: databases not dropped"
  fi
  if [ "$(redis ping 2>/dev/null)" = PONG ]; then
    keys=$(redis --scan --pattern "$CACHE_NAMESPACE:*" | wc -l)
    redis --scan --pattern "$CACHE_NAMESPACE:*" | xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" unlink >/dev/null
    say "removed $keys Redis keys under $CACHE_NAMESPACE:"
  else
    say "Redis is unreachable: keys not removed"
  fi
  rm -rf "$fleet_dir/logs" "$fleet_dir/prometheus" "$fleet_dir/secrets.env" "$fleet_dir"/*.exit "$fleet_dir"/*.pid
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

instance_arg() {
  [ -n "${1:-}" ] || die "name an instance: ${INSTANCES[*]}"
  known_instance "$1" || die "unknown instance \`$1\` (known: ${INSTANCES[*]})"
}

# One command at a time changes the fleet (status and logs only read).
lock() {
  mkdir -p "$fleet_dir"
  exec 9>"$fleet_dir/.lock"
  flock -w 300 9 || die "another fleet.sh command holds $fleet_dir/.lock"
}

command=${1:-}
shift || true
case "$command" in
  up) lock; cmd_up ;;
  down) lock; cmd_down "$@" ;;
  status) cmd_status ;;
  kill) instance_arg "${1:-}"; lock; cmd_kill "$1" ;;
  stop) instance_arg "${1:-}"; lock; cmd_stop "$1" ;;
  start) instance_arg "${1:-}"; lock; cmd_start "$1" ;;
  logs) instance_arg "${1:-}"; cmd_logs "$@" ;;
  prometheus) cmd_prometheus "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage 1 >&2 ;;
esac
