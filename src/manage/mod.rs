//! Management domain: accounts, users and roles as plain async functions over the store.
//!
//! Every change validates its input completely before it writes, then writes the records and
//! the pending account-JWT pushes it causes in one store batch; so a bad request leaves the
//! store unchanged and an acknowledged one is never without its push. The NATS endpoints in
//! [`crate::service`] only decode, call these, and encode.

pub mod accounts;
pub mod roles;
pub mod tokens;
pub mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Notify};

use crate::authority::{Authority, AuthorityError, AUTH_ACCOUNT};
use crate::model::{
    AccountName, AccountRecord, NameError, PendingState, PendingUpdate, SubjectError, UnixTime,
};
use crate::password::{PasswordError, PasswordHasher};
use crate::store::{Batch, StoreError};
use crate::trust::TrustError;

/// Largest request body accepted by any endpoint.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why a management request failed. Each variant has a stable wire code.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The request is malformed or breaks a rule (400).
    #[error("{0}")]
    BadRequest(String),
    /// A named record does not exist (404).
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    /// The request contradicts the stored state: a duplicate, a record in use (409).
    #[error("{0}")]
    Conflict(String),
    /// Something failed on our side (500); the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ManageError {
    /// The wire code: 400, 404, 409 or 500.
    pub fn code(&self) -> u16 {
        match self {
            ManageError::BadRequest(_) => 400,
            ManageError::NotFound { .. } => 404,
            ManageError::Conflict(_) => 409,
            ManageError::Internal(_) => 500,
        }
    }

    /// The message safe to send to the client.
    pub fn public_message(&self) -> String {
        match self {
            ManageError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { reason: "changed concurrently", .. } => {
                ManageError::Conflict("the record changed concurrently; retry".into())
            }
            StoreError::Conflict { key, reason, .. } => {
                ManageError::Conflict(format!("{key} {reason}"))
            }
            other => ManageError::Internal(other.to_string()),
        }
    }
}

impl From<NameError> for ManageError {
    fn from(e: NameError) -> Self {
        ManageError::BadRequest(e.to_string())
    }
}

impl From<SubjectError> for ManageError {
    fn from(e: SubjectError) -> Self {
        ManageError::BadRequest(e.to_string())
    }
}

impl From<AuthorityError> for ManageError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::NoSuchAccount(name) => ManageError::NotFound { what: "account", name },
            AuthorityError::NoSuchUser(name) => ManageError::NotFound { what: "user", name },
            AuthorityError::Store(e) => e.into(),
            other => ManageError::Internal(other.to_string()),
        }
    }
}

impl From<TrustError> for ManageError {
    fn from(e: TrustError) -> Self {
        ManageError::Internal(e.to_string())
    }
}

impl From<PasswordError> for ManageError {
    fn from(e: PasswordError) -> Self {
        ManageError::Internal(e.to_string())
    }
}

/// Decodes a JSON request body: unknown fields, wrong types and oversize bodies are 400s.
/// An empty body reads as `{}`, so list requests need none.
///
/// # Errors
/// [`ManageError::BadRequest`] saying what is wrong.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ManageError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ManageError::BadRequest(format!(
            "request of {} bytes is larger than the limit of {MAX_REQUEST_BYTES}",
            body.len()
        )));
    }
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body)
        .map_err(|e| ManageError::BadRequest(format!("invalid request: {e}")))
}

/// A change after which live callout connections must end now, not when their JWT expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A user was deactivated, deleted, or given a new password.
    User { account: String, user: String },
    /// An account was deactivated or deleted.
    Account { account: String },
    /// An API token was revoked.
    Token { id: String },
}

/// The management domain; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    authority: Authority,
    hasher: PasswordHasher,
    changed: Arc<Notify>,
    generation: Arc<AtomicU64>,
    revoked: broadcast::Sender<Revoked>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager over `authority`, hashing passwords with `hasher`.
    pub fn new(authority: Authority, hasher: PasswordHasher) -> Self {
        // Generations only need to differ between enqueues of one entry, across restarts too:
        // start from the clock in microseconds and count up.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        Manager {
            authority,
            hasher,
            changed: Arc::new(Notify::new()),
            generation: Arc::new(AtomicU64::new(start)),
            revoked: broadcast::channel(1024).0,
        }
    }

    /// The store and keys.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Revocations, for the callout to end live connections.
    pub fn revocations(&self) -> broadcast::Receiver<Revoked> {
        self.revoked.subscribe()
    }

    /// Announces a committed revocation (nobody listening is fine: no callout running).
    fn revoke(&self, revoked: Revoked) {
        let _ = self.revoked.send(revoked);
    }

    /// Signalled after every change that queued a push.
    pub fn changes(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// Adds a push of `account`'s JWT (or its deletion) to `batch`, replacing any queued one.
    pub fn enqueue(&self, batch: &mut Batch, account: &AccountRecord, delete: bool, now: UnixTime) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        batch.put(&PendingUpdate::new(account, delete, generation, now));
    }

    /// A fresh queue entry for the account with public key `key`, with a new generation.
    pub fn pending_entry(
        &self,
        key: &str,
        name: &AccountName,
        delete: bool,
        now: UnixTime,
    ) -> PendingUpdate {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        PendingUpdate::for_key(key, name, delete, generation, now)
    }

    /// Adds a push of the AUTH account (its `allowed_accounts` follow the tenants).
    async fn enqueue_auth(&self, batch: &mut Batch, now: UnixTime) -> Result<(), ManageError> {
        let auth = self.authority.account(&AccountName::new(AUTH_ACCOUNT).expect("valid")).await?;
        self.enqueue(batch, &auth, false, now);
        Ok(())
    }

    /// Commits and wakes the publisher.
    async fn commit(&self, batch: Batch) -> Result<(), ManageError> {
        self.authority.db().commit(batch).await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Queued and failed pushes.
    ///
    /// # Errors
    /// Store failures.
    pub async fn pending(&self) -> Result<Vec<PendingUpdate>, ManageError> {
        Ok(self.authority.db().list::<PendingUpdate>("").await?)
    }

    /// Re-queues failed pushes: all, or those of `account`. Returns how many.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] if `account` names no account with a failed push.
    pub async fn retry_failed(
        &self,
        account: Option<&str>,
        now: UnixTime,
    ) -> Result<usize, ManageError> {
        let wanted = account.map(AccountName::new).transpose()?;
        let mut batch = Batch::new();
        let mut count = 0;
        for (key, raw) in self.authority.db().store().scan(crate::store::Tree::Pending, "").await? {
            let Ok(mut entry) = serde_json::from_slice::<PendingUpdate>(&raw) else { continue };
            if !matches!(entry.state, PendingState::Failed { .. }) {
                continue;
            }
            if wanted.as_ref().is_some_and(|w| *w != entry.account) {
                continue;
            }
            entry.state = PendingState::Pending;
            entry.attempts = 0;
            entry.next_attempt_at = now;
            entry.generation = self.generation.fetch_add(1, Ordering::Relaxed);
            entry.updated_at = now;
            // Only if it is still that failed entry: a newer change replaced it otherwise.
            debug_assert_eq!(key, entry.account_key);
            batch.put_with(&entry, crate::store::Expect::Value(raw));
            count += 1;
        }
        if let (Some(name), 0) = (wanted, count) {
            return Err(ManageError::NotFound {
                what: "failed push for account",
                name: name.to_string(),
            });
        }
        if count > 0 {
            self.commit(batch).await?;
        }
        Ok(count)
    }
}

/// Account limits as the API takes them; every field optional, `-1` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    pub connections: Option<i64>,
    pub subscriptions: Option<i64>,
    pub data: Option<i64>,
    pub payload: Option<i64>,
    pub imports: Option<i64>,
    pub exports: Option<i64>,
    pub leaf_nodes: Option<i64>,
    /// JetStream memory storage in bytes (0: no JetStream memory).
    pub mem_storage: Option<i64>,
    /// JetStream disk storage in bytes (0: no JetStream disk).
    pub disk_storage: Option<i64>,
    pub streams: Option<i64>,
    pub consumers: Option<i64>,
}

/// Checks that a limit is -1 (unlimited) or a count.
pub(crate) fn check_limit(name: &str, value: Option<i64>) -> Result<(), ManageError> {
    match value {
        Some(v) if v < -1 => Err(ManageError::BadRequest(format!(
            "limit {name} must be -1 (unlimited) or >= 0, not {v}"
        ))),
        _ => Ok(()),
    }
}

/// A string field that may not be longer than `max`.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), ManageError> {
    if value.len() > max {
        return Err(ManageError::BadRequest(format!("{field} is longer than {max} bytes")));
    }
    Ok(())
}

/// Longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
