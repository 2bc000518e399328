#!/usr/bin/env bash
# make demo: two throw-away local Redis servers, sample data of every type, a live sync with
# Ferry while the source keeps taking writes, and Redis's own DEBUG DIGEST to show the result.
# It stops by itself and removes its servers and files.
set -euo pipefail
cd "$(dirname "$0")/.."

ferry=${FERRY:-bin/ferry}
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
}

start_redis() { # name port
  mkdir -p "$work/$1"
  redis-server --port "$2" --bind 127.0.0.1 --dir "$work/$1" --save '' --appendonly no \
    --enable-debug-command yes --logfile "$work/$1/redis.log" --daemonize no &
  pids+=($!)
  for _ in $(seq 1 100); do
    redis-cli -p "$2" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "demo: redis-server on port $2 did not start; see $work/$1/redis.log" >&2
  exit 1
}

src_port=$(free_port); start_redis source "$src_port"
dst_port=$(free_port); start_redis target "$dst_port"
src=(redis-cli -p "$src_port"); dst=(redis-cli -p "$dst_port")
echo "demo: source redis on 127.0.0.1:$src_port, destination on 127.0.0.1:$dst_port"

# Sample data of every type, in two databases, some with TTLs of an hour.
"${src[@]}" >/dev/null <<'CMDS'
SET greeting "hello from the source"
SET counter 41
INCR counter
SETEX session:1 3600 "expires in an hour"
RPUSH queue a b c d e
SADD tags red green blue
SADD small-ints 1 2 3 5 8 13
ZADD leaderboard 100 alice 95 bob 87 carol
HSET user:1 name Ada lang en visits 3
XADD events * kind signup user 1
XADD events * kind login user 1
XGROUP CREATE events mailers 0
XREADGROUP GROUP mailers m1 COUNT 1 STREAMS events >
PFADD visitors u1 u2 u3 u4
SETBIT flags 7 1
GEOADD places 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
SELECT 3
SET db3:key "in database 3"
HSET db3:hash f1 v1 f2 v2
CMDS
# Bulk data so the snapshot is not trivial.
"${src[@]}" DEBUG POPULATE 20000 bulk 64 >/dev/null
echo "demo: loaded sample data: $("${src[@]}" dbsize) keys in db 0, $("${src[@]}" -n 3 dbsize) in db 3"

"$ferry" sync --source "redis://127.0.0.1:$src_port" --target "redis://127.0.0.1:$dst_port" \
  --data-dir "$work/ferry" --log-format text --accept-warnings >"$work/ferry.log" 2>&1 &
ferry_pid=$!
pids+=($ferry_pid)

# Live writes while Ferry runs: through the snapshot and into the incremental phase.
for i in $(seq 1 400); do
  echo "RPUSH live:log $i"
  echo "INCR live:counter"
  [ $((i % 50)) -eq 0 ] && echo "HSET user:1 visits $i"
  [ $((i % 40)) -eq 0 ] && { sleep 1; echo "SELECT 3"; echo "SET db3:late $i"; echo "SELECT 0"; }
done | "${src[@]}" >/dev/null
echo "demo: wrote 400 list elements and counter increments while the sync ran"

# Wait until Ferry has acknowledged everything the source wrote.
caught_up=no
for _ in $(seq 1 200); do
  info=$("${src[@]}" info replication | tr -d '\r')
  master=$(sed -n 's/^master_repl_offset://p' <<<"$info")
  acked=$(sed -n 's/^slave0:.*offset=\([0-9]*\).*/\1/p' <<<"$info")
  if [ -n "$acked" ] && [ "$acked" = "$master" ]; then caught_up=yes; break; fi
  if ! kill -0 "$ferry_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
kill -INT "$ferry_pid" 2>/dev/null || true
wait "$ferry_pid" 2>/dev/null || true
echo "demo: ferry's log:"; sed 's/^/    /' "$work/ferry.log" | tail -n 15

# Ferry's own keys (heartbeat, checkpoint) live under ferry: on the source and destination.
"${src[@]}" --scan --pattern 'ferry:*' | xargs -r "${src[@]}" DEL >/dev/null
"${dst[@]}" --scan --pattern 'ferry:*' | xargs -r "${dst[@]}" DEL >/dev/null
sd=$("${src[@]}" debug digest); dd=$("${dst[@]}" debug digest)
echo "demo: caught up: $caught_up"
echo "demo: source      DEBUG DIGEST $sd ($("${src[@]}" dbsize) keys in db 0)"
echo "demo: destination DEBUG DIGEST $dd ($("${dst[@]}" dbsize) keys in db 0)"
echo "demo: live:counter source=$("${src[@]}" get live:counter) destination=$("${dst[@]}" get live:counter)"
if [ "$caught_up" = yes ] && [ "$sd" = "$dd" ]; then
  echo "demo: OK: the destination is identical to the source"
else
  echo "demo: FAILED: the destination differs from the source (see the log above)" >&2
  exit 1
fi
