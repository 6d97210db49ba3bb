//! What the network sensor cannot see through: encrypted DNS (DoH, DoT) and Encrypted Client
//! Hello (ECH). These are not detections of AI use; they are *visibility* events that tell an
//! operator where the DNS and SNI signals go blind on this host.
//!
//! The resolver and ECH-front lists are a const table here for now; they belong in the catalog
//! as data (see the network sensor's notes in the integrator report).

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

/// Host names of well-known public DNS-over-HTTPS resolvers (exact names, lowercase).
pub const DOH_RESOLVERS: &[&str] = &[
    "dns.google",
    "dns.google.com",
    "8888.google",
    "cloudflare-dns.com",
    "one.one.one.one",
    "1dot1dot1dot1.cloudflare-dns.com",
    "mozilla.cloudflare-dns.com",
    "chrome.cloudflare-dns.com",
    "security.cloudflare-dns.com",
    "family.cloudflare-dns.com",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "doh.opendns.com",
    "doh.familyshield.opendns.com",
    "dns.nextdns.io",
    "firefox.dns.nextdns.io",
    "chromium.dns.nextdns.io",
    "dns.adguard-dns.com",
    "unfiltered.adguard-dns.com",
    "family.adguard-dns.com",
    "dns.adguard.com",
    "doh.cleanbrowsing.org",
    "dns.controld.com",
    "freedns.controld.com",
    "doh.mullvad.net",
    "dns.mullvad.net",
    "base.dns.mullvad.net",
    "doh.dns.sb",
    "dns.twnic.tw",
    "doh.libredns.gr",
    "dns.alidns.com",
    "doh.pub",
    "dns.switch.ch",
    "doh.ffmuc.net",
];

/// Public names of ECH client-facing servers: an outer SNI equal to one of these, with the
/// ECH extension present, hides the real server name.
pub const ECH_PUBLIC_NAMES: &[&str] = &["cloudflare-ech.com", "ech.cloudflare.com"];

/// TCP port of DNS over TLS (RFC 7858).
pub const DOT_PORT: u16 = 853;

/// The rule id a blind spot names, e.g. `agent/src/net/blind.rs#doh/dns.google`.
pub fn rule_id(kind: BlindKind, entry: &str) -> String {
    format!("agent/src/net/blind.rs#{}/{entry}", kind.as_str())
}

/// Whether `name` (lowercase, no trailing dot) is a well-known DoH resolver; the table entry.
pub fn doh_resolver(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    DOH_RESOLVERS
        .iter()
        .copied()
        .find(|entry| entry.eq_ignore_ascii_case(name))
}

/// Whether `name` is a known ECH public (client-facing) name; the table entry.
pub fn ech_public_name(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    ECH_PUBLIC_NAMES
        .iter()
        .copied()
        .find(|entry| entry.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_lowercase_and_unique() {
        for table in [DOH_RESOLVERS, ECH_PUBLIC_NAMES] {
            let mut seen = std::collections::HashSet::new();
            for entry in table {
                assert_eq!(*entry, entry.to_ascii_lowercase());
                assert!(!entry.ends_with('.'));
                assert!(seen.insert(*entry), "duplicate {entry}");
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(doh_resolver("DNS.Google."), Some("dns.google"));
        assert_eq!(doh_resolver("xdns.google"), None);
        assert_eq!(doh_resolver("google"), None);
        assert_eq!(
            ech_public_name("cloudflare-ech.com"),
            Some("cloudflare-ech.com")
        );
        assert_eq!(ech_public_name("chatgpt.com"), None);
        assert_eq!(
            rule_id(BlindKind::Dot, "port-853"),
            "agent/src/net/blind.rs#dot/port-853"
        );
    }
}
