//! Turns untrusted protobuf messages into store records, enforcing the limits documented in
//! `proto/shadowai/v1/*.proto`. A message that breaks any limit is refused whole: nothing from it
//! reaches the store, so a batch is never half-stored.

use std::collections::HashSet;

use shadowai_proto::v1;
use uuid::Uuid;

use crate::store::{NewObservation, ObservedProcess, Signal};

/// Most observations in one `Report` call.
pub const MAX_BATCH_OBSERVATIONS: usize = 1_000;
/// Largest encoded request accepted by any call, bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How far in the future an observation time may lie (clock skew), ms.
const MAX_FUTURE_SKEW_MS: i64 = 24 * 3600 * 1000;

/// Why a message was refused. Displayed to the agent: says what, never anything internal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("{field} is longer than {limit} bytes")]
    TooLong { field: String, limit: usize },
    #[error("{field} has more than {limit} entries")]
    TooMany { field: String, limit: usize },
    #[error("{field} contains a NUL byte")]
    Nul { field: String },
    #[error("{field} is required")]
    Missing { field: String },
    #[error("{field} is not valid: {why}")]
    Bad { field: String, why: &'static str },
    #[error("batch has more than {MAX_BATCH_OBSERVATIONS} observations")]
    BatchTooLarge,
    #[error("observation id {id} appears twice in the batch")]
    DuplicateId { id: String },
}

impl Invalid {
    /// Whether the refusal is about size (RESOURCE_EXHAUSTED) rather than content (INVALID_ARGUMENT).
    pub fn is_size(&self) -> bool {
        matches!(self, Invalid::BatchTooLarge)
    }
}

/// Checks a string field against its byte limit. Control characters are kept (they are data and
/// are escaped when shown) except NUL, which PostgreSQL cannot store in text.
pub fn text(field: &str, value: &str, limit: usize) -> Result<String, Invalid> {
    if value.len() > limit {
        return Err(Invalid::TooLong {
            field: field.into(),
            limit,
        });
    }
    if value.contains('\0') {
        return Err(Invalid::Nul {
            field: field.into(),
        });
    }
    Ok(value.to_owned())
}

fn list(field: &str, values: &[String], count: usize, each: usize) -> Result<Vec<String>, Invalid> {
    if values.len() > count {
        return Err(Invalid::TooMany {
            field: field.into(),
            limit: count,
        });
    }
    values
        .iter()
        .map(|value| text(field, value, each))
        .collect()
}

/// Validates a whole batch and converts it. Any invalid observation refuses the batch.
pub fn batch(request: &v1::ReportRequest, now_ms: i64) -> Result<Vec<NewObservation>, Invalid> {
    if request.observations.len() > MAX_BATCH_OBSERVATIONS {
        return Err(Invalid::BatchTooLarge);
    }
    let mut seen = HashSet::with_capacity(request.observations.len());
    let mut out = Vec::with_capacity(request.observations.len());
    for (index, observation) in request.observations.iter().enumerate() {
        let record = self::observation(index, observation, now_ms)?;
        if !seen.insert(record.id) {
            return Err(Invalid::DuplicateId {
                id: record.id.to_string(),
            });
        }
        out.push(record);
    }
    Ok(out)
}

fn observation(index: usize, o: &v1::Observation, now_ms: i64) -> Result<NewObservation, Invalid> {
    let at = |name: &str| format!("observations[{index}].{name}");
    let id = Uuid::try_parse(&o.id).map_err(|_| Invalid::Bad {
        field: at("id"),
        why: "not a UUID",
    })?;
    if id.get_version_num() != 7 {
        return Err(Invalid::Bad {
            field: at("id"),
            why: "not a UUIDv7",
        });
    }
    if o.observed_at_ms <= 0 || o.observed_at_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(Invalid::Bad {
            field: at("observed_at_ms"),
            why: "out of range",
        });
    }
    let detection = o.detection.as_ref().ok_or_else(|| Invalid::Missing {
        field: at("detection"),
    })?;
    let product = text(&at("detection.product"), &detection.product, 128)?;
    if product.is_empty() {
        return Err(Invalid::Missing {
            field: at("detection.product"),
        });
    }
    let rule = text(&at("detection.rule"), &detection.rule, 256)?;
    if rule.is_empty() {
        return Err(Invalid::Missing {
            field: at("detection.rule"),
        });
    }
    let confidence = match v1::Confidence::try_from(detection.confidence) {
        Ok(v1::Confidence::Low) => "low",
        Ok(v1::Confidence::Medium) => "medium",
        Ok(v1::Confidence::High) => "high",
        Ok(v1::Confidence::Unspecified) => "unspecified",
        Err(_) => {
            return Err(Invalid::Bad {
                field: at("detection.confidence"),
                why: "unknown value",
            });
        }
    };
    let plan = text(&at("detection.plan"), &detection.plan, 256)?;
    let tenant = text(&at("detection.tenant"), &detection.tenant, 256)?;
    let process = o
        .process
        .as_ref()
        .map(|p| process(&at("process"), p))
        .transpose()?;
    let kind = o
        .kind
        .as_ref()
        .ok_or_else(|| Invalid::Missing { field: at("kind") })?;
    let (signal, name, details) = self::kind(&at("kind"), kind, process.as_ref())?;
    Ok(NewObservation {
        id,
        observed_at_ms: o.observed_at_ms,
        signal,
        name,
        product,
        vendor: text(&at("detection.vendor"), &detection.vendor, 128)?,
        category: text(&at("detection.category"), &detection.category, 64)?,
        rule,
        reason: text(&at("detection.reason"), &detection.reason, 1024)?,
        risk: list(&at("detection.risk"), &detection.risk, 32, 64)?,
        confidence: confidence.to_owned(),
        plan: (!plan.is_empty()).then_some(plan),
        tenant: (!tenant.is_empty()).then_some(tenant),
        catalog_version: text(
            &at("detection.catalog_version"),
            &detection.catalog_version,
            64,
        )?,
        count: detection.count.max(1),
        process,
        details,
        evidence: prost::Message::encode_to_vec(o),
    })
}

fn process(field: &str, p: &v1::ProcessInfo) -> Result<ObservedProcess, Invalid> {
    if p.ancestors.len() > 16 {
        return Err(Invalid::TooMany {
            field: format!("{field}.ancestors"),
            limit: 16,
        });
    }
    for ancestor in &p.ancestors {
        text(&format!("{field}.ancestors.name"), &ancestor.name, 256)?;
        text(&format!("{field}.ancestors.exe"), &ancestor.exe, 4096)?;
    }
    Ok(ObservedProcess {
        pid: p.pid,
        parent_pid: p.parent_pid,
        name: text(&format!("{field}.name"), &p.name, 256)?,
        exe: text(&format!("{field}.exe"), &p.exe, 4096)?,
        cmdline: text(&format!("{field}.cmdline"), &p.cmdline, 8192)?,
        user: text(&format!("{field}.user"), &p.user, 256)?,
    })
}

fn kind(
    field: &str,
    kind: &v1::observation::Kind,
    process: Option<&ObservedProcess>,
) -> Result<(Signal, String, serde_json::Value), Invalid> {
    use serde_json::json;
    use v1::observation::Kind;
    let f = |name: &str| format!("{field}.{name}");
    Ok(match kind {
        Kind::ProcessSeen(seen) => {
            let event = match v1::ProcessEvent::try_from(seen.event) {
                Ok(v1::ProcessEvent::Started) => "started",
                Ok(v1::ProcessEvent::Changed) => "changed",
                Ok(v1::ProcessEvent::SpawnedByAgent) => "spawned_by_agent",
                Ok(v1::ProcessEvent::Unspecified) => "unspecified",
                Err(_) => {
                    return Err(Invalid::Bad {
                        field: f("process_seen.event"),
                        why: "unknown value",
                    });
                }
            };
            let process = process.ok_or_else(|| Invalid::Missing {
                field: "process".into(),
            })?;
            (
                Signal::Process,
                process.name.clone(),
                json!({ "event": event }),
            )
        }
        Kind::Dns(dns) => {
            let qname = domain(&f("dns.qname"), &dns.qname)?;
            let answers = list(&f("dns.answers"), &dns.answers, 32, 45)?;
            let resolver = text(&f("dns.resolver"), &dns.resolver, 45)?;
            let details = json!({ "qtype": dns.qtype, "answers": answers, "resolver": resolver, "tcp": dns.tcp });
            (Signal::Dns, qname, details)
        }
        Kind::TlsSni(tls) => {
            let name = domain(&f("tls_sni.server_name"), &tls.server_name)?;
            let details = json!({
                "alpn": list(&f("tls_sni.alpn"), &tls.alpn, 16, 64)?,
                "ech": tls.ech,
                "src": text(&f("tls_sni.src"), &tls.src, 64)?,
                "dst": text(&f("tls_sni.dst"), &tls.dst, 64)?,
            });
            (Signal::TlsSni, name, details)
        }
        Kind::QuicSni(quic) => {
            let name = domain(&f("quic_sni.server_name"), &quic.server_name)?;
            let details = json!({
                "quic_version": quic.quic_version,
                "alpn": list(&f("quic_sni.alpn"), &quic.alpn, 16, 64)?,
                "src": text(&f("quic_sni.src"), &quic.src, 64)?,
                "dst": text(&f("quic_sni.dst"), &quic.dst, 64)?,
            });
            (Signal::QuicSni, name, details)
        }
        Kind::Config(config) => {
            let path = text(&f("config.path"), &config.path, 4096)?;
            let details = json!({
                "path": path,
                "setting": text(&f("config.setting"), &config.setting, 256)?,
                "value": text(&f("config.value"), &config.value, 1024)?,
                "mcp_server": text(&f("config.mcp_server"), &config.mcp_server, 256)?,
                "mcp_target": text(&f("config.mcp_target"), &config.mcp_target, 1024)?,
                "mcp_transport": text(&f("config.mcp_transport"), &config.mcp_transport, 16)?,
            });
            (Signal::Config, path, details)
        }
        Kind::Listener(listener) => {
            let address = text(&f("listener.address"), &listener.address, 45)?;
            if listener.port > u32::from(u16::MAX) {
                return Err(Invalid::Bad {
                    field: f("listener.port"),
                    why: "not a port",
                });
            }
            let details = json!({
                "address": address,
                "port": listener.port,
                "protocol": text(&f("listener.protocol"), &listener.protocol, 8)?,
                "exposed": listener.exposed,
            });
            (
                Signal::Listener,
                format!("{address}:{}", listener.port),
                details,
            )
        }
        Kind::App(app) => {
            let app_id = text(&f("app.app_id"), &app.app_id, 256)?;
            let details = json!({
                "app_id": app_id,
                "path": text(&f("app.path"), &app.path, 4096)?,
                "version": text(&f("app.version"), &app.version, 64)?,
            });
            (Signal::App, app_id, details)
        }
    })
}

/// A DNS name as agents report it: lowercase, no trailing dot, at most 253 bytes of LDH labels
/// (underscores allowed for service labels).
fn domain(field: &str, name: &str) -> Result<String, Invalid> {
    let name = text(field, name, 253)?;
    let is_valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
    if !is_valid {
        return Err(Invalid::Bad {
            field: field.into(),
            why: "not a lowercase DNS name",
        });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(now_ms: i64) -> v1::Observation {
        v1::Observation {
            id: Uuid::now_v7().to_string(),
            observed_at_ms: now_ms,
            detection: Some(v1::Detection {
                product: "ollama.ollama".into(),
                rule: "data/ollama.toml#ollama.ollama/process/server".into(),
                confidence: v1::Confidence::High as i32,
                count: 1,
                ..Default::default()
            }),
            process: Some(v1::ProcessInfo {
                pid: 42,
                name: "ollama".into(),
                ..Default::default()
            }),
            kind: Some(v1::observation::Kind::ProcessSeen(v1::ProcessObservation {
                event: v1::ProcessEvent::Started as i32,
            })),
        }
    }

    fn check(mutate: impl FnOnce(&mut v1::Observation), expect: Result<(), &str>) {
        let now = 1_800_000_000_000;
        let mut observation = valid(now);
        mutate(&mut observation);
        let request = v1::ReportRequest {
            observations: vec![observation],
        };
        let got = batch(&request, now).map(|_| ()).map_err(|e| e.to_string());
        match expect {
            Ok(()) => assert!(got.is_ok(), "{got:?}"),
            Err(fragment) => {
                let error = got.expect_err("must be refused");
                assert!(
                    error.contains(fragment),
                    "{error} should mention {fragment}"
                );
            }
        }
    }

    #[test]
    fn limits_are_enforced() {
        check(|_| {}, Ok(()));
        check(|o| o.id = "nope".into(), Err("not a UUID"));
        check(|o| o.id = Uuid::new_v4().to_string(), Err("UUIDv7"));
        check(|o| o.observed_at_ms = 0, Err("out of range"));
        check(|o| o.detection = None, Err("detection is required"));
        check(|o| o.kind = None, Err("kind is required"));
        check(
            |o| o.process.as_mut().unwrap().cmdline = "x".repeat(8193),
            Err("longer than 8192"),
        );
        check(
            |o| o.process.as_mut().unwrap().name = "a\0b".into(),
            Err("NUL"),
        );
        check(
            |o| o.detection.as_mut().unwrap().confidence = 99,
            Err("unknown value"),
        );
        check(
            |o| o.detection.as_mut().unwrap().risk = vec!["r".into(); 33],
            Err("more than 32"),
        );
        check(
            |o| {
                o.kind = Some(v1::observation::Kind::Dns(v1::DnsObservation {
                    qname: "API.openai.com".into(),
                    ..Default::default()
                }))
            },
            Err("lowercase DNS name"),
        );
        // hostile text that is not over a limit is data, kept byte for byte
        check(
            |o| o.process.as_mut().unwrap().cmdline = "<script>'; DROP TABLE x;--\u{1b}[2J".into(),
            Ok(()),
        );
    }

    #[test]
    fn batches_are_refused_whole() {
        let now = 1_800_000_000_000;
        let first = valid(now);
        let request = v1::ReportRequest {
            observations: vec![first.clone(), first],
        };
        assert!(matches!(
            batch(&request, now),
            Err(Invalid::DuplicateId { .. })
        ));
        let request = v1::ReportRequest {
            observations: vec![valid(now); MAX_BATCH_OBSERVATIONS + 1],
        };
        let error = batch(&request, now).unwrap_err();
        assert!(error.is_size());
    }
}
