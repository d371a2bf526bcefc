//! One claims publisher at a time among instances sharing a store: a lease record.
//!
//! The lease is one record in [`Tree::Runtime`] under [`LEASE_KEY`]: who holds it and until when
//! (unix milliseconds, wall clock). [`Lease::run`] tries about every `renew_every`: it creates
//! the record if there is none ([`Expect::Absent`]), renews its own, or takes over one whose
//! expiry has passed, each with compare-and-swap ([`Expect::Value`] of the bytes it read), so
//! of two instances racing for an expired lease exactly one write wins. The result is a
//! `watch` "I hold it" that the publisher follows. On a clean stop the holder deletes its
//! record (again by compare-and-swap), so another instance takes over at its next try instead
//! of after the TTL.
//!
//! # Clocks
//! Expiry is wall-clock time, written by the holder's clock and read by the others'. Two
//! margins keep a skew of up to `skew_margin` from letting two instances both believe they
//! hold it: the holder stops believing at its own *monotonic* time taken before the write
//! plus `ttl - skew_margin`, while a taker waits until its wall clock passes the stored
//! expiry. A taker whose clock runs ahead by `d < skew_margin` takes over `d` early, still
//! after the holder stopped. A larger skew only means two publishers for a moment: their
//! pushes are idempotent (the same JWT from the same records) and the queue clears an entry by
//! compare-and-swap, so nothing is lost or resurrected (see `src/queue.rs`).
//!
//! # A store only this process opens
//! On a store that is not [`Store::is_shared`] (sled: one process per data dir), any lease
//! found at start-up was left by an earlier run of this process (killed before it could
//! release): it is taken over at once, so a single instance publishes immediately, as before.
//!
//! [`Store::is_shared`]: crate::store::Store::is_shared

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::instance::InstanceId;
use crate::store::{Batch, Db, Expect, Op, Record, StoreError, Tree};

/// The lease record's key in [`Tree::Runtime`].
pub const LEASE_KEY: &str = "lease/publisher";

/// The stored lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The instance that holds it.
    pub holder: InstanceId,
    /// Unix time in milliseconds after which another instance may take it.
    pub expires_at_ms: i64,
    /// When this holder first acquired it (unix milliseconds).
    pub since_ms: i64,
}

impl Record for LeaseRecord {
    const TREE: Tree = Tree::Runtime;
    fn key(&self) -> String {
        LEASE_KEY.to_string()
    }
}

/// Lease timing.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// How long a written lease lasts.
    pub ttl: Duration,
    /// How often the holder renews it and the others look for an expired one.
    pub renew_every: Duration,
    /// The clock skew between instances that is tolerated without overlap (see module doc).
    pub skew_margin: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            ttl: Duration::from_secs(6),
            renew_every: Duration::from_secs(1),
            skew_margin: Duration::from_secs(2),
        }
    }
}

/// The unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The lease as stored, if any (for `status`).
///
/// # Errors
/// Store failures; a record that does not decode reads as none.
pub async fn current(db: &Db) -> Result<Option<LeaseRecord>, StoreError> {
    Ok(db
        .store()
        .get(Tree::Runtime, LEASE_KEY)
        .await?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// What one try found.
#[derive(Debug)]
enum Outcome {
    /// This instance holds the lease; these are the bytes it wrote.
    Held(Vec<u8>),
    /// Another instance holds it (or won the race for it).
    Other,
}

/// The lease task of one instance.
pub struct Lease {
    db: Db,
    id: InstanceId,
    settings: LeaseSettings,
    held: watch::Sender<bool>,
}

impl Lease {
    /// A lease task for instance `id`, and the "I hold it" signal it keeps (false until the
    /// first successful try).
    pub fn new(db: Db, id: InstanceId, settings: LeaseSettings) -> (Lease, watch::Receiver<bool>) {
        let (held, rx) = watch::channel(false);
        (Lease { db, id, settings, held }, rx)
    }

    /// Tries, renews and follows the lease until `shutdown`; then releases it if held.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // On an exclusive store a lease not ours is a dead run's: take it at the first try.
        let mut take_any = !self.db.store().is_shared();
        let mut mine: Option<Vec<u8>> = None;
        let mut held_until: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.settings.ttl, self.attempt(take_any));
            tokio::pin!(attempt);
            let outcome = loop {
                tokio::select! {
                    r = &mut attempt => break r,
                    () = sleep_until_opt(held_until) => {
                        // A renewal that takes this long no longer proves anything.
                        held_until = None;
                        self.set_held(false);
                    }
                    () = &mut shutdown => {
                        self.release(mine.take()).await;
                        return;
                    }
                }
            };
            take_any = false;
            match outcome {
                Ok(Ok(Outcome::Held(raw))) => {
                    mine = Some(raw);
                    held_until =
                        Some(started + self.settings.ttl.saturating_sub(self.settings.skew_margin));
                    self.set_held(true);
                }
                Ok(Ok(Outcome::Other)) => {
                    mine = None;
                    held_until = None;
                    self.set_held(false);
                }
                Ok(Err(e)) => {
                    // Keep believing until held_until: a blip in the store is no handover.
                    tracing::warn!(error = %e, "renewing the publisher lease failed");
                }
                Err(_) => tracing::warn!("renewing the publisher lease timed out"),
            }
            let next = started + self.settings.renew_every;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => break,
                    () = sleep_until_opt(held_until) => {
                        held_until = None;
                        self.set_held(false);
                    }
                    () = &mut shutdown => {
                        self.release(mine.take()).await;
                        return;
                    }
                }
            }
        }
    }

    fn set_held(&self, held: bool) {
        self.held.send_if_modified(|h| {
            let changed = *h != held;
            if changed {
                tracing::info!(instance = %self.id, held, "publisher lease");
            }
            *h = held;
            changed
        });
    }

    /// One try: create, renew or take over the lease.
    async fn attempt(&self, take_any: bool) -> Result<Outcome, StoreError> {
        let now = now_ms();
        let raw = self.db.store().get(Tree::Runtime, LEASE_KEY).await?;
        let found = raw.as_deref().and_then(|r| serde_json::from_slice::<LeaseRecord>(r).ok());
        let since = match &found {
            Some(l) if l.holder == self.id => l.since_ms,
            Some(l) if l.expires_at_ms >= now && !take_any => return Ok(Outcome::Other),
            _ => now,
        };
        let record = LeaseRecord {
            holder: self.id.clone(),
            expires_at_ms: now + self.settings.ttl.as_millis() as i64,
            since_ms: since,
        };
        let value = serde_json::to_vec(&record).expect("lease serializes");
        let expect = match raw {
            None => Expect::Absent,
            // Also when it does not decode: a garbled lease is taken over like an expired one.
            Some(raw) => Expect::Value(raw),
        };
        let mut batch = Batch::new();
        batch.push(Op::Put {
            tree: Tree::Runtime,
            key: LEASE_KEY.into(),
            value: value.clone(),
            expect,
        });
        match self.db.commit(batch).await {
            Ok(()) => Ok(Outcome::Held(value)),
            Err(StoreError::Conflict { .. }) => Ok(Outcome::Other),
            Err(e) => Err(e),
        }
    }

    /// Deletes our lease record so that another instance need not wait for it to expire.
    /// `mine` is what we last wrote; the record is read again too, since a try cut short by
    /// the shutdown may have written one we never heard back about.
    async fn release(&self, mine: Option<Vec<u8>>) {
        self.set_held(false);
        let current = match self.db.store().get(Tree::Runtime, LEASE_KEY).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(error = %e, "reading the publisher lease to release it failed");
                mine
            }
        };
        let Some(raw) = current else { return };
        let ours = serde_json::from_slice::<LeaseRecord>(&raw).is_ok_and(|l| l.holder == self.id);
        if !ours {
            return;
        }
        let mut batch = Batch::new();
        batch.push(Op::Delete {
            tree: Tree::Runtime,
            key: LEASE_KEY.into(),
            expect: Expect::Value(raw),
        });
        match self.db.commit(batch).await {
            Ok(()) => tracing::info!(instance = %self.id, "publisher lease released"),
            // Taken over meanwhile (we were too slow to renew): nothing of ours to release.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "releasing the publisher lease failed"),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::sled::SledStore;
    use tokio_util::sync::CancellationToken;

    fn fast() -> LeaseSettings {
        LeaseSettings {
            ttl: Duration::from_millis(600),
            renew_every: Duration::from_millis(100),
            skew_margin: Duration::from_millis(200),
        }
    }

    async fn until(rx: &mut watch::Receiver<bool>, want: bool) {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|h| *h == want))
            .await
            .expect("lease state in time")
            .unwrap();
    }

    #[tokio::test]
    async fn a_single_instance_takes_a_dead_runs_lease_at_once_and_releases_on_stop() {
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        // Left by a run killed a moment ago: not expired yet.
        let stale = LeaseRecord {
            holder: InstanceId::from_text("old/00000000"),
            expires_at_ms: now_ms() + 60_000,
            since_ms: 0,
        };
        let mut batch = Batch::new();
        batch.put(&stale);
        db.commit(batch).await.unwrap();

        let id = InstanceId::generate();
        let (lease, mut held) = Lease::new(db.clone(), id.clone(), fast());
        let stop = CancellationToken::new();
        let task = tokio::spawn(lease.run(stop.clone().cancelled_owned()));
        until(&mut held, true).await;
        assert_eq!(current(&db).await.unwrap().unwrap().holder, id);
        stop.cancel();
        task.await.unwrap();
        assert!(!*held.borrow());
        assert_eq!(current(&db).await.unwrap(), None, "released on a clean stop");
    }
}
