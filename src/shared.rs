//! JetStream mode: the store every instance shares.
//!
//! Each instance's data dir holds the sled store `init` made: the *seed*, whose trust chain
//! (sealed with the master key) signs the service user's connection. [`open`] turns it into
//! the serving store: it opens the stream over that connection, copies the seed into it the
//! first time (any instance may be first; two at once are harmless), and refuses a stream
//! that holds another operator. [`follow`] makes other instances' commits wake this one's
//! waiters ([`Db::changes`] sees only local commits).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::authority::{self, Authority, AuthorityError};
use crate::connection::Link;
use crate::model::OperatorRecord;
use crate::store::jetstream::{
    JetStreamOptions, JetStreamStore, MAX_BATCH_MESSAGES, SUBJECT_PREFIX,
};
use crate::store::{
    Batch, ConflictKind, Db, Expect, Op, StoreError, Tree, OPERATOR_KEY, SCHEMA_KEY, SCHEMA_VERSION,
};

/// Why the shared store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The stream holds another trust chain: this data dir was not copied from the one that
    /// seeded it (or the stream name is shared by two deployments).
    #[error(
        "stream {stream} holds the trust chain of operator {found}, but this data dir's is \
         operator {local}; every instance must run on a copy of one init'd data dir \
         (or give each deployment its own stream)"
    )]
    ForeignOperator { stream: String, local: String, found: String },
    /// The stream lacks a record every trust chain has, after seeding.
    #[error("stream {stream} has no {what}; it is damaged or was written by something else")]
    Incomplete { stream: String, what: &'static str },
    /// The stream was written by a newer nats-authd.
    #[error(
        "stream {stream} has schema version {found}, newer than this build supports ({supported})"
    )]
    SchemaTooNew { stream: String, found: u32, supported: u32 },
}

impl SharedStoreError {
    /// Whether trying again later may succeed (JetStream not ready yet, no quorum, a
    /// time-out), as opposed to a stream that will never do.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SharedStoreError::Store(StoreError::Backend(_) | StoreError::Unavailable(_))
                | SharedStoreError::Authority(AuthorityError::Store(
                    StoreError::Backend(_) | StoreError::Unavailable(_)
                ))
        )
    }
}

/// Records per seeding batch: well under one atomic publish's limit.
const SEED_BATCH: usize = MAX_BATCH_MESSAGES / 2;

/// Opens the shared store over `client` and returns `seed`'s master key over it.
///
/// If the stream has no master-key check yet, every record of the seed is copied into it
/// first, each only if absent, the check last: a stream with the check holds a whole trust
/// chain, and an instance that dies while seeding leaves the next one to finish.
///
/// # Errors
/// [`SharedStoreError::ForeignOperator`], [`SharedStoreError::SchemaTooNew`],
/// [`SharedStoreError::Incomplete`], a wrong master key, store failures (transient ones say
/// so: [`SharedStoreError::is_transient`]).
pub async fn open(
    seed: &Authority,
    client: async_nats::Client,
    options: &JetStreamOptions,
) -> Result<Authority, SharedStoreError> {
    let store = JetStreamStore::open(client, options).await?;
    tracing::info!(stream = %options.stream, replicas = options.replicas, reads = ?store.read_path(), "opened the shared store");
    let db = Db::new(Arc::new(store));
    let stream = options.stream.clone();
    if db.meta(authority::KEY_CHECK).await?.is_none() {
        let copied = copy_seed(seed.db(), &db).await?;
        tracing::info!(%stream, copied, "seeded the shared store from the local trust chain");
    }
    match db.meta(SCHEMA_KEY).await? {
        None => return Err(SharedStoreError::Incomplete { stream, what: "schema version" }),
        Some(bytes) => {
            let found = crate::store::parse_schema_version(&bytes);
            let Some(found) = found else {
                return Err(SharedStoreError::Incomplete {
                    stream,
                    what: "readable schema version",
                });
            };
            if found > SCHEMA_VERSION {
                return Err(SharedStoreError::SchemaTooNew {
                    stream,
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
    }
    let local = seed.operator().await?.identity.public;
    let Some(found) = db.get::<OperatorRecord>(OPERATOR_KEY).await? else {
        return Err(SharedStoreError::Incomplete { stream, what: "operator record" });
    };
    if found.identity.public != local {
        return Err(SharedStoreError::ForeignOperator {
            stream,
            local,
            found: found.identity.public,
        });
    }
    Ok(seed.with_db(db).await?)
}

/// Copies every record of `from` that `to` lacks, the master-key check last. Returns how many
/// records this call wrote.
async fn copy_seed(from: &Db, to: &Db) -> Result<usize, StoreError> {
    let (mut rows, check): (Vec<_>, Vec<_>) = from
        .export()
        .await?
        .into_iter()
        .partition(|(tree, key, _)| !(*tree == Tree::Meta && key == authority::KEY_CHECK));
    rows.extend(check);
    let mut copied = 0;
    let mut rest = rows.as_slice();
    while !rest.is_empty() {
        // The check alone in the last batch: it is the mark of a whole copy.
        let n = if rest.len() == 1 { 1 } else { (rest.len() - 1).min(SEED_BATCH) };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut batch = Batch::new();
        for (tree, key, value) in chunk {
            batch.push(absent_put(*tree, key, value));
        }
        match to.commit(batch).await {
            Ok(()) => copied += chunk.len(),
            // Another instance is seeding too (or one died half-way): copy what is still
            // missing one record at a time.
            Err(StoreError::Conflict { .. }) => {
                for (tree, key, value) in chunk {
                    let mut one = Batch::new();
                    one.push(absent_put(*tree, key, value));
                    match to.commit(one).await {
                        Ok(()) => copied += 1,
                        // Written by the other seeder meanwhile.
                        Err(StoreError::Conflict { kind: ConflictKind::Exists, .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(copied)
}

fn absent_put(tree: Tree, key: &str, value: &[u8]) -> Op {
    Op::Put { tree, key: key.to_string(), value: value.to_vec(), expect: Expect::Absent }
}

/// When a tree is signalled again after a message about it: the message reaches subscribers
/// as it is published, before the stream has stored it (and, replicated, before the leader
/// applied it), so a waiter woken at once may read the old state. A later signal finds the
/// write stored; two delays cover a quick store and a loaded one.
const RESIGNAL_AFTER: [Duration; 2] = [Duration::from_millis(100), Duration::from_secs(1)];

/// Until `stop`: signals on `db` every tree that any instance writes, as seen on the store's
/// subjects (core NATS), and every tree after a reconnect (messages may have been missed
/// while the connection was down).
///
/// # Errors
/// When the subscription cannot be made (the client is closed).
pub async fn follow(
    db: Db,
    client: async_nats::Client,
    mut link: watch::Receiver<Link>,
    stop: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut messages = client.subscribe(format!("{SUBJECT_PREFIX}.>")).await?;
    // Per tree and delay, when to signal it again; a newer message pushes it later.
    let mut again: Vec<[Option<Instant>; 2]> = vec![[None; 2]; Tree::ALL.len()];
    let mut epoch = link.borrow().epoch;
    loop {
        let next = again.iter().flatten().flatten().min().copied();
        tokio::select! {
            () = stop.cancelled() => break,
            message = messages.next() => {
                let Some(message) = message else { break };
                let tree = message
                    .subject
                    .strip_prefix(SUBJECT_PREFIX)
                    .and_then(|rest| rest.split('.').nth(1))
                    .and_then(Tree::from_name);
                if let Some(tree) = tree {
                    db.bump(tree);
                    let now = Instant::now();
                    let slot = &mut again[index(tree)];
                    for (at, delay) in slot.iter_mut().zip(RESIGNAL_AFTER) {
                        *at = Some(now + delay);
                    }
                }
            }
            () = sleep_until(next) => {
                let now = Instant::now();
                for (tree, slot) in Tree::ALL.iter().zip(again.iter_mut()) {
                    for at in slot.iter_mut() {
                        if at.is_some_and(|t| t <= now) {
                            *at = None;
                            db.bump(*tree);
                        }
                    }
                }
            }
            changed = link.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *link.borrow_and_update();
                if now.up && now.epoch != epoch {
                    epoch = now.epoch;
                    tracing::debug!("reconnected: signalling every tree");
                    for tree in Tree::ALL {
                        db.bump(tree);
                    }
                }
            }
        }
    }
    let _ = messages.unsubscribe().await;
    Ok(())
}

fn index(tree: Tree) -> usize {
    Tree::ALL.iter().position(|t| *t == tree).expect("every tree is in ALL")
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
