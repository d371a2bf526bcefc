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

use async_nats::Client;
use bytes::Bytes;
use serde::Deserialize;

use crate::names;

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
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<AnswerData>,
    #[serde(default)]
    error: Option<AnswerError>,
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

/// Sends the server requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerApi {
    client: Client,
}

impl ServerApi {
    /// Requests go over `client` (a user of AUTH with the SYS imports).
    pub fn new(client: Client) -> Self {
        ServerApi { client }
    }

    /// One request; a failure while the connection is down is [`ServerApiError::Disconnected`].
    async fn request(&self, subject: String, body: Bytes) -> Result<Bytes, ServerApiError> {
        match self.client.request(subject.clone(), body).await {
            Ok(msg) => Ok(msg.payload),
            Err(_)
                if self.client.connection_state() != async_nats::connection::State::Connected =>
            {
                Err(ServerApiError::Disconnected)
            }
            Err(source) => Err(ServerApiError::Request { subject, source }),
        }
    }

    /// Stores an account JWT (`$SYS.REQ.CLAIMS.UPDATE`).
    ///
    /// # Errors
    /// The server's refusal, or a failed request.
    pub async fn update(&self, account_jwt: &str) -> Result<(), ServerApiError> {
        let subject = names::CLAIMS_UPDATE.to_string();
        let body = self.request(subject.clone(), Bytes::from(account_jwt.to_string())).await?;
        check_answer(&subject, &body)
    }

    /// Asks the server to forget accounts (`$SYS.REQ.CLAIMS.DELETE`, an operator-signed
    /// generic claim). A server that never held them answers an error: callers decide by a
    /// lookup.
    ///
    /// # Errors
    /// The server's refusal, or a failed request.
    pub async fn delete(&self, delete_jwt: &str) -> Result<(), ServerApiError> {
        let subject = names::CLAIMS_DELETE.to_string();
        let body = self.request(subject.clone(), Bytes::from(delete_jwt.to_string())).await?;
        check_answer(&subject, &body)
    }

    /// The JWT the server holds for `account_key`, `None` if it holds none.
    ///
    /// # Errors
    /// A failed request.
    pub async fn lookup(&self, account_key: &str) -> Result<Option<String>, ServerApiError> {
        let subject = names::claims_lookup(account_key);
        let body = self.request(subject.clone(), Bytes::new()).await?;
        if body.is_empty() {
            return Ok(None);
        }
        String::from_utf8(body.to_vec())
            .map(Some)
            .map_err(|_| ServerApiError::Unreadable { subject })
    }

    /// The account keys the server holds (`$SYS.REQ.CLAIMS.LIST`).
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
        let body = self.request(subject.clone(), Bytes::new()).await?;
        serde_json::from_slice::<ListAnswer>(&body)
            .map(|a| a.data)
            .map_err(|_| ServerApiError::Unreadable { subject })
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
