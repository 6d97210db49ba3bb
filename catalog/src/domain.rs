//! Domain rules: pattern checks, name normalisation and the lookup index.
//!
//! The index is a hash of name suffixes. Every suffix of every pattern (`com`, `openai.com`,
//! `api.openai.com`) is a node, keyed by a hash that is extended label by label from the right.
//! A lookup walks the name's labels from the right, one hash step and one table probe per label,
//! and stops at the first suffix no rule reaches: its cost depends on the name, never on the
//! number of rules. Wildcard rules hang off the node of their literal tail (the labels right of
//! the label holding `*`) and are checked there.
//!
//! The most specific rule wins: the one matching the most labels, then a rule for the whole name
//! (exact or wildcard) over a suffix rule, then the one with more literal characters, then the
//! first in catalog order. Rules of different vendors never overlap (see `overlap.rs`), so this
//! order only decides between rules of one vendor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::DomainKind;

/// Registrable names that many services share. A rule may name hosts under them (for example
/// `copilot-proxy.githubusercontent.com`) but never the shared name itself, so that ordinary
/// traffic to Google, GitHub, Microsoft, AWS, CDNs or telemetry vendors never matches alone.
/// `gemini.com` is here because it is a crypto exchange, not Google Gemini.
pub const SHARED_INFRASTRUCTURE: &[&str] = &[
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "googleusercontent.com",
    "withgoogle.com",
    "github.com",
    "githubusercontent.com",
    "github.io",
    "githubassets.com",
    "microsoft.com",
    "microsoftonline.com",
    "cloud.microsoft",
    "live.com",
    "office.com",
    "office.net",
    "windows.net",
    "core.windows.net",
    "blob.core.windows.net",
    "azure.com",
    "azure.net",
    "azureedge.net",
    "azurefd.net",
    "azurewebsites.net",
    "amazonaws.com",
    "amazon.com",
    "cloudfront.net",
    "awsstatic.com",
    "cloudflare.com",
    "cloudflare.net",
    "cloudflarestorage.com",
    "r2.cloudflarestorage.com",
    "workers.dev",
    "pages.dev",
    "akamai.net",
    "akamaihd.net",
    "akamaiedge.net",
    "edgekey.net",
    "edgesuite.net",
    "fastly.net",
    "fastly.com",
    "fastlylb.net",
    "sentry.io",
    "statsig.com",
    "statsigapi.net",
    "segment.io",
    "segment.com",
    "datadoghq.com",
    "intercom.io",
    "stripe.com",
    "auth0.com",
    "npmjs.org",
    "npmjs.com",
    "pypi.org",
    "pythonhosted.org",
    "docker.com",
    "docker.io",
    "apple.com",
    "icloud.com",
    "livekit.cloud",
    "vercel.app",
    "vercel.com",
    "netlify.app",
    "herokuapp.com",
    "cloudinary.com",
    "x.com",
    "twitter.com",
    "facebook.com",
    "slack.com",
    "zoom.us",
    "atlassian.com",
    "atlassian.net",
    "ghe.com",
    "bing.com",
    "msn.com",
    "windows.com",
    "azure-api.net",
    "trafficmanager.net",
    "appspot.com",
    "firebaseapp.com",
    "firebaseio.com",
    "web.app",
    "run.app",
    "googletagmanager.com",
    "google-analytics.com",
    "doubleclick.net",
    "googlesyndication.com",
    "akamaized.net",
    "jsdelivr.net",
    "unpkg.com",
    "cloudflare-dns.com",
    "mixpanel.com",
    "amplitude.com",
    "launchdarkly.com",
    "youtube.com",
    "googlevideo.com",
    "linkedin.com",
    "ngrok.io",
    "ngrok-free.app",
    "gemini.com",
];

/// Longest DNS name, in bytes, without the trailing dot.
pub const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;
/// Longest plan or tenant text.
const MAX_PLAN: usize = 64;
/// Longest input handed to IDNA conversion: a Unicode name longer than this cannot become a
/// DNS name short enough to match, and the bound keeps hostile input cheap.
const MAX_UNICODE_INPUT: usize = 4 * MAX_NAME;

/// Normalises a name as seen on the wire or typed by a person: strips one trailing dot,
/// converts a Unicode name (IDN) to its `xn--` form with UTS #46 and lowercases ASCII.
/// Returns `None` for anything that is not a plausible DNS name (empty labels, over 253 bytes,
/// labels over 63 bytes, characters outside `a-z 0-9 - _`, Unicode that does not convert).
pub fn normalize_domain(name: &str) -> Option<Cow<'_, str>> {
    if name.is_ascii() {
        let (trimmed, has_upper) = check_ascii(name)?;
        return Some(if has_upper {
            Cow::Owned(trimmed.to_ascii_lowercase())
        } else {
            Cow::Borrowed(trimmed)
        });
    }
    let converted = to_ascii(name)?;
    let (trimmed, _) = check_ascii(&converted)?;
    Some(Cow::Owned(trimmed.to_ascii_lowercase()))
}

/// Converts a Unicode name to its ASCII (`xn--`) form; `None` when it does not convert.
fn to_ascii(name: &str) -> Option<String> {
    if name.len() > MAX_UNICODE_INPUT {
        return None;
    }
    let converted = idna::domain_to_ascii_cow(name.as_bytes(), idna::AsciiDenyList::URL).ok()?;
    Some(converted.into_owned())
}

/// What a byte of a DNS name is: one table lookup per byte on the hot path.
const INVALID: u8 = 0;
const PLAIN: u8 = 1;
const UPPER: u8 = 2;
const DOT: u8 = 3;
const BYTE_CLASS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = match byte as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => PLAIN,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            _ => INVALID,
        };
        byte += 1;
    }
    table
};

/// Checks an ASCII name's shape in one pass and strips one trailing dot; also says whether it
/// has upper-case letters. Case is left as it is.
fn check_ascii(name: &str) -> Option<(&str, bool)> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    check_labels(name).map(|has_upper| (name, has_upper))
}

/// Checks dot-separated labels (1 to 63 bytes of `a-z A-Z 0-9 - _`); says whether any byte is
/// upper case.
fn check_labels(labels: &str) -> Option<bool> {
    let mut label_len = 0usize;
    let mut has_upper = false;
    for byte in labels.bytes() {
        match BYTE_CLASS[usize::from(byte)] {
            PLAIN => label_len += 1,
            UPPER => {
                label_len += 1;
                has_upper = true;
            }
            DOT if label_len > 0 => label_len = 0,
            _ => return None,
        }
        if label_len > MAX_LABEL {
            return None;
        }
    }
    (label_len > 0).then_some(has_upper)
}

/// Why a raw lookup found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No rule matches (or the name is not a DNS name).
    NoMatch,
    /// The name has upper-case letters: look it up again lowercased.
    UpperCase,
}

/// Scans the label that ends at `end` (exclusive) from right to left: checks its bytes and
/// extends `hash` by it. Returns the label's start.
fn scan_label(bytes: &[u8], end: usize, hash: &mut u64) -> Result<usize, Miss> {
    // One table test per byte on the common path; what stopped the scan is judged once.
    let stop = bytes[..end]
        .iter()
        .rposition(|byte| BYTE_CLASS[usize::from(*byte)] != PLAIN);
    let start = match stop {
        None => 0,
        Some(at) => match BYTE_CLASS[usize::from(bytes[at])] {
            DOT => at + 1,
            UPPER => return Err(Miss::UpperCase),
            _ => return Err(Miss::NoMatch),
        },
    };
    let label = &bytes[start..end];
    if label.is_empty() || label.len() > MAX_LABEL {
        return Err(Miss::NoMatch);
    }
    // Eight bytes per multiply; the length closes the label so that labels cannot run into
    // each other.
    let mut mixed = *hash;
    let mut chunks = label.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        mixed = mix_word(mixed, u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Assembled in a register: a partial copy into a buffer costs a memmove call.
        let word = rest
            .iter()
            .rev()
            .fold(0u64, |word, byte| (word << 8) | u64::from(*byte));
        mixed = mix_word(mixed, word);
    }
    *hash = mix_word(mixed, label.len() as u64 | LABEL_END);
    Ok(start)
}

/// Checks a catalog pattern of the given kind: lowercase labels of `a-z 0-9 -` (1 to 63 bytes,
/// no leading or trailing `-`), the last two labels literal, not shared infrastructure.
/// `exact` and `suffix` patterns are literal; a `wildcard` pattern holds exactly one `*`.
pub(crate) fn check_pattern(pattern: &str, kind: DomainKind) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} bytes"));
    }
    if pattern.ends_with('.') {
        return Err("must not end with a dot".into());
    }
    let labels: Vec<&str> = pattern.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels".into());
    }
    let stars = pattern.matches('*').count();
    match kind {
        DomainKind::Exact | DomainKind::Suffix if stars > 0 => {
            return Err(
                "`*` belongs in a `wildcard` pattern; for `<tenant>.example.com` write `suffix = \"example.com\", tenant = true`"
                    .into(),
            );
        }
        DomainKind::Wildcard if stars != 1 => {
            return Err("a wildcard pattern needs exactly one `*`".into());
        }
        _ => {}
    }
    for label in &labels {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(format!("label `{label}` must be 1 to {MAX_LABEL} bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*')
        {
            return Err(format!(
                "label `{label}` may only use a-z, 0-9 and `-` (write IDNs as xn--, lowercase)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` must not start or end with `-`"));
        }
    }
    if labels[labels.len() - 2..]
        .iter()
        .any(|label| label.contains('*'))
    {
        return Err("the last two labels must be literal".into());
    }
    // A bare `*` in front of shared infrastructure would match all of it.
    let literal_part = match labels.first() {
        Some(&"*") => labels[1..].join("."),
        _ => pattern.to_owned(),
    };
    if SHARED_INFRASTRUCTURE.contains(&literal_part.as_str()) {
        return Err(format!(
            "`{literal_part}` is shared infrastructure or a look-alike; list only its AI-specific hostnames"
        ));
    }
    Ok(())
}

/// Checks a plan text: short, printable, and `{*}` only in wildcard rules.
pub(crate) fn check_plan(kind: DomainKind, plan: &str) -> Result<(), String> {
    if plan.is_empty() || plan.len() > MAX_PLAN || plan.chars().any(char::is_control) {
        return Err(format!("plan must be 1 to {MAX_PLAN} printable bytes"));
    }
    let without_placeholder = plan.replace("{*}", "");
    if without_placeholder.contains(['{', '}']) {
        return Err("plan may only contain the placeholder `{*}`".into());
    }
    if plan.contains("{*}") && kind != DomainKind::Wildcard {
        return Err("plan uses `{*}` but the rule is not a wildcard".into());
    }
    Ok(())
}

/// Where a domain rule lives: index of the product, index of the rule within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleRef {
    pub(crate) product: u32,
    pub(crate) rule: u32,
}

/// A rule as the index needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexRule<'p> {
    pub(crate) rule: RuleRef,
    pub(crate) pattern: &'p str,
    pub(crate) kind: DomainKind,
    pub(crate) tenant: bool,
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'n> {
    pub(crate) rule: RuleRef,
    /// What the `*` of a wildcard rule stood for.
    pub(crate) star: Option<&'n str>,
    /// The label left of a suffix rule's pattern, if the name is longer than the pattern.
    pub(crate) below: Option<&'n str>,
}

/// A wildcard rule, stored at the node of its literal tail.
#[derive(Debug)]
struct WildcardRule {
    rule: RuleRef,
    /// Labels a name must have.
    labels: usize,
    /// The literal labels left of the `*` label, with their trailing dot (may be empty).
    left: Box<str>,
    /// Text of the `*` label before and after the `*`.
    star_prefix: Box<str>,
    star_suffix: Box<str>,
    /// Literal characters of the pattern, for ranking.
    literal: usize,
}

#[derive(Debug)]
struct Node {
    /// The suffix this node stands for, to confirm a hash hit.
    suffix: Box<str>,
    /// Next node with the same hash (a collision), or [`NO_NODE`].
    next: u32,
    exact: Option<RuleRef>,
    suffix_rule: Option<RuleRef>,
    /// Whether `suffix_rule` names a tenant: it then matches only names below the suffix.
    tenant: bool,
    wildcards: Vec<WildcardRule>,
}

const NO_NODE: u32 = u32::MAX;

/// Hash of name suffixes over every domain rule of a catalog.
#[derive(Debug)]
pub(crate) struct DomainIndex {
    table: HashMap<u64, u32, BuildHasherDefault<MixHasher>>,
    nodes: Vec<Node>,
    /// One bit per hash of a two-label suffix that some pattern has (`openai.com`). Every rule
    /// has at least two labels, so a name whose last two labels miss here matches nothing: most
    /// lookups end after one bit test, without touching the table.
    two_labels: Box<[u64]>,
}

/// Bits in [`DomainIndex::two_labels`] (8 KiB): sparse enough that misses rarely collide.
const PREFILTER_BITS: usize = 1 << 16;

impl Default for DomainIndex {
    fn default() -> DomainIndex {
        DomainIndex {
            table: HashMap::default(),
            nodes: Vec::new(),
            two_labels: vec![0; PREFILTER_BITS / 64].into_boxed_slice(),
        }
    }
}

/// The prefilter bit of a suffix hash.
fn prefilter_bit(hash: u64) -> (usize, u64) {
    // The high bits: the low bits of a multiply-based hash are the weakest.
    let bit = (hash >> 48) as usize % PREFILTER_BITS;
    (bit / 64, 1u64 << (bit % 64))
}

/// Rank of a candidate: labels matched, whole-name rule, literal characters.
type Rank = (usize, bool, usize);

impl DomainIndex {
    /// Builds the index. Patterns must have passed [`check_pattern`]; a second rule of the same
    /// kind on the same node was refused by validation and is ignored here.
    pub(crate) fn build<'p>(rules: impl Iterator<Item = IndexRule<'p>>) -> DomainIndex {
        let mut index = DomainIndex::default();
        for rule in rules {
            match rule.kind {
                DomainKind::Exact | DomainKind::Suffix => {
                    let node = index.insert_path(rule.pattern);
                    let node = &mut index.nodes[node];
                    if rule.kind == DomainKind::Exact {
                        node.exact.get_or_insert(rule.rule);
                    } else if node.suffix_rule.is_none() {
                        node.suffix_rule = Some(rule.rule);
                        node.tenant = rule.tenant;
                    }
                }
                DomainKind::Wildcard => index.insert_wildcard(rule),
            }
        }
        index
    }

    fn insert_wildcard(&mut self, rule: IndexRule<'_>) {
        let labels: Vec<&str> = rule.pattern.split('.').collect();
        let Some(star_at) = labels.iter().position(|label| label.contains('*')) else {
            return;
        };
        let tail = labels[star_at + 1..].join(".");
        let (star_prefix, star_suffix) = labels[star_at].split_once('*').unwrap_or_default();
        let mut left = labels[..star_at].join(".");
        if !left.is_empty() {
            left.push('.');
        }
        let node = self.insert_path(&tail);
        self.nodes[node].wildcards.push(WildcardRule {
            rule: rule.rule,
            labels: labels.len(),
            left: left.into(),
            star_prefix: star_prefix.into(),
            star_suffix: star_suffix.into(),
            literal: rule.pattern.len() - 1,
        });
    }

    /// Inserts a node for every suffix of `pattern`; returns the node of the whole pattern.
    fn insert_path(&mut self, pattern: &str) -> usize {
        let bytes = pattern.as_bytes();
        let mut hash = SEED;
        let mut end = bytes.len();
        let mut depth = 0;
        loop {
            // Patterns were checked: lowercase, valid labels. A failure here is a bug in
            // `check_pattern`; the rule then simply never matches.
            let Ok(start) = scan_label(bytes, end, &mut hash) else {
                return self.node_for(hash, pattern);
            };
            depth += 1;
            if depth == 2 {
                let (word, bit) = prefilter_bit(hash);
                self.two_labels[word] |= bit;
            }
            let node = self.node_for(hash, &pattern[start..]);
            if start == 0 {
                return node;
            }
            end = start - 1;
        }
    }

    fn node_for(&mut self, hash: u64, suffix: &str) -> usize {
        let mut last = None;
        let mut cursor = self.table.get(&hash).copied().unwrap_or(NO_NODE);
        while cursor != NO_NODE {
            let node = &self.nodes[cursor as usize];
            if &*node.suffix == suffix {
                return cursor as usize;
            }
            last = Some(cursor as usize);
            cursor = node.next;
        }
        let created = self.nodes.len();
        // A catalog has a few thousand nodes, far below u32::MAX.
        let created_id = u32::try_from(created).unwrap_or(NO_NODE);
        self.nodes.push(Node {
            suffix: suffix.into(),
            next: NO_NODE,
            exact: None,
            suffix_rule: None,
            tenant: false,
            wildcards: Vec::new(),
        });
        match last {
            Some(last) => self.nodes[last].next = created_id,
            None => {
                self.table.insert(hash, created_id);
            }
        }
        created
    }

    fn find(&self, hash: u64, suffix: &str) -> Option<&Node> {
        let mut cursor = *self.table.get(&hash)?;
        while cursor != NO_NODE {
            let node = &self.nodes[cursor as usize];
            if &*node.suffix == suffix {
                return Some(node);
            }
            cursor = node.next;
        }
        None
    }

    /// Finds the most specific rule for a name that is ASCII, 1 to 253 bytes, without a
    /// trailing dot. The name is checked while it is read, label by label from the right, so
    /// a miss reads only the labels it needs; an upper-case letter asks for a lowercased retry.
    pub(crate) fn lookup<'n>(&self, name: &'n str) -> Result<Hit<'n>, Miss> {
        let bytes = name.as_bytes();
        let mut best: Option<(Rank, Hit<'n>)> = None;
        let mut consider = |rank: Rank, hit: Hit<'n>| {
            if best.as_ref().is_none_or(|(best_rank, _)| rank > *best_rank) {
                best = Some((rank, hit));
            }
        };
        let mut hash = SEED;
        let mut end = bytes.len();
        let mut depth = 0;
        // Start of the leftmost label read so far; everything left of it is unchecked.
        let mut checked_from;
        loop {
            let start = scan_label(bytes, end, &mut hash)?;
            checked_from = start;
            depth += 1;
            if depth == 2 {
                let (word, bit) = prefilter_bit(hash);
                if self.two_labels[word] & bit == 0 {
                    break;
                }
            }
            // No rule has one label: the first label needs no probe.
            let node = if depth >= 2 {
                self.find(hash, &name[start..])
            } else {
                None
            };
            if depth >= 2 && node.is_none() {
                break;
            }
            if let Some(node) = node {
                self.consider_node(node, name, start, depth, &mut consider);
            }
            if start == 0 {
                break;
            }
            end = start - 1;
        }
        let Some((_, hit)) = best else {
            return Err(Miss::NoMatch);
        };
        // A hit stands only if the whole name is a DNS name; then tenant and wildcard texts,
        // which may lie in the unchecked part, are lowercase too.
        if checked_from > 0 {
            match check_labels(&name[..checked_from - 1]) {
                None => return Err(Miss::NoMatch),
                Some(true) => return Err(Miss::UpperCase),
                Some(false) => {}
            }
        }
        Ok(hit)
    }

    /// Offers every rule of `node` (the suffix `name[start..]`, `depth` labels) as a candidate.
    fn consider_node<'n>(
        &self,
        node: &Node,
        name: &'n str,
        start: usize,
        depth: usize,
        consider: &mut impl FnMut(Rank, Hit<'n>),
    ) {
        let bytes = name.as_bytes();
        let suffix_len = name.len() - start;
        // The label left of this suffix, with its start.
        let below = || {
            let below_end = start.checked_sub(1)?;
            let below_start = bytes[..below_end]
                .iter()
                .rposition(|byte| *byte == b'.')
                .map_or(0, |dot| dot + 1);
            Some((below_start, &name[below_start..below_end]))
        };
        if let Some(rule) = node.suffix_rule {
            let below = below().map(|(_, label)| label);
            if !node.tenant || below.is_some() {
                let hit = Hit {
                    rule,
                    star: None,
                    below,
                };
                consider((depth, false, suffix_len), hit);
            }
        }
        if start == 0
            && let Some(rule) = node.exact
        {
            let hit = Hit {
                rule,
                star: None,
                below: None,
            };
            consider((depth, true, suffix_len), hit);
        }
        if node.wildcards.is_empty() {
            return;
        }
        let Some((label_start, label)) = below() else {
            return;
        };
        let total_labels = bytes.iter().filter(|byte| **byte == b'.').count() + 1;
        let left = &name[..label_start];
        // A handful of rules per tail: a linear scan that compares lengths before bytes is
        // cheaper than a binary search over strings.
        for wildcard in &node.wildcards {
            if wildcard.labels != total_labels
                || wildcard.left.len() != left.len()
                || *wildcard.left != *left
            {
                continue;
            }
            let Some(star) = strip_affixes(label, &wildcard.star_prefix, &wildcard.star_suffix)
            else {
                continue;
            };
            let hit = Hit {
                rule: wildcard.rule,
                star: Some(star),
                below: None,
            };
            consider((total_labels, true, wildcard.literal), hit);
        }
    }

    /// Nodes in the index (for statistics and memory estimates).
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// What `*` stands for in `label` given the text around it, if it stands for anything.
fn strip_affixes<'l>(label: &'l str, prefix: &str, suffix: &str) -> Option<&'l str> {
    if label.len() <= prefix.len() + suffix.len() {
        return None;
    }
    let star = label.strip_prefix(prefix)?.strip_suffix(suffix)?;
    Some(star)
}

/// Hash of the empty suffix.
const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
/// Marks the word that closes a label (its length), so labels cannot run into each other.
const LABEL_END: u64 = 1 << 63;

fn mix_word(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(MULTIPLIER).rotate_left(31)
}

/// The table's hasher: keys are already FNV hashes; a final mix spreads them over the high bits
/// the table uses to pick buckets.
#[derive(Debug, Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = mix_word(self.0, u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        let mut mixed = value;
        mixed ^= mixed >> 33;
        mixed = mixed.wrapping_mul(0xff51_afd7_ed55_8ccd);
        mixed ^= mixed >> 33;
        mixed = mixed.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        mixed ^= mixed >> 33;
        self.0 = mixed;
    }
}

#[cfg(test)]
mod tests;
