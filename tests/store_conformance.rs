//! One set of [`Store`] cases, run against every backend: sled (in memory) and JetStream (a
//! real nats-server with JetStream on a free loopback port, its own temp store dir, started
//! and stopped by each test).
//!
//! Each case is a function over a [`Fixture`]; `conformance!` makes one module per case with
//! an `on_sled` and an `on_jetstream` test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use nats_authd::nats_server::NatsServer;
use nats_authd::store::jetstream::{
    JetStreamOptions, JetStreamStore, JetStreamStoreError, MAX_BATCH_MESSAGES,
};
use nats_authd::store::sled::SledStore;
use nats_authd::store::{Batch, ConflictKind, Expect, Op, Store, StoreError, Tree};
use tempfile::TempDir;

/// Two handles on one store: for JetStream, two clients on two connections, as two
/// instances of the service would be.
struct Fixture {
    store: Arc<dyn Store>,
    other: Arc<dyn Store>,
    /// The same two handles, typed, on JetStream.
    js: Option<(JetStreamStore, JetStreamStore)>,
    /// The server's address, on JetStream.
    addr: Option<String>,
    _server: Option<NatsServer>,
    _dir: Option<TempDir>,
}

impl Fixture {
    fn sled() -> Fixture {
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
        Fixture {
            other: Arc::clone(&store),
            store,
            js: None,
            addr: None,
            _server: None,
            _dir: None,
        }
    }

    async fn jetstream() -> Fixture {
        Fixture::jetstream_with(JetStreamOptions::default()).await
    }

    async fn jetstream_with(options: JetStreamOptions) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let config = dir.path().join("nats-server.conf");
        let store_dir = dir.path().join("js");
        std::fs::write(
            &config,
            format!("listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n", store_dir),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let server = NatsServer::start(
            &common::nats_server_bin(),
            &config,
            &dir.path().join("nats-server.log"),
            &addr,
            &[],
            Duration::from_secs(15),
        )
        .await
        .unwrap();
        let open = || async {
            let client = async_nats::connect(format!("nats://{addr}")).await.unwrap();
            JetStreamStore::open(client, &options).await.unwrap()
        };
        let (first, second) = (open().await, open().await);
        Fixture {
            store: Arc::new(first.clone()),
            other: Arc::new(second.clone()),
            js: Some((first, second)),
            addr: Some(addr),
            _server: Some(server),
            _dir: Some(dir),
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sled() {
                super::$case(&super::Fixture::sled()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_jetstream() {
                super::$case(&super::Fixture::jetstream().await).await;
            }
        }
    )*};
}

conformance!(
    a_batch_with_one_failed_condition_writes_nothing,
    each_condition_fails_with_its_own_kind_naming_the_key,
    checks_write_nothing_and_pass_when_the_value_holds,
    later_ops_in_a_batch_see_earlier_ones_on_the_same_key,
    scans_return_live_keys_with_the_prefix_in_key_order,
    deleted_keys_read_as_absent_and_can_be_created_again,
    odd_keys_and_binary_values_round_trip,
    of_two_concurrent_conflicting_batches_exactly_one_wins_whole,
    concurrent_batches_checking_one_parent_both_succeed,
    pages_and_counts_leave_out_deleted_keys_and_follow_the_cursor,
);

const T: Tree = Tree::Users;

fn put(key: &str, value: &[u8], expect: Expect) -> Op {
    Op::Put { tree: T, key: key.into(), value: value.to_vec(), expect }
}

fn delete(key: &str, expect: Expect) -> Op {
    Op::Delete { tree: T, key: key.into(), expect }
}

fn check(key: &str, expect: Expect) -> Op {
    Op::Check { tree: T, key: key.into(), expect }
}

fn batch(ops: impl IntoIterator<Item = Op>) -> Batch {
    let mut b = Batch::new();
    for op in ops {
        b.push(op);
    }
    b
}

async fn commit(store: &Arc<dyn Store>, ops: impl IntoIterator<Item = Op>) {
    store.commit(batch(ops)).await.unwrap();
}

async fn conflict(
    store: &Arc<dyn Store>,
    ops: impl IntoIterator<Item = Op>,
) -> (String, ConflictKind) {
    match store.commit(batch(ops)).await {
        Err(StoreError::Conflict { tree, key, kind }) => {
            assert_eq!(tree, T);
            (key, kind)
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn get(store: &Arc<dyn Store>, key: &str) -> Option<Vec<u8>> {
    store.get(T, key).await.unwrap()
}

async fn keys(store: &Arc<dyn Store>, prefix: &str) -> Vec<String> {
    store.scan(T, prefix).await.unwrap().into_iter().map(|(k, _)| k).collect()
}

async fn a_batch_with_one_failed_condition_writes_nothing(f: &Fixture) {
    let s = &f.store;
    commit(s, [put("a", b"1", Expect::Absent)]).await;
    let failed = conflict(
        s,
        [put("b", b"2", Expect::Absent), delete("c", Expect::Any), put("a", b"3", Expect::Absent)],
    )
    .await;
    assert_eq!(failed, ("a".to_string(), ConflictKind::Exists));
    assert_eq!(get(s, "b").await, None, "b must not be written");
    assert_eq!(get(s, "a").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(keys(s, "").await, ["a"]);
}

async fn each_condition_fails_with_its_own_kind_naming_the_key(f: &Fixture) {
    let s = &f.store;
    commit(s, [put("here", b"v1", Expect::Any)]).await;
    let cases = [
        (put("here", b"x", Expect::Absent), "here", ConflictKind::Exists),
        (put("gone", b"x", Expect::Present), "gone", ConflictKind::Missing),
        (delete("gone", Expect::Present), "gone", ConflictKind::Missing),
        (put("here", b"x", Expect::Value(b"v0".to_vec())), "here", ConflictKind::Changed),
        (put("gone", b"x", Expect::Value(b"v0".to_vec())), "gone", ConflictKind::Changed),
        (delete("here", Expect::Value(b"v0".to_vec())), "here", ConflictKind::Changed),
        (check("here", Expect::Value(b"v0".to_vec())), "here", ConflictKind::Changed),
        (check("here", Expect::Absent), "here", ConflictKind::Exists),
        (check("gone", Expect::Present), "gone", ConflictKind::Missing),
    ];
    for (op, key, kind) in cases {
        let described = format!("{op:?}");
        let got = conflict(s, [put("other", b"o", Expect::Any), op]).await;
        assert_eq!(got, (key.to_string(), kind), "{described}");
    }
    assert_eq!(get(s, "other").await, None, "no failed batch wrote anything");
    assert_eq!(get(s, "here").await.as_deref(), Some(&b"v1"[..]));
    commit(s, [put("here", b"v2", Expect::Value(b"v1".to_vec()))]).await;
    commit(s, [put("here", b"v3", Expect::Present)]).await;
    commit(s, [delete("here", Expect::Value(b"v3".to_vec()))]).await;
    assert_eq!(keys(s, "").await, Vec::<String>::new());
}

async fn checks_write_nothing_and_pass_when_the_value_holds(f: &Fixture) {
    let s = &f.store;
    commit(s, [put("acct", b"A", Expect::Absent)]).await;
    commit(
        s,
        [
            check("acct", Expect::Value(b"A".to_vec())),
            check("acct", Expect::Present),
            check("none", Expect::Absent),
            put("acct/user", b"u", Expect::Absent),
        ],
    )
    .await;
    commit(s, [check("acct", Expect::Present)]).await;
    assert_eq!(keys(s, "").await, ["acct", "acct/user"], "a check creates no key");
    assert_eq!(get(s, "acct").await.as_deref(), Some(&b"A"[..]));
    // The check pinned the parent: changing it first fails a batch built from the old one.
    commit(s, [put("acct", b"B", Expect::Any)]).await;
    let got = conflict(
        s,
        [check("acct", Expect::Value(b"A".to_vec())), put("acct/u2", b"u", Expect::Absent)],
    )
    .await;
    assert_eq!(got, ("acct".to_string(), ConflictKind::Changed));
    assert_eq!(get(s, "acct/u2").await, None);
}

async fn later_ops_in_a_batch_see_earlier_ones_on_the_same_key(f: &Fixture) {
    let s = &f.store;
    commit(
        s,
        [
            put("k", b"1", Expect::Absent),
            check("k", Expect::Value(b"1".to_vec())),
            put("k", b"2", Expect::Value(b"1".to_vec())),
        ],
    )
    .await;
    assert_eq!(get(s, "k").await.as_deref(), Some(&b"2"[..]));
    commit(s, [delete("k", Expect::Present), put("k", b"3", Expect::Absent)]).await;
    assert_eq!(get(s, "k").await.as_deref(), Some(&b"3"[..]));
    commit(s, [put("k", b"4", Expect::Any), delete("k", Expect::Value(b"4".to_vec()))]).await;
    assert_eq!(get(s, "k").await, None);
    let got = conflict(s, [put("k", b"5", Expect::Absent), put("k", b"6", Expect::Absent)]).await;
    assert_eq!(got, ("k".to_string(), ConflictKind::Exists));
    assert_eq!(get(s, "k").await, None);
}

async fn scans_return_live_keys_with_the_prefix_in_key_order(f: &Fixture) {
    let s = &f.store;
    let all = ["b", "acme/b", "acme", "acme/a", "acmf", "acme/c", "acme/a/x", "é", "z", "acme0"];
    commit(s, all.iter().map(|k| put(k, k.as_bytes(), Expect::Absent))).await;
    commit(s, [delete("acme/c", Expect::Present)]).await;
    let rows = s.scan(T, "acme/").await.unwrap();
    let expected: Vec<(String, Vec<u8>)> = ["acme/a", "acme/a/x", "acme/b"]
        .iter()
        .map(|k| (k.to_string(), k.as_bytes().to_vec()))
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(
        keys(s, "").await,
        ["acme", "acme/a", "acme/a/x", "acme/b", "acme0", "acmf", "b", "z", "é"],
        "byte order of the keys"
    );
    assert_eq!(keys(s, "acme").await, ["acme", "acme/a", "acme/a/x", "acme/b", "acme0"]);
    assert_eq!(keys(s, "nothing").await, Vec::<String>::new());
    assert!(s.scan(Tree::Roles, "").await.unwrap().is_empty(), "trees do not share keys");
}

async fn pages_and_counts_leave_out_deleted_keys_and_follow_the_cursor(f: &Fixture) {
    let s = &f.store;
    let all = ["acme/a", "acme/b", "acme/c", "acme/d", "acme/e", "acmf", "b"];
    commit(s, all.iter().map(|k| put(k, k.as_bytes(), Expect::Absent))).await;
    commit(s, [delete("acme/b", Expect::Present), delete("acme/d", Expect::Present)]).await;
    let page = |after: Option<&'static str>, limit| async move {
        let rows = s.scan_page(T, "acme/", after, limit).await.unwrap();
        rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2).await, ["acme/a", "acme/c"], "a deleted key in the page");
    assert_eq!(page(Some("acme/c"), 2).await, ["acme/e"]);
    assert_eq!(page(Some("acme/b"), 1).await, ["acme/c"], "the cursor on a deleted key");
    assert_eq!(page(Some("acme/e"), 2).await, Vec::<String>::new());
    assert_eq!(page(None, 0).await, Vec::<String>::new());
    let first = s.scan_page(T, "acme/", None, 1).await.unwrap();
    assert_eq!(first, [("acme/a".to_string(), b"acme/a".to_vec())]);
    assert_eq!(s.count(T, "").await.unwrap(), 5);
    assert_eq!(s.count(T, "acme/").await.unwrap(), 3);
    assert_eq!(s.count(Tree::Roles, "").await.unwrap(), 0);

    // Pages longer than the reads kept in flight, with deleted keys among them.
    let many: Vec<String> = (0..60).map(|i| format!("many/{i:02}")).collect();
    commit(s, many.iter().map(|k| put(k, k.as_bytes(), Expect::Absent))).await;
    commit(s, many.iter().step_by(3).map(|k| delete(k, Expect::Present))).await;
    let live: Vec<String> =
        many.iter().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, k)| k.clone()).collect();
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let rows = s.scan_page(T, "many/", after.as_deref(), 17).await.unwrap();
        let full = rows.len() == 17;
        for (key, value) in rows {
            assert_eq!(value, key.as_bytes(), "the value of another key");
            paged.push(key);
        }
        if !full {
            break;
        }
        after = paged.last().cloned();
    }
    assert_eq!(paged, live, "pages in key order, each key once, no deleted one");
    assert_eq!(s.count(T, "many/").await.unwrap(), 40);
}

async fn deleted_keys_read_as_absent_and_can_be_created_again(f: &Fixture) {
    let s = &f.store;
    commit(s, [put("d", b"1", Expect::Absent)]).await;
    commit(s, [delete("d", Expect::Present)]).await;
    assert_eq!(get(s, "d").await, None);
    assert_eq!(keys(s, "").await, Vec::<String>::new());
    assert_eq!(conflict(s, [delete("d", Expect::Present)]).await.1, ConflictKind::Missing);
    // Deleting what is not there, unconditionally, is not an error.
    commit(s, [delete("d", Expect::Any), delete("never", Expect::Any)]).await;
    commit(s, [put("d", b"2", Expect::Absent)]).await;
    assert_eq!(get(s, "d").await.as_deref(), Some(&b"2"[..]));
}

async fn odd_keys_and_binary_values_round_trip(f: &Fixture) {
    let s = &f.store;
    let odd =
        ["", "a/b", "a.b", "*", ">", "a.*.>", "with space", "tab\tnew\nline", "ünïcødé/日本", "🦀"];
    let value = |i: usize| vec![0xff, 0x00, 0xfe, i as u8, 0x80];
    commit(s, odd.iter().enumerate().map(|(i, k)| put(k, &value(i), Expect::Absent))).await;
    commit(s, [put("empty", b"", Expect::Absent)]).await;
    for (i, key) in odd.iter().enumerate() {
        assert_eq!(get(s, key).await, Some(value(i)), "{key:?}");
    }
    assert_eq!(get(s, "empty").await, Some(Vec::new()), "an empty value is not a delete");
    assert_eq!(keys(s, "a.").await, ["a.*.>", "a.b"]);
    assert_eq!(keys(s, "ünï").await, ["ünïcødé/日本"]);
    let mut sorted: Vec<String> =
        odd.iter().map(|k| k.to_string()).chain(["empty".into()]).collect();
    sorted.sort();
    assert_eq!(keys(s, "").await, sorted);
}

/// Both batches create the same two keys (in opposite orders) from two handles at once.
async fn of_two_concurrent_conflicting_batches_exactly_one_wins_whole(f: &Fixture) {
    for round in 0..50 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        let a = batch([put(&x, b"A", Expect::Absent), put(&y, b"A", Expect::Absent)]);
        let b = batch([put(&y, b"B", Expect::Absent), put(&x, b"B", Expect::Absent)]);
        let (store, other) = (Arc::clone(&f.store), Arc::clone(&f.other));
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (b1, b2) = (Arc::clone(&barrier), barrier);
        let ta = tokio::spawn(async move {
            b1.wait().await;
            store.commit(a).await
        });
        let tb = tokio::spawn(async move {
            b2.wait().await;
            other.commit(b).await
        });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let winner = match (&ra, &rb) {
            (Ok(()), Err(StoreError::Conflict { .. })) => b"A",
            (Err(StoreError::Conflict { .. }), Ok(())) => b"B",
            _ => panic!("round {round}: exactly one must win: {ra:?} / {rb:?}"),
        };
        assert_eq!(get(&f.store, &x).await.as_deref(), Some(&winner[..]), "round {round}");
        assert_eq!(get(&f.other, &y).await.as_deref(), Some(&winner[..]), "round {round}");

        // A compare-and-swap race on one counter: one increment wins, the other is Changed.
        let n = round.to_string().into_bytes();
        let next = (round + 1).to_string().into_bytes();
        commit(&f.store, [put("counter", &n, Expect::Any)]).await;
        let cas = |s: &Arc<dyn Store>, mine: &[u8]| {
            let s = Arc::clone(s);
            let b = batch([
                put("counter", mine, Expect::Value(n.clone())),
                put(&format!("log{round}"), mine, Expect::Any),
            ]);
            tokio::spawn(async move { s.commit(b).await })
        };
        let (ca, cb) = (cas(&f.store, &next), cas(&f.other, b"other"));
        let (ca, cb) = (ca.await.unwrap(), cb.await.unwrap());
        let changed = |r: &Result<(), StoreError>| matches!(r, Err(StoreError::Conflict { kind: ConflictKind::Changed, key, .. }) if key == "counter");
        let won = match (ca.is_ok(), cb.is_ok()) {
            (true, false) if changed(&cb) => next.clone(),
            (false, true) if changed(&ca) => b"other".to_vec(),
            _ => panic!("round {round}: exactly one increment must win: {ca:?} / {cb:?}"),
        };
        assert_eq!(get(&f.store, "counter").await, Some(won.clone()));
        assert_eq!(
            get(&f.store, &format!("log{round}")).await,
            Some(won),
            "the loser wrote nothing"
        );
    }
}

/// Two children created under one parent at once, each batch checking the parent: a check
/// must not write the parent, or the two would conflict although neither changed it.
async fn concurrent_batches_checking_one_parent_both_succeed(f: &Fixture) {
    commit(&f.store, [put("parent", b"P", Expect::Absent)]).await;
    for round in 0..10 {
        let child = |s: &Arc<dyn Store>, name: String| {
            let s = Arc::clone(s);
            let b = batch([
                check("parent", Expect::Value(b"P".to_vec())),
                put(&name, b"c", Expect::Absent),
            ]);
            tokio::spawn(async move { s.commit(b).await })
        };
        let a = child(&f.store, format!("parent/a{round}"));
        let b = child(&f.other, format!("parent/b{round}"));
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
    }
    assert_eq!(keys(&f.store, "parent/").await.len(), 20);
}

// JetStream only: a key moves between the read (`prepare`) and the publish, so the local
// check passes and only the server's sequence pins can refuse the batch.

async fn js() -> (Fixture, JetStreamStore, Arc<dyn Store>) {
    let f = Fixture::jetstream().await;
    let first = f.js.as_ref().unwrap().0.clone();
    let other = Arc::clone(&f.other);
    (f, first, other)
}

#[tokio::test]
async fn the_server_refuses_a_whole_batch_when_a_written_key_moved_after_the_read() {
    let (f, js, other) = js().await;
    commit(&f.store, [put("y", b"v1", Expect::Absent)]).await;
    let prepared = js
        .prepare(&batch([
            put("x", b"new", Expect::Absent),
            put("y", b"v2", Expect::Value(b"v1".to_vec())),
        ]))
        .await
        .unwrap();
    commit(&other, [put("y", b"theirs", Expect::Any)]).await;
    let err = js.publish_prepared(prepared).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key, kind: ConflictKind::Changed, .. } if key == "y"),
        "{err:?}"
    );
    assert_eq!(get(&f.store, "x").await, None, "nothing of the batch is stored");
    assert_eq!(get(&f.store, "y").await.as_deref(), Some(&b"theirs"[..]));
}

#[tokio::test]
async fn the_server_refuses_a_batch_whose_checked_key_was_rewritten_after_the_read() {
    let (f, js, other) = js().await;
    commit(&f.store, [put("parent", b"P", Expect::Absent)]).await;
    let prepared = js
        .prepare(&batch([
            check("parent", Expect::Value(b"P".to_vec())),
            put("parent/c", b"c", Expect::Absent),
        ]))
        .await
        .unwrap();
    // Same bytes, new sequence: only the server's pin on the parent can notice.
    commit(&other, [put("parent", b"P", Expect::Any)]).await;
    let err = js.publish_prepared(prepared).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key, kind: ConflictKind::Changed, .. } if key == "parent"),
        "{err:?}"
    );
    assert_eq!(get(&f.store, "parent/c").await, None);
}

#[tokio::test]
async fn a_race_lost_to_a_create_or_delete_reports_the_kind_that_fails_now() {
    let (f, js, other) = js().await;
    let create = js.prepare(&batch([put("x", b"mine", Expect::Absent)])).await.unwrap();
    commit(&other, [put("x", b"theirs", Expect::Absent)]).await;
    let err = js.publish_prepared(create).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { kind: ConflictKind::Exists, .. }), "{err:?}");

    let update = js
        .prepare(&batch([check("x", Expect::Present), put("y", b"y", Expect::Absent)]))
        .await
        .unwrap();
    commit(&other, [delete("x", Expect::Present)]).await;
    let err = js.publish_prepared(update).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key, kind: ConflictKind::Missing, .. } if key == "x"),
        "{err:?}"
    );
    assert_eq!(get(&f.store, "y").await, None);
}

#[tokio::test]
async fn blind_writes_are_not_pinned_so_the_last_writer_wins() {
    let (f, js, other) = js().await;
    let prepared = js.prepare(&batch([put("k", b"mine", Expect::Any)])).await.unwrap();
    commit(&other, [put("k", b"theirs", Expect::Any)]).await;
    js.publish_prepared(prepared).await.unwrap();
    assert_eq!(get(&f.store, "k").await.as_deref(), Some(&b"mine"[..]));
}

#[tokio::test]
async fn records_survive_a_server_restart() {
    let (mut f, _, _) = js().await;
    commit(&f.store, [put("kept", b"1", Expect::Absent), put("gone", b"2", Expect::Absent)]).await;
    commit(&f.store, [delete("gone", Expect::Present)]).await;
    let server = f._server.take().unwrap();
    let addr = server.addr().to_string();
    drop(server);
    let dir = f._dir.as_ref().unwrap().path().to_path_buf();
    // The dropped handle kills the process; wait until the port is free again.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(std::time::Instant::now() < give_up, "old server still answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _server = NatsServer::start(
        &common::nats_server_bin(),
        &dir.join("nats-server.conf"),
        &dir.join("nats-server-2.log"),
        &addr,
        &[],
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    let client = async_nats::connect(format!("nats://{addr}")).await.unwrap();
    let reopened: Arc<dyn Store> =
        Arc::new(JetStreamStore::open(client, &JetStreamOptions::default()).await.unwrap());
    assert_eq!(keys(&reopened, "").await, ["kept"]);
    assert_eq!(get(&reopened, "gone").await, None);
}

#[tokio::test]
async fn a_batch_larger_than_one_atomic_publish_is_refused_before_anything_is_sent() {
    let (f, _, _) = js().await;
    let too_many = (0..=MAX_BATCH_MESSAGES).map(|i| put(&format!("k{i:04}"), b"v", Expect::Any));
    let err = f.store.commit(batch(too_many)).await.unwrap_err();
    let StoreError::Backend(source) = &err else { panic!("{err:?}") };
    assert!(
        matches!(
            source.downcast_ref::<JetStreamStoreError>(),
            Some(JetStreamStoreError::BatchTooLarge { messages: 1001, max: MAX_BATCH_MESSAGES })
        ),
        "{err:?}"
    );
    assert_eq!(keys(&f.store, "").await, Vec::<String>::new());
    let just_fits = (0..MAX_BATCH_MESSAGES).map(|i| put(&format!("k{i:04}"), b"v", Expect::Absent));
    commit(&f.store, just_fits).await;
    assert_eq!(keys(&f.store, "").await.len(), MAX_BATCH_MESSAGES);
}

/// The subjects the store's stream holds for tree `T`, tombstones included.
async fn subjects_of(f: &Fixture) -> Vec<String> {
    let client = async_nats::connect(f.addr.as_deref().unwrap()).await.unwrap();
    let name = f.js.as_ref().unwrap().0.stream_name().to_string();
    let stream = async_nats::jetstream::new(client).get_stream(name).await.unwrap();
    let filter = format!("authd.store.{}.>", T.name());
    let subjects = stream.info_with_subjects(filter).await.unwrap();
    subjects.map_ok(|(subject, _)| subject).try_collect().await.unwrap()
}

#[tokio::test]
async fn tombstones_go_after_their_ttl_and_a_batch_read_before_is_prepared_again() {
    // Long enough for the reads below to happen before it goes, on a slow machine too.
    let options =
        JetStreamOptions { tombstone_ttl: Duration::from_secs(3), ..JetStreamOptions::default() };
    let f = Fixture::jetstream_with(options).await;
    let js = &f.js.as_ref().unwrap().0;
    commit(&f.store, [put("a", b"1", Expect::Absent), put("b", b"1", Expect::Absent)]).await;
    commit(&f.store, [delete("a", Expect::Present)]).await;
    // Read while the tombstone is there: its sequence is pinned. The second batch also
    // writes a key blind, which someone else writes meanwhile (not pinned: no conflict).
    let recreate = batch([put("a", b"2", Expect::Absent)]);
    let stale = js.prepare(&recreate).await.unwrap();
    let recreate_and_blind =
        batch([put("a", b"2", Expect::Absent), put("c", b"mine", Expect::Any)]);
    let stale_again = js.prepare(&recreate_and_blind).await.unwrap();
    assert_eq!(subjects_of(&f).await.len(), 2, "the tombstone is a subject");
    commit(&f.other, [put("c", b"theirs", Expect::Any)]).await;
    let mut waited = 0;
    while subjects_of(&f).await.len() > 2 {
        assert!(waited < 100, "the tombstone outlived its TTL by 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(!subjects_of(&f).await.iter().any(|s| s.ends_with(".k61")), "a's subject stayed");
    assert_eq!(get(&f.store, "a").await, None);
    // Published as read, the server refuses it; committed, it is read again and lands.
    let refused = js.publish_prepared(stale).await.unwrap_err();
    assert!(matches!(refused, StoreError::Conflict { kind: ConflictKind::Changed, .. }));
    assert_eq!(get(&f.store, "a").await, None, "nothing of the refused batch is stored");
    js.commit_prepared(stale_again, &recreate_and_blind).await.unwrap();
    assert_eq!(get(&f.store, "a").await.as_deref(), Some(&b"2"[..]));
    assert_eq!(get(&f.store, "c").await.as_deref(), Some(&b"mine"[..]));
    // A real change under a batch is still a conflict.
    let update = batch([put("b", b"3", Expect::Value(b"1".to_vec()))]);
    let read = js.prepare(&update).await.unwrap();
    commit(&f.other, [put("b", b"theirs", Expect::Any)]).await;
    let err = js.commit_prepared(read, &update).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { kind: ConflictKind::Changed, .. }), "{err:?}");
}

#[tokio::test]
async fn a_stream_made_without_message_ttls_gets_them_when_opened() {
    let f = Fixture::jetstream().await;
    let client = async_nats::connect(f.addr.as_deref().unwrap()).await.unwrap();
    let context = async_nats::jetstream::new(client.clone());
    let name = f.js.as_ref().unwrap().0.stream_name().to_string();
    let mut config = context.get_stream(&name).await.unwrap().info().await.unwrap().config.clone();
    context.delete_stream(&name).await.unwrap();
    // As builds before tombstone TTLs made it.
    config.allow_message_ttl = false;
    context.create_stream(config).await.unwrap();
    let store: Arc<dyn Store> =
        Arc::new(JetStreamStore::open(client, &JetStreamOptions::default()).await.unwrap());
    let mut stream = context.get_stream(&name).await.unwrap();
    assert!(stream.info().await.unwrap().config.allow_message_ttl);
    commit(&store, [put("a", b"1", Expect::Absent)]).await;
    commit(&store, [delete("a", Expect::Present)]).await;
    assert_eq!(get(&store, "a").await, None);
}
