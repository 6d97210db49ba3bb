use super::*;

const MB: u64 = 1024 * 1024;

fn config() -> BudgetConfig {
    BudgetConfig::default()
}

/// A controller that took its first sample at `start_ms` (as the shell does at start).
fn fresh(config: BudgetConfig, start_ms: i64) -> (Controller, (i64, u64)) {
    let mut controller = Controller::new(config);
    let first = Usage {
        cpu_ms: 0,
        rss_bytes: MB,
    };
    assert_eq!(controller.handle_sample(start_ms, first), None);
    (controller, (start_ms, 0))
}

/// Feeds samples every 5 s for `seconds`, using `cpu_percent` of a core and `rss_mb`; returns
/// every level change with its time.
fn run(
    controller: &mut Controller,
    clock: &mut (i64, u64),
    seconds: i64,
    cpu_percent: f64,
    rss_mb: u64,
) -> Vec<(i64, Level)> {
    let mut changes = Vec::new();
    for _ in 0..seconds / 5 {
        clock.0 += 5_000;
        clock.1 += (5_000.0 * cpu_percent / 100.0) as u64;
        let usage = Usage {
            cpu_ms: clock.1,
            rss_bytes: rss_mb * MB,
        };
        if let Some(level) = controller.handle_sample(clock.0, usage) {
            changes.push((clock.0, level));
        }
    }
    changes
}

#[test]
fn nothing_is_judged_before_a_full_window() {
    let (mut controller, mut clock) = fresh(config(), 1_000_000);
    // 100 % of a core for 55 s: far over, but the first minute is not complete yet.
    assert!(run(&mut controller, &mut clock, 55, 100.0, 10).is_empty());
    assert_eq!(controller.report().cpu_percent, None);
    assert_eq!(
        run(&mut controller, &mut clock, 5, 100.0, 10),
        [(1_060_000, Level::Reduced)]
    );
}

#[test]
fn over_budget_steps_down_once_per_window_and_stops_at_minimal() {
    let (mut controller, mut clock) = fresh(config(), 0);
    let changes = run(&mut controller, &mut clock, 600, 5.0, 10);
    assert_eq!(
        changes,
        [(60_000, Level::Reduced), (120_000, Level::Minimal)],
        "one step per full window, never below minimal"
    );
    let report = controller.report();
    assert!(report.degraded);
    assert_eq!(report.reason, "cpu over budget");
    assert_eq!(report.cpu_percent, Some(5.0));
}

#[test]
fn within_budget_stays_normal() {
    let (mut controller, mut clock) = fresh(config(), 0);
    assert!(run(&mut controller, &mut clock, 3600, 1.9, 49).is_empty());
    assert_eq!(controller.level(), Level::Normal);
    assert_eq!(controller.report().cpu_percent, Some(1.9));
}

#[test]
fn memory_over_budget_degrades_even_when_cpu_is_idle() {
    let (mut controller, mut clock) = fresh(config(), 0);
    let changes = run(&mut controller, &mut clock, 60, 0.0, 51);
    assert_eq!(changes, [(60_000, Level::Reduced)]);
    assert_eq!(controller.report().reason, "memory over budget");
}

#[test]
fn recovery_needs_a_calm_window_and_the_hysteresis_band_holds_the_level() {
    let (mut controller, mut clock) = fresh(config(), 0);
    run(&mut controller, &mut clock, 120, 10.0, 10);
    assert_eq!(controller.level(), Level::Minimal);
    // 1.5 %: under the 2 % budget but above half of it: no flapping back.
    assert!(run(&mut controller, &mut clock, 600, 1.5, 10).is_empty());
    assert_eq!(controller.level(), Level::Minimal);
    // 45 MiB RSS is under 50 MiB but above 80 % of it: still held.
    assert!(run(&mut controller, &mut clock, 600, 0.2, 45).is_empty());
    // Calm (the last full window already was): one level at once, the next a window later.
    let start = clock.0;
    let changes = run(&mut controller, &mut clock, 300, 0.2, 10);
    assert_eq!(
        changes,
        [
            (start + 5_000, Level::Reduced),
            (start + 65_000, Level::Normal)
        ]
    );
    assert!(!controller.report().degraded);
    assert_eq!(controller.report().reason, "load back inside the budget");
}

#[test]
fn a_short_spike_inside_a_window_is_averaged_away() {
    let (mut controller, mut clock) = fresh(config(), 0);
    run(&mut controller, &mut clock, 60, 0.5, 10);
    // 10 s at 8 % then 50 s at 0.5 %: (0.8 + 0.25) s of CPU over 60 s = 1.75 %.
    let mut changes = run(&mut controller, &mut clock, 10, 8.0, 10);
    changes.extend(run(&mut controller, &mut clock, 50, 0.5, 10));
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn disabled_budget_measures_but_never_degrades() {
    let (mut controller, mut clock) = fresh(
        BudgetConfig {
            enabled: false,
            ..config()
        },
        0,
    );
    assert!(run(&mut controller, &mut clock, 600, 50.0, 500).is_empty());
    let report = controller.report();
    assert!(!report.degraded && !report.enabled);
    assert_eq!(report.cpu_percent, Some(50.0));
}

#[test]
fn clock_steps_and_counter_resets_restart_the_window() {
    let mut controller = Controller::new(config());
    let usage = |cpu_ms| Usage {
        cpu_ms,
        rss_bytes: MB,
    };
    assert_eq!(controller.handle_sample(100_000, usage(0)), None);
    // The clock jumps back: the window restarts instead of dividing by a negative span.
    assert_eq!(controller.handle_sample(50_000, usage(10)), None);
    assert_eq!(controller.handle_sample(80_000, usage(5)), None);
    assert_eq!(controller.handle_sample(139_000, usage(6)), None);
    assert_eq!(controller.handle_sample(140_000, usage(7)), None);
    assert_eq!(controller.report().cpu_percent, Some(0.0));
}

#[test]
fn levels_say_what_they_cost() {
    assert_eq!(Level::Normal.batch_size(500), 500);
    assert_eq!(Level::Reduced.batch_size(500), 125);
    assert_eq!(Level::Minimal.batch_size(500), 31);
    assert_eq!(Level::Minimal.batch_size(3), 1);
    assert_eq!(
        [Level::Normal, Level::Reduced, Level::Minimal].map(Level::scan_factor),
        [1, 4, 16]
    );
    assert_eq!(Level::Minimal.network_sample_every(), 0);
    let throttle = Throttle::default();
    assert_eq!(throttle.level(), Level::Normal);
    throttle.set(Level::Minimal);
    assert_eq!(throttle.level(), Level::Minimal);
}

#[test]
fn proc_files_are_parsed_with_hostile_command_names() {
    let stat =
        "4242 (a) b (c) R 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 200";
    assert_eq!(parse_cpu_ticks(stat), Some(325));
    assert_eq!(parse_cpu_ticks("4242 (x"), None);
    assert_eq!(parse_cpu_ticks("4242 (x) R 1 2"), None);
    let status = "Name:\tshadowai-agent\nVmPeak:\t  9000 kB\nVmRSS:\t   18432 kB\nThreads:\t4\n";
    assert_eq!(parse_vm_rss(status), Some(18432 * 1024));
    assert_eq!(parse_vm_rss("VmRSS: lots"), None);
    #[cfg(target_os = "linux")]
    {
        let usage = measure().expect("/proc/self is readable");
        assert!(usage.rss_bytes > 0);
    }
}
