//! Answers a retried change once: requests carrying the same `Authd-Request-Id` get the
//! first attempt's reply instead of being applied twice, whichever instance they reach.
//!
//! Replies can be lost on the way back (nats-server drops replies in flight from AUTH's
//! exports when AUTH's JWT is updated, see [`crate::api_gate`]; a client can also time out).
//! The CLI and [`crate::client::AdminClient`] retry with the same id; this makes that safe for
//! changes. Entries live for [`TTL`].
//!
//! Two layers. In memory (at most [`MAX_ENTRIES`]): a retry reaching the instance that runs
//! or ran the first attempt waits for it and gets its reply without touching the store. In
//! the store ([`Dedup::with_store`], [`Tree::Runtime`] under `request/<sha256 of the id>`):
//! the first attempt claims the id with a create-if-absent record and writes its reply into
//! it when done, so a retry that the queue group sends to another instance finds the claim,
//! waits for the reply (polling every [`POLL`]) and returns it. The reply is sealed under the
//! master key (it can hold creds or a new token). A claim without a reply after
//! [`CLAIM_STALE`] is an attempt whose instance died: a retry then takes the claim over and
//! runs. Only requests that carry an id pay these two store writes. Records older than [`TTL`]
//! are removed by [`Dedup::prune`], which the publisher-lease holder runs every minute.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use data_encoding::{BASE64, HEXLOWER};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use super::reply::{Reply, WireError};
use crate::authority::Authority;
use crate::instance::InstanceId;
use crate::lease::now_ms;
use crate::store::{Batch, ConflictKind, Expect, Op, StoreError, Tree};
use crate::vault::Sealed;

/// The request header naming a request across retries.
pub const REQUEST_ID_HEADER: &str = "Authd-Request-Id";
/// How long a reply is kept for retries.
pub const TTL: Duration = Duration::from_secs(120);
/// Most replies kept in memory; older ones are dropped first when full.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest accepted request id.
pub const MAX_ID_LEN: usize = 128;
/// A claim in the store with no reply after this long is taken over by a retry.
pub const CLAIM_STALE: Duration = Duration::from_secs(60);
/// How often a retry looks for the reply of an attempt running on another instance.
pub const POLL: Duration = Duration::from_millis(100);
/// Key prefix of the request records in [`Tree::Runtime`].
pub const KEY_PREFIX: &str = "request/";
/// Most expired records one [`Dedup::prune`] removes.
const PRUNE_BATCH: usize = 1000;

#[derive(Debug)]
struct Entry {
    created: Instant,
    /// `None` while the first attempt is still being handled.
    reply: watch::Receiver<Option<Reply>>,
}

/// A request id claimed in the store, and its reply once there is one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestRecord {
    /// When the first attempt claimed it (unix milliseconds, the claimant's clock).
    created_at_ms: i64,
    /// The instance running or having run it.
    by: InstanceId,
    /// The reply, sealed ([`StoredReply`] as JSON), once the attempt finished.
    #[serde(default)]
    reply: Option<Sealed>,
}

/// A [`Reply`] as sealed into the store.
#[derive(Debug, Serialize, Deserialize)]
struct StoredReply {
    body: String,
    #[serde(default)]
    error: Option<(u16, String, String)>,
}

/// What the store says about an id.
enum Claim {
    /// We claimed it: run, then write the reply.
    Ours,
    /// Another attempt's record, as read.
    Found(RequestRecord, Vec<u8>),
}

/// The cache; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    store: Option<Arc<Backing>>,
}

#[derive(Debug)]
struct Backing {
    authority: Authority,
    instance: InstanceId,
}

impl Dedup {
    /// A cache backed by `authority`'s store as instance `instance`, so that retries are
    /// answered once across every instance sharing it.
    pub fn with_store(authority: Authority, instance: InstanceId) -> Self {
        Dedup { entries: Arc::default(), store: Some(Arc::new(Backing { authority, instance })) }
    }

    /// Runs `handle` for a new `id`, or returns the reply of the attempt that ran it first
    /// (waiting for it if it is still running). Without an id, just runs `handle`.
    pub async fn run<F, Fut>(&self, id: Option<&str>, handle: F) -> Reply
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Reply>,
    {
        let Some(id) = id.filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN) else {
            return handle().await;
        };
        let existing = {
            let mut entries = self.entries.lock().expect("dedup lock");
            let now = Instant::now();
            entries.retain(|_, e| now.duration_since(e.created) < TTL);
            match entries.get(id) {
                Some(entry) => Err(entry.reply.clone()),
                None => {
                    if entries.len() >= MAX_ENTRIES {
                        if let Some(oldest) =
                            entries.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| k.clone())
                        {
                            entries.remove(&oldest);
                        }
                    }
                    let (tx, rx) = watch::channel(None);
                    entries.insert(id.to_string(), Entry { created: now, reply: rx });
                    Ok(tx)
                }
            }
        };
        match existing {
            Ok(tx) => {
                let reply = match &self.store {
                    Some(backing) => backing.run(id, handle).await,
                    None => handle().await,
                };
                tx.send_replace(Some(reply.clone()));
                reply
            }
            Err(mut rx) => {
                let first = rx.wait_for(Option::is_some).await.map(|r| r.clone());
                match first {
                    Ok(Some(reply)) => reply,
                    // The first attempt was abandoned (shutdown): let this one run.
                    _ => handle().await,
                }
            }
        }
    }

    /// Removes request records older than [`TTL`] from the store (at most a thousand a
    /// call). Returns how many.
    ///
    /// # Errors
    /// Store failures.
    pub async fn prune(&self) -> Result<usize, StoreError> {
        let Some(backing) = &self.store else { return Ok(0) };
        let db = backing.authority.db();
        let cutoff = now_ms() - TTL.as_millis() as i64;
        let mut removed = 0;
        for (key, raw) in db.store().scan(Tree::Runtime, KEY_PREFIX).await? {
            if removed >= PRUNE_BATCH {
                break;
            }
            let created = serde_json::from_slice::<RequestRecord>(&raw).map(|r| r.created_at_ms);
            if created.is_ok_and(|c| c >= cutoff) {
                continue;
            }
            let mut batch = Batch::new();
            batch.push(Op::Delete { tree: Tree::Runtime, key, expect: Expect::Value(raw) });
            match db.commit(batch).await {
                Ok(()) => removed += 1,
                // Claimed afresh meanwhile: not ours to remove.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Prunes every `every` while `lease` says this instance is the publisher, until
    /// `shutdown` (one instance is enough to do it).
    pub async fn run_pruner(
        self,
        mut lease: watch::Receiver<bool>,
        every: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut shutdown => return,
            }
            if !*lease.borrow_and_update() {
                continue;
            }
            match self.prune().await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "expired request records removed"),
                Err(e) => tracing::warn!(error = %e, "removing expired request records failed"),
            }
        }
    }
}

impl Backing {
    /// Runs `handle` once across instances: claims `id` in the store, or waits for the reply
    /// of the instance that claimed it.
    async fn run<F, Fut>(&self, id: &str, handle: F) -> Reply
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Reply>,
    {
        let key = record_key(id);
        let give_up = Instant::now() + CLAIM_STALE + TTL;
        let mut expect = Expect::Absent;
        loop {
            let found = match self.claim(&key, expect.clone()).await {
                Ok(Claim::Ours) => break,
                Ok(Claim::Found(record, raw)) => (record, raw),
                Err(e) => {
                    // Without the store this is the in-memory cache alone: still once here.
                    tracing::warn!(error = %e, "claiming a request id in the store failed");
                    return handle().await;
                }
            };
            let (record, raw) = found;
            let age = Duration::from_millis((now_ms() - record.created_at_ms).max(0) as u64);
            if age < TTL {
                if let Some(sealed) = &record.reply {
                    match self.open(&key, sealed) {
                        Some(reply) => return reply,
                        None => tracing::warn!("a stored request reply does not open; running"),
                    }
                } else if age < CLAIM_STALE && Instant::now() < give_up {
                    tokio::time::sleep(POLL).await;
                    expect = Expect::Absent;
                    continue;
                }
            }
            // Expired, stale (its instance died) or unreadable: take it over, if still as read.
            expect = Expect::Value(raw);
        }
        let reply = handle().await;
        let record = RequestRecord {
            created_at_ms: now_ms(),
            by: self.instance.clone(),
            reply: Some(self.seal(&key, &reply)),
        };
        let mut batch = Batch::new();
        batch.push(Op::Put {
            tree: Tree::Runtime,
            key,
            value: serde_json::to_vec(&record).expect("request record serializes"),
            expect: Expect::Any,
        });
        if let Err(e) = self.authority.db().commit(batch).await {
            tracing::warn!(error = %e, "storing a request reply failed");
        }
        reply
    }

    /// Writes a claim under `expect` (absent, or the stale record being taken over); on a
    /// conflict returns what is there.
    async fn claim(&self, key: &str, expect: Expect) -> Result<Claim, StoreError> {
        let db = self.authority.db();
        let record =
            RequestRecord { created_at_ms: now_ms(), by: self.instance.clone(), reply: None };
        let mut batch = Batch::new();
        batch.push(Op::Put {
            tree: Tree::Runtime,
            key: key.to_string(),
            value: serde_json::to_vec(&record).expect("request record serializes"),
            expect,
        });
        match db.commit(batch).await {
            Ok(()) => return Ok(Claim::Ours),
            Err(StoreError::Conflict {
                kind: ConflictKind::Exists | ConflictKind::Changed,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        match db.store().get(Tree::Runtime, key).await? {
            Some(raw) => match serde_json::from_slice::<RequestRecord>(&raw) {
                Ok(record) => Ok(Claim::Found(record, raw)),
                // Unreadable: treat as expired, so that it is taken over.
                Err(_) => Ok(Claim::Found(
                    RequestRecord { created_at_ms: 0, by: InstanceId::from_text(""), reply: None },
                    raw,
                )),
            },
            // Pruned between the two calls: claim again.
            None => Box::pin(self.claim(key, Expect::Absent)).await,
        }
    }

    fn seal(&self, key: &str, reply: &Reply) -> Sealed {
        let stored = StoredReply {
            body: BASE64.encode(&reply.body),
            error: reply.error.as_ref().map(|e| (e.code, e.kind.to_string(), e.message.clone())),
        };
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&stored).expect("reply serializes"));
        self.authority.master().seal(&json, key.as_bytes())
    }

    fn open(&self, key: &str, sealed: &Sealed) -> Option<Reply> {
        let json = self.authority.master().open(sealed, key.as_bytes()).ok()?;
        let stored: StoredReply = serde_json::from_slice(&json).ok()?;
        let body = BASE64.decode(stored.body.as_bytes()).ok()?;
        let error = match stored.error {
            None => None,
            Some((code, kind, message)) => {
                let kind = WireError::KINDS.iter().find(|k| **k == kind).copied()?;
                Some(WireError { code, kind, message })
            }
        };
        Some(Reply { body: body.into(), error })
    }
}

/// The store key of request `id`: a hash, so any id fits and none is stored as sent.
pub fn record_key(id: &str) -> String {
    format!("{KEY_PREFIX}{}", HEXLOWER.encode(&Sha256::digest(id.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn reply(text: &str) -> Reply {
        Reply { body: bytes::Bytes::from(text.to_string()), error: None }
    }

    #[tokio::test]
    async fn the_same_id_is_applied_once() {
        let dedup = Dedup::default();
        let applied = Arc::new(AtomicUsize::new(0));
        let run = |id: Option<&'static str>, text: &'static str| {
            let (dedup, applied) = (dedup.clone(), applied.clone());
            async move {
                dedup
                    .run(id, || async move {
                        applied.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        reply(text)
                    })
                    .await
            }
        };
        let (a, b) = tokio::join!(run(Some("r1"), "first"), run(Some("r1"), "second"));
        assert_eq!(a, reply("first"));
        assert_eq!(b, reply("first"), "a concurrent retry waits for the first attempt");
        assert_eq!(run(Some("r1"), "third").await, reply("first"));
        assert_eq!(applied.load(Ordering::SeqCst), 1);
        assert_eq!(run(Some("r2"), "other").await, reply("other"));
        assert_eq!(run(None, "plain").await, reply("plain"));
        assert_eq!(run(None, "plain again").await, reply("plain again"));
        assert_eq!(applied.load(Ordering::SeqCst), 4);
    }
}
