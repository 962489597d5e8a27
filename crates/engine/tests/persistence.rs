//! Persistence: reopen, compaction, torn tails, mid-file corruption and kill -9 durability.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use docplane_engine::{DeleteStatement, Engine, EngineOptions, FindQuery, StorageError, UpdateStatement};
use docplane_query::{Filter, NeverInterrupt, Update};

fn all(e: &Engine, db: &str, coll: &str) -> Vec<Document> {
    e.find(db, coll, &FindQuery::new(Filter::match_all()), &NeverInterrupt).unwrap().docs
}

fn ids(e: &Engine, db: &str, coll: &str) -> Vec<i64> {
    all(e, db, coll)
        .iter()
        .map(|d| match d.get("_id").unwrap() {
            Bson::Int32(i) => i64::from(*i),
            Bson::Int64(i) => *i,
            other => panic!("unexpected id {other}"),
        })
        .collect()
}

fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("journal-"))
        .collect();
    v.sort();
    v
}

/// A snapshot of everything observable: collections, their documents and indexes.
fn state(e: &Engine) -> Vec<(String, String, Vec<Document>, Vec<Document>)> {
    let mut out = Vec::new();
    for db in e.list_databases() {
        for c in e.list_collections(&db.name) {
            out.push((
                db.name.clone(),
                c.name.clone(),
                all(e, &db.name, &c.name),
                e.list_indexes(&db.name, &c.name).unwrap(),
            ));
        }
    }
    out
}

fn populate(e: &Engine) {
    let docs: Vec<Document> = (0..50).map(|i| doc! {"_id": i, "a": i % 5, "s": format!("v{i}")}).collect();
    assert_eq!(e.insert("app", "items", docs, true, &NeverInterrupt).n, 50);
    e.create_indexes(
        "app",
        "items",
        &[doc! {"key": {"a": 1}}, doc! {"key": {"s": -1}, "unique": true}],
        &NeverInterrupt,
    )
    .unwrap();
    let st = UpdateStatement {
        filter: Filter::parse(&doc! {"_id": 3}).unwrap(),
        update: Update::parse(&doc! {"_id": 3, "replaced": true}, None).unwrap(),
        upsert: false,
        multi: false,
        hint: None,
        collation: Default::default(),
    };
    e.update("app", "items", &[st], true, &NeverInterrupt);
    e.delete(
        "app",
        "items",
        &[DeleteStatement::new(Filter::parse(&doc! {"_id": {"$gte": 40}}).unwrap(), false)],
        true,
        &NeverInterrupt,
    );
    e.create_collection("app", "tmp", doc! {"capped": false}).unwrap();
    e.insert("app", "tmp", vec![doc! {"_id": "k"}], true, &NeverInterrupt);
    e.rename_collection(("app", "tmp"), ("other", "moved"), false).unwrap();
    e.create_collection("gone", "x", doc! {}).unwrap();
    e.drop_database("gone").unwrap();
    e.create_collection("app", "dropme", doc! {}).unwrap();
    e.drop_collection("app", "dropme").unwrap();
    e.drop_indexes("app", "items", &Bson::String("a_1".into())).unwrap();
}

#[test]
fn state_survives_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        populate(&e);
        state(&e)
    };
    assert_eq!(before.len(), 2);
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(state(&e), before);
    // unique index still enforced after replay
    let out = e.insert("app", "items", vec![doc! {"_id": 1000, "s": "v1"}], true, &NeverInterrupt);
    assert_eq!(out.write_errors[0].code, 11000);
    let uuid_before = e.list_collections("app")[0].uuid;

    e.compact().unwrap();
    e.insert("app", "items", vec![doc! {"_id": 2000}], true, &NeverInterrupt);
    let after_compact = state(&e);
    drop(e);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(files.iter().any(|f| f.starts_with("snapshot-")), "{files:?}");
    assert_eq!(journal_files(dir.path()).len(), 1, "old journal removed: {files:?}");
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(state(&e), after_compact);
    assert_eq!(e.list_collections("app")[0].uuid, uuid_before);
}

#[test]
fn torn_tail_is_truncated_and_complete_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        for i in 0..100 {
            assert_eq!(
                e.insert("db", "c", vec![doc! {"_id": i, "pad": "x".repeat(30)}], true, &NeverInterrupt).n,
                1
            );
        }
    }
    let j = journal_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&j).unwrap().len();
    // Cut the last record in half.
    std::fs::OpenOptions::new().write(true).open(&j).unwrap().set_len(len - 20).unwrap();
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(ids(&e, "db", "c"), (0..99).collect::<Vec<_>>());
    // New writes after the truncation replay cleanly.
    e.insert("db", "c", vec![doc! {"_id": 500}], true, &NeverInterrupt);
    drop(e);
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let got = ids(&e, "db", "c");
    assert_eq!(got.len(), 100);
    assert_eq!(*got.last().unwrap(), 500);
}

#[test]
fn corruption_in_the_middle_fails_open_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        for i in 0..20 {
            e.insert("db", "c", vec![doc! {"_id": i, "pad": "y".repeat(40)}], true, &NeverInterrupt);
        }
    }
    let j = journal_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&j).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&j, &bytes).unwrap();
    match Engine::try_open(dir.path(), EngineOptions::default()) {
        Err(StorageError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, j);
            assert!(offset > 0 && offset <= mid as u64, "offset {offset}");
        }
        other => panic!("expected corruption error, got {other:?}"),
    }
    let msg = Engine::open(dir.path(), EngineOptions::default()).unwrap_err().message;
    assert!(msg.contains("journal-") && msg.contains("offset"), "{msg}");
    // Nothing was truncated: the file is untouched.
    assert_eq!(std::fs::read(&j).unwrap(), bytes);
}

#[test]
fn second_open_of_a_locked_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert!(matches!(
        Engine::try_open(dir.path(), EngineOptions::default()),
        Err(StorageError::Locked { .. })
    ));
}

#[test]
fn sync_every_write_mode_works() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e =
            Engine::open(dir.path(), EngineOptions { sync_every_write: true, ..Default::default() }).unwrap();
        e.insert("db", "c", (0..10).map(|i| doc! {"_id": i}).collect(), true, &NeverInterrupt);
        e.flush().unwrap();
    }
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(ids(&e, "db", "c").len(), 10);
}

const CHILD_ENV: &str = "DOCPLANE_ENGINE_KILL9_DIR";
/// Set in the child's environment: acknowledge each batch only after `sync_journal` (`j: true`).
const CHILD_SYNC_ENV: &str = "DOCPLANE_ENGINE_KILL9_SYNC";

/// Child half of `kill9_keeps_every_acknowledged_write`: inserts until killed, printing each
/// acknowledged id. Does nothing in a normal test run.
#[test]
fn kill9_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let sync = std::env::var_os(CHILD_SYNC_ENV).is_some();
    let e = Engine::open(Path::new(&dir), EngineOptions::default()).unwrap();
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut i: i64 = 0;
    while start.elapsed() < Duration::from_secs(20) {
        let batch: Vec<Document> = (i..i + 10).map(|k| doc! {"_id": k, "v": "z".repeat(100)}).collect();
        let res = e.insert("db", "c", batch, true, &NeverInterrupt);
        assert!(res.write_errors.is_empty());
        if sync {
            e.sync_journal().unwrap();
            let s = e.journal_stats();
            assert_eq!(s.durable_appends, s.appends, "acknowledged before its fsync");
        }
        writeln!(out, "acked {}", i + 9).unwrap();
        out.flush().unwrap();
        i += 10;
    }
}

#[test]
fn kill9_keeps_every_acknowledged_write() {
    kill9_run(false);
}

/// The same with every batch acknowledged only after `sync_journal` (what `j: true` waits for).
/// kill -9 leaves the page cache alone, so this shows the synced path loses nothing either; the
/// fsync itself is shown by `j_writes_are_fsynced_before_their_ack`.
#[test]
fn kill9_keeps_every_journal_synced_write() {
    kill9_run(true);
}

fn kill9_run(sync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"]).env(CHILD_ENV, dir.path());
    if sync {
        cmd.env(CHILD_SYNC_ENV, "1");
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut max_acked: Option<i64> = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    // fsync per batch is slow on some disks: fewer batches then.
    let enough = if sync { 500 } else { 3000 };
    while let Some(Ok(line)) = lines.next() {
        if let Some(n) = line.strip_prefix("acked ") {
            max_acked = Some(n.trim().parse().unwrap());
            if max_acked.unwrap() >= enough {
                break;
            }
        }
        assert!(Instant::now() < deadline, "child too slow");
    }
    child.kill().unwrap(); // SIGKILL
    // Acks printed before the kill landed are acknowledged too.
    for line in lines.map_while(|l| l.ok()) {
        if let Some(n) = line.strip_prefix("acked ") {
            max_acked = Some(n.trim().parse().unwrap());
        }
    }
    child.wait().unwrap();
    let max_acked = max_acked.expect("child acknowledged nothing");
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let got = ids(&e, "db", "c");
    assert!(got.len() as i64 > max_acked, "have {} docs, acked up to {max_acked}", got.len());
    assert_eq!(got[..=max_acked as usize], (0..=max_acked).collect::<Vec<_>>()[..]);
}

/// `sync_journal` returns only once every earlier append is fsynced: 1,000 writes each followed
/// by it cost at least 1,000 fsyncs, and after each one the journal has nothing unsynced.
#[test]
fn j_writes_are_fsynced_before_their_ack() {
    let dir = tempfile::tempdir().unwrap();
    // A long background interval, so the fsyncs counted are sync_journal's own.
    let opts = EngineOptions { sync_interval: Duration::from_secs(3600), ..Default::default() };
    let e = Engine::open(dir.path(), opts).unwrap();
    let before = e.journal_stats();
    for i in 0..1000 {
        let res = e.insert("db", "c", vec![doc! {"_id": i}], true, &NeverInterrupt);
        assert!(res.write_errors.is_empty());
        let s = e.journal_stats();
        assert!(s.durable_appends < s.appends, "the write itself is not synced");
        e.sync_journal().unwrap();
        let s = e.journal_stats();
        assert_eq!(s.durable_appends, s.appends, "write {i} acknowledged before its fsync");
    }
    let after = e.journal_stats();
    assert!(after.fsyncs - before.fsyncs >= 1000, "{before:?} -> {after:?}");
    // Nothing new to sync: no fsync.
    e.sync_journal().unwrap();
    assert_eq!(e.journal_stats().fsyncs, after.fsyncs);
}

/// Concurrent `sync_journal` callers (which may share fsyncs: group commit) all see their writes
/// durable when it returns.
#[test]
fn concurrent_journal_syncs_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions { sync_interval: Duration::from_secs(3600), ..Default::default() };
    let e = Engine::open(dir.path(), opts).unwrap();
    let before = e.journal_stats().fsyncs;
    std::thread::scope(|s| {
        for t in 0..8i64 {
            let e = e.clone();
            s.spawn(move || {
                for i in 0..100i64 {
                    let res = e.insert("db", "c", vec![doc! {"_id": t * 1000 + i}], true, &NeverInterrupt);
                    assert!(res.write_errors.is_empty());
                    let appended = e.journal_stats().appends;
                    e.sync_journal().unwrap();
                    assert!(e.journal_stats().durable_appends >= appended);
                }
            });
        }
    });
    let s = e.journal_stats();
    assert_eq!(s.durable_appends, s.appends);
    // How many fsyncs were shared depends on scheduling (j_bench measures it); at least one ran.
    assert!(s.fsyncs > before);
}

#[test]
fn sync_every_write_counts_one_fsync_per_write() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        sync_every_write: true,
        sync_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let e = Engine::open(dir.path(), opts).unwrap();
    let before = e.journal_stats();
    for i in 0..50 {
        e.insert("db", "c", vec![doc! {"_id": i}], true, &NeverInterrupt);
        let s = e.journal_stats();
        assert_eq!(s.durable_appends, s.appends);
    }
    assert!(e.journal_stats().fsyncs - before.fsyncs >= 50);
}

#[test]
fn background_compaction_shrinks_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        compact_min_journal_bytes: 64 * 1024,
        compact_ratio: 2,
        sync_interval: Duration::from_millis(10),
        ..Default::default()
    };
    let e = Engine::open(dir.path(), opts.clone()).unwrap();
    e.insert("db", "c", vec![doc! {"_id": 1, "n": 0}], true, &NeverInterrupt);
    let inc = UpdateStatement {
        filter: Filter::parse(&doc! {"_id": 1}).unwrap(),
        update: Update::parse(&doc! {"$inc": {"n": 1}, "$set": {"pad": "p".repeat(50)}}, None).unwrap(),
        upsert: false,
        multi: false,
        hint: None,
        collation: Default::default(),
    };
    for _ in 0..2000 {
        assert_eq!(e.update("db", "c", std::slice::from_ref(&inc), true, &NeverInterrupt).n_modified, 1);
    }
    let (journal_before, live) = e.storage_sizes();
    assert!(journal_before > 100 * 1024 && live < 200, "{journal_before} {live}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.storage_sizes().0 >= journal_before {
        assert!(Instant::now() < deadline, "no compaction happened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the snapshot finish (old journal removed), then check the recovered state.
    while journal_files(dir.path()).len() > 1 {
        assert!(Instant::now() < deadline, "old journal not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    e.update("db", "c", std::slice::from_ref(&inc), true, &NeverInterrupt);
    drop(e);
    let e = Engine::open(dir.path(), opts).unwrap();
    let d = &all(&e, "db", "c")[0];
    assert_eq!(d.get_i32("n").unwrap(), 2001);
}

mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i32, i32),
        Set(i32, i32),
        Delete(i32),
        Index,
        Compact,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..30i32, 0..5i32).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0..30i32, 0..5i32).prop_map(|(k, v)| Op::Set(k, v)),
            2 => (0..30i32).prop_map(Op::Delete),
            1 => Just(Op::Index),
            1 => Just(Op::Compact),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        #[test]
        fn journal_replay_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let mut e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
            let mut model: BTreeMap<i32, i32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let out = e.insert("db", "c", vec![doc! {"_id": k, "v": v}], true, &NeverInterrupt);
                        prop_assert_eq!(out.n == 1, !model.contains_key(&k));
                        model.entry(k).or_insert(v);
                    }
                    Op::Set(k, v) => {
                        let st = UpdateStatement {
                            filter: Filter::parse(&doc! {"_id": k}).unwrap(),
                            update: Update::parse(&doc! {"$set": {"v": v}}, None).unwrap(),
                            upsert: false, multi: false, hint: None, collation: Default::default(),
                        };
                        e.update("db", "c", &[st], true, &NeverInterrupt);
                        if let Some(x) = model.get_mut(&k) { *x = v; }
                    }
                    Op::Delete(k) => {
                        let st = DeleteStatement::new(Filter::parse(&doc! {"_id": k}).unwrap(), true);
                        e.delete("db", "c", &[st], true, &NeverInterrupt);
                        model.remove(&k);
                    }
                    Op::Index => {
                        e.create_indexes("db", "c", &[doc! {"key": {"v": 1}}], &NeverInterrupt).unwrap();
                    }
                    Op::Compact => e.compact().unwrap(),
                    Op::Reopen => {
                        drop(e);
                        e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
                    }
                }
            }
            drop(e);
            let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
            let got: BTreeMap<i32, i32> = all(&e, "db", "c")
                .iter()
                .map(|d| (d.get_i32("_id").unwrap(), d.get_i32("v").unwrap()))
                .collect();
            prop_assert_eq!(got, model.clone());
            // Index scans agree with the model too.
            for v in 0..5 {
                let q = FindQuery::new(Filter::parse(&doc! {"v": v}).unwrap());
                let n = e.find("db", "c", &q, &NeverInterrupt).unwrap().docs.len();
                prop_assert_eq!(n, model.values().filter(|x| **x == v).count());
            }
        }
    }
}

#[test]
fn missing_or_damaged_snapshot_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        e.insert("db", "c", (0..10).map(|i| doc! {"_id": i}).collect(), true, &NeverInterrupt);
        e.compact().unwrap();
        e.insert("db", "c", vec![doc! {"_id": 10}], true, &NeverInterrupt);
    }
    let snap: PathBuf = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .unwrap();
    let good = std::fs::read(&snap).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x10;
    std::fs::write(&snap, &bad).unwrap();
    let err = Engine::try_open(dir.path(), EngineOptions::default()).unwrap_err();
    assert!(matches!(&err, StorageError::Corrupt { path, .. } if *path == snap), "{err}");
    std::fs::remove_file(&snap).unwrap();
    let err = Engine::try_open(dir.path(), EngineOptions::default()).unwrap_err();
    assert!(err.to_string().contains("snapshot"), "{err}");
    std::fs::write(&snap, &good).unwrap();
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(ids(&e, "db", "c"), (0..11).collect::<Vec<_>>());
}

#[test]
fn compaction_under_concurrent_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    e.insert("db", "c", (0..20).map(|i| doc! {"_id": i, "n": 0}).collect(), true, &NeverInterrupt);
    e.create_indexes("db", "c", &[doc! {"key": {"n": 1}}], &NeverInterrupt).unwrap();
    let per_thread = 300;
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let st = UpdateStatement {
                        filter: Filter::parse(&doc! {"_id": (i * 7 + t) % 20}).unwrap(),
                        update: Update::parse(&doc! {"$inc": {"n": 1}}, None).unwrap(),
                        upsert: false,
                        multi: false,
                        hint: None,
                        collation: Default::default(),
                    };
                    assert_eq!(e.update("db", "c", &[st], true, &NeverInterrupt).n_modified, 1);
                    // Some inserts into a second collection as well.
                    e.insert("db", &format!("t{t}"), vec![doc! {"i": i}], true, &NeverInterrupt);
                }
            })
        })
        .collect();
    for _ in 0..5 {
        e.compact().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    for w in writers {
        w.join().unwrap();
    }
    let total: i32 = all(&e, "db", "c").iter().map(|d| d.get_i32("n").unwrap()).sum();
    assert_eq!(total, 3 * per_thread);
    let before = state(&e);
    drop(e);
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(state(&e), before);
}

/// `{a: {a: ... {a: 1}}}` nested `depth` levels in all (the top document is level 1).
fn nested(depth: usize) -> Document {
    let mut d = doc! {"a": 1};
    for _ in 1..depth {
        d = doc! {"a": d};
    }
    d
}

fn with_id(id: i32, mut d: Document) -> Document {
    d.insert("_id", id);
    d
}

fn upd(filter: Document, update: Document, upsert: bool) -> UpdateStatement {
    UpdateStatement {
        filter: Filter::parse(&filter).unwrap(),
        update: Update::parse(&update, None).unwrap(),
        upsert,
        multi: false,
        hint: None,
        collation: Default::default(),
    }
}

#[test]
fn documents_nested_over_100_levels_are_refused_by_every_write_path() {
    use docplane_engine::FindAndModify;
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    // insert: 99 and 100 levels are stored, 101 is 15 Overflow
    let out =
        e.insert("d", "c", vec![with_id(1, nested(99)), with_id(2, nested(100))], true, &NeverInterrupt);
    assert_eq!((out.n, out.write_errors.len()), (2, 0));
    let out =
        e.insert("d", "c", vec![with_id(3, nested(101)), with_id(4, nested(1))], false, &NeverInterrupt);
    assert_eq!(out.n, 1);
    assert_eq!((out.write_errors[0].index, out.write_errors[0].code), (0, 15));
    assert_eq!(out.write_errors[0].code_name, "Overflow");
    // update with an operator: {a: <99 levels>} at a.a pushes document 1 to 101 levels
    let deep_set = doc! {"$set": {"a.a": nested(99)}};
    let out = e.update("d", "c", &[upd(doc! {"_id": 1}, deep_set.clone(), false)], true, &NeverInterrupt);
    assert_eq!((out.n_modified, out.write_errors[0].code), (0, 15));
    assert_eq!(out.write_errors[0].errmsg, "Document exceeds maximum nesting depth of 100");
    // a replacement that is too deep
    let out = e.update("d", "c", &[upd(doc! {"_id": 1}, nested(101), false)], true, &NeverInterrupt);
    assert_eq!(out.write_errors[0].code, 15);
    // upsert of a too-deep document
    let out = e.update("d", "c", &[upd(doc! {"_id": 9}, deep_set.clone(), true)], true, &NeverInterrupt);
    assert_eq!((out.upserted.len(), out.write_errors[0].code), (0, 15));
    // findAndModify, update and upsert
    let fam = |filter: Document, upsert: bool| FindAndModify {
        filter: Filter::parse(&filter).unwrap(),
        sort: None,
        remove: false,
        update: Some(Update::parse(&deep_set, None).unwrap()),
        new: true,
        fields: None,
        upsert,
        hint: None,
    };
    assert_eq!(
        e.find_and_modify("d", "c", &fam(doc! {"_id": 1}, false), &NeverInterrupt).unwrap_err().code,
        15
    );
    assert_eq!(
        e.find_and_modify("d", "c", &fam(doc! {"_id": 8}, true), &NeverInterrupt).unwrap_err().code,
        15
    );
    // an update that stays within the limit still works
    let ok =
        e.update("d", "c", &[upd(doc! {"_id": 1}, doc! {"$set": {"b": 1}}, false)], true, &NeverInterrupt);
    assert_eq!((ok.n_modified, ok.write_errors.len()), (1, 0));
    let before = all(&e, "d", "c");
    assert_eq!(ids(&e, "d", "c"), vec![1, 2, 4]);
    drop(e);
    // reopen: the same documents, nothing too deep was journaled
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(all(&e, "d", "c"), before);
    let mut one = with_id(1, nested(99));
    one.insert("b", 1);
    let got = all(&e, "d", "c");
    assert_eq!(got[0], {
        let mut x = doc! {"_id": 1};
        x.extend(one.into_iter().filter(|(k, _)| k != "_id"));
        x
    });
}

#[test]
fn capped_collections_reopen_with_their_limits_and_insertion_order() {
    let dir = tempfile::tempdir().unwrap();
    let cap = doc! {"capped": true, "size": 4096, "max": 3};
    {
        let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        e.create_collection("db", "cap", cap.clone()).unwrap();
        for i in [5, 1, 9, 2, 7] {
            assert_eq!(e.insert("db", "cap", vec![doc! {"_id": i}], true, &NeverInterrupt).n, 1);
        }
        assert_eq!(ids(&e, "db", "cap"), vec![9, 2, 7]);
    }
    // The journal replays the evictions; insertion order survives.
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(ids(&e, "db", "cap"), vec![9, 2, 7]);
    // A snapshot keeps insertion order too, and the limits still hold afterwards.
    e.compact().unwrap();
    drop(e);
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(ids(&e, "db", "cap"), vec![9, 2, 7]);
    assert_eq!(e.insert("db", "cap", vec![doc! {"_id": 0}], true, &NeverInterrupt).n, 1);
    assert_eq!(ids(&e, "db", "cap"), vec![2, 7, 0]);
}

#[test]
fn collations_survive_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let strength2 = doc! {"locale": "en", "strength": 2};
    {
        let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        e.create_collection("app", "c", doc! {"collation": strength2.clone()}).unwrap();
        let specs = [
            doc! {"key": {"s": 1}, "name": "s_ci", "unique": true},
            doc! {"key": {"s": -1}, "name": "s_bin", "collation": {"locale": "simple"}},
        ];
        e.create_indexes("app", "c", &specs, &NeverInterrupt).unwrap();
        assert_eq!(e.insert("app", "c", vec![doc! {"_id": "a", "s": "x"}], true, &NeverInterrupt).n, 1);
    }
    // Reopened from the journal, compacted, then reopened from the snapshot.
    for compact in [false, true, false] {
        let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        let default = e.default_collation("app", "c").unwrap();
        assert_eq!(default.spec().get_i32("strength").unwrap(), 2);
        let ixs = e.list_indexes("app", "c").unwrap();
        assert!(ixs[0].contains_key("collation") && ixs[1].contains_key("collation"), "{ixs:?}");
        assert!(!ixs[2].contains_key("collation"), "{ixs:?}");
        // Unique under the collation, for the secondary index and for `_id`, after replay.
        let out = e.insert("app", "c", vec![doc! {"_id": "b", "s": "X"}], true, &NeverInterrupt);
        assert_eq!(out.write_errors[0].code, 11000);
        let out = e.insert("app", "c", vec![doc! {"_id": "A", "s": "y"}], true, &NeverInterrupt);
        assert_eq!(out.write_errors[0].code, 11000);
        if compact {
            e.compact().unwrap();
        }
    }
}
