//! TLS ClientHello (RFC 8446).

/// What a ClientHello says that the agent uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// server_name (host_name), lowercase.
    pub sni: Option<String>,
    /// application_layer_protocol_negotiation protocols, in order.
    pub alpn: Vec<String>,
    /// encrypted_client_hello (0xfe0d) is present; it may be GREASE ECH.
    pub ech: bool,
    /// A GREASE value (RFC 8701) appears in cipher suites, extensions, groups or versions.
    pub grease: bool,
    /// Groups of the key_share entries, in order (e.g. 0x11ec X25519MLKEM768).
    pub key_share_groups: Vec<u16>,
    /// False: the hello was truncated but the SNI was already found.
    pub complete: bool,
    /// Length of the handshake message body as announced in its header.
    pub len: usize,
}
