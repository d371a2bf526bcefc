//! The one place a domain error becomes a wire error.

use async_nats::service::Request;
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;

use crate::manage::ManageError;

/// `{"error":{"code":..,"message":..}}`, the body of every error reply.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    code: u16,
    message: &'a str,
}

/// A reply as sent: a JSON body, and for errors the code and safe message that also go into
/// the micro-protocol headers. Cheap to clone, so it can be kept and sent again. Its `Debug`
/// leaves the body out: it can hold creds or a new token.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub body: Bytes,
    pub error: Option<(u16, String)>,
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
    /// The reply for a handler's result. Internal errors are logged in full here and sent
    /// as "internal error".
    pub fn from_result(endpoint: &str, result: Result<Bytes, ManageError>) -> Reply {
        match result {
            Ok(body) => Reply { body, error: None },
            Err(error) => {
                match &error {
                    ManageError::Internal(detail) => {
                        tracing::error!(endpoint, %detail, "request failed")
                    }
                    other => {
                        // The message can quote the request (a mistyped password field): code only.
                        tracing::debug!(endpoint, code = other.code(), "request refused")
                    }
                }
                let message = error.public_message();
                let body = serde_json::to_vec(&ErrorBody {
                    error: ErrorDetail { code: error.code(), message: &message },
                })
                .expect("error bodies serialize");
                Reply { body: body.into(), error: Some((error.code(), message)) }
            }
        }
    }

    /// The headers: `Nats-Service-Error` and `Nats-Service-Error-Code` on errors.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some((code, message)) = &self.error {
            headers.insert(async_nats::service::NATS_SERVICE_ERROR, message.as_str());
            headers.insert(async_nats::service::NATS_SERVICE_ERROR_CODE, code.to_string().as_str());
        }
        headers
    }
}

/// Sends `reply` to `request`.
pub async fn respond(request: &Request, endpoint: &str, reply: &Reply) {
    // The error body is sent with the headers set by hand: `respond(Err(..))` would leave the
    // body empty.
    let sent = match reply.error {
        None => request.respond(Ok(reply.body.clone())).await,
        Some(_) => request.respond_with_headers(Ok(reply.body.clone()), reply.headers()).await,
    };
    if let Err(e) = sent {
        tracing::warn!(endpoint, error = %e, "could not send a reply");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_code_and_message_in_headers_and_body() {
        let reply = Reply::from_result(
            "x",
            Err(ManageError::Conflict("account \"acme\" already exists".into())),
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
            serde_json::json!({"error": {"code": 409, "message": "account \"acme\" already exists"}})
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_detail() {
        let reply = Reply::from_result(
            "x",
            Err(ManageError::Internal("sled: /var/lib/secret path".into())),
        );
        assert_eq!(reply.error, Some((500, "internal error".into())));
        assert!(!String::from_utf8_lossy(&reply.body).contains("sled"));
    }
}
