//! The embedded backend: one sled database in the data dir, one sled tree per [`Tree`].

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::{Batch, ConflictKind, Expect, Op, Store, StoreError, Tree, SCHEMA_KEY, SCHEMA_VERSION};

/// The lock file a running nats-authd holds in the store dir.
pub const LOCK_FILE: &str = "nats-authd.lock";
/// sled's main file; a store without it has lost its data (sled would start an empty one).
pub const DB_FILE: &str = "db";
/// sled's page cache bound: a soft one, sled's own bookkeeping comes on top.
const CACHE_BYTES: u64 = 32 << 20;

/// Whether [`SledStore::open`] may create a new store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the store if the dir has none (`init`).
    CreateIfMissing,
    /// The store must exist (`serve`): a typo in a path must not start an empty service.
    MustExist,
}

/// sled-backed [`Store`]. Holds an exclusive lock on the dir while open.
pub struct SledStore {
    inner: Arc<Inner>,
}

/// Trees whose number of keys is kept as batches commit, so that counting them (`status`)
/// reads a number instead of walking every key: on a store of 100,000 users that walk took
/// ~250 ms and left ~25 MiB of sled's pages resident in the process that wrote them.
const COUNTED: [Tree; 3] = [Tree::Accounts, Tree::Users, Tree::Roles];

struct Inner {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// Keys per tree, by [`index`]; kept for [`COUNTED`] trees only (counted once at open,
    /// then by what each committed batch inserted and removed).
    counts: Vec<AtomicI64>,
    // Held for the store's lifetime; the OS releases it when the process dies, even on kill -9.
    _lock: Option<File>,
}

fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::backend(e)
}

/// Whether `dir` holds anything at all (a file or a dir of any kind). An absent dir holds
/// nothing. Used to tell "no store here" from "a store, possibly damaged": anything left in a
/// store dir means a store was there, and nothing may be created over it.
///
/// # Errors
/// [`StoreError::Backend`] if the dir exists but cannot be read.
pub fn holds_anything(dir: &Path) -> Result<bool, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().transpose().map_err(backend)?.is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(backend(format!("{}: {e}", dir.display()))),
    }
}

/// The exclusive lock on a store dir, taken before the store is opened, so that a caller can
/// look at the dir's files (or copy them) knowing no other process is writing them.
#[derive(Debug)]
pub struct StoreLock {
    dir: PathBuf,
    file: File,
}

impl StoreLock {
    /// Takes the lock on `dir`, creating the dir (mode 0700) and the lock file if missing.
    ///
    /// # Errors
    /// [`StoreError::Locked`] if another process has the store open, backend errors.
    pub fn take(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            // Records (password hashes among them) are readable by the owner only.
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(backend)?;
        }
        let file = take_lock(&dir.join(LOCK_FILE), &dir.display().to_string())?;
        Ok(StoreLock { dir: dir.to_path_buf(), file })
    }

    /// The locked dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the store under this lock, which the store then holds until it is dropped.
    ///
    /// # Errors
    /// As [`SledStore::open`].
    pub fn open(self, mode: OpenMode) -> Result<SledStore, StoreError> {
        let exists = self.dir.join(DB_FILE).exists();
        if !exists && mode == OpenMode::MustExist {
            return Err(StoreError::NotInitialized { path: self.dir.display().to_string() });
        }
        if exists {
            wait_for_sled_lock(&self.dir.join(DB_FILE))?;
        }
        // sled's default cache is 1 GiB, so the whole store ends up cached; 32 MiB cost no create
        // rate at 100,000 users (README "Performance → Scale").
        let config = sled::Config::new().path(&self.dir).cache_capacity(CACHE_BYTES);
        let db = config.open().map_err(backend)?;
        SledStore::from_db(db, Some(self.file))
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Locked`] if another process has it open, [`StoreError::NotInitialized`]
    /// with [`OpenMode::MustExist`] when the dir has no sled db, [`StoreError::SchemaTooNew`]
    /// for a store written by a newer build, [`StoreError::Corrupt`] for an existing store
    /// without a schema version.
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Self, StoreError> {
        if mode == OpenMode::MustExist && !dir.join(DB_FILE).exists() {
            // Checked before the lock, so a mistyped path creates nothing.
            return Err(StoreError::NotInitialized { path: dir.display().to_string() });
        }
        StoreLock::take(dir)?.open(mode)
    }

    /// An in-memory store that vanishes on drop, for tests.
    ///
    /// # Errors
    /// Backend failures.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open().map_err(backend)?;
        Self::from_db(db, None)
    }

    fn from_db(db: sled::Db, lock: Option<File>) -> Result<Self, StoreError> {
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        let meta = &trees[index(Tree::Meta)];
        match meta.get(SCHEMA_KEY).map_err(backend)? {
            Some(v) => {
                let found = super::parse_schema_version(&v).ok_or_else(|| StoreError::Corrupt {
                    tree: Tree::Meta,
                    key: SCHEMA_KEY.into(),
                    message: "not a number".into(),
                })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
                }
            }
            // Only a brand-new database gets a version. One that sled recovered from disk but
            // that has none lost records: stamping it would pass it off as a sound store.
            None if db.was_recovered() => {
                return Err(StoreError::Corrupt {
                    tree: Tree::Meta,
                    key: SCHEMA_KEY.into(),
                    message: "missing: the store is incomplete".into(),
                });
            }
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes()).map_err(backend)?;
                db.flush().map_err(backend)?;
            }
        }
        let counts = Tree::ALL
            .iter()
            .zip(&trees)
            .map(|(tree, t)| {
                AtomicI64::new(if COUNTED.contains(tree) { t.len() as i64 } else { 0 })
            })
            .collect();
        Ok(SledStore { inner: Arc::new(Inner { db, trees, counts, _lock: lock }) })
    }
}

/// Longest wait for a store closed in this process to let go of sled's own lock.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until sled's own lock on its `db` file is free.
///
/// A dropped `sled::Db` releases that lock only when its background threads have let go of
/// the file, a moment later (and a child forked meanwhile by another thread holds it until it
/// execs); reopening at once (a store closed and opened again in one process, as `init` and
/// the tests do) would fail with sled's "could not acquire lock".
/// Our lock file is held by now, so no other process can hold sled's lock: whoever does is a
/// closing handle of ours, and waiting is safe.
fn wait_for_sled_lock(db_file: &Path) -> Result<(), StoreError> {
    let give_up = std::time::Instant::now() + SLED_LOCK_WAIT;
    let file = File::options().read(true).write(true).open(db_file).map_err(backend)?;
    loop {
        match file.try_lock() {
            Ok(()) => return file.unlock().map_err(backend),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: db_file.display().to_string(),
                    lock: db_file.display().to_string(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(backend(e)),
        }
    }
}

/// How long a lock held elsewhere is retried before the store counts as in use.
///
/// A store just closed in this process can still look locked for a moment: a child process
/// forked by another thread (nats-server, say) shares every open file until it execs, the
/// lock file's description included. A second nats-authd process holds it for good, and is
/// reported after this wait.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(1500);

fn take_lock(path: &Path, dir: &str) -> Result<File, StoreError> {
    let file =
        File::options().create(true).truncate(false).write(true).open(path).map_err(backend)?;
    let give_up = std::time::Instant::now() + LOCK_RETRY;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: dir.to_string(),
                    lock: PathBuf::from(path).display().to_string(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(backend(e)),
        }
    }
}

fn index(tree: Tree) -> usize {
    Tree::ALL.iter().position(|t| *t == tree).expect("every tree is in ALL")
}

fn check(
    view: &TransactionalTree,
    tree: Tree,
    key: &str,
    expect: &Expect,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let conflict = |kind| {
        ConflictableTransactionError::Abort(StoreError::Conflict { tree, key: key.into(), kind })
    };
    let current = view.get(key)?;
    match (expect, current) {
        (Expect::Any, _) => Ok(()),
        (Expect::Absent, Some(_)) => Err(conflict(ConflictKind::Exists)),
        (Expect::Present, None) => Err(conflict(ConflictKind::Missing)),
        (Expect::Value(want), Some(have)) if have.as_ref() != want.as_slice() => {
            Err(conflict(ConflictKind::Changed))
        }
        (Expect::Value(_), None) => Err(conflict(ConflictKind::Changed)),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for SledStore {
    // Reads are served from sled's page cache in microseconds and never fsync, so they run on
    // the caller's task; only commits (which fsync) go to the blocking pool.
    async fn get(&self, tree: Tree, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.inner.trees[index(tree)].get(key).map_err(backend)?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn scan(&self, tree: Tree, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.trees[index(tree)]
            .scan_prefix(prefix)
            .map(|row| {
                let (k, v) = row.map_err(backend)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    // Kept counts for whole counted trees; otherwise keys only: a count must not copy every
    // record to count it.
    async fn count(&self, tree: Tree, prefix: &str) -> Result<usize, StoreError> {
        if prefix.is_empty() && COUNTED.contains(&tree) {
            return Ok(self.inner.counts[index(tree)].load(Ordering::Acquire).max(0) as usize);
        }
        self.inner.trees[index(tree)]
            .scan_prefix(prefix)
            .keys()
            .try_fold(0, |n, key| key.map(|_| n + 1))
            .map_err(backend)
    }

    // A range read from the cursor: a page costs its own rows, not the whole prefix.
    async fn scan_page(
        &self,
        tree: Tree,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.as_bytes()),
            _ => Bound::Included(prefix.as_bytes()),
        };
        self.inner.trees[index(tree)]
            .range::<&[u8], _>((start, Bound::Unbounded))
            .take_while(|row| row.as_ref().map_or(true, |(k, _)| k.starts_with(prefix.as_bytes())))
            .take(limit)
            .map(|row| {
                let (k, v) = row.map_err(backend)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            if let Some(tree) = unconditional_on_one_tree(&batch) {
                // Session writes and removals (one per login): nothing to check, one tree.
                // sled applies a batch to one tree atomically without a transaction over
                // every tree, which cost as much CPU as the rest of the store work per login.
                let mut writes = sled::Batch::default();
                for op in batch.ops() {
                    match op {
                        Op::Put { key, value, .. } => {
                            writes.insert(key.as_bytes(), value.as_slice())
                        }
                        Op::Delete { key, .. } => writes.remove(key.as_bytes()),
                        Op::Check { .. } => unreachable!("a batch with checks takes a transaction"),
                    }
                }
                inner.trees[index(tree)].apply_batch(writes).map_err(backend)?;
                inner.db.flush().map_err(backend)?;
                return Ok(());
            }
            // Keys added (+1) and removed (-1) per tree by the attempt that commits: sled may
            // run the closure more than once, so each attempt starts from zero.
            let added = std::cell::RefCell::new(vec![0i64; Tree::ALL.len()]);
            let result = inner.trees[..].transaction(|views| {
                let mut added = added.borrow_mut();
                added.iter_mut().for_each(|n| *n = 0);
                for op in batch.ops() {
                    match op {
                        Op::Put { tree, key, value, expect } => {
                            let view = &views[index(*tree)];
                            check(view, *tree, key, expect)?;
                            if view.insert(key.as_bytes(), value.as_slice())?.is_none() {
                                added[index(*tree)] += 1;
                            }
                        }
                        Op::Delete { tree, key, expect } => {
                            let view = &views[index(*tree)];
                            check(view, *tree, key, expect)?;
                            if view.remove(key.as_bytes())?.is_some() {
                                added[index(*tree)] -= 1;
                            }
                        }
                        Op::Check { tree, key, expect } => {
                            check(&views[index(*tree)], *tree, key, expect)?;
                        }
                    }
                }
                Ok(())
            });
            match result {
                Ok(()) => {
                    for (count, n) in inner.counts.iter().zip(added.into_inner()) {
                        if n != 0 {
                            count.fetch_add(n, Ordering::AcqRel);
                        }
                    }
                }
                Err(TransactionError::Abort(e)) => return Err(e),
                Err(TransactionError::Storage(e)) => return Err(backend(e)),
            }
            // Acknowledged means on disk: a kill -9 after this returns loses nothing.
            inner.db.flush().map_err(backend)?;
            Ok(())
        })
        .await
        .map_err(backend)?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.db.flush().map(|_| ()).map_err(backend))
            .await
            .map_err(backend)?
    }
}

/// The one tree of `batch` when it only writes or deletes there with nothing to check (and
/// is not [`COUNTED`]: sled's batch does not say which keys were new).
fn unconditional_on_one_tree(batch: &Batch) -> Option<Tree> {
    let mut only = None;
    for op in batch.ops() {
        let tree = match op {
            Op::Put { tree, expect: Expect::Any, .. }
            | Op::Delete { tree, expect: Expect::Any, .. } => *tree,
            _ => return None,
        };
        if *only.get_or_insert(tree) != tree {
            return None;
        }
    }
    only.filter(|tree| !COUNTED.contains(tree))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Db, Record};

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Thing {
        name: String,
        n: u32,
    }
    impl Record for Thing {
        const TREE: Tree = Tree::Roles;
        fn key(&self) -> String {
            self.name.clone()
        }
    }

    fn thing(name: &str, n: u32) -> Thing {
        Thing { name: name.into(), n }
    }

    #[tokio::test]
    async fn batch_is_all_or_nothing() {
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        let mut b = Batch::new();
        b.create(&thing("a", 1));
        db.commit(b).await.unwrap();

        let mut b = Batch::new();
        b.create(&thing("b", 2)).create(&thing("a", 3));
        let err = db.commit(b).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { kind: ConflictKind::Exists, ref key, .. } if key == "a"),
            "{err}"
        );
        assert_eq!(db.get::<Thing>("b").await.unwrap(), None, "b must not be written");
        assert_eq!(db.get::<Thing>("a").await.unwrap(), Some(thing("a", 1)));
    }

    #[tokio::test]
    async fn conditions_guard_updates_and_deletes() {
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        let mut b = Batch::new();
        b.delete::<Thing>("missing");
        assert!(matches!(
            db.commit(b).await,
            Err(StoreError::Conflict { kind: ConflictKind::Missing, .. })
        ));

        let mut b = Batch::new();
        b.put(&thing("a", 1));
        db.commit(b).await.unwrap();
        let stale = serde_json::to_vec(&thing("a", 0)).unwrap();
        let mut b = Batch::new();
        b.put_with(&thing("a", 2), Expect::Value(stale));
        assert!(matches!(
            db.commit(b).await,
            Err(StoreError::Conflict { kind: ConflictKind::Changed, .. })
        ));
        let current = serde_json::to_vec(&thing("a", 1)).unwrap();
        let mut b = Batch::new();
        b.put_with(&thing("a", 2), Expect::Value(current));
        db.commit(b).await.unwrap();
        assert_eq!(db.get::<Thing>("a").await.unwrap().unwrap().n, 2);
    }

    #[tokio::test]
    async fn list_scans_by_prefix_in_order() {
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        let mut b = Batch::new();
        b.put(&thing("acme/b", 2)).put(&thing("acme/a", 1)).put(&thing("other/a", 3));
        db.commit(b).await.unwrap();
        let names: Vec<_> =
            db.list::<Thing>("acme/").await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["acme/a", "acme/b"]);
    }

    #[tokio::test]
    async fn a_paged_scan_starts_after_the_cursor_and_stays_in_the_prefix() {
        let store = SledStore::temporary().unwrap();
        let db = Db::new(Arc::new(store));
        let mut batch = Batch::new();
        for (name, n) in [("a/1", 1), ("a/2", 2), ("a/3", 3), ("b/1", 4)] {
            batch.put(&thing(name, n));
        }
        db.commit(batch).await.unwrap();
        let keys =
            |rows: Vec<(String, Thing)>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(db.list_page::<Thing>("a/", None, 2).await.unwrap()), ["a/1", "a/2"]);
        assert_eq!(keys(db.list_page::<Thing>("a/", Some("a/2"), 2).await.unwrap()), ["a/3"]);
        assert!(db.list_page::<Thing>("a/", Some("a/3"), 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn second_open_is_refused_and_missing_store_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SledStore::open(dir.path(), OpenMode::MustExist);
        assert!(matches!(missing, Err(StoreError::NotInitialized { .. })));
        let _first = SledStore::open(dir.path(), OpenMode::CreateIfMissing).unwrap();
        let second = SledStore::open(dir.path(), OpenMode::CreateIfMissing);
        assert!(matches!(second, Err(StoreError::Locked { .. })));
    }

    #[tokio::test]
    async fn only_unconditional_single_tree_batches_skip_the_transaction() {
        let put = |tree, expect| Op::Put { tree, key: "k".into(), value: b"v".to_vec(), expect };
        let batch = |ops: Vec<Op>| {
            let mut b = Batch::new();
            for op in ops {
                b.push(op);
            }
            b
        };
        let sessions = batch(vec![
            put(Tree::Sessions, Expect::Any),
            Op::Delete { tree: Tree::Sessions, key: "j".into(), expect: Expect::Any },
        ]);
        assert_eq!(unconditional_on_one_tree(&sessions), Some(Tree::Sessions));
        let two_trees =
            batch(vec![put(Tree::Sessions, Expect::Any), put(Tree::Roles, Expect::Any)]);
        assert_eq!(unconditional_on_one_tree(&two_trees), None);
        let checked = batch(vec![put(Tree::Sessions, Expect::Absent)]);
        assert_eq!(unconditional_on_one_tree(&checked), None);
        assert_eq!(unconditional_on_one_tree(&Batch::new()), None);

        // Applied whole, and the delete of a missing key is not an error.
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        db.commit(batch(vec![
            Op::Put {
                tree: Tree::Roles,
                key: "a".into(),
                value: b"1".to_vec(),
                expect: Expect::Any,
            },
            Op::Put {
                tree: Tree::Roles,
                key: "b".into(),
                value: b"2".to_vec(),
                expect: Expect::Any,
            },
            Op::Delete { tree: Tree::Roles, key: "c".into(), expect: Expect::Any },
        ]))
        .await
        .unwrap();
        assert_eq!(db.store().scan(Tree::Roles, "").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn kept_counts_follow_every_commit_and_are_counted_again_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let walked = |db: &Db| {
            let store = Arc::clone(db.store());
            async move { store.scan(Tree::Roles, "").await.unwrap().len() }
        };
        {
            let db =
                Db::new(Arc::new(SledStore::open(dir.path(), OpenMode::CreateIfMissing).unwrap()));
            let mut b = Batch::new();
            b.create(&thing("a", 1)).create(&thing("b", 2));
            db.commit(b).await.unwrap();
            assert_eq!(db.count::<Thing>().await.unwrap(), 2);
            // Overwritten, not added; one tree with no condition (the fast path elsewhere).
            let mut b = Batch::new();
            b.put(&thing("a", 3));
            db.commit(b).await.unwrap();
            assert_eq!(db.count::<Thing>().await.unwrap(), 2);
            // A batch that fails counts nothing, though its first write was new.
            let mut b = Batch::new();
            b.create(&thing("c", 1)).create(&thing("a", 1));
            db.commit(b).await.unwrap_err();
            assert_eq!(db.count::<Thing>().await.unwrap(), 2);
            // Removing a missing key removes nothing.
            let mut b = Batch::new();
            b.delete_with::<Thing>("a", Expect::Any).delete_with::<Thing>("zz", Expect::Any);
            db.commit(b).await.unwrap();
            assert_eq!(db.count::<Thing>().await.unwrap(), 1);
            assert_eq!(walked(&db).await, 1);
            assert_eq!(db.store().count(Tree::Roles, "b").await.unwrap(), 1, "a prefix walks");
        }
        let db = Db::new(Arc::new(SledStore::open(dir.path(), OpenMode::MustExist).unwrap()));
        assert_eq!(db.count::<Thing>().await.unwrap(), 1, "counted at open");
    }

    #[tokio::test]
    async fn committed_data_survives_reopen_and_schema_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db =
                Db::new(Arc::new(SledStore::open(dir.path(), OpenMode::CreateIfMissing).unwrap()));
            let mut b = Batch::new();
            b.put(&thing("a", 1));
            db.commit(b).await.unwrap();
        }
        {
            let store = SledStore::open(dir.path(), OpenMode::MustExist).unwrap();
            let db = Db::new(Arc::new(store));
            assert_eq!(db.get::<Thing>("a").await.unwrap(), Some(thing("a", 1)));
            db.store()
                .commit({
                    let mut b = Batch::new();
                    b.push(Op::Put {
                        tree: Tree::Meta,
                        key: SCHEMA_KEY.into(),
                        value: b"99".to_vec(),
                        expect: Expect::Any,
                    });
                    b
                })
                .await
                .unwrap();
        }
        let err = SledStore::open(dir.path(), OpenMode::MustExist).err().unwrap();
        assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }));
    }
}
