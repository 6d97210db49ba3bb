#!/usr/bin/env python3
"""Server side of the network lab (run inside the server namespace by lab.sh).

  servers.py tls ADDR PORT CERT KEY   HTTPS server (HTTP/1.1 over TLS) answering every name with
                                      one self-signed certificate; the handshake runs in the
                                      connection's own thread so a stalled client blocks nobody
  servers.py udp ADDR PORT            UDP sink: reads datagrams (QUIC Initials) and never answers
  servers.py ech-rr PUBLIC_NAME       prints, as hex, the RDATA of a DNS HTTPS record (type 65)
                                      carrying alpn and an ECHConfigList whose public name is
                                      PUBLIC_NAME (for dnsmasq's dns-rr=)

Standard library only: the lab must run on a fresh Debian machine with python3.
"""

import http.server
import os
import socket
import ssl
import struct
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"netlab ok\n"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_POST = do_GET

    def log_message(self, fmt, *args):
        sys.stderr.write("tls: %s %s\n" % (self.client_address[0], fmt % args))


class TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    context = None

    def finish_request(self, request, client_address):
        # runs in the per-connection thread (ThreadingMixIn): a client that never finishes its
        # handshake (a QUIC-only or ECH-confused browser) holds only its own thread
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as error:
            sys.stderr.write("tls: handshake with %s failed: %s\n" % (client_address[0], error))
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        sys.stderr.write("tls: connection from %s ended with an error\n" % (client_address[0],))


def serve_tls(addr, port, cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    TlsServer.context = context
    server = TlsServer((addr, int(port)), Handler)
    sys.stderr.write("tls: listening on %s:%s\n" % (addr, port))
    sys.stderr.flush()
    server.serve_forever()


def serve_udp(addr, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, int(port)))
    sys.stderr.write("udp: sink on %s:%s\n" % (addr, port))
    sys.stderr.flush()
    count = 0
    while True:
        data, peer = sock.recvfrom(65535)
        count += 1
        sys.stderr.write("udp: datagram %d from %s:%d, %d bytes\n" % (count, peer[0], peer[1], len(data)))
        sys.stderr.flush()


def ech_https_rdata(public_name):
    """RDATA of an HTTPS RR (RFC 9460) with alpn=h2,http/1.1 and ech=<ECHConfigList>.

    The ECHConfig (version 0xfe0d) has a fresh random X25519 public key, HKDF-SHA256 +
    AES-128-GCM, and `public_name` as the name a client puts in the outer ClientHello. Nothing in
    the lab can decrypt it: the TLS server does not do ECH, so a client must fall back.
    """
    name = public_name.encode("ascii")
    public_key = os.urandom(32)
    suites = struct.pack("!HH", 0x0001, 0x0001)
    contents = (
        bytes([os.urandom(1)[0]])  # config_id
        + struct.pack("!H", 0x0020)  # DHKEM(X25519, HKDF-SHA256)
        + struct.pack("!H", len(public_key)) + public_key
        + struct.pack("!H", len(suites)) + suites
        + bytes([64])  # maximum_name_length
        + bytes([len(name)]) + name
        + struct.pack("!H", 0)  # no extensions
    )
    config = struct.pack("!HH", 0xFE0D, len(contents)) + contents
    config_list = struct.pack("!H", len(config)) + config
    alpn = b"".join(bytes([len(p)]) + p for p in (b"h2", b"http/1.1"))
    params = (
        struct.pack("!HH", 1, len(alpn)) + alpn
        + struct.pack("!HH", 5, len(config_list)) + config_list
    )
    rdata = struct.pack("!H", 1) + b"\x00" + params  # priority 1, target "." (this name)
    return rdata.hex()


def main(argv):
    if len(argv) == 6 and argv[1] == "tls":
        serve_tls(*argv[2:6])
    elif len(argv) == 4 and argv[1] == "udp":
        serve_udp(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "ech-rr":
        print(ech_https_rdata(argv[2]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
