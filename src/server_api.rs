//! A small client of nats-server's own requests: the resolver's claims API and kicks.
//!
//! The service reaches these through SYS exports imported into AUTH
//! ([`crate::names::SYS_SERVICES`]). What the server answers, checked on nats-server 2.15:
//! - `CLAIMS.UPDATE`: `{"data":{"account","code":200,"message":"jwt updated"}}`, or
//!   `{"error":{"account","code":500,"description"}}`. It answers 200 for an account JWT signed
//!   by a key that is not the operator's, and overwrites a newer JWT with an older one: callers
//!   verify before they push and confirm with a lookup after.
//! - `CLAIMS.DELETE`: the same shapes; a server that never held the account answers an error.
//! - `ACCOUNT.<key>.CLAIMS.LOOKUP`: the JWT as the body, empty if the server has none.
//! - `CLAIMS.LIST`: `{"data":[account keys]}`.
//! - `SERVER.<id>.KICK {"cid":N}`: a reply without data; an unknown cid is a 500 error.
//!
//! # Clusters
//! With a full resolver every server of a cluster answers the claims API (not kicks: those
//! name one server). SYS exports those requests with the `Stream` response type so that every
//! answer reaches AUTH ([`names::SYS_FAN_OUT_SERVICES`]). [`ServerApi`] learns how many
//! servers answer and gathers that many answers per request (until a short time-out): an
//! update is confirmed only when every server that answered took it, a lookup returns every
//! server's JWT. A server that does not answer in time is not waited for and makes the count
//! be learned again. The count costs nothing on a lone server: when the server's INFO names
//! no cluster it is 1, and a request is the plain request/reply it always was. In a cluster
//! it is the number of distinct servers answering `$SYS.REQ.CLAIMS.LIST` within a short
//! window (the same requests through the same import, so a store initialised before the
//! `Stream` exports, whose import lets only one answer through, counts 1 and behaves as
//! before), kept for [`COUNT_TTL`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::time::Instant;

use crate::names;

/// How long a learned server count is used before it is learned again.
pub const COUNT_TTL: Duration = Duration::from_secs(30);
/// Longest wait for the answers of every server to one request.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// While counting servers: stop once no new answer came for this long...
const COUNT_QUIET: Duration = Duration::from_millis(250);
/// ...or after this long in all.
const COUNT_MAX: Duration = Duration::from_secs(1);

/// Why a server request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerApiError {
    /// The connection went away: nobody's fault, worth trying again when it is back.
    #[error("not connected to a server")]
    Disconnected,
    /// No answer, or no responder.
    #[error("request to {subject} failed")]
    Request {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    /// The server answered with an error.
    #[error("server error {code}: {description}")]
    Refused { code: u16, description: String },
    /// The answer is not what the server writes.
    #[error("unreadable answer from {subject}")]
    Unreadable { subject: String },
    /// Sending a request that every server answers failed.
    #[error("sending {subject} failed: {message}")]
    Send { subject: String, message: String },
    /// No server answered a request that every server answers.
    #[error("no server answered {subject}")]
    NoAnswer { subject: String },
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<AnswerData>,
    #[serde(default)]
    error: Option<AnswerError>,
}

/// The `server` object every claims answer carries.
#[derive(Deserialize)]
struct AnswerServer {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
struct Served {
    #[serde(default)]
    server: Option<AnswerServer>,
}

#[derive(Deserialize)]
struct AnswerData {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct AnswerError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    description: String,
}

/// Reads an update/delete/kick answer: `Ok` for a 200 (or a reply without data, as kicks
/// answer), else the server's description.
fn check_answer(subject: &str, body: &[u8]) -> Result<(), ServerApiError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| ServerApiError::Unreadable { subject: subject.to_string() })?;
    match (answer.data, answer.error) {
        (_, Some(e)) => Err(ServerApiError::Refused { code: e.code, description: e.description }),
        (Some(d), None) if d.code == 200 || d.code == 0 => Ok(()),
        (Some(d), None) => Err(ServerApiError::Refused { code: d.code, description: d.message }),
        (None, None) => Ok(()),
    }
}

/// Sends the server requests; cheap to clone (clones share the learned server count).
#[derive(Debug, Clone)]
pub struct ServerApi {
    client: Client,
    /// Servers answering the claims API, and when that was learned.
    servers: Arc<Mutex<Option<(usize, Instant)>>>,
}

impl ServerApi {
    /// Requests go over `client` (a user of AUTH with the SYS imports).
    pub fn new(client: Client) -> Self {
        ServerApi { client, servers: Arc::default() }
    }

    fn disconnected(&self) -> bool {
        self.client.connection_state() != async_nats::connection::State::Connected
    }

    /// One request; a failure while the connection is down is [`ServerApiError::Disconnected`].
    async fn request(&self, subject: String, body: Bytes) -> Result<Bytes, ServerApiError> {
        match self.client.request(subject.clone(), body).await {
            Ok(msg) => Ok(msg.payload),
            Err(_) if self.disconnected() => Err(ServerApiError::Disconnected),
            Err(source) => Err(ServerApiError::Request { subject, source }),
        }
    }

    /// How many servers answer the claims API (see the module doc).
    pub async fn server_count(&self) -> usize {
        let clustered = self.client.server_info().cluster.is_some_and(|c| !c.is_empty());
        if !clustered {
            return 1;
        }
        if let Some((count, at)) = *self.servers.lock().expect("not poisoned") {
            if at.elapsed() < COUNT_TTL {
                return count;
            }
        }
        let count = match self.count_servers().await {
            Ok(count) => count.max(1),
            Err(e) => {
                tracing::debug!(error = %e, "counting servers failed");
                return 1;
            }
        };
        tracing::debug!(count, "servers answering the claims API");
        *self.servers.lock().expect("not poisoned") = Some((count, Instant::now()));
        count
    }

    /// Forgets the learned count: a server stopped answering, or more may have joined.
    fn recount(&self) {
        *self.servers.lock().expect("not poisoned") = None;
    }

    async fn count_servers(&self) -> Result<usize, ServerApiError> {
        let subject = names::CLAIMS_LIST.to_string();
        let mut answers = self.send_collecting(&subject, Bytes::new()).await?;
        let end = Instant::now() + COUNT_MAX;
        let mut ids = HashSet::new();
        loop {
            let until = end.min(Instant::now() + COUNT_QUIET);
            match tokio::time::timeout_at(until, answers.next()).await {
                Ok(Some(msg)) if is_no_responders(&msg) => break,
                Ok(Some(msg)) => {
                    let id = serde_json::from_slice::<Served>(&msg.payload)
                        .ok()
                        .and_then(|s| s.server)
                        .map(|s| s.id);
                    ids.insert(id.unwrap_or_else(|| format!("unnamed-{}", ids.len())));
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(ids.len())
    }

    /// Publishes `body` to `subject` with a fresh inbox as the reply, and returns that inbox's
    /// subscription.
    async fn send_collecting(
        &self,
        subject: &str,
        body: Bytes,
    ) -> Result<async_nats::Subscriber, ServerApiError> {
        let fail = |e: &dyn std::fmt::Display| match self.disconnected() {
            true => ServerApiError::Disconnected,
            false => ServerApiError::Send { subject: subject.to_string(), message: e.to_string() },
        };
        let inbox = self.client.new_inbox();
        let answers = self.client.subscribe(inbox.clone()).await.map_err(|e| fail(&e))?;
        self.client
            .publish_with_reply(subject.to_string(), inbox, body)
            .await
            .map_err(|e| fail(&e))?;
        Ok(answers)
    }

    /// The answer of every server to one request: the plain request on a lone server, else
    /// up to [`ServerApi::server_count`] answers within [`GATHER_TIMEOUT`].
    ///
    /// # Errors
    /// No answer at all, or a failed request.
    async fn gather(&self, subject: String, body: Bytes) -> Result<Vec<Bytes>, ServerApiError> {
        let servers = self.server_count().await;
        if servers <= 1 {
            return self.request(subject, body).await.map(|b| vec![b]);
        }
        let mut answers = self.send_collecting(&subject, body).await?;
        let deadline = Instant::now() + GATHER_TIMEOUT;
        let mut out = Vec::with_capacity(servers);
        while out.len() < servers {
            match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(msg)) if is_no_responders(&msg) => break,
                Ok(Some(msg)) => out.push(msg.payload),
                Ok(None) | Err(_) => break,
            }
        }
        if out.len() < servers {
            tracing::debug!(subject, servers, answers = out.len(), "not every server answered");
            self.recount();
        }
        if out.is_empty() {
            return Err(match self.disconnected() {
                true => ServerApiError::Disconnected,
                false => ServerApiError::NoAnswer { subject },
            });
        }
        Ok(out)
    }

    /// Stores an account JWT (`$SYS.REQ.CLAIMS.UPDATE`) on every server.
    ///
    /// # Errors
    /// The first refusal of any server that answered, or a failed request.
    pub async fn update(&self, account_jwt: &str) -> Result<(), ServerApiError> {
        let subject = names::CLAIMS_UPDATE.to_string();
        let answers = self.gather(subject.clone(), Bytes::from(account_jwt.to_string())).await?;
        answers.iter().try_for_each(|body| check_answer(&subject, body))
    }

    /// Asks every server to forget accounts (`$SYS.REQ.CLAIMS.DELETE`, an operator-signed
    /// generic claim). A server that never held them answers an error: callers decide by a
    /// lookup.
    ///
    /// # Errors
    /// The first refusal of any server that answered, or a failed request.
    pub async fn delete(&self, delete_jwt: &str) -> Result<(), ServerApiError> {
        let subject = names::CLAIMS_DELETE.to_string();
        let answers = self.gather(subject.clone(), Bytes::from(delete_jwt.to_string())).await?;
        answers.iter().try_for_each(|body| check_answer(&subject, body))
    }

    /// The JWT each answering server holds for `account_key` (`None` where it holds none):
    /// one entry per server that answered, at least one.
    ///
    /// # Errors
    /// A failed request, or an answer that is not text.
    pub async fn lookup(&self, account_key: &str) -> Result<Vec<Option<String>>, ServerApiError> {
        let subject = names::claims_lookup(account_key);
        let answers = self.gather(subject.clone(), Bytes::new()).await?;
        answers
            .into_iter()
            .map(|body| match body.is_empty() {
                true => Ok(None),
                false => String::from_utf8(body.to_vec())
                    .map(Some)
                    .map_err(|_| ServerApiError::Unreadable { subject: subject.clone() }),
            })
            .collect()
    }

    /// The account keys any server holds (`$SYS.REQ.CLAIMS.LIST`), each once.
    ///
    /// # Errors
    /// A failed request or an unreadable answer.
    pub async fn list(&self) -> Result<Vec<String>, ServerApiError> {
        #[derive(Deserialize)]
        struct ListAnswer {
            #[serde(default)]
            data: Vec<String>,
        }
        let subject = names::CLAIMS_LIST.to_string();
        let mut keys = Vec::new();
        for body in self.gather(subject.clone(), Bytes::new()).await? {
            let answer = serde_json::from_slice::<ListAnswer>(&body)
                .map_err(|_| ServerApiError::Unreadable { subject: subject.clone() })?;
            for key in answer.data {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }

    /// Ends connection `cid` on the server with id `server_id`.
    ///
    /// # Errors
    /// The server's refusal (an unknown cid), or a failed request.
    pub async fn kick(&self, server_id: &str, cid: u64) -> Result<(), ServerApiError> {
        let subject = names::kick(server_id);
        let body = serde_json::to_vec(&serde_json::json!({ "cid": cid })).expect("json");
        let answer = self.request(subject.clone(), Bytes::from(body)).await?;
        check_answer(&subject, &answer)
    }
}

/// The server's "no responders" status, which arrives on the inbox like an answer.
fn is_no_responders(msg: &async_nats::Message) -> bool {
    msg.status == Some(async_nats::StatusCode::NO_RESPONDERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_like_the_server_writes_them() {
        let ok =
            br#"{"server":{"name":"s"},"data":{"account":"A","code":200,"message":"jwt updated"}}"#;
        assert!(check_answer("x", ok).is_ok());
        let err =
            br#"{"server":{},"error":{"account":"A","code":500,"description":"not trusted"}}"#;
        assert!(matches!(
            check_answer("x", err),
            Err(ServerApiError::Refused { code: 500, ref description }) if description == "not trusted"
        ));
        assert!(check_answer("x", br#"{"server":{"name":"s"}}"#).is_ok(), "a kick's answer");
        assert!(matches!(check_answer("x", b"garbage"), Err(ServerApiError::Unreadable { .. })));
    }
}
