//! The one place a domain error becomes a wire error.

use async_nats::service::Request;
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use serde::Serialize;

use crate::manage::ManageError;

/// `{"error":{"code":..,"kind":..,"message":..}}`, the body of every error reply.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    code: u16,
    kind: &'static str,
    message: &'a str,
}

/// A wire error: the stable code and kind a client branches on, and the safe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// 400, 403, 404, 409 or 500.
    pub code: u16,
    /// What happened, in one stable word: `invalid`, `not_found`, `already_exists`,
    /// `in_use`, `changed`, `inactive`, `refused`, `forbidden`, `internal`.
    pub kind: &'static str,
    /// Safe to show: never the detail of an internal failure.
    pub message: String,
}

impl WireError {
    /// Every `kind` a wire error can have.
    pub const KINDS: [&'static str; 10] = [
        "invalid",
        "not_found",
        "already_exists",
        "in_use",
        "changed",
        "inactive",
        "refused",
        "forbidden",
        "unavailable",
        "internal",
    ];

    /// The one mapping from domain errors to wire errors.
    pub fn of(error: &ManageError) -> WireError {
        let (code, kind) = match error {
            ManageError::Invalid(_) => (400, "invalid"),
            ManageError::NotFound { .. } => (404, "not_found"),
            ManageError::AlreadyExists { .. } => (409, "already_exists"),
            ManageError::InUse { .. } => (409, "in_use"),
            ManageError::Changed { .. } => (409, "changed"),
            ManageError::Inactive { .. } => (409, "inactive"),
            ManageError::Refused(_) => (409, "refused"),
            ManageError::Forbidden(_) => (403, "forbidden"),
            ManageError::Unavailable(_) => (503, "unavailable"),
            ManageError::Internal(_) => (500, "internal"),
        };
        // Internal errors display as "internal error" only; their cause is for the log.
        WireError { code, kind, message: error.to_string() }
    }
}

/// A reply as sent: a JSON body, and for errors the wire error that also goes into the
/// micro-protocol headers. Cheap to clone, so it can be kept and sent again. Its `Debug`
/// leaves the body out: it can hold creds or a new token.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub body: Bytes,
    pub error: Option<WireError>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("body_len", &self.body.len())
            .field("error", &self.error)
            .finish()
    }
}

impl Reply {
    /// The reply for a handler's result. Internal errors are logged in full here, with their
    /// chain of causes, and sent as "internal error".
    pub fn from_result(endpoint: &str, result: Result<Bytes, ManageError>) -> Reply {
        match result {
            Ok(body) => Reply { body, error: None },
            Err(error) => {
                let wire = WireError::of(&error);
                match &error {
                    ManageError::Internal(cause) => {
                        tracing::error!(endpoint, error = %Chain(cause.as_ref()), "request failed")
                    }
                    ManageError::Unavailable(cause) => {
                        tracing::warn!(endpoint, error = %Chain(cause.as_ref()), "store unavailable")
                    }
                    // The message can quote the request (a mistyped password field): kind only.
                    _ => tracing::debug!(
                        endpoint,
                        code = wire.code,
                        kind = wire.kind,
                        "request refused"
                    ),
                }
                let body = serde_json::to_vec(&ErrorBody {
                    error: ErrorDetail { code: wire.code, kind: wire.kind, message: &wire.message },
                })
                .expect("error bodies serialize");
                Reply { body: body.into(), error: Some(wire) }
            }
        }
    }

    /// The headers: `Nats-Service-Error` and `Nats-Service-Error-Code` on errors.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(wire) = &self.error {
            headers.insert(async_nats::service::NATS_SERVICE_ERROR, wire.message.as_str());
            headers.insert(
                async_nats::service::NATS_SERVICE_ERROR_CODE,
                wire.code.to_string().as_str(),
            );
        }
        headers
    }
}

/// An error and its causes, `: `-separated, for the log.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Where error replies are counted: nobody listens there.
const DISCARD_SUBJECT: &str = "_INBOX.nats-authd.counted-errors";

/// Sends `reply` to `request`, and counts an error reply as an error of its endpoint in
/// `$SRV.STATS`.
///
/// async-nats counts an error only when it sends the reply itself, and then sends it with an
/// empty body; our error replies carry a JSON body too. So the real reply is published here,
/// with body and headers, and the error is then counted by letting async-nats "answer" a
/// subject nobody listens on.
pub async fn respond(client: &Client, mut request: Request, endpoint: &str, reply: &Reply) {
    let Some(subject) = request.message.reply.clone() else {
        tracing::debug!(endpoint, "request without a reply subject");
        return;
    };
    let sent = match &reply.error {
        None => request.respond(Ok(reply.body.clone())).await,
        Some(_) => client.publish_with_headers(subject, reply.headers(), reply.body.clone()).await,
    };
    if let Err(e) = sent {
        tracing::warn!(endpoint, error = %e, "could not send a reply");
    }
    if let Some(wire) = &reply.error {
        request.message.reply = Some(DISCARD_SUBJECT.into());
        let counted = async_nats::service::error::Error {
            code: wire.code as usize,
            status: wire.message.clone(),
        };
        let _ = request.respond(Err(counted)).await;
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_code_and_message_in_headers_and_body() {
        let reply = Reply::from_result(
            "x",
            Err(ManageError::AlreadyExists {
                what: crate::manage::Noun::Account,
                name: "acme".into(),
            }),
        );
        let headers = reply.headers();
        assert_eq!(
            headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE).unwrap().as_str(),
            "409"
        );
        assert_eq!(
            headers.get(async_nats::service::NATS_SERVICE_ERROR).unwrap().as_str(),
            "account \"acme\" already exists"
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": 409, "kind": "already_exists", "message": "account \"acme\" already exists"}})
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_detail() {
        let reply =
            Reply::from_result("x", Err(ManageError::internal("sled: /var/lib/secret path")));
        let wire = reply.error.clone().unwrap();
        assert_eq!(
            (wire.code, wire.kind, wire.message.as_str()),
            (500, "internal", "internal error")
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains("sled"));
    }
}
