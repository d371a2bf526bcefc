//! Median and p99 latency of store operations, sled (on disk, fsync per commit) vs JetStream
//! (a nats-server started here on a free loopback port, file storage, one replica).
//!
//! ```sh
//! NATS_SERVER_BIN=$(scripts/ensure-nats-server) cargo run --release --example store_bench [ROUNDS]
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nats_authd::nats_server::{self, NatsServer};
use nats_authd::store::jetstream::{JetStreamOptions, JetStreamStore};
use nats_authd::store::sled::{OpenMode, SledStore};
use nats_authd::store::{Batch, Expect, Op, Store, Tree};

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(500);
    let dir = tempfile::tempdir()?;

    let sled: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("sled"), OpenMode::CreateIfMissing)?);

    let bin = nats_server::find_in_tools(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"),
    )
    .context("nats-server: set NATS_SERVER_BIN=$(scripts/ensure-nats-server)")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("nats-server.conf");
    std::fs::write(
        &config,
        format!("listen: {addr}\njetstream {{ store_dir: {:?} }}\n", dir.path().join("js")),
    )?;
    let _server = NatsServer::start(
        &bin,
        &config,
        &dir.path().join("nats-server.log"),
        &addr,
        &[],
        Duration::from_secs(15),
    )
    .await?;
    let client = async_nats::connect(format!("nats://{addr}")).await?;
    let jetstream: Arc<dyn Store> =
        Arc::new(JetStreamStore::open(client, &JetStreamOptions::default()).await?);

    println!("{rounds} rounds each; median / p99");
    for (name, store) in [("sled", &sled), ("jetstream", &jetstream)] {
        bench(name, store, rounds).await?;
    }
    Ok(())
}

async fn bench(name: &str, store: &Arc<dyn Store>, rounds: usize) -> Result<()> {
    let value = vec![b'x'; 300]; // About a user record.
    let put = |key: String, expect: Expect| {
        let mut b = Batch::new();
        b.push(Op::Put { tree: Tree::Users, key, value: value.clone(), expect });
        b
    };
    let create =
        time(rounds, |i| store.commit(put(format!("acme/u{i:06}"), Expect::Absent))).await?;
    let blind = time(rounds, |i| store.commit(put(format!("acme/u{i:06}"), Expect::Any))).await?;
    let batch10 = time(rounds, |i| {
        let mut b = Batch::new();
        b.push(Op::Check {
            tree: Tree::Users,
            key: "acme/u000000".into(),
            expect: Expect::Present,
        });
        for j in 0..9 {
            let key = format!("b{i:06}/{j}");
            b.push(Op::Put {
                tree: Tree::Roles,
                key,
                value: value.clone(),
                expect: Expect::Absent,
            });
        }
        store.commit(b)
    })
    .await?;
    let get = time(rounds, |i| async move {
        store.get(Tree::Users, &format!("acme/u{i:06}")).await.map(|_| ())
    })
    .await?;
    let scan =
        time(rounds.min(50), |_| async { store.scan(Tree::Users, "acme/").await.map(|_| ()) })
            .await?;
    // Pages and counts as lists and `status` read them: a page of 100 from the middle of the
    // keys, and the count of every key (a tenth of them deleted first).
    let middle = format!("acme/u{:06}", rounds / 2);
    let page = time(rounds.min(50), |_| async {
        store.scan_page(Tree::Users, "acme/", Some(&middle), 100).await.map(|_| ())
    })
    .await?;
    for i in (0..rounds).step_by(10) {
        let mut b = Batch::new();
        b.push(Op::Delete { tree: Tree::Users, key: format!("acme/u{i:06}"), expect: Expect::Any });
        store.commit(b).await?;
    }
    let count = time(rounds.min(20), |_| async {
        let n = store.count(Tree::Users, "").await?;
        assert_eq!(n, rounds - rounds.div_ceil(10), "count");
        Ok::<_, nats_authd::store::StoreError>(())
    })
    .await?;
    println!("{name:>9}: create(1 put, Absent) {create}   put(Any) {blind}   batch(1 check + 9 creates) {batch10}   get {get}   scan({rounds} keys) {scan}   page(100) {page}   count {count}");
    Ok(())
}

/// Runs `op` `rounds` times, one after the other, and formats median / p99.
async fn time<F, Fut, E>(rounds: usize, mut op: F) -> Result<String>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut took = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let start = Instant::now();
        op(i).await?;
        took.push(start.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    Ok(format!("{:?} / {:?}", at(0.5), at(0.99)))
}
