//! QUIC v1 (RFC 9000/9001) and v2 (RFC 9369) Initial packets.
