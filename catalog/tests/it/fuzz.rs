//! Fuzz-style properties over random and garbage names: nothing panics, and the answers obey
//! the normalisation rules. A fixed-seed generator keeps failures reproducible.

use shadowai_catalog::{MAX_NAME, ProcessFacts, normalize_domain};

use crate::catalog;

/// xorshift64*: small, deterministic, good enough to spread inputs.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    ".",
    "..",
    "-",
    "_",
    "*",
    "a",
    "z",
    "0",
    "9",
    "xn--",
    "com",
    "ai",
    "openai",
    "chatgpt",
    "azure",
    "googleapis",
    "githubcopilot",
    "amazonaws",
    "ü",
    "。",
    "\u{0}",
    " ",
    "\u{202e}",
    "%",
    "/",
    "\\",
    "<",
    "A",
    "Ω",
    "😀",
    "\u{ff0e}",
];

fn random_name(random: &mut Random, patterns: &[String]) -> String {
    let mut name = String::new();
    if random.below(3) == 0 && !patterns.is_empty() {
        // Mutate a real pattern: the interesting inputs are near real rules.
        name = patterns[random.below(patterns.len())].clone();
        for _ in 0..random.below(4) {
            let piece = PIECES[random.below(PIECES.len())];
            match random.below(3) {
                0 => name.insert_str(0, piece),
                1 => name.push_str(piece),
                _ => {
                    let at = random.below(name.len() + 1);
                    if name.is_char_boundary(at) {
                        name.insert_str(at, piece);
                    }
                }
            }
        }
    } else {
        for _ in 0..random.below(40) {
            name.push_str(PIECES[random.below(PIECES.len())]);
        }
    }
    if random.below(50) == 0 {
        name = name.repeat(random.below(40) + 1);
    }
    name
}

#[test]
fn random_names_never_panic_and_respect_normalisation() {
    let catalog = catalog();
    let patterns: Vec<String> = catalog
        .products()
        .iter()
        .flat_map(|product| product.domains.iter().map(|rule| rule.pattern.clone()))
        .collect();
    let mut random = Random(0x5ad0_a1c0_ffee_1234);
    let mut matched = 0;
    for _ in 0..20_000 {
        let name = random_name(&mut random, &patterns);
        let found = catalog.match_domain(&name);
        let normalized = normalize_domain(&name);
        match normalized.as_deref() {
            Some(normalized) => {
                assert!(normalized.len() <= MAX_NAME, "{name:?}");
                // The fast path (raw name, checked while read) and the normalised name agree.
                assert_eq!(
                    catalog.match_domain(normalized).map(|m| m.rule),
                    found.as_ref().map(|m| m.rule),
                    "{name:?}"
                );
                if found.is_some() {
                    matched += 1;
                }
            }
            None => assert!(found.is_none(), "{name:?} matched but does not normalise"),
        }
        // Program names and command lines built from the same garbage never panic either.
        let args: Vec<String> = name.split(' ').map(str::to_owned).collect();
        let _ = catalog.match_process(&ProcessFacts {
            name: &name,
            exe: &name,
            args: &args,
        });
        let _ = catalog.extension(&name);
    }
    assert!(
        matched > 100,
        "the generator should also produce matching names ({matched})"
    );
}

#[test]
fn names_over_the_dns_limit_never_match() {
    let catalog = catalog();
    let pattern = "chatgpt.com";
    assert!(catalog.match_domain(pattern).is_some());
    for extra in [MAX_NAME - pattern.len(), MAX_NAME, 4 * MAX_NAME, 1 << 20] {
        let labels = "a.".repeat(extra.div_ceil(2));
        let long = format!("{labels}{pattern}");
        let expect = long.len() <= MAX_NAME;
        assert_eq!(
            catalog.match_domain(&long).is_some(),
            expect,
            "{} bytes",
            long.len()
        );
    }
    let unicode = format!("{}.chatgpt.com", "ü".repeat(1 << 16));
    assert!(catalog.match_domain(&unicode).is_none());
}
