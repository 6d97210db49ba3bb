#!/usr/bin/env bash
# Idle CPU of the agent daemon with all host sensors on (process events, 5 s process scans,
# listeners, inventory with file watching): `shadowai-collector quickstart` starts a collector and
# a real `shadowai-agent run`; this script reads the agent's utime+stime from /proc/PID/stat
# before and after a window and prints the share of one core.
#
#   scripts/bench-host-idle.sh [SECONDS]      # default 600; needs release builds:
#   cargo build --release -p shadowai-collector -p shadowai-agent
set -euo pipefail
window=${1:-600}
repo=$(cd "$(dirname "$0")/.." && pwd)
bin="${SHADOWAI_BIN_DIR:-$repo/target/release}"   # e.g. SHADOWAI_BIN_DIR=target/debug
data=$(mktemp -d /tmp/shadowai-idle.XXXXXX)
"$bin/shadowai-collector" quickstart --data-dir "$data" \
  --grpc-listen 127.0.0.1:27443 --http-listen 127.0.0.1:28080 \
  --agent-bin "$bin/shadowai-agent" --scan-interval 5 >"$data/quickstart.out" 2>&1 &
qs=$!
cleanup() { kill "$qs" 2>/dev/null || true; wait "$qs" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 1 120); do
  grep -q '^ready' "$data/quickstart.out" 2>/dev/null && break
  sleep 1
done
grep -q '^ready' "$data/quickstart.out" || { cat "$data/quickstart.out"; exit 1; }
agent=$(pgrep -P "$qs" -x shadowai-agent | head -1)
[ -n "$agent" ] || { echo "no agent child of quickstart $qs"; exit 1; }
sleep 15   # past start-up: first scan, inventory, enrollment
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks "$agent"); s0=$(date +%s.%N)
sleep "$window"
t1=$(ticks "$agent"); s1=$(date +%s.%N)
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$agent/status")
awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$hz" -v rss="$rss" 'BEGIN {
  cpu = (t1 - t0) / hz; wall = s1 - s0;
  printf "agent CPU %.2f s over %.0f s wall = %.3f %% of one core; RSS %d KiB\n", cpu, wall, 100 * cpu / wall, rss }'
# Which sensors were on: the agent's own status (sensor health and blind spots).
"$bin/shadowai-agent" status --config "$data/agent/agent.toml" | grep -iE "sensor|process|inventory|blind" || true
