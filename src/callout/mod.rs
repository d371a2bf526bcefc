//! Auth callout: clients log in with a password or an API token held by nats-authd, and get a
//! user JWT minted for the connection with their role's permissions.
//!
//! [`authorize`] decides (over a [`directory::Directory`], no NATS); this module is the NATS
//! side: the `$SYS.REQ.USER.AUTH` queue subscription, xkey sealing, minting and the signed
//! response, [`audit`] events, and kicking the live connections that a revocation ends
//! ([`sessions`], recorded durably so that a restart forgets none).

pub mod audit;
pub mod authorize;
pub mod backlog;
pub mod cache;
pub mod credential;
pub mod directory;
pub mod early;
pub mod limiter;
pub mod sealing;
pub mod sessions;
pub mod shared_limits;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, Message};
use bytes::Bytes;
use futures::StreamExt;
use nkeys::KeyPair;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;

use crate::authority::Authority;
use crate::claims::{
    self, AuthorizationRequest, AuthorizationResponse, Claims, ClaimsError, Validation,
};
use crate::connection::Dialer;
use crate::model::Revoked;
use crate::model::{self, AccountName, UnixTime, UserName};
use crate::server_api::ServerApi;
use crate::vault::MasterKey;
use audit::{Audit, AuditEvent, AuditPublisher};
use authorize::{Authorizer, Decision, LoginRequest, Refusal};
use sealing::Sealing;
use sessions::{SessionRecord, SessionWriter, Sessions};

/// Where nats-server sends authorization requests (in the callout account).
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// Queue group: several nats-authd instances share the load.
pub const QUEUE_GROUP: &str = "nats-authd-callout";
/// The header carrying the server's xkey when requests are sealed.
pub const SERVER_XKEY_HEADER: &str = "Nats-Server-Xkey";
/// The `aud` of every authorization request.
pub const REQUEST_AUDIENCE: &str = "nats-authorization-request";
/// Largest request accepted; a real one is a few kilobytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Requests handled at once. Enough for concurrent logins to share session commits and for
/// password logins waiting on argon2 not to hold up token logins; the rest wait in the
/// [`backlog::Backlog`], newest first.
pub const HANDLERS: usize = 256;
/// Most requests waiting for a handler; past that the oldest is dropped (its client is
/// refused by the server's time-out, as it would have been anyway).
pub const MAX_WAITING: usize = 16 * 1024;
/// Clock difference tolerated on the request's `exp`.
pub const CLOCK_SKEW_SECS: i64 = 2;

/// Counters for `authd.status`.
#[derive(Debug, Default)]
pub struct CalloutStats {
    pub allowed: AtomicU64,
    /// Of the allowed, those that skipped argon2 thanks to the cache.
    pub cache_hits: AtomicU64,
    pub refused: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Requests dropped unanswered: expired before their turn, or not verifiable.
    pub dropped: AtomicU64,
    pub kicked: AtomicU64,
}

/// `authd.status`'s view of the callout.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CalloutCounts {
    pub allowed: u64,
    pub cache_hits: u64,
    pub refused: u64,
    pub rate_limited: u64,
    pub dropped: u64,
    pub kicked: u64,
}

impl CalloutStats {
    /// The counters now.
    pub fn counts(&self) -> CalloutCounts {
        CalloutCounts {
            allowed: self.allowed.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            kicked: self.kicked.load(Ordering::Relaxed),
        }
    }
}

/// The callout responder.
pub struct Callout {
    authorizer: Arc<Authorizer>,
    /// Master key (minting) and store (sessions).
    authority: Authority,
    client: Client,
    /// Kicks revoked connections.
    server: ServerApi,
    /// Signs responses: the AUTH account's signing key.
    signer: Arc<KeyPair>,
    /// AUTH's curve key, when callout traffic is sealed.
    sealing: Option<Sealing>,
    stats: Arc<CalloutStats>,
    sessions: Sessions,
    audit: Audit,
    /// Bodies of the session writer and audit publisher, run (and owned) by [`Callout::run`].
    workers: Option<(SessionWriter, AuditPublisher)>,
    /// Accounts' user-signing keys, opened once.
    signers: Signers,
    /// For the early subscription ([`early`]); none with TLS.
    dialer: Option<Dialer>,
}

/// Most opened signing keys kept; past that the cache starts over (one per account in use).
const MAX_SIGNERS: usize = 1024;

/// Opened user-signing keys by public key. Opening one (decrypting the sealed seed, deriving
/// the ed25519 key) cost about as much as the signature itself, on every login; a public key
/// names one seed, so a rotated key is simply another entry.
#[derive(Default)]
struct Signers(Mutex<HashMap<String, Arc<KeyPair>>>);

impl Signers {
    /// The user JWT for `admitted`, as [`authorize::Admitted::mint`] makes it, signed with the
    /// cached key.
    fn mint(
        &self,
        admitted: &authorize::Admitted,
        user_nkey: &str,
        master: &MasterKey,
        now: UnixTime,
    ) -> Result<String, crate::trust::TrustError> {
        let account = &admitted.account;
        let sealed = account.user_signer();
        let cached = self.0.lock().expect("signer cache lock").get(&sealed.public).cloned();
        let signer = match cached {
            Some(signer) => signer,
            None => {
                let opened = Arc::new(sealed.key_pair(master)?);
                let mut signers = self.0.lock().expect("signer cache lock");
                if signers.len() >= MAX_SIGNERS {
                    signers.clear();
                }
                signers.insert(sealed.public.clone(), Arc::clone(&opened));
                opened
            }
        };
        // The same claims as `trust::user_jwt` (a test holds them byte for byte equal).
        let issuer_account = if sealed.public != account.public_key() {
            account.public_key().to_string()
        } else {
            String::new()
        };
        let body = claims::User {
            permission_limits: admitted.permissions.clone(),
            issuer_account,
            ..claims::User::default()
        };
        let mut user = Claims::new(user_nkey, body, now).with_name(admitted.user.name.as_str());
        user.expires = Some(admitted.expires);
        Ok(claims::encode(&user, &signer)?)
    }
}

/// Why a request could not even be answered.
#[derive(Debug, thiserror::Error)]
enum Unanswerable {
    #[error("request is sealed but no xkey is configured, or it does not open")]
    Seal,
    #[error("request too large ({0} bytes)")]
    TooLarge(usize),
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    #[error("wrong audience {0:?}")]
    Audience(String),
    #[error("no reply subject")]
    NoReply,
}

impl Callout {
    /// A responder answering with `authorizer`'s decisions, minting with `authority`'s keys
    /// and recording sessions in its store.
    pub fn new(
        authorizer: Arc<Authorizer>,
        authority: Authority,
        client: Client,
        signer: KeyPair,
        sealing: Option<Sealing>,
        stats: Arc<CalloutStats>,
    ) -> Self {
        let (sessions, writer) = Sessions::new(authority.db().clone());
        let (audit, publisher) = Audit::new(client.clone());
        Callout {
            authorizer,
            authority,
            server: ServerApi::new(client.clone()),
            client,
            signer: Arc::new(signer),
            sealing,
            stats,
            sessions,
            audit,
            workers: Some((writer, publisher)),
            signers: Signers::default(),
            dialer: None,
        }
    }

    /// Also receives requests on a second connection that subscribes in its `CONNECT`
    /// ([`early`]), so that none reach a restarted server before the subscription does.
    pub fn with_early_subscription(mut self, dialer: Option<Dialer>) -> Self {
        self.dialer = dialer;
        self
    }

    /// Answers requests until `shutdown`; kicks sessions as `revoked` says. Requests in
    /// flight at shutdown are finished (bounded), then the session writer and the audit
    /// publisher are stopped.
    ///
    /// # Errors
    /// If the subscription cannot be made.
    pub async fn run(
        mut self,
        mut revoked: broadcast::Receiver<Revoked>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), async_nats::SubscribeError> {
        tokio::pin!(shutdown);
        let (writer, publisher) = self.workers.take().expect("run once");
        let mut workers = JoinSet::new();
        workers.spawn(writer.run());
        workers.spawn(publisher.run());
        let subscribed = self.client.queue_subscribe(AUTH_SUBJECT, QUEUE_GROUP.to_string()).await;
        let mut requests = match subscribed {
            Ok(requests) => requests,
            Err(e) => {
                drop(self);
                while workers.join_next().await.is_some() {}
                return Err(e);
            }
        };
        let mut revocations_closed = false;
        let mut prune = tokio::time::interval(Duration::from_secs(60));
        let this = Arc::new(self);
        let waiting = Arc::new(backlog::Waiting::new(MAX_WAITING));
        let mut handlers = JoinSet::new();
        for _ in 0..HANDLERS {
            let (this, waiting) = (Arc::clone(&this), Arc::clone(&waiting));
            handlers.spawn(async move {
                while let Some((msg, received)) = waiting.next().await {
                    this.handle(msg, received).await;
                }
            });
        }
        let early_stop = CancellationToken::new();
        let early = this.dialer.clone().map(|dialer| {
            tokio::spawn(early::run(
                dialer,
                Arc::clone(&waiting),
                Arc::clone(&this.stats),
                early_stop.clone(),
            ))
        });
        let mut in_flight = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                msg = requests.next() => {
                    let Some(msg) = msg else { break };
                    if waiting.push((msg, Instant::now())) {
                        this.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("backlog full: dropped the oldest authorization request");
                    }
                }
                event = revoked.recv(), if !revocations_closed => match event {
                    Ok(event) => {
                        let this = Arc::clone(&this);
                        in_flight.spawn(async move { this.kick(&event).await });
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Some revocations were missed: check every session against the store.
                        tracing::warn!(missed = n, "missed revocations; sweeping sessions");
                        let this = Arc::clone(&this);
                        in_flight.spawn(async move { this.sweep().await });
                    }
                    Err(broadcast::error::RecvError::Closed) => revocations_closed = true,
                },
                _ = prune.tick() => {
                    let this = Arc::clone(&this);
                    in_flight.spawn(async move {
                        match this.sessions.prune(model::now()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(pruned = n, "pruned expired sessions"),
                            Err(e) => tracing::warn!(error = %e, "cannot prune sessions"),
                        }
                    });
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        let _ = requests.unsubscribe().await;
        early_stop.cancel();
        if let Some(early) = early {
            if let Err(e) = early.await {
                tracing::error!(error = %e, "the early callout subscription task failed");
            }
        }
        // Requests already received are still answered (or dropped as expired), bounded below.
        waiting.close();
        let in_flight_done = async {
            while handlers.join_next().await.is_some() {}
            while in_flight.join_next().await.is_some() {}
        };
        let finished = tokio::time::timeout(Duration::from_secs(5), in_flight_done).await;
        if finished.is_err() {
            handlers.shutdown().await;
            in_flight.shutdown().await;
        }
        // The last handles to the session writer and the audit queue: both finish what is
        // queued and stop.
        drop(this);
        if tokio::time::timeout(Duration::from_secs(5), async {
            while workers.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("the session writer or audit publisher did not stop in time");
            workers.shutdown().await;
        }
        Ok(())
    }

    // DEBUG: at INFO the span's fields were formatted on every login for the few error lines
    // that could use them.
    #[tracing::instrument(
        name = "callout",
        level = "debug",
        skip_all,
        fields(server = Empty, cid = Empty, host = Empty, login = Empty, outcome = Empty)
    )]
    async fn handle(&self, msg: Message, received: Instant) {
        let now = model::now();
        let (request, server_xkey) = match self.open(&msg, now) {
            Ok(opened) => opened,
            Err(Unanswerable::Claims(ClaimsError::Expired { .. })) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("dropped an expired authorization request");
                return;
            }
            Err(e) => {
                // Nothing trustworthy to answer to (user_nkey, server id): drop and say so.
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "dropped an authorization request that does not verify");
                return;
            }
        };
        let Some(reply) = msg.reply.clone() else { return };
        let span = tracing::Span::current();
        let client_info = &request.nats.client_information;
        span.record("server", request.nats.server.name.as_str());
        span.record("cid", client_info.id);
        span.record("host", client_info.host.as_str());
        // The server gives up at `exp`; so do we, a little before, to leave time to answer.
        // `exp` is in whole seconds: measure what is left in milliseconds of wall clock.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let left_ms = request.expires.map_or(2000, |exp| exp * 1000 - now_ms).max(0);
        // From now, not from `received`: `left_ms` is what is left now, after any wait in the
        // backlog.
        let deadline = Instant::now()
            + Duration::from_millis(left_ms as u64).saturating_sub(Duration::from_millis(100));
        let login = LoginRequest {
            connect: &request.nats.connect_options,
            host: &client_info.host,
            user_nkey: &request.nats.user_nkey,
        };
        let mut decision = self.authorizer.decide(login, deadline, now).await;
        span.record("login", decision.login.as_str());
        let jwt = match &decision.result {
            Ok(admitted) => match self.admit(&request, admitted, now).await {
                Ok(jwt) => Some(jwt),
                Err(refusal) => {
                    decision.result = Err(refusal);
                    None
                }
            },
            Err(_) => None,
        };
        span.record("outcome", decision.result.as_ref().err().map_or("allowed", |r| r.as_str()));
        if matches!(decision.result, Err(Refusal::Expired)) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.audit(&request, &decision, received);
            return;
        }
        let body = match (&decision.result, jwt) {
            (Ok(_), Some(jwt)) => AuthorizationResponse::allow(jwt),
            (Err(refusal), _) => {
                AuthorizationResponse::deny(format!("nats-authd: {}", refusal.as_str()))
            }
            (Ok(_), None) => unreachable!("an admitted login has a JWT"),
        };
        let mut response = Claims::new(request.nats.user_nkey.clone(), body, now);
        response.audience = Some(request.nats.server.id.clone());
        let token = match claims::encode(&response, &self.signer) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    server = %request.nats.server.name,
                    cid = client_info.id,
                    "cannot sign an authorization response"
                );
                return;
            }
        };
        let payload = match (&server_xkey, &self.sealing) {
            (Some(server), Some(ours)) => match ours.seal(token.as_bytes(), server) {
                Ok(sealed) => Bytes::from(sealed),
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        server = %request.nats.server.name,
                        cid = client_info.id,
                        "cannot seal an authorization response"
                    );
                    return;
                }
            },
            _ => Bytes::from(token),
        };
        if let Err(e) = self.client.publish(reply, payload).await {
            tracing::warn!(
                error = %e,
                server = %request.nats.server.name,
                cid = client_info.id,
                "cannot answer an authorization request"
            );
        }
        match &decision.result {
            Ok(admitted) => {
                self.stats.allowed.fetch_add(1, Ordering::Relaxed);
                if admitted.cached {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(Refusal::RateLimited) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.audit(&request, &decision, received);
    }

    /// After the decision: records the session durably, re-checks the records, mints.
    async fn admit(
        &self,
        request: &Claims<AuthorizationRequest>,
        admitted: &authorize::Admitted,
        now: UnixTime,
    ) -> Result<String, Refusal> {
        // Recorded (on disk) before the re-check and the answer: a revocation committed from
        // here on finds the session to kick, even after a restart; one committed before
        // shows in the re-check.
        let session = SessionRecord {
            account: admitted.account.name.to_string(),
            user: admitted.user.name.to_string(),
            server_id: request.nats.server.id.clone(),
            cid: request.nats.client_information.id,
            token_id: admitted.token_id.clone(),
            expires: admitted.expires,
        };
        if let Err(e) = self.sessions.record(session.clone()).await {
            // Without a record the connection could not be kicked later: refuse.
            tracing::error!(
                error = %e,
                server = %session.server_id,
                cid = session.cid,
                "cannot record a session; refusing the login"
            );
            return Err(Refusal::Internal);
        }
        let minted = if self.authorizer.still_valid(admitted).await {
            let master = self.authority.master();
            self.signers.mint(admitted, &request.nats.user_nkey, master, now).map_err(|e| {
                tracing::error!(
                    error = %e,
                    server = %session.server_id,
                    cid = session.cid,
                    "cannot mint a user JWT"
                );
                Refusal::Internal
            })
        } else {
            Err(Refusal::Inactive)
        };
        if minted.is_err() {
            if let Err(e) = self.sessions.remove(std::slice::from_ref(&session)).await {
                tracing::warn!(error = %e, "cannot remove the session of a refused login");
            }
        }
        minted
    }

    /// Opens (if sealed), verifies and decodes a request.
    fn open(
        &self,
        msg: &Message,
        now: UnixTime,
    ) -> Result<(Claims<AuthorizationRequest>, Option<String>), Unanswerable> {
        if msg.payload.len() > MAX_REQUEST_BYTES {
            return Err(Unanswerable::TooLarge(msg.payload.len()));
        }
        if msg.reply.is_none() {
            return Err(Unanswerable::NoReply);
        }
        let server_xkey =
            msg.headers.as_ref().and_then(|h| h.get(SERVER_XKEY_HEADER)).map(|v| v.to_string());
        let opened;
        let token: &[u8] = match (&server_xkey, &self.sealing) {
            (Some(server), Some(ours)) => {
                opened = ours.open(&msg.payload, server).map_err(|_| Unanswerable::Seal)?;
                &opened
            }
            (Some(_), None) => return Err(Unanswerable::Seal),
            (None, _) => &msg.payload,
        };
        let token =
            std::str::from_utf8(token).map_err(|_| ClaimsError::Malformed("not UTF-8".into()))?;
        let request = claims::decode::<AuthorizationRequest>(
            token,
            &Validation { now, skew: CLOCK_SKEW_SECS },
        )?;
        if request.audience.as_deref() != Some(REQUEST_AUDIENCE) {
            return Err(Unanswerable::Audience(request.audience.unwrap_or_default()));
        }
        Ok((request, server_xkey))
    }

    fn audit(
        &self,
        request: &Claims<AuthorizationRequest>,
        decision: &Decision,
        received: Instant,
    ) {
        let latency_ms = received.elapsed().as_secs_f64() * 1000.0;
        let client = &request.nats.client_information;
        let (decision_text, category, account, user, cached) = match &decision.result {
            Ok(a) => (
                "allowed",
                None,
                Some(a.account.name.as_str()),
                Some(a.user.name.as_str()),
                a.cached,
            ),
            Err(r) => ("refused", Some(r.as_str()), None, None, false),
        };
        // DEBUG: the audit event is the record of every decision.
        tracing::debug!(decision = decision_text, category, latency_ms, cached, "callout decided");
        self.audit.send(&AuditEvent {
            decision: decision_text,
            category,
            login: &decision.login,
            account,
            user,
            client_host: &client.host,
            client_id: client.id,
            server_name: &request.nats.server.name,
            latency_ms,
            cached,
            at: model::now(),
        });
    }

    /// Kicks every session whose user or account is no longer active in the store.
    async fn sweep(&self) {
        let users = match self.sessions.users().await {
            Ok(users) => users,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read sessions to sweep");
                return;
            }
        };
        for (account, user) in users {
            let still = match (AccountName::new(&account), UserName::new(&user)) {
                (Ok(a), Ok(u)) => self.authorizer.user_active(&a, &u).await,
                _ => None,
            };
            if still != Some(true) {
                self.kick(&Revoked::User { account, user }).await;
            }
        }
    }

    /// Ends the live connections a revocation covers: `$SYS.REQ.SERVER.<id>.KICK`, all at
    /// once (one request per connection: the server has no fan-out form).
    async fn kick(&self, revoked: &Revoked) {
        let ended = match self.sessions.take(revoked).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!(?revoked, error = %e, "cannot read the sessions to kick");
                return;
            }
        };
        let kicks = ended.iter().map(|session| async move {
            match self.server.kick(&session.server_id, session.cid).await {
                Ok(()) => {
                    self.stats.kicked.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(?revoked, cid = session.cid, server = %session.server_id, "kicked a revoked connection");
                }
                // The server restarted (new id) or the connection is gone: nothing to end.
                Err(e) => tracing::debug!(?revoked, cid = session.cid, error = %e, "kick failed"),
            }
        });
        futures::future::join_all(kicks).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{self, InitOptions, Layout, MasterKeyOptions};
    use crate::names::{AUTH_ACCOUNT, SERVICE_USER};
    use crate::server_config::ServerSettings;

    #[tokio::test]
    async fn the_cached_signer_mints_exactly_what_admitted_mint_does() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            layout: Layout { data_dir: dir.path().join("data"), out_dir: dir.path().join("out") },
            master_key: MasterKeyOptions::default(),
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: 4222,
                http_port: 8222,
                server_name: "t".into(),
            },
            operator_name: "t".into(),
            xkey: false,
        };
        let authority = bootstrap::init(&options, model::now()).await.unwrap().authority;
        let auth = AccountName::new(AUTH_ACCOUNT).unwrap();
        let account = authority.account(&auth).await.unwrap();
        let user = authority.user(&auth, &UserName::new(SERVICE_USER).unwrap()).await.unwrap();
        let now = model::now();
        let admitted = authorize::Admitted {
            permissions: crate::policy::user_permissions(&user, None),
            account: Arc::new(account),
            user: Arc::new(user),
            expires: now + 600,
            token_id: None,
            cached: false,
        };
        let nkey = KeyPair::new_user().public_key();
        let master = authority.master();
        let signers = Signers::default();
        let expected = admitted.mint(&nkey, master, now).unwrap();
        assert_eq!(signers.mint(&admitted, &nkey, master, now).unwrap(), expected, "opened");
        assert_eq!(signers.mint(&admitted, &nkey, master, now).unwrap(), expected, "cached");
        assert_eq!(signers.0.lock().unwrap().len(), 1);
    }
}
