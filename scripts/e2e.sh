#!/usr/bin/env bash
# End to end under load and faults: a fresh fleet of separate processes (scripts/fleet.sh), the
# shopper workload (`loadgen shop`) for the whole run, and faults spaced out over it:
#
#   1. SIGKILL product-2, restart it a few seconds later
#   2. SIGKILL cart-1, restart it
#   3. SIGKILL checkout-2, restart it
#   4. restart Redis (`shutdown nosave`, started again as scripts/ci.sh does)
#   5. KILL every MariaDB connection of the fleet's user
#   6. stall MariaDB: rows of fleet_product.products held FOR UPDATE longer than
#      checkout.step_timeout (3 s)
#   7. SIGTERM product-1: it must exit 0 after draining (its log says so), then restart it
#
# The shoppers balance like a gateway over every instance of product, cart and checkout (round
# robin; a call that cannot connect goes to the next instance), so the instances that are killed
# have calls in flight (checkout-2 sagas) and are balanced around while they are down; calls
# between services are balanced through Consul.
#
# Availability: every fault's start and end are recorded (Unix seconds, $FLEET_DIR/faults.tsv);
# every instance's /metrics is scraped every 2 s during the load ($FLEET_DIR/scrapes.tsv: time,
# instance, grpc_server_handled_total of the public methods, grpc_server_shed_total); after the
# load scripts/e2e-availability.py lines loadgen's checkout timeline up with them, prints it per
# 10 s and finds violations: checkout success below 97% outside the fault windows ([start,
# end + 15 s], connection failures left out), no 5 s span at 95% success starting within 15 s
# of a fault's end, an instance refusing more than half its calls for more than 10 s outside the
# fault windows.
#
# A real Prometheus (when installed: CI installs Debian's) scrapes every instance through the
# fleet's file-based targets for the whole run; afterwards every target must be up and every
# alert rule evaluating without error.
#
# Afterwards: let the fleet settle (checkout drives unfinished sagas every 5 s), check every
# instance is alive, ready and passing again, run the invariant checker (`loadgen check`, which
# re-reads a fleet still finishing sagas for up to the recovery window), and scrape every instance's /metrics (and the snapshots
# taken just before each fault) for grpc_server_handled_total with grpc_code Internal or Unknown.
# Exits non-zero on any violation; the fleet is stopped on exit, its logs stay in the fleet dir.
#
#   scripts/e2e.sh [--duration SECS] [--short] [--shoppers N]
#
#   --duration SECS   length of the load (default 300)
#   --short           60 s of load, one of each fault, shorter pauses (what CI runs)
#   --shoppers N      concurrent shoppers (default 8)
#
# Environment: FLEET_DIR (default .fleet); FLEET_BUILD=0 skips the build; E2E_SETTLE (seconds
# to wait after the load before checking, default 10: two of checkout's recovery intervals);
# E2E_RECOVERY (the checker's recovery window: how long it re-reads a fleet that is still
# finishing sagas before it calls what is left a violation, default 60); LOADGEN (the loadgen
# binary, default the release build); E2E_STOCK (units added to every product before the load,
# default 100 per second of load); E2E_MYSQL_URL (what the checker reads, default
# mysql://root@127.0.0.1:3306); MYSQL_PWD for root's mysql client.
# Restarting Redis drops every key of that Redis, not only the fleet's: run this on a Redis
# nobody else is using.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tiktokmall-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export FLEET_DIR="${FLEET_DIR:-.fleet}"
case "$FLEET_DIR" in /*) ;; *) FLEET_DIR="$repo/$FLEET_DIR" ;; esac
fleet="$repo/scripts/fleet.sh"

duration=300
short=0
shoppers=8
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
    --duration=*) duration=${1#*=}; shift ;;
    --short) short=1; shift ;;
    --shoppers) shoppers=${2:?--shoppers needs a number}; shift 2 ;;
    --shoppers=*) shoppers=${1#*=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$short" = 1 ]; then
  duration=60
  restart_after=2
else
  restart_after=5
fi
if ! [[ "$duration" =~ ^[0-9]+$ ]] || [ "$duration" -lt 20 ]; then
  echo "e2e: --duration must be a whole number >= 20" >&2; exit 2
fi
if ! [[ "$shoppers" =~ ^[0-9]+$ ]] || [ "$shoppers" -lt 1 ]; then
  echo "e2e: --shoppers must be a positive number" >&2; exit 2
fi
settle="${E2E_SETTLE:-10}"
recovery="${E2E_RECOVERY:-60}"
stall_secs=5
seed=42
db_user=mall_fleet
mysql_url="${E2E_MYSQL_URL:-mysql://root@127.0.0.1:3306}"
loadgen="${LOADGEN:-$CARGO_TARGET_DIR/release/loadgen}"
SERVICE_INSTANCES=(auth user order payment product-1 product-2 cart-1 cart-2 checkout-1 checkout-2)

t0=$SECONDS
say() { printf '[e2e %4ds] %s\n' $((SECONDS - t0)) "$*"; }
violations=()
violation() { violations+=("$*"); say "VIOLATION: $*"; }
faults=()
now_unix() { date +%s.%N; }
# A fault's window: fault_begin when it starts, fault_done (or fault_failed, a violation too)
# when it is over (the instance ready again, the stall released); both go to faults.tsv.
fault_t0=""
fault_t0_rel=0
fault_begin() { fault_t0=$(now_unix); fault_t0_rel=$((SECONDS - t0 - load_start)); }
fault_end() {
  printf '%s\t%s\t%s\n' "${fault_t0:-$(now_unix)}" "$(now_unix)" "$*" >>"$FLEET_DIR/faults.tsv"
  faults+=("$(printf '%4ds-%4ds  %s' "$fault_t0_rel" $((SECONDS - t0 - load_start)) "$*")")
  fault_t0=""
}
fault_done() { fault_end "$*"; say "fault: $*"; }
fault_failed() { fault_end "$* (FAILED)"; violation "$*"; }

mysql_root() { mysql --protocol=TCP -h127.0.0.1 -P3306 -uroot --batch --skip-column-names "$@"; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
start_redis() { redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null; }

admin_port() {
  case "$1" in
    auth) echo 9000 ;; user) echo 9001 ;; order) echo 9004 ;; payment) echo 9005 ;;
    cart-1) echo 9002 ;; cart-2) echo 9102 ;; product-1) echo 9003 ;; product-2) echo 9103 ;;
    checkout-1) echo 9006 ;; checkout-2) echo 9106 ;;
  esac
}

for tool in curl mysql redis-cli redis-server python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "e2e: $tool is not installed" >&2; exit 1; }
done

load_pid=""
stall_pid=""
scrape_pid=""
prometheus_pid=""
load_start=0
cleanup() {
  local rc=$? log
  trap - EXIT INT TERM
  if [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null; then say "stopped the load"; fi
  if [ -n "$stall_pid" ]; then kill "$stall_pid" 2>/dev/null || true; fi
  if [ -n "$scrape_pid" ]; then kill "$scrape_pid" 2>/dev/null || true; fi
  if [ -n "$prometheus_pid" ]; then kill "$prometheus_pid" 2>/dev/null || true; fi
  if ! redis_up; then
    say "Redis is down: starting it again"
    start_redis || true
  fi
  "$fleet" down || true
  if [ "$rc" != 0 ] && [ -d "$FLEET_DIR/logs" ]; then
    # A CI run keeps only what is printed: the last lines of every log, cut to a readable width.
    for log in "$FLEET_DIR"/logs/*.log; do
      [ -f "$log" ] || continue
      echo "--- the last lines of $log"
      tail -n 6 "$log" | cut -c 1-400
    done
  fi
  say "logs are in $FLEET_DIR/logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${FLEET_BUILD:-1}" != 0 ]; then
  say "building the release binaries (services, fake-consul, loadgen)"
  cargo build --release --bins -p auth -p user -p product -p cart -p order -p payment -p checkout -p notification \
    -p mall-testkit -p loadgen
fi
[ -x "$loadgen" ] || { echo "e2e: $loadgen is missing" >&2; exit 1; }
export FLEET_BUILD=0

say "fresh fleet: down --wipe, then up"
"$fleet" down --wipe
"$fleet" up
rm -rf "$FLEET_DIR/metrics" "$FLEET_DIR/check.txt" "$FLEET_DIR/loadgen.json" "$FLEET_DIR/initial-stock.json" \
  "$FLEET_DIR/faults.tsv" "$FLEET_DIR/scrapes.tsv" "$FLEET_DIR/availability.txt" "$FLEET_DIR/availability-violations.txt"
: >"$FLEET_DIR/faults.tsv"
: >"$FLEET_DIR/scrapes.tsv"

# A real Prometheus watches the run through the fleet's file-based targets (scripts/fleet.sh
# prometheus): at the end every target must be up and every alert rule evaluating without error.
prometheus_url=""
if command -v prometheus >/dev/null 2>&1; then
  prometheus_listen="${E2E_PROMETHEUS_LISTEN:-127.0.0.1:9390}"
  prometheus_url="http://$prometheus_listen"
  FLEET_PROMETHEUS_LISTEN="$prometheus_listen" "$fleet" prometheus --log.level=warn \
    >"$FLEET_DIR/logs/prometheus.log" 2>&1 &
  prometheus_pid=$!
  say "prometheus: watching the fleet at $prometheus_url"
else
  say "prometheus is not installed: the scrape/rules check is skipped"
fi
mkdir -p "$FLEET_DIR/metrics"

# More stock than the demo catalog's few units per product, so checkouts keep succeeding for the
# whole run instead of turning into "insufficient stock" (E2E_STOCK more units of every product,
# by default 100 per second of load: 16 shoppers sell out the most popular products' 2000 units
# in under four minutes; 0 keeps the demo stock). Written before the snapshot, so the checker
# counts from it.
extra_stock=${E2E_STOCK:-$((duration * 100))}
if [ "$extra_stock" -gt 0 ]; then
  mysql_root -e "UPDATE fleet_product.products SET stock = stock + $extra_stock"
  say "stock: $extra_stock more units of every product"
fi

# The initial stock, for the checker's "stock + units sold = initial stock" (when it takes one).
check_stock_args=()
loadgen_usage=$("$loadgen" check --help 2>&1 || true)
if [[ "$loadgen_usage" == *--snapshot* ]]; then
  "$loadgen" check --mysql-url "$mysql_url" --db-prefix fleet_ --snapshot "$FLEET_DIR/initial-stock.json"
  check_stock_args=(--initial-stock "$FLEET_DIR/initial-stock.json")
fi

# One line per instance and scrape: Unix time, instance, the calls its public methods handled
# (grpc_server_handled_total without grpc.health / grpc.reflection) and the calls its admission
# refused (grpc_server_shed_total, every reason). An instance that does not answer within 2 s
# (down, stalled) gets no line.
scrape_one() {
  local inst=$1 text
  text=$(curl -fsS -m 2 "http://127.0.0.1:$(admin_port "$inst")/metrics" 2>/dev/null) || return 0
  awk -v t="$(now_unix)" -v inst="$inst" '
    /^grpc_server_handled_total\{/ && !/grpc_service="grpc\./ { h += $NF }
    /^grpc_server_shed_total\{/ { s += $NF }
    END { printf "%s\t%s\t%d\t%d\n", t, inst, h, s }' <<<"$text" >>"$FLEET_DIR/scrapes.tsv"
}
scrape_loop() {
  local inst
  while :; do
    for inst in "${SERVICE_INSTANCES[@]}"; do scrape_one "$inst" & done
    wait
    sleep 2
  done
}

say "load: $shoppers shoppers for ${duration}s (seed $seed), balanced over every instance"
"$loadgen" shop --shoppers "$shoppers" --duration "$duration" --seed "$seed" \
  --product-addr 127.0.0.1:8003,127.0.0.1:8103 --cart-addr 127.0.0.1:8002,127.0.0.1:8102 \
  --checkout-addr 127.0.0.1:8006,127.0.0.1:8106 \
  --json "$FLEET_DIR/loadgen.json" >"$FLEET_DIR/logs/loadgen.log" 2>&1 &
load_pid=$!
load_start=$((SECONDS - t0))
scrape_loop &
scrape_pid=$!

# Fault k of n runs at 10% + k * 75% / n of the run (or as soon as the previous one is done).
fault_count=7
at() {
  local due=$((load_start + duration / 10 + $1 * duration * 3 / 4 / fault_count)) now
  now=$((SECONDS - t0))
  [ "$now" -lt "$due" ] && sleep $((due - now))
  kill -0 "$load_pid" 2>/dev/null || violation "fault $(($1 + 1)) started after the load had ended (run longer)"
}

snapshot_metrics() {
  curl -fsS -m 5 "http://127.0.0.1:$(admin_port "$1")/metrics" >"$FLEET_DIR/metrics/$1-before-fault-$2.txt" 2>/dev/null || true
}

kill_and_restart() {
  local inst=$1 n=$2
  snapshot_metrics "$inst" "$n"
  fault_begin
  "$fleet" kill "$inst"
  sleep "$restart_after"
  if "$fleet" start "$inst"; then
    fault_done "SIGKILL $inst, restarted after ${restart_after}s"
  else
    fault_failed "$inst did not come back after SIGKILL"
  fi
}

restart_redis() {
  fault_begin
  redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do redis_up || break; sleep 0.1; done
  redis_up && { fault_failed "Redis did not shut down"; return; }
  sleep "$restart_after"
  start_redis
  for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  if redis_up; then fault_done "Redis shut down (nosave), started again after ${restart_after}s"; else fault_failed "Redis did not start again"; fi
}

kill_db_connections() {
  local ids killed=0
  fault_begin
  ids=$(mysql_root -e "SELECT id FROM information_schema.processlist WHERE user='$db_user'")
  for id in $ids; do
    mysql_root -e "KILL $id" 2>/dev/null && killed=$((killed + 1))
  done
  fault_done "KILLed $killed MariaDB connections of $db_user"
}

stall_db() {
  # One session holds every product row FOR UPDATE, so stock reservations (UPDATE products) wait
  # past checkout.step_timeout; plain reads are not blocked.
  fault_begin
  mysql_root -e "START TRANSACTION;
    SELECT COUNT(*) FROM (SELECT id FROM fleet_product.products FOR UPDATE) AS locked;
    SELECT SLEEP($stall_secs); ROLLBACK;" >/dev/null &
  stall_pid=$!
  local deadline=$((SECONDS + stall_secs + 30))
  while kill -0 "$stall_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if kill -0 "$stall_pid" 2>/dev/null; then
    kill "$stall_pid" 2>/dev/null || true
    fault_failed "the stalling session did not end within $((stall_secs + 30))s"
  elif wait "$stall_pid"; then
    fault_done "MariaDB stalled: fleet_product.products locked FOR UPDATE for ${stall_secs}s"
  else
    fault_failed "the stalling session failed"
  fi
  stall_pid=""
}

sigterm_drains() {
  local inst=$1 n=$2 log out drained=""
  log="$FLEET_DIR/logs/$inst.log"
  snapshot_metrics "$inst" "$n"
  local from
  from=$(($(wc -l <"$log") + 1))
  fault_begin
  if out=$("$fleet" stop "$inst"); then
    echo "$out"
    if awk -v from="$from" 'NR >= from && /draining in-flight calls/ { d = 1 }
        NR >= from && /"message":"stopped"/ { s = 1 } END { exit !(d && s) }' "$log"; then
      drained="SIGTERM $inst: ${out#fleet: stopped }, drain logged"
    else
      violation "$inst exited 0 on SIGTERM but its log shows no drain"
    fi
  else
    echo "$out"
    violation "$inst did not drain cleanly on SIGTERM: $out"
  fi
  # The fault lasts until the instance is back.
  if "$fleet" start "$inst"; then
    fault_done "${drained:-SIGTERM $inst (no clean drain)}, restarted"
  else
    fault_failed "$inst did not come back after SIGTERM"
  fi
}

at 0; kill_and_restart product-2 1
at 1; kill_and_restart cart-1 2
at 2; kill_and_restart checkout-2 3
at 3; restart_redis
at 4; kill_db_connections
at 5; stall_db
at 6; sigterm_drains product-1 7

say "faults done; waiting for the load to end"
load_rc=0
deadline=$((SECONDS + duration + 120))
while kill -0 "$load_pid" 2>/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    kill "$load_pid" 2>/dev/null || true
    violation "loadgen shop did not finish within $((duration + 120))s: killed"
    break
  fi
  sleep 1
done
wait "$load_pid" || load_rc=$?
load_pid=""
kill "$scrape_pid" 2>/dev/null || true
wait "$scrape_pid" 2>/dev/null || true
scrape_pid=""
case "$load_rc" in
  0) say "load finished" ;;
  2) violation "loadgen shop saw INTERNAL or UNKNOWN answers (exit 2)" ;;
  *) violation "loadgen shop failed (exit $load_rc)" ;;
esac

say "availability: checkouts over time against the faults and the instances' refusals"
availability_rc=0
if [ -s "$FLEET_DIR/loadgen.json" ]; then
  python3 "$repo/scripts/e2e-availability.py" --loadgen "$FLEET_DIR/loadgen.json" \
    --faults "$FLEET_DIR/faults.tsv" --scrapes "$FLEET_DIR/scrapes.tsv" --duration "$duration" \
    --violations "$FLEET_DIR/availability-violations.txt" >"$FLEET_DIR/availability.txt" 2>&1 \
    || availability_rc=$?
  cat "$FLEET_DIR/availability.txt"
  if [ "$availability_rc" != 0 ]; then
    violation "the availability analysis failed (exit $availability_rc)"
  elif [ -s "$FLEET_DIR/availability-violations.txt" ]; then
    while IFS= read -r v; do violation "availability: $v"; done <"$FLEET_DIR/availability-violations.txt"
  fi
else
  violation "loadgen shop wrote no report ($FLEET_DIR/loadgen.json): availability not checked"
fi

say "letting the fleet settle for ${settle}s"
sleep "$settle"
# A probe may be the first use of a connection the faults broke: give the fleet a few tries.
healthy_after=0
for _ in $(seq 1 10); do
  "$fleet" status >/dev/null 2>&1 && { healthy_after=1; break; }
  sleep 1
done
"$fleet" status || true
[ "$healthy_after" = 1 ] || violation "not every instance is alive, ready and passing after the run"

if [ -n "$prometheus_url" ]; then
  say "prometheus: every target up, every alert rule evaluating"
  python3 "$repo/scripts/prometheus-check.py" "$prometheus_url" "$FLEET_DIR/prometheus/targets.json" \
    --wait 60 || violation "prometheus does not see the whole fleet, or a rule fails (above)"
fi

say "invariants: loadgen check (recovery window ${recovery}s)"
check_rc=0
"$loadgen" check --mysql-url "$mysql_url" --db-prefix fleet_ --recovery-window "$recovery" \
  "${check_stock_args[@]+"${check_stock_args[@]}"}" >"$FLEET_DIR/check.txt" 2>&1 || check_rc=$?
cat "$FLEET_DIR/check.txt"
[ "$check_rc" = 0 ] || violation "loadgen check found violated invariants (exit $check_rc)"

say "metrics: INTERNAL / UNKNOWN answers of every instance"
bad_metrics=()
for inst in "${SERVICE_INSTANCES[@]}"; do
  curl -fsS -m 5 "http://127.0.0.1:$(admin_port "$inst")/metrics" >"$FLEET_DIR/metrics/$inst-final.txt" 2>/dev/null \
    || violation "cannot scrape $inst's /metrics"
done
for f in "$FLEET_DIR"/metrics/*.txt; do
  while IFS= read -r line; do
    bad_metrics+=("$(basename "$f" .txt): $line")
  done < <(awk '/^grpc_server_handled_total\{/ && /grpc_code="(Internal|Unknown)"/ && $NF + 0 > 0' "$f")
done
if [ ${#bad_metrics[@]} -gt 0 ]; then
  for m in "${bad_metrics[@]}"; do echo "  $m"; done
  violation "${#bad_metrics[@]} INTERNAL/UNKNOWN series with a non-zero count in /metrics"
fi

echo
echo "=== e2e summary ==="
echo "load: $shoppers shoppers, ${duration}s, loadgen exit $load_rc (report: $FLEET_DIR/logs/loadgen.log)"
echo "faults (seconds into the load):"
for f in "${faults[@]+"${faults[@]}"}"; do echo "  $f"; done
echo "loadgen report:"
sed 's/^/  /' "$FLEET_DIR/logs/loadgen.log" | tail -n 60
echo "availability ($FLEET_DIR/availability.txt):"
[ -f "$FLEET_DIR/availability.txt" ] && sed 's/^/  /' "$FLEET_DIR/availability.txt"
echo "invariants: $([ "$check_rc" = 0 ] && echo ok || echo "violated (exit $check_rc)") ($FLEET_DIR/check.txt)"
echo "INTERNAL/UNKNOWN in /metrics: ${#bad_metrics[@]} series"
if [ ${#violations[@]} -gt 0 ]; then
  echo "FAILED: ${#violations[@]} violation(s)"
  for v in "${violations[@]}"; do echo "  - $v"; done
  exit 1
fi
echo "e2e: ok"
