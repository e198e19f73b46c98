#!/bin/bash
# Instructions per GetProduct of `loadgen serve-product` (near-cache hit) and `serve-bare`, each
# under callgrind: after 1000 warm-up calls the counters are zeroed, CALLS calls are driven at
# concurrency 16 (`loadgen drive`), then dumped. Needs valgrind, Redis at 127.0.0.1:6379 and a
# release loadgen with debug symbols (CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release -p loadgen).
# usage: scripts/callgrind-calls.sh <loadgen binary> <output dir under /tmp/cpuprof> [CALLS]
set -u
BIN=$1; TAG=$2; CALLS=${3:-5000}; WARM=1000
D=/tmp/cpuprof/$TAG; rm -rf $D; mkdir -p $D
run_one() { # name args...
  local name=$1; shift
  mkfifo $D/$name.in
  valgrind --tool=callgrind --callgrind-out-file=$D/$name.out \
      --dump-instr=no --collect-jumps=no $BIN "$@" < $D/$name.in > $D/$name.stdout 2> $D/$name.stderr &
  local vpid=$!
  exec {fd}>$D/$name.in
  for i in $(seq 1 900); do grep -q '^READY' $D/$name.stdout 2>/dev/null && break; sleep 1; done
  local ready=$(grep '^READY' $D/$name.stdout | head -1 | cut -d' ' -f2-)
  local addr=$(echo "$ready" | python3 -c 'import json,sys; print(json.load(sys.stdin)["addr"])')
  local id=$(echo "$ready" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("product_id", 0))')
  [ "$id" != 0 ] && ID=$id
  echo "$name ready at $addr (valgrind pid $vpid), id $ID"
  $BIN drive --addr $addr --id $ID --calls $WARM --concurrency 16 $EXTRA > $D/$name.drive0 2>&1 || cat $D/$name.drive0
  callgrind_control -z $vpid > /dev/null
  $BIN drive --addr $addr --id $ID --calls $CALLS --concurrency 16 2>&1 | tail -1
  callgrind_control -d measured $vpid > /dev/null
  sleep 2
  exec {fd}>&-
  wait $vpid
  local f=$(ls $D/$name.out.* | head -1)
  local ir=$(grep -m1 '^summary:\|^totals:' $f | awk '{print $2}')
  echo "$name: $ir Ir over $CALLS calls = $((ir / CALLS)) Ir/call  ($f)"
}
ID=0; EXTRA="--print-payload"
run_one product serve-product --cache-url redis://127.0.0.1:6379
PAYLOAD=$(head -1 $D/product.drive0)
EXTRA=""
run_one bare serve-bare --payload-hex $PAYLOAD
