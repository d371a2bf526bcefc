//! A client of the management API: what the CLI and the tests use to talk to a service.

use std::time::Duration;

use async_nats::Client;
use serde_json::Value;

use crate::api::{ApiRequest, PagedRequest};
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

/// A page whose `next` is the cursor that asked for it: following it would never end.
fn stuck(prefix: &str, endpoint: &str, cursor: &str) -> ClientError {
    ClientError::Decode {
        subject: format!("{prefix}.{endpoint}"),
        cause: format!("the page after cursor {cursor:?} names the same cursor"),
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

    /// Every item of a list: sends `request`, then again with each page's `next` as the
    /// cursor until the last page.
    ///
    /// # Errors
    /// As [`AdminClient::send`], and [`ClientError::Decode`] if a page's cursor does not move.
    pub async fn list_all<R: PagedRequest>(
        &self,
        request: &R,
    ) -> Result<Vec<R::Item>, ClientError> {
        let mut request = request.clone();
        let mut items = Vec::new();
        loop {
            let page = self.send(&request).await?;
            items.extend(page.items);
            match page.next {
                None => return Ok(items),
                Some(next) => {
                    let cursor = request.cursor_mut();
                    if cursor.as_deref() == Some(next.as_str()) {
                        return Err(stuck(&self.prefix, R::ENDPOINT.subject(), &next));
                    }
                    *cursor = Some(next);
                }
            }
        }
    }

    /// The rest of a list whose first page is `first` (the answer to `request` on
    /// `endpoint`), as untyped JSON: `{"items": [every item]}`. For callers holding a request
    /// only as JSON (the CLI); others use [`AdminClient::list_all`].
    ///
    /// # Errors
    /// As [`AdminClient::call`], and [`ClientError::Decode`] if a reply is not a page.
    pub async fn rest_of_pages(
        &self,
        endpoint: &str,
        mut request: Value,
        mut first: Value,
    ) -> Result<Value, ClientError> {
        let not_a_page = || ClientError::Decode {
            subject: format!("{}.{endpoint}", self.prefix),
            cause: "not a page: no `items` list".into(),
        };
        let mut items = match first.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => return Err(not_a_page()),
        };
        let mut next = first.get("next").and_then(Value::as_str).map(String::from);
        while let Some(cursor) = next {
            if request.get("cursor").and_then(Value::as_str) == Some(cursor.as_str()) {
                return Err(stuck(&self.prefix, endpoint, &cursor));
            }
            request["cursor"] = Value::String(cursor);
            let mut page = self.call(endpoint, &request).await?;
            match page.get_mut("items").map(Value::take) {
                Some(Value::Array(more)) => items.extend(more),
                _ => return Err(not_a_page()),
            }
            next = page.get("next").and_then(Value::as_str).map(String::from);
        }
        Ok(serde_json::json!({ "items": items }))
    }

    /// Sends `body` as JSON to `<prefix>.<endpoint>`.
    ///
    /// # Errors
    /// As [`AdminClient::call_raw`].
    pub async fn call(&self, endpoint: &str, body: &Value) -> Result<Value, ClientError> {
        self.call_raw(endpoint, serde_json::to_vec(body).expect("JSON values serialize")).await
    }
}
