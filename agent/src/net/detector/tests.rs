use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use shadowai_wire::{
    Answer, AnswerData, ClientHello, DnsEvent, Event, Flow, HelloEvent, Question, QuicHelloEvent,
};

use super::*;
use crate::detect::RawProcess;

const T0: i64 = 1_763_736_000_000;
const MINUTE: i64 = 60_000;

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().unwrap())
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn flow(src: &str, dst: &str) -> Flow {
    Flow {
        src: addr(src),
        dst: addr(dst),
    }
}

fn query(ts_ms: i64, src: &str, id: u16, name: &str) -> Event {
    Event::Dns(DnsEvent {
        ts_ms,
        flow: flow(src, "192.0.2.53:53"),
        tcp: false,
        response: false,
        id,
        rcode: 0,
        questions: vec![Question {
            name: name.into(),
            qtype: 1,
        }],
        answers: Vec::new(),
    })
}

fn response(ts_ms: i64, client: &str, id: u16, name: &str, answers: Vec<AnswerData>) -> Event {
    Event::Dns(DnsEvent {
        ts_ms,
        flow: flow("192.0.2.53:53", client),
        tcp: false,
        response: true,
        id,
        rcode: 0,
        questions: vec![Question {
            name: name.into(),
            qtype: 1,
        }],
        answers: answers
            .into_iter()
            .map(|data| Answer {
                name: name.into(),
                ttl: 300,
                data,
            })
            .collect(),
    })
}

fn client_hello(sni: Option<&str>, ech: bool) -> ClientHello {
    ClientHello {
        sni: sni.map(str::to_owned),
        alpn: vec!["h2".into(), "http/1.1".into()],
        ech,
        grease: true,
        key_share_groups: vec![0x11ec, 0x001d],
        complete: true,
        len: 1800,
    }
}

fn tls(ts_ms: i64, src: &str, dst: &str, sni: Option<&str>, ech: bool) -> Event {
    Event::TlsHello(HelloEvent {
        ts_ms,
        flow: flow(src, dst),
        hello: client_hello(sni, ech),
    })
}

fn quic(ts_ms: i64, src: &str, dst: &str, sni: &str) -> Event {
    Event::QuicHello(QuicHelloEvent {
        ts_ms,
        flow: flow(src, dst),
        version: 1,
        hello: client_hello(Some(sni), false),
    })
}

/// Attribution from a fixed table of local sockets (the /proc walk has its own tests).
#[derive(Default)]
struct Table {
    owners: HashMap<SocketAddr, u32>,
    calls: usize,
}

impl Table {
    fn with(owners: &[(&str, u32)]) -> Table {
        Table {
            owners: owners.iter().map(|(a, pid)| (addr(a), *pid)).collect(),
            calls: 0,
        }
    }
}

impl Attribute for Table {
    fn attribute(
        &mut self,
        _: Transport,
        local: SocketAddr,
        _: i64,
    ) -> Result<ProcessRef, Unattributed> {
        self.calls += 1;
        let pid = *self.owners.get(&local).ok_or(Unattributed::SocketClosed)?;
        let args = vec![format!("app{pid}"), "--token".into(), "secret".into()];
        Ok(ProcessRef::from_raw(&RawProcess {
            pid,
            parent_pid: 1,
            started_at_ms: 1000,
            name: &format!("app{pid}"),
            exe: "/usr/bin/app",
            args: &args,
            user: "alice",
            uid: Some(1000),
        }))
    }
}

fn drain(detector: &mut Detector) -> Vec<Output> {
    std::iter::from_fn(|| detector.poll_output()).collect()
}

fn detections(outputs: &[Output]) -> Vec<&Detection> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Detection(d) => Some(d.as_ref()),
            Output::BlindSpot(_) => None,
        })
        .collect()
}

fn blind_spots(outputs: &[Output]) -> Vec<&BlindSpotEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::BlindSpot(b) => Some(b.as_ref()),
            Output::Detection(_) => None,
        })
        .collect()
}

#[test]
fn a_catalog_name_in_a_query_is_one_detection_with_its_rule() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    detector.handle_event(&query(T0, "10.0.0.2:40000", 7, "chatgpt.com"), &mut Offline);
    let outputs = drain(&mut detector);
    let found = detections(&outputs);
    assert_eq!(found.len(), 1);
    let detection = found[0];
    assert_eq!(detection.signal, Signal::Dns);
    assert_eq!(detection.name, "chatgpt.com");
    assert_eq!(detection.product, "openai.chatgpt");
    assert!(
        detection.rule.contains("openai.chatgpt/domain/chatgpt.com"),
        "{}",
        detection.rule
    );
    assert_eq!(detection.count, 1);
    assert_eq!(detection.src.as_deref(), Some("10.0.0.2:40000"));
    assert_eq!(detection.dst.as_deref(), Some("192.0.2.53:53"));
    assert!(
        detection
            .reason
            .ends_with("process unknown: offline capture")
    );
    assert_eq!(
        detection.evidence,
        Evidence::Dns {
            qtype: 1,
            answers: Vec::new(),
            resolver: "192.0.2.53".into(),
            tcp: false,
        }
    );
}

#[test]
fn only_catalog_matches_leave_the_detector() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let mut table = Table::default();
    let benign = [
        "example.com",
        "intranet.corp",
        "openai.com.evil.example",
        "xn--e1afmkfd.xn--p1ai",
        "a\\000b.com",
        "",
    ];
    for (i, name) in benign.iter().enumerate() {
        let ts = T0 + i as i64;
        detector.handle_event(&query(ts, "10.0.0.2:40000", 1, name), &mut table);
        detector.handle_event(
            &response(
                ts,
                "10.0.0.2:40000",
                1,
                name,
                vec![AnswerData::A(Ipv4Addr::new(198, 51, 100, 1))],
            ),
            &mut table,
        );
        detector.handle_event(
            &tls(ts, "10.0.0.2:40001", "198.51.100.1:443", Some(name), false),
            &mut table,
        );
        detector.handle_event(
            &quic(ts, "10.0.0.2:40002", "198.51.100.1:443", name),
            &mut table,
        );
    }
    // The hello without SNI to the address a benign answer named: nothing to name it with.
    detector.handle_event(
        &tls(T0 + 10, "10.0.0.2:40003", "198.51.100.1:443", None, false),
        &mut table,
    );
    detector.handle_timeout(T0 + 60 * MINUTE);
    detector.flush();
    assert_eq!(drain(&mut detector), Vec::new());
    // No attribution (a /proc walk) is spent on names that miss.
    assert_eq!(table.calls, 0);
    assert_eq!(detector.stats().hits, 0);
}

#[test]
fn repeats_in_the_window_become_one_summary_with_the_count() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    for i in 0..5 {
        detector.handle_event(
            &tls(
                T0 + i * MINUTE,
                "10.0.0.2:40000",
                "203.0.113.9:443",
                Some("api.openai.com"),
                false,
            ),
            &mut Offline,
        );
    }
    let first = drain(&mut detector);
    assert_eq!(
        detections(&first).len(),
        1,
        "the first sighting leaves at once"
    );
    assert_eq!(detections(&first)[0].count, 1);
    assert_eq!(detections(&first)[0].signal, Signal::TlsSni);

    detector.handle_timeout(T0 + 9 * MINUTE);
    assert!(drain(&mut detector).is_empty(), "window still open");

    detector.handle_timeout(T0 + 10 * MINUTE);
    let summary = drain(&mut detector);
    let summary = detections(&summary);
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].count, 4);
    assert_eq!(summary[0].ts_ms, T0 + 4 * MINUTE);
    assert_ne!(summary[0].id, detections(&first)[0].id);

    // After the window, the next sighting is new again.
    detector.handle_event(
        &tls(
            T0 + 11 * MINUTE,
            "10.0.0.2:40000",
            "203.0.113.9:443",
            Some("api.openai.com"),
            false,
        ),
        &mut Offline,
    );
    let again = drain(&mut detector);
    assert_eq!(detections(&again)[0].count, 1);
    // A window with no repeats closes silently.
    detector.handle_timeout(T0 + 30 * MINUTE);
    assert!(drain(&mut detector).is_empty());
}

#[test]
fn processes_and_sources_are_windowed_apart() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let mut table = Table::with(&[
        ("10.0.0.2:40000", 100),
        ("10.0.0.2:40001", 200),
        ("10.0.0.2:40002", 100),
    ]);
    for src in [
        "10.0.0.2:40000",
        "10.0.0.2:40001",
        "10.0.0.2:40002",
        "10.0.0.2:40003",
        "10.0.0.3:40003",
    ] {
        detector.handle_event(
            &tls(T0, src, "203.0.113.9:443", Some("claude.ai"), false),
            &mut table,
        );
    }
    let outputs = drain(&mut detector);
    let found = detections(&outputs);
    // pid 100 (twice: one), pid 200, unknown from 10.0.0.2 (port 40003), unknown from 10.0.0.3.
    assert_eq!(found.len(), 4);
    let with_pid: Vec<u32> = found
        .iter()
        .filter_map(|d| d.process.as_ref().map(|p| p.pid))
        .collect();
    assert_eq!(with_pid, [100, 200]);
    let process = found[0].process.as_ref().unwrap();
    assert_eq!(process.cmdline, "app100 --token [REDACTED]");
    let unknown: Vec<&str> = found
        .iter()
        .filter(|d| d.process.is_none())
        .map(|d| d.reason.as_str())
        .collect();
    assert_eq!(unknown.len(), 2);
    assert!(
        unknown
            .iter()
            .all(|r| r.ends_with("process unknown: socket closed before lookup"))
    );
}

#[test]
fn signals_are_windowed_apart() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    detector.handle_event(&query(T0, "10.0.0.2:40000", 1, "claude.ai"), &mut Offline);
    detector.handle_event(
        &tls(
            T0,
            "10.0.0.2:40001",
            "203.0.113.9:443",
            Some("claude.ai"),
            false,
        ),
        &mut Offline,
    );
    detector.handle_event(
        &quic(T0, "10.0.0.2:40002", "203.0.113.9:443", "claude.ai"),
        &mut Offline,
    );
    let outputs = drain(&mut detector);
    let signals: Vec<Signal> = detections(&outputs).iter().map(|d| d.signal).collect();
    assert_eq!(signals, [Signal::Dns, Signal::TlsSni, Signal::QuicSni]);
    let Evidence::QuicSni { version, alpn } = &detections(&outputs)[2].evidence else {
        panic!("quic evidence")
    };
    assert_eq!((*version, alpn.len()), (1, 2));
}

#[test]
fn a_response_adds_answers_to_its_query_and_fills_the_cache() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let ip = Ipv4Addr::new(203, 0, 113, 7);
    detector.handle_event(
        &query(T0, "10.0.0.2:40000", 42, "chatgpt.com"),
        &mut Offline,
    );
    detector.handle_event(
        &query(T0 + 1, "10.0.0.2:40000", 43, "chatgpt.com"),
        &mut Offline,
    );
    detector.handle_event(
        &response(
            T0 + 2,
            "10.0.0.2:40000",
            42,
            "chatgpt.com",
            vec![
                AnswerData::Cname("chatgpt.com.cdn.cloudflare.net".into()),
                AnswerData::A(ip),
            ],
        ),
        &mut Offline,
    );
    let outputs = drain(&mut detector);
    assert_eq!(
        detections(&outputs).len(),
        1,
        "the response is not another sighting"
    );
    detector.handle_timeout(T0 + 10 * MINUTE);
    let summary = drain(&mut detector);
    let summary = detections(&summary);
    assert_eq!(summary[0].count, 1);
    let Evidence::Dns { answers, .. } = &summary[0].evidence else {
        panic!("dns evidence")
    };
    assert_eq!(answers, &["203.0.113.7"]);

    // A hello without SNI to that address is named from the answer.
    detector.handle_event(
        &tls(T0 + 3, "10.0.0.2:50000", "203.0.113.7:443", None, true),
        &mut Offline,
    );
    let named = drain(&mut detector);
    let named = detections(&named);
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].name, "chatgpt.com");
    assert_eq!(named[0].signal, Signal::TlsSni);
    assert!(
        named[0].reason.contains("named via DNS answer"),
        "{}",
        named[0].reason
    );
    assert_eq!(detector.stats().via_dns_answer, 1);
}

#[test]
fn a_response_without_its_query_is_reported() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    detector.handle_event(
        &response(
            T0,
            "10.0.0.2:40000",
            9,
            "api.anthropic.com",
            vec![AnswerData::A(Ipv4Addr::new(203, 0, 113, 8))],
        ),
        &mut Offline,
    );
    let outputs = drain(&mut detector);
    let found = detections(&outputs);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].src.as_deref(),
        Some("10.0.0.2:40000"),
        "src is the client"
    );
    assert!(found[0].reason.contains("its query was not seen"));
}

#[test]
fn cached_answers_expire_with_a_clamped_ttl() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let ip = Ipv4Addr::new(203, 0, 113, 7);
    let mut event = response(
        T0,
        "10.0.0.2:40000",
        1,
        "claude.ai",
        vec![AnswerData::A(ip)],
    );
    if let Event::Dns(dns) = &mut event {
        dns.answers[0].ttl = 0; // clamped up to 30 s
    }
    detector.handle_event(&event, &mut Offline);
    drain(&mut detector);
    detector.handle_event(
        &tls(T0 + 29_000, "10.0.0.2:1", "203.0.113.7:443", None, false),
        &mut Offline,
    );
    assert_eq!(detections(&drain(&mut detector)).len(), 1);
    detector.handle_event(
        &tls(T0 + 31_000, "10.0.0.2:2", "203.0.113.7:443", None, false),
        &mut Offline,
    );
    assert!(drain(&mut detector).is_empty(), "expired");

    let mut event = response(
        T0,
        "10.0.0.2:40000",
        2,
        "claude.ai",
        vec![AnswerData::A(ip)],
    );
    if let Event::Dns(dns) = &mut event {
        dns.answers[0].ttl = u32::MAX; // clamped down to 1 h
    }
    detector.handle_event(&event, &mut Offline);
    detector.handle_event(
        &tls(T0 + 3_600_001, "10.0.0.9:2", "203.0.113.7:443", None, false),
        &mut Offline,
    );
    assert!(detections(&drain(&mut detector)).is_empty());
}

#[test]
fn the_address_cache_is_bounded_oldest_first() {
    let config = DetectorConfig {
        max_cached_addresses: 16,
        ..DetectorConfig::default()
    };
    let mut detector = Detector::new(catalog(), config);
    for i in 0..100u8 {
        detector.handle_event(
            &response(
                T0,
                "10.0.0.2:40000",
                u16::from(i),
                "claude.ai",
                vec![AnswerData::A(Ipv4Addr::new(203, 0, 113, i))],
            ),
            &mut Offline,
        );
        // Refreshing the same address must not grow the queue without bound either.
        detector.handle_event(
            &response(
                T0,
                "10.0.0.2:40000",
                u16::from(i),
                "claude.ai",
                vec![AnswerData::A(Ipv4Addr::new(203, 0, 113, 0))],
            ),
            &mut Offline,
        );
    }
    assert!(detector.cache.map.len() <= 16);
    assert!(detector.cache.order.len() <= 32);
    assert!(
        detector
            .cache
            .get(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99)), T0)
            .is_some()
    );
    assert!(
        detector
            .cache
            .get(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), T0)
            .is_none()
    );
}

#[test]
fn windows_are_bounded_and_an_evicted_window_still_reports_its_count() {
    let config = DetectorConfig {
        max_windows: 2,
        ..DetectorConfig::default()
    };
    let mut detector = Detector::new(catalog(), config);
    let names = ["claude.ai", "chatgpt.com", "api.openai.com"];
    for name in names {
        for i in 0..3 {
            detector.handle_event(&query(T0 + i, "10.0.0.2:40000", 1, name), &mut Offline);
        }
    }
    let outputs = drain(&mut detector);
    let found = detections(&outputs);
    // 3 first sightings + the summary of claude.ai, evicted to make room for api.openai.com.
    assert_eq!(found.len(), 4);
    assert_eq!((found[2].name.as_str(), found[2].count), ("claude.ai", 2));
    assert_eq!(detector.windows.len(), 2);
    assert_eq!(detector.stats().windows_evicted, 1);
    detector.flush();
    let rest = drain(&mut detector);
    let counts: Vec<(String, u32)> = detections(&rest)
        .iter()
        .map(|d| (d.name.clone(), d.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("chatgpt.com".to_owned(), 2),
            ("api.openai.com".to_owned(), 2)
        ]
    );
    assert!(detector.window_order.is_empty());
}

#[test]
fn encrypted_dns_is_a_blind_spot() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let mut table = Table::with(&[("10.0.0.2:40001", 300)]);
    detector.handle_event(
        &tls(
            T0,
            "10.0.0.2:40001",
            "8.8.8.8:443",
            Some("dns.google"),
            false,
        ),
        &mut table,
    );
    detector.handle_event(
        &tls(
            T0 + 1,
            "10.0.0.2:40002",
            "8.8.8.8:443",
            Some("dns.google"),
            false,
        ),
        &mut table,
    );
    detector.handle_event(
        &quic(
            T0 + 2,
            "10.0.0.2:40003",
            "1.1.1.1:443",
            "mozilla.cloudflare-dns.com",
        ),
        &mut table,
    );
    detector.handle_event(
        &tls(T0 + 3, "10.0.0.2:40004", "9.9.9.9:853", None, false),
        &mut table,
    );
    detector.handle_event(
        &query(T0 + 4, "10.0.0.2:40005", 1, "dns.quad9.net"),
        &mut table,
    );
    let outputs = drain(&mut detector);
    assert!(detections(&outputs).is_empty());
    let spots = blind_spots(&outputs);
    let seen: Vec<(&str, &str)> = spots
        .iter()
        .map(|b| (b.kind.as_str(), b.name.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("doh", "dns.google"),
            ("doh", "mozilla.cloudflare-dns.com"),
            ("dot", ""),
            ("doh", "dns.quad9.net")
        ]
    );
    assert_eq!(spots[0].process.as_ref().map(|p| p.pid), Some(300));
    assert_eq!(spots[0].rule, "visibility.toml#doh/dns.google");
    let line: serde_json::Value = serde_json::from_str(&spots[0].to_json_line()).unwrap();
    assert_eq!(line["kind"], "blind_spot");
    assert_eq!(line["blind_spot"], "doh");
    assert_eq!(line["name"], "dns.google");
    assert_eq!(line["dst"], "8.8.8.8:443");
    assert_eq!(line["process"]["pid"], 300);
    assert!(line["ts"].as_str().unwrap().starts_with("2025-11-21T"));
    let heartbeat = spots[2].to_blind_spot();
    assert_eq!(heartbeat.kind, "dot");
    assert!(heartbeat.detail.contains("9.9.9.9"), "{}", heartbeat.detail);
    assert_eq!(heartbeat.since_ms, T0 + 3);
}

#[test]
fn ech_is_a_blind_spot_and_the_flow_is_named_from_dns_when_it_can_be() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    // Real ECH: outer SNI is the public name, extension present.
    detector.handle_event(
        &response(
            T0,
            "10.0.0.2:40000",
            1,
            "claude.ai",
            vec![AnswerData::A(Ipv4Addr::new(203, 0, 113, 5))],
        ),
        &mut Offline,
    );
    detector.handle_event(
        &tls(
            T0 + 1,
            "10.0.0.2:40001",
            "203.0.113.5:443",
            Some("cloudflare-ech.com"),
            true,
        ),
        &mut Offline,
    );
    // Same outer name without the extension is just a connection to that host.
    detector.handle_event(
        &tls(
            T0 + 2,
            "10.0.0.2:40002",
            "198.51.100.5:443",
            Some("cloudflare-ech.com"),
            false,
        ),
        &mut Offline,
    );
    let outputs = drain(&mut detector);
    let spots = blind_spots(&outputs);
    assert_eq!(spots.len(), 1);
    assert_eq!(
        (spots[0].kind, spots[0].name.as_str()),
        (BlindKind::Ech, "cloudflare-ech.com")
    );
    let found = detections(&outputs);
    let tls_found: Vec<&&Detection> = found
        .iter()
        .filter(|d| d.signal == Signal::TlsSni)
        .collect();
    assert_eq!(tls_found.len(), 1);
    assert_eq!(tls_found[0].name, "claude.ai");
    assert!(
        tls_found[0].reason.contains("ECH public name"),
        "{}",
        tls_found[0].reason
    );

    // GREASE ECH (extension present, real SNI) is an ordinary detection.
    detector.handle_event(
        &tls(
            T0 + 3,
            "10.0.0.2:40003",
            "203.0.113.9:443",
            Some("chatgpt.com"),
            true,
        ),
        &mut Offline,
    );
    let outputs = drain(&mut detector);
    assert!(blind_spots(&outputs).is_empty());
    assert_eq!(
        detections(&outputs)[0].evidence,
        Evidence::TlsSni {
            alpn: vec!["h2".into(), "http/1.1".into()],
            ech: true
        }
    );
}

#[test]
fn an_https_record_offering_ech_never_names_a_host_outside_the_catalog() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let svcb = |ech| AnswerData::Svcb {
        priority: 1,
        target: String::new(),
        alpn: vec!["h2".into()],
        ech,
        ipv4_hints: vec![Ipv4Addr::new(198, 51, 100, 77)],
        ipv6_hints: Vec::new(),
    };
    detector.handle_event(
        &response(
            T0,
            "10.0.0.2:40000",
            1,
            "private-bank.example",
            vec![svcb(true)],
        ),
        &mut Offline,
    );
    detector.handle_event(
        &response(T0, "10.0.0.2:40000", 2, "claude.ai", vec![svcb(true)]),
        &mut Offline,
    );
    detector.handle_event(
        &response(T0, "10.0.0.2:40000", 3, "other.example", vec![svcb(true)]),
        &mut Offline,
    );
    let outputs = drain(&mut detector);
    let spots = blind_spots(&outputs);
    let names: Vec<&str> = spots.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        ["", "claude.ai"],
        "one withheld (deduplicated), one catalog name"
    );
    for output in &outputs {
        let text = match output {
            Output::Detection(d) => d.to_json_line(),
            Output::BlindSpot(b) => b.to_json_line(),
        };
        assert!(
            !text.contains("private-bank") && !text.contains("other.example"),
            "{text}"
        );
    }
    // The hint address names a later flow without SNI.
    detector.handle_event(
        &tls(T0 + 1, "10.0.0.2:40001", "198.51.100.77:443", None, false),
        &mut Offline,
    );
    assert_eq!(detections(&drain(&mut detector))[0].name, "claude.ai");
}

#[test]
fn hostile_events_are_capped() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let mut event = query(T0, "10.0.0.2:40000", 1, "claude.ai");
    if let Event::Dns(dns) = &mut event {
        let question = dns.questions[0].clone();
        dns.questions = vec![question; 10_000];
    }
    detector.handle_event(&event, &mut Offline);
    assert!(detector.stats().names_checked <= 4);
    let mut hello = client_hello(Some(&format!("{}.claude.ai", "a".repeat(60))), false);
    hello.alpn = vec!["x".repeat(10_000); 1000];
    detector.handle_event(
        &Event::TlsHello(HelloEvent {
            ts_ms: T0,
            flow: flow("10.0.0.2:1", "203.0.113.1:443"),
            hello,
        }),
        &mut Offline,
    );
    let outputs = drain(&mut detector);
    let found = detections(&outputs);
    assert_eq!(
        found.len(),
        2,
        "the DNS name once (4 questions folded) and the SNI"
    );
    assert_eq!(found[0].count, 1);
    let Evidence::TlsSni { alpn, .. } = &found[1].evidence else {
        panic!("tls evidence")
    };
    assert_eq!(alpn.len(), 16);
    assert!(alpn.iter().all(|p| p.len() == 64));
    // A name over 253 bytes is no name: nothing leaves.
    detector.handle_event(
        &tls(
            T0,
            "10.0.0.2:2",
            "203.0.113.1:443",
            Some(&format!("{}.claude.ai", "a.".repeat(200))),
            false,
        ),
        &mut Offline,
    );
    assert!(drain(&mut detector).is_empty());
}

#[test]
fn a_new_catalog_takes_effect_at_once() {
    let mut detector = Detector::new(catalog(), DetectorConfig::default());
    let toml = "[[product]]\nid = \"acme.thing\"\nvendor = \"Acme\"\nname = \"Thing\"\ncategory = \"chat_app\"\nsources = [\"https://acme.example/thing\"]\nverified = \"2026-11-21\"\ndomains = [{ suffix = \"example.org\" }]\n";
    let small =
        Catalog::from_files("test-1", vec![("data/test.toml".into(), toml.into())]).unwrap();
    detector.set_catalog(Arc::new(small));
    detector.handle_event(&query(T0, "10.0.0.2:1", 1, "chatgpt.com"), &mut Offline);
    detector.handle_event(&query(T0, "10.0.0.2:1", 2, "www.example.org"), &mut Offline);
    let outputs = drain(&mut detector);
    let names: Vec<&str> = detections(&outputs)
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["www.example.org"]);
    assert_eq!(detections(&outputs)[0].catalog_version, "test-1");
}
