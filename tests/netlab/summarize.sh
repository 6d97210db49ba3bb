#!/usr/bin/env bash
# What tshark (an independent dissector, not ours) sees in captures: DNS query names and types, TLS
# ClientHellos over TCP (SNI, hello size, how many TCP segments carried it, largest frame) and
# QUIC Initials (SNI when tshark could reassemble the hello). Used to check the fixtures and to
# write their README.
#
#   summarize.sh FILE.pcap...
set -euo pipefail

command -v tshark >/dev/null || { echo "summarize.sh: tshark is not installed" >&2; exit 1; }

for file in "$@"; do
    echo "== $(basename "$file")  ($(stat -c %s "$file") bytes, $(capinfos -c -M "$file" | awk -F': *' '/Number of packets/ {print $2}') packets)"
    echo "-- DNS queries (name type transport)"
    tshark -n -r "$file" -Y 'dns.flags.response == 0' -T fields -e dns.qry.name -e dns.qry.type -e ip.proto \
        2>/dev/null | awk -F'\t' '{ t = $3 == 6 ? "tcp" : "udp"; print "   ", $1, $2, t }' | sort | uniq -c
    echo "-- TLS ClientHellos over TCP (sni hello_bytes segments max_frame_on_wire)"
    tshark -n -r "$file" -o tcp.desegment_tcp_streams:TRUE -Y 'tcp && tls.handshake.type == 1' -T fields \
        -e tls.handshake.extensions_server_name -e tls.handshake.length -e tcp.segment.count -e frame.len \
        2>/dev/null | awk -F'\t' '{ printf "    %s hello=%s segments=%s frame=%s\n",
            ($1 == "" ? "(no-sni)" : $1), $2, ($3 == "" ? 1 : $3), $4 }' | sort | uniq -c
    echo "-- QUIC long-header packets to the server (port bytes sni)"
    tshark -n -r "$file" -Y 'quic && udp.dstport != 53 && !icmp' -T fields -e udp.dstport -e udp.length \
        -e tls.handshake.extensions_server_name 2>/dev/null |
        awk -F'\t' '{ printf "    %s udp=%s sni=%s\n", $1, $2, ($3 == "" ? "-" : $3) }' | sort | uniq -c
done
