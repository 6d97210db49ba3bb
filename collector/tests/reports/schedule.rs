//! Scheduled reports with several collectors on one database: each slot runs once.

use shadowai_collector::report::schedule::{ReportsFile, run_claimed};
use shadowai_collector::store::Store;

use crate::backend_tests;
use crate::harness::{DAY, NOW, TestDb, seed_fleet};

backend_tests!(each_slot_runs_once_across_collectors_sharing_a_database);

async fn each_slot_runs_once_across_collectors_sharing_a_database(db: &TestDb) {
    seed_fleet(&db.store).await;
    // a second collector: its own Store (own pool) on the same database
    let other = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file: ReportsFile = toml::from_str(&format!(
        "[[schedule]]\nname = \"daily\"\ncron = \"0 0 7 * * *\"\nformats = [\"json\"]\noutput_dir = \"{}\"\n",
        dir.path().join("reports").display()
    ))
    .unwrap();
    let schedule = file.validate().unwrap().pop().unwrap();
    for slot in [NOW, NOW + DAY] {
        // both collectors wake up for the same slot at the same time
        let (first, second) = tokio::join!(
            run_claimed(&db.store, &schedule, dir.path(), slot, "collector-a"),
            run_claimed(&other, &schedule, dir.path(), slot, "collector-b"),
        );
        assert!(
            first.is_some() != second.is_some(),
            "slot {slot}: ran {} times",
            usize::from(first.is_some()) + usize::from(second.is_some())
        );
        let run = first.or(second).unwrap();
        assert_eq!((run.outcome.as_str(), run.until_ms), ("ok", slot));
    }
    // a slot already run is not run again, by either
    assert!(
        run_claimed(&other, &schedule, dir.path(), NOW, "collector-c")
            .await
            .is_none()
    );
    let runs = db.store.list_report_runs(10).await.unwrap();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    other.close().await;
}
