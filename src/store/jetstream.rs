//! A [`Store`] over one NATS JetStream stream, so that several nats-authd instances can share
//! their records through the NATS servers they already run beside.
//!
//! # Layout
//! One stream (default [`DEFAULT_STREAM`]) with file storage, one message kept per subject
//! (the latest value, like a KV bucket), direct gets and atomic batch publish enabled. A record
//! lives on `authd.store.<tree>.k<hex of the key's UTF-8 bytes>`: keys hold `/`, `.`, `*`, `>`,
//! spaces and any unicode, none of which may appear raw in one subject token. Hex keeps byte
//! order (so key order) and turns a key prefix into a token prefix. The leading `k` keeps the
//! empty key a valid token. A delete is a tombstone message (header [`OP_HEADER`] = `DEL`,
//! empty payload) that replaces the value; a tombstone reads as absent. A tombstone carries a
//! `Nats-TTL` ([`TOMBSTONE_TTL`], the stream allows message TTLs), so the server removes it
//! and its subject: deleted keys (every ended session is one) do not pile up in the stream.
//! A batch that pinned a tombstone's sequence and meets its removal is prepared again.
//!
//! # Costs
//! - `get`: one direct get (last message by subject).
//! - `scan(tree, prefix)`: one (paged) stream-info request listing the tree's subjects, then
//!   one direct get per subject whose token matches the prefix (16 in flight), tombstones
//!   included. Not a snapshot: each key is read as of its own get, as a sled scan does.
//! - `scan_page`: the same listing, then direct gets in key order only until the page is
//!   full. `count`: the listing, then one get per subject (to leave out tombstones).
//! - `commit`: one direct get per distinct key, then one publish per key it writes or must
//!   check. Several messages go out as one atomic batch (only the last is a request); a single
//!   message is a plain publish, which is atomic on its own.
//!
//! # Conditions
//! Each condition is checked twice: locally against the values just read, for a typed error
//! that names the key; then by the server, because every message carries
//! `Nats-Expected-Last-Subject-Sequence` with the sequence the local check saw (0 = absent). A
//! writer that slipped in between makes the whole batch fail with "wrong last sequence" (API
//! error 10071, matched by code): nothing is stored, and the keys are read again to name the
//! one that moved. While that other write is proposed but not committed the server says 10164
//! instead; if the re-read shows nothing moved, the answer is [`StoreError::Unavailable`]
//! (what it means when quorum is lost), else the conflict. A [`Op::Check`] writes nothing to its key: it becomes a message on the
//! scratch subject [`CHECK_SUBJECT`] whose `Nats-Expected-Last-Subject-Sequence-Subject`
//! points the server's sequence check at the checked key's subject. Republishing the checked
//! value instead would bump its sequence and fail every concurrent batch that merely checked
//! the same parent (two users added to one account at once).
//!
//! Keys written with [`Expect::Any`] only are not pinned (last writer wins, as in sled).
//! Several ops on one key are folded into one message, checked in order against the batch's
//! own earlier writes, as sled's transaction does.
//!
//! # Done / not done
//! Done: the backend, typed conflicts, the conformance suite (`tests/store_conformance.rs`);
//! `init --store jetstream` selects it and `serve` seeds and runs on it ([`crate::shared`]);
//! a replicated stream is read through its leader ([`ReadPath`]).
//! Not done: tombstones written by builds before their TTL stay; batches are limited to the
//! server's 1000 messages ([`JetStreamStoreError::BatchTooLarge`]; sled has no such limit).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::HeaderMap;
use async_trait::async_trait;
use data_encoding::HEXLOWER;
use futures::{StreamExt, TryStreamExt};

use super::{Batch, ConflictKind, Expect, Op, Store, StoreError, Tree};

/// The stream's default name.
pub const DEFAULT_STREAM: &str = "AUTHD_STORE";
/// Every subject of the store starts with this.
pub const SUBJECT_PREFIX: &str = "authd.store";
/// Where batch [`Op::Check`]s are published. Three tokens, so it never matches a tree's
/// `authd.store.<tree>.>` filter.
pub const CHECK_SUBJECT: &str = "authd.store._check";
/// Header marking a tombstone.
pub const OP_HEADER: &str = "Authd-Op";
const OP_DELETE: &str = "DEL";
const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";
const EXPECTED_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
const EXPECTED_SEQ_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
const TTL_HEADER: &str = "Nats-TTL";
/// Direct gets in flight during a scan.
const SCAN_CONCURRENCY: usize = 16;

/// Where the store lives.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// Stream name.
    pub stream: String,
    /// Copies of the stream in a cluster (1 on a single server).
    pub replicas: usize,
    /// How long a tombstone stays before the server removes it ([`TOMBSTONE_TTL`]).
    pub tombstone_ttl: Duration,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        JetStreamOptions {
            stream: DEFAULT_STREAM.to_string(),
            replicas: 1,
            tombstone_ttl: TOMBSTONE_TTL,
        }
    }
}

/// How long a tombstone stays: long enough that a batch read before it went rarely meets its
/// removal (that batch is then prepared again), short enough that deleted keys do not pile up.
/// Every callout login's session is a key of its own, so without it the stream gained a
/// subject per login for good, and every session scan read them all.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(600);

/// Times a batch is prepared again when all that moved under it was a tombstone the server
/// removed.
const TOMBSTONE_RETRIES: usize = 3;

/// Most messages one atomic batch may hold (nats-server's limit; more fail with API error
/// 10199 after every member was sent).
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// Failures of this backend's own, carried as the source of [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum JetStreamStoreError {
    /// An existing stream of that name has settings the store's guarantees rest on turned off.
    #[error("stream {stream} exists but {what}")]
    Unsuitable { stream: String, what: &'static str },
    /// The batch needs more messages than one atomic publish may carry; nothing was sent.
    #[error("batch needs {messages} messages, more than the {max} of one atomic publish")]
    BatchTooLarge { messages: usize, max: usize },
}

/// JetStream-backed [`Store`]; cheap to clone, shares the client's connection.
#[derive(Clone)]
pub struct JetStreamStore {
    context: jetstream::Context,
    stream: stream::Stream,
    /// Read through the stream leader instead of any replica (see [`ReadPath`]).
    reads: ReadPath,
    /// `Nats-TTL` of tombstones.
    tombstone_ttl: String,
}

/// Where reads go.
///
/// A direct get (`$JS.API.DIRECT.GET`) is answered by whichever replica answers first, and a
/// follower answers from what it has applied so far: with replicas > 1 a write that instance
/// A had acknowledged (a quorum stored it) could be missing from a read by instance B for as
/// long as that follower lags. A message get (`$JS.API.STREAM.MSG.GET`) is answered by the
/// stream leader only, which stores a message before it acknowledges it: "acknowledged by A,
/// visible through B" holds without retries (right after a leader change a read may still
/// wait or time out; it is never answered from an older state by a follower). So a
/// replicated stream reads through the leader and a single-replica stream (where the one
/// server is the leader) keeps the direct get.
///
/// The price, measured (`cargo test --test cluster read_paths -- --ignored --nocapture`: 300
/// gets of one 300-byte record from each server of a 3-server loopback cluster on 2 shared
/// cores): direct 80–210 µs median, 250–460 µs p99; leader 290–390 µs median, 1.5–1.9 ms p99.
/// The other option, retrying a conflict after re-reading, would leave plain reads (a
/// `user.get` right after another instance's `user.create`, a login right after a password
/// change) stale, which no retry sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// Any replica (direct get).
    Direct,
    /// The stream leader (message get).
    Leader,
}

/// What a key holds now: its last message's sequence (0 when it never had one) and its value
/// (`None` when absent or a tombstone).
#[derive(Debug, Clone, PartialEq)]
struct Current {
    seq: u64,
    value: Option<Vec<u8>>,
}

/// All ops of one batch on one key, folded.
struct KeyPlan {
    tree: Tree,
    key: String,
    ops: Vec<(Option<Option<Vec<u8>>>, Expect)>,
}

impl KeyPlan {
    /// Whether its message carries the sequence it was read at. Blind writes are not pinned:
    /// last writer wins, as with sled.
    fn pinned(&self) -> bool {
        self.ops.iter().any(|(_, e)| *e != Expect::Any)
    }
}

impl JetStreamStore {
    /// Opens the store's stream through `client`, creating it when missing.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when JetStream is unavailable or an existing stream of that
    /// name lacks atomic publish, direct get or one-message-per-subject.
    pub async fn open(
        client: async_nats::Client,
        options: &JetStreamOptions,
    ) -> Result<Self, StoreError> {
        let context = jetstream::new(client);
        let config = stream::Config {
            name: options.stream.clone(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            // Latest value only: older ones are history nobody reads.
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: options.replicas,
            allow_direct: true,
            allow_atomic_publish: true,
            // Tombstones carry a TTL.
            allow_message_ttl: true,
            ..Default::default()
        };
        let mut stream = context.get_or_create_stream(config).await.map_err(failed)?;
        let mut found = stream.info().await.map_err(failed)?.config.clone();
        let unsuitable = |what| {
            StoreError::backend(JetStreamStoreError::Unsuitable {
                stream: options.stream.clone(),
                what,
            })
        };
        if !found.allow_atomic_publish {
            return Err(unsuitable("has atomic publish off"));
        }
        if !found.allow_direct {
            return Err(unsuitable("has direct get off"));
        }
        if found.max_messages_per_subject != 1 {
            return Err(unsuitable("keeps more than one message per subject"));
        }
        // Only once the stream is known to be a store: the server cannot turn TTLs off again.
        if !found.allow_message_ttl {
            // A stream made by an older build: tombstones it left stay, new ones go.
            found.allow_message_ttl = true;
            context.update_stream(&found).await.map_err(failed)?;
        }
        let reads = if found.num_replicas > 1 { ReadPath::Leader } else { ReadPath::Direct };
        let tombstone_ttl = format!("{}s", options.tombstone_ttl.as_secs().max(1));
        Ok(JetStreamStore { context, stream, reads, tombstone_ttl })
    }

    /// Where this store's reads go (decided from the stream's replicas).
    pub fn read_path(&self) -> ReadPath {
        self.reads
    }

    /// Sends reads to `reads` from now on (tests and benchmarks compare the two).
    pub fn with_read_path(mut self, reads: ReadPath) -> Self {
        self.reads = reads;
        self
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream.cached_info().config.name
    }

    async fn read(&self, tree: Tree, key: &str) -> Result<Current, StoreError> {
        self.read_subject(subject(tree, key)).await
    }

    async fn read_subject(&self, subject: String) -> Result<Current, StoreError> {
        let message = match self.reads {
            ReadPath::Direct => match self.stream.direct_get_last_for_subject(subject).await {
                Ok(message) => message,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
                    return Ok(Current { seq: 0, value: None })
                }
                Err(e) => return Err(failed(e)),
            },
            ReadPath::Leader => match self.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => message,
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(Current { seq: 0, value: None })
                }
                Err(e) => return Err(failed(e)),
            },
        };
        let deleted = message.headers.get(OP_HEADER).is_some_and(|v| v.as_str() == OP_DELETE);
        let value = (!deleted).then(|| message.payload.to_vec());
        Ok(Current { seq: message.sequence, value })
    }

    /// The keys of `tree` that start with `prefix` and sort after `after`, with their
    /// subjects, in key order, from one (paged) stream-info listing: no value is read.
    async fn subjects(
        &self,
        tree: Tree,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let filter = format!("{SUBJECT_PREFIX}.{}.>", tree.name());
        let wanted = token(prefix);
        let mut subjects: Vec<(String, String)> = self
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(failed)?
            .map_ok(|(subject, _count)| subject)
            .try_filter_map(|subject| {
                let hit = subject.rsplit('.').next().is_some_and(|t| t.starts_with(&wanted));
                let key = if hit { key_of(&subject) } else { None };
                let key = key.filter(|k| after.is_none_or(|a| k.as_str() > a));
                futures::future::ready(Ok(key.map(|k| (k, subject))))
            })
            .try_collect()
            .await
            .map_err(failed)?;
        // Byte order of keys, which is also the order of their hex tokens. A long listing
        // comes in pages by offset, so a key created between two pages can show twice.
        subjects.sort();
        subjects.dedup();
        Ok(subjects)
    }

    /// The values of the first `limit` keys of `subjects` that are not tombstones, read
    /// concurrently and in order; reading stops once `limit` are found.
    async fn read_live(
        &self,
        subjects: Vec<(String, String)>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let reads: Vec<_> = subjects
            .into_iter()
            .map(|(key, subject)| async move {
                Ok::<_, StoreError>(self.read_subject(subject).await?.value.map(|v| (key, v)))
            })
            .collect();
        futures::stream::iter(reads)
            .buffered(SCAN_CONCURRENCY)
            .try_filter_map(|row| futures::future::ready(Ok(row)))
            .take(limit)
            .try_collect()
            .await
    }

    /// Reads every key the plans touch, concurrently.
    async fn read_all(&self, plans: &[KeyPlan]) -> Result<Vec<Current>, StoreError> {
        // Collected first: a closure inside the stream type trips async-trait's Send check.
        let reads: Vec<_> = plans.iter().map(|p| self.read(p.tree, &p.key)).collect();
        futures::stream::iter(reads).buffered(SCAN_CONCURRENCY).try_collect().await
    }

    /// Publishes `messages` all or none. `Ok(Err(Stale))` when the server refused them
    /// because a pinned sequence moved.
    async fn publish(
        &self,
        messages: Vec<(String, HeaderMap, Vec<u8>)>,
    ) -> Result<Result<(), Stale>, StoreError> {
        let last = messages.len();
        let batch_id = (last > 1).then(|| HEXLOWER.encode(&rand::random::<[u8; 16]>()));
        let client = self.context.client();
        for (i, (subject, mut headers, payload)) in messages.into_iter().enumerate() {
            if let Some(id) = &batch_id {
                headers.insert(BATCH_ID, id.as_str());
                headers.insert(BATCH_SEQUENCE, (i + 1).to_string().as_str());
            }
            if i + 1 < last {
                // Not a request: the server answers only the commit, and the connection keeps
                // the order, so the commit arrives after every member.
                client
                    .publish_with_headers(subject, headers, payload.into())
                    .await
                    .map_err(failed)?;
                continue;
            }
            if batch_id.is_some() {
                headers.insert(BATCH_COMMIT, "1");
            }
            let ack = self
                .context
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(failed)?;
            // The client maps API error 10071 (wrong last sequence) to this kind.
            return match ack.await {
                Ok(_) => Ok(Ok(())),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(Err(Stale::Moved)),
                Err(e) if in_flight_on_the_key(&e) => Ok(Err(Stale::InFlight)),
                Err(e) => Err(failed(e)),
            };
        }
        Ok(Ok(()))
    }
}

/// How a publish went.
enum Published {
    Yes,
    /// Refused: a condition fails now, or a key was written since it was read.
    No(StoreError),
    /// Refused only because a tombstone read before has since expired: prepare it again (the
    /// conflict is what to report if that keeps happening).
    TombstoneGone(StoreError),
}

/// What moved under a refused batch.
enum Moved {
    Conflict(StoreError),
    TombstoneGone(StoreError),
    Nothing,
}

/// Why the server refused a batch over a pinned sequence.
enum Stale {
    /// A pinned sequence moved (API error 10071).
    Moved,
    /// A write to a pinned key is proposed but not yet committed, so the leader cannot check
    /// the pin (API error 10164, "wrong last sequence" without a number). With quorum this
    /// lasts milliseconds; without, the proposal waits for a quorum that is not there.
    InFlight,
}

/// Whether `e` is the server's 10164: a write to the same key is still in flight.
fn in_flight_on_the_key(e: &async_nats::jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|e| {
            e.error_code() == async_nats::jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
        })
}

/// A failed JetStream call as a store error: [`StoreError::Unavailable`] when the stream has
/// no leader to answer (the API's 503 "JetStream system temporarily unavailable", error code
/// 10008, or a request that times out or finds no responder while an election runs), else
/// [`StoreError::Backend`]. async-nats gives each call its own error type, all of which
/// display the server's code and description, so the text is where the kind is read.
fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    if is_unavailable(&e.to_string()) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

fn is_unavailable(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["10008", "temporarily unavailable", "timed out", "no responders"]
        .iter()
        .any(|needle| text.contains(needle))
}

fn subject(tree: Tree, key: &str) -> String {
    format!("{SUBJECT_PREFIX}.{}.{}", tree.name(), token(key))
}

fn token(key: &str) -> String {
    format!("k{}", HEXLOWER.encode(key.as_bytes()))
}

/// The key a subject's last token encodes, if it is one of ours.
fn key_of(subject: &str) -> Option<String> {
    let hex = subject.rsplit('.').next()?.strip_prefix('k')?;
    let bytes = HEXLOWER.decode(hex.as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

/// Groups a batch's ops by key, in order of first appearance.
fn plan(batch: &Batch) -> Vec<KeyPlan> {
    let mut plans: Vec<KeyPlan> = Vec::new();
    let mut index: HashMap<(Tree, String), usize> = HashMap::new();
    for op in batch.ops() {
        let (tree, key, write, expect) = match op {
            Op::Put { tree, key, value, expect } => (tree, key, Some(Some(value.clone())), expect),
            Op::Delete { tree, key, expect } => (tree, key, Some(None), expect),
            Op::Check { tree, key, expect } => (tree, key, None, expect),
        };
        let at = *index.entry((*tree, key.clone())).or_insert_with(|| {
            plans.push(KeyPlan { tree: *tree, key: key.clone(), ops: Vec::new() });
            plans.len() - 1
        });
        plans[at].ops.push((write, expect.clone()));
    }
    plans
}

/// Applies one key's ops to what it holds, as sled's transaction would: each condition sees
/// the batch's earlier writes. Returns the final value if the batch writes the key.
fn evaluate(plan: &KeyPlan, current: &Current) -> Result<Option<Option<Vec<u8>>>, StoreError> {
    let mut value = current.value.clone();
    let mut written = None;
    for (write, expect) in &plan.ops {
        let kind = match (expect, &value) {
            (Expect::Absent, Some(_)) => Some(ConflictKind::Exists),
            (Expect::Present, None) => Some(ConflictKind::Missing),
            (Expect::Value(want), Some(have)) if have != want => Some(ConflictKind::Changed),
            (Expect::Value(_), None) => Some(ConflictKind::Changed),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(StoreError::Conflict { tree: plan.tree, key: plan.key.clone(), kind });
        }
        if let Some(new) = write {
            value = new.clone();
            written = Some(new.clone());
        }
    }
    Ok(written)
}

fn expect_seq(seq: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(EXPECTED_SEQ, seq.to_string().as_str());
    headers
}

#[async_trait]
impl Store for JetStreamStore {
    async fn get(&self, tree: Tree, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read(tree, key).await?.value)
    }

    async fn scan(&self, tree: Tree, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let subjects = self.subjects(tree, prefix, None).await?;
        self.read_live(subjects, usize::MAX).await
    }

    // Only the page's own values are read (and the tombstones among them), not every key's.
    async fn scan_page(
        &self,
        tree: Tree,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let subjects = self.subjects(tree, prefix, after).await?;
        self.read_live(subjects, limit).await
    }

    // One pass over the keys: the default counts page by page, and a page here lists every
    // subject of the tree, which made a count quadratic in the keys.
    async fn count(&self, tree: Tree, prefix: &str) -> Result<usize, StoreError> {
        let subjects = self.subjects(tree, prefix, None).await?;
        // A tombstone's subject is listed too: each value is read to tell them apart.
        let reads: Vec<_> =
            subjects.into_iter().map(|(_, subject)| self.read_subject(subject)).collect();
        futures::stream::iter(reads)
            .buffered(SCAN_CONCURRENCY)
            .try_fold(0, |n, current| {
                futures::future::ready(Ok(n + current.value.is_some() as usize))
            })
            .await
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let prepared = self.prepare(&batch).await?;
        self.commit_prepared(prepared, &batch).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // A publish ack means the stream stored the message (on every replica's quorum).
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }
}

/// A batch read and checked locally but not yet published: [`Store::commit`] is
/// [`JetStreamStore::prepare`] then [`JetStreamStore::publish_prepared`]. Apart, they let a
/// test change a key in between and see the server refuse the whole batch.
///
/// Found by experiment (nats-server 2.15.1): members sent with a reply subject get an empty
/// reply, members sent without one get none, and only the commit gets a pub ack (with
/// `batch` and `count`). So members go out as plain publishes and only the commit waits.
pub struct Prepared {
    plans: Vec<KeyPlan>,
    current: Vec<Current>,
    messages: Vec<(String, HeaderMap, Vec<u8>)>,
}

impl JetStreamStore {
    /// Reads every key `batch` touches (one direct get each), checks its conditions against
    /// them and builds the messages, each pinned to the sequence just read.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a condition fails on what was read; backend failures.
    pub async fn prepare(&self, batch: &Batch) -> Result<Prepared, StoreError> {
        let plans = plan(batch);
        let current = self.read_all(&plans).await?;
        let mut messages = Vec::new();
        for (plan, now) in plans.iter().zip(&current) {
            let written = evaluate(plan, now)?;
            let pinned = plan.pinned();
            let subject = subject(plan.tree, &plan.key);
            match written {
                Some(value) => {
                    let mut headers = if pinned { expect_seq(now.seq) } else { HeaderMap::new() };
                    let payload = match value {
                        Some(v) => v,
                        None => {
                            headers.insert(OP_HEADER, OP_DELETE);
                            headers.insert(TTL_HEADER, self.tombstone_ttl.as_str());
                            Vec::new()
                        }
                    };
                    messages.push((subject, headers, payload));
                }
                // A check pins the key's sequence from the scratch subject, leaving the key's
                // own sequence alone (see the module doc).
                None if pinned => {
                    let mut headers = expect_seq(now.seq);
                    headers.insert(EXPECTED_SEQ_SUBJECT, subject.as_str());
                    messages.push((CHECK_SUBJECT.to_string(), headers, Vec::new()));
                }
                None => {}
            }
        }
        if messages.len() > MAX_BATCH_MESSAGES {
            return Err(StoreError::backend(JetStreamStoreError::BatchTooLarge {
                messages: messages.len(),
                max: MAX_BATCH_MESSAGES,
            }));
        }
        Ok(Prepared { plans, current, messages })
    }

    /// Publishes `prepared` (made from `batch`) as [`Store::commit`] does: if all that moved
    /// since the read was a tombstone the server removed, `batch` is prepared and published
    /// again (a few times at most).
    ///
    /// # Errors
    /// As [`JetStreamStore::publish_prepared`].
    pub async fn commit_prepared(
        &self,
        mut prepared: Prepared,
        batch: &Batch,
    ) -> Result<(), StoreError> {
        let mut tries = 0;
        loop {
            match self.try_publish(prepared).await? {
                Published::Yes => return Ok(()),
                Published::No(conflict) => return Err(conflict),
                // Read again: the sequences pinned now are those without the tombstone.
                Published::TombstoneGone(_) if tries < TOMBSTONE_RETRIES => tries += 1,
                Published::TombstoneGone(conflict) => return Err(conflict),
            }
            prepared = self.prepare(batch).await?;
        }
    }

    /// Publishes a prepared batch all or none; the server stores nothing if any key it pins
    /// moved since [`JetStreamStore::prepare`] read it.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] naming a key that moved (with the kind of the condition that
    /// now fails, if one does); backend failures.
    pub async fn publish_prepared(&self, prepared: Prepared) -> Result<(), StoreError> {
        match self.try_publish(prepared).await? {
            Published::Yes => Ok(()),
            Published::No(conflict) | Published::TombstoneGone(conflict) => Err(conflict),
        }
    }

    async fn try_publish(&self, prepared: Prepared) -> Result<Published, StoreError> {
        let Prepared { plans, current, messages } = prepared;
        match self.publish(messages).await? {
            Ok(()) => Ok(Published::Yes),
            Err(Stale::Moved) => Ok(match self.moved(&plans, &current).await {
                Moved::Conflict(conflict) => Published::No(conflict),
                Moved::TombstoneGone(conflict) => Published::TombstoneGone(conflict),
                // A re-read that fails, or shows nothing yet: the first key.
                Moved::Nothing => Published::No(StoreError::Conflict {
                    tree: plans[0].tree,
                    key: plans[0].key.clone(),
                    kind: ConflictKind::Changed,
                }),
            }),
            Err(Stale::InFlight) => match self.moved(&plans, &current).await {
                // The other write landed meanwhile: an ordinary conflict.
                Moved::Conflict(conflict) => Ok(Published::No(conflict)),
                Moved::TombstoneGone(conflict) => Ok(Published::TombstoneGone(conflict)),
                // Still nothing committed: the stream cannot take writes to this key now.
                Moved::Nothing => Err(StoreError::Unavailable(
                    "an earlier write to the same record is not committed yet (JetStream has \
                     no quorum for it)"
                        .into(),
                )),
            },
        }
    }

    /// What a re-read shows moved since `before`.
    async fn moved(&self, plans: &[KeyPlan], before: &[Current]) -> Moved {
        let Ok(now) = self.read_all(plans).await else { return Moved::Nothing };
        for (plan, now) in plans.iter().zip(&now) {
            if let Err(e) = evaluate(plan, now) {
                return Moved::Conflict(e);
            }
        }
        let changed = |plan: &KeyPlan| StoreError::Conflict {
            tree: plan.tree,
            key: plan.key.clone(),
            kind: ConflictKind::Changed,
        };
        let mut gone = None;
        for (plan, (b, n)) in plans.iter().zip(before.iter().zip(&now)) {
            // A key written blind was not pinned: its moving refused nothing.
            if b.seq == n.seq || !plan.pinned() {
                continue;
            }
            // The server removed the tombstone read before (its TTL): still absent.
            if b.value.is_none() && n.value.is_none() && n.seq == 0 {
                gone.get_or_insert_with(|| changed(plan));
                continue;
            }
            return Moved::Conflict(changed(plan));
        }
        gone.map_or(Moved::Nothing, Moved::TombstoneGone)
    }
}

#[cfg(test)]
mod tests {
    use super::{in_flight_on_the_key, is_unavailable};
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};

    #[test]
    fn only_the_servers_10164_reads_as_a_write_in_flight() {
        let api = |code: u64| {
            let json =
                format!(r#"{{"code":400,"err_code":{code},"description":"wrong last sequence"}}"#);
            serde_json::from_str::<async_nats::jetstream::Error>(&json).unwrap()
        };
        assert!(in_flight_on_the_key(&PublishError::with_source(
            PublishErrorKind::Other,
            api(10164)
        )));
        assert!(!in_flight_on_the_key(&PublishError::with_source(
            PublishErrorKind::Other,
            api(10071)
        )));
        assert!(!in_flight_on_the_key(&PublishError::new(PublishErrorKind::TimedOut)));
    }

    #[test]
    fn a_stream_without_a_leader_reads_as_unavailable() {
        for text in [
            "jetstream error: JetStream system temporarily unavailable (code 503, error code 10008)",
            "failed to get last raw message: timed out: request timed out: deadline has elapsed",
            "request failed: no responders",
        ] {
            assert!(is_unavailable(text), "{text}");
        }
        for text in ["wrong last sequence: 4", "stream not found", "insufficient resources"] {
            assert!(!is_unavailable(text), "{text}");
        }
    }
}
