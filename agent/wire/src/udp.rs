//! udp (in progress)
