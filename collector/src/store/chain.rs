//! The evidence chain: every stored observation, every retention expiry and every control record
//! (triage and policy audit rows) is linked into a hash chain, so that a row edited, deleted,
//! reordered or inserted outside the product is found by [`Store::verify`].
//!
//! # Design
//!
//! - **One chain per agent** (`agent:<uuid>`) for its observations, plus one **`control`** chain for
//!   triage and policy records. A link is `hash = SHA-256(prev_hash ‖ canonical record)`; the first
//!   link of a chain has `prev_hash` = 32 zero bytes.
//! - **Several collectors on one PostgreSQL.** Extending a chain starts with an upsert of the
//!   chain's head row (`INSERT .. ON CONFLICT (chain) DO UPDATE .. RETURNING seq, hash`): on
//!   PostgreSQL that takes the head row's lock until commit, so two writers of one chain queue
//!   instead of forking it; on SQLite there is one writer anyway. Writers of different agents never
//!   wait for each other, which is why there is a chain per agent and not one global chain.
//! - **Same transaction.** [`ChainTx::link_observations`] runs inside `insert_observations`'
//!   transaction: observations and their links commit together or not at all. It re-reads the rows
//!   it links from the database, with the same decoder `verify` uses, so the chain hashes exactly
//!   what was committed.
//! - **Roots.** [`Store::commit_root`] (run every N seconds by `serve`) writes a root that links the
//!   previous root and lists `(chain, seq, hash)` for every chain whose head moved since; root
//!   commits are serialised by the `chain_root_head` row. A root pins heads, so truncating a chain's
//!   tail (deleting its newest records and rewinding its head) or deleting a whole chain is caught
//!   once a root covered it; the root hash that `verify` prints can be kept outside the database
//!   (ticket, SIEM, report) and compared later.
//! - **Retention** ([`Store::expire_observations`]) removes a *prefix* of an agent chain: the links
//!   and observations up to `through_seq`, all received before the cutoff. In the same transaction
//!   it stores a `chain_expiries` row (what, when, which policy, the hash of link `through_seq` as
//!   the new anchor) and links that row into the same chain. `verify` starts the chain at the
//!   anchor, and the newest expiry record must state the head's `expired_through` and anchor: an
//!   expiry that was not done by the product does not pass.
//! - An unkeyed hash chain cannot stop someone with write access who recomputes every later hash;
//!   it makes any other edit visible, and a recomputation visible against a root hash recorded
//!   elsewhere (`verify --expect-root SEQ:HASH`).
//!
//! # Canonical record, version 1
//!
//! Not JSON: a length-prefixed byte encoding of the stored columns, so that formatting cannot
//! change a hash. A *field* is one of
//! `0x00` (NULL) | `0x01` + i64 big-endian (8 bytes) | `0x02` + u64 big-endian length + UTF-8 bytes
//! (text) | `0x03` + u64 big-endian length + bytes (blob).
//!
//! A link's canonical record is `"SAEC"`, the version byte `0x01`, the fields chain, seq, kind,
//! record id, linked-at (ms), then a u32 big-endian field count and the record's fields:
//!
//! - `observation`: the `observations` columns id, agent_id, observed_at_ms, received_at_ms,
//!   signal, name, product, vendor, category, rule, reason, risk, confidence, plan,
//!   catalog_version, count, process_pid, process_parent_pid, process_name, process_exe,
//!   process_cmdline, process_user, details, evidence, tenant (25 fields, as stored);
//! - `expiry`: the `chain_expiries` columns id, chain, through_seq, anchor_hash, observations, links,
//!   cutoff_ms, policy, expired_at_ms;
//! - any control kind: one blob field, the record's canonical bytes as given to
//!   [`ChainTx::append_control`] (kept in `chain_links.record`).
//!
//! A root's canonical record is `"SAER"`, `0x01`, the fields seq and committed-at (ms), a u64
//! big-endian entry count, then per entry the fields chain (text), seq (int), hash (blob);
//! `root hash = SHA-256(previous root hash ‖ canonical root)`, the first root's previous hash being
//! 32 zero bytes. A new column in a chained table needs a new version of this encoding.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::{Backend, Store, StoreError};

/// The hash of "no previous link".
pub const GENESIS: [u8; 32] = [0; 32];
/// The version of the canonical encoding written by this code.
pub const CANONICAL_VERSION: u8 = 1;
/// The chain of triage and policy records.
pub const CONTROL_CHAIN: &str = "control";
/// Link kind of an observation.
pub const KIND_OBSERVATION: &str = "observation";
/// Link kind of a retention expiry.
pub const KIND_EXPIRY: &str = "expiry";
/// Largest control record accepted by [`ChainTx::append_control`].
pub const MAX_CONTROL_RECORD: usize = 1 << 20;
/// Links inserted per statement.
const LINKS_PER_STATEMENT: usize = 500;

/// The chain of an agent's observations.
pub fn agent_chain(agent_id: Uuid) -> String {
    format!("agent:{agent_id}")
}

// ------------------------------------------------------------------------------ canonical bytes

/// Appends canonical fields to a buffer.
#[derive(Debug, Default)]
pub struct Canonical {
    bytes: Vec<u8>,
}

impl Canonical {
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// A NULL field.
    pub fn null(&mut self) -> &mut Self {
        self.bytes.push(0x00);
        self
    }

    /// An integer field.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bytes.push(0x01);
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A text field.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.bytes.push(0x02);
        self.bytes
            .extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        self
    }

    /// A blob field.
    pub fn blob(&mut self, value: &[u8]) -> &mut Self {
        self.bytes.push(0x03);
        self.bytes
            .extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.bytes.extend_from_slice(value);
        self
    }

    /// An integer field, or NULL.
    pub fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int(value),
            None => self.null(),
        }
    }

    /// A text field, or NULL.
    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    /// A blob field, or NULL.
    pub fn opt_blob(&mut self, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(value) => self.blob(value),
            None => self.null(),
        }
    }

    /// A raw count (not a field): the number of fields or entries that follow.
    fn count(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }
}

/// Where a link sits and what it links.
#[derive(Debug, Clone, Copy)]
pub struct LinkHeader<'a> {
    pub chain: &'a str,
    pub seq: i64,
    pub kind: &'a str,
    pub record_id: &'a str,
    pub linked_at_ms: i64,
}

/// `SHA-256(prev ‖ canonical link record)`; `fields` are the record's canonical fields.
pub fn link_hash(
    prev: &[u8],
    header: &LinkHeader<'_>,
    field_count: u32,
    fields: &[u8],
) -> [u8; 32] {
    let mut head = Canonical::default();
    head.bytes.extend_from_slice(b"SAEC");
    head.bytes.push(CANONICAL_VERSION);
    head.text(header.chain)
        .int(header.seq)
        .text(header.kind)
        .text(header.record_id)
        .int(header.linked_at_ms)
        .count(field_count);
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(head.as_bytes());
    hasher.update(fields);
    hasher.finalize().into()
}

/// The `observations` columns a link covers, as stored (all optional: they come from a LEFT JOIN
/// in `verify`).
#[derive(Debug, Default, sqlx::FromRow)]
pub(super) struct ObservationColumns {
    o_id: Option<String>,
    o_agent_id: Option<String>,
    o_observed_at_ms: Option<i64>,
    o_received_at_ms: Option<i64>,
    o_signal: Option<String>,
    o_name: Option<String>,
    o_product: Option<String>,
    o_vendor: Option<String>,
    o_category: Option<String>,
    o_rule: Option<String>,
    o_reason: Option<String>,
    o_risk: Option<String>,
    o_confidence: Option<String>,
    o_plan: Option<String>,
    o_catalog_version: Option<String>,
    o_count: Option<i64>,
    o_process_pid: Option<i64>,
    o_process_parent_pid: Option<i64>,
    o_process_name: Option<String>,
    o_process_exe: Option<String>,
    o_process_cmdline: Option<String>,
    o_process_user: Option<String>,
    o_details: Option<String>,
    o_evidence: Option<Vec<u8>>,
    o_tenant: Option<String>,
}

/// The select list for [`ObservationColumns`] from `observations o`.
macro_rules! observation_columns {
    () => {
        "o.id AS o_id, o.agent_id AS o_agent_id, o.observed_at_ms AS o_observed_at_ms, \
         o.received_at_ms AS o_received_at_ms, o.signal AS o_signal, o.name AS o_name, \
         o.product AS o_product, o.vendor AS o_vendor, o.category AS o_category, o.rule AS o_rule, \
         o.reason AS o_reason, o.risk AS o_risk, o.confidence AS o_confidence, o.plan AS o_plan, \
         o.catalog_version AS o_catalog_version, o.count AS o_count, o.process_pid AS o_process_pid, \
         o.process_parent_pid AS o_process_parent_pid, o.process_name AS o_process_name, \
         o.process_exe AS o_process_exe, o.process_cmdline AS o_process_cmdline, \
         o.process_user AS o_process_user, o.details AS o_details, o.evidence AS o_evidence, \
         o.tenant AS o_tenant"
    };
}

/// Fields in an observation's canonical record.
const OBSERVATION_FIELDS: u32 = 25;

impl ObservationColumns {
    fn encode(&self, out: &mut Canonical) {
        out.opt_text(self.o_id.as_deref())
            .opt_text(self.o_agent_id.as_deref())
            .opt_int(self.o_observed_at_ms)
            .opt_int(self.o_received_at_ms)
            .opt_text(self.o_signal.as_deref())
            .opt_text(self.o_name.as_deref())
            .opt_text(self.o_product.as_deref())
            .opt_text(self.o_vendor.as_deref())
            .opt_text(self.o_category.as_deref())
            .opt_text(self.o_rule.as_deref())
            .opt_text(self.o_reason.as_deref())
            .opt_text(self.o_risk.as_deref())
            .opt_text(self.o_confidence.as_deref())
            .opt_text(self.o_plan.as_deref())
            .opt_text(self.o_catalog_version.as_deref())
            .opt_int(self.o_count)
            .opt_int(self.o_process_pid)
            .opt_int(self.o_process_parent_pid)
            .opt_text(self.o_process_name.as_deref())
            .opt_text(self.o_process_exe.as_deref())
            .opt_text(self.o_process_cmdline.as_deref())
            .opt_text(self.o_process_user.as_deref())
            .opt_text(self.o_details.as_deref())
            .opt_blob(self.o_evidence.as_deref())
            .opt_text(self.o_tenant.as_deref());
    }
}

/// A `chain_expiries` row (optional columns: LEFT JOIN in `verify`).
#[derive(Debug, Default, sqlx::FromRow)]
pub(super) struct ExpiryColumns {
    e_id: Option<String>,
    e_chain: Option<String>,
    e_through_seq: Option<i64>,
    e_anchor_hash: Option<Vec<u8>>,
    e_observations: Option<i64>,
    e_links: Option<i64>,
    e_cutoff_ms: Option<i64>,
    e_policy: Option<String>,
    e_expired_at_ms: Option<i64>,
}

/// Fields in an expiry's canonical record.
const EXPIRY_FIELDS: u32 = 9;

impl ExpiryColumns {
    fn encode(&self, out: &mut Canonical) {
        out.opt_text(self.e_id.as_deref())
            .opt_text(self.e_chain.as_deref())
            .opt_int(self.e_through_seq)
            .opt_blob(self.e_anchor_hash.as_deref())
            .opt_int(self.e_observations)
            .opt_int(self.e_links)
            .opt_int(self.e_cutoff_ms)
            .opt_text(self.e_policy.as_deref())
            .opt_int(self.e_expired_at_ms);
    }
}

/// Root hash: `SHA-256(prev ‖ "SAER" 0x01 seq committed_at count entries…)`, fed entry by entry.
struct RootHasher {
    hasher: Sha256,
    scratch: Canonical,
}

impl RootHasher {
    fn new(prev: &[u8], seq: i64, committed_at_ms: i64, entries: i64) -> Self {
        let mut scratch = Canonical::default();
        scratch.bytes.extend_from_slice(b"SAER");
        scratch.bytes.push(CANONICAL_VERSION);
        scratch.int(seq).int(committed_at_ms);
        scratch
            .bytes
            .extend_from_slice(&(entries.max(0) as u64).to_be_bytes());
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(scratch.as_bytes());
        scratch.clear();
        RootHasher { hasher, scratch }
    }

    fn entry(&mut self, chain: &str, seq: i64, hash: &[u8]) {
        self.scratch.clear();
        self.scratch.text(chain).int(seq).blob(hash);
        self.hasher.update(self.scratch.as_bytes());
    }

    fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

// ------------------------------------------------------------------------------ writing links

/// A link written by this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub chain: String,
    pub seq: i64,
    pub hash: [u8; 32],
}

/// Chain operations inside a caller's transaction, for both backends.
pub trait ChainTx: Send {
    /// Links the observations `ids` (already inserted in this transaction, all of `agent_id`)
    /// into the agent's chain, in id order. Returns the new head, or `None` for no ids.
    fn link_observations<'a>(
        &'a mut self,
        agent_id: Uuid,
        now_ms: i64,
        ids: &'a [Uuid],
    ) -> impl Future<Output = Result<Option<Link>, StoreError>> + Send + 'a;

    /// Links a control record (a triage event, a policy change) into the `control` chain.
    /// `kind` is a lowercase name such as `triage_event` (`[a-z][a-z0-9_]*`, at most 64 bytes;
    /// not `observation` or `expiry`), `record_id` the row's id, `canonical` the record's canonical
    /// bytes (versioned and length-prefixed by the caller; at most 1 MiB). The bytes are kept in the
    /// link, so the audit trail verifies on its own.
    fn append_control<'a>(
        &'a mut self,
        kind: &'a str,
        record_id: &'a str,
        canonical: &'a [u8],
        now_ms: i64,
    ) -> impl Future<Output = Result<Link, StoreError>> + Send + 'a;
}

/// Links `ids` (inserted in `tx`) into `agent_id`'s chain: the call `insert_observations` makes.
pub async fn link_observations<T: ChainTx>(
    tx: &mut T,
    agent_id: Uuid,
    now_ms: i64,
    ids: &[Uuid],
) -> Result<Option<Link>, StoreError> {
    tx.link_observations(agent_id, now_ms, ids).await
}

/// Links a control record into the `control` chain; see [`ChainTx::append_control`].
pub async fn append_control<T: ChainTx>(
    tx: &mut T,
    kind: &str,
    record_id: &str,
    canonical: &[u8],
    now_ms: i64,
) -> Result<Link, StoreError> {
    tx.append_control(kind, record_id, canonical, now_ms).await
}

fn is_control_kind(kind: &str) -> bool {
    let bytes = kind.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        && kind != KIND_OBSERVATION
        && kind != KIND_EXPIRY
}

/// A link about to be inserted.
struct NewLink {
    seq: i64,
    kind: String,
    record_id: String,
    linked_at_ms: i64,
    hash: [u8; 32],
    record: Option<Vec<u8>>,
}

/// Locks (creating if missing) a chain head; evaluates to `(seq, hash)`.
macro_rules! lock_head {
    ($conn:expr, $chain:expr, $now_ms:expr) => {{
        let head: (i64, Vec<u8>) = sqlx::query_as(
            "INSERT INTO chain_heads (chain, seq, hash, expired_through, anchor_hash, rooted_seq, \
             oldest_at_ms, updated_at_ms) VALUES ($1, 0, $2, 0, $2, 0, NULL, $3) \
             ON CONFLICT (chain) DO UPDATE SET updated_at_ms = chain_heads.updated_at_ms \
             RETURNING seq, hash",
        )
        .bind($chain)
        .bind(GENESIS.as_slice())
        .bind($now_ms)
        .fetch_one($conn)
        .await?;
        head
    }};
}

/// Inserts links, `LINKS_PER_STATEMENT` per statement.
macro_rules! insert_links {
    ($db:ty, $conn:expr, $chain:expr, $links:expr) => {{
        for chunk in $links.chunks(LINKS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO chain_links (chain, seq, kind, record_id, linked_at_ms, hash, record) ",
            );
            insert.push_values(chunk, |mut row, link: &NewLink| {
                row.push_bind($chain.to_owned())
                    .push_bind(link.seq)
                    .push_bind(link.kind.clone())
                    .push_bind(link.record_id.clone())
                    .push_bind(link.linked_at_ms)
                    .push_bind(link.hash.to_vec())
                    .push_bind(link.record.clone());
            });
            insert
                .build()
                .execute(&mut *$conn)
                .await
                .map_err(StoreError::entity("chain link"))?;
        }
    }};
}

macro_rules! chain_tx {
    ($db:ty, $read_back:expr, $ids:expr) => {
        impl ChainTx for sqlx::Transaction<'_, $db> {
            fn link_observations<'a>(
                &'a mut self,
                agent_id: Uuid,
                now_ms: i64,
                ids: &'a [Uuid],
            ) -> impl Future<Output = Result<Option<Link>, StoreError>> + Send + 'a {
                async move {
                    if ids.is_empty() {
                        return Ok(None);
                    }
                    let conn = &mut **self;
                    let chain = agent_chain(agent_id);
                    let agent = agent_id.to_string();
                    let (mut seq, mut prev) = lock_head!(&mut *conn, &chain, now_ms);
                    let rows: Vec<ObservationColumns> = sqlx::query_as($read_back)
                        .bind($ids(ids))
                        .fetch_all(&mut *conn)
                        .await?;
                    if rows.len() != ids.len() {
                        return Err(StoreError::NotFound {
                            entity: "observation to link",
                        });
                    }
                    let mut links = Vec::with_capacity(rows.len());
                    let mut fields = Canonical::default();
                    let mut oldest = None::<i64>;
                    for row in &rows {
                        if row.o_agent_id.as_deref() != Some(agent.as_str()) {
                            return Err(StoreError::Invalid {
                                what: "an observation of another agent cannot join this chain",
                            });
                        }
                        let record_id = row.o_id.clone().unwrap_or_default();
                        let linked_at_ms = row.o_received_at_ms.unwrap_or(now_ms);
                        seq += 1;
                        fields.clear();
                        row.encode(&mut fields);
                        let header = LinkHeader {
                            chain: &chain,
                            seq,
                            kind: KIND_OBSERVATION,
                            record_id: &record_id,
                            linked_at_ms,
                        };
                        let hash = link_hash(&prev, &header, OBSERVATION_FIELDS, fields.as_bytes());
                        prev = hash.to_vec();
                        oldest = Some(oldest.map_or(linked_at_ms, |o: i64| o.min(linked_at_ms)));
                        links.push(NewLink {
                            seq,
                            kind: KIND_OBSERVATION.to_owned(),
                            record_id,
                            linked_at_ms,
                            hash,
                            record: None,
                        });
                    }
                    insert_links!($db, conn, &chain, links);
                    sqlx::query(
                        "UPDATE chain_heads SET seq = $1, hash = $2, updated_at_ms = $3, \
                         oldest_at_ms = COALESCE(oldest_at_ms, $4) WHERE chain = $5",
                    )
                    .bind(seq)
                    .bind(prev.as_slice())
                    .bind(now_ms)
                    .bind(oldest)
                    .bind(&chain)
                    .execute(&mut *conn)
                    .await?;
                    let hash = links.last().map_or(GENESIS, |link| link.hash);
                    Ok(Some(Link { chain, seq, hash }))
                }
            }

            fn append_control<'a>(
                &'a mut self,
                kind: &'a str,
                record_id: &'a str,
                canonical: &'a [u8],
                now_ms: i64,
            ) -> impl Future<Output = Result<Link, StoreError>> + Send + 'a {
                async move {
                    if !is_control_kind(kind) {
                        return Err(StoreError::Invalid {
                            what: "control record kind must be [a-z][a-z0-9_]*, at most 64 bytes, \
                                   and not observation or expiry",
                        });
                    }
                    if record_id.is_empty() || record_id.len() > 128 {
                        return Err(StoreError::Invalid {
                            what: "control record id must be 1 to 128 bytes",
                        });
                    }
                    if canonical.len() > MAX_CONTROL_RECORD {
                        return Err(StoreError::Invalid {
                            what: "control record must be at most 1 MiB",
                        });
                    }
                    let conn = &mut **self;
                    let (seq, prev) = lock_head!(&mut *conn, CONTROL_CHAIN, now_ms);
                    let seq = seq + 1;
                    let mut fields = Canonical::default();
                    fields.blob(canonical);
                    let header = LinkHeader {
                        chain: CONTROL_CHAIN,
                        seq,
                        kind,
                        record_id,
                        linked_at_ms: now_ms,
                    };
                    let hash = link_hash(&prev, &header, 1, fields.as_bytes());
                    let links = [NewLink {
                        seq,
                        kind: kind.to_owned(),
                        record_id: record_id.to_owned(),
                        linked_at_ms: now_ms,
                        hash,
                        record: Some(canonical.to_vec()),
                    }];
                    insert_links!($db, conn, CONTROL_CHAIN, links);
                    sqlx::query(
                        "UPDATE chain_heads SET seq = $1, hash = $2, updated_at_ms = $3 WHERE chain = $4",
                    )
                    .bind(seq)
                    .bind(hash.as_slice())
                    .bind(now_ms)
                    .bind(CONTROL_CHAIN)
                    .execute(&mut *conn)
                    .await?;
                    Ok(Link {
                        chain: CONTROL_CHAIN.to_owned(),
                        seq,
                        hash,
                    })
                }
            }
        }
    };
}

fn ids_json(ids: &[Uuid]) -> String {
    serde_json::Value::from(ids.iter().map(Uuid::to_string).collect::<Vec<_>>()).to_string()
}

fn ids_array(ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(Uuid::to_string).collect()
}

chain_tx!(
    Sqlite,
    concat!(
        "SELECT ",
        observation_columns!(),
        " FROM observations o WHERE o.id IN (SELECT value FROM json_each($1)) ORDER BY o.id"
    ),
    ids_json
);
chain_tx!(
    Postgres,
    concat!(
        "SELECT ",
        observation_columns!(),
        " FROM observations o WHERE o.id = ANY($1) ORDER BY o.id"
    ),
    ids_array
);

// ------------------------------------------------------------------------------ verify

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// The newest root, if one was committed.
    pub root: Option<RootInfo>,
    /// Roots walked.
    pub roots: u64,
    /// Chains walked.
    pub chains: u64,
    /// Live links walked, per kind (`observation`, `expiry`, control kinds).
    pub records: BTreeMap<String, u64>,
    /// Links removed by retention (the expired prefixes of all chains).
    pub expired: u64,
    /// Observations stored before the chain existed that the chain job has not linked yet.
    pub pending_adoption: u64,
    /// The first broken record, in walk order; `None` when everything verifies.
    pub broken: Option<BrokenRecord>,
}

impl VerifyReport {
    /// True when nothing is broken.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// A committed root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootInfo {
    pub seq: i64,
    /// Lowercase hex SHA-256.
    pub hash: String,
    pub committed_at_ms: i64,
}

/// The first record that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokenRecord {
    /// The table holding the record: `observations`, `chain_links`, `chain_heads`,
    /// `chain_expiries`, `chain_roots`, `chain_root_entries`, `chain_root_head`.
    pub table: String,
    /// The record's id (an observation id, `chain#seq` for a link, a root's seq).
    pub id: String,
    /// The chain it belongs to (`roots` for roots).
    pub chain: String,
    /// Its position in that chain.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

impl BrokenRecord {
    fn new(
        table: &str,
        id: impl Into<String>,
        chain: &str,
        seq: i64,
        problem: impl Into<String>,
    ) -> Self {
        BrokenRecord {
            table: table.to_owned(),
            id: id.into(),
            chain: chain.to_owned(),
            seq,
            problem: problem.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct WalkRow {
    h_chain: String,
    h_seq: i64,
    h_hash: Vec<u8>,
    h_expired_through: i64,
    h_anchor_hash: Vec<u8>,
    l_seq: Option<i64>,
    l_kind: Option<String>,
    l_record_id: Option<String>,
    l_linked_at_ms: Option<i64>,
    l_hash: Option<Vec<u8>>,
    l_record: Option<Vec<u8>>,
    #[sqlx(flatten)]
    observation: ObservationColumns,
    #[sqlx(flatten)]
    expiry: ExpiryColumns,
}

const WALK_SQL: &str = concat!(
    "SELECT h.chain AS h_chain, h.seq AS h_seq, h.hash AS h_hash, h.expired_through AS h_expired_through, \
     h.anchor_hash AS h_anchor_hash, l.seq AS l_seq, l.kind AS l_kind, l.record_id AS l_record_id, \
     l.linked_at_ms AS l_linked_at_ms, l.hash AS l_hash, l.record AS l_record, ",
    observation_columns!(),
    ", e.id AS e_id, e.chain AS e_chain, e.through_seq AS e_through_seq, e.anchor_hash AS e_anchor_hash, \
     e.observations AS e_observations, e.links AS e_links, e.cutoff_ms AS e_cutoff_ms, \
     e.policy AS e_policy, e.expired_at_ms AS e_expired_at_ms \
     FROM chain_heads h \
     LEFT JOIN chain_links l ON l.chain = h.chain \
     LEFT JOIN observations o ON l.kind = 'observation' AND o.id = l.record_id \
     LEFT JOIN chain_expiries e ON l.kind = 'expiry' AND e.id = l.record_id \
     ORDER BY h.chain, l.seq"
);

#[derive(sqlx::FromRow)]
struct RootRow {
    r_seq: i64,
    r_prev_hash: Vec<u8>,
    r_hash: Vec<u8>,
    r_committed_at_ms: i64,
    r_entries: i64,
    e_position: Option<i64>,
    e_chain: Option<String>,
    e_seq: Option<i64>,
    e_hash: Option<Vec<u8>>,
    link_hash: Option<Vec<u8>>,
    head_seq: Option<i64>,
    head_expired_through: Option<i64>,
    head_anchor_hash: Option<Vec<u8>>,
}

const ROOTS_SQL: &str = "SELECT r.seq AS r_seq, r.prev_hash AS r_prev_hash, r.hash AS r_hash, \
     r.committed_at_ms AS r_committed_at_ms, r.entries AS r_entries, e.position AS e_position, \
     e.chain AS e_chain, e.seq AS e_seq, e.hash AS e_hash, l.hash AS link_hash, h.seq AS head_seq, \
     h.expired_through AS head_expired_through, h.anchor_hash AS head_anchor_hash \
     FROM chain_roots r \
     LEFT JOIN chain_root_entries e ON e.root_seq = r.seq \
     LEFT JOIN chain_links l ON l.chain = e.chain AND l.seq = e.seq \
     LEFT JOIN chain_heads h ON h.chain = e.chain \
     ORDER BY r.seq, e.position";

/// The state of one chain during the walk.
struct ChainWalk {
    chain: String,
    head_seq: i64,
    head_hash: Vec<u8>,
    expired_through: i64,
    anchor_hash: Vec<u8>,
    next_seq: i64,
    prev: Vec<u8>,
    last_expiry: Option<(i64, Vec<u8>, String)>,
}

impl ChainWalk {
    fn start(row: &WalkRow) -> Result<ChainWalk, BrokenRecord> {
        let walk = ChainWalk {
            chain: row.h_chain.clone(),
            head_seq: row.h_seq,
            head_hash: row.h_hash.clone(),
            expired_through: row.h_expired_through,
            anchor_hash: row.h_anchor_hash.clone(),
            next_seq: row.h_expired_through + 1,
            prev: row.h_anchor_hash.clone(),
            last_expiry: None,
        };
        if walk.expired_through == 0 && walk.anchor_hash != GENESIS {
            return Err(walk
                .head_broken("anchor hash of a chain that never expired is not the genesis hash"));
        }
        if walk.expired_through < 0 || walk.head_seq < walk.expired_through {
            return Err(walk.head_broken("expired_through is outside the chain"));
        }
        Ok(walk)
    }

    fn head_broken(&self, problem: &str) -> BrokenRecord {
        BrokenRecord::new(
            "chain_heads",
            &self.chain,
            &self.chain,
            self.head_seq,
            problem,
        )
    }

    /// Checks the tail and the expiry claims once every link of the chain was seen.
    fn finish(&self) -> Result<(), BrokenRecord> {
        let last_seq = self.next_seq - 1;
        if last_seq < self.head_seq {
            return Err(BrokenRecord::new(
                "chain_links",
                format!("{}#{}", self.chain, last_seq + 1),
                &self.chain,
                last_seq + 1,
                format!(
                    "link missing: the head is at seq {} but the chain ends at seq {last_seq} \
                     (records deleted)",
                    self.head_seq
                ),
            ));
        }
        if last_seq > self.head_seq || self.prev != self.head_hash {
            return Err(self.head_broken("the head does not match the chain's last link"));
        }
        if self.expired_through > 0 {
            match &self.last_expiry {
                Some((through, anchor, _))
                    if *through == self.expired_through && *anchor == self.anchor_hash => {}
                Some((_, _, id)) => {
                    return Err(BrokenRecord::new(
                        "chain_heads",
                        &self.chain,
                        &self.chain,
                        self.head_seq,
                        format!(
                            "the head says the chain expired through seq {} but its newest expiry \
                             record {id} says otherwise (records deleted outside retention)",
                            self.expired_through
                        ),
                    ));
                }
                None => {
                    return Err(self.head_broken(
                        "the head says records expired but no expiry record is linked \
                         (records deleted outside retention)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks one link; `fields` is scratch space.
    fn link(
        &mut self,
        row: &WalkRow,
        fields: &mut Canonical,
        records: &mut BTreeMap<String, u64>,
    ) -> Result<(), BrokenRecord> {
        let (Some(seq), Some(kind), Some(record_id), Some(linked_at_ms), Some(hash)) = (
            row.l_seq,
            row.l_kind.as_deref(),
            row.l_record_id.as_deref(),
            row.l_linked_at_ms,
            row.l_hash.as_deref(),
        ) else {
            // A head without links: nothing to check here; `finish` compares the head.
            return Ok(());
        };
        let link_id = format!("{}#{seq}", self.chain);
        if seq != self.next_seq {
            let problem = if seq < self.next_seq {
                format!(
                    "link at seq {seq} is still present although the chain expired through seq {}",
                    self.expired_through
                )
            } else {
                format!(
                    "link missing: seq {} is absent (next present is seq {seq}; records deleted or reordered)",
                    self.next_seq
                )
            };
            let at = seq.min(self.next_seq);
            return Err(BrokenRecord::new(
                "chain_links",
                format!("{}#{at}", self.chain),
                &self.chain,
                at,
                problem,
            ));
        }
        fields.clear();
        let (table, id, field_count) = match kind {
            KIND_OBSERVATION => {
                let observation = &row.observation;
                if observation.o_id.is_none() {
                    return Err(BrokenRecord::new(
                        "observations",
                        record_id,
                        &self.chain,
                        seq,
                        "observation row missing (deleted, not expired by retention)",
                    ));
                }
                let owner = observation
                    .o_agent_id
                    .as_deref()
                    .map(|a| format!("agent:{a}"));
                if owner.as_deref() != Some(self.chain.as_str()) {
                    return Err(BrokenRecord::new(
                        "observations",
                        record_id,
                        &self.chain,
                        seq,
                        "observation row belongs to another agent than its chain",
                    ));
                }
                observation.encode(fields);
                ("observations", record_id, OBSERVATION_FIELDS)
            }
            KIND_EXPIRY => {
                let expiry = &row.expiry;
                if expiry.e_id.is_none() {
                    return Err(BrokenRecord::new(
                        "chain_expiries",
                        record_id,
                        &self.chain,
                        seq,
                        "expiry record missing",
                    ));
                }
                expiry.encode(fields);
                self.last_expiry = Some((
                    expiry.e_through_seq.unwrap_or(-1),
                    expiry.e_anchor_hash.clone().unwrap_or_default(),
                    record_id.to_owned(),
                ));
                ("chain_expiries", record_id, EXPIRY_FIELDS)
            }
            _ => {
                let Some(record) = row.l_record.as_deref() else {
                    return Err(BrokenRecord::new(
                        "chain_links",
                        link_id,
                        &self.chain,
                        seq,
                        format!("{kind} link without its record bytes"),
                    ));
                };
                fields.blob(record);
                ("chain_links", link_id.as_str(), 1)
            }
        };
        let header = LinkHeader {
            chain: &self.chain,
            seq,
            kind,
            record_id,
            linked_at_ms,
        };
        let expected = link_hash(&self.prev, &header, field_count, fields.as_bytes());
        if expected.as_slice() != hash {
            let problem = if seq == self.expired_through + 1 && self.expired_through > 0 {
                "content or position does not match its chain hash (edited, reordered, or the \
                 expiry anchor was changed)"
            } else {
                "content or position does not match its chain hash (edited or reordered)"
            };
            return Err(BrokenRecord::new(
                table,
                id,
                &self.chain,
                seq,
                format!("{kind} {problem}"),
            ));
        }
        *records.entry(kind.to_owned()).or_default() += 1;
        self.prev = hash.to_vec();
        self.next_seq += 1;
        Ok(())
    }
}

/// The state of the root walk.
struct RootWalk {
    current: Option<(i64, Vec<u8>, i64, i64, RootHasher, i64)>,
    prev_seq: i64,
    prev_hash: Vec<u8>,
    last: Option<RootInfo>,
    roots: u64,
}

impl RootWalk {
    fn root_broken(seq: i64, problem: impl Into<String>) -> BrokenRecord {
        BrokenRecord::new("chain_roots", seq.to_string(), "roots", seq, problem)
    }

    fn finish_root(&mut self) -> Result<(), BrokenRecord> {
        let Some((seq, stored, committed_at_ms, entries, hasher, seen)) = self.current.take()
        else {
            return Ok(());
        };
        if seen != entries {
            return Err(BrokenRecord::new(
                "chain_root_entries",
                format!("{seq}#{seen}"),
                "roots",
                seq,
                format!("root lists {entries} chain heads but {seen} are stored (entries deleted)"),
            ));
        }
        if hasher.finish().as_slice() != stored.as_slice() {
            return Err(Self::root_broken(
                seq,
                "root does not match its hash (root or its entries edited)",
            ));
        }
        self.prev_seq = seq;
        self.prev_hash = stored.clone();
        self.roots += 1;
        self.last = Some(RootInfo {
            seq,
            hash: hex::encode(&stored),
            committed_at_ms,
        });
        Ok(())
    }

    fn row(&mut self, row: &RootRow) -> Result<(), BrokenRecord> {
        let is_new = self
            .current
            .as_ref()
            .is_none_or(|current| current.0 != row.r_seq);
        if is_new {
            self.finish_root()?;
            if row.r_seq != self.prev_seq + 1 {
                return Err(Self::root_broken(
                    self.prev_seq + 1,
                    format!(
                        "root missing: seq {} is absent (next present is {})",
                        self.prev_seq + 1,
                        row.r_seq
                    ),
                ));
            }
            if row.r_prev_hash != self.prev_hash {
                return Err(Self::root_broken(
                    row.r_seq,
                    "root does not link the previous root",
                ));
            }
            self.current = Some((
                row.r_seq,
                row.r_hash.clone(),
                row.r_committed_at_ms,
                row.r_entries,
                RootHasher::new(
                    &row.r_prev_hash,
                    row.r_seq,
                    row.r_committed_at_ms,
                    row.r_entries,
                ),
                0,
            ));
        }
        let (Some(position), Some(chain), Some(seq), Some(hash)) = (
            row.e_position,
            row.e_chain.as_deref(),
            row.e_seq,
            row.e_hash.as_deref(),
        ) else {
            return Ok(());
        };
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        if position != current.5 {
            return Err(BrokenRecord::new(
                "chain_root_entries",
                format!("{}#{}", row.r_seq, current.5),
                "roots",
                row.r_seq,
                "root entry missing",
            ));
        }
        current.4.entry(chain, seq, hash);
        current.5 += 1;
        let entry_broken = |problem: String| {
            BrokenRecord::new(
                "chain_root_entries",
                format!("{}#{position}", row.r_seq),
                chain,
                seq,
                problem,
            )
        };
        let Some(head_seq) = row.head_seq else {
            return Err(entry_broken(format!(
                "root {} pins chain {chain} at seq {seq} but the chain's head is gone (chain deleted)",
                row.r_seq
            )));
        };
        if head_seq < seq {
            return Err(entry_broken(format!(
                "root {} pins chain {chain} at seq {seq} but its head is at seq {head_seq} \
                 (newest records deleted)",
                row.r_seq
            )));
        }
        let expired_through = row.head_expired_through.unwrap_or(0);
        match row.link_hash.as_deref() {
            Some(link_hash) if link_hash != hash => Err(entry_broken(format!(
                "root {} pins chain {chain} seq {seq} to another hash than the link now stored \
                 (chain rewritten)",
                row.r_seq
            ))),
            Some(_) => Ok(()),
            None if seq > expired_through => Err(entry_broken(format!(
                "root {} pins chain {chain} seq {seq} but that link is gone (deleted, not expired)",
                row.r_seq
            ))),
            None if seq == expired_through && row.head_anchor_hash.as_deref() != Some(hash) => {
                Err(entry_broken(format!(
                    "root {} pins chain {chain} seq {seq} to another hash than the expiry anchor",
                    row.r_seq
                )))
            }
            None => Ok(()),
        }
    }
}

/// A root that `verify` must find (a root hash recorded outside the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedRoot {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl std::str::FromStr for ExpectedRoot {
    type Err = &'static str;

    /// `SEQ:HEX` as `verify` prints it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const USAGE: &str = "expected root must be SEQ:HASH (64 hex digits), as verify prints it";
        let (seq, hash) = text.split_once(':').ok_or(USAGE)?;
        let seq: i64 = seq.parse().map_err(|_| USAGE)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hash, &mut bytes).map_err(|_| USAGE)?;
        if seq < 1 {
            return Err(USAGE);
        }
        Ok(ExpectedRoot { seq, hash: bytes })
    }
}

// ------------------------------------------------------------------------------ store operations

/// A root just committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCommit {
    pub seq: i64,
    pub hash: [u8; 32],
    /// Chain heads it pins.
    pub entries: usize,
}

/// Which observations retention removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Observations received longer ago than this expire.
    pub max_age_ms: i64,
    /// How the policy is named in the expiry record, e.g. `observation_retention_days=90`.
    pub label: String,
}

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryOutcome {
    /// Chains that had a prefix expired.
    pub chains: usize,
    /// Observation rows deleted.
    pub observations: u64,
    /// Chain links removed.
    pub links: u64,
}

#[derive(sqlx::FromRow)]
struct PrefixLink {
    seq: i64,
    kind: String,
    linked_at_ms: i64,
    hash: Vec<u8>,
}

impl Store {
    /// Walks every chain and every root in one read snapshot, streaming (memory does not grow with
    /// the database), and reports the newest root, counts, and the first broken record if any.
    /// With `expected`, a root recorded earlier must still be there with the same hash.
    pub async fn verify(&self, expected: Option<ExpectedRoot>) -> Result<VerifyReport, StoreError> {
        let is_postgres = matches!(self.backend, Backend::Postgres(_));
        let mut report = VerifyReport {
            root: None,
            roots: 0,
            chains: 0,
            records: BTreeMap::new(),
            expired: 0,
            pending_adoption: 0,
            broken: None,
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if is_postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
            }
            report.broken = 'walk: {
                // Every chain, link by link.
                let mut fields = Canonical::default();
                let mut walk: Option<ChainWalk> = None;
                {
                    let mut rows = sqlx::query_as::<_, WalkRow>(WALK_SQL).fetch(&mut *tx);
                    while let Some(row) = rows.try_next().await? {
                        if walk.as_ref().is_none_or(|w| w.chain != row.h_chain) {
                            if let Some(done) = walk.take()
                                && let Err(broken) = done.finish()
                            {
                                break 'walk Some(broken);
                            }
                            match ChainWalk::start(&row) {
                                Ok(started) => {
                                    report.chains += 1;
                                    report.expired += u64::try_from(started.expired_through).unwrap_or(0);
                                    walk = Some(started);
                                }
                                Err(broken) => break 'walk Some(broken),
                            }
                        }
                        if let Some(current) = walk.as_mut()
                            && let Err(broken) = current.link(&row, &mut fields, &mut report.records)
                        {
                            break 'walk Some(broken);
                        }
                    }
                }
                if let Some(done) = walk.take()
                    && let Err(broken) = done.finish()
                {
                    break 'walk Some(broken);
                }
                // Links whose chain has no head.
                let orphan: Option<(String, i64)> = sqlx::query_as(
                    "SELECT l.chain, MIN(l.seq) FROM chain_links l \
                     WHERE NOT EXISTS (SELECT 1 FROM chain_heads h WHERE h.chain = l.chain) \
                     GROUP BY l.chain ORDER BY l.chain LIMIT 1",
                )
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((chain, seq)) = orphan {
                    break 'walk Some(BrokenRecord::new(
                        "chain_heads",
                        chain.clone(),
                        &chain,
                        seq,
                        "chain head missing (deleted) while its links remain",
                    ));
                }
                // Observations that no chain links (and that are not waiting for adoption). The
                // walk matched every live observation link to a distinct row (links are unique
                // per chain position and a record is linked once), so counting suffices; the
                // anti-join that names the row runs only when the counts differ.
                let (stored, pending): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM observations), \
                     (SELECT COUNT(*) FROM chain_adoptions p \
                      JOIN observations o ON o.id = p.observation_id)",
                )
                .fetch_one(&mut *tx)
                .await?;
                let linked = report.records.get(KIND_OBSERVATION).copied().unwrap_or(0);
                if u64::try_from(stored - pending).unwrap_or(0) != linked {
                    let unlinked: Option<(String, String)> = sqlx::query_as(
                        "SELECT o.id, o.agent_id FROM observations o \
                         LEFT JOIN chain_links l ON l.kind = 'observation' AND l.record_id = o.id \
                         LEFT JOIN chain_adoptions p ON p.observation_id = o.id \
                         WHERE l.record_id IS NULL AND p.observation_id IS NULL \
                         ORDER BY o.id LIMIT 1",
                    )
                    .fetch_optional(&mut *tx)
                    .await?;
                    break 'walk Some(match unlinked {
                        Some((id, agent_id)) => BrokenRecord::new(
                            "observations",
                            id,
                            &format!("agent:{agent_id}"),
                            0,
                            "observation not linked into any chain (inserted outside the product)",
                        ),
                        None => BrokenRecord::new(
                            "chain_links",
                            "",
                            "",
                            0,
                            format!(
                                "{stored} observations are stored ({pending} awaiting adoption) \
                                 but {linked} observation links were walked (a record linked twice)"
                            ),
                        ),
                    });
                }
                // Roots.
                let mut roots = RootWalk {
                    current: None,
                    prev_seq: 0,
                    prev_hash: GENESIS.to_vec(),
                    last: None,
                    roots: 0,
                };
                let mut expected_seen = false;
                {
                    let mut rows = sqlx::query_as::<_, RootRow>(ROOTS_SQL).fetch(&mut *tx);
                    while let Some(row) = rows.try_next().await? {
                        if let Some(expected) = expected
                            && row.r_seq == expected.seq
                            && !expected_seen
                        {
                            expected_seen = true;
                            if row.r_hash != expected.hash {
                                break 'walk Some(RootWalk::root_broken(
                                    row.r_seq,
                                    "root hash differs from the expected one recorded earlier \
                                     (history rewritten)",
                                ));
                            }
                        }
                        if let Err(broken) = roots.row(&row) {
                            break 'walk Some(broken);
                        }
                    }
                }
                if let Err(broken) = roots.finish_root() {
                    break 'walk Some(broken);
                }
                report.roots = roots.roots;
                let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chain_adoptions")
                    .fetch_one(&mut *tx)
                    .await?;
                report.pending_adoption = u64::try_from(pending).unwrap_or(0);
                report.root = roots.last.clone();
                if let Some(expected) = expected
                    && !expected_seen
                {
                    break 'walk Some(RootWalk::root_broken(
                        expected.seq,
                        "the expected root recorded earlier is gone",
                    ));
                }
                let head: Option<(i64, Vec<u8>)> =
                    sqlx::query_as("SELECT seq, hash FROM chain_root_head WHERE id = 1")
                        .fetch_optional(&mut *tx)
                        .await?;
                let (head_seq, head_hash) = head.unwrap_or((0, GENESIS.to_vec()));
                if head_seq != roots.prev_seq || head_hash != roots.prev_hash {
                    break 'walk Some(BrokenRecord::new(
                        "chain_root_head",
                        "1",
                        "roots",
                        head_seq,
                        format!(
                            "the newest root is seq {head_seq} but the root chain ends at seq {} \
                             (roots deleted or edited)",
                            roots.prev_seq
                        ),
                    ));
                }
                None
            };
            tx.rollback().await?;
        });
        Ok(report)
    }

    /// Commits a root over the chains whose head moved since the previous root (at most
    /// `max_entries` of them; the rest go into the next root). `None` when nothing moved.
    pub async fn commit_root(
        &self,
        now_ms: i64,
        max_entries: u32,
    ) -> Result<Option<RootCommit>, StoreError> {
        let commit = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Writing the root head first serialises root commits (and takes SQLite's write lock).
            let (prev_seq, prev_hash): (i64, Vec<u8>) = sqlx::query_as(
                "INSERT INTO chain_root_head (id, seq, hash) VALUES (1, 0, $1) \
                 ON CONFLICT (id) DO UPDATE SET seq = chain_root_head.seq RETURNING seq, hash",
            )
            .bind(GENESIS.as_slice())
            .fetch_one(&mut *tx)
            .await?;
            let mut moved: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
                "SELECT chain, seq, hash FROM chain_heads WHERE seq <> rooted_seq ORDER BY chain LIMIT $1",
            )
            .bind(i64::from(max_entries.max(1)))
            .fetch_all(&mut *tx)
            .await?;
            if moved.is_empty() {
                tx.rollback().await?;
                None
            } else {
                // Byte order, not the database's collation: the hash must not depend on the locale.
                moved.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let seq = prev_seq + 1;
                let entries = moved.len();
                let entries_i64 = i64::try_from(entries).unwrap_or(i64::MAX);
                let mut hasher = RootHasher::new(&prev_hash, seq, now_ms, entries_i64);
                for (chain, head_seq, hash) in &moved {
                    hasher.entry(chain, *head_seq, hash);
                }
                let hash = hasher.finish();
                sqlx::query(
                    "INSERT INTO chain_roots (seq, prev_hash, hash, committed_at_ms, entries) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(seq)
                .bind(prev_hash.as_slice())
                .bind(hash.as_slice())
                .bind(now_ms)
                .bind(entries_i64)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::entity("chain root"))?;
                for (position, (chain, head_seq, head_hash)) in moved.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO chain_root_entries (root_seq, position, chain, seq, hash) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(seq)
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(chain)
                    .bind(*head_seq)
                    .bind(head_hash.as_slice())
                    .execute(&mut *tx)
                    .await?;
                    // The value read, not `seq`: a link committed meanwhile goes into the next root.
                    sqlx::query("UPDATE chain_heads SET rooted_seq = $1 WHERE chain = $2")
                        .bind(*head_seq)
                        .bind(chain)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("UPDATE chain_root_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(hash.as_slice())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Some(RootCommit { seq, hash, entries })
            }
        });
        Ok(commit)
    }

    /// The evidence head a report cites: commits a root now (pinning every chain head that moved;
    /// up to `max_entries`, as the periodic job does), then returns the newest root as `SEQ:HEX`,
    /// which is what `verify --expect-root` takes. `None` while nothing has been chained.
    pub async fn evidence_head(
        &self,
        now_ms: i64,
        max_entries: u32,
    ) -> Result<Option<String>, StoreError> {
        self.commit_root(now_ms, max_entries).await?;
        let head: Option<(i64, Vec<u8>)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT seq, hash FROM chain_root_head WHERE id = 1")
                .fetch_optional(pool)
                .await?
        });
        Ok(head
            .filter(|(seq, _)| *seq > 0)
            .map(|(seq, hash)| format!("{seq}:{}", hex::encode(hash))))
    }

    /// Links observations stored before the chain existed (listed in `chain_adoptions` by the
    /// migration), at most `limit` per call; returns how many were linked. Rows inserted later
    /// outside the product are never adopted.
    pub async fn link_unlinked_observations(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let rows: Vec<(String, Option<String>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT p.observation_id, o.agent_id FROM chain_adoptions p \
                 LEFT JOIN observations o ON o.id = p.observation_id \
                 ORDER BY p.observation_id LIMIT $1",
            )
            .bind(i64::from(limit.max(1)))
            .fetch_all(pool)
            .await?
        });
        let mut by_agent: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
        let mut gone = Vec::new();
        for (id, agent) in rows {
            match agent {
                Some(agent) => by_agent
                    .entry(super::rows::uuid(&agent)?)
                    .or_default()
                    .push(super::rows::uuid(&id)?),
                None => gone.push(id),
            }
        }
        let mut linked = 0u64;
        for (agent, ids) in by_agent {
            on_write_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                // Taking the ids off the list first: a collector adopting the same rows at the
                // same time waits here, then finds them gone and links nothing twice.
                let mut taken = 0;
                for id in &ids {
                    taken += sqlx::query("DELETE FROM chain_adoptions WHERE observation_id = $1")
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                if taken == ids.len() as u64 {
                    link_observations(&mut tx, agent, now_ms, &ids).await?;
                    tx.commit().await?;
                    linked += taken;
                } else {
                    tx.rollback().await?;
                }
            });
        }
        for id in gone {
            on_write_pool!(self, pool => {
                sqlx::query("DELETE FROM chain_adoptions WHERE observation_id = $1")
                    .bind(&id)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(linked)
    }

    /// One retention pass: for up to `max_chains` agent chains whose oldest live observation was
    /// received before `now - policy.max_age_ms`, removes the expired prefix (at most `batch` links
    /// per chain), records the expiry in the chain, each chain in its own transaction.
    pub async fn expire_observations(
        &self,
        policy: &RetentionPolicy,
        now_ms: i64,
        max_chains: u32,
        batch: u32,
    ) -> Result<ExpiryOutcome, StoreError> {
        if policy.max_age_ms <= 0 || policy.label.is_empty() || policy.label.len() > 256 {
            return Err(StoreError::Invalid {
                what: "retention needs a positive age and a label of at most 256 bytes",
            });
        }
        let cutoff_ms = now_ms.saturating_sub(policy.max_age_ms);
        let chains: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT chain FROM chain_heads WHERE oldest_at_ms IS NOT NULL AND oldest_at_ms < $1 \
                 ORDER BY oldest_at_ms LIMIT $2",
            )
            .bind(cutoff_ms)
            .bind(i64::from(max_chains.max(1)))
            .fetch_all(pool)
            .await?
        });
        let mut outcome = ExpiryOutcome::default();
        for chain in chains {
            let (observations, links) = on_write_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let head: Option<(i64, Vec<u8>, i64)> = sqlx::query_as(
                    "UPDATE chain_heads SET updated_at_ms = updated_at_ms WHERE chain = $1 \
                     RETURNING seq, hash, expired_through",
                )
                .bind(&chain)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((head_seq, head_hash, expired_through)) = head else {
                    tx.rollback().await?;
                    continue;
                };
                let prefix: Vec<PrefixLink> = sqlx::query_as(
                    "SELECT seq, kind, linked_at_ms, hash FROM chain_links \
                     WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(&chain)
                .bind(expired_through)
                .bind(i64::from(batch.max(1)))
                .fetch_all(&mut *tx)
                .await?;
                let old = prefix.iter().take_while(|l| l.linked_at_ms < cutoff_ms).count();
                let expiring = &prefix[..old];
                let observations_in_prefix =
                    expiring.iter().filter(|l| l.kind == KIND_OBSERVATION).count();
                let Some(last) = expiring.last().filter(|_| observations_in_prefix > 0) else {
                    // Nothing to expire yet (a younger link comes first): look again when the
                    // first remaining link is old enough.
                    let next = prefix.get(old).map(|l| l.linked_at_ms);
                    sqlx::query("UPDATE chain_heads SET oldest_at_ms = $1 WHERE chain = $2")
                        .bind(next)
                        .bind(&chain)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    continue;
                };
                let through_seq = last.seq;
                let anchor_hash = last.hash.clone();
                let deleted_observations = sqlx::query(
                    "DELETE FROM observations WHERE id IN (SELECT record_id FROM chain_links \
                     WHERE chain = $1 AND seq > $2 AND seq <= $3 AND kind = 'observation')",
                )
                .bind(&chain)
                .bind(expired_through)
                .bind(through_seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let deleted_links = sqlx::query(
                    "DELETE FROM chain_links WHERE chain = $1 AND seq > $2 AND seq <= $3",
                )
                .bind(&chain)
                .bind(expired_through)
                .bind(through_seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let expiry = ExpiryColumns {
                    e_id: Some(Uuid::now_v7().to_string()),
                    e_chain: Some(chain.clone()),
                    e_through_seq: Some(through_seq),
                    e_anchor_hash: Some(anchor_hash.clone()),
                    e_observations: Some(i64::try_from(deleted_observations).unwrap_or(i64::MAX)),
                    e_links: Some(i64::try_from(deleted_links).unwrap_or(i64::MAX)),
                    e_cutoff_ms: Some(cutoff_ms),
                    e_policy: Some(policy.label.clone()),
                    e_expired_at_ms: Some(now_ms),
                };
                sqlx::query(
                    "INSERT INTO chain_expiries (id, chain, through_seq, anchor_hash, observations, \
                     links, cutoff_ms, policy, expired_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(expiry.e_id.as_deref())
                .bind(&chain)
                .bind(through_seq)
                .bind(anchor_hash.as_slice())
                .bind(expiry.e_observations)
                .bind(expiry.e_links)
                .bind(cutoff_ms)
                .bind(&policy.label)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                let seq = head_seq + 1;
                let record_id = expiry.e_id.clone().unwrap_or_default();
                let mut fields = Canonical::default();
                expiry.encode(&mut fields);
                let header = LinkHeader {
                    chain: &chain,
                    seq,
                    kind: KIND_EXPIRY,
                    record_id: &record_id,
                    linked_at_ms: now_ms,
                };
                let hash = link_hash(&head_hash, &header, EXPIRY_FIELDS, fields.as_bytes());
                sqlx::query(
                    "INSERT INTO chain_links (chain, seq, kind, record_id, linked_at_ms, hash, record) \
                     VALUES ($1, $2, 'expiry', $3, $4, $5, NULL)",
                )
                .bind(&chain)
                .bind(seq)
                .bind(&record_id)
                .bind(now_ms)
                .bind(hash.as_slice())
                .execute(&mut *tx)
                .await?;
                let oldest: Option<i64> = sqlx::query_scalar(
                    "SELECT linked_at_ms FROM chain_links WHERE chain = $1 AND kind = 'observation' \
                     ORDER BY seq LIMIT 1",
                )
                .bind(&chain)
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE chain_heads SET seq = $1, hash = $2, expired_through = $3, anchor_hash = $4, \
                     oldest_at_ms = $5, updated_at_ms = $6 WHERE chain = $7",
                )
                .bind(seq)
                .bind(hash.as_slice())
                .bind(through_seq)
                .bind(anchor_hash.as_slice())
                .bind(oldest)
                .bind(now_ms)
                .bind(&chain)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                (deleted_observations, deleted_links)
            });
            outcome.chains += 1;
            outcome.observations += observations;
            outcome.links += links;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed_and_typed() {
        let mut a = Canonical::default();
        a.text("ab").text("c");
        let mut b = Canonical::default();
        b.text("a").text("bc");
        assert_ne!(
            a.as_bytes(),
            b.as_bytes(),
            "no ambiguity between field boundaries"
        );
        let mut text = Canonical::default();
        text.text("x");
        let mut blob = Canonical::default();
        blob.blob(b"x");
        assert_ne!(text.as_bytes(), blob.as_bytes());
        let mut null = Canonical::default();
        null.opt_text(None);
        let mut empty = Canonical::default();
        empty.text("");
        assert_ne!(
            null.as_bytes(),
            empty.as_bytes(),
            "NULL is not the empty string"
        );
        let mut int = Canonical::default();
        int.int(-2);
        assert_eq!(
            int.as_bytes(),
            [1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
    }

    #[test]
    fn link_hashes_bind_position_kind_and_previous_hash() {
        let header = LinkHeader {
            chain: "control",
            seq: 1,
            kind: "triage_event",
            record_id: "r1",
            linked_at_ms: 5,
        };
        let base = link_hash(&GENESIS, &header, 1, b"x");
        assert_eq!(base, link_hash(&GENESIS, &header, 1, b"x"));
        assert_ne!(base, link_hash(&[1; 32], &header, 1, b"x"));
        assert_ne!(
            base,
            link_hash(&GENESIS, &LinkHeader { seq: 2, ..header }, 1, b"x")
        );
        assert_ne!(
            base,
            link_hash(
                &GENESIS,
                &LinkHeader {
                    kind: "policy_change",
                    ..header
                },
                1,
                b"x"
            )
        );
        assert_ne!(base, link_hash(&GENESIS, &header, 1, b"y"));
    }

    #[test]
    fn control_kinds_are_plain_names() {
        assert!(is_control_kind("triage_event"));
        assert!(is_control_kind("policy_change2"));
        for bad in [
            "",
            "observation",
            "expiry",
            "Triage",
            "9x",
            "a-b",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(!is_control_kind(bad), "{bad:?}");
        }
    }

    #[test]
    fn expected_roots_parse_only_as_printed() {
        let hash = "ab".repeat(32);
        let root: ExpectedRoot = format!("7:{hash}").parse().unwrap();
        assert_eq!(root.seq, 7);
        assert_eq!(root.hash, [0xab; 32]);
        for bad in [
            "",
            "7",
            "7:",
            "0:00",
            &format!("x:{hash}"),
            &format!("7:{hash}0"),
            &format!("-1:{hash}"),
        ] {
            assert!(bad.parse::<ExpectedRoot>().is_err(), "{bad:?}");
        }
    }
}
