//! Records that go into and come out of the store. Plain data: no SQL, no backend types.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The kind of signal an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Process,
    Dns,
    TlsSni,
    QuicSni,
    Config,
    Listener,
    App,
}

impl Signal {
    /// Every signal, in display order.
    pub const ALL: [Signal; 7] = [
        Signal::Process,
        Signal::Dns,
        Signal::TlsSni,
        Signal::QuicSni,
        Signal::Config,
        Signal::Listener,
        Signal::App,
    ];

    /// The stable name used in the database, the JSON API and the agent's `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Process => "process",
            Signal::Dns => "dns",
            Signal::TlsSni => "tls_sni",
            Signal::QuicSni => "quic_sni",
            Signal::Config => "config",
            Signal::Listener => "listener",
            Signal::App => "app",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Signal {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Signal::ALL
            .into_iter()
            .find(|signal| signal.as_str() == text)
            .ok_or(UnknownName { kind: "signal" })
    }
}

/// What a dashboard or API user may do. Ordered by power: `Viewer < Responder < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Responder,
    Admin,
}

impl Role {
    /// The stable name used in the database and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Responder => "responder",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "admin" => Ok(Role::Admin),
            "responder" => Ok(Role::Responder),
            "viewer" => Ok(Role::Viewer),
            _ => Err(UnknownName { kind: "role" }),
        }
    }
}

/// A name that is not one of an enum's stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}")]
pub struct UnknownName {
    /// Which kind of name: "signal", "role".
    pub kind: &'static str,
}

/// An enrollment token to store. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrollmentToken {
    pub token_id: String,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_sha256: String,
    pub group: String,
    pub expires_at_ms: Option<i64>,
    pub max_uses: Option<u32>,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// An enrollment attempt: the token presented and the agent to create when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollAgent {
    pub token_id: String,
    /// SHA-256 of the presented secret, lowercase hex.
    pub secret_sha256: String,
    pub agent_id: Uuid,
    /// SHA-256 of the issued certificate's DER, lowercase hex.
    pub cert_fingerprint: String,
    pub cert_expires_at_ms: i64,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub arch: String,
    pub agent_version: String,
    /// The peer address enrollment came from (audit only).
    pub remote_addr: String,
    pub now_ms: i64,
}

/// The result of a successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledAgent {
    pub agent_id: Uuid,
    pub group: String,
}

/// Who a client certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub agent_id: Uuid,
    pub group: String,
    pub hostname: String,
    pub revoked: bool,
}

/// One agent, as listed to operators.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSummary {
    pub agent_id: Uuid,
    pub group: String,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub arch: String,
    pub agent_version: String,
    pub catalog_version: String,
    pub enrolled_at_ms: i64,
    pub last_contact_ms: i64,
    /// The last heartbeat's health document (sensors, blind spots, spool); `{}` before the first.
    pub health: serde_json::Value,
    pub revoked: bool,
}

/// What an agent says about itself in a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub arch: String,
    pub agent_version: String,
    pub catalog_version: String,
    pub health: serde_json::Value,
}

/// The process an observation is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedProcess {
    pub pid: u32,
    pub parent_pid: u32,
    pub name: String,
    pub exe: String,
    pub cmdline: String,
    pub user: String,
}

/// One validated observation to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewObservation {
    pub id: Uuid,
    pub observed_at_ms: i64,
    pub signal: Signal,
    /// The domain, or the tool/process name.
    pub name: String,
    pub product: String,
    pub vendor: String,
    pub category: String,
    pub rule: String,
    pub reason: String,
    pub risk: Vec<String>,
    pub confidence: String,
    pub plan: Option<String>,
    /// The tenant the evidence reveals (an Azure OpenAI resource, a Copilot org host label).
    pub tenant: Option<String>,
    pub catalog_version: String,
    pub count: u32,
    pub process: Option<ObservedProcess>,
    /// Signal-specific fields.
    pub details: serde_json::Value,
    /// The protobuf `Observation` as received, kept as evidence.
    pub evidence: Vec<u8>,
}

/// What a batch insert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Observations stored by this call.
    pub inserted: usize,
    /// Observations whose id was already stored (by this agent or another): left untouched.
    pub duplicates: usize,
    /// Alert rows created by this call (updates of existing alerts are not counted).
    pub alerts_raised: usize,
}

/// One stored observation, as listed by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObservation {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub hostname: String,
    pub observed_at_ms: i64,
    pub received_at_ms: i64,
    pub signal: Signal,
    pub name: String,
    pub product: String,
    pub vendor: String,
    pub category: String,
    pub rule: String,
    pub reason: String,
    pub risk: Vec<String>,
    pub confidence: String,
    pub plan: Option<String>,
    /// The tenant the evidence reveals (an Azure OpenAI resource, a Copilot org host label).
    pub tenant: Option<String>,
    pub catalog_version: String,
    pub count: u32,
    pub process: Option<ObservedProcess>,
    pub details: serde_json::Value,
}

/// The process an alert names (from its latest observation that had one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertProcess {
    pub pid: u32,
    pub name: String,
    pub exe: String,
    pub cmdline: String,
}

/// One alert, with the host it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub hostname: String,
    pub group: String,
    pub user_name: String,
    pub product: String,
    pub vendor: String,
    pub category: String,
    /// Why the alert exists: a `policy::Reason` id, e.g. "new_product".
    pub reason: String,
    /// "info", "low", "medium", "high" or "critical" (`policy::Severity`).
    pub severity: String,
    /// "open" until triage changes it.
    pub status: String,
    pub title: String,
    pub rule: String,
    pub process: Option<AlertProcess>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub count: i64,
    /// The first and latest observation that fired it (`None` for sensor alerts).
    pub first_observation_id: Option<Uuid>,
    pub last_observation_id: Option<Uuid>,
    /// Why it fired (latest firing), naming the catalog rule and the numbers.
    pub explanation: String,
    /// The suppression in force when it last fired, if any.
    pub suppressed_by: Option<Uuid>,
}

/// A position in a newest-first listing: the sort time and id of the last item of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub at_ms: i64,
    pub id: Uuid,
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.at_ms, self.id.simple())
    }
}

impl FromStr for PageCursor {
    type Err = UnknownName;

    /// Parses the form written by `Display` and nothing else (cursors come from clients).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = UnknownName { kind: "cursor" };
        let (at, id) = text.split_once('_').ok_or(bad)?;
        if at.is_empty() || at.len() > 19 || !at.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad);
        }
        if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad);
        }
        let at_ms = at.parse().map_err(|_| bad)?;
        let id = Uuid::try_parse(id).map_err(|_| bad)?;
        Ok(PageCursor { at_ms, id })
    }
}

/// Which alerts to list, newest `last_seen` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertQuery {
    /// At most this many (the store caps it at `MAX_PAGE`).
    pub limit: u32,
    /// Continue after this item.
    pub after: Option<PageCursor>,
    pub status: Option<String>,
    pub product: Option<String>,
}

/// Further filters of an alert listing (all optional; `AlertFilters::default()` filters nothing
/// but hides suppressed alerts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilters {
    pub severity: Option<String>,
    pub reason: Option<String>,
    pub category: Option<String>,
    pub group: Option<String>,
    pub agent_id: Option<Uuid>,
    pub user: Option<String>,
    /// Last seen at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Last seen before (Unix ms).
    pub until_ms: Option<i64>,
    pub suppressed: SuppressedFilter,
}

/// Whether a listing shows suppressed alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SuppressedFilter {
    /// Leave them out (the open queue).
    #[default]
    Hide,
    /// Only them.
    Only,
    /// With the others.
    Include,
}

/// One finding: what a host x user x product x signal (x MCP server) amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub hostname: String,
    pub group: String,
    /// `""` when no observation was attributed to a user.
    pub user_name: String,
    pub product: String,
    pub signal: Signal,
    /// The MCP server of MCP configuration findings, `""` otherwise.
    pub subject: String,
    pub vendor: String,
    pub category: String,
    /// The catalog rule of the latest observation.
    pub rule: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Times seen (the sum of the observations' counts).
    pub count: i64,
    pub first_observation_id: Uuid,
    pub last_observation_id: Uuid,
    /// Union of the observations' risk flags, sorted.
    pub risk: Vec<String>,
    /// Latest plan and tenant seen.
    pub plan: Option<String>,
    pub tenant: Option<String>,
}

/// Which findings to list, newest `last_seen` first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingQuery {
    /// At most this many (the store caps it at `MAX_PAGE`).
    pub limit: u32,
    /// Continue after this item.
    pub after: Option<PageCursor>,
    pub agent_id: Option<Uuid>,
    pub product: Option<String>,
    pub category: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub signal: Option<Signal>,
    /// Findings carrying this risk flag (`[a-z0-9_]`, checked by the caller).
    pub risk: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// Which observations to list, newest `observed_at` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationQuery {
    /// At most this many (the store caps it at `MAX_PAGE`).
    pub limit: u32,
    /// Continue after this item.
    pub after: Option<PageCursor>,
    pub agent_id: Option<Uuid>,
    pub product: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PageCursor>,
}

/// A dashboard user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
}

/// A login session to store. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token_sha256: String,
    pub user_id: Uuid,
    /// The CSRF token forms of this session must carry.
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A live session and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: Uuid,
    pub user_name: String,
    pub role: Role,
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

/// The holder of a valid (unrevoked) API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyIdentity {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for signal in Signal::ALL {
            assert_eq!(signal.as_str().parse::<Signal>(), Ok(signal));
        }
        for role in [Role::Admin, Role::Responder, Role::Viewer] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("Process".parse::<Signal>().is_err());
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = PageCursor {
            at_ms: 1_700_000_000_123,
            id: Uuid::now_v7(),
        };
        assert_eq!(cursor.to_string().parse::<PageCursor>(), Ok(cursor));
        for bad in [
            "",
            "_",
            "12",
            "-1_0190b4f0e1a87c3d9b2a5e6f7a8b9c0d",
            "1_0190B4F0E1A87C3D9B2A5E6F7A8B9C0D",
            "1_0190b4f0-e1a8-7c3d-9b2a-5e6f7a8b9c0d",
            "99999999999999999999_0190b4f0e1a87c3d9b2a5e6f7a8b9c0d",
            "1_0190b4f0e1a87c3d9b2a5e6f7a8b9c0d_",
            "1 _0190b4f0e1a87c3d9b2a5e6f7a8b9c0d",
        ] {
            assert!(bad.parse::<PageCursor>().is_err(), "{bad:?} was accepted");
        }
    }
}
