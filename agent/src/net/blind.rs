//! What the network sensor cannot see through: encrypted DNS (DoH, DoT) and Encrypted Client
//! Hello (ECH). These are not detections of AI use; they are *visibility* events that tell an
//! operator where the DNS and SNI signals go blind on this host.
//!
//! The resolver and ECH-front lists are catalog data (`catalog/data/visibility.toml`), so a
//! catalog update refreshes them without an agent release; see `Catalog::doh_resolver`.

/// A kind of blind spot the network sensor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlindKind {
    /// DNS over HTTPS (or HTTP/3) to a well-known resolver: DNS names leave the host encrypted.
    Doh,
    /// DNS over TLS (TCP port 853): DNS names leave the host encrypted.
    Dot,
    /// Encrypted Client Hello: the real server name is hidden behind a public front name.
    Ech,
}

impl BlindKind {
    /// The machine-readable kind, as in the heartbeat's `BlindSpot.kind`: `doh`, `dot`, `ech`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlindKind::Doh => "doh",
            BlindKind::Dot => "dot",
            BlindKind::Ech => "ech",
        }
    }
}

/// TCP port of DNS over TLS (RFC 7858).
pub const DOT_PORT: u16 = 853;

/// The rule id a blind spot names, e.g. `visibility.toml#doh/dns.google` (a catalog entry) or
/// `visibility.toml#dot/tcp-853` (the port rule).
pub fn rule_id(kind: BlindKind, entry: &str) -> String {
    format!("visibility.toml#{}/{entry}", kind.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowai_catalog::Catalog;

    #[test]
    fn lookups_come_from_the_catalog() {
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(catalog.doh_resolver("DNS.Google."), Some("dns.google"));
        assert_eq!(catalog.doh_resolver("xdns.google"), None);
        assert_eq!(catalog.doh_resolver("google"), None);
        assert_eq!(
            catalog.ech_public_name("cloudflare-ech.com"),
            Some("cloudflare-ech.com")
        );
        assert_eq!(catalog.ech_public_name("chatgpt.com"), None);
        assert_eq!(
            rule_id(BlindKind::Dot, "tcp-853"),
            "visibility.toml#dot/tcp-853"
        );
    }
}
