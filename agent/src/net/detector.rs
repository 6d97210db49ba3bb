//! The network detector: wire events in, detections and blind spots out, time passed in.
//!
//! Sans-IO: [`Detector::handle_event`] takes a decoded [`Event`] (its timestamp is the clock),
//! [`Detector::handle_timeout`] closes de-duplication windows, and [`Detector::poll_output`]
//! drains what is ready. The one thing it asks the outside world is *which process owns this
//! local socket*, through the [`Attribute`] trait, and only after a catalog hit.
//!
//! Rules it keeps:
//! - **Only catalog matches and blind spots leave.** Every DNS name and server name is looked up
//!   with [`Catalog::lookup_domain`] (allocation-free); nothing else about a name that misses is
//!   kept, logged or counted by name.
//! - **Volume control.** The same name, seen by the same signal from the same process (or from the
//!   same source address when the process is unknown), is reported once per window (default
//!   10 min): the first sighting at once with `count: 1`; when the window closes, one more
//!   detection whose `count` is the number of further sightings in the window (none when there
//!   were none). The sum of `count`s is the number of sightings.
//! - **Naming flows without SNI.** A DNS answer for a catalog name puts its addresses into a
//!   bounded IP → name cache (TTL clamped to 30 s..1 h), so that a later hello without SNI (or
//!   whose SNI is an ECH public name) to one of those addresses is still named, "via DNS answer".
//! - **Bounded state.** Windows, the IP cache and the recent-query table each have a maximum size;
//!   the oldest entry goes first (a window evicted early emits its summary).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::Serialize;
use shadowai_catalog::Catalog;
use shadowai_proto::v1;
use shadowai_wire::{AnswerData, ClientHello, DnsEvent, Event, Flow};

use super::blind::{self, BlindKind};
use crate::detect::{Detection, Evidence, ProcessRef, Signal};

/// Limits and windows of a [`Detector`].
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// De-duplication window, ms.
    pub window_ms: i64,
    /// Most open windows (distinct name × signal × actor) at once.
    pub max_windows: usize,
    /// Most IP → name cache entries.
    pub max_cached_addresses: usize,
    /// Shortest time a DNS answer is kept, ms (answers with TTL 0 would otherwise be useless).
    pub min_answer_ttl_ms: i64,
    /// Longest time a DNS answer is kept, ms, whatever its TTL says.
    pub max_answer_ttl_ms: i64,
    /// Most remembered queries (to tie a response to the process that asked).
    pub max_recent_queries: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window_ms: 10 * 60 * 1000,
            max_windows: 4096,
            max_cached_addresses: 8192,
            min_answer_ttl_ms: 30_000,
            max_answer_ttl_ms: 3_600_000,
            max_recent_queries: 1024,
        }
    }
}

/// The transport of a local socket to attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Why a flow was not tied to a process. Never guessed: the detection says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unattributed {
    /// Offline analysis of a capture file: the processes are not on this machine (or gone).
    Offline,
    /// The socket was not in the kernel's table any more (closed before the lookup).
    SocketClosed,
    /// The socket exists but no process visible to the agent holds it (another user without
    /// privilege, or another network namespace).
    NotVisible,
    /// The local address is not one of this host's (forwarded or another namespace's traffic).
    NotLocal,
    /// This platform has no attribution yet.
    Unsupported,
}

impl Unattributed {
    /// The reason suffix added to a detection, e.g. `process unknown: socket closed before lookup`.
    pub fn reason(self) -> &'static str {
        match self {
            Unattributed::Offline => "process unknown: offline capture",
            Unattributed::SocketClosed => "process unknown: socket closed before lookup",
            Unattributed::NotVisible => {
                "process unknown: no process visible to the agent holds the socket"
            }
            Unattributed::NotLocal => "process unknown: the socket is not in this host's tables",
            Unattributed::Unsupported => "process unknown: attribution is not supported here",
        }
    }
}

/// Maps a flow's local socket to the process that owns it.
pub trait Attribute {
    /// The process holding the `transport` socket bound to `local`, looked up at `now_ms`.
    fn attribute(
        &mut self,
        transport: Transport,
        local: SocketAddr,
        now_ms: i64,
    ) -> Result<ProcessRef, Unattributed>;
}

/// Attribution for offline captures: always [`Unattributed::Offline`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Offline;

impl Attribute for Offline {
    fn attribute(
        &mut self,
        _: Transport,
        _: SocketAddr,
        _: i64,
    ) -> Result<ProcessRef, Unattributed> {
        Err(Unattributed::Offline)
    }
}

/// A visibility event: where this host's DNS or SNI signal goes blind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindSpotEvent {
    /// When it was seen, Unix ms.
    pub ts_ms: i64,
    /// DoH, DoT or ECH.
    pub kind: BlindKind,
    /// The resolver or front name (`""` when withheld because it is not a catalog name).
    pub name: String,
    /// The catalog entry that matched, e.g. `visibility.toml#doh/dns.google`.
    pub rule: String,
    /// What it means, in words.
    pub detail: String,
    /// Source address:port.
    pub src: Option<String>,
    /// Destination address:port.
    pub dst: Option<String>,
    /// The process, when known.
    pub process: Option<ProcessRef>,
}

#[derive(Serialize)]
struct BlindJson<'a> {
    kind: &'static str,
    blind_spot: &'static str,
    ts: String,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<BlindProcessJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<&'a str>,
    rule: &'a str,
    detail: &'a str,
}

#[derive(Serialize)]
struct BlindProcessJson<'a> {
    pid: u32,
    name: &'a str,
    exe: &'a str,
    user: &'a str,
}

impl BlindSpotEvent {
    /// One JSON object: `{"kind":"blind_spot","blind_spot":"doh"|"dot"|"ech","ts",..,"name",
    /// "process"?,"src"?,"dst"?,"rule","detail"}`.
    pub fn to_json_line(&self) -> String {
        let line = BlindJson {
            kind: "blind_spot",
            blind_spot: self.kind.as_str(),
            ts: rfc3339(self.ts_ms),
            name: &self.name,
            process: self.process.as_ref().map(|p| BlindProcessJson {
                pid: p.pid,
                name: &p.name,
                exe: &p.exe,
                user: &p.user,
            }),
            src: self.src.as_deref(),
            dst: self.dst.as_deref(),
            rule: &self.rule,
            detail: &self.detail,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// The heartbeat form.
    pub fn to_blind_spot(&self) -> v1::BlindSpot {
        let detail = match &self.process {
            Some(process) => format!(
                "{} (process {} pid {})",
                self.detail, process.name, process.pid
            ),
            None => self.detail.clone(),
        };
        v1::BlindSpot {
            kind: self.kind.as_str().to_owned(),
            detail: crate::redact::cap(&detail, 1024).0.to_owned(),
            since_ms: self.ts_ms,
        }
    }
}

/// What the detector produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A catalog match.
    Detection(Box<Detection>),
    /// A visibility event.
    BlindSpot(Box<BlindSpotEvent>),
}

impl Output {
    /// One JSON object: a detection (DESIGN.md §3 fields) or a blind spot (`"kind":"blind_spot"`).
    pub fn to_json_line(&self) -> String {
        match self {
            Output::Detection(detection) => detection.to_json_line(),
            Output::BlindSpot(blind) => blind.to_json_line(),
        }
    }

    /// One readable line; every string from the wire or a process is escaped for the terminal.
    pub fn to_human_line(&self) -> String {
        use crate::redact::escape_for_terminal as esc;
        match self {
            Output::Detection(d) => {
                let process = d.process.as_ref().map_or_else(
                    || "process unknown".to_owned(),
                    |p| format!("pid {} {} ({})", p.pid, esc(&p.name), esc(&p.user)),
                );
                let count = if d.count > 1 {
                    format!(" x{}", d.count)
                } else {
                    String::new()
                };
                format!(
                    "{} {:<8} {} -> {} [{}, {}]{} {} -> {} {} rule={}",
                    rfc3339(d.ts_ms),
                    d.signal.as_str(),
                    esc(&d.name),
                    d.product,
                    d.category,
                    d.confidence,
                    count,
                    d.src.as_deref().unwrap_or("-"),
                    d.dst.as_deref().unwrap_or("-"),
                    process,
                    d.rule,
                )
            }
            Output::BlindSpot(b) => format!(
                "{} blind:{:<3} {} {} -> {} {} rule={}",
                rfc3339(b.ts_ms),
                b.kind.as_str(),
                if b.name.is_empty() {
                    "-".into()
                } else {
                    esc(&b.name)
                },
                b.src.as_deref().unwrap_or("-"),
                b.dst.as_deref().unwrap_or("-"),
                esc(&b.detail),
                b.rule,
            ),
        }
    }
}

/// Counters (no names: names that miss the catalog are never kept).
#[derive(Debug, Default, Clone)]
pub struct DetectorStats {
    /// Events handled.
    pub events: u64,
    /// Names looked up in the catalog.
    pub names_checked: u64,
    /// Lookups that hit.
    pub hits: u64,
    /// Detections emitted (first sightings and window summaries).
    pub detections: u64,
    /// Sightings folded into an open window.
    pub repeats: u64,
    /// Blind spots emitted.
    pub blind_spots: u64,
    /// Windows closed early because the table was full.
    pub windows_evicted: u64,
    /// Flows named from the IP → name cache.
    pub via_dns_answer: u64,
    /// Detections without a process.
    pub unattributed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Signal(Signal),
    Blind(BlindKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Actor {
    Process { pid: u32, started_at_ms: i64 },
    Source(IpAddr),
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WindowKey {
    subject: Subject,
    name: String,
    actor: Actor,
}

#[derive(Debug)]
struct Window {
    start_ms: i64,
    last_ms: i64,
    repeats: u32,
    seq: u64,
    /// The first detection, re-emitted with the repeat count when the window closes.
    first: Option<Box<Detection>>,
}

/// The network detector. See the module documentation.
pub struct Detector {
    catalog: Arc<Catalog>,
    config: DetectorConfig,
    windows: HashMap<WindowKey, Window>,
    /// Window keys in opening order, for expiry and eviction (oldest first).
    window_order: VecDeque<(u64, WindowKey)>,
    next_seq: u64,
    cache: IpCache,
    /// (client socket, DNS id) → the actor that asked, oldest first.
    queries: HashMap<(SocketAddr, u16), Actor>,
    query_order: VecDeque<(SocketAddr, u16)>,
    out: VecDeque<Output>,
    stats: DetectorStats,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("windows", &self.windows.len())
            .field("cached_addresses", &self.cache.map.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// A detector using `catalog`.
    pub fn new(catalog: Arc<Catalog>, config: DetectorConfig) -> Detector {
        let cache = IpCache::new(config.max_cached_addresses);
        Detector {
            catalog,
            config,
            windows: HashMap::new(),
            window_order: VecDeque::new(),
            next_seq: 0,
            cache,
            queries: HashMap::new(),
            query_order: VecDeque::new(),
            out: VecDeque::new(),
            stats: DetectorStats::default(),
        }
    }

    /// Swaps the catalog (after a validated update). Open windows stay: a product renamed by the
    /// new catalog is reported under its new id when its window next opens.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.catalog = catalog;
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Counters.
    pub fn stats(&self) -> &DetectorStats {
        &self.stats
    }

    /// Handles one decoded event; its timestamp is the detector's clock.
    pub fn handle_event(&mut self, event: &Event, attribution: &mut dyn Attribute) {
        self.stats.events += 1;
        match event {
            Event::Dns(dns) => {
                if dns.response {
                    self.handle_dns_response(dns, attribution);
                } else {
                    self.handle_dns_query(dns, attribution);
                }
            }
            Event::TlsHello(hello) => {
                self.handle_hello(hello.ts_ms, &hello.flow, &hello.hello, None, attribution)
            }
            Event::QuicHello(hello) => self.handle_hello(
                hello.ts_ms,
                &hello.flow,
                &hello.hello,
                Some(hello.version),
                attribution,
            ),
        }
    }

    /// Closes the windows that ended by `now_ms` (emitting their summaries). Call about once a
    /// second, and with the last packet time at the end of a capture file.
    pub fn handle_timeout(&mut self, now_ms: i64) {
        while let Some((seq, key)) = self.window_order.front() {
            let expired = match self.windows.get(key) {
                Some(window) if window.seq == *seq => {
                    window.start_ms.saturating_add(self.config.window_ms) <= now_ms
                }
                _ => true,
            };
            if !expired {
                break;
            }
            self.close_front_window();
        }
    }

    /// Closes every window now (end of a capture, shutdown), emitting pending summaries.
    pub fn flush(&mut self) {
        while !self.window_order.is_empty() {
            self.close_front_window();
        }
    }

    /// The next detection or blind spot, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn close_front_window(&mut self) {
        let Some((seq, key)) = self.window_order.pop_front() else {
            return;
        };
        let is_current = self.windows.get(&key).is_some_and(|w| w.seq == seq);
        if !is_current {
            return;
        }
        let Some(window) = self.windows.remove(&key) else {
            return;
        };
        if window.repeats == 0 {
            return;
        }
        if let Some(mut detection) = window.first {
            detection.count = window.repeats;
            detection.ts_ms = window.last_ms;
            detection.id = new_id(window.last_ms);
            self.stats.detections += 1;
            self.out.push_back(Output::Detection(detection));
        }
    }

    /// Opens a window for `key` (closing the oldest when full).
    fn open_window(&mut self, key: WindowKey, ts_ms: i64, first: Option<Box<Detection>>) {
        while self.windows.len() >= self.config.max_windows.max(1) {
            self.stats.windows_evicted += 1;
            self.close_front_window();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.window_order.push_back((seq, key.clone()));
        self.windows.insert(
            key,
            Window {
                start_ms: ts_ms,
                last_ms: ts_ms,
                repeats: 0,
                seq,
                first,
            },
        );
    }

    /// Folds a sighting into an open window; false when none is open.
    fn fold(&mut self, key: &WindowKey, ts_ms: i64) -> bool {
        match self.windows.get_mut(key) {
            Some(window) => {
                window.repeats = window.repeats.saturating_add(1);
                window.last_ms = window.last_ms.max(ts_ms);
                self.stats.repeats += 1;
                true
            }
            None => false,
        }
    }

    fn handle_dns_query(&mut self, dns: &DnsEvent, attribution: &mut dyn Attribute) {
        let transport = if dns.tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        // Real queries hold one question; a hostile packet may hold thousands.
        for question in dns.questions.iter().take(4) {
            if let Some(entry) = self.catalog.doh_resolver(&question.name).map(str::to_owned) {
                self.blind_spot(
                    dns.ts_ms,
                    BlindKind::Doh,
                    &entry,
                    &entry,
                    format!("DNS query for the DNS-over-HTTPS resolver {entry}: later DNS names may leave this host encrypted"),
                    &dns.flow,
                    Some((transport, dns.flow.src)),
                    attribution,
                );
            }
            self.stats.names_checked += 1;
            if self.catalog.lookup_domain(&question.name).is_none() {
                continue;
            }
            self.stats.hits += 1;
            let evidence = Evidence::Dns {
                qtype: question.qtype,
                answers: Vec::new(),
                resolver: dns.flow.dst.ip().to_string(),
                tcp: dns.tcp,
            };
            let actor = self.detect(
                &question.name,
                evidence,
                &dns.flow,
                (transport, dns.flow.src),
                dns.ts_ms,
                None,
                attribution,
            );
            if let Some(actor) = actor {
                self.remember_query(dns.flow.src, dns.id, actor);
            }
        }
    }

    fn handle_dns_response(&mut self, dns: &DnsEvent, attribution: &mut dyn Attribute) {
        let transport = if dns.tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let client = dns.flow.dst;
        let mut named: Option<(&str, u16)> = None;
        for question in dns.questions.iter().take(4) {
            self.stats.names_checked += 1;
            if self.catalog.lookup_domain(&question.name).is_some() {
                named = Some((&question.name, question.qtype));
                break;
            }
        }
        let mut addresses: Vec<(IpAddr, u32)> = Vec::new();
        let mut offers_ech = false;
        for answer in dns.answers.iter().take(64) {
            match &answer.data {
                AnswerData::A(ip) => addresses.push((IpAddr::V4(*ip), answer.ttl)),
                AnswerData::Aaaa(ip) => addresses.push((IpAddr::V6(*ip), answer.ttl)),
                AnswerData::Svcb {
                    ech,
                    ipv4_hints,
                    ipv6_hints,
                    ..
                } => {
                    offers_ech |= *ech;
                    let v4 = ipv4_hints.iter().map(|ip| (IpAddr::V4(*ip), answer.ttl));
                    let v6 = ipv6_hints.iter().map(|ip| (IpAddr::V6(*ip), answer.ttl));
                    addresses.extend(v4.chain(v6).take(16));
                }
                AnswerData::Cname(_) | AnswerData::Other(_) => {}
            }
        }
        if offers_ech {
            // Only catalog names are ever named; other hosts' ECH offers are counted, unnamed.
            let (name, rule_entry, detail) = match named {
                Some((name, _)) => (
                    name,
                    "https-record",
                    format!("DNS answer offers Encrypted Client Hello for {name}: its TLS server name may be hidden"),
                ),
                None => (
                    "",
                    "https-record",
                    "a DNS answer offered Encrypted Client Hello for a host (name withheld: not a catalog name): TLS server names may be hidden".to_owned(),
                ),
            };
            self.blind_spot(
                dns.ts_ms,
                BlindKind::Ech,
                name,
                rule_entry,
                detail,
                &dns.flow,
                None,
                attribution,
            );
        }
        let Some((name, qtype)) = named else {
            return;
        };
        let name_arc: Arc<str> = Arc::from(name);
        for (ip, ttl) in &addresses {
            let ttl_ms = (i64::from(*ttl) * 1000)
                .clamp(self.config.min_answer_ttl_ms, self.config.max_answer_ttl_ms);
            self.cache
                .insert(*ip, name_arc.clone(), dns.ts_ms.saturating_add(ttl_ms));
        }
        let answers: Vec<String> = addresses
            .iter()
            .take(32)
            .map(|(ip, _)| ip.to_string())
            .collect();
        // A response to a query we reported adds its answers to that window; it is not another
        // sighting. A response whose query we missed is reported by itself.
        if let Some(actor) = self.queries.get(&(client, dns.id)).copied() {
            let key = WindowKey {
                subject: Subject::Signal(Signal::Dns),
                name: name.to_owned(),
                actor,
            };
            if let Some(window) = self.windows.get_mut(&key) {
                if let Some(first) = window.first.as_mut()
                    && let Evidence::Dns { answers: kept, .. } = &mut first.evidence
                    && kept.is_empty()
                {
                    kept.clone_from(&answers);
                }
                return;
            }
        }
        self.stats.hits += 1;
        let evidence = Evidence::Dns {
            qtype,
            answers,
            resolver: dns.flow.src.ip().to_string(),
            tcp: dns.tcp,
        };
        let query_flow = Flow {
            src: dns.flow.dst,
            dst: dns.flow.src,
        };
        self.detect(
            name,
            evidence,
            &query_flow,
            (transport, client),
            dns.ts_ms,
            Some("seen in a DNS answer (its query was not seen)"),
            attribution,
        );
    }

    fn handle_hello(
        &mut self,
        ts_ms: i64,
        flow: &Flow,
        hello: &ClientHello,
        quic_version: Option<u32>,
        attribution: &mut dyn Attribute,
    ) {
        let transport = if quic_version.is_some() {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let local = (transport, flow.src);
        let alpn: Vec<String> = hello
            .alpn
            .iter()
            .take(16)
            .map(|p| crate::redact::cap(p, 64).0.to_owned())
            .collect();
        let evidence = match quic_version {
            Some(version) => Evidence::QuicSni { version, alpn },
            None => Evidence::TlsSni {
                alpn,
                ech: hello.ech,
            },
        };
        if quic_version.is_none() && flow.dst.port() == blind::DOT_PORT {
            let name = hello.sni.as_deref().unwrap_or("");
            let shown = self.catalog.doh_resolver(name).unwrap_or("").to_owned();
            self.blind_spot(
                ts_ms,
                BlindKind::Dot,
                &shown,
                "tcp-853",
                format!(
                    "TLS to TCP port 853 (DNS over TLS) at {}: DNS names leave this host encrypted",
                    flow.dst.ip()
                ),
                flow,
                Some(local),
                attribution,
            );
            // DNS over TLS is not a connection to a service: its name is the resolver's.
            return;
        }
        let sni = hello.sni.as_deref().filter(|s| !s.is_empty());
        let mut note = None;
        if let Some(sni) = sni {
            if let Some(entry) = self.catalog.doh_resolver(sni).map(str::to_owned) {
                self.blind_spot(
                    ts_ms,
                    BlindKind::Doh,
                    &entry,
                    &entry,
                    format!("encrypted connection to the DNS-over-HTTPS resolver {entry}: DNS names may leave this host encrypted"),
                    flow,
                    Some(local),
                    attribution,
                );
                return;
            }
            match self.catalog.ech_public_name(sni).map(str::to_owned) {
                Some(front) if hello.ech => {
                    self.blind_spot(
                        ts_ms,
                        BlindKind::Ech,
                        &front,
                        &front,
                        format!("Encrypted Client Hello behind the public name {front}: the real server name is hidden"),
                        flow,
                        Some(local),
                        attribution,
                    );
                    note =
                        Some("named via DNS answer: the hello's server name is an ECH public name");
                }
                _ => {
                    self.stats.names_checked += 1;
                    if self.catalog.lookup_domain(sni).is_some() {
                        self.stats.hits += 1;
                        self.detect(sni, evidence, flow, local, ts_ms, None, attribution);
                    }
                    return;
                }
            }
        }
        let Some(name) = self.cache.get(flow.dst.ip(), ts_ms) else {
            return;
        };
        self.stats.via_dns_answer += 1;
        self.stats.hits += 1;
        let note = note.unwrap_or("named via DNS answer: the hello has no server name");
        self.detect(&name, evidence, flow, local, ts_ms, Some(note), attribution);
    }

    /// Reports `name` (a catalog hit) unless its window is open; returns the actor.
    #[allow(clippy::too_many_arguments)]
    fn detect(
        &mut self,
        name: &str,
        evidence: Evidence,
        flow: &Flow,
        (transport, local): (Transport, SocketAddr),
        ts_ms: i64,
        note: Option<&str>,
        attribution: &mut dyn Attribute,
    ) -> Option<Actor> {
        let attributed = attribution.attribute(transport, local, ts_ms);
        let actor = match &attributed {
            Ok(process) => Actor::Process {
                pid: process.pid,
                started_at_ms: process.started_at_ms,
            },
            Err(_) => Actor::Source(local.ip()),
        };
        let key = WindowKey {
            subject: Subject::Signal(evidence.signal()),
            name: name.to_owned(),
            actor,
        };
        if self.fold(&key, ts_ms) {
            return Some(actor);
        }
        let catalog = self.catalog.clone();
        let found = catalog.match_domain(name)?;
        let mut detection =
            Detection::from_domain_match(&found, catalog.version(), evidence, name, ts_ms);
        detection.src = Some(flow.src.to_string());
        detection.dst = Some(flow.dst.to_string());
        if let Some(note) = note {
            detection.reason = format!("{}; {note}", detection.reason);
        }
        match attributed {
            Ok(process) => detection.process = Some(process),
            Err(why) => {
                self.stats.unattributed += 1;
                detection.reason = format!("{}; {}", detection.reason, why.reason());
            }
        }
        let detection = Box::new(detection);
        self.open_window(key, ts_ms, Some(detection.clone()));
        self.stats.detections += 1;
        self.out.push_back(Output::Detection(detection));
        Some(actor)
    }

    #[allow(clippy::too_many_arguments)]
    fn blind_spot(
        &mut self,
        ts_ms: i64,
        kind: BlindKind,
        name: &str,
        rule_entry: &str,
        detail: String,
        flow: &Flow,
        local: Option<(Transport, SocketAddr)>,
        attribution: &mut dyn Attribute,
    ) {
        let key = WindowKey {
            subject: Subject::Blind(kind),
            name: name.to_owned(),
            actor: Actor::Host,
        };
        if self.fold(&key, ts_ms) {
            return;
        }
        let process = local
            .and_then(|(transport, address)| attribution.attribute(transport, address, ts_ms).ok());
        self.open_window(key, ts_ms, None);
        self.stats.blind_spots += 1;
        self.out
            .push_back(Output::BlindSpot(Box::new(BlindSpotEvent {
                ts_ms,
                kind,
                name: name.to_owned(),
                rule: blind::rule_id(kind, rule_entry),
                detail,
                src: Some(flow.src.to_string()),
                dst: Some(flow.dst.to_string()),
                process,
            })));
    }

    fn remember_query(&mut self, client: SocketAddr, id: u16, actor: Actor) {
        if self.queries.insert((client, id), actor).is_none() {
            self.query_order.push_back((client, id));
        }
        while self.queries.len() > self.config.max_recent_queries.max(1) {
            let Some(oldest) = self.query_order.pop_front() else {
                break;
            };
            self.queries.remove(&oldest);
        }
    }
}

/// Bounded IP → name cache; the oldest insertion goes first when full.
#[derive(Debug)]
struct IpCache {
    map: HashMap<IpAddr, CacheEntry>,
    order: VecDeque<(IpAddr, u64)>,
    next_seq: u64,
    max: usize,
}

#[derive(Debug)]
struct CacheEntry {
    name: Arc<str>,
    expires_ms: i64,
    seq: u64,
}

impl IpCache {
    fn new(max: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            max: max.max(1),
        }
    }

    fn insert(&mut self, ip: IpAddr, name: Arc<str>, expires_ms: i64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            ip,
            CacheEntry {
                name,
                expires_ms,
                seq,
            },
        );
        self.order.push_back((ip, seq));
        while self.map.len() > self.max {
            let Some((oldest, oldest_seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|e| e.seq == oldest_seq) {
                self.map.remove(&oldest);
            }
        }
        // Refreshed entries leave stale order slots behind; compact so the queue stays bounded.
        if self.order.len() > self.max.saturating_mul(2) {
            let map = &self.map;
            self.order
                .retain(|(ip, seq)| map.get(ip).is_some_and(|e| e.seq == *seq));
        }
    }

    fn get(&self, ip: IpAddr, now_ms: i64) -> Option<Arc<str>> {
        let entry = self.map.get(&ip)?;
        (entry.expires_ms > now_ms).then(|| entry.name.clone())
    }
}

fn new_id(ts_ms: i64) -> uuid::Uuid {
    let ms = u64::try_from(ts_ms).unwrap_or(0);
    let timestamp = uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    );
    uuid::Uuid::new_v7(timestamp)
}

/// RFC 3339 in UTC with millisecond precision.
pub(crate) fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let when = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    when.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests;
