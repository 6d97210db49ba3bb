//! Catalog matcher benchmarks (criterion). Targets from the catalog issue: domain lookup
//! < 100 ns median, command-line match < 2 µs, compile < 50 ms. Heap is measured by
//! `benches/memory.rs`. Run: `cargo bench -p shadowai-catalog --bench matcher`; the figures are
//! recorded in docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shadowai_catalog::{Catalog, ProcessFacts};

fn catalog() -> Catalog {
    match Catalog::embedded() {
        Ok(catalog) => catalog,
        Err(error) => panic!("the embedded catalog must load: {error}"),
    }
}

const DOMAINS: [(&str, &str, bool); 10] = [
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

criterion_group!(benches, domain_lookup, domain_match, command_lines, compile);
criterion_main!(benches);
