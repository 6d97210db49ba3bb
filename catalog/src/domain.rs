//! Domain rules: pattern checks, name normalisation and the lookup trie.
//!
//! Patterns are stored in a trie keyed by labels from the right (`com` → `openai` → `api`), so a
//! lookup walks at most as many nodes as the name has labels: its cost does not grow with the
//! number of rules. A `*` label matches exactly one label. The most specific rule wins: the one
//! that consumed the most labels, then exact over suffix, then literal labels over `*`.

use std::borrow::Cow;
use std::collections::HashMap;

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
    "gemini.com",
];

/// Longest DNS name, in bytes, without the trailing dot.
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;
/// Longest plan or tenant text.
const MAX_PLAN: usize = 64;

/// Normalises a name as seen on the wire: strips one trailing dot and lowercases ASCII.
/// Returns `None` for anything that is not a plausible DNS name (empty labels, over-long names or
/// labels, characters outside `a-z 0-9 - _`). IDNs are expected in their `xn--` form and are
/// kept as they are; raw Unicode names are refused.
pub fn normalize_domain(name: &str) -> Option<Cow<'_, str>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    let mut has_upper = false;
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return None;
        }
        for byte in label.bytes() {
            match byte {
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
                b'A'..=b'Z' => has_upper = true,
                _ => return None,
            }
        }
    }
    Some(if has_upper {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

/// Checks a catalog pattern: lowercase labels of `a-z 0-9 -` (1 to 63 bytes, no leading or
/// trailing `-`), at most one `*` label, the last two labels literal, not shared infrastructure.
pub(crate) fn check_pattern(pattern: &str) -> Result<(), String> {
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
    let mut wildcards = 0;
    for label in &labels {
        if *label == "*" {
            wildcards += 1;
            continue;
        }
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(format!("label `{label}` must be 1 to {MAX_LABEL} bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "label `{label}` may only use a-z, 0-9 and `-` (write IDNs as xn--, lowercase)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` must not start or end with `-`"));
        }
    }
    if wildcards > 1 {
        return Err("at most one `*` label".into());
    }
    if labels[labels.len() - 2..].contains(&"*") {
        return Err("the last two labels must be literal".into());
    }
    let literal_part = labels
        .iter()
        .skip_while(|label| **label == "*")
        .copied()
        .collect::<Vec<_>>();
    let literal_part = literal_part.join(".");
    if SHARED_INFRASTRUCTURE.contains(&literal_part.as_str()) {
        return Err(format!(
            "`{literal_part}` is shared infrastructure or a look-alike; list only its AI-specific hostnames"
        ));
    }
    Ok(())
}

/// Checks a plan text: short, printable, and `{*}` only where the pattern has a `*`.
pub(crate) fn check_plan(pattern: &str, plan: &str) -> Result<(), String> {
    if plan.is_empty() || plan.len() > MAX_PLAN || plan.chars().any(char::is_control) {
        return Err(format!("plan must be 1 to {MAX_PLAN} printable bytes"));
    }
    let without_placeholder = plan.replace("{*}", "");
    if without_placeholder.contains(['{', '}']) {
        return Err("plan may only contain the placeholder `{*}`".into());
    }
    if plan.contains("{*}") && !pattern.split('.').any(|label| label == "*") {
        return Err("plan uses `{*}` but the pattern has no `*` label".into());
    }
    Ok(())
}

/// Where a domain rule lives: index of the product, index of the rule within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleRef {
    pub(crate) product: u32,
    pub(crate) rule: u32,
}

/// The result of a lookup: the rule and the label its `*` matched, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'n> {
    pub(crate) rule: RuleRef,
    pub(crate) wildcard: Option<&'n str>,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, u32>,
    wildcard: Option<u32>,
    exact: Option<RuleRef>,
    suffix: Option<RuleRef>,
}

/// Reversed-label trie over every domain rule of a catalog.
#[derive(Debug)]
pub(crate) struct DomainIndex {
    nodes: Vec<Node>,
}

/// Rank of a candidate: labels consumed, exact over suffix, literal labels.
type Rank = (usize, bool, usize);

impl DomainIndex {
    /// Builds the trie. Patterns must have passed [`check_pattern`]; duplicates were refused by
    /// validation, so each node holds at most one exact and one suffix rule.
    pub(crate) fn build<'p>(
        rules: impl Iterator<Item = (RuleRef, &'p str, crate::model::DomainKind)>,
    ) -> DomainIndex {
        let mut index = DomainIndex {
            nodes: vec![Node::default()],
        };
        for (rule, pattern, kind) in rules {
            let mut node = 0usize;
            for label in pattern.rsplit('.') {
                node = index.child(node, label);
            }
            let slot = match kind {
                crate::model::DomainKind::Exact => &mut index.nodes[node].exact,
                crate::model::DomainKind::Suffix => &mut index.nodes[node].suffix,
            };
            slot.get_or_insert(rule);
        }
        index
    }

    fn child(&mut self, node: usize, label: &str) -> usize {
        let existing = if label == "*" {
            self.nodes[node].wildcard
        } else {
            self.nodes[node].children.get(label).copied()
        };
        if let Some(existing) = existing {
            return existing as usize;
        }
        let created = self.nodes.len();
        self.nodes.push(Node::default());
        // The trie has at most one node per pattern label, far below u32::MAX.
        let created_id = u32::try_from(created).unwrap_or(u32::MAX);
        if label == "*" {
            self.nodes[node].wildcard = Some(created_id);
        } else {
            self.nodes[node].children.insert(label.into(), created_id);
        }
        created
    }

    /// Finds the most specific rule for a normalised name.
    pub(crate) fn lookup<'n>(&self, name: &'n str) -> Option<Hit<'n>> {
        let labels: Vec<&'n str> = name.rsplit('.').collect();
        let mut best: Option<(Rank, Hit<'n>)> = None;
        let mut consider = |rank: Rank, hit: Hit<'n>| {
            if best.as_ref().is_none_or(|(best_rank, _)| rank > *best_rank) {
                best = Some((rank, hit));
            }
        };
        // (node, labels consumed, literal labels, label matched by `*`)
        let mut stack: Vec<(usize, usize, usize, Option<&'n str>)> = vec![(0, 0, 0, None)];
        while let Some((node_id, depth, literals, wildcard)) = stack.pop() {
            let node = &self.nodes[node_id];
            if let Some(rule) = node.suffix {
                consider((depth, false, literals), Hit { rule, wildcard });
            }
            if depth == labels.len() {
                if let Some(rule) = node.exact {
                    consider((depth, true, literals), Hit { rule, wildcard });
                }
                continue;
            }
            let label = labels[depth];
            if let Some(child) = node.children.get(label) {
                stack.push((*child as usize, depth + 1, literals + 1, wildcard));
            }
            if let Some(child) = node.wildcard {
                stack.push((
                    child as usize,
                    depth + 1,
                    literals,
                    wildcard.or(Some(label)),
                ));
            }
        }
        best.map(|(_, hit)| hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_lowercases_and_strips_one_trailing_dot() {
        assert_eq!(
            normalize_domain("API.OpenAI.com.").as_deref(),
            Some("api.openai.com")
        );
        assert_eq!(
            normalize_domain("chatgpt.com").as_deref(),
            Some("chatgpt.com")
        );
        assert!(matches!(
            normalize_domain("chatgpt.com"),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(
            normalize_domain("xn--bcher-kva.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
    }

    #[test]
    fn normalisation_refuses_what_is_not_a_dns_name() {
        for hostile in [
            "",
            ".",
            "a..b",
            ".a.b",
            "chatgpt.com..",
            "bücher.example",
            "a b.com",
            "a*.com",
            "<script>.com",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(130)),
        ] {
            assert_eq!(normalize_domain(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("chatgpt.com").is_ok());
        assert!(check_pattern("*.openai.azure.com").is_ok());
        assert!(check_pattern("bedrock-runtime.*.amazonaws.com").is_ok());
        assert!(check_pattern("xn--bcher-kva.example").is_ok());
        for bad in [
            "com",
            "ChatGPT.com",
            "chatgpt.com.",
            "*.com",
            "a.*.com",
            "*.*.example.com",
            "-a.example.com",
            "a_b.example.com",
            "github.com",
            "*.amazonaws.com",
            "gemini.com",
            "blob.core.windows.net",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_are_checked() {
        assert!(check_plan("business.githubcopilot.com", "business").is_ok());
        assert!(check_plan("*.openai.azure.com", "{*}").is_ok());
        assert!(check_plan("chatgpt.com", "{*}").is_err());
        assert!(check_plan("*.openai.azure.com", "{x}").is_err());
        assert!(check_plan("chatgpt.com", "").is_err());
    }
}
