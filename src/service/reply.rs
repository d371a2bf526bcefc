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

/// The headers and body of an error reply: the micro-protocol headers
/// (`Nats-Service-Error`, `Nats-Service-Error-Code`) and a JSON body saying the same.
pub fn error_reply(error: &ManageError) -> (HeaderMap, Bytes) {
    let message = error.public_message();
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::service::NATS_SERVICE_ERROR, message.as_str());
    headers.insert(async_nats::service::NATS_SERVICE_ERROR_CODE, error.code().to_string().as_str());
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail { code: error.code(), message: &message },
    })
    .expect("error bodies serialize");
    (headers, body.into())
}

/// Sends `result` as the reply to `request`; internal errors are logged in full and sent as
/// "internal error".
pub async fn respond(request: &Request, endpoint: &str, result: Result<Bytes, ManageError>) {
    let sent = match result {
        Ok(body) => request.respond(Ok(body)).await,
        Err(error) => {
            match &error {
                ManageError::Internal(detail) => {
                    tracing::error!(endpoint, %detail, "request failed")
                }
                other => {
                    tracing::debug!(endpoint, code = other.code(), error = %other, "request refused")
                }
            }
            // The body carries the error too, which `respond(Err(..))` would leave empty.
            let (headers, body) = error_reply(&error);
            request.respond_with_headers(Ok(body), headers).await
        }
    };
    if let Err(e) = sent {
        tracing::warn!(endpoint, error = %e, "could not send a reply");
    }
}
