#!/usr/bin/env bash
# Network lab: two namespaces joined by a veth pair, a DNS server answering every name locally, a
# TLS server, a UDP sink, and real clients (dig, glibc, curl, wget, openssl, gnutls-cli, python3,
# node, a rustls client, headless Chromium) driven against AI and benign names from plan.tsv.
# Nothing leaves the machine: the client namespace has one interface and no default route.
#
#   lab.sh up ID                    create namespaces sa-ID-srv / sa-ID-cli and start the servers
#   lab.sh run-clients ID [CLIENT]  run the plan's clients (all, or only the named ones) in sa-ID-cli
#   lab.sh offloads ID on|off       TSO/GSO/GRO on both veth ends (up leaves them off)
#   lab.sh down ID                  kill every process in both namespaces, delete them and the state
#   lab.sh fixtures OUTDIR [FAMILY] up, one tcpdump capture per client family (all, or those named:
#                                   dig getent curl wget openssl gnutls python node rustls
#                                   chromium-tcp-off ...) into OUTDIR/FAMILY.pcap, down
#   lab.sh check                    exit 0 if this machine can run the lab, else say what is missing
#
# ID: 1-12 characters [a-z0-9]. Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN). Environment:
#   NETLAB_RUSTLS_CLIENT   path of the shadowai-netlab-rustls binary (the `rustls` client is
#                          skipped with a message when unset)
#   NETLAB_STATE           parent of the per-lab state directory (default: /tmp)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PLAN="$HERE/plan.tsv"
SRV_IP=10.231.0.1
CLI_IP=10.231.0.2
# public_name of the served ECH config: what Chromium puts in the outer ClientHello (benign)
ECH_PUBLIC_NAME=ech-public.example.net
REQUIRED_TOOLS=(ip ethtool dnsmasq python3 openssl tcpdump dig getent curl wget gnutls-cli node chromium timeout ss)

die() {
    echo "lab.sh: $*" >&2
    exit 1
}

log() {
    echo "lab.sh: $*" >&2
}

# ---------------------------------------------------------------------------------------------
# names and state

set_lab() {
    local id=${1:-}
    [[ $id =~ ^[a-z0-9]{1,12}$ ]] || die "lab id must be 1-12 characters [a-z0-9], got '$id'"
    LAB_ID=$id
    SRV_NS="sa-$id-srv"
    CLI_NS="sa-$id-cli"
    STATE="${NETLAB_STATE:-/tmp}/shadowai-netlab-$id"
}

in_srv() { ip netns exec "$SRV_NS" "$@"; }
in_cli() { ip netns exec "$CLI_NS" "$@"; }

cmd_check() {
    local missing=() tool
    for tool in "${REQUIRED_TOOLS[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]} > 0)); then
        echo "missing tools: ${missing[*]} (Debian: tcpdump tshark dnsmasq-base dnsutils gnutls-bin openssl curl wget chromium iproute2 ethtool nodejs)"
        return 1
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "not root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN"
        return 1
    fi
    local probe="sa-check-$$"
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "cannot create a network namespace (ip netns add failed: unprivileged container?)"
        return 1
    fi
    ip netns del "$probe"
    echo "ok"
}

# Starts "$@" in the background and records its pid under $STATE/pids (the program itself, not a
# wrapper shell: `ip netns exec` and bash both exec into it) and in BG_PID.
start_bg() {
    local name=$1 log_file=$2
    shift 2
    "$@" >"$log_file" 2>&1 &
    BG_PID=$!
    echo "$BG_PID $name" >>"$STATE/pids"
}

wait_for() {
    local what=$1 tries=100
    shift
    until "$@" >/dev/null 2>&1; do
        ((tries-- > 0)) || die "timed out waiting for $what"
        sleep 0.1
    done
}

plan_lines() {
    # client name signals, comments and blank lines dropped
    awk '!/^[[:space:]]*#/ && NF >= 3 { print $1, $2, $3 }' "$PLAN"
}

# ---------------------------------------------------------------------------------------------
# up / down

cmd_up() {
    set_lab "$1"
    [[ $(cmd_check) == ok ]] || die "$(cmd_check)"
    [[ ! -e $STATE ]] || die "$STATE exists: lab $LAB_ID is up (or was not taken down: lab.sh down $LAB_ID)"
    mkdir -p "$STATE"
    : >"$STATE/pids"

    ip netns add "$SRV_NS"
    ip netns add "$CLI_NS"
    # created inside the namespaces: the root namespace never holds an interface of ours
    ip link add veth0 netns "$SRV_NS" type veth peer name veth0 netns "$CLI_NS"
    local ns ip
    for ns in "$SRV_NS" "$CLI_NS"; do
        [[ $ns == "$SRV_NS" ]] && ip=$SRV_IP || ip=$CLI_IP
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$ip/24" dev veth0
        ip -n "$ns" link set veth0 up
        # IPv4 only: no router solicitations or MLD reports in the captures
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    done
    set_offloads off

    # `ip netns exec` bind-mounts this over /etc/resolv.conf: glibc, curl, Chromium ask our dnsmasq
    mkdir -p "/etc/netns/$CLI_NS"
    echo "nameserver $SRV_IP" >"/etc/netns/$CLI_NS/resolv.conf"
    # and this over /etc/hosts: no name of the plan is answered from the machine's own file
    printf '127.0.0.1 localhost\n' >"/etc/netns/$CLI_NS/hosts"

    make_certificate
    start_servers
    log "lab $LAB_ID up: $CLI_NS ($CLI_IP) -> $SRV_NS ($SRV_IP), state in $STATE"
}

make_certificate() {
    local sans="DNS:$ECH_PUBLIC_NAME" name
    while read -r _ name _; do
        [[ $name == - ]] || sans+=",DNS:$name"
    done < <(plan_lines)
    sans+=",IP:$SRV_IP"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=shadowai netlab" -addext "subjectAltName=$sans" \
        -keyout "$STATE/key.pem" -out "$STATE/cert.pem" 2>"$STATE/openssl.log" ||
        die "openssl req failed: $(cat "$STATE/openssl.log")"
}

start_servers() {
    local dns_rr=() client name signals rdata
    while read -r client name signals; do
        if [[ $client == chromium-ech ]]; then
            rdata=$(python3 "$HERE/servers.py" ech-rr "$ECH_PUBLIC_NAME")
            dns_rr+=("--dns-rr=$name,65,$rdata")
        fi
    done < <(plan_lines)

    # --conf-file=/dev/null: nothing from /etc/dnsmasq.conf (the Debian service's port-53 setup);
    # answers every A with the server, NODATA for other types, never forwards anything
    start_bg dnsmasq "$STATE/dnsmasq.log" ip netns exec "$SRV_NS" dnsmasq -k \
        --conf-file=/dev/null --no-resolv --no-hosts --no-poll --pid-file= \
        --listen-address="$SRV_IP" --bind-interfaces \
        --address="/#/$SRV_IP" --local=/#/ "${dns_rr[@]}" \
        --log-queries --log-facility=-
    start_bg tls "$STATE/tls.log" ip netns exec "$SRV_NS" python3 -u "$HERE/servers.py" tls \
        "$SRV_IP" 443 "$STATE/cert.pem" "$STATE/key.pem"
    start_bg udp-sink "$STATE/udp.log" ip netns exec "$SRV_NS" python3 -u "$HERE/servers.py" udp \
        "$SRV_IP" 443

    wait_for "dnsmasq on $SRV_IP:53" bash -c "ip netns exec '$SRV_NS' ss -lun | grep -q '$SRV_IP:53 '"
    wait_for "the TLS server on $SRV_IP:443" bash -c "ip netns exec '$SRV_NS' ss -ltn | grep -q '$SRV_IP:443 '"
    wait_for "the UDP sink on $SRV_IP:443" bash -c "ip netns exec '$SRV_NS' ss -lun | grep -q '$SRV_IP:443 '"
}

# TSO/GSO/GRO on both ends: off, every segment is on the wire as the peer receives it (a big
# ClientHello spans segments); on (veth's default), a sender's write is one >MTU "super-frame"
set_offloads() {
    local state=$1 ns
    for ns in "$SRV_NS" "$CLI_NS"; do
        ip netns exec "$ns" ethtool -K veth0 tso "$state" gso "$state" gro "$state" 2>/dev/null ||
            die "ethtool -K veth0 tso/gso/gro $state failed in $ns"
    done
}

kill_namespace_processes() {
    local ns=$1 pid round
    for round in TERM TERM KILL; do
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -n $pids ]] || return 0
        for pid in $pids; do
            kill "-$round" "$pid" 2>/dev/null || true
        done
        sleep 0.3
    done
}

cmd_down() {
    set_lab "$1"
    local ns
    for ns in "$CLI_NS" "$SRV_NS"; do
        if ip netns list | grep -qw -- "$ns"; then
            kill_namespace_processes "$ns"
            ip netns del "$ns" || log "could not delete namespace $ns"
        fi
        rm -rf "/etc/netns/$ns"
    done
    # processes that left the namespaces (none should) but that we started
    if [[ -f $STATE/pids ]]; then
        local pid _name
        while read -r pid _name; do
            kill -KILL "$pid" 2>/dev/null || true
        done <"$STATE/pids"
    fi
    rm -rf "$STATE"
}

# ---------------------------------------------------------------------------------------------
# clients

# Each client function takes a name ("-" = none) and returns the client's exit status.

client_dig() {
    local type status=0
    for type in A AAAA HTTPS TXT; do
        in_cli dig +time=2 +tries=1 "$1" "$type" >/dev/null || status=$?
    done
    return $status
}
client_dig-tcp() { in_cli dig +tcp +time=2 +tries=1 "$1" A >/dev/null; }
client_getent() { in_cli getent ahosts "$1" >/dev/null; }
client_curl() { in_cli curl -sk --max-time 8 -o /dev/null "https://$1/"; }
client_wget() {
    in_cli wget -q --no-check-certificate -T 8 -t 1 -O /dev/null "https://$1/"
}
client_openssl() {
    in_cli timeout 10 openssl s_client -connect "$1:443" -servername "$1" </dev/null >/dev/null 2>&1
}
client_openssl-tls12() {
    in_cli timeout 10 openssl s_client -tls1_2 -connect "$1:443" -servername "$1" </dev/null >/dev/null 2>&1
}
# to the address: no DNS, the name only in the SNI
client_openssl-ip() {
    in_cli timeout 10 openssl s_client -connect "$SRV_IP:443" -servername "$1" </dev/null >/dev/null 2>&1
}
# a hello without SNI at all
client_openssl-nosni() {
    in_cli timeout 10 openssl s_client -connect "$SRV_IP:443" -noservername </dev/null >/dev/null 2>&1
}
client_gnutls() {
    in_cli timeout 10 gnutls-cli --insecure --port 443 "$1" </dev/null >/dev/null 2>&1
}
client_python() {
    in_cli timeout 10 python3 -c '
import socket, ssl, sys
name = sys.argv[1]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with socket.create_connection((name, 443), timeout=8) as raw:
    with context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
        while tls.recv(4096):
            pass
' "$1"
}
client_node() {
    in_cli timeout 10 node -e '
const https = require("https");
const req = https.get({ host: process.argv[1], path: "/", rejectUnauthorized: false, timeout: 8000 },
  (res) => { res.resume(); res.on("end", () => process.exit(res.statusCode === 200 ? 0 : 1)); });
req.on("error", (e) => { console.error(e.message); process.exit(1); });
req.on("timeout", () => { req.destroy(new Error("timeout")); });
' "$1"
}
client_rustls() {
    if [[ -z ${NETLAB_RUSTLS_CLIENT:-} ]]; then
        log "rustls client skipped: NETLAB_RUSTLS_CLIENT is not set (cargo build -p shadowai-e2e --bin shadowai-netlab-rustls)"
        return 0
    fi
    in_cli timeout 10 "$NETLAB_RUSTLS_CLIENT" "$1" 443
}

# Headless Chromium with a fresh profile; extra flags in "${@:2}". Exit status is not meaningful
# (--dump-dom prints whatever loaded), so it is not returned.
run_chromium() {
    local url=$1
    shift
    local dir
    dir=$(mktemp -d "$STATE/chromium.XXXXXX")
    HOME=$dir in_cli timeout -k 3 30 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-default-apps --disable-extensions --no-default-browser-check \
        --ignore-certificate-errors --user-data-dir="$dir/profile" --timeout=8000 \
        "$@" --dump-dom "$url" >"$dir/dom" 2>"$dir/log" || true
    # renderer, utility and zygote processes outlive a killed browser: end them by pid
    local pid
    for pid in $(ip netns pids "$CLI_NS" 2>/dev/null || true); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == chrom* ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$dir"
}

client_chromium-tcp-off() { run_chromium "https://$1/"; }
client_chromium-tcp-on() {
    set_offloads on
    run_chromium "https://$1/"
    set_offloads off
}
# QUIC to the UDP sink on :443: Initials are sent, nothing answers
client_chromium-quic-sink() {
    run_chromium "https://$1/" --enable-quic --origin-to-force-quic-on="$1:443"
}
# QUIC to :8443 where nothing listens: each attempt is one Initial and an ICMP port unreachable
client_chromium-quic-closed() {
    run_chromium "https://$1:8443/" --enable-quic --origin-to-force-quic-on="$1:8443"
}
# the name has an HTTPS record with an ECH config; our server cannot do ECH, Chromium falls back
client_chromium-ech() {
    run_chromium "https://$1/" --enable-features=EncryptedClientHello,UseDnsHttpsSvcb,AsyncDns
}

run_client() {
    local client=$1 name=$2 status=0
    declare -F "client_$client" >/dev/null || die "plan.tsv names an unknown client '$client'"
    "client_$client" "$name" || status=$?
    echo "ran $client $name $status"
}

cmd_run_clients() {
    set_lab "$1"
    shift
    [[ -d $STATE ]] || die "lab $LAB_ID is not up"
    local wanted=" $* " client name signals
    while read -r client name signals; do
        if [[ $# -eq 0 || $wanted == *" $client "* ]]; then
            run_client "$client" "$name"
        fi
    done < <(plan_lines)
}

# ---------------------------------------------------------------------------------------------
# fixtures

# dig and dig-tcp share dig.pcap, the openssl variants openssl.pcap; each Chromium variant has its own
family_of() {
    case $1 in
    chromium-*) echo "$1" ;;
    *) echo "${1%%-*}" ;;
    esac
}

cmd_fixtures() {
    local out=${1:-}
    [[ -n $out ]] || die "usage: lab.sh fixtures OUTDIR [FAMILY...]"
    shift
    local only=" $* "
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    local id="fx$$"
    trap "cmd_down $id" EXIT
    cmd_up "$id"
    local families=() family client name signals
    while read -r client name signals; do
        family=$(family_of "$client")
        [[ $only == "  " || $only == *" $family "* ]] || continue
        [[ " ${families[*]} " == *" $family "* ]] || families+=("$family")
    done < <(plan_lines)
    for family in "${families[@]}"; do
        local capture="$out/$family.pcap" tcpdump_pid
        # libpcap sizes its immediate-mode ring from the offload state at start: with offloads off
        # it truncates the super-frames of the offloads-on run to the MTU
        set_offloads on
        start_bg tcpdump "$STATE/tcpdump-$family.log" ip netns exec "$CLI_NS" \
            tcpdump -i veth0 -n -s 0 -U --immediate-mode -Z root -w "$capture"
        tcpdump_pid=$BG_PID
        wait_for "tcpdump to listen" grep -q "listening on" "$STATE/tcpdump-$family.log"
        set_offloads off
        while read -r client name signals; do
            [[ $(family_of "$client") == "$family" ]] && run_client "$client" "$name"
        done < <(plan_lines)
        sleep 1 # --immediate-mode, and a second for the last packets before SIGINT
        kill -INT "$tcpdump_pid"
        wait "$tcpdump_pid" || true
        log "$family: $(stat -c %s "$capture") bytes in $capture"
    done
}

# ---------------------------------------------------------------------------------------------

main() {
    local command=${1:-}
    shift || true
    case $command in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    run-clients) cmd_run_clients "$@" ;;
    fixtures) cmd_fixtures "$@" ;;
    offloads)
        set_lab "${1:-}"
        [[ ${2:-} == on || ${2:-} == off ]] || die "usage: lab.sh offloads ID on|off"
        set_offloads "$2"
        ;;
    check) cmd_check ;;
    *)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 2
        ;;
    esac
}

main "$@"
