//! Inventory rescan of a home with 50,000 files (500 project-like directories of 100 files, a
//! few of them git projects) plus the `tests/fixtures/home` config files.
//!
//! `cargo bench -p shadowai-agent --bench host_inventory`

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use shadowai_agent::host::inventory;
use shadowai_catalog::Catalog;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixtures").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::embedded().expect("catalog");
    let root = tempfile::tempdir().expect("tempdir");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/home"),
        root.path(),
    );
    let work = root.path().join("home/alice/work");
    for d in 0..500 {
        let dir = work.join(format!("d{}/p{d}", d % 20));
        std::fs::create_dir_all(&dir).expect("mkdir");
        if d % 25 == 0 {
            std::fs::create_dir_all(dir.join(".git")).expect("mkdir .git");
        }
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}.txt")), b"x").expect("write");
        }
    }
    let found = inventory::scan(&catalog, root.path(), 0);
    eprintln!(
        "{} detections, {} files read, {} problems",
        found.detections.len(),
        found.files_read,
        found.problems.len()
    );
    c.bench_function("inventory_rescan_50k_files", |b| {
        b.iter(|| inventory::scan(&catalog, root.path(), 0))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
