//! Domain rules: pattern checks, name normalisation and the lookup index.
//!
//! The index is a flat, open-addressing table of name suffixes. Every suffix of every pattern
//! (`openai.com`, `api.openai.com`) is a slot keyed by a 64-bit hash that is extended label by
//! label from the right, and the slot holds the suffix's rules. A lookup walks the name's labels
//! from the right, eight bytes at a time (finding a dot and hashing a label are word operations),
//! one hash step and one probe per label, and stops at the first suffix no rule reaches: its
//! cost depends on the name, never on the number of rules. Case is folded inside the hash, so an
//! upper-case name costs no lowercased copy.
//!
//! During the walk only hashes are compared; the text of the single best candidate is compared
//! once at the end, together with the validity of the labels the walk did not confirm. Should
//! that comparison fail (two different suffixes with one hash), the lookup runs again comparing
//! text at every step, so a hash collision costs time, never a wrong answer.
//!
//! Wildcard rules are found by a second hash: the name's hash with the label holding `*`
//! replaced by a marker. A node whose suffix is the literal tail of some wildcard rule (the
//! labels right of the `*` label) triggers that probe; rules sharing a key (same labels, other
//! text around the `*`) are then checked one by one.
//!
//! The most specific rule wins: the one matching the most labels, then a rule for the whole name
//! (exact or wildcard) over a suffix rule, then the one with more literal characters, then the
//! first in catalog order. Rules of different vendors never overlap (see `overlap.rs`), so this
//! order only decides between rules of one vendor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

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

/// Checks a catalog pattern of the given kind: lowercase labels of `a-z 0-9 -` (1 to 63 bytes,
/// no leading or trailing `-`), the last two labels literal, not shared infrastructure.
/// `exact` and `suffix` patterns are literal; a `wildcard` pattern holds exactly one `*`.
pub(crate) fn check_pattern(pattern: &str, kind: DomainKind) -> Result<(), String> {
    check_syntax(pattern, kind)?;
    let labels: Vec<&str> = pattern.split('.').collect();
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

/// The syntax part of [`check_pattern`]: lengths, labels, characters, where `*` may stand. Also
/// what a `[visibility]` host name must satisfy (those name shared infrastructure on purpose).
pub(crate) fn check_syntax(pattern: &str, kind: DomainKind) -> Result<(), String> {
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

/// Why a lookup found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No rule matches (or the name is not a DNS name).
    NoMatch,
    /// The name is not ASCII: convert it with [`normalize_domain`] and look it up again.
    Unicode,
}

/// Where a domain rule lives: index of the product, index of the rule within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleRef {
    pub(crate) product: u32,
    pub(crate) rule: u32,
}

/// No rule (in a slot that has no rule of some kind).
const NO_RULE: RuleRef = RuleRef {
    product: u32::MAX,
    rule: u32::MAX,
};

/// A rule as the index needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexRule<'p> {
    pub(crate) rule: RuleRef,
    pub(crate) pattern: &'p str,
    pub(crate) kind: DomainKind,
    pub(crate) tenant: bool,
}

/// The result of a lookup. The texts are slices of the name as given: they keep its case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'n> {
    pub(crate) rule: RuleRef,
    /// What the `*` of a wildcard rule stood for.
    pub(crate) star: Option<&'n str>,
    /// The label left of a suffix rule's pattern, if the name is longer than the pattern.
    pub(crate) below: Option<&'n str>,
}

const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const DOTS: u64 = 0x2e2e_2e2e_2e2e_2e2e;
/// OR-ed into every byte before hashing: folds `A-Z` onto `a-z` and leaves `a-z 0-9 - .`
/// alone, so a name hashes the same in any case. (It also moves bytes that are not allowed in
/// a name, which then fail the check of the hit.)
const CASE_FOLD: u64 = 0x2020_2020_2020_2020;

/// `0x80` in every byte of `word` that is zero, `0` in the others (exact, no false positives).
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOW_BITS).wrapping_add(LOW_BITS)) | word | LOW_BITS)
}

/// A byte repeated in every byte of a word.
const fn splat(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// `0x80` in every byte of `word` (ASCII) within `low..=high`, `0` in the others.
#[inline(always)]
fn bytes_in(word: u64, low: u8, high: u8) -> u64 {
    // ASCII bytes plus at most 0x80 never carry into the next byte.
    let at_least_low = word.wrapping_add(splat(0x80 - low));
    let above_high = word.wrapping_add(splat(0x7f - high));
    at_least_low & !above_high & splat(0x80)
}

/// `0x80` in every byte of `word` (ASCII) that a DNS name may not hold (anything but
/// `a-z A-Z 0-9 - _ .`), `0` in the others.
#[inline(always)]
fn refused_bytes(word: u64) -> u64 {
    let allowed = bytes_in(word | CASE_FOLD, b'a', b'z')
        | bytes_in(word, b'0', b'9')
        | bytes_in(word, b'-', b'.')
        | zero_bytes(word ^ splat(b'_'));
    !allowed & splat(0x80)
}

/// A name ready for the walk: ASCII, 1 to [`MAX_NAME`] bytes, no trailing dot.
#[derive(Clone, Copy)]
struct Prepared<'n> {
    bytes: &'n [u8],
    len: usize,
}

impl<'n> Prepared<'n> {
    /// Refuses an empty name or one over [`MAX_NAME`] bytes, and asks for IDNA conversion
    /// when the name is not ASCII.
    #[inline(always)]
    fn new(bytes: &'n [u8]) -> Result<Prepared<'n>, Miss> {
        let len = bytes.len();
        if !bytes.is_ascii() {
            return Err(Miss::Unicode);
        }
        if len == 0 || len > MAX_NAME {
            return Err(Miss::NoMatch);
        }
        Ok(Prepared { bytes, len })
    }

    /// Start of the label that ends at `end` (exclusive): one past the last dot before `end`,
    /// searched eight bytes at a time.
    #[inline(always)]
    fn label_start(&self, end: usize) -> usize {
        let mut stop = end.min(self.len);
        loop {
            let (base, word) = match stop.checked_sub(8) {
                Some(base) => (base, word_at(self.bytes, base)),
                // The first bytes of the name, zero-padded (zero is not a dot).
                None => (0, word_at(self.bytes, 0) & keep_bytes(stop)),
            };
            let marks = zero_bytes(word ^ DOTS);
            if marks != 0 {
                return base + (63 - marks.leading_zeros() as usize) / 8 + 1;
            }
            if base == 0 {
                return 0;
            }
            stop = base;
        }
    }

    /// Whether `bytes[range]` are DNS labels: 1 to 63 bytes each of `a-z A-Z 0-9 - _`.
    /// Bytes are checked eight at a time; label lengths follow from the dots in each word.
    fn labels_are_valid(&self, range: Range<usize>) -> bool {
        let Some(text) = self.bytes.get(range) else {
            return false;
        };
        let end = text.len();
        // Bytes since the last dot.
        let mut run = 0;
        let mut at = 0;
        while at < end {
            let count = (end - at).min(8);
            let keep = match count {
                8 => u64::MAX,
                _ => keep_bytes(count),
            };
            let word = word_at(text, at);
            if refused_bytes(word) & keep != 0 {
                return false;
            }
            let dots = zero_bytes(word ^ DOTS) & keep;
            if dots == 0 {
                run += count;
            } else {
                let first = dots.trailing_zeros() as usize / 8;
                let last = (63 - dots.leading_zeros() as usize) / 8;
                // The label ending at the first dot, and no two dots side by side.
                if run + first == 0 || run + first > MAX_LABEL || dots & (dots << 8) != 0 {
                    return false;
                }
                run = count - last - 1;
            }
            if run > MAX_LABEL {
                return false;
            }
            at += 8;
        }
        run > 0
    }

    /// Finds the label that ends at `end` and extends `hash` by it; returns the label's start
    /// and the new hash. The label is read from its end, eight bytes per load: each word gives
    /// both the dot (if the label starts in it) and the bytes to hash, case folded. Full words
    /// are mixed as they are; the last, partial word carries a mark and its byte count in its
    /// top byte, so that labels cannot run into each other (name bytes are ASCII: a data word
    /// never has the mark's top bit). A label of up to seven bytes costs one multiply.
    #[inline(always)]
    fn step(&self, hash: u64, end: usize) -> (usize, u64) {
        let mut mixed = hash;
        let mut stop = end.min(self.len);
        loop {
            let (base, word) = match stop.checked_sub(8) {
                Some(base) => (base, word_at(self.bytes, base)),
                // The first bytes of the name, zero-padded: zero is not a dot.
                None => (0, word_at(self.bytes, 0) & keep_bytes(stop)),
            };
            let marks = zero_bytes(word ^ DOTS);
            let (start, data, count) = if marks != 0 {
                // The last dot's byte in the word; the label's bytes are those above it.
                let dot = (63 - marks.leading_zeros() as usize) / 8;
                let count = stop - base - dot - 1;
                (stop - count, (word >> (dot * 8)) >> 8, count)
            } else if base == 0 && stop < 8 {
                (0, word, stop)
            } else {
                // A full word of the label; at the name's start, the label ends here.
                mixed = mix_word(mixed, word | CASE_FOLD);
                if base == 0 {
                    return (0, mix_word(mixed, LABEL_END));
                }
                stop = base;
                continue;
            };
            let last =
                ((data | CASE_FOLD) & keep_bytes(count)) | LABEL_END | ((count as u64) << 56);
            return (start, mix_word(mixed, last));
        }
    }
}

/// Whether every byte is ASCII, eight bytes at a time (`str::is_ascii` reads short names
/// byte by byte).
#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    let mut high = 0;
    let mut at = 0;
    while at < bytes.len() {
        high |= word_at(bytes, at);
        at += 8;
    }
    high & splat(0x80) == 0
}

/// A mask of the low `count` bytes of a word (`count` below 8).
#[inline(always)]
fn keep_bytes(count: usize) -> u64 {
    (1u64 << ((count % 8) * 8)) - 1
}

/// The eight bytes of `bytes` from `at`, little-endian, zero past the end.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    if let Some(chunk) = bytes.get(at..at + 8) {
        return load(chunk);
    }
    let len = bytes.len();
    if at >= len {
        return 0;
    }
    match len.checked_sub(8).and_then(|last| bytes.get(last..)) {
        // The last word of the name, shifted so that byte `at` comes first.
        Some(last) => load(last) >> ((at + 8 - len) * 8),
        // A name shorter than a word: assembled in a register.
        None => bytes
            .get(at..)
            .unwrap_or_default()
            .iter()
            .rev()
            .fold(0u64, |word, byte| (word << 8) | u64::from(*byte)),
    }
}

/// A little-endian word from a slice of eight bytes (zero for any other length).
#[inline(always)]
fn load(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    if bytes.len() == 8 {
        word.copy_from_slice(bytes);
    }
    u64::from_le_bytes(word)
}

/// A slot of the suffix table: one suffix of some pattern and its rules.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    exact: RuleRef,
    suffix_rule: RuleRef,
    /// Index of the suffix text in [`DomainIndex::suffixes`]; [`NO_NODE`] for an empty slot.
    node: u32,
    flags: u32,
}

/// `suffix_rule` names a tenant: it matches only names below the suffix.
const TENANT: u32 = 1;
/// Some wildcard rule has this suffix as its literal tail.
const WILDCARD_TAIL: u32 = 2;
const NO_NODE: u32 = u32::MAX;
const EMPTY_SLOT: Slot = Slot {
    hash: 0,
    exact: NO_RULE,
    suffix_rule: NO_RULE,
    node: NO_NODE,
    flags: 0,
};

/// A wildcard rule, found by the hash of its labels with the `*` label as a marker.
#[derive(Debug)]
struct WildcardRule {
    rule: RuleRef,
    key: u64,
    /// The literal labels left of the `*` label, each with its trailing dot (may be empty).
    left: Box<str>,
    /// The literal tail with its leading dot, e.g. `.amazonaws.com`.
    tail: Box<str>,
    /// Text of the `*` label before and after the `*`.
    star_prefix: Box<str>,
    star_suffix: Box<str>,
    /// Literal characters of the pattern, for ranking.
    literal: usize,
}

/// A slot of the wildcard table: the rules `wildcards[first..first + count]` share `key`.
#[derive(Debug, Clone, Copy)]
struct KeySlot {
    key: u64,
    first: u32,
    /// Zero for an empty slot.
    count: u32,
}

const EMPTY_KEY_SLOT: KeySlot = KeySlot {
    key: 0,
    first: 0,
    count: 0,
};

/// The suffix index over every domain rule of a catalog.
#[derive(Debug)]
pub(crate) struct DomainIndex {
    /// Open addressing, linear probing, at most half full; the length is a power of two.
    slots: Box<[Slot]>,
    /// Text of every suffix, lowercase, to confirm a hit.
    suffixes: Vec<Box<str>>,
    /// Wildcard rules, grouped by key, in catalog order within a key.
    wildcards: Vec<WildcardRule>,
    /// Open addressing over wildcard keys, as `slots`.
    wildcard_slots: Box<[KeySlot]>,
    /// One bit per hash of a two-label suffix that some pattern has (`openai.com`). Every rule
    /// has at least two labels, so a name whose last two labels miss here matches nothing: most
    /// lookups end after one bit test, without touching the table.
    two_labels: Box<[u64]>,
    /// Two different suffixes (or wildcard keys) of the catalog share a hash: every lookup then
    /// compares text at every step.
    collisions: bool,
}

/// Bits in [`DomainIndex::two_labels`] (8 KiB): sparse enough that misses rarely collide.
const PREFILTER_BITS: usize = 1 << 16;

impl Default for DomainIndex {
    fn default() -> DomainIndex {
        DomainIndex::build(std::iter::empty())
    }
}

/// The prefilter bit of a suffix hash.
#[inline(always)]
fn prefilter_bit(hash: u64) -> (usize, u64) {
    // The high bits: the low bits of a multiply-based hash are the weakest.
    let bit = (hash >> 48) as usize % PREFILTER_BITS;
    (bit / 64, 1u64 << (bit % 64))
}

/// First slot to probe for a hash, before masking to the table's size.
#[inline(always)]
fn home_slot(hash: u64) -> usize {
    ((hash ^ (hash >> 29)).wrapping_mul(MULTIPLIER) >> 40) as usize
}

/// Rank of a candidate: labels matched, whole-name rule, literal characters.
type Rank = (usize, bool, usize);

/// The best candidate so far.
#[derive(Debug, Clone, Copy)]
struct Found {
    rank: Rank,
    rule: RuleRef,
    /// Start of the matched suffix (of the literal tail, for a wildcard rule). The labels left
    /// of it are checked once, for the winner.
    start: usize,
    what: FoundBy,
}

#[derive(Debug, Clone, Copy)]
enum FoundBy {
    /// An exact or suffix rule of this node.
    Node(u32),
    /// This wildcard rule; the `*` label starts at `star_start` and ends before the tail.
    Wildcard { wildcard: u32, star_start: usize },
}

/// Keeps the better of two candidates; the earlier wins a tie (catalog order).
fn offer(best: &mut Option<Found>, found: Found) {
    if best.as_ref().is_none_or(|best| found.rank > best.rank) {
        *best = Some(found);
    }
}

/// Nodes and wildcard rules as they are gathered, before the tables are laid out.
#[derive(Default)]
struct Builder {
    nodes: Vec<Slot>,
    suffixes: Vec<Box<str>>,
    by_suffix: HashMap<Box<str>, usize>,
    wildcards: Vec<WildcardRule>,
    two_labels: Vec<u64>,
}

impl Builder {
    /// Inserts a node for every suffix of `pattern` (two labels or more); returns the node of
    /// the whole pattern and its hash. `None` for a pattern that is not a valid name, which
    /// `check_pattern` refused before: such a rule simply never matches.
    fn insert_path(&mut self, pattern: &str) -> Option<(usize, u64)> {
        let prepared = Prepared::new(pattern.as_bytes()).ok()?;
        let mut hash = SEED;
        let mut end = prepared.len;
        let mut depth = 0;
        loop {
            let (start, extended) = prepared.step(hash, end);
            if start == end {
                return None;
            }
            hash = extended;
            depth += 1;
            if depth == 2 {
                let (word, bit) = prefilter_bit(hash);
                if let Some(bits) = self.two_labels.get_mut(word) {
                    *bits |= bit;
                }
            }
            if start == 0 {
                return (depth >= 2).then(|| (self.node_for(hash, pattern), hash));
            }
            if depth >= 2 {
                self.node_for(hash, pattern.get(start..)?);
            }
            end = start - 1;
        }
    }

    fn node_for(&mut self, hash: u64, suffix: &str) -> usize {
        if let Some(node) = self.by_suffix.get(suffix) {
            return *node;
        }
        let node = self.nodes.len();
        self.nodes.push(Slot {
            hash,
            // A catalog has a few thousand nodes, far below u32::MAX.
            node: u32::try_from(node).unwrap_or(NO_NODE),
            ..EMPTY_SLOT
        });
        self.suffixes.push(suffix.into());
        self.by_suffix.insert(suffix.into(), node);
        node
    }

    fn insert_rule(&mut self, rule: &IndexRule<'_>) {
        match rule.kind {
            DomainKind::Exact | DomainKind::Suffix => {
                let Some((node, _)) = self.insert_path(rule.pattern) else {
                    return;
                };
                let Some(slot) = self.nodes.get_mut(node) else {
                    return;
                };
                if rule.kind == DomainKind::Exact {
                    if slot.exact == NO_RULE {
                        slot.exact = rule.rule;
                    }
                } else if slot.suffix_rule == NO_RULE {
                    slot.suffix_rule = rule.rule;
                    if rule.tenant {
                        slot.flags |= TENANT;
                    }
                }
            }
            DomainKind::Wildcard => self.insert_wildcard(rule),
        }
    }

    fn insert_wildcard(&mut self, rule: &IndexRule<'_>) {
        let labels: Vec<&str> = rule.pattern.split('.').collect();
        let Some(star_at) = labels.iter().position(|label| label.contains('*')) else {
            return;
        };
        let (Some(left), Some(star), Some(tail)) = (
            labels.get(..star_at),
            labels.get(star_at),
            labels.get(star_at + 1..),
        ) else {
            return;
        };
        let Some((star_prefix, star_suffix)) = star.split_once('*') else {
            return;
        };
        let tail = tail.join(".");
        let Some((node, tail_hash)) = self.insert_path(&tail) else {
            return;
        };
        if let Some(slot) = self.nodes.get_mut(node) {
            slot.flags |= WILDCARD_TAIL;
        }
        // The key as a lookup computes it: the tail's hash, the marker, then the left labels
        // from the right.
        let mut key = mix_word(tail_hash, STAR);
        for label in left.iter().rev() {
            let Ok(prepared) = Prepared::new(label.as_bytes()) else {
                return;
            };
            key = prepared.step(key, prepared.len).1;
        }
        let left: String = left.iter().map(|label| format!("{label}.")).collect();
        self.wildcards.push(WildcardRule {
            rule: rule.rule,
            key,
            left: left.into(),
            tail: format!(".{tail}").into(),
            star_prefix: star_prefix.into(),
            star_suffix: star_suffix.into(),
            literal: rule.pattern.len() - 1,
        });
    }

    /// Lays out both tables; notes whether any two different suffixes or keys share a hash.
    fn finish(mut self) -> DomainIndex {
        let mut collisions = false;
        let mut slots = vec![EMPTY_SLOT; table_size(self.nodes.len())].into_boxed_slice();
        let mask = slots.len() - 1;
        for node in &self.nodes {
            let mut at = home_slot(node.hash) & mask;
            while let Some(slot) = slots.get(at)
                && slot.node != NO_NODE
            {
                collisions |= slot.hash == node.hash;
                at = (at + 1) & mask;
            }
            if let Some(slot) = slots.get_mut(at) {
                *slot = *node;
            }
        }
        // Stable: rules sharing a key keep their catalog order.
        self.wildcards.sort_by_key(|wildcard| wildcard.key);
        let mut wildcard_slots =
            vec![EMPTY_KEY_SLOT; table_size(self.wildcards.len())].into_boxed_slice();
        let key_mask = wildcard_slots.len() - 1;
        let mut first = 0;
        while let Some(head) = self.wildcards.get(first) {
            let group = self.wildcards.get(first..).unwrap_or_default();
            let count = group.iter().take_while(|w| w.key == head.key).count();
            collisions |= group
                .iter()
                .take(count)
                .any(|w| w.left != head.left || w.tail != head.tail);
            let mut at = home_slot(head.key) & key_mask;
            while wildcard_slots.get(at).is_some_and(|slot| slot.count != 0) {
                at = (at + 1) & key_mask;
            }
            if let Some(slot) = wildcard_slots.get_mut(at) {
                *slot = KeySlot {
                    key: head.key,
                    first: u32::try_from(first).unwrap_or(u32::MAX),
                    count: u32::try_from(count).unwrap_or(0),
                };
            }
            first += count;
        }
        DomainIndex {
            slots,
            suffixes: self.suffixes,
            wildcards: self.wildcards,
            wildcard_slots,
            two_labels: self.two_labels.into_boxed_slice(),
            collisions,
        }
    }
}

/// Slots for `entries` entries: a power of two, at most half full, at least 16.
fn table_size(entries: usize) -> usize {
    (entries * 2).next_power_of_two().max(16)
}

impl DomainIndex {
    /// Builds the index. Patterns must have passed [`check_pattern`]; a second rule of the same
    /// kind on the same node was refused by validation and is ignored here.
    pub(crate) fn build<'p>(rules: impl Iterator<Item = IndexRule<'p>>) -> DomainIndex {
        let mut builder = Builder {
            two_labels: vec![0; PREFILTER_BITS / 64],
            ..Builder::default()
        };
        for rule in rules {
            builder.insert_rule(&rule);
        }
        builder.finish()
    }

    /// Finds the most specific rule for a name as seen on the wire: any case, one trailing dot
    /// allowed. Every byte of a hit is checked (a DNS name of 1 to 253 bytes, labels of 1 to 63
    /// bytes of `a-z A-Z 0-9 - _`); a miss reads only the labels it needs. A name that is not
    /// ASCII is refused with [`Miss::Unicode`], to be converted and looked up again.
    pub(crate) fn lookup<'n>(&self, name: &'n str) -> Result<Hit<'n>, Miss> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let bytes = name.as_bytes();
        // Checked here rather than through `Prepared::new`: a `Result` around the prepared
        // name costs a store-forwarding stall on this path.
        if !is_ascii(bytes) {
            return Err(Miss::Unicode);
        }
        if bytes.is_empty() || bytes.len() > MAX_NAME {
            return Err(Miss::NoMatch);
        }
        let prepared = Prepared {
            bytes,
            len: bytes.len(),
        };
        if !self.collisions {
            match self.walk::<false>(name, &prepared) {
                None => return Err(Miss::NoMatch),
                Some(found) if self.confirm(name, &found) => {
                    return self.hit(name, &prepared, &found);
                }
                // Two texts with one hash: look again, comparing text at every step.
                Some(_) => {}
            }
        }
        match self.walk::<true>(name, &prepared) {
            Some(found) => self.hit(name, &prepared, &found),
            None => Err(Miss::NoMatch),
        }
    }

    /// Walks the name's labels from the right and returns the best candidate. With `CHECKED`,
    /// every suffix and wildcard text is compared as it is met; without, only hashes are (the
    /// caller confirms the winner).
    fn walk<const CHECKED: bool>(&self, name: &str, prepared: &Prepared<'_>) -> Option<Found> {
        let mut best = None;
        let mut hash = SEED;
        let mut end = prepared.len;
        let mut depth = 0;
        loop {
            let (start, extended) = prepared.step(hash, end);
            if start == end {
                // An empty label: not a DNS name.
                return None;
            }
            hash = extended;
            depth += 1;
            // No rule has one label: the first label needs no probe.
            if depth >= 2 {
                if depth == 2 {
                    let (word, bit) = prefilter_bit(hash);
                    if self.two_labels.get(word).is_none_or(|bits| bits & bit == 0) {
                        break;
                    }
                }
                let Some(slot) = self.probe::<CHECKED>(hash, name, start) else {
                    break;
                };
                self.offer_node::<CHECKED>(slot, hash, name, prepared, start, depth, &mut best);
            }
            if start == 0 {
                break;
            }
            end = start - 1;
        }
        best
    }

    /// The slot of the suffix `name[start..]` with this hash.
    fn probe<const CHECKED: bool>(&self, hash: u64, name: &str, start: usize) -> Option<&Slot> {
        let mask = self.slots.len() - 1;
        let mut at = home_slot(hash) & mask;
        loop {
            let slot = self.slots.get(at)?;
            if slot.node == NO_NODE {
                return None;
            }
            if slot.hash == hash && (!CHECKED || self.suffix_is(slot.node, name, start)) {
                return Some(slot);
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether `name[start..]` is the text of `node` (in any case).
    fn suffix_is(&self, node: u32, name: &str, start: usize) -> bool {
        match (self.suffixes.get(node as usize), name.get(start..)) {
            (Some(suffix), Some(text)) => same_text(text, suffix),
            _ => false,
        }
    }

    /// Offers every rule of `slot` (the suffix `name[start..]`, `depth` labels).
    #[allow(clippy::too_many_arguments)]
    fn offer_node<const CHECKED: bool>(
        &self,
        slot: &Slot,
        hash: u64,
        name: &str,
        prepared: &Prepared<'_>,
        start: usize,
        depth: usize,
        best: &mut Option<Found>,
    ) {
        let whole = start == 0;
        let suffix_len = prepared.len - start;
        if slot.suffix_rule != NO_RULE && (slot.flags & TENANT == 0 || !whole) {
            let found = Found {
                rank: (depth, false, suffix_len),
                rule: slot.suffix_rule,
                start,
                what: FoundBy::Node(slot.node),
            };
            offer(best, found);
        }
        if whole && slot.exact != NO_RULE {
            let found = Found {
                rank: (depth, true, suffix_len),
                rule: slot.exact,
                start,
                what: FoundBy::Node(slot.node),
            };
            offer(best, found);
        }
        if slot.flags & WILDCARD_TAIL != 0 && !whole {
            self.offer_wildcards::<CHECKED>(hash, name, prepared, start, depth, best);
        }
    }

    /// Offers the wildcard rules whose literal tail is `name[start..]` (`depth` labels,
    /// hashed as `hash`).
    fn offer_wildcards<const CHECKED: bool>(
        &self,
        hash: u64,
        name: &str,
        prepared: &Prepared<'_>,
        start: usize,
        depth: usize,
        best: &mut Option<Found>,
    ) {
        let star_end = start - 1;
        let star_start = prepared.label_start(star_end);
        if star_start == star_end {
            return;
        }
        let mut key = mix_word(hash, STAR);
        // The tail's labels, the `*` label, then those left of it.
        let mut labels = depth + 1;
        let mut cursor = star_start;
        while cursor > 0 {
            let end = cursor - 1;
            let (label, extended) = prepared.step(key, end);
            if label == end {
                return;
            }
            key = extended;
            labels += 1;
            cursor = label;
        }
        let Some((first, group)) = self.wildcard_group(key) else {
            return;
        };
        let Some(star_label) = name.get(star_start..star_end) else {
            return;
        };
        for (index, wildcard) in (first..).zip(group) {
            if strip_affixes(star_label, &wildcard.star_prefix, &wildcard.star_suffix).is_none() {
                continue;
            }
            if CHECKED && !wildcard_literals_match(wildcard, name, star_start, star_end) {
                continue;
            }
            let found = Found {
                rank: (labels, true, wildcard.literal),
                rule: wildcard.rule,
                start,
                what: FoundBy::Wildcard {
                    wildcard: index,
                    star_start,
                },
            };
            offer(best, found);
        }
    }

    /// The wildcard rules with this key, and the index of the first.
    fn wildcard_group(&self, key: u64) -> Option<(u32, &[WildcardRule])> {
        let mask = self.wildcard_slots.len() - 1;
        let mut at = home_slot(key) & mask;
        loop {
            let slot = self.wildcard_slots.get(at)?;
            if slot.count == 0 {
                return None;
            }
            if slot.key == key {
                let first = slot.first as usize;
                let group = self.wildcards.get(first..first + slot.count as usize)?;
                return Some((slot.first, group));
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether the winner of an unchecked walk really matches: its text, compared once.
    fn confirm(&self, name: &str, found: &Found) -> bool {
        match found.what {
            FoundBy::Node(node) => self.suffix_is(node, name, found.start),
            FoundBy::Wildcard {
                wildcard,
                star_start,
            } => self.wildcards.get(wildcard as usize).is_some_and(|rule| {
                wildcard_literals_match(rule, name, star_start, found.start - 1)
            }),
        }
    }

    /// Turns the winner into a hit once the labels left of its confirmed text are checked.
    fn hit<'n>(
        &self,
        name: &'n str,
        prepared: &Prepared<'_>,
        found: &Found,
    ) -> Result<Hit<'n>, Miss> {
        // A hit stands only if the whole name is a DNS name. Confirmed text is catalog text,
        // valid: only the rest is checked (left of a suffix; the `*` label of a wildcard).
        let unconfirmed = match found.what {
            FoundBy::Node(_) => 0..found.start.saturating_sub(1),
            FoundBy::Wildcard { star_start, .. } => star_start..found.start - 1,
        };
        if !unconfirmed.is_empty() && !prepared.labels_are_valid(unconfirmed) {
            return Err(Miss::NoMatch);
        }
        let mut hit = Hit {
            rule: found.rule,
            star: None,
            below: None,
        };
        match found.what {
            FoundBy::Node(_) if found.start > 0 => {
                let below_end = found.start - 1;
                hit.below = name.get(prepared.label_start(below_end)..below_end);
            }
            FoundBy::Node(_) => {}
            FoundBy::Wildcard {
                wildcard,
                star_start,
            } => {
                let rule = self.wildcards.get(wildcard as usize).ok_or(Miss::NoMatch)?;
                let label = name.get(star_start..found.start - 1).ok_or(Miss::NoMatch)?;
                hit.star = strip_affixes(label, &rule.star_prefix, &rule.star_suffix);
            }
        }
        Ok(hit)
    }

    /// Nodes in the index (for statistics and memory estimates).
    pub(crate) fn node_count(&self) -> usize {
        self.suffixes.len()
    }
}

/// Whether the literal labels of a wildcard rule are those around the `*` label
/// `name[star_start..star_end]` (in any case).
fn wildcard_literals_match(
    rule: &WildcardRule,
    name: &str,
    star_start: usize,
    star_end: usize,
) -> bool {
    let left = name.get(..star_start);
    let tail = name.get(star_end..);
    left.is_some_and(|left| same_text(left, &rule.left))
        && tail.is_some_and(|tail| same_text(tail, &rule.tail))
}

/// Whether name text equals lowercase catalog text in any case: word compares for the usual
/// lowercase name, a byte loop only for another case.
#[inline(always)]
fn same_text(text: &str, lowercase: &str) -> bool {
    let (name, catalog) = (text.as_bytes(), lowercase.as_bytes());
    if name.len() != catalog.len() {
        return false;
    }
    // Eight bytes at a time, inline: cheaper than a `memcmp` call for names this short.
    let mut at = 0;
    while at < name.len() {
        if word_at(name, at) != word_at(catalog, at) {
            return text.eq_ignore_ascii_case(lowercase);
        }
        at += 8;
    }
    true
}

/// What `*` stands for in `label` given the text around it (compared in any case), if it
/// stands for anything.
fn strip_affixes<'l>(label: &'l str, prefix: &str, suffix: &str) -> Option<&'l str> {
    if prefix.is_empty() && suffix.is_empty() {
        return (!label.is_empty()).then_some(label);
    }
    if label.len() <= prefix.len() + suffix.len() {
        return None;
    }
    let (head, rest) = label.split_at_checked(prefix.len())?;
    let (star, tail) = rest.split_at_checked(rest.len() - suffix.len())?;
    (head.eq_ignore_ascii_case(prefix) && tail.eq_ignore_ascii_case(suffix)).then_some(star)
}

/// Hash of the empty suffix.
const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
/// Marks the word that closes a label, so labels cannot run into each other.
const LABEL_END: u64 = 1 << 63;
/// Stands for the `*` label in a wildcard key: a closing word no label has (a closing word
/// with no data bytes is zero below its top byte).
const STAR: u64 = LABEL_END | (1 << 32);

#[inline(always)]
fn mix_word(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(MULTIPLIER).rotate_left(31)
}

#[cfg(test)]
mod tests;
