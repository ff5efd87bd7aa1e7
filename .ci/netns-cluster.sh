#!/usr/bin/env bash
# A real multi-host cluster on one machine (issue 13): five `node` processes, each in its
# own Linux network namespace, joined by a bridge that lives in a namespace of its own, so
# they talk over real (virtual) Ethernet with addresses that exist only inside those
# namespaces (10.77.0.1-5). Nothing is added to the root namespace.
#
# What it checks, from the lines the nodes print each round for each peer
# (`HH:MM:SS.mmm [me] round N: PEER ok: ...` / `... PEER failed: WHY`):
#   1. the full mesh forms: every node has a successful call to every other;
#   2. after one node's link is cut (its port on the bridge is set down: a silent cut, its
#      packets vanish with no reset, so only grid's ping timeout can notice), each other
#      node reports its calls to it failing, with an error that says why, within the
#      documented detection time: two ping intervals (ManagerBuilder::ping_interval),
#      plus one round and generous slack for a noisy machine;
#   3. while it is cut, the others keep calling each other without a single failure;
#   4. when the link is back, the cut node and every other call each other again (the
#      connections redial: dial timeout 5 s, backoff up to 5 s, hence a bound of 20 s);
#   5. a join: the nodes follow a peer file (`--peers-file`, re-read every 200 ms); a sixth
#      node is added to it and started, and every node calls it and it calls every node;
#   6. a leave: one node is taken out of the file; every other node drains its connection
#      to it and forgets it (grid logs "peer removed"), stops calling it, and no call of
#      theirs fails on the way; then the node that left is stopped.
# The nodes run with a 500 ms ping interval and a round every 500 ms, so the whole run
# takes about ten seconds; every wait is bounded (a minute at worst, then it fails).
#
# It needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2. Where namespaces, veth
# pairs or bridges cannot be made (not root, an unprivileged container) it prints
# "skipped: <why>" and exits 0. It removes every namespace it made on exit, Ctrl-C
# included (processes killed, namespaces deleted, which deletes their links), checks that
# none is left, and keeps the node logs only when a check failed (it prints them too).
#
#   cargo build -p grid-examples --example node
#   sudo .ci/netns-cluster.sh          # GRID_NODE_BIN=path/to/node to use another build
#
# `.ci/run` runs it after the two-process section.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=5           # n1 .. n5 at 10.77.0.1 .. 10.77.0.5, started at once
joiner=6          # n6 at 10.77.0.6, started later (the join)
leaver=2          # the node taken out of the peer file (the leave)
victim=3          # the node whose link is cut
ping_ms=500       # --ping-every: a peer silent for 2 x 500 ms is declared dead
every_ms=500      # --every: one round of calls per 500 ms
slack_ms=2000     # added to every time bound, for noisy machines
cut_hold_ms=3000  # how long the link stays down after every node has noticed
mesh_bound_ms=20000
resume_bound_ms=20000
detect_bound_ms=$((2 * ping_ms + every_ms + slack_ms))
port=7000

node_bin=${GRID_NODE_BIN:-${CARGO_TARGET_DIR:-target}/debug/examples/node}
if [ ! -x "$node_bin" ]; then
  echo "netns-cluster: no node binary at $node_bin;" \
    "build it first: cargo build -p grid-examples --example node" >&2
  exit 1
fi
node_bin=$(cd "$(dirname "$node_bin")" && pwd)/$(basename "$node_bin")

prefix="gridnet-$$"
bridge_ns="$prefix-br"
made=()           # namespaces made so far, in order
logdir=           # the nodes' logs, made once the network is up
keep_logs=${GRID_NETNS_KEEP_LOGS:-0}

skip() {
  echo "skipped: $*"
  exit 0
}

say() {
  echo "netns-cluster: $*"
}

# The processes in the namespaces made so far.
ours() {
  local ns
  for ns in "${made[@]}"; do
    ip netns pids "$ns" 2>/dev/null
  done
}

cleanup() {
  local status=$? ns left pids
  set +e
  # Every process in our namespaces is one we started (a node, or the `timeout` around it):
  # Ctrl-C first (a node then shuts down), and whatever is left after 3 s is killed.
  pids=$(ours)
  [ -z "$pids" ] || kill -INT $pids 2>/dev/null
  for _ in $(seq 30); do
    [ -n "$(ours)" ] || break
    sleep 0.1
  done
  pids=$(ours)
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
  wait 2>/dev/null
  for ns in "${made[@]}"; do
    ip netns del "$ns" 2>/dev/null
  done
  left=$(ip netns list 2>/dev/null | grep -o "^$prefix-[^ ]*")
  if [ -n "$left" ]; then
    echo "netns-cluster: cleanup left namespaces behind: $left" >&2
    status=1
  elif [ "${#made[@]}" -gt 0 ]; then
    say "cleaned up ${#made[@]} namespaces (none of $prefix-* left)"
  fi
  if [ -z "$logdir" ]; then
    :
  elif [ "$keep_logs" = 1 ]; then
    echo "netns-cluster: node logs kept in $logdir" >&2
  else
    rm -rf "$logdir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  local i
  keep_logs=1
  echo "netns-cluster: FAILED: $*" >&2
  for i in $(seq "$joiner"); do
    [ -f "$logdir/n$i.log" ] || continue
    echo "---- n$i (last 60 lines of $logdir/n$i.log)" >&2
    tail -n 60 "$logdir/n$i.log" >&2
  done
  exit 1
}

# --- the namespaces, or a skip with the reason ------------------------------------------

command -v ip > /dev/null || skip "no 'ip' command (iproute2)"
# The real test of privilege: make the first namespace.
if ! err=$(ip netns add "$bridge_ns" 2>&1); then
  skip "cannot create a network namespace (uid $(id -u)): ${err:-ip netns add failed}"
fi
made+=("$bridge_ns")

# Every name first, so that cleanup finds whatever a failed setup left.
for i in $(seq "$joiner"); do made+=("$prefix-n$i"); done
setup() {
  local i ns
  ip -n "$bridge_ns" link add br0 type bridge || return
  ip -n "$bridge_ns" link set br0 up || return
  for i in $(seq "$joiner"); do
    ns="$prefix-n$i"
    ip netns add "$ns" || return
    # v$i in the bridge's namespace, eth0 in the node's: both names are private.
    ip -n "$bridge_ns" link add "v$i" type veth peer name eth0 netns "$ns" || return
    ip -n "$bridge_ns" link set "v$i" master br0 up || return
    ip -n "$ns" addr add "10.77.0.$i/24" dev eth0 || return
    ip -n "$ns" link set eth0 up || return
    ip -n "$ns" link set lo up || return
  done
}
if ! err=$(setup 2>&1); then
  skip "cannot build the virtual network (veth pairs, a bridge): $err"
fi
logdir=$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX")
say "namespaces $bridge_ns and $prefix-n1..n$joiner, bridge br0, 10.77.0.1-$joiner/24"

# --- the nodes ----------------------------------------------------------------------------

# The peer file every node follows (nodes share the file system, not the network): one
# `NAME URL` line for each of nodes 1..$1 except $2, written whole and renamed into place.
peers_file="$logdir/peers"
write_peers() {
  local j
  for j in $(seq "$1"); do
    [ "$j" = "${2:-0}" ] || echo "n$j ws://10.77.0.$j:$port/grid/v1"
  done > "$peers_file.tmp"
  mv "$peers_file.tmp" "$peers_file"
}

start_node() {
  RUST_LOG=grid=info ip netns exec "$prefix-n$1" \
    timeout 110 "$node_bin" --name "n$1" --listen "10.77.0.$1:$port" \
    --peers-file "$peers_file" --peers-every 200 \
    --token netns --every "$every_ms" --ping-every "$ping_ms" \
    > "$logdir/n$1.log" 2>&1 &
}

write_peers "$nodes"
for i in $(seq "$nodes"); do
  start_node "$i"
done

# --- reading the logs ---------------------------------------------------------------------

# Milliseconds since midnight UTC, the clock the nodes print.
now_ms() {
  echo $(( $(date +%s%3N) % 86400000 ))
}

# first LOG PEER STATUS SINCE [line]: the time (ms since midnight) of the first line in LOG
# that reports a call to PEER with STATUS (ok or failed) at or after SINCE, or with `line`
# that line itself; nothing if there is none.
first() {
  awk -v peer="$2" -v status="$3" -v since="$4" -v what="${5:-time}" '
    $3 == "round" && $5 == peer && $6 == status ":" {
      split($1, t, /[:.]/)
      ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]
      if ((ms - since + 86400000) % 86400000 < 43200000) {
        print (what == "line" ? $0 : ms)
        exit
      }
    }' "$1"
}

# wait_all BOUND_MS DESCRIPTION CHECK: polls CHECK (a command, true when done) every
# 100 ms until it holds, or fails the run after BOUND_MS.
wait_all() {
  local bound=$1 what=$2 start
  shift 2
  start=$(now_ms)
  until "$@"; do
    if [ $(( ($(now_ms) - start + 86400000) % 86400000 )) -gt "$bound" ]; then
      fail "$what: not within $bound ms"
    fi
    sleep 0.1
  done
}

others() {
  local i
  for i in $(seq "$nodes"); do [ "$i" = "$victim" ] || echo "$i"; done
}

# Every node I in $2.. has an ok call to every other node J in $2.. since $1.
pairs_ok_since() {
  local since=$1 i j
  shift
  for i in "$@"; do
    for j in "$@"; do
      [ "$i" = "$j" ] && continue
      [ -n "$(first "$logdir/n$i.log" "n$j" ok "$since")" ] || return 1
    done
  done
}

# loss I SINCE: why node I dropped its connection to the victim at or after SINCE, from
# grid's warning in its log (`2026-01-01T12:34:56.789012Z  WARN ... connection lost
# local=nI remote=nV reason=...`): `peer silent for ...` (or `the peer has not read for
# ...`) if its ping timeout noticed; nothing if it has not logged one.
loss() {
  awk -v since="$2" -v lost="connection lost local=n$1 remote=n$victim reason=" '
    index($0, lost) {
      split(substr($1, 12, 12), t, /[:.]/)
      ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]
      if ((ms - since + 86400000) % 86400000 < 43200000) {
        print substr($0, index($0, lost) + length(lost))
        exit
      }
    }' "$logdir/n$1.log"
}

# Every other node has a failed call to the victim since $1, and has logged why.
victim_failed_since() {
  local i
  for i in $(others); do
    [ -n "$(first "$logdir/n$i.log" "n$victim" failed "$1")" ] || return 1
    [ -n "$(loss "$i" "$1")" ] || return 1
  done
}

# The victim and every other node call each other successfully since $1.
victim_ok_since() {
  local i
  for i in $(others); do
    [ -n "$(first "$logdir/n$i.log" "n$victim" ok "$1")" ] || return 1
    [ -n "$(first "$logdir/n$victim.log" "n$i" ok "$1")" ] || return 1
  done
}

all=$(seq "$nodes")
# shellcheck disable=SC2086
wait_all "$mesh_bound_ms" "the full mesh (every node calling every other)" \
  pairs_ok_since "$(now_ms)" $all
say "(1) full mesh: all $nodes nodes called each of the other $((nodes - 1))"

# --- the cut ------------------------------------------------------------------------------

# Let a couple of rounds pass on the formed mesh, so the cut finds connections in use.
sleep 1
cut_at=$(now_ms)
ip -n "$bridge_ns" link set "v$victim" down
say "cut: n$victim's port on the bridge is down (silent: its packets vanish)"

wait_all "$detect_bound_ms" \
  "(2) the others report calls to n$victim failing (documented: 2 x ping ${ping_ms} ms)" \
  victim_failed_since "$cut_at"
worst=0
for i in $(others); do
  at=$(first "$logdir/n$i.log" "n$victim" failed "$cut_at")
  took=$(( (at - cut_at + 86400000) % 86400000 ))
  if [ "$took" -gt "$worst" ]; then worst=$took; fi
  l=$(first "$logdir/n$i.log" "n$victim" failed "$cut_at" line)
  why=${l#*failed: }
  say "    n$i: a call to n$victim failed $took ms after the cut: $why"
  say "        its connection was dropped because: $(loss "$i" "$cut_at")"
  case "$why" in
    *"not connected"* | *deadline*) ;;
    *) fail "n$i's error for the lost n$victim is not a clear one: $why" ;;
  esac
  case "$(loss "$i" "$cut_at")" in
    "peer silent for"* | "the peer has not read for"*) ;;
    *) fail "n$i did not notice the silent cut through its ping timeout: $(loss "$i" "$cut_at")" ;;
  esac
done
say "(2) every other node failed its calls to n$victim within $worst ms" \
  "(bound: 2 x ping $ping_ms + round $every_ms + slack $slack_ms = $detect_bound_ms ms)"

# While n$victim is away, the others keep calling each other.
noticed_at=$(now_ms)
# shellcheck disable=SC2046
wait_all $((cut_hold_ms + slack_ms)) "(3) the others keep calling each other during the cut" \
  pairs_ok_since "$noticed_at" $(others)
sleep "$((cut_hold_ms / 1000))"
up_at=$(now_ms)
ip -n "$bridge_ns" link set "v$victim" up
say "link restored"
for i in $(others); do
  bad=$(awk -v victim="n$victim" -v from="$cut_at" -v to="$up_at" '
    $3 == "round" && $6 == "failed:" && $5 != victim {
      split($1, t, /[:.]/)
      ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]
      if ((ms - from + 86400000) % 86400000 <= (to - from + 86400000) % 86400000) print
    }' "$logdir/n$i.log")
  [ -z "$bad" ] || fail "(3) n$i failed calls to a node that was not cut: $bad"
done
say "(3) during the $(( (up_at - cut_at + 86400000) % 86400000 )) ms cut, the other" \
  "$((nodes - 1)) nodes called each other with no failure"

# --- the return ---------------------------------------------------------------------------

wait_all "$resume_bound_ms" "(4) n$victim and the others call each other again" \
  victim_ok_since "$up_at"
worst=0
for i in $(others); do
  for at in $(first "$logdir/n$i.log" "n$victim" ok "$up_at") \
    $(first "$logdir/n$victim.log" "n$i" ok "$up_at"); do
    took=$(( (at - up_at + 86400000) % 86400000 ))
    if [ "$took" -gt "$worst" ]; then worst=$took; fi
  done
done
say "(4) n$victim and all the others called each other again within $worst ms of the link" \
  "returning (bound: $resume_bound_ms ms)"
# shellcheck disable=SC2086
wait_all 10000 "the full mesh again" pairs_ok_since "$up_at" $all
say "(4) the full mesh again"

# --- the join -----------------------------------------------------------------------------

join_at=$(now_ms)
write_peers "$joiner"
start_node "$joiner"
# shellcheck disable=SC2046
wait_all "$mesh_bound_ms" "(5) n$joiner joins: it and every node call each other" \
  pairs_ok_since "$join_at" $(seq "$joiner")
say "(5) n$joiner was added to the peer file and started; it and all $nodes nodes called" \
  "each other within $(( ($(now_ms) - join_at + 86400000) % 86400000 )) ms"

# --- the leave ----------------------------------------------------------------------------

stayers() {
  local i
  for i in $(seq "$joiner"); do [ "$i" = "$leaver" ] || echo "$i"; done
}

# removed_at I: when node I logged that it removed the leaver (ms since midnight), if it has.
removed_at() {
  awk -v what="peer removed: its connection drains local=n$1 peer=n$leaver" '
    index($0, what) {
      split(substr($1, 12, 12), t, /[:.]/)
      print ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]
      exit
    }' "$logdir/n$1.log"
}

all_removed() {
  local i
  for i in $(stayers); do [ -n "$(removed_at "$i")" ] || return 1; done
}

leave_at=$(now_ms)
write_peers "$joiner" "$leaver"
wait_all 10000 "(6) every node removes n$leaver" all_removed
last_removal=$leave_at
for i in $(stayers); do
  at=$(removed_at "$i")
  if [ $(( (at - last_removal + 86400000) % 86400000 )) -lt 43200000 ]; then last_removal=$at; fi
done
# A round under way at the removal may still end on n$leaver; two rounds later none does.
sleep $(( (3 * every_ms + slack_ms) / 1000 ))
quiet_from=$(( (last_removal + 2 * every_ms) % 86400000 ))
# shellcheck disable=SC2046
wait_all 10000 "(6) the others keep calling each other" \
  pairs_ok_since "$quiet_from" $(stayers)
for i in $(stayers); do
  bad=$(awk -v from="$leave_at" -v quiet="$quiet_from" -v leaver="n$leaver" '
    $3 == "round" {
      split($1, t, /[:.]/)
      ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]
      if ((ms - from + 86400000) % 86400000 >= 43200000) next
      if ($6 == "failed:") print
      else if ($5 == leaver && (ms - quiet + 86400000) % 86400000 < 43200000) print
    }' "$logdir/n$i.log")
  [ -z "$bad" ] || fail "(6) n$i failed a call, or still called n$leaver after removing it: $bad"
done
pids=$(ip netns pids "$prefix-n$leaver")
kill -INT $pids 2>/dev/null || true
say "(6) n$leaver left the peer file: all $((joiner - 1)) others drained and forgot it" \
  "within $(( (last_removal - leave_at + 86400000) % 86400000 )) ms, stopped calling it," \
  "and failed no call; n$leaver was stopped"
say "passed: full mesh, cut noticed, others unaffected, mesh restored, a join, a leave"
