//! Process scan cost with at least 500 processes running (`sleep` children are started to make
//! up the number and killed at the end).
//!
//! * `full_scan`: a new sensor's first scan (every process read and matched);
//! * `incremental_scan`: steady state with an event source (`exec`s reported), so command
//!   lines are read only for new processes;
//! * `polling_scan`: steady state without events (command lines re-read every scan).
//!
//! `cargo bench -p shadowai-agent --bench host_process`

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use shadowai_agent::process::ProcessSensor;
use shadowai_catalog::Catalog;

const TARGET_PROCESSES: usize = 500;

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn process_count() -> usize {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let catalog = Arc::new(Catalog::embedded().expect("catalog"));
    let missing = TARGET_PROCESSES.saturating_sub(process_count());
    let children = Children(
        (0..missing)
            .filter_map(|_| {
                Command::new("sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect(),
    );
    eprintln!("{} processes running", process_count());

    c.bench_function("full_scan", |b| {
        b.iter_batched(
            || ProcessSensor::new(catalog.clone()),
            |mut sensor| sensor.scan(0),
            BatchSize::PerIteration,
        )
    });
    let mut incremental = ProcessSensor::new(catalog.clone());
    incremental.set_incremental(true);
    incremental.scan(0);
    c.bench_function("incremental_scan", |b| b.iter(|| incremental.scan(0)));
    let mut polling = ProcessSensor::new(catalog.clone());
    polling.scan(0);
    c.bench_function("polling_scan", |b| b.iter(|| polling.scan(0)));
    drop(children);
}

criterion_group!(benches, bench);
criterion_main!(benches);
