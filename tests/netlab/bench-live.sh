#!/usr/bin/env bash
# Live-capture cost: the agent's CPU and peak memory while bulk TCP crosses the lab's veth.
#
#   tests/netlab/bench-live.sh [AGENT_BIN] [SECONDS] [PACKETS_PER_SECOND]
#
# Defaults: target/release/shadowai-agent, 60 s, 20000 packets/s. As root. For each direction
# (download into the client namespace, upload from it) it brings up a lab (lab.sh), starts
# `shadowai-agent sniff --json` inside the client namespace, waits until it captures, then sends
# iperf3 TCP on port 443 (the port the kernel filter cares about: HTTPS) at SEGMENT bytes per segment
# and PPS*SEGMENT bytes/s: first with TSO/GSO/GRO off (every segment is one packet on the wire: the
# target's packet rate), then with them on (the default: the same bytes in fewer, larger frames).
# Measured over the traffic window only: agent CPU from /proc/PID/stat (utime+stime deltas), peak
# RSS from /proc/PID/status VmHWM, packets from veth0's counters in the client namespace.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AGENT=${1:-$HERE/../../target/release/shadowai-agent}
SECONDS_PER_RUN=${2:-60}
PPS=${3:-20000}
SEGMENT=1460 # TCP_MAXSEG for a 1,500-byte MTU: 1,448-byte payloads with timestamps, as real uploads send
BULK_IP=10.231.0.3 # a second server address: :443 on 10.231.0.1 is the lab's TLS server
TICKS=$(getconf CLK_TCK)

[[ -x $AGENT ]] || { echo "no agent binary at $AGENT (cargo build --release -p shadowai-agent)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "iperf3 is not installed (apt-get install iperf3)" >&2; exit 1; }

id="bench$$"
cleanup() { bash "$HERE/lab.sh" down "$id" >/dev/null 2>&1 || true; }
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
packets() { ip netns exec "sa-$id-cli" cat "/sys/class/net/veth0/statistics/$1_packets"; }

run_direction() {
    local direction=$1 offloads=$2 reverse=()
    [[ $direction == download ]] && reverse=(-R)
    bash "$HERE/lab.sh" up "$id" 2>/dev/null
    bash "$HERE/lab.sh" offloads "$id" "$offloads"
    ip -n "sa-$id-srv" addr add "$BULK_IP/24" dev veth0
    ip netns exec "sa-$id-srv" iperf3 -s -B "$BULK_IP" -p 443 -1 >/dev/null 2>&1 &
    local log
    log=$(mktemp)
    ip netns exec "sa-$id-cli" "$AGENT" sniff --json >/dev/null 2>"$log" &
    local agent=$!
    local tries=100
    until grep -q "sniff: capturing on" "$log"; do
        ((tries-- > 0)) || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    local comm
    comm=$(basename "$AGENT")
    [[ $(cat "/proc/$agent/comm") == "${comm:0:15}" ]] || { echo "pid $agent is not the agent" >&2; exit 1; }
    sleep 1

    local ticks_before rx_before tx_before started ended
    ticks_before=$(cpu_ticks "$agent")
    rx_before=$(packets rx)
    tx_before=$(packets tx)
    started=$(date +%s.%N)
    ip netns exec "sa-$id-cli" iperf3 -c "$BULK_IP" -p 443 "${reverse[@]}" -t "$SECONDS_PER_RUN" \
        -M "$SEGMENT" -b "$((PPS * SEGMENT * 8))" >/dev/null
    ended=$(date +%s.%N)
    local ticks_after rx_after tx_after hwm
    ticks_after=$(cpu_ticks "$agent")
    rx_after=$(packets rx)
    tx_after=$(packets tx)
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$agent/status")
    kill -TERM "$agent"
    wait "$agent" 2>/dev/null || true
    local summary
    summary=$(grep -o 'sniff: [0-9]* frames captured.*' "$log" | head -n 1 || true)
    rm -f "$log"
    cleanup

    awk -v dir="$direction" -v offloads="$offloads" -v t0="$started" -v t1="$ended" -v ticks=$((ticks_after - ticks_before)) \
        -v hz="$TICKS" -v rx=$((rx_after - rx_before)) -v tx=$((tx_after - tx_before)) -v hwm="$hwm" \
        -v summary="$summary" 'BEGIN {
            secs = t1 - t0
            printf "| %-8s | %-3s | %6.1f | %8.0f | %8.0f | %9.0f | %6.2f %% | %6.1f MB |\n",
                dir, offloads, secs, rx / secs, tx / secs, (rx + tx) / secs, 100 * ticks / hz / secs, hwm / 1024
            print "  agent: " summary > "/dev/stderr"
        }'
}

echo "agent: $AGENT ($(stat -c %s "$AGENT") bytes); $SECONDS_PER_RUN s per direction; target $PPS data segments/s of $SEGMENT B"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r)"
echo
echo "| traffic  | TSO/GSO/GRO | secs | rx pkt/s | tx pkt/s | total pkt/s | agent CPU (of 1 core) | agent peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
# offloads off: one packet per segment, the 20,000 packets/s of the target
run_direction download off
run_direction upload off
# offloads on (veth's and most NICs' default): the same bytes in GSO super-frames, one per write
run_direction download on
run_direction upload on
