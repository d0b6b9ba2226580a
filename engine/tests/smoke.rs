//! Basic end-to-end behaviour of `Db` on the real file system.

use strata::{Db, Options, WriteBatch, WriteOptions};

fn small() -> Options {
    Options { memtable_bytes: 64 << 10, partition_width: 1_000, ..Options::default() }
}

#[test]
fn put_get_latest_range_survive_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for ts in 0..5_000i64 {
        db.put(ts as u64 % 7, ts, &ts.to_le_bytes()).unwrap();
    }
    let check = |db: &Db| {
        let got = db.get(3, 3).unwrap().unwrap();
        assert_eq!(&got.payload[..], &3i64.to_le_bytes());
        let latest = db.latest(3, 5).unwrap();
        let ts: Vec<i64> = latest.iter().map(|e| e.ts).collect();
        assert_eq!(ts, vec![4994, 4987, 4980, 4973, 4966]);
        let range: Vec<i64> = db.range(3, 0..30).unwrap().map(|e| e.unwrap().ts).collect();
        assert_eq!(range, vec![3, 10, 17, 24]);
    };
    check(&db);
    db.flush().unwrap();
    assert!(db.stats().flushes >= 1);
    check(&db);
    db.close().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    check(&db);
    let mut batch = WriteBatch::new();
    batch.delete(3, 4994).delete_range(3, 4980..4990);
    db.write(&batch, &WriteOptions { sync: true }).unwrap();
    let ts: Vec<i64> = db.latest(3, 3).unwrap().iter().map(|e| e.ts).collect();
    assert_eq!(ts, vec![4973, 4966, 4959]);
    db.delete_user(3).unwrap();
    assert!(db.latest(3, 3).unwrap().is_empty());
    drop(db);
    let db = Db::open(dir.path(), small()).unwrap();
    assert!(db.latest(3, 3).unwrap().is_empty());
    assert_eq!(db.latest(4, 1).unwrap()[0].ts, 4995);
}
