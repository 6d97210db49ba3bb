//! Heap held by a compiled catalog, measured with a counting global allocator (the `unsafe` is
//! inside `stats_alloc`; this crate forbids its own). Target from the catalog issue: < 8 MB.
//! Run: `cargo bench -p shadowai-catalog --bench memory`; exits 1 when over the target.

use std::alloc::System;
use std::process::ExitCode;

use shadowai_catalog::Catalog;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const LIMIT_BYTES: usize = 8 * 1024 * 1024;

fn main() -> ExitCode {
    let region = Region::new(GLOBAL);
    let catalog = match Catalog::embedded() {
        Ok(catalog) => catalog,
        Err(error) => {
            eprintln!("the embedded catalog must load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let change = region.change();
    let retained = change
        .bytes_allocated
        .saturating_sub(change.bytes_deallocated);
    // Lookups allocate nothing on the hot path: check that too.
    let lookups = Region::new(GLOBAL);
    let mut hits = 0;
    let names = [
        "api.openai.com",
        "ab.chatgpt.com",
        "www.example.org",
        "a.b.c.d.chatgpt.com",
        // Any case and a trailing dot are handled in place, without a lowercased copy.
        "API.Anthropic.COM.",
        "Bedrock-Runtime.us-east-1.amazonaws.com",
    ];
    for name in names {
        hits += usize::from(catalog.lookup_domain(name).is_some());
    }
    let lookup_allocations = lookups.change().allocations;
    let stats = catalog.stats();
    let bundle = catalog.bundle().len();
    println!(
        "catalog {}: {} products, {} domain rules, {} process signatures",
        catalog.version(),
        stats.products,
        stats.domain_rules,
        stats.process_signatures
    );
    println!(
        "heap retained by the compiled catalog: {retained} bytes ({:.2} MiB), of which the bundle {bundle} bytes",
        retained as f64 / (1024.0 * 1024.0)
    );
    println!(
        "allocated while compiling: {} bytes in {} allocations",
        change.bytes_allocated, change.allocations
    );
    println!(
        "allocations for {} lookup_domain calls, two not lowercase ({hits} hits): {lookup_allocations}",
        names.len()
    );
    if retained > LIMIT_BYTES {
        eprintln!("over the {LIMIT_BYTES} byte target");
        return ExitCode::FAILURE;
    }
    if lookup_allocations > 0 {
        eprintln!("lookup_domain allocated on the hot path");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
