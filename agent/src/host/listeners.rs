//! Local model servers that listen: TCP sockets in `LISTEN` state, read from `/proc/net/tcp`
//! and `/proc/net/tcp6`, on a port the catalog gives a local model runtime or agent server
//! (`products_on_port`, e.g. Ollama 11434, LM Studio 1234). A socket bound beyond loopback is
//! "exposed": anyone on the network can use the model (risk `network_exposed`).
//!
//! Listeners are always those of the live system (also under `scan --root`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use shadowai_catalog::Catalog;

use crate::detect::{Detection, Evidence};

/// Most bytes of one `/proc/net/tcp*` file read (a line is ~150 bytes: ~100 k sockets).
const MAX_TABLE: u64 = 16 * 1024 * 1024;
/// `TCP_LISTEN` in the `st` column.
const TCP_LISTEN: &str = "0A";

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listening {
    /// Bind address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
}

impl Listening {
    /// Bound beyond loopback (the unspecified address counts as exposed).
    pub fn exposed(&self) -> bool {
        match self.address {
            IpAddr::V4(v4) => !v4.is_loopback(),
            IpAddr::V6(v6) => {
                !(v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
            }
        }
    }
}

/// Parses one `/proc/net/tcp` or `tcp6` table and returns its listening sockets. Lines that do
/// not parse are skipped.
pub fn parse_table(text: &str) -> Vec<Listening> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let _slot = fields.next()?;
            let local = fields.next()?;
            let _remote = fields.next()?;
            let state = fields.next()?;
            if state != TCP_LISTEN {
                return None;
            }
            parse_endpoint(local)
        })
        .collect()
}

/// `0100007F:2CAA` (IPv4, the 32-bit word in host order) or 32 hex digits for IPv6 (four
/// 32-bit words, each in host order).
fn parse_endpoint(text: &str) -> Option<Listening> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |at: usize| -> Option<[u8; 4]> {
        let hex = address.get(at..at + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let address = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (index, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(index * 8)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(Listening { address, port })
}

/// Reads the live listening TCP sockets (IPv4 and IPv6); an unreadable table reads as empty.
pub fn read_live() -> Vec<Listening> {
    let mut all = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(file) = std::fs::File::open(table) {
            use std::io::Read as _;
            let mut text = String::new();
            if file.take(MAX_TABLE).read_to_string(&mut text).is_ok() {
                all.extend(parse_table(&text));
            }
        }
    }
    all.sort_by_key(|l| (l.port, l.address));
    all.dedup();
    all
}

/// Detections for the listening sockets on ports of AI products; each socket once per
/// `reported` set (pass the same set each scan to report only new listeners).
pub fn detect(
    catalog: &Catalog,
    listening: &[Listening],
    reported: &mut HashSet<Listening>,
    now_ms: i64,
) -> Vec<Detection> {
    let mut detections = Vec::new();
    for socket in listening {
        let mut products = catalog.products_on_port(socket.port);
        let Some(product) = products.next() else {
            continue;
        };
        let others = products.count();
        if !reported.insert(*socket) {
            continue;
        }
        let exposed = socket.exposed();
        let address = socket.address.to_string();
        let confidence = if others == 0 { "medium" } else { "low" };
        let mut reason = format!(
            "a TCP socket listens on {address} port {}, the default port of {}",
            socket.port, product.name
        );
        if others > 0 {
            reason.push_str(&format!(" (and {others} other products)"));
        }
        if exposed {
            reason.push_str("; it is bound beyond loopback, so other machines can reach it");
        }
        detections.push(Detection {
            name: format!("{}:{}", address, socket.port),
            risk: if exposed {
                vec!["network_exposed".to_owned()]
            } else {
                Vec::new()
            },
            confidence: confidence.to_owned(),
            rule: format!("{}#{}/port/{}", product.file, product.id, socket.port),
            reason,
            ..Detection::of_product(
                product,
                catalog.version(),
                now_ms,
                Evidence::Listener {
                    address,
                    port: socket.port,
                    protocol: "tcp",
                    exposed,
                },
            )
        });
    }
    detections
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:04D2 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:9C40 0100007F:2CAA 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000000000000:2CAA 00000000000000000000000000000000:0000 0A 00000000:00000000
";

    #[test]
    fn listening_sockets_are_parsed_with_their_bind_address() {
        let v4 = parse_table(TCP);
        assert_eq!(v4.len(), 2);
        assert_eq!(v4[0].address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(v4[0].port, 11434);
        assert!(v4[0].exposed());
        assert_eq!(v4[1].address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(v4[1].port, 1234);
        assert!(!v4[1].exposed());
        let v6 = parse_table(TCP6);
        assert_eq!(v6[0].address, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(!v6[0].exposed());
        assert!(v6[1].exposed());
    }

    #[test]
    fn every_prefix_is_survived() {
        for text in [TCP, TCP6] {
            for end in 0..=text.len() {
                if text.is_char_boundary(end) {
                    assert!(parse_table(&text[..end]).len() <= 2);
                }
            }
        }
        assert!(parse_endpoint("zz:zz").is_none());
        assert!(parse_endpoint("0100007F").is_none());
        assert!(parse_endpoint("0100007F:FFFFF").is_none());
    }

    #[test]
    fn ai_ports_become_detections_once() {
        let catalog = Catalog::embedded().unwrap();
        let mut reported = HashSet::new();
        let sockets = parse_table(TCP);
        let detections = detect(&catalog, &sockets, &mut reported, 0);
        let ollama = detections
            .iter()
            .find(|d| d.product == "ollama.ollama")
            .expect("11434 is Ollama's");
        assert_eq!(ollama.risk, ["network_exposed"]);
        assert!(detections.iter().any(|d| d.evidence
            == Evidence::Listener {
                address: "127.0.0.1".into(),
                port: 1234,
                protocol: "tcp",
                exposed: false
            }));
        assert!(detect(&catalog, &sockets, &mut reported, 0).is_empty());
    }
}
