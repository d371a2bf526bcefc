//! The claims publisher: drains the durable queue of account-JWT pushes to the servers.
//!
//! Each queue entry is one account (keyed by its public key), so changes to one account
//! coalesce into the entry: it is cleared only if its generation is unchanged after the push
//! (compare-and-swap), otherwise it stays queued for the newer state. A lone change is pushed
//! at once (every commit wakes the publisher; there is no batching delay). A change that
//! arrives within `burst_window` of the account's last push is part of a burst: it is held
//! until changes stop for `quiet_period` (at most `max_defer`), so a burst of a hundred
//! changes becomes two pushes, its first change and its final state.
//!
//! A push signs the account's JWT from the current records, verifies it locally (the server
//! would accept a foreign signer), sends `$SYS.REQ.CLAIMS.UPDATE` (or `.DELETE`), checks the
//! reply code, and confirms with `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`. Failures back off
//! exponentially and, after `max_attempts`, are marked failed with the reason and kept for
//! `retention`. While the connection is down nothing is attempted and no retry is spent; on
//! every (re)connect every account is reconciled against what the server holds.
//!
//! With several instances over one store, only the holder of the publisher lease
//! ([`crate::lease`], [`Publisher::with_lease`]) drains and reconciles; the others wait. A
//! handover mid-push is harmless: the queue settles entries by compare-and-swap, so a push
//! done by both is done twice with the same JWT, a completed entry never comes back and a
//! newer one is never cleared. On a shared store commits by other instances do not wake this
//! one, so the holder also looks at the queue every `poll_interval`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::api_gate::ApiGate;
use crate::authority::{Authority, AuthorityError};
use crate::claims::{self, Validation};
use crate::connection::Link;
use crate::model::{self, AccountKind, AccountName, AccountRecord, OperatorRecord, UnixTime};
use crate::names::AUTH_ACCOUNT;
use crate::queue::{ClaimsQueue, PendingUpdate, Retry, Settled};
use crate::server_api::{ServerApi, ServerApiError};
use crate::store::StoreError;
use crate::trust::{self, TrustError};

/// Publisher tuning.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// Attempts before an entry is marked failed.
    pub max_attempts: u32,
    /// Delay after the first failure; doubles per failure.
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// How long failed entries are kept.
    pub retention: Duration,
    /// How often failed entries past retention are removed.
    pub cleanup_interval: Duration,
    /// A change within this long of the account's last push counts as part of a burst.
    pub burst_window: Duration,
    /// A burst is pushed once no change has arrived for this long...
    pub quiet_period: Duration,
    /// ...or when it has been held this long, whichever is first.
    pub max_defer: Duration,
    /// On a shared store, how often the queue is read even without a local change signal
    /// (other instances' commits do not wake this one).
    pub poll_interval: Duration,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        PublisherSettings {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            retention: Duration::from_secs(24 * 3600),
            cleanup_interval: Duration::from_secs(600),
            burst_window: Duration::from_secs(1),
            quiet_period: Duration::from_millis(50),
            max_defer: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Counters the status endpoint reports.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Claims update/delete requests sent.
    pub pushes: AtomicU64,
    /// Pushes that failed (reply error, time-out, lookup mismatch).
    pub failures: AtomicU64,
    /// Reconciliations run (one per connect).
    pub reconciliations: AtomicU64,
}

/// Why one push failed. Its text is kept in the queue entry for people to read.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// The connection went away mid-push: not the entry's fault, no attempt is spent.
    #[error("connection down")]
    Disconnected,
    #[error(transparent)]
    Server(ServerApiError),
    #[error("cannot sign: {0}")]
    Authority(#[from] AuthorityError),
    #[error("refusing to push: {0}")]
    Invalid(#[from] TrustError),
    #[error("claims lookup does not return the pushed JWT")]
    NotHeld,
    #[error("server still holds the deleted account")]
    StillHeld,
}

impl From<ServerApiError> for PushError {
    fn from(e: ServerApiError) -> Self {
        match e {
            ServerApiError::Disconnected => PushError::Disconnected,
            other => PushError::Server(other),
        }
    }
}

/// What the publisher remembers about one account's recent changes, to tell a burst from a
/// lone change.
#[derive(Debug, Default)]
struct Burst {
    generation: u64,
    /// When the current generation was first seen.
    changed_at: Option<Instant>,
    last_push: Option<Instant>,
    /// When the current wait for a quiet moment began.
    deferred_since: Option<Instant>,
}

impl Burst {
    /// `Some(time)` to wait until, when this change is part of a burst: the account was pushed
    /// within the burst window and changes are still arriving. A lone change is never held.
    fn defer_until(&mut self, now: Instant, settings: &PublisherSettings) -> Option<Instant> {
        let recent_push =
            self.last_push.is_some_and(|t| now.duration_since(t) < settings.burst_window);
        let changed_at = self.changed_at?;
        let still_changing = now.duration_since(changed_at) < settings.quiet_period;
        if !(recent_push && still_changing) {
            return None;
        }
        let since = *self.deferred_since.get_or_insert(now);
        if now.duration_since(since) >= settings.max_defer {
            return None;
        }
        Some((changed_at + settings.quiet_period).min(since + settings.max_defer))
    }
}

/// The claims publisher task.
pub struct Publisher {
    authority: Authority,
    queue: ClaimsQueue,
    server: ServerApi,
    connected: watch::Receiver<Link>,
    settings: PublisherSettings,
    stats: Arc<PublisherStats>,
    gate: Arc<ApiGate>,
    bursts: HashMap<String, Burst>,
    /// AUTH's public key, once known.
    auth_key: Option<String>,
    /// "This instance holds the publisher lease"; `None`: always (a lone publisher).
    lease: Option<watch::Receiver<bool>>,
}

impl Publisher {
    /// A publisher draining `queue` to `server`; `connected` tells it when the connection is up.
    pub fn new(
        authority: Authority,
        server: ServerApi,
        connected: watch::Receiver<Link>,
        settings: PublisherSettings,
        stats: Arc<PublisherStats>,
        gate: Arc<ApiGate>,
    ) -> Self {
        Publisher {
            queue: ClaimsQueue::new(authority.db().clone()),
            authority,
            server,
            connected,
            settings,
            stats,
            gate,
            bursts: HashMap::new(),
            auth_key: None,
            lease: None,
        }
    }

    /// Drains only while `lease` says this instance holds the publisher lease.
    pub fn with_lease(mut self, lease: watch::Receiver<bool>) -> Self {
        self.lease = Some(lease);
        self
    }

    fn holds_lease(&self) -> bool {
        self.lease.as_ref().is_none_or(|l| *l.borrow())
    }

    /// Runs until `shutdown`. Whatever is still queued then stays in the store for next time.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut changes = self.queue.changes();
        let auth = AccountName::new(AUTH_ACCOUNT).expect("valid");
        self.auth_key =
            self.authority.account(&auth).await.ok().map(|a| a.public_key().to_string());
        // Every new connection (the epoch counts them) may be to a server that holds other
        // JWTs: reconcile once per epoch, even one that came and went during a push.
        let mut reconciled_epoch = 0;
        let mut next_cleanup = Instant::now();
        let poll = self.authority.db().store().is_shared().then_some(self.settings.poll_interval);
        loop {
            let link = *self.connected.borrow_and_update();
            if let Some(lease) = self.lease.as_mut() {
                lease.borrow_and_update();
            }
            if !link.up || !self.holds_lease() {
                if !self.holds_lease() {
                    // Whoever holds it now may have missed changes: reconcile when it is ours.
                    reconciled_epoch = 0;
                }
                // Circuit open or another instance publishes: wait instead of burning retries.
                tokio::select! {
                    r = self.connected.changed() => if r.is_err() { return },
                    () = lease_changed(&mut self.lease) => {}
                    () = &mut shutdown => return,
                }
                continue;
            }
            if link.epoch != reconciled_epoch {
                reconciled_epoch = link.epoch;
                if let Err(e) = self.reconcile().await {
                    tracing::warn!(error = %e, "reconciling accounts with the server failed");
                }
            }
            if Instant::now() >= next_cleanup {
                self.cleanup().await;
                next_cleanup = Instant::now() + self.settings.cleanup_interval;
            }
            // Seen before the drain, so a change committed during it wakes the next round.
            changes.borrow_and_update();
            let wake = match self.drain().await {
                Ok(Some(at)) => at,
                Ok(None) => next_cleanup,
                Err(e) => {
                    tracing::error!(error = %e, "reading the claims queue failed");
                    Instant::now() + self.settings.initial_backoff
                }
            };
            let wake = poll.map_or(wake, |p| wake.min(Instant::now() + p));
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tokio::time::sleep_until(wake.min(next_cleanup)) => {}
                r = self.connected.changed() => if r.is_err() { return },
                () = lease_changed(&mut self.lease) => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// Pushes every due entry; returns when the publisher should look again.
    async fn drain(&mut self) -> Result<Option<Instant>, StoreError> {
        let mut wake: Option<Instant> = None;
        let mut wake_at = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
        let mut entries = self.queue.entries().await?;
        // AUTH last: its push waits for a quiet API (see api_gate), and tenants queued behind
        // it would wait with it.
        let auth_key = self.auth_key.clone();
        entries.sort_by_key(|q| Some(&q.entry.account_key) == auth_key.as_ref());
        self.bursts.retain(|key, b| {
            entries.iter().any(|q| q.entry.account_key == *key)
                || b.last_push.is_some_and(|t| t.elapsed() < self.settings.burst_window)
        });
        for queued in entries {
            let entry = &queued.entry;
            if !entry.is_pending() {
                continue;
            }
            let now = model::now();
            let instant = Instant::now();
            if entry.next_attempt_at > now {
                wake_at(instant + Duration::from_secs((entry.next_attempt_at - now) as u64));
                continue;
            }
            let burst = self.bursts.entry(entry.account_key.clone()).or_default();
            if burst.generation != entry.generation {
                burst.generation = entry.generation;
                burst.changed_at = Some(instant);
            }
            if let Some(until) = burst.defer_until(instant, &self.settings) {
                wake_at(until);
                continue;
            }
            if !self.connected.borrow().up || !self.holds_lease() {
                return Ok(None);
            }
            let result = self.push(entry, now).await;
            let burst = self.bursts.entry(entry.account_key.clone()).or_default();
            burst.last_push = Some(Instant::now());
            burst.deferred_since = None;
            let settled = match result {
                Ok(()) => self.queue.complete(&queued).await?,
                Err(PushError::Disconnected) => return Ok(None),
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let reason = e.to_string();
                    let attempts = entry.attempts + 1;
                    let retry = if attempts >= self.settings.max_attempts {
                        tracing::error!(account = %entry.account, %reason, attempts, "giving up on claims push");
                        Retry::GiveUp
                    } else {
                        let backoff = self.backoff(attempts).max(Duration::from_secs(1));
                        tracing::warn!(account = %entry.account, %reason, attempt = attempts, retry_in = ?backoff, "claims push failed");
                        wake_at(Instant::now() + backoff);
                        Retry::At(now + backoff.as_secs() as i64)
                    };
                    self.queue.fail(&queued, &reason, retry, now).await?
                }
            };
            if settled == Settled::Superseded {
                // A newer change replaced the entry while we pushed: it is still queued.
                wake_at(Instant::now());
            }
        }
        Ok(wake)
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.settings.initial_backoff.saturating_mul(factor).min(self.settings.max_backoff)
    }

    async fn push(&self, entry: &PendingUpdate, now: UnixTime) -> Result<(), PushError> {
        let operator = self.authority.operator().await?;
        if entry.delete {
            return self.push_delete(entry, &operator, now).await;
        }
        let account = self.authority.db().get::<AccountRecord>(entry.account.as_str()).await;
        let Some(account) =
            account.map_err(AuthorityError::from)?.filter(|a| a.public_key() == entry.account_key)
        else {
            // The account this key belonged to is gone (deleted, or replaced by a new one of
            // the same name with another key): make sure the servers forget it too.
            return self.push_delete(entry, &operator, now).await;
        };
        let token = self.authority.account_jwt(&account, now).await?;
        // The server would accept a JWT signed by anyone: check ours before it goes out.
        trust::verify_account_jwt(&operator, &token, now)?;
        // Updating AUTH drops replies in flight from its exports (see api_gate).
        let quiet = match account.kind {
            AccountKind::Auth => Some(self.gate.exclusive().await),
            _ => None,
        };
        self.stats.pushes.fetch_add(1, Ordering::Relaxed);
        let sent = self.server.update(&token).await;
        // The export map is rebuilt by now; requests may flow again during the lookup.
        drop(quiet);
        sent?;
        // Every server that answers must hold it: one with an older JWT fails the push.
        let held = self.server.lookup(&entry.account_key).await?;
        if held.iter().any(|h| h.as_deref() != Some(token.as_str())) {
            return Err(PushError::NotHeld);
        }
        tracing::info!(account = %entry.account, "account JWT pushed");
        Ok(())
    }

    /// Removes an account from the servers and confirms they no longer hold it.
    async fn push_delete(
        &self,
        entry: &PendingUpdate,
        operator: &OperatorRecord,
        now: UnixTime,
    ) -> Result<(), PushError> {
        let token = trust::delete_accounts_jwt(
            operator,
            vec![entry.account_key.clone()],
            self.authority.master(),
            now,
        )?;
        self.stats.pushes.fetch_add(1, Ordering::Relaxed);
        match self.server.delete(&token).await {
            Ok(()) => {}
            Err(ServerApiError::Disconnected) => return Err(PushError::Disconnected),
            // A server that never had the account answers with an error; the lookup decides.
            Err(e) => {
                tracing::debug!(account = %entry.account, error = %e, "claims delete answered with an error")
            }
        }
        if self.server.lookup(&entry.account_key).await?.iter().any(Option::is_some) {
            return Err(PushError::StillHeld);
        }
        tracing::info!(account = %entry.account, "account removed from the server");
        Ok(())
    }

    /// Queues every account whose JWT on the server differs from what the records say, and a
    /// delete for every account the server holds that the records do not (a delete that was
    /// lost or expired from the queue). Entries are only added where none is queued, so a
    /// change queued meanwhile is never overwritten.
    async fn reconcile(&self) -> Result<(), AuthorityError> {
        self.stats.reconciliations.fetch_add(1, Ordering::Relaxed);
        let accounts = self.authority.db().list::<AccountRecord>("").await?;
        let callout = self.authority.callout_settings().await?;
        let now = model::now();
        let mut queued = 0usize;
        for account in &accounts {
            let want = trust::account_body(
                account,
                (account.kind == AccountKind::Auth).then_some(&callout),
            );
            let Ok(held) = self.server.lookup(account.public_key()).await else { return Ok(()) };
            // Current only if every server that answered holds what the records say.
            let current = held.iter().all(|h| {
                h.as_deref()
                    .and_then(|t| claims::decode::<claims::Account>(t, &Validation::at(now)).ok())
                    .is_some_and(|c| {
                        c.nats == want && c.name.as_deref() == Some(account.name.as_str())
                    })
            });
            if !current
                && self
                    .queue
                    .enqueue_if_idle(account.public_key(), &account.name, false, now)
                    .await?
            {
                queued += 1;
            }
        }
        let held = self.server.list().await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "claims list failed");
            Vec::new()
        });
        for key in held {
            if accounts.iter().any(|a| a.public_key() == key) {
                continue;
            }
            let Ok(name) = AccountName::new(&key.to_lowercase()) else { continue };
            if self.queue.enqueue_if_idle(&key, &name, true, now).await? {
                queued += 1;
            }
        }
        if queued > 0 {
            tracing::info!(queued, "reconcile: queued accounts the server holds differently");
        }
        Ok(())
    }

    /// Removes failed entries older than the retention period.
    async fn cleanup(&self) {
        let cutoff = model::now() - self.settings.retention.as_secs() as i64;
        if let Err(e) = self.queue.expire(cutoff).await {
            tracing::warn!(error = %e, "removing expired failed pushes failed");
        }
    }
}

/// Completes when the lease signal changes; never if there is none (or its task is gone).
async fn lease_changed(lease: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = lease {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_change_is_never_held_and_a_burst_is_held_until_quiet() {
        let settings = PublisherSettings::default();
        let t0 = Instant::now();
        let mut lone = Burst { generation: 1, changed_at: Some(t0), ..Burst::default() };
        assert_eq!(lone.defer_until(t0, &settings), None, "never pushed before: push now");

        let old_push = Burst {
            last_push: Some(t0),
            changed_at: Some(t0 + Duration::from_secs(5)),
            ..Burst::default()
        };
        let mut later = old_push;
        assert_eq!(
            later.defer_until(t0 + Duration::from_secs(5), &settings),
            None,
            "last push long ago"
        );

        let changed = t0 + Duration::from_millis(10);
        let mut burst =
            Burst { last_push: Some(t0), changed_at: Some(changed), ..Burst::default() };
        assert_eq!(burst.defer_until(changed, &settings), Some(changed + settings.quiet_period));
        let quiet = changed + settings.quiet_period;
        assert_eq!(burst.defer_until(quiet, &settings), None, "quiet long enough: push");

        // A change every few milliseconds forever is still pushed after max_defer.
        let mut stream = Burst {
            last_push: Some(t0),
            changed_at: Some(t0),
            deferred_since: Some(t0),
            ..Burst::default()
        };
        let late = t0 + settings.max_defer;
        stream.changed_at = Some(late);
        assert_eq!(stream.defer_until(late, &settings), None);
    }
}
