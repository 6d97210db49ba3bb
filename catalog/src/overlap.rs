//! Overlap check across the whole catalog: every name must have one unambiguous answer.
//!
//! Two domain rules overlap when some name matches both. Across vendors (the part of the
//! product id before the dot) that is an error naming both rules: the same host cannot belong
//! to two companies, and "most specific wins" between vendors would hide a data mistake.
//! Within one vendor, rules may nest (`suffix openai.com` of `openai.api` and
//! `suffix chat.openai.com` of `openai.chatgpt`); the lookup then picks the most specific rule.
//! The same pattern twice (`suffix` and a `tenant` suffix count as the same) is always an error.
//!
//! Two rules can only overlap if their literal tails (the labels right of any `*`) are nested,
//! so each rule is compared with the rules whose tail is one of its own tail's suffixes: the
//! check costs rules × labels × rules-per-tail, not rules².

use std::collections::HashMap;

use crate::model::{DomainKind, DomainRule};

/// A domain rule with where it was declared.
pub(crate) struct Placed<'a> {
    pub(crate) rule: &'a DomainRule,
    pub(crate) product: &'a str,
    pub(crate) vendor: &'a str,
    pub(crate) file: &'a str,
    pub(crate) line: usize,
}

/// A conflict: `later` (in catalog order) conflicts with `earlier`.
pub(crate) struct Conflict<'p, 'a> {
    pub(crate) earlier: &'p Placed<'a>,
    pub(crate) later: &'p Placed<'a>,
    pub(crate) duplicate: bool,
}

/// Every conflict among the rules, each reported once, in catalog order of `later`.
pub(crate) fn conflicts<'p, 'a>(rules: &'p [Placed<'a>]) -> Vec<Conflict<'p, 'a>> {
    let shapes: Vec<Shape<'a>> = rules.iter().map(|placed| Shape::of(placed.rule)).collect();
    let mut by_tail: HashMap<&str, Vec<usize>> = HashMap::new();
    for (at, shape) in shapes.iter().enumerate() {
        by_tail.entry(shape.tail).or_default().push(at);
    }
    let mut found = Vec::new();
    for (at, shape) in shapes.iter().enumerate() {
        let mut tail = shape.tail;
        loop {
            for &other in by_tail.get(tail).map(Vec::as_slice).unwrap_or_default() {
                // Equal tails are seen from both sides: compare each such pair once.
                if other == at || (tail == shape.tail && other > at) {
                    continue;
                }
                let (earlier, later) = if other < at { (other, at) } else { (at, other) };
                if let Some(duplicate) = conflict(
                    &rules[earlier],
                    &rules[later],
                    &shapes[earlier],
                    &shapes[later],
                ) {
                    found.push((later, earlier, duplicate));
                }
            }
            let Some((_, parent)) = tail.split_once('.') else {
                break;
            };
            tail = parent;
        }
    }
    found.sort_unstable_by_key(|(later, earlier, _)| (*later, *earlier));
    found.dedup_by_key(|(later, earlier, _)| (*later, *earlier));
    found
        .into_iter()
        .map(|(later, earlier, duplicate)| Conflict {
            earlier: &rules[earlier],
            later: &rules[later],
            duplicate,
        })
        .collect()
}

/// `Some(is_duplicate)` when the two rules conflict.
fn conflict(
    a: &Placed<'_>,
    b: &Placed<'_>,
    shape_a: &Shape<'_>,
    shape_b: &Shape<'_>,
) -> Option<bool> {
    let same_family = |kind: DomainKind| match kind {
        DomainKind::Exact => 0,
        DomainKind::Suffix => 1,
        DomainKind::Wildcard => 2,
    };
    let duplicate =
        a.rule.pattern == b.rule.pattern && same_family(a.rule.kind) == same_family(b.rule.kind);
    if duplicate {
        return Some(true);
    }
    if a.vendor == b.vendor || !shape_a.intersects(shape_b) {
        return None;
    }
    Some(false)
}

/// The set of names a rule matches: names with `min..=max` labels whose rightmost labels match
/// `labels` (right to left).
struct Shape<'a> {
    labels: Vec<Label<'a>>,
    min: usize,
    max: usize,
    /// The labels right of the `*` label, or the whole pattern.
    tail: &'a str,
}

/// One label of a pattern: literal, or `prefix*suffix`.
#[derive(Clone, Copy)]
enum Label<'a> {
    Literal(&'a str),
    Glob(&'a str, &'a str),
}

impl<'a> Shape<'a> {
    fn of(rule: &'a DomainRule) -> Shape<'a> {
        let pattern = rule.pattern.as_str();
        let labels: Vec<Label<'a>> = pattern
            .rsplit('.')
            .map(|label| match label.split_once('*') {
                Some((prefix, suffix)) => Label::Glob(prefix, suffix),
                None => Label::Literal(label),
            })
            .collect();
        let count = labels.len();
        let (min, max) = match rule.kind {
            DomainKind::Exact | DomainKind::Wildcard => (count, count),
            DomainKind::Suffix if rule.tenant => (count + 1, usize::MAX),
            DomainKind::Suffix => (count, usize::MAX),
        };
        let tail = match pattern.rfind('*') {
            Some(star) => pattern[star..].split_once('.').map_or("", |(_, tail)| tail),
            None => pattern,
        };
        Shape {
            labels,
            min,
            max,
            tail,
        }
    }

    /// Whether some name matches both shapes: a label count both allow, and every label both
    /// constrain can be one text.
    fn intersects(&self, other: &Shape<'_>) -> bool {
        if self.min.max(other.min) > self.max.min(other.max) {
            return false;
        }
        self.labels
            .iter()
            .zip(&other.labels)
            .all(|(a, b)| labels_intersect(*a, *b))
    }
}

fn labels_intersect(a: Label<'_>, b: Label<'_>) -> bool {
    match (a, b) {
        (Label::Literal(a), Label::Literal(b)) => a == b,
        (Label::Literal(text), Label::Glob(prefix, suffix))
        | (Label::Glob(prefix, suffix), Label::Literal(text)) => {
            // The `*` stands for at least one character (as in the lookup).
            text.len() > prefix.len() + suffix.len()
                && text.starts_with(prefix)
                && text.ends_with(suffix)
        }
        // Some text starts with the longer prefix and ends with the longer suffix exactly
        // when each prefix extends the other and each suffix extends the other.
        (Label::Glob(prefix_a, suffix_a), Label::Glob(prefix_b, suffix_b)) => {
            (prefix_a.starts_with(prefix_b) || prefix_b.starts_with(prefix_a))
                && (suffix_a.ends_with(suffix_b) || suffix_b.ends_with(suffix_a))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Confidence;

    fn rule(kind: DomainKind, pattern: &str, tenant: bool) -> DomainRule {
        DomainRule {
            id: format!("x/{pattern}"),
            pattern: pattern.to_owned(),
            kind,
            tenant,
            plan: None,
            confidence: Confidence::High,
            note: None,
        }
    }

    #[track_caller]
    fn check(a: (DomainKind, &str, bool), b: (DomainKind, &str, bool), expect: bool) {
        let a = rule(a.0, a.1, a.2);
        let b = rule(b.0, b.1, b.2);
        let forward = Shape::of(&a).intersects(&Shape::of(&b));
        let backward = Shape::of(&b).intersects(&Shape::of(&a));
        assert_eq!(
            (forward, backward),
            (expect, expect),
            "{} vs {}",
            a.pattern,
            b.pattern
        );
    }

    #[test]
    fn shapes_intersect_when_some_name_matches_both() {
        use DomainKind::{Exact, Suffix, Wildcard};
        check(
            (Exact, "a.example.com", false),
            (Exact, "a.example.com", false),
            true,
        );
        check(
            (Exact, "a.example.com", false),
            (Exact, "b.example.com", false),
            false,
        );
        check(
            (Suffix, "example.com", false),
            (Exact, "a.example.com", false),
            true,
        );
        check(
            (Suffix, "example.com", false),
            (Exact, "example.com", false),
            true,
        );
        check(
            (Suffix, "example.com", true),
            (Exact, "example.com", false),
            false,
        );
        check(
            (Suffix, "example.com", true),
            (Exact, "a.example.com", false),
            true,
        );
        check(
            (Suffix, "example.com", false),
            (Suffix, "b.example.com", false),
            true,
        );
        check(
            (Suffix, "example.com", false),
            (Suffix, "example.org", false),
            false,
        );
        check(
            (Wildcard, "*.example.com", false),
            (Exact, "a.example.com", false),
            true,
        );
        check(
            (Wildcard, "*.example.com", false),
            (Exact, "a.b.example.com", false),
            false,
        );
        check(
            (Wildcard, "*.example.com", false),
            (Suffix, "a.example.com", false),
            true,
        );
        check(
            (Wildcard, "*.example.com", false),
            (Suffix, "example.com", false),
            true,
        );
        check(
            (Wildcard, "*.example.com", false),
            (Suffix, "a.b.example.com", false),
            false,
        );
        check(
            (Wildcard, "x-*.example.com", false),
            (Wildcard, "*-y.example.com", false),
            true,
        );
        check(
            (Wildcard, "x-*.example.com", false),
            (Wildcard, "z-*.example.com", false),
            false,
        );
        check(
            (Wildcard, "*-a.example.com", false),
            (Wildcard, "*-b.example.com", false),
            false,
        );
        check(
            (Wildcard, "p-*.example.com", false),
            (Exact, "p-.example.com", false),
            false,
        );
        check(
            (Wildcard, "bedrock.*.amazonaws.com", false),
            (Wildcard, "*.eu-west-1.amazonaws.com", false),
            true,
        );
    }

    fn placed<'a>(rule: &'a DomainRule, vendor: &'a str, line: usize) -> Placed<'a> {
        Placed {
            rule,
            product: vendor,
            vendor,
            file: "data/x.toml",
            line,
        }
    }

    #[test]
    fn conflicts_are_between_vendors_or_duplicates() {
        use DomainKind::{Exact, Suffix, Wildcard};
        let rules = [
            rule(Suffix, "example.com", false),
            rule(Exact, "api.example.com", false),
            rule(Wildcard, "*.eu.example.com", false),
            rule(Suffix, "example.com", true),
            rule(Exact, "other.org", false),
        ];
        let list = [
            placed(&rules[0], "acme", 1),
            placed(&rules[1], "acme", 2),
            placed(&rules[2], "globex", 3),
            placed(&rules[3], "acme", 4),
            placed(&rules[4], "globex", 5),
        ];
        let found: Vec<(usize, usize, bool)> = conflicts(&list)
            .iter()
            .map(|c| (c.later.line, c.earlier.line, c.duplicate))
            .collect();
        assert_eq!(found, [(3, 1, false), (4, 1, true), (4, 3, false)]);
    }
}
