//! Auth callout: clients log in with a password or an API token held by nats-authd, and get a
//! user JWT minted for the connection with their role's permissions.
//!
//! [`authorize`] decides; this module is the NATS side: the `$SYS.REQ.USER.AUTH` queue
//! subscription, xkey sealing, the signed response, audit events, and kicking the live
//! connections of users that are disabled.

pub mod authorize;
pub mod cache;
pub mod credential;
pub mod limiter;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, Message};
use bytes::Bytes;
use futures::StreamExt;
use nkeys::{KeyPair, XKey};
use serde::Serialize;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::claims::{
    self, AuthorizationRequest, AuthorizationResponse, Claims, ClaimsError, Validation,
};
use crate::manage::Revoked;
use crate::model::{self, UnixTime};
use crate::names::API_PREFIX;
use authorize::{Authorizer, Decision, Refusal};

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
/// Most requests handled at once; beyond that they wait in the subscription.
pub const MAX_IN_FLIGHT: usize = 4096;
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

/// A connection this instance admitted, remembered until its JWT expires so it can be kicked.
#[derive(Debug, Clone)]
struct Session {
    server_id: String,
    cid: u64,
    token_id: Option<String>,
    expires: UnixTime,
}

/// Live sessions by `account/user`.
#[derive(Debug, Default)]
struct Sessions(Mutex<HashMap<(String, String), Vec<Session>>>);

impl Sessions {
    fn add(&self, account: &str, user: &str, session: Session, now: UnixTime) {
        let mut map = self.0.lock().expect("sessions lock");
        let list = map.entry((account.to_string(), user.to_string())).or_default();
        list.retain(|s| s.expires > now);
        list.push(session);
    }

    fn remove(&self, account: &str, user: &str, session: &Session) {
        let mut map = self.0.lock().expect("sessions lock");
        if let Some(list) = map.get_mut(&(account.to_string(), user.to_string())) {
            list.retain(|s| !(s.server_id == session.server_id && s.cid == session.cid));
        }
    }

    /// Drops sessions whose JWT has expired (the server has closed them).
    fn prune(&self, now: UnixTime) {
        let mut map = self.0.lock().expect("sessions lock");
        map.retain(|_, list| {
            list.retain(|s| s.expires > now);
            !list.is_empty()
        });
    }

    /// Every `(account, user)` with live sessions.
    fn users(&self) -> Vec<(String, String)> {
        self.0.lock().expect("sessions lock").keys().cloned().collect()
    }

    /// Removes and returns the sessions `revoked` ends.
    fn take(&self, revoked: &Revoked) -> Vec<Session> {
        let mut map = self.0.lock().expect("sessions lock");
        let mut out = Vec::new();
        map.retain(|(account, user), list| {
            let hit_all = match revoked {
                Revoked::Account { account: a } => a == account,
                Revoked::User { account: a, user: u } => a == account && u == user,
                Revoked::Token { .. } => false,
            };
            if hit_all {
                out.append(list);
                return false;
            }
            if let Revoked::Token { id } = revoked {
                let (gone, kept): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|s| s.token_id.as_deref() == Some(id));
                out.extend(gone);
                *list = kept;
            }
            !list.is_empty()
        });
        out
    }
}

/// One audit event, published on `authd.events.auth.<allowed|refused>`. No secrets.
#[derive(Debug, Serialize)]
struct AuditEvent<'a> {
    decision: &'a str,
    category: Option<&'a str>,
    login: &'a str,
    account: Option<&'a str>,
    user: Option<&'a str>,
    client_host: &'a str,
    client_id: u64,
    server_name: &'a str,
    latency_ms: f64,
    cached: bool,
    at: UnixTime,
}

/// The callout responder.
pub struct Callout {
    authorizer: Arc<Authorizer>,
    client: Client,
    /// Signs responses: the AUTH account's signing key.
    signer: Arc<KeyPair>,
    /// AUTH's curve key, when callout traffic is sealed.
    xkey: Option<Arc<XKey>>,
    stats: Arc<CalloutStats>,
    sessions: Arc<Sessions>,
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
    /// A responder answering with `authorizer`'s decisions.
    pub fn new(
        authorizer: Arc<Authorizer>,
        client: Client,
        signer: KeyPair,
        xkey: Option<XKey>,
        stats: Arc<CalloutStats>,
    ) -> Self {
        Callout {
            authorizer,
            client,
            signer: Arc::new(signer),
            xkey: xkey.map(Arc::new),
            stats,
            sessions: Arc::default(),
        }
    }

    /// Answers requests until `shutdown`; kicks sessions as `revoked` says. Requests in
    /// flight at shutdown are finished (bounded).
    ///
    /// # Errors
    /// If the subscription cannot be made.
    pub async fn run(
        self,
        mut revoked: broadcast::Receiver<Revoked>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), async_nats::SubscribeError> {
        tokio::pin!(shutdown);
        let mut requests =
            self.client.queue_subscribe(AUTH_SUBJECT, QUEUE_GROUP.to_string()).await?;
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut revocations_closed = false;
        let mut prune = tokio::time::interval(Duration::from_secs(60));
        let this = Arc::new(self);
        let mut in_flight = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                msg = requests.next() => {
                    let Some(msg) = msg else { break };
                    let received = Instant::now();
                    let permit = Arc::clone(&permits).acquire_owned().await.expect("never closed");
                    let this = Arc::clone(&this);
                    in_flight.spawn(async move {
                        this.handle(msg, received).await;
                        drop(permit);
                    });
                }
                event = revoked.recv(), if !revocations_closed => match event {
                    Ok(event) => {
                        let this = Arc::clone(&this);
                        in_flight.spawn(async move { this.kick(&event).await });
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Some revocations were missed: check every live session against the store.
                        tracing::warn!(missed = n, "missed revocations; sweeping sessions");
                        let this = Arc::clone(&this);
                        in_flight.spawn(async move { this.sweep().await });
                    }
                    Err(broadcast::error::RecvError::Closed) => revocations_closed = true,
                },
                _ = prune.tick() => this.sessions.prune(model::now()),
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        let _ = requests.unsubscribe().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        Ok(())
    }

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
        // The server gives up at `exp`; so do we, a little before, to leave time to answer.
        // `exp` is in whole seconds: measure what is left in milliseconds of wall clock.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let left_ms = request.expires.map_or(2000, |exp| exp * 1000 - now_ms).max(0);
        let deadline = received
            + Duration::from_millis(left_ms as u64).saturating_sub(Duration::from_millis(100));
        let mut decision = self.authorizer.authorize(&request, deadline, now).await;
        if let Ok(allowed) = &decision.result {
            // Recorded before the re-check and the answer: a revocation committed from here on
            // finds the session to kick; one committed before shows in the re-check.
            let session = Session {
                server_id: request.nats.server.id.clone(),
                cid: request.nats.client_information.id,
                token_id: allowed.token_id.clone(),
                expires: allowed.expires,
            };
            self.sessions.add(
                allowed.account.name.as_str(),
                allowed.user.name.as_str(),
                session.clone(),
                now,
            );
            if !self.authorizer.still_valid(allowed).await {
                self.sessions.remove(
                    allowed.account.name.as_str(),
                    allowed.user.name.as_str(),
                    &session,
                );
                decision.result = Err(Refusal::Inactive);
            }
        }
        if matches!(decision.result, Err(Refusal::Expired)) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.audit(&request, &decision, received);
            return;
        }
        let body = match &decision.result {
            Ok(allowed) => AuthorizationResponse::allow(allowed.jwt.clone()),
            Err(refusal) => {
                AuthorizationResponse::deny(format!("nats-authd: {}", refusal.as_str()))
            }
        };
        let mut response = Claims::new(request.nats.user_nkey.clone(), body, now);
        response.audience = Some(request.nats.server.id.clone());
        let token = match claims::encode(&response, &self.signer) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an authorization response");
                return;
            }
        };
        let payload = match (&server_xkey, &self.xkey) {
            (Some(server), Some(ours)) => match ours.seal(token.as_bytes(), server) {
                Ok(sealed) => Bytes::from(sealed),
                Err(e) => {
                    tracing::error!(error = %e, "cannot seal an authorization response");
                    return;
                }
            },
            _ => Bytes::from(token),
        };
        if let Err(e) = self.client.publish(reply, payload).await {
            tracing::warn!(error = %e, "cannot answer an authorization request");
        }
        match &decision.result {
            Ok(allowed) => {
                self.stats.allowed.fetch_add(1, Ordering::Relaxed);
                if allowed.cached {
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

    /// Opens (if sealed), verifies and decodes a request.
    fn open(
        &self,
        msg: &Message,
        now: UnixTime,
    ) -> Result<(Claims<AuthorizationRequest>, Option<XKey>), Unanswerable> {
        if msg.payload.len() > MAX_REQUEST_BYTES {
            return Err(Unanswerable::TooLarge(msg.payload.len()));
        }
        if msg.reply.is_none() {
            return Err(Unanswerable::NoReply);
        }
        let server_xkey = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(SERVER_XKEY_HEADER))
            .map(|v| XKey::from_public_key(v.as_str()))
            .transpose()
            .map_err(|_| Unanswerable::Seal)?;
        let opened;
        let token: &[u8] = match (&server_xkey, &self.xkey) {
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
        let event = AuditEvent {
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
        };
        match category {
            None => {
                tracing::info!(login = %decision.login, account, host = %client.host, server = %request.nats.server.name, latency_ms, cached, "callout allowed")
            }
            Some(category) => {
                tracing::info!(login = %decision.login, category, host = %client.host, server = %request.nats.server.name, latency_ms, "callout refused")
            }
        }
        let subject = format!("{API_PREFIX}.events.auth.{decision_text}");
        let payload = Bytes::from(serde_json::to_vec(&event).expect("events serialize"));
        let client = self.client.clone();
        tokio::spawn(async move {
            let _ = client.publish(subject, payload).await;
        });
    }

    /// Kicks every live session whose user, account or token is no longer valid in the store.
    async fn sweep(&self) {
        let db = self.authorizer.authority().db();
        for (account, user) in self.sessions.users() {
            let valid = async {
                let account_rec = db.get::<crate::model::AccountRecord>(&account).await.ok()??;
                let user_key = format!("{account}/{user}");
                let user_rec = db.get::<crate::model::UserRecord>(&user_key).await.ok()??;
                Some(account_rec.active && user_rec.active)
            };
            if valid.await != Some(true) {
                self.kick(&Revoked::User { account, user }).await;
            }
        }
    }

    /// Ends the live connections a revocation covers: `$SYS.REQ.SERVER.<id>.KICK`.
    async fn kick(&self, revoked: &Revoked) {
        for session in self.sessions.take(revoked) {
            let subject = format!("$SYS.REQ.SERVER.{}.KICK", session.server_id);
            let body = Bytes::from(
                serde_json::to_vec(&serde_json::json!({ "cid": session.cid })).expect("json"),
            );
            match self.client.request(subject, body).await {
                Ok(_) => {
                    self.stats.kicked.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(?revoked, cid = session.cid, server = %session.server_id, "kicked a revoked connection");
                }
                Err(e) => tracing::warn!(?revoked, cid = session.cid, error = %e, "kick failed"),
            }
        }
    }
}
