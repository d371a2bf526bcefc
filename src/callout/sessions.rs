//! Who to kick: every connection admitted through the callout, recorded in the store.
//!
//! "Disable means out now" has to hold across a restart of nats-authd (clean or kill -9) and
//! whichever instance admitted the login, so the record is durable, not in memory:
//! [`SessionRecord`]s in [`Tree::Sessions`], keyed `account/user/server_id/cid`. A session is
//! committed (on disk) *before* the allow answer is sent, so a kill -9 right after answering
//! loses nothing; it is removed when kicked and pruned once its JWT has expired (the server
//! closes the connection then), a bounded number per pass.
//!
//! Why the store and not asking the servers (`$SYS.REQ.SERVER.PING.CONNZ`): CONNZ answers
//! depend on every server of a cluster answering in time and are paged; a record we wrote is
//! exact and needs nothing from the servers until the kick itself. The cost is one durable
//! write per login: concurrent logins share one commit (one log write and sync) through
//! [`SessionWriter`], which waits a little for more when logins come close together.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::model::Revoked;
use crate::model::UnixTime;
use crate::store::{Batch, Db, Expect, Op, Record, StoreError, Tree};

/// Most sessions written in one commit.
pub const MAX_BATCH: usize = 512;
/// Most expired sessions removed by one prune pass.
pub const MAX_PRUNE: usize = 10_000;
/// Sessions waiting to be written; beyond that logins wait for room.
const QUEUE: usize = 4096;
/// Longest a commit waits for more sessions under load. Each commit is one log write and
/// sync whatever its size: under steady load, one session per commit was a quarter of the
/// service's CPU per login.
pub const LINGER: Duration = Duration::from_millis(6);
/// Sessions a commit under load waits for (at most [`LINGER`]): at a thousand logins a
/// second that is the whole linger, in a storm a millisecond or two.
pub const ENOUGH: usize = 8;
/// Sessions arriving less than this apart on average are under load (above 500 logins a
/// second); one login at a time takes a few milliseconds, so those are committed at once.
pub const CLOSE: Duration = Duration::from_millis(2);

/// A connection admitted through the callout, kept so it can be kicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub account: String,
    pub user: String,
    /// The admitting server's id (changes at every server restart).
    pub server_id: String,
    /// The connection id on that server.
    pub cid: u64,
    /// The API token used, if any.
    #[serde(default)]
    pub token_id: Option<String>,
    /// When the connection's JWT expires.
    pub expires: UnixTime,
}

impl Record for SessionRecord {
    const TREE: Tree = Tree::Sessions;
    fn key(&self) -> String {
        format!("{}/{}/{}/{}", self.account, self.user, self.server_id, self.cid)
    }
}

impl SessionRecord {
    /// Whether `revoked` ends this session.
    pub fn ended_by(&self, revoked: &Revoked) -> bool {
        match revoked {
            Revoked::Account { account } => &self.account == account,
            Revoked::User { account, user } => &self.account == account && &self.user == user,
            Revoked::Token { id } => self.token_id.as_deref() == Some(id),
        }
    }
}

/// A session to write, when it was sent, and who waits for the outcome.
struct Write {
    session: SessionRecord,
    sent: Instant,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The durable session list; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    db: Db,
    writes: mpsc::Sender<Write>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// Writes sessions in batches; runs until every [`Sessions`] handle is dropped.
pub struct SessionWriter {
    db: Db,
    writes: mpsc::Receiver<Write>,
    spacing: Spacing,
}

/// How far apart sessions arrive, smoothed.
#[derive(Debug)]
struct Spacing {
    last: Option<Instant>,
    mean: Duration,
}

impl Spacing {
    /// Longest gap counted: after an idle hour, a few close sessions mean load again.
    const MAX_GAP: Duration = Duration::from_millis(8);

    fn new() -> Spacing {
        Spacing { last: None, mean: Self::MAX_GAP }
    }

    /// Notes sessions sent at `sent`, roughly in order (concurrent logins may swap places
    /// on the way: one sent earlier counts as no gap, and the latest stays the reference).
    fn note(&mut self, sent: impl IntoIterator<Item = Instant>) {
        for sent in sent {
            if let Some(last) = self.last {
                let gap = sent.saturating_duration_since(last).min(Self::MAX_GAP);
                self.mean = (self.mean * 7 + gap) / 8;
            }
            self.last = Some(self.last.map_or(sent, |last| last.max(sent)));
        }
    }

    fn under_load(&self) -> bool {
        self.mean < CLOSE
    }
}

impl Sessions {
    /// The session list over `db`, and the writer task's body (the caller runs and owns it).
    pub fn new(db: Db) -> (Sessions, SessionWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Sessions { db: db.clone(), writes: tx },
            SessionWriter { db, writes: rx, spacing: Spacing::new() },
        )
    }

    /// Records `session`; durable when this returns `Ok`.
    ///
    /// # Errors
    /// Store failures, or the writer has stopped.
    pub async fn record(&self, session: SessionRecord) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        let stopped = || StoreError::Backend("the session writer has stopped".into());
        let write = Write { session, sent: Instant::now(), done };
        self.writes.send(write).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// Removes `sessions` (kicked, or refused after being recorded).
    ///
    /// # Errors
    /// Store failures.
    pub async fn remove(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for session in sessions {
            batch.push(Op::Delete {
                tree: Tree::Sessions,
                key: session.key(),
                expect: Expect::Any,
            });
        }
        self.db.commit(batch).await
    }

    /// Removes and returns the sessions `revoked` ends.
    ///
    /// # Errors
    /// Store failures.
    pub async fn take(&self, revoked: &Revoked) -> Result<Vec<SessionRecord>, StoreError> {
        // Names cannot hold '/', so `acme/` never matches `acme2/...`.
        let prefix = match revoked {
            Revoked::Account { account } => format!("{account}/"),
            Revoked::User { account, user } => format!("{account}/{user}/"),
            Revoked::Token { .. } => String::new(),
        };
        let ended: Vec<SessionRecord> = self
            .db
            .list::<SessionRecord>(&prefix)
            .await?
            .into_iter()
            .filter(|s| s.ended_by(revoked))
            .collect();
        self.remove(&ended).await?;
        Ok(ended)
    }

    /// Every `(account, user)` with sessions.
    ///
    /// # Errors
    /// Store failures.
    pub async fn users(&self) -> Result<BTreeSet<(String, String)>, StoreError> {
        Ok(self
            .db
            .list::<SessionRecord>("")
            .await?
            .into_iter()
            .map(|s| (s.account, s.user))
            .collect())
    }

    /// Removes up to [`MAX_PRUNE`] sessions whose JWT has expired; returns how many.
    ///
    /// # Errors
    /// Store failures.
    pub async fn prune(&self, now: UnixTime) -> Result<usize, StoreError> {
        let expired: Vec<SessionRecord> = self
            .db
            .list::<SessionRecord>("")
            .await?
            .into_iter()
            .filter(|s| s.expires <= now)
            .take(MAX_PRUNE)
            .collect();
        self.remove(&expired).await?;
        Ok(expired.len())
    }
}

impl SessionWriter {
    /// Commits queued sessions, all waiting ones in one batch (one fsync), until every
    /// [`Sessions`] handle is gone.
    pub async fn run(mut self) {
        let mut queued = Vec::with_capacity(MAX_BATCH);
        while self.writes.recv_many(&mut queued, MAX_BATCH).await > 0 {
            self.gather(&mut queued).await;
            let mut batch = Batch::new();
            for write in &queued {
                batch.put(&write.session);
            }
            let result = self.db.commit(batch).await;
            if let Err(e) = &result {
                tracing::error!(error = %e, sessions = queued.len(), "cannot record sessions");
            }
            for Write { done, .. } in queued.drain(..) {
                let answer = match &result {
                    Ok(()) => Ok(()),
                    Err(_) => Err(StoreError::Backend("recording the session failed".into())),
                };
                let _ = done.send(answer);
            }
        }
    }

    /// Adds to `queued` (just received) what comes until it holds [`ENOUGH`], at most until
    /// [`LINGER`] after the oldest one was sent, when sessions have been arriving [`CLOSE`]
    /// together; otherwise leaves it as it is.
    async fn gather(&mut self, queued: &mut Vec<Write>) {
        self.spacing.note(queued.iter().map(|w| w.sent));
        if !self.spacing.under_load() {
            return;
        }
        // From the oldest session's send: one that already waited out a commit in the channel
        // is not held a whole LINGER more.
        let deadline = queued.iter().map(|w| w.sent).min().unwrap_or_else(Instant::now) + LINGER;
        while queued.len() < ENOUGH {
            let room = MAX_BATCH - queued.len();
            tokio::select! {
                n = self.writes.recv_many(queued, room) => {
                    if n == 0 {
                        return;
                    }
                    self.spacing.note(queued[queued.len() - n..].iter().map(|w| w.sent));
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::SledStore;

    fn session(
        account: &str,
        user: &str,
        cid: u64,
        token: Option<&str>,
        expires: i64,
    ) -> SessionRecord {
        SessionRecord {
            account: account.into(),
            user: user.into(),
            server_id: "NSERVER".into(),
            cid,
            token_id: token.map(Into::into),
            expires,
        }
    }

    #[tokio::test]
    async fn sessions_are_durable_taken_by_revocation_and_pruned_when_expired() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(std::sync::Arc::new(
            SledStore::open(dir.path(), crate::store::sled::OpenMode::CreateIfMissing).unwrap(),
        ));
        let (sessions, writer) = Sessions::new(db.clone());
        let writer = tokio::spawn(writer.run());
        let all = [
            session("acme", "dev1", 1, None, 100),
            session("acme", "dev1", 2, Some("tok"), 100),
            session("acme", "dev2", 3, None, 100),
            session("acme2", "dev1", 4, None, 100),
            session("globex", "g1", 5, None, 10),
        ];
        let writes = all.iter().cloned().map(|s| {
            let sessions = sessions.clone();
            async move { sessions.record(s).await }
        });
        for written in futures::future::join_all(writes).await {
            written.unwrap();
        }
        assert_eq!(db.count::<SessionRecord>().await.unwrap(), 5);

        let token = sessions.take(&Revoked::Token { id: "tok".into() }).await.unwrap();
        assert_eq!(token, vec![all[1].clone()]);
        let user = sessions
            .take(&Revoked::User { account: "acme".into(), user: "dev1".into() })
            .await
            .unwrap();
        assert_eq!(user, vec![all[0].clone()]);
        let account = sessions.take(&Revoked::Account { account: "acme".into() }).await.unwrap();
        assert_eq!(account, vec![all[2].clone()], "acme2 is another account");
        assert_eq!(sessions.prune(50).await.unwrap(), 1);
        let left: Vec<SessionRecord> = db.list("").await.unwrap();
        assert_eq!(left, vec![all[3].clone()]);
        drop(sessions);
        writer.await.unwrap();
    }

    fn writer() -> (tempfile::TempDir, Sessions, SessionWriter) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), crate::store::sled::OpenMode::CreateIfMissing);
        let (sessions, writer) = Sessions::new(Db::new(std::sync::Arc::new(store.unwrap())));
        (dir, sessions, writer)
    }

    fn keys(queued: &[Write]) -> Vec<String> {
        queued.iter().map(|w| w.session.key()).collect()
    }

    /// After `gap`, one session sent and received as `run` receives it; returns how long the
    /// writer then waited for more, and what it has to commit.
    async fn after(gap: Duration, writer: &mut SessionWriter) -> (Duration, Vec<Write>) {
        tokio::time::advance(gap).await;
        let (done, _) = oneshot::channel();
        let sent = Instant::now();
        let mut queued = vec![Write { session: session("acme", "dev1", 1, None, 100), sent, done }];
        writer.gather(&mut queued).await;
        (sent.elapsed(), queued)
    }

    /// Whether a wait was the whole linger: tokio's timer has whole milliseconds, so a
    /// deadline between two fires at the later one.
    fn whole_linger(waited: Duration) -> bool {
        (LINGER..=LINGER + Duration::from_millis(1)).contains(&waited)
    }

    // Paused clock: a wait advances it exactly to the next timer, so how long `gather` waited
    // is read off the clock, not measured.
    #[tokio::test(start_paused = true)]
    async fn one_login_at_a_time_is_committed_at_once_and_logins_under_load_wait_for_company() {
        let (_dir, sessions, mut writer) = writer();
        for _ in 0..50 {
            let (waited, _) = after(Duration::from_millis(3), &mut writer).await;
            assert_eq!(waited, Duration::ZERO, "3 ms apart is one login at a time");
        }
        let mut waits = Vec::new();
        for _ in 0..20 {
            waits.push(after(Duration::from_micros(500), &mut writer).await.0);
        }
        // Each wait (3 ms with nothing coming, as here) counts against "under load", but the
        // sessions at 0.5 ms outweigh it.
        let lingered = waits.iter().filter(|w| whole_linger(**w)).count();
        assert!(lingered >= 5, "0.5 ms apart is load: {waits:?}");

        // What comes while it waits joins the commit.
        let later = sessions.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            later.record(session("acme", "dev2", 2, None, 100)).await
        });
        let mut waited = after(Duration::from_micros(500), &mut writer).await;
        while !whole_linger(waited.0) {
            waited = after(Duration::from_micros(500), &mut writer).await;
        }
        let (waited, queued) = waited;
        assert!(whole_linger(waited), "waits LINGER, no longer: {waited:?}");
        assert_eq!(keys(&queued), ["acme/dev1/NSERVER/1", "acme/dev2/NSERVER/2"]);

        // After a quiet spell the next login is alone again.
        assert_eq!(after(Duration::from_secs(3600), &mut writer).await.0, Duration::ZERO);
    }

    /// A writer that has seen sessions 0.1 ms apart.
    fn under_load(writer: &mut SessionWriter) {
        let now = Instant::now();
        writer.spacing.note((0..20).map(|i| now - Duration::from_micros(100 * (20 - i))));
        assert!(writer.spacing.under_load());
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_when_enough_have_come_one_by_one() {
        let (_dir, sessions, mut writer) = writer();
        under_load(&mut writer);
        for cid in 2..=ENOUGH as u64 {
            let sessions = sessions.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(500 * cid)).await;
                sessions.record(session("acme", "dev1", cid, None, 1)).await
            });
        }
        let (waited, queued) = after(Duration::ZERO, &mut writer).await;
        assert!(waited < LINGER, "{waited:?}");
        assert_eq!(queued.len(), ENOUGH);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_counts_from_the_oldest_send_and_ends_at_shutdown() {
        let (_dir, sessions, mut writer) = writer();
        under_load(&mut writer);
        // Sent 4 ms ago (it waited in the channel while the last commit ran).
        let (done, _) = oneshot::channel();
        let sent = Instant::now() - Duration::from_millis(4);
        let mut queued = vec![Write { session: session("acme", "dev1", 1, None, 1), sent, done }];
        let started = Instant::now();
        writer.gather(&mut queued).await;
        let waited = started.elapsed();
        assert!(waited >= LINGER - Duration::from_millis(4), "{waited:?}");
        assert!(waited <= LINGER - Duration::from_millis(3), "{waited:?}");

        // Every handle gone: nothing more can come, no waiting.
        drop(sessions);
        let (waited, queued) = after(Duration::from_micros(100), &mut writer).await;
        assert_eq!(waited, Duration::ZERO);
        assert_eq!(queued.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn enough_sessions_are_committed_without_waiting_out_the_linger() {
        let (_dir, sessions, mut writer) = writer();
        under_load(&mut writer);
        for cid in 2..=ENOUGH as u64 + 5 {
            let sessions = sessions.clone();
            tokio::spawn(
                async move { sessions.record(session("acme", "dev1", cid, None, 1)).await },
            );
        }
        let (waited, queued) = after(Duration::from_micros(100), &mut writer).await;
        assert_eq!(waited, Duration::ZERO);
        assert!((ENOUGH..=ENOUGH + 5).contains(&queued.len()), "{}", queued.len());
    }

    /// The cost of recording sessions durably: `cargo test --lib sessions -- --ignored
    /// --nocapture` prints it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn measure_the_cost_of_durable_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), crate::store::sled::OpenMode::CreateIfMissing);
        let (sessions, writer) = Sessions::new(Db::new(std::sync::Arc::new(store.unwrap())));
        let writer = tokio::spawn(writer.run());
        let started = std::time::Instant::now();
        for cid in 0..200 {
            sessions.record(session("acme", "dev1", cid, None, 100)).await.unwrap();
        }
        let one_by_one = started.elapsed() / 200;
        let started = std::time::Instant::now();
        let writes = (1000..1500).map(|cid| {
            let sessions = sessions.clone();
            async move { sessions.record(session("acme", "dev2", cid, None, 100)).await }
        });
        for written in futures::future::join_all(writes).await {
            written.unwrap();
        }
        println!(
            "one login at a time: {one_by_one:?} a session; 500 at once: {:?} in all",
            started.elapsed()
        );
        drop(sessions);
        writer.await.unwrap();
    }
}
