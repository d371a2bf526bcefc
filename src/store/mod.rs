//! The store boundary: typed records over a key-value backend with atomic, durable batches.
//!
//! [`Store`] is what a backend implements: byte values in a few named collections ([`Tree`]),
//! prefix scans, and [`Batch`]es that apply all-or-nothing and are on disk when `commit`
//! returns. [`Db`] puts typed records on top. sled is the embedded backend ([`sled::SledStore`]);
//! the trait is async and speaks in keys, revision-free conditions and batches so that a NATS
//! JetStream KV backend (atomic batch publish, per-key expected state) can implement it too.

pub mod choice;
pub mod jetstream;
pub mod migrate;
pub mod sled;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::model::{
    AccountRecord, LoginRecord, OperatorRecord, RoleRecord, TokenRecord, UserRecord,
};

/// Rows read at a time by the default [`Store::count`].
pub const COUNT_PAGE: usize = 1000;

/// The schema version this build reads and writes. Version 2 added [`Tree::Logins`]; a
/// version-1 store gets it built when opened ([`migrate::run`]). Version 3 records the creds
/// issued per user (`creds_issued`) and when revocations may go (`revocations_expire`):
/// nothing to convert, but a version-2 build must not write the store any more.
pub const SCHEMA_VERSION: u32 = 3;

/// Meta key of the schema version (decimal text).
pub const SCHEMA_KEY: &str = "schema_version";

/// The schema version a [`SCHEMA_KEY`] value holds, if it is one.
pub fn parse_schema_version(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A named collection of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Store-wide values: schema version, master-key check.
    Meta,
    Operator,
    Accounts,
    Users,
    Roles,
    /// Account JWT pushes waiting for the publisher.
    Pending,
    /// API tokens, by id.
    Tokens,
    /// Login names: which tenant account has a user of that name with a password
    /// ([`crate::model::LoginRecord`]), so a bare-name login reads one key.
    Logins,
    /// Connections admitted through the callout, kept so they can be kicked after a restart.
    Sessions,
    /// Coordination between running instances (the publisher lease, replies kept for
    /// retried requests): short-lived, rewritten all the time, left out of [`Db::export`].
    Runtime,
}

impl Tree {
    /// Every tree, in a fixed order.
    pub const ALL: [Tree; 10] = [
        Tree::Meta,
        Tree::Operator,
        Tree::Accounts,
        Tree::Users,
        Tree::Roles,
        Tree::Pending,
        Tree::Tokens,
        Tree::Logins,
        Tree::Sessions,
        Tree::Runtime,
    ];

    /// The backend's name for the tree.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Operator => "operator",
            Tree::Accounts => "accounts",
            Tree::Users => "users",
            Tree::Roles => "roles",
            Tree::Pending => "pending",
            Tree::Tokens => "tokens",
            Tree::Logins => "logins",
            Tree::Sessions => "sessions",
            Tree::Runtime => "runtime",
        }
    }

    /// The tree a backend name stands for.
    pub fn from_name(name: &str) -> Option<Tree> {
        Tree::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or handle) holds the data dir.
    #[error("store {path} is in use by another nats-authd process (lock file {lock})")]
    Locked { path: String, lock: String },
    /// `serve`/`up` pointed at a dir where `init` never ran.
    #[error("no nats-authd store in {path}; run `nats-authd init --data-dir {path}` first")]
    NotInitialized { path: String },
    /// The data dir was written by a newer nats-authd.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    /// A batch condition failed; nothing in the batch was written.
    #[error("{} record {key:?} {kind}", tree.name())]
    Conflict { tree: Tree, key: String, kind: ConflictKind },
    /// A stored value does not decode as its record type.
    #[error("{tree:?} record {key:?} is corrupt: {message}")]
    Corrupt { tree: Tree, key: String, message: String },
    /// The backend cannot answer for now (a JetStream stream without a leader: quorum lost,
    /// or an election under way); nothing was written, and retrying later is the remedy.
    #[error("the store is unavailable for now (JetStream has no leader for it)")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend failed.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend's own error.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Backend(e.into())
    }
}

/// Which condition of a batch failed: what callers branch on (a create that found the name
/// taken is not a record that changed under an update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// A create found the key taken ([`Expect::Absent`]).
    Exists,
    /// The record is gone ([`Expect::Present`]).
    Missing,
    /// The record is not the one the batch was built from ([`Expect::Value`]).
    Changed,
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConflictKind::Exists => "already exists",
            ConflictKind::Missing => "does not exist",
            ConflictKind::Changed => "changed concurrently",
        })
    }
}

/// A condition a batch operation needs to hold for the whole batch to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key must exist (update, delete).
    Present,
    /// The key must hold exactly these bytes (compare-and-swap).
    Value(Vec<u8>),
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write `value` under `key`.
    Put { tree: Tree, key: String, value: Vec<u8>, expect: Expect },
    /// Remove `key`.
    Delete { tree: Tree, key: String, expect: Expect },
    /// Write nothing; only require `expect` of `key` (a parent that must not have changed).
    Check { tree: Tree, key: String, expect: Expect },
}

/// Writes that apply together or not at all.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Adds a raw operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Writes `record`, which must not exist yet.
    pub fn create<R: Record>(&mut self, record: &R) -> &mut Self {
        self.put_with(record, Expect::Absent)
    }

    /// Writes `record`, whatever was there.
    pub fn put<R: Record>(&mut self, record: &R) -> &mut Self {
        self.put_with(record, Expect::Any)
    }

    /// Writes `record` under a condition.
    pub fn put_with<R: Record>(&mut self, record: &R, expect: Expect) -> &mut Self {
        let value = serde_json::to_vec(record).expect("records serialize to JSON");
        self.push(Op::Put { tree: R::TREE, key: record.key(), value, expect })
    }

    /// Removes the `R` stored under `key`, which must exist.
    pub fn delete<R: Record>(&mut self, key: &str) -> &mut Self {
        self.delete_with::<R>(key, Expect::Present)
    }

    /// Removes the `R` stored under `key` under a condition.
    pub fn delete_with<R: Record>(&mut self, key: &str, expect: Expect) -> &mut Self {
        self.push(Op::Delete { tree: R::TREE, key: key.to_string(), expect })
    }

    /// Removes `record`, which must still be stored exactly as given.
    pub fn delete_unchanged<R: Record>(&mut self, record: &R) -> &mut Self {
        let expect = Expect::Value(serde_json::to_vec(record).expect("records serialize to JSON"));
        self.push(Op::Delete { tree: R::TREE, key: record.key(), expect })
    }

    /// Requires `record` to be stored exactly as given, without writing it: the batch fails
    /// if it changed (say, an account deleted while a user was being added to it).
    pub fn require<R: Record>(&mut self, record: &R) -> &mut Self {
        let expect = Expect::Value(serde_json::to_vec(record).expect("records serialize to JSON"));
        self.push(Op::Check { tree: R::TREE, key: record.key(), expect })
    }

    /// Writes `record` only if the stored one is still `current` (compare-and-swap).
    pub fn replace<R: Record>(&mut self, current: &R, record: &R) -> &mut Self {
        let expect = Expect::Value(serde_json::to_vec(current).expect("records serialize to JSON"));
        self.put_with(record, expect)
    }
}

/// A backend: byte values in trees, atomic and durable batches.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value under `key`.
    async fn get(&self, tree: Tree, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every key and value whose key starts with `prefix`, in key order.
    async fn scan(&self, tree: Tree, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// At most `limit` keys and values whose key starts with `prefix` and sorts after `after`
    /// (from the first if `None`), in key order: one page of a list, read without scanning
    /// the rest. The default filters [`Store::scan`]; backends override it with a range read.
    async fn scan_page(
        &self,
        tree: Tree,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = self.scan(tree, prefix).await?;
        Ok(rows
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .take(limit)
            .collect())
    }
    /// How many keys start with `prefix`. The default reads [`COUNT_PAGE`] rows at a time, so
    /// memory stays bounded by a page however big the tree; backends that can count keys
    /// without reading values override it.
    async fn count(&self, tree: Tree, prefix: &str) -> Result<usize, StoreError> {
        let mut counted = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.scan_page(tree, prefix, after.as_deref(), COUNT_PAGE).await?;
            counted += page.len();
            if page.len() < COUNT_PAGE {
                return Ok(counted);
            }
            after = page.last().map(|(key, _)| key.clone());
        }
    }
    /// Applies every operation or none; durable when it returns `Ok`.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a condition fails (nothing is written).
    async fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// Makes everything written so far durable.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Whether other processes may write this store at the same time (several instances over
    /// one shared store). A store only this process opens (sled locks its dir) says `false`,
    /// so anything found in it that names another process was left by an earlier run.
    fn is_shared(&self) -> bool {
        false
    }
}

/// A type kept in one tree, under a key derived from its content.
pub trait Record: Serialize + DeserializeOwned + Send {
    /// The tree it lives in.
    const TREE: Tree;
    /// Its key in that tree.
    fn key(&self) -> String;
}

/// Key of the single operator record.
pub const OPERATOR_KEY: &str = "operator";

impl Record for OperatorRecord {
    const TREE: Tree = Tree::Operator;
    fn key(&self) -> String {
        OPERATOR_KEY.to_string()
    }
}

impl Record for AccountRecord {
    const TREE: Tree = Tree::Accounts;
    fn key(&self) -> String {
        self.name.to_string()
    }
}

impl Record for UserRecord {
    const TREE: Tree = Tree::Users;
    fn key(&self) -> String {
        UserRecord::key_of(&self.account, &self.name)
    }
}

impl Record for RoleRecord {
    const TREE: Tree = Tree::Roles;
    fn key(&self) -> String {
        RoleRecord::key_of(&self.account, &self.name)
    }
}

impl Record for TokenRecord {
    const TREE: Tree = Tree::Tokens;
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Record for LoginRecord {
    const TREE: Tree = Tree::Logins;
    fn key(&self) -> String {
        self.name.to_string()
    }
}

/// Typed access to a [`Store`]; cheap to clone.
///
/// Every clone shares one set of change signals, one per tree: a commit that writes a tree
/// bumps its counter, so whoever waits on a tree (the claims publisher on the queue) wakes
/// whichever handle wrote it.
#[derive(Clone)]
pub struct Db {
    store: Arc<dyn Store>,
    changes: Arc<HashMap<Tree, watch::Sender<u64>>>,
}

impl Db {
    /// Wraps a backend.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let changes = Tree::ALL.iter().map(|t| (*t, watch::channel(0).0)).collect();
        Db { store, changes: Arc::new(changes) }
    }

    /// Changes whenever a commit through any clone of this `Db` writes `tree`.
    pub fn changes(&self, tree: Tree) -> watch::Receiver<u64> {
        self.changes[&tree].subscribe()
    }

    /// Signals a change of `tree` that another process committed (seen on the wire): whoever
    /// waits on [`Db::changes`] wakes as for a local commit. A signal with no change behind it
    /// only costs the waiter a look.
    pub fn bump(&self, tree: Tree) {
        self.changes[&tree].send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The backend.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The `R` under `key`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the stored bytes are not an `R`.
    pub async fn get<R: Record>(&self, key: &str) -> Result<Option<R>, StoreError> {
        match self.store.get(R::TREE, key).await? {
            None => Ok(None),
            Some(bytes) => decode::<R>(key, &bytes).map(Some),
        }
    }

    /// Every `R` whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a stored value is not an `R`.
    pub async fn list<R: Record>(&self, prefix: &str) -> Result<Vec<R>, StoreError> {
        let rows = self.store.scan(R::TREE, prefix).await?;
        rows.iter().map(|(k, v)| decode::<R>(k, v)).collect()
    }

    /// At most `limit` `R`s (with their keys) whose key starts with `prefix` and sorts after
    /// `after`, in key order: one page.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a stored value is not an `R`.
    pub async fn list_page<R: Record>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, R)>, StoreError> {
        let rows = self.store.scan_page(R::TREE, prefix, after, limit).await?;
        rows.into_iter().map(|(k, v)| decode::<R>(&k, &v).map(|r| (k, r))).collect()
    }

    /// Applies `batch` atomically and durably.
    ///
    /// # Errors
    /// As [`Store::commit`].
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let written: HashSet<Tree> = batch
            .ops()
            .iter()
            .filter_map(|op| match op {
                Op::Put { tree, .. } | Op::Delete { tree, .. } => Some(*tree),
                Op::Check { .. } => None,
            })
            .collect();
        self.store.commit(batch).await?;
        for tree in written {
            self.bump(tree);
        }
        Ok(())
    }

    /// How many `R` are stored (without decoding them).
    ///
    /// # Errors
    /// Backend failures.
    pub async fn count<R: Record>(&self) -> Result<usize, StoreError> {
        self.store.count(R::TREE, "").await
    }

    /// Every key and value of every tree but [`Tree::Runtime`] (which running instances
    /// rewrite every second and which means nothing to a restore): for backups, and for tests
    /// that prove a failed request changed nothing.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn export(&self) -> Result<Vec<(Tree, String, Vec<u8>)>, StoreError> {
        let mut rows = Vec::new();
        for tree in Tree::ALL.into_iter().filter(|t| *t != Tree::Runtime) {
            for (key, value) in self.store.scan(tree, "").await? {
                rows.push((tree, key, value));
            }
        }
        Ok(rows)
    }

    /// A meta value.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(Tree::Meta, key).await
    }
}

/// `bytes` (stored under `key`) as an `R`.
pub(crate) fn decode<R: Record>(key: &str, bytes: &[u8]) -> Result<R, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree: R::TREE,
        key: key.to_string(),
        // Position only: serde's text can quote stored values (password hashes).
        message: format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()),
    })
}
