use super::*;

fn observation(id: &str) -> v1::Observation {
    v1::Observation {
        id: id.into(),
        kind: Some(v1::observation::Kind::Dns(v1::DnsObservation {
            qname: format!("{id}.api.openai.com"),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn ids(observations: &[v1::Observation]) -> Vec<String> {
    observations.iter().map(|o| o.id.clone()).collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("o{i:05}")).collect()
}

fn segments(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

fn both(test: impl Fn(Spool)) {
    test(Spool::in_memory(DEFAULT_MAX_BYTES));
    let dir = tempfile::tempdir().unwrap();
    test(Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap().0);
}

#[test]
fn lease_commit_release_keep_order_and_lose_nothing() {
    both(|mut spool| {
        for id in ["a", "b", "c"] {
            spool.enqueue(observation(id), 0);
        }
        let batch = spool.lease(2);
        assert_eq!(ids(&batch), ["a", "b"]);
        assert!(spool.lease(2).is_empty(), "one lease at a time");
        spool.release();
        assert_eq!(ids(&spool.lease(10)), ["a", "b", "c"]);
        // partial acknowledgement: b is resent first
        spool.commit(&["a".into(), "c".into()]);
        assert_eq!(ids(&spool.lease(10)), ["b"]);
        spool.commit(&["b".into()]);
        assert_eq!(spool.depth(), 0);
        assert!(spool.dropped().is_empty());
    });
}

#[test]
fn leased_and_unacknowledged_observations_survive_a_crash_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(recovery, Recovery::default());
        for id in names(0..100) {
            spool.enqueue(observation(&id), 1_000);
        }
        let batch = spool.lease(10);
        // the collector committed five of them; then the agent is killed (no flush, no drop
        // logic runs beyond what a killed process would have written)
        let acked: Vec<String> = ids(&batch).into_iter().step_by(2).collect();
        spool.commit(&acked);
        let _in_flight = spool.lease(20);
        std::mem::forget(spool);
    }
    let (mut spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(recovery.recovered, 95);
    assert!(recovery.problems.is_empty(), "{:?}", recovery.problems);
    let all = ids(&spool.lease(1000));
    let expected: Vec<String> = names(0..100)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i >= 10 || i % 2 == 1)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(all, expected);
    assert_eq!(spool.oldest_age_ms(4_000), 3_000, "enqueue time survives");
    spool.commit(&all);
    assert_eq!(spool.depth(), 0);
    drop(spool);
    let (spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!((spool.depth(), recovery.recovered), (0, 0));
}

#[test]
fn a_full_spool_drops_the_oldest_counts_them_and_stays_bounded_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let max = 4 * MIN_SEGMENT;
    let (mut spool, _) = Spool::open(dir.path(), max).unwrap();
    let total = 20_000;
    for id in names(0..total) {
        spool.enqueue(observation(&id), 0);
    }
    let on_disk: u64 = segments(dir.path())
        .iter()
        .filter(|name| name.starts_with("seg-"))
        .map(|name| fs::metadata(dir.path().join(name)).unwrap().len())
        .sum();
    assert!(on_disk <= max, "{on_disk} bytes on disk, bound {max}");
    assert_eq!(on_disk, spool.bytes());
    let dropped: u64 = spool.dropped().iter().map(|d| d.count).sum();
    let kept = spool.lease(usize::MAX);
    assert_eq!(
        dropped as usize + kept.len(),
        total,
        "each one kept or counted"
    );
    assert!(dropped > 0);
    // the newest are the ones kept, in order
    assert_eq!(kept.last().unwrap().id, format!("o{:05}", total - 1));
    let first_kept: usize = kept[0].id[1..].parse().unwrap();
    assert_eq!(first_kept, dropped as usize);
}

#[test]
fn drained_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), 4 * MIN_SEGMENT).unwrap();
    for round in 0..20 {
        for id in names(round * 500..(round + 1) * 500) {
            spool.enqueue(observation(&id), 0);
        }
        let batch = spool.lease(usize::MAX);
        spool.commit(&ids(&batch));
    }
    assert_eq!(spool.depth(), 0);
    assert!(spool.dropped().is_empty());
    assert!(
        segments(dir.path()).len() <= 2,
        "{:?}",
        segments(dir.path())
    );
    assert!(spool.bytes() <= 2 * MIN_SEGMENT);
}

#[test]
fn a_truncated_tail_is_cut_reported_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        for id in names(0..10) {
            spool.enqueue(observation(&id), 0);
        }
    }
    let file = dir.path().join(&segments(dir.path())[0]);
    let len = fs::metadata(&file).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (mut spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(recovery.recovered, 9);
    assert_eq!(recovery.problems.len(), 1, "{:?}", recovery.problems);
    assert!(recovery.problems[0].contains("truncated"));
    let dropped = spool.dropped();
    assert_eq!(dropped[0].reason, DROP_SPOOL_CORRUPT);
    // it keeps working: appends after the cut are read back
    spool.enqueue(observation("new"), 0);
    let all = ids(&spool.lease(100));
    assert_eq!(all.len(), 10);
    assert_eq!(all.last().unwrap(), "new");
    spool.commit(&all);
    drop(spool);
    let (spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!((spool.depth(), recovery.problems.len()), (0, 0));
}

#[test]
fn flipped_bytes_never_wedge_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        for id in names(0..50) {
            spool.enqueue(observation(&id), 0);
        }
    }
    let file = dir.path().join(&segments(dir.path())[0]);
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let (mut spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(recovery.recovered > 0 && recovery.recovered < 50);
    assert_eq!(recovery.problems.len(), 1);
    let kept = spool.lease(100);
    assert_eq!(ids(&kept), names(0..recovery.recovered));
}

#[test]
fn files_that_are_not_spool_segments_are_set_aside_not_read() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(segment_path(Path::new(""), 7)),
        b"\x00garbage",
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), b"left alone").unwrap();
    let (mut spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(recovery.problems.len(), 1);
    assert!(
        segments(dir.path())
            .iter()
            .any(|f| f.ends_with(".unreadable"))
    );
    assert!(segments(dir.path()).contains(&"notes.txt".to_owned()));
    spool.enqueue(observation("a"), 0);
    assert_eq!(ids(&spool.lease(1)), ["a"]);
}

#[test]
fn random_segment_contents_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..200 {
        for entry in fs::read_dir(dir.path()).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let mut bytes = Vec::from(&MAGIC[..]);
        bytes.push(FORMAT_VERSION);
        for _ in 0..(round * 7) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        // now and then a plausible record head, to reach the body parser
        if round % 3 == 0 && bytes.len() > 20 {
            let len = (bytes.len() - 16) as u32;
            bytes[8..12].copy_from_slice(&len.to_le_bytes());
            let crc = crc32fast::hash(&bytes[16..]);
            bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        }
        fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
        let (mut spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let _ = spool.lease(10);
    }
}

#[test]
fn drops_by_the_transport_are_counted_per_reason_and_kind() {
    both(|mut spool| {
        spool.enqueue(observation("a"), 0);
        let _ = spool.lease(1);
        spool.drop_leased("rejected_by_collector");
        let dropped = spool.dropped();
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            (
                dropped[0].reason.as_str(),
                dropped[0].kind.as_str(),
                dropped[0].count
            ),
            ("rejected_by_collector", "dns", 1)
        );
        assert_eq!(spool.depth(), 0);
    });
}

#[test]
fn dropped_counts_survive_a_restart_until_a_heartbeat_acknowledges_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        spool.enqueue(observation("a"), 0);
        spool.enqueue(observation("b"), 0);
        let _ = spool.lease(2);
        spool.drop_leased("rejected_by_collector");
        // A crash: no heartbeat carried the counts.
    }
    let (mut spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(recovery.problems.is_empty(), "{:?}", recovery.problems);
    let sent = spool.dropped();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].reason.as_str(),
            sent[0].kind.as_str(),
            sent[0].count
        ),
        ("rejected_by_collector", "dns", 2)
    );
    // Counted while the heartbeat was in flight: kept for the next one.
    spool.count_drop("rejected_by_collector", "dns");
    spool.forget_dropped(&sent);
    assert_eq!(spool.dropped()[0].count, 1);
    drop(spool);
    let (mut spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let left = spool.dropped();
    assert_eq!(left[0].count, 1);
    spool.forget_dropped(&left);
    drop(spool);
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(spool.dropped().is_empty());
}

#[test]
fn a_damaged_dropped_file_is_reported_and_does_not_stop_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path()).unwrap();
    fs::write(dir.path().join("dropped.json"), b"[{\"reason\": 1").unwrap();
    let (mut spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(recovery.problems.len(), 1, "{:?}", recovery.problems);
    assert!(recovery.problems[0].contains("dropped.json: damaged"));
    spool.enqueue(observation("a"), 0);
    assert_eq!(ids(&spool.lease(1)), ["a"]);
}
