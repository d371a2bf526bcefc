//! Management domain: accounts, users and roles as plain async functions over the store.
//!
//! Every change validates its input completely before it writes, then writes the records and
//! the pending account-JWT pushes it causes in one store batch; so a bad request leaves the
//! store unchanged and an acknowledged one is never without its push. The NATS endpoints in
//! [`crate::service`] only decode, call these, and encode.

pub mod accounts;
mod error;
pub mod logins;
pub mod roles;
pub mod selfservice;
pub mod tokens;
pub mod users;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast;

pub use error::{Cause, ManageError, Noun};

use crate::api::{Page, DEFAULT_PAGE, MAX_PAGE};
use crate::authority::Authority;
use crate::model::{AccountName, AccountRecord, UnixTime, UserRecord};
use crate::password::PasswordHasher;
use crate::queue::{ClaimsQueue, PendingUpdate};
use crate::store::Batch;

/// Largest request body accepted by any endpoint.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Decodes a JSON request body: unknown fields, wrong types and oversize bodies are 400s.
/// An empty body reads as `{}`, so list requests need none.
///
/// # Errors
/// [`ManageError::Invalid`] saying what is wrong.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ManageError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ManageError::Invalid(format!(
            "request of {} bytes is larger than the limit of {MAX_REQUEST_BYTES}",
            body.len()
        )));
    }
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| ManageError::Invalid(format!("invalid request: {e}")))
}

pub use crate::model::Revoked;

/// Room a list page leaves below the server's max payload for its envelope (`{"items":[],
/// "next":...}`, the cursor) and the reply's headers.
pub const PAGE_ENVELOPE_BYTES: usize = 4096;

/// One page's bounds: how many items, after which key, in how many bytes.
#[derive(Debug, Clone)]
pub struct PageSpec {
    /// Most items.
    pub limit: usize,
    /// The cursor: the key of the last item of the previous page.
    pub after: Option<String>,
    /// Most bytes of encoded items (the reply stays under the server's max payload).
    pub budget: usize,
}

impl PageSpec {
    /// Checks a request's `limit` and `cursor` for a list whose keys start with `prefix`,
    /// with replies of at most `max_payload` bytes.
    ///
    /// # Errors
    /// [`ManageError::Invalid`] for a limit of 0 or above [`MAX_PAGE`], or a cursor that is
    /// not a key of this list.
    pub fn new(
        limit: Option<u32>,
        cursor: Option<String>,
        prefix: &str,
        max_payload: usize,
    ) -> Result<Self, ManageError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ManageError::Invalid(format!(
                "limit {limit} is out of range: 1 to {MAX_PAGE}"
            )));
        }
        if let Some(cursor) = &cursor {
            if !cursor.starts_with(prefix) || cursor.len() == prefix.len() {
                return Err(ManageError::Invalid(format!(
                    "cursor {cursor:?} is not from this list; send back the `next` of its previous page"
                )));
            }
        }
        let budget = max_payload.saturating_sub(PAGE_ENVELOPE_BYTES);
        Ok(PageSpec { limit: limit as usize, after: cursor, budget })
    }

    /// The page of `rows` (in key order, after the cursor, up to `limit + 1` of them so one
    /// more tells there is a next page): as many as fit `limit` and the byte budget.
    ///
    /// # Errors
    /// [`ManageError::Internal`] if a single item is larger than the budget.
    pub fn page<T: Serialize>(&self, rows: Vec<(String, T)>) -> Result<Page<T>, ManageError> {
        let mut items = Vec::new();
        let mut last = None;
        let mut used = 0;
        let mut more = false;
        for (key, item) in rows {
            if items.len() == self.limit {
                more = true;
                break;
            }
            // The encoded size plus a comma: measured, so the reply never exceeds max payload.
            let size = serde_json::to_vec(&item).map_err(ManageError::internal)?.len() + 1;
            if used + size > self.budget {
                if items.is_empty() {
                    return Err(ManageError::internal(format!(
                        "record {key:?} alone is larger than a reply may be ({} bytes)",
                        self.budget
                    )));
                }
                more = true;
                break;
            }
            used += size;
            items.push(item);
            last = Some(key);
        }
        Ok(Page { items, next: if more { last } else { None } })
    }

    /// The page of `rows` that are all of a list, in key order (filtered in memory: for
    /// short lists, and lists whose records are not stored under their list's prefix).
    ///
    /// # Errors
    /// As [`PageSpec::page`].
    pub fn page_of_all<T: Serialize>(
        &self,
        rows: Vec<(String, T)>,
    ) -> Result<Page<T>, ManageError> {
        let after = self.after.as_deref();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .take(self.limit + 1)
            .collect();
        self.page(rows)
    }
}

/// Longest an account change waits for its push before it replies (see
/// [`Manager::with_push_wait`]).
pub const PUSH_WAIT: Duration = Duration::from_secs(3);

/// The management domain; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    authority: Authority,
    hasher: PasswordHasher,
    queue: ClaimsQueue,
    revoked: broadcast::Sender<Revoked>,
    push_wait: Duration,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager over `authority`, hashing passwords with `hasher`.
    pub fn new(authority: Authority, hasher: PasswordHasher) -> Self {
        let queue = ClaimsQueue::new(authority.db().clone());
        Manager {
            authority,
            hasher,
            queue,
            revoked: broadcast::channel(1024).0,
            push_wait: Duration::ZERO,
        }
    }

    /// Account changes wait up to `wait` for their JWT to reach the servers before they
    /// reply, so that an acknowledged account can be logged into at once. The service sets
    /// it; code that runs without a publisher leaves it at zero.
    pub fn with_push_wait(mut self, wait: Duration) -> Self {
        self.push_wait = wait;
        self
    }

    /// The store and keys.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The claims queue.
    pub fn queue(&self) -> &ClaimsQueue {
        &self.queue
    }

    /// Revocations, for the callout to end live connections.
    pub fn revocations(&self) -> broadcast::Receiver<Revoked> {
        self.revoked.subscribe()
    }

    /// Announces a committed revocation (nobody listening is fine: no callout running).
    fn revoke(&self, revoked: Revoked) {
        let _ = self.revoked.send(revoked);
    }

    /// Adds a push of `account`'s JWT (or its deletion) to `batch`, replacing any queued one.
    fn enqueue(&self, batch: &mut Batch, account: &AccountRecord, delete: bool, now: UnixTime) {
        self.queue.enqueue(batch, account, delete, now);
    }

    /// Commits a change; the queue's signal wakes the publisher if it queued a push.
    async fn commit(&self, batch: Batch) -> Result<(), ManageError> {
        Ok(self.authority.db().commit(batch).await?)
    }

    /// Waits (bounded by the push wait) for `account`'s queued push to reach the servers.
    async fn await_pushed(&self, account: &AccountRecord) {
        if self.push_wait.is_zero() {
            return;
        }
        match self.queue.settled(account.public_key(), self.push_wait).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(account = %account.name, "replying before the push was confirmed")
            }
            Err(e) => tracing::warn!(account = %account.name, error = %e, "cannot watch the push"),
        }
    }

    /// Queued and failed pushes.
    ///
    /// # Errors
    /// Store failures.
    pub async fn pending(
        &self,
        req: crate::api::ops::ListPending,
        max_payload: usize,
    ) -> Result<Page<PendingUpdate>, ManageError> {
        let spec = PageSpec::new(req.limit, req.cursor, "", max_payload)?;
        let mut rows: Vec<_> =
            self.queue.list().await?.into_iter().map(|p| (p.account.to_string(), p)).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        spec.page_of_all(rows)
    }

    /// Re-queues failed pushes: all, or those of `account`. Returns how many.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] if `account` names no account with a failed push.
    pub async fn retry_failed(
        &self,
        account: Option<&AccountName>,
        now: UnixTime,
    ) -> Result<usize, ManageError> {
        let count = self.queue.retry_failed(account, now).await?;
        if let (Some(name), 0) = (account, count) {
            return Err(ManageError::NotFound { what: Noun::Push, name: name.to_string() });
        }
        Ok(count)
    }
}

/// Checks that a limit is -1 (unlimited) or a count.
pub(crate) fn check_limit(name: &str, value: Option<i64>) -> Result<(), ManageError> {
    match value {
        Some(v) if v < -1 => Err(ManageError::Invalid(format!(
            "limit {name} must be -1 (unlimited) or >= 0, not {v}"
        ))),
        _ => Ok(()),
    }
}

/// A string field that may not be longer than `max`.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), ManageError> {
    if value.len() > max {
        return Err(ManageError::Invalid(format!("{field} is longer than {max} bytes")));
    }
    Ok(())
}

/// Refuses an inactive account or user: nothing is signed for them.
pub(crate) fn ensure_active(account: &AccountRecord, user: &UserRecord) -> Result<(), ManageError> {
    if !account.active {
        return Err(ManageError::Inactive { what: Noun::Account, name: account.name.to_string() });
    }
    if !user.active {
        return Err(ManageError::Inactive { what: Noun::User, name: user.name.to_string() });
    }
    Ok(())
}

/// Longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
