//! A client of the management API: what the CLI and the tests use to talk to a service.

use std::time::Duration;

use async_nats::Client;
use serde_json::Value;

use crate::api::ApiRequest;
use crate::service::dedup::REQUEST_ID_HEADER;

/// How long one attempt waits before it is sent again.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

fn retryable(e: &async_nats::RequestError) -> bool {
    matches!(
        e.kind(),
        async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders
    )
}

/// Why a management request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error.
    #[error("{message} (code {code})")]
    Service { code: u16, message: String },
    /// No answer: no service running, no permission, or a time-out.
    #[error("no answer from nats-authd on {subject}: {cause}")]
    Request { subject: String, cause: String },
    /// The answer is not JSON.
    #[error("unreadable answer on {subject}: {cause}")]
    Decode { subject: String, cause: String },
}

impl ClientError {
    /// The service's error code, if the service answered with one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Service { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Sends management requests under a subject prefix.
#[derive(Debug, Clone)]
pub struct AdminClient {
    client: Client,
    prefix: String,
    timeout: Duration,
}

impl AdminClient {
    /// A client for the API under `prefix` (default `authd`).
    pub fn new(client: Client, prefix: &str, timeout: Duration) -> Self {
        AdminClient { client, prefix: prefix.to_string(), timeout }
    }

    /// The underlying NATS client.
    pub fn nats(&self) -> &Client {
        &self.client
    }

    /// Sends raw `body` to `<prefix>.<endpoint>` and returns the decoded answer.
    ///
    /// An attempt that gets no answer within [`ATTEMPT_TIMEOUT`] is sent again, with the same
    /// `Authd-Request-Id`, until the client's time-out: the service applies a change once
    /// and answers the retry from its record of the first attempt. (nats-server drops a reply
    /// in flight when the AUTH account's JWT is updated at that moment; see `api_gate`.)
    ///
    /// # Errors
    /// [`ClientError::Service`] with the service's code and message on an error reply.
    pub async fn call_raw(&self, endpoint: &str, body: Vec<u8>) -> Result<Value, ClientError> {
        let subject = format!("{}.{endpoint}", self.prefix);
        let id = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
        let body = bytes::Bytes::from(body);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let reply = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(REQUEST_ID_HEADER, id.as_str());
            let request = async_nats::Request::new()
                .payload(body.clone())
                .headers(headers)
                .timeout(Some(left.min(ATTEMPT_TIMEOUT)));
            match self.client.send_request(subject.clone(), request).await {
                Ok(reply) => break reply,
                Err(e) if retryable(&e) && left > ATTEMPT_TIMEOUT => {
                    tracing::debug!(subject, error = %e, "no answer yet; asking again");
                    if e.kind() == async_nats::RequestErrorKind::NoResponders {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => return Err(ClientError::Request { subject, cause: e.to_string() }),
            }
        };
        if let Some(code) =
            reply.headers.as_ref().and_then(|h| h.get(async_nats::service::NATS_SERVICE_ERROR_CODE))
        {
            let code = code.as_str().parse().unwrap_or(500);
            let message = reply
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::service::NATS_SERVICE_ERROR))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            return Err(ClientError::Service { code, message });
        }
        serde_json::from_slice(&reply.payload)
            .map_err(|e| ClientError::Decode { subject, cause: e.to_string() })
    }

    /// Sends a typed request to its endpoint and decodes the typed reply.
    ///
    /// # Errors
    /// As [`AdminClient::call_raw`], and [`ClientError::Decode`] if the reply is not a
    /// `R::Reply`.
    pub async fn send<R: ApiRequest>(&self, request: &R) -> Result<R::Reply, ClientError> {
        let subject = R::ENDPOINT.subject();
        let body = serde_json::to_vec(request).expect("requests serialize");
        let answer = self.call_raw(subject, body).await?;
        serde_json::from_value(answer).map_err(|e| ClientError::Decode {
            subject: format!("{}.{subject}", self.prefix),
            cause: e.to_string(),
        })
    }

    /// Sends `body` as JSON to `<prefix>.<endpoint>`.
    ///
    /// # Errors
    /// As [`AdminClient::call_raw`].
    pub async fn call(&self, endpoint: &str, body: &Value) -> Result<Value, ClientError> {
        self.call_raw(endpoint, serde_json::to_vec(body).expect("JSON values serialize")).await
    }
}
