-- Evidence chain: every observation, expiry and control (triage, policy) record is linked into a
-- hash chain, hash = SHA-256(prev_hash || canonical record). One chain per agent ('agent:<uuid>')
-- plus 'control'; periodically committed roots link every chain head that moved since the last
-- root. The design and the canonical encoding are documented at the top of
-- collector/src/store/chain.rs. Keep in step with ../postgres/0006_evidence_chain.sql.

-- The newest link of each chain (locked by the writer that extends it).
CREATE TABLE chain_heads (
    chain            TEXT PRIMARY KEY,
    seq              BIGINT NOT NULL,
    hash             BLOB NOT NULL,
    expired_through  BIGINT NOT NULL DEFAULT 0,
    anchor_hash      BLOB NOT NULL,
    rooted_seq       BIGINT NOT NULL DEFAULT 0,
    oldest_at_ms     BIGINT,
    updated_at_ms    BIGINT NOT NULL
);
CREATE INDEX chain_heads_by_oldest ON chain_heads (oldest_at_ms);

-- One row per linked record. Observations and expiries are re-read from their own tables by
-- `verify`; control records carry their canonical bytes in `record`. Only the primary key is
-- indexed: each extra index costs every ingested observation (`verify` counts instead). SQLite:
-- WITHOUT ROWID, so that a link is one B-tree entry.
CREATE TABLE chain_links (
    chain         TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    linked_at_ms  BIGINT NOT NULL,
    hash          BLOB NOT NULL,
    record        BLOB,
    PRIMARY KEY (chain, seq)
) WITHOUT ROWID;

-- What retention removed from a chain: its prefix up to through_seq, whose last hash is anchor_hash.
CREATE TABLE chain_expiries (
    id              TEXT PRIMARY KEY,
    chain           TEXT NOT NULL,
    through_seq     BIGINT NOT NULL,
    anchor_hash     BLOB NOT NULL,
    observations    BIGINT NOT NULL,
    links           BIGINT NOT NULL,
    cutoff_ms       BIGINT NOT NULL,
    policy          TEXT NOT NULL,
    expired_at_ms   BIGINT NOT NULL
);

-- Roots: each links the previous root and the heads of the chains that moved since it.
CREATE TABLE chain_roots (
    seq              BIGINT PRIMARY KEY,
    prev_hash        BLOB NOT NULL,
    hash             BLOB NOT NULL,
    committed_at_ms  BIGINT NOT NULL,
    entries          BIGINT NOT NULL
);
CREATE TABLE chain_root_entries (
    root_seq  BIGINT NOT NULL,
    position  BIGINT NOT NULL,
    chain     TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    hash      BLOB NOT NULL,
    PRIMARY KEY (root_seq, position)
);
-- The newest root (one row, id = 1): serialises root commits and catches a deleted newest root.
CREATE TABLE chain_root_head (
    id    BIGINT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  BLOB NOT NULL
);

-- Observations stored before this migration: linked by the collector's chain job, then removed
-- from here. Only rows listed here are ever adopted, so a row inserted later outside the product
-- stays unlinked and `verify` names it.
CREATE TABLE chain_adoptions (
    observation_id  TEXT PRIMARY KEY
);
INSERT INTO chain_adoptions (observation_id) SELECT id FROM observations;
