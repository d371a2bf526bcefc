//! The durable queue of account-JWT pushes: the one owner of its records.
//!
//! One entry per account, keyed by the account's public key (a deleted account and a new one
//! of the same name are different entries). A change adds its entry in the same store batch
//! as the records it changes, so an acknowledged change is never without its push. Later
//! changes to the same account coalesce into the entry by replacing its `generation`; the
//! publisher clears an entry only if it is still the one it pushed (compare-and-swap), so a
//! change that arrives during a push is pushed next, never lost.
//!
//! Every write goes through [`Db::commit`], whose per-tree signal wakes whoever waits on the
//! queue ([`ClaimsQueue::changes`]), whichever handle wrote it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::{AccountName, AccountRecord, UnixTime};
use crate::store::{Batch, ConflictKind, Db, Expect, Record, StoreError, Tree};

/// How often [`ClaimsQueue::settled`] reads a shared store again.
const SHARED_POLL: Duration = Duration::from_millis(200);

/// State of a queued push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PendingState {
    /// Waiting to be pushed (again).
    Pending,
    /// Gave up after retries; kept for inspection until it expires.
    Failed { reason: String, failed_at: UnixTime },
}

/// One account whose JWT must be (re)pushed to the servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// Public key of the account.
    pub account_key: String,
    /// Its name, to find the record (and for people reading the queue).
    pub account: AccountName,
    /// Push a claims delete rather than an update.
    pub delete: bool,
    /// New on every enqueue; the publisher clears the entry only if it is unchanged.
    pub generation: u64,
    /// Failed pushes since the last enqueue.
    pub attempts: u32,
    /// Not before this time (backoff after a failure).
    pub next_attempt_at: UnixTime,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(flatten)]
    pub state: PendingState,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl Record for PendingUpdate {
    const TREE: Tree = Tree::Pending;
    fn key(&self) -> String {
        self.account_key.clone()
    }
}

impl PendingUpdate {
    /// A fresh entry for the account with public key `key`, due now, with a new generation.
    ///
    /// Generations need only differ between enqueues of one entry, in any process: 64 random
    /// bits do that without a counter to share.
    pub fn new(key: &str, name: &AccountName, delete: bool, now: UnixTime) -> Self {
        PendingUpdate {
            account_key: key.to_string(),
            account: name.clone(),
            delete,
            generation: rand::random(),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            state: PendingState::Pending,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether it waits to be pushed (not given up on).
    pub fn is_pending(&self) -> bool {
        matches!(self.state, PendingState::Pending)
    }
}

/// An entry as read, with the bytes it was read as: what [`ClaimsQueue::complete`] and
/// [`ClaimsQueue::fail`] compare against.
#[derive(Debug, Clone)]
pub struct Queued {
    pub entry: PendingUpdate,
    raw: Vec<u8>,
}

/// What became of a completion or failure record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Written as asked.
    Done,
    /// A newer change replaced the entry meanwhile: it stays queued for the newer state.
    Superseded,
}

/// How many entries wait and how many were given up on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub pending: usize,
    pub failed: usize,
}

/// What the publisher does after a failed push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time.
    At(UnixTime),
    /// Give up: mark it failed.
    GiveUp,
}

/// The typed API over the queue's records; cheap to clone.
#[derive(Clone)]
pub struct ClaimsQueue {
    db: Db,
}

impl std::fmt::Debug for ClaimsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimsQueue").finish_non_exhaustive()
    }
}

impl ClaimsQueue {
    /// The queue kept in `db`.
    pub fn new(db: Db) -> Self {
        ClaimsQueue { db }
    }

    /// Changes whenever any handle writes the queue.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.db.changes(Tree::Pending)
    }

    /// Adds a push of `account`'s JWT (or its deletion) to `batch`, replacing any queued one.
    pub fn enqueue(&self, batch: &mut Batch, account: &AccountRecord, delete: bool, now: UnixTime) {
        batch.put(&PendingUpdate::new(account.public_key(), &account.name, delete, now));
    }

    /// Queues a push for `key` unless an entry for it exists already (so a change queued
    /// meanwhile is never overwritten). Returns whether it queued one.
    ///
    /// # Errors
    /// Store failures.
    pub async fn enqueue_if_idle(
        &self,
        key: &str,
        name: &AccountName,
        delete: bool,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut batch = Batch::new();
        batch.put_with(&PendingUpdate::new(key, name, delete, now), Expect::Absent);
        match self.db.commit(batch).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { kind: ConflictKind::Exists, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every entry, in key order. An entry that does not decode is removed (and logged): it
    /// could never be pushed, and would block nothing else if kept, but would fill the list.
    ///
    /// # Errors
    /// Store failures.
    pub async fn entries(&self) -> Result<Vec<Queued>, StoreError> {
        let mut out = Vec::new();
        for (key, raw) in self.db.store().scan(Tree::Pending, "").await? {
            match serde_json::from_slice::<PendingUpdate>(&raw) {
                Ok(entry) => out.push(Queued { entry, raw }),
                Err(_) => {
                    tracing::error!(key, "dropping unreadable queue entry");
                    let mut batch = Batch::new();
                    batch.delete_with::<PendingUpdate>(&key, Expect::Value(raw));
                    self.settle(batch).await?;
                }
            }
        }
        Ok(out)
    }

    /// Every entry as stored.
    ///
    /// # Errors
    /// Store failures.
    pub async fn list(&self) -> Result<Vec<PendingUpdate>, StoreError> {
        Ok(self.entries().await?.into_iter().map(|q| q.entry).collect())
    }

    /// The entry for account `key`, if any.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get(&self, key: &str) -> Result<Option<PendingUpdate>, StoreError> {
        self.db.get::<PendingUpdate>(key).await
    }

    /// Counts pending and failed entries.
    ///
    /// # Errors
    /// Store failures.
    pub async fn counts(&self) -> Result<QueueCounts, StoreError> {
        let mut counts = QueueCounts::default();
        for q in self.entries().await? {
            match q.entry.state {
                PendingState::Pending => counts.pending += 1,
                PendingState::Failed { .. } => counts.failed += 1,
            }
        }
        Ok(counts)
    }

    /// Clears a pushed entry, unless a newer change replaced it.
    ///
    /// # Errors
    /// Store failures.
    pub async fn complete(&self, queued: &Queued) -> Result<Settled, StoreError> {
        let mut batch = Batch::new();
        batch.delete_with::<PendingUpdate>(
            &queued.entry.account_key,
            Expect::Value(queued.raw.clone()),
        );
        self.settle(batch).await
    }

    /// Records a failed attempt: due again at the time `retry` says, or given up on.
    ///
    /// # Errors
    /// Store failures.
    pub async fn fail(
        &self,
        queued: &Queued,
        reason: &str,
        retry: Retry,
        now: UnixTime,
    ) -> Result<Settled, StoreError> {
        let mut failed = queued.entry.clone();
        failed.attempts += 1;
        failed.last_error = Some(reason.to_string());
        failed.updated_at = now;
        match retry {
            Retry::At(at) => failed.next_attempt_at = at,
            Retry::GiveUp => {
                failed.state = PendingState::Failed { reason: reason.to_string(), failed_at: now }
            }
        }
        let mut batch = Batch::new();
        batch.put_with(&failed, Expect::Value(queued.raw.clone()));
        self.settle(batch).await
    }

    /// Queues failed entries again: all, or those of `account`. Returns how many.
    ///
    /// # Errors
    /// Store failures.
    pub async fn retry_failed(
        &self,
        account: Option<&AccountName>,
        now: UnixTime,
    ) -> Result<usize, StoreError> {
        let mut batch = Batch::new();
        let mut count = 0;
        for q in self.entries().await? {
            if q.entry.is_pending() || account.is_some_and(|a| *a != q.entry.account) {
                continue;
            }
            let fresh = PendingUpdate {
                created_at: q.entry.created_at,
                ..PendingUpdate::new(&q.entry.account_key, &q.entry.account, q.entry.delete, now)
            };
            // Only if it is still that failed entry: a newer change replaced it otherwise.
            batch.put_with(&fresh, Expect::Value(q.raw));
            count += 1;
        }
        if count > 0 {
            self.db.commit(batch).await?;
        }
        Ok(count)
    }

    /// Removes failed entries given up on before `cutoff`. Returns how many.
    ///
    /// # Errors
    /// Store failures.
    pub async fn expire(&self, cutoff: UnixTime) -> Result<usize, StoreError> {
        let mut batch = Batch::new();
        let mut count = 0;
        for q in self.entries().await? {
            if let PendingState::Failed { failed_at, .. } = q.entry.state {
                if failed_at < cutoff {
                    batch.delete_with::<PendingUpdate>(&q.entry.account_key, Expect::Value(q.raw));
                    count += 1;
                }
            }
        }
        if count > 0 {
            self.settle(batch).await?;
        }
        Ok(count)
    }

    /// Waits until account `key` has no entry waiting for its first attempt: pushed, or
    /// failed at least once (a backoff is no reason to hold a reply), or `within` passed.
    /// Returns whether the push went through.
    ///
    /// # Errors
    /// Store failures.
    pub async fn settled(&self, key: &str, within: Duration) -> Result<bool, StoreError> {
        let mut changes = self.changes();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            changes.borrow_and_update();
            match self.get(key).await? {
                None => return Ok(true),
                Some(e) if !e.is_pending() || e.attempts > 0 => return Ok(false),
                Some(_) => {}
            }
            // Another instance's publisher clears entries without waking us: look again soon.
            let look = match self.db.store().is_shared() {
                true => deadline.min(tokio::time::Instant::now() + SHARED_POLL),
                false => deadline,
            };
            match tokio::time::timeout_at(look, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(false),
                Err(_) if look >= deadline => return Ok(false),
                Err(_) => {}
            }
        }
    }

    async fn settle(&self, batch: Batch) -> Result<Settled, StoreError> {
        match self.db.commit(batch).await {
            Ok(()) => Ok(Settled::Done),
            Err(StoreError::Conflict { .. }) => Ok(Settled::Superseded),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::AccountKind;
    use crate::store::sled::SledStore;
    use crate::vault::MasterKey;

    fn queue() -> ClaimsQueue {
        ClaimsQueue::new(Db::new(Arc::new(SledStore::temporary().unwrap())))
    }

    fn account(name: &str) -> AccountRecord {
        let master = MasterKey::generate();
        AccountRecord::new(AccountName::new(name).unwrap(), AccountKind::Tenant, &master, 100)
    }

    async fn enqueue(q: &ClaimsQueue, a: &AccountRecord, now: UnixTime) {
        let mut batch = Batch::new();
        q.enqueue(&mut batch, a, false, now);
        q.db.commit(batch).await.unwrap();
    }

    #[tokio::test]
    async fn a_change_during_a_push_is_not_cleared_by_it() {
        let q = queue();
        let acme = account("acme");
        enqueue(&q, &acme, 100).await;
        let pushed = q.entries().await.unwrap().remove(0);
        enqueue(&q, &acme, 101).await;
        assert_eq!(q.complete(&pushed).await.unwrap(), Settled::Superseded);
        assert_eq!(q.counts().await.unwrap(), QueueCounts { pending: 1, failed: 0 });
        let newer = q.entries().await.unwrap().remove(0);
        assert_ne!(newer.entry.generation, pushed.entry.generation);
        assert_eq!(q.complete(&newer).await.unwrap(), Settled::Done);
        assert_eq!(q.counts().await.unwrap(), QueueCounts::default());
    }

    #[tokio::test]
    async fn failures_back_off_give_up_retry_and_expire() {
        let q = queue();
        let (acme, beta) = (account("acme"), account("beta"));
        enqueue(&q, &acme, 100).await;
        enqueue(&q, &beta, 100).await;
        let entries = q.entries().await.unwrap();
        let of = |name: &AccountName| entries.iter().find(|e| e.entry.account == *name).unwrap();
        let (a, b) = (of(&acme.name), of(&beta.name));
        assert_eq!(q.fail(a, "timed out", Retry::At(160), 100).await.unwrap(), Settled::Done);
        assert_eq!(q.fail(b, "refused", Retry::GiveUp, 100).await.unwrap(), Settled::Done);
        let list = q.list().await.unwrap();
        let by = |key: &str| list.iter().find(|e| e.account_key == key).unwrap().clone();
        assert_eq!(by(acme.public_key()).next_attempt_at, 160);
        assert_eq!(by(acme.public_key()).attempts, 1);
        assert!(matches!(by(beta.public_key()).state, PendingState::Failed { .. }));
        assert_eq!(q.counts().await.unwrap(), QueueCounts { pending: 1, failed: 1 });

        assert_eq!(q.retry_failed(Some(&acme.name), 200).await.unwrap(), 0, "acme never failed");
        assert_eq!(q.retry_failed(None, 200).await.unwrap(), 1);
        assert_eq!(q.counts().await.unwrap(), QueueCounts { pending: 2, failed: 0 });

        let b = q.entries().await.unwrap().into_iter().find(|e| e.entry.account == beta.name);
        q.fail(&b.unwrap(), "refused", Retry::GiveUp, 300).await.unwrap();
        assert_eq!(q.expire(300).await.unwrap(), 0, "not older than the cutoff");
        assert_eq!(q.expire(301).await.unwrap(), 1);
        assert_eq!(q.counts().await.unwrap(), QueueCounts { pending: 1, failed: 0 });
    }

    #[tokio::test]
    async fn any_writer_wakes_a_waiter_and_idle_enqueues_never_overwrite() {
        let q = queue();
        let other_handle = ClaimsQueue::new(q.db.clone());
        let mut changes = q.changes();
        changes.borrow_and_update();
        let acme = account("acme");
        enqueue(&other_handle, &acme, 100).await;
        assert!(changes.has_changed().unwrap(), "a write through another handle wakes us");
        assert!(!q.enqueue_if_idle(acme.public_key(), &acme.name, true, 100).await.unwrap());
        assert!(!q.list().await.unwrap()[0].delete, "the queued change is kept");

        let waiter = tokio::spawn({
            let q = q.clone();
            let key = acme.public_key().to_string();
            async move { q.settled(&key, Duration::from_secs(5)).await.unwrap() }
        });
        let entry = q.entries().await.unwrap().remove(0);
        q.complete(&entry).await.unwrap();
        assert!(waiter.await.unwrap(), "the waiter saw the push go through");
        assert!(q.settled("ANOKEY", Duration::ZERO).await.unwrap(), "nothing queued: settled");
    }

    #[tokio::test]
    async fn two_publishers_racing_at_a_handover_never_resurrect_nor_clear_a_newer_entry() {
        let q = queue();
        let other = ClaimsQueue::new(q.db.clone());
        let acme = account("acme");
        enqueue(&q, &acme, 100).await;
        // Both read the same entry (the old holder mid-push, the new one at takeover).
        let old = q.entries().await.unwrap().remove(0);
        let new = other.entries().await.unwrap().remove(0);
        assert_eq!(other.complete(&new).await.unwrap(), Settled::Done);
        // The old holder's late failure must not bring the completed entry back.
        assert_eq!(
            q.fail(&old, "timed out", Retry::At(200), 100).await.unwrap(),
            Settled::Superseded
        );
        assert_eq!(q.counts().await.unwrap(), QueueCounts::default());

        // A newer change queued after both read: neither a completion nor a failure clears it.
        enqueue(&q, &acme, 101).await;
        let stale = old;
        assert_eq!(q.complete(&stale).await.unwrap(), Settled::Superseded);
        assert_eq!(q.fail(&stale, "x", Retry::GiveUp, 101).await.unwrap(), Settled::Superseded);
        let left = q.list().await.unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].is_pending() && left[0].attempts == 0);
    }
}
