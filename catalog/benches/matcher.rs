//! Catalog matcher benchmarks (criterion). Targets from the catalog issue: domain lookup
//! < 100 ns median, command-line match < 2 µs, compile < 50 ms. Heap is measured by
//! `benches/memory.rs`. Run: `cargo bench -p shadowai-catalog --bench matcher`; the figures are
//! recorded in docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shadowai_catalog::{Catalog, DomainKind, ProcessFacts};

fn catalog() -> Catalog {
    match Catalog::embedded() {
        Ok(catalog) => catalog,
        Err(error) => panic!("the embedded catalog must load: {error}"),
    }
}

const DOMAINS: [(&str, &str, bool); 13] = [
    ("hit_exact", "api.openai.com", true),
    ("hit_suffix", "ab.chatgpt.com", true),
    ("hit_tenant", "contoso-prod.openai.azure.com", true),
    (
        "hit_wildcard",
        "bedrock-runtime.us-east-1.amazonaws.com",
        true,
    ),
    ("miss", "www.example.org", false),
    ("miss_shared", "mail.google.com", false),
    ("miss_regional", "s3.us-east-1.amazonaws.com", false),
    ("deep_subdomain", "a.b.c.d.e.f.g.h.cdn.chatgpt.com", true),
    ("deep_miss", "a.b.c.d.e.f.g.h.static.example.com", false),
    ("upper_case", "API.Anthropic.COM.", true),
    ("trailing_dot", "api.openai.com.", true),
    // IDNs travel as punycode (A-labels) in DNS and TLS: ASCII, looked up as is.
    ("punycode_miss", "xn--bcher-kva.xn--tckwe.example", false),
    (
        "upper_wildcard",
        "Bedrock-Runtime.US-EAST-1.amazonaws.com",
        true,
    ),
];

/// Unicode names (typed by a person, never on the wire) are converted with UTS #46 first.
const UNICODE_DOMAINS: [(&str, &str, bool); 2] = [
    ("unicode_hit", "ＡＰＩ．ｏｐｅｎａｉ．ｃｏｍ", true),
    ("unicode_miss", "bücher.example", false),
];

/// `lookup_domain`: which product and rule, no explanation (the sensor's question per name).
fn domain_lookup(c: &mut Criterion) {
    let catalog = catalog();
    let mut group = c.benchmark_group("domain_lookup");
    for (case, name, expect_match) in DOMAINS {
        assert_eq!(
            catalog.lookup_domain(name).is_some(),
            expect_match,
            "{name}"
        );
        group.bench_function(case, |b| {
            b.iter(|| catalog.lookup_domain(black_box(name)).is_some())
        });
    }
    group.finish();
}

/// `lookup_domain` for Unicode names: IDNA conversion (allocating), then the lookup.
fn domain_lookup_unicode(c: &mut Criterion) {
    let catalog = catalog();
    let mut group = c.benchmark_group("domain_lookup_unicode");
    for (case, name, expect_match) in UNICODE_DOMAINS {
        assert_eq!(
            catalog.lookup_domain(name).is_some(),
            expect_match,
            "{name}"
        );
        group.bench_function(case, |b| {
            b.iter(|| catalog.lookup_domain(black_box(name)).is_some())
        });
    }
    group.finish();
}

/// The names of `tests/fixtures/not-ai.txt`: popular domains the catalog must not match.
fn popular_non_ai() -> Vec<String> {
    include_str!("../tests/fixtures/not-ai.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Names the catalog matches, derived from its rules: exact names as they are, a host under
/// each suffix, a region in each wildcard.
fn catalog_hits(catalog: &Catalog) -> Vec<String> {
    let mut names = Vec::new();
    for product in catalog.products() {
        for rule in &product.domains {
            names.push(match rule.kind {
                DomainKind::Exact => rule.pattern.clone(),
                DomainKind::Suffix => format!("edge-7.{}", rule.pattern),
                DomainKind::Wildcard => rule.pattern.replace('*', "eu-west-3"),
            });
        }
    }
    names
}

/// Names in a realistic mix for a sensor: 10,000 lookups, 95 % misses (popular non-AI
/// domains, many repeated, as in real traffic) and 5 % hits spread over the catalog's rules,
/// in a fixed pseudo-random order.
fn traffic_mix(catalog: &Catalog) -> Vec<String> {
    const TOTAL: usize = 10_000;
    const HITS: usize = TOTAL / 20;
    let misses = popular_non_ai();
    let hits = catalog_hits(catalog);
    let step = hits.len() / HITS;
    let mut names: Vec<String> = (0..TOTAL - HITS)
        .map(|at| misses[at % misses.len()].clone())
        .chain((0..HITS).map(|at| hits[(at * step.max(1)) % hits.len()].clone()))
        .collect();
    // Fisher-Yates with a fixed LCG: the same order on every run.
    let mut state: u64 = 0x5eed;
    for at in (1..names.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let other = (state >> 33) as usize % (at + 1);
        names.swap(at, other);
    }
    names
}

/// `lookup_domain` over [`traffic_mix`]: criterion's time is per 10,000 lookups.
fn domain_mix(c: &mut Criterion) {
    let catalog = catalog();
    let names = traffic_mix(&catalog);
    let hits = names
        .iter()
        .filter(|name| catalog.lookup_domain(name).is_some())
        .count();
    assert_eq!(hits, names.len() / 20, "the mix must be 5 % hits");
    let mut group = c.benchmark_group("domain_mix");
    group.throughput(Throughput::Elements(names.len() as u64));
    group.bench_function("lookup_10000_names_5pct_hits", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|name| catalog.lookup_domain(black_box(name)).is_some())
                .count()
        })
    });
    group.finish();
}

/// `match_domain`: the same plus the explanation, plan and tenant (allocates on a hit).
fn domain_match(c: &mut Criterion) {
    let catalog = catalog();
    let mut group = c.benchmark_group("domain_match");
    for (case, name, expect_match) in DOMAINS {
        assert_eq!(catalog.match_domain(name).is_some(), expect_match, "{name}");
        group.bench_function(case, |b| {
            b.iter(|| catalog.match_domain(black_box(name)).is_some())
        });
    }
    group.finish();
}

fn command_lines(c: &mut Criterion) {
    let catalog = catalog();
    let mut group = c.benchmark_group("cmdline");
    let cases: [(&str, &str, &str, bool); 5] = [
        (
            "claude_code_npm_risky",
            "node",
            "/usr/bin/node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --dangerously-skip-permissions -p fix",
            true,
        ),
        (
            "ollama_serve",
            "ollama",
            "/usr/local/bin/ollama serve",
            true,
        ),
        (
            "python_module",
            "python3",
            "/usr/bin/python3 -m vllm.entrypoints.openai.api_server --model m --port 8000",
            true,
        ),
        (
            "miss_node_server",
            "node",
            "/usr/bin/node /srv/app/server.js --port 3000 --env production",
            false,
        ),
        (
            "miss_long_java",
            "java",
            "/usr/lib/jvm/java-21/bin/java -Xmx4g -cp /opt/app/lib/a.jar:/opt/app/lib/b.jar:/opt/app/lib/c.jar com.example.Main --config /etc/app/app.yaml --verbose",
            false,
        ),
    ];
    for (case, name, command, expect_match) in cases {
        let args: Vec<String> = command.split(' ').map(str::to_owned).collect();
        let exe = args[0].clone();
        let facts = ProcessFacts {
            name,
            exe: &exe,
            args: &args,
        };
        assert_eq!(
            catalog.match_process(&facts).is_some(),
            expect_match,
            "{command}"
        );
        group.bench_function(case, |b| {
            b.iter(|| catalog.match_process(black_box(&facts)).is_some())
        });
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let bundle = catalog().bundle().to_vec();
    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    group.bench_function("embedded", |b| b.iter(|| catalog().products().len()));
    group.bench_function("from_bundle", |b| {
        b.iter(|| match Catalog::from_bundle(black_box(&bundle)) {
            Ok(catalog) => catalog.products().len(),
            Err(error) => panic!("{error}"),
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    domain_lookup,
    domain_lookup_unicode,
    domain_mix,
    domain_match,
    command_lines,
    compile
);
criterion_main!(benches);
