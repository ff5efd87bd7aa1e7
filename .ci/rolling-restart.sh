#!/usr/bin/env bash
# A rolling restart under load (issue 24). Five `node` processes keep each other busy
# (`--load`: idempotent gets, plain puts, bulk_put streams of 300 entries); each in turn is
# stopped gracefully (SIGTERM: it drains) and started again. Then all stop, and every run
# of every node reports its outcomes. Passes when no call failed after it may have run
# (every failure says "not executed"), no idempotent call failed at all (each was made
# again until its peer was back), and no stream failed.
#
#   .ci/rolling-restart.sh [path/to/node]     (default target/debug/examples/node)
set -euo pipefail

bin=${1:-target/debug/examples/node}
nodes=5
base=17300
dir=$(mktemp -d)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

fail() {
  echo "rolling restart: FAILED: $*"
  for f in "$dir"/*.log; do echo "--- $f"; tail -n 20 "$f"; done
  exit 1
}

peers_of() {
  for j in $(seq 1 "$nodes"); do
    [ "$j" = "$1" ] || printf -- '--peer n%s=ws://127.0.0.1:%s/grid/v1 ' "$j" $((base + j))
  done
}

# start NODE RUN: starts node nNODE, its output in n<NODE>.<RUN>.log.
start() {
  # shellcheck disable=SC2046 # the peer flags are meant to split
  "$bin" --name "n$1" --listen "127.0.0.1:$((base + $1))" $(peers_of "$1") --token rr \
    --every 1000 --load > "$dir/n$1.$2.log" 2>&1 &
  pids[$1]=$!
}

# wait_for FILE PATTERN SECONDS
wait_for() {
  for _ in $(seq $(($3 * 10))); do
    grep -qs "$2" "$1" && return 0
    sleep 0.1
  done
  fail "\"$2\" not in $1 within $3 s"
}

# stop NODE: SIGTERM, then its graceful exit within 30 s.
stop() {
  local p=${pids[$1]}
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$p" 2>/dev/null && fail "n$1 did not stop within 30 s of SIGTERM"
  wait "$p" || fail "n$1 exited with status $?"
}

for i in $(seq 1 "$nodes"); do start "$i" 0; done
for i in $(seq 1 "$nodes"); do wait_for "$dir/n$i.0.log" "connected to all $((nodes - 1)) peers" 30; done
sleep 2
for i in $(seq 1 "$nodes"); do
  stop "$i"
  echo "rolling restart: n$i stopped gracefully; starting it again"
  start "$i" 1
  wait_for "$dir/n$i.1.log" "connected to all $((nodes - 1)) peers" 30
  sleep 1
done
# What the last runs counted up to here (they print their counts every second); the final
# stop is not part of the rolling restart: peers leaving for good fail what waits for them.
sleep 1.5
for i in $(seq 1 "$nodes"); do
  grep " load: " "$dir/n$i.1.log" | tail -n 1 > "$dir/n$i.1.counts"
done
for i in $(seq 1 "$nodes"); do kill -TERM "${pids[$i]}"; done
for i in $(seq 1 "$nodes"); do stop "$i"; done

total_ok=0
total_not=0
total_streams=0
total_retries=0
for f in "$dir"/n*.0.log "$dir"/n*.1.counts; do
  # A first run's last line: its counts when it stopped.
  line=$(grep " load: " "$f" | tail -n 1) || fail "no load line in $f"
  field() { echo "$line" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
  ok=$(field ok)
  [ "$ok" -gt 0 ] || fail "$f: no call succeeded"
  [ "$(field may_have_executed)" = 0 ] || fail "$f: calls failed after they may have run: $line"
  [ "$(field idempotent_failed)" = 0 ] || fail "$f: idempotent calls failed: $line"
  [ "$(field streams_failed)" = 0 ] || fail "$f: streams failed: $line"
  total_ok=$((total_ok + ok))
  total_not=$((total_not + $(field not_executed)))
  total_streams=$((total_streams + $(field streams_ok)))
  total_retries=$((total_retries + $(field retries)))
done
[ "$total_streams" -gt 0 ] || fail "no stream ran"
echo "rolling restart: passed: $nodes nodes restarted in turn under load;" \
  "$total_ok calls and $total_streams streams succeeded, $total_not calls refused as not executed," \
  "$total_retries idempotent calls made again, none lost"
rm -rf "$dir"
