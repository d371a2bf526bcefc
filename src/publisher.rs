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

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api_gate::ApiGate;
use crate::claims::{self, Validation};
use crate::connection::Link;
use crate::manage::Manager;
use crate::model::{
    self, AccountKind, AccountName, AccountRecord, PendingState, PendingUpdate, UnixTime,
};
use crate::store::{Batch, Expect, Tree};
use crate::trust;

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

/// Why one push failed.
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("{0}")]
    Failed(String),
    /// The connection went away mid-push: not the entry's fault, no attempt is spent.
    #[error("connection down")]
    Disconnected,
}

#[derive(Deserialize)]
struct UpdateReply {
    #[serde(default)]
    data: Option<ReplyBody>,
    #[serde(default)]
    error: Option<ReplyError>,
}

#[derive(Deserialize)]
struct ReplyBody {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ReplyError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    description: String,
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
    manager: Manager,
    client: Client,
    connected: watch::Receiver<Link>,
    settings: PublisherSettings,
    stats: Arc<PublisherStats>,
    gate: Arc<ApiGate>,
    bursts: HashMap<String, Burst>,
    /// AUTH's public key, once known.
    auth_key: Option<String>,
}

impl Publisher {
    /// A publisher pushing over `client`; `connected` tells it when the connection is up.
    pub fn new(
        manager: Manager,
        client: Client,
        connected: watch::Receiver<Link>,
        settings: PublisherSettings,
        stats: Arc<PublisherStats>,
        gate: Arc<ApiGate>,
    ) -> Self {
        Publisher {
            manager,
            client,
            connected,
            settings,
            stats,
            gate,
            bursts: HashMap::new(),
            auth_key: None,
        }
    }

    /// Runs until `shutdown`. Whatever is still queued then stays in the store for next time.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let changes = self.manager.changes();
        let auth = AccountName::new(crate::authority::AUTH_ACCOUNT).expect("valid");
        self.auth_key =
            self.manager.authority().account(&auth).await.ok().map(|a| a.public_key().to_string());
        // Every new connection (the epoch counts them) may be to a server that holds other
        // JWTs: reconcile once per epoch, even one that came and went during a push.
        let mut reconciled_epoch = 0;
        let mut next_cleanup = Instant::now();
        loop {
            let link = *self.connected.borrow_and_update();
            if !link.up {
                // Circuit open: wait for the connection instead of burning retries.
                tokio::select! {
                    r = self.connected.changed() => if r.is_err() { return },
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
            let wake = match self.drain().await {
                Ok(Some(at)) => at,
                Ok(None) => next_cleanup,
                Err(e) => {
                    tracing::error!(error = %e, "reading the claims queue failed");
                    Instant::now() + self.settings.initial_backoff
                }
            };
            tokio::select! {
                () = changes.notified() => {}
                () = tokio::time::sleep_until(wake.min(next_cleanup)) => {}
                r = self.connected.changed() => if r.is_err() { return },
                () = &mut shutdown => return,
            }
        }
    }

    /// Pushes every due entry; returns when the publisher should look again.
    async fn drain(&mut self) -> Result<Option<Instant>, crate::store::StoreError> {
        let db = self.manager.authority().db().clone();
        let mut wake: Option<Instant> = None;
        let mut wake_at = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
        let mut entries = db.store().scan(Tree::Pending, "").await?;
        // AUTH last: its push waits for a quiet API (see api_gate), and tenants queued behind
        // it would wait with it.
        let auth_key = self.auth_key.clone();
        entries.sort_by_key(|(key, _)| Some(key) == auth_key.as_ref());
        self.bursts.retain(|key, b| {
            entries.iter().any(|(k, _)| k == key)
                || b.last_push.is_some_and(|t| t.elapsed() < self.settings.burst_window)
        });
        for (key, raw) in entries {
            let Ok(entry) = serde_json::from_slice::<PendingUpdate>(&raw) else {
                tracing::error!(key, "dropping unreadable queue entry");
                let mut batch = Batch::new();
                batch.delete_with::<PendingUpdate>(&key, Expect::Value(raw));
                db.commit(batch).await?;
                continue;
            };
            if !matches!(entry.state, PendingState::Pending) {
                continue;
            }
            let now = model::now();
            let instant = Instant::now();
            if entry.next_attempt_at > now {
                wake_at(instant + Duration::from_secs((entry.next_attempt_at - now) as u64));
                continue;
            }
            let burst = self.bursts.entry(key.clone()).or_default();
            if burst.generation != entry.generation {
                burst.generation = entry.generation;
                burst.changed_at = Some(instant);
            }
            if let Some(until) = burst.defer_until(instant, &self.settings) {
                wake_at(until);
                continue;
            }
            if !self.connected.borrow().up {
                return Ok(None);
            }
            let result = self.push(&entry, now).await;
            let burst = self.bursts.entry(key.clone()).or_default();
            burst.last_push = Some(Instant::now());
            burst.deferred_since = None;
            let mut batch = Batch::new();
            match result {
                Ok(()) => {
                    // Cleared only if no newer change arrived meanwhile; otherwise it stays
                    // queued and the newer state is pushed next.
                    batch.delete_with::<PendingUpdate>(&key, Expect::Value(raw));
                }
                Err(PushError::Disconnected) => return Ok(None),
                Err(PushError::Failed(reason)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let mut failed = entry.clone();
                    failed.attempts += 1;
                    failed.last_error = Some(reason.clone());
                    failed.updated_at = now;
                    if failed.attempts >= self.settings.max_attempts {
                        tracing::error!(account = %entry.account, %reason, attempts = failed.attempts, "giving up on claims push");
                        failed.state = PendingState::Failed { reason, failed_at: now };
                    } else {
                        let backoff = self.backoff(failed.attempts);
                        failed.next_attempt_at = now + backoff.as_secs().max(1) as i64;
                        tracing::warn!(account = %entry.account, %reason, attempt = failed.attempts, retry_in = ?backoff, "claims push failed");
                        wake_at(Instant::now() + backoff.max(Duration::from_secs(1)));
                    }
                    batch.put_with(&failed, Expect::Value(raw));
                }
            }
            match db.commit(batch).await {
                Ok(()) => {}
                // A newer change replaced the entry while we pushed: it is still queued.
                Err(crate::store::StoreError::Conflict { .. }) => wake_at(Instant::now()),
                Err(e) => return Err(e),
            }
        }
        Ok(wake)
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.settings.initial_backoff.saturating_mul(factor).min(self.settings.max_backoff)
    }

    async fn request(&self, subject: String, payload: Bytes) -> Result<Bytes, PushError> {
        self.stats.pushes.fetch_add(1, Ordering::Relaxed);
        match self.client.request(subject, payload).await {
            Ok(msg) => Ok(msg.payload),
            Err(e) => {
                if self.client.connection_state() != async_nats::connection::State::Connected {
                    Err(PushError::Disconnected)
                } else {
                    Err(PushError::Failed(format!("request failed: {e}")))
                }
            }
        }
    }

    async fn lookup(&self, account_key: &str) -> Result<Bytes, PushError> {
        let subject = format!("$SYS.REQ.ACCOUNT.{account_key}.CLAIMS.LOOKUP");
        match self.client.request(subject, Bytes::new()).await {
            Ok(msg) => Ok(msg.payload),
            Err(_)
                if self.client.connection_state() != async_nats::connection::State::Connected =>
            {
                Err(PushError::Disconnected)
            }
            Err(e) => Err(PushError::Failed(format!("lookup failed: {e}"))),
        }
    }

    async fn push(&self, entry: &PendingUpdate, now: UnixTime) -> Result<(), PushError> {
        let authority = self.manager.authority();
        let operator = authority.operator().await.map_err(|e| PushError::Failed(e.to_string()))?;
        if entry.delete {
            return self.push_delete(entry, &operator, now).await;
        }
        let account = authority
            .db()
            .get::<AccountRecord>(entry.account.as_str())
            .await
            .map_err(|e| PushError::Failed(e.to_string()))?;
        let Some(account) = account.filter(|a| a.public_key() == entry.account_key) else {
            // The account this key belonged to is gone (deleted, or replaced by a new one of
            // the same name with another key): make sure the servers forget it too.
            return self.push_delete(entry, &operator, now).await;
        };
        let token = authority
            .account_jwt(&account, now)
            .await
            .map_err(|e| PushError::Failed(e.to_string()))?;
        trust::verify_account_jwt(&operator, &token, now)
            .map_err(|e| PushError::Failed(format!("refusing to push: {e}")))?;
        // Updating AUTH drops replies in flight from its exports (see api_gate).
        let quiet = match account.kind {
            AccountKind::Auth => Some(self.gate.exclusive().await),
            _ => None,
        };
        let reply =
            self.request("$SYS.REQ.CLAIMS.UPDATE".into(), Bytes::from(token.clone())).await?;
        // The export map is rebuilt by now; requests may flow again during the lookup.
        drop(quiet);
        check_reply(&reply).map_err(PushError::Failed)?;
        let held = self.lookup(&entry.account_key).await?;
        if held.as_ref() != token.as_bytes() {
            return Err(PushError::Failed("claims lookup does not return the pushed JWT".into()));
        }
        tracing::info!(account = %entry.account, "account JWT pushed");
        Ok(())
    }

    /// Removes an account from the servers and confirms they no longer hold it.
    async fn push_delete(
        &self,
        entry: &PendingUpdate,
        operator: &crate::model::OperatorRecord,
        now: UnixTime,
    ) -> Result<(), PushError> {
        let authority = self.manager.authority();
        let token = trust::delete_accounts_jwt(
            operator,
            vec![entry.account_key.clone()],
            authority.master(),
            now,
        )
        .map_err(|e| PushError::Failed(e.to_string()))?;
        let reply = self.request("$SYS.REQ.CLAIMS.DELETE".into(), token.into()).await?;
        // A server that never had the account answers with an error; the lookup decides.
        if let Err(e) = check_reply(&reply) {
            tracing::debug!(account = %entry.account, error = %e, "claims delete answered with an error");
        }
        let held = self.lookup(&entry.account_key).await?;
        if !held.is_empty() {
            return Err(PushError::Failed("server still holds the deleted account".into()));
        }
        tracing::info!(account = %entry.account, "account removed from the server");
        Ok(())
    }

    /// Queues every account whose JWT on the server differs from what the records say, and a
    /// delete for every account the server holds that the records do not (a delete that was
    /// lost or expired from the queue). Entries are only added where none is queued, so a
    /// change queued meanwhile is never overwritten.
    async fn reconcile(&self) -> Result<(), crate::store::StoreError> {
        self.stats.reconciliations.fetch_add(1, Ordering::Relaxed);
        let authority = self.manager.authority();
        let accounts = authority.db().list::<AccountRecord>("").await?;
        let callout = match authority.callout_settings().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: callout settings unavailable");
                return Ok(());
            }
        };
        let now = model::now();
        let mut queued = 0usize;
        for account in &accounts {
            let want = trust::account_body(
                account,
                (account.kind == AccountKind::Auth).then_some(&callout),
            );
            let Ok(held) = self.lookup(account.public_key()).await else { return Ok(()) };
            let current = std::str::from_utf8(&held)
                .ok()
                .and_then(|t| claims::decode::<claims::Account>(t, &Validation::at(now)).ok())
                .filter(|c| c.nats == want && c.name.as_deref() == Some(account.name.as_str()));
            if current.is_none()
                && self.enqueue_if_idle(account.public_key(), &account.name, false, now).await?
            {
                queued += 1;
            }
        }
        for key in self.server_accounts().await {
            if accounts.iter().any(|a| a.public_key() == key) {
                continue;
            }
            let Ok(name) = AccountName::new(&key.to_lowercase()) else { continue };
            if self.enqueue_if_idle(&key, &name, true, now).await? {
                queued += 1;
            }
        }
        if queued > 0 {
            tracing::info!(queued, "reconcile: queued accounts the server holds differently");
        }
        Ok(())
    }

    /// Queues a push for `key` unless an entry for it exists already.
    async fn enqueue_if_idle(
        &self,
        key: &str,
        name: &AccountName,
        delete: bool,
        now: UnixTime,
    ) -> Result<bool, crate::store::StoreError> {
        let entry = self.manager.pending_entry(key, name, delete, now);
        let mut batch = Batch::new();
        batch.put_with(&entry, Expect::Absent);
        match self.manager.authority().db().commit(batch).await {
            Ok(()) => Ok(true),
            Err(crate::store::StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The account keys the server holds (`$SYS.REQ.CLAIMS.LIST`); empty if it does not answer.
    async fn server_accounts(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct ListReply {
            #[serde(default)]
            data: Vec<String>,
        }
        match self.client.request("$SYS.REQ.CLAIMS.LIST", Bytes::new()).await {
            Ok(msg) => serde_json::from_slice::<ListReply>(&msg.payload)
                .map(|r| r.data)
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "claims list failed");
                Vec::new()
            }
        }
    }

    /// Removes failed entries older than the retention period.
    async fn cleanup(&self) {
        let db = self.manager.authority().db();
        let cutoff = model::now() - self.settings.retention.as_secs() as i64;
        let Ok(entries) = db.store().scan(Tree::Pending, "").await else { return };
        let mut batch = Batch::new();
        for (key, raw) in entries {
            if let Ok(PendingUpdate { state: PendingState::Failed { failed_at, .. }, .. }) =
                serde_json::from_slice(&raw)
            {
                if failed_at < cutoff {
                    batch.delete_with::<PendingUpdate>(&key, Expect::Value(raw));
                }
            }
        }
        if !batch.ops().is_empty() {
            if let Err(e) = db.commit(batch).await {
                tracing::warn!(error = %e, "removing expired failed pushes failed");
            }
        }
    }
}

/// Reads a claims update/delete reply: `Ok` for code 200, else the server's description.
fn check_reply(reply: &[u8]) -> Result<(), String> {
    let parsed: UpdateReply = serde_json::from_slice(reply).map_err(|_| {
        format!("unreadable reply: {}", String::from_utf8_lossy(&reply[..reply.len().min(200)]))
    })?;
    match (parsed.data, parsed.error) {
        (_, Some(e)) => Err(format!("server error {}: {}", e.code, e.description)),
        (Some(d), None) if d.code == 200 => Ok(()),
        (Some(d), None) => Err(format!("server answered {}: {}", d.code, d.message)),
        (None, None) => Err("empty reply".into()),
    }
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

    #[test]
    fn replies_are_read_like_the_server_writes_them() {
        let ok =
            br#"{"server":{"name":"s"},"data":{"account":"A","code":200,"message":"jwt updated"}}"#;
        assert_eq!(check_reply(ok), Ok(()));
        let err =
            br#"{"server":{},"error":{"account":"A","code":500,"description":"not trusted"}}"#;
        assert_eq!(check_reply(err), Err("server error 500: not trusted".into()));
        assert!(check_reply(b"garbage").is_err());
    }
}
