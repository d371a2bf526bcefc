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
    #[error("{message}")]
    Service {
        /// The service's code: 400, 403, 404, 409, 500 or 503.
        code: u16,
        /// The service's one-word kind (`not_found`, `in_use`, ...), or one derived from the
        /// code when the answer carried none.
        kind: String,
        message: String,
    },
    /// No answer: no service running, no permission, or a time-out.
    #[error("no answer from nats-authd on {subject}: {cause}")]
    Request { subject: String, cause: NoAnswer },
    /// The server refused to let these creds publish the request.
    #[error(
        "not allowed: these creds may not publish to {subject} (is this an admin's creds file?)"
    )]
    NotAllowed { subject: String },
    /// The answer is not JSON.
    #[error("unreadable answer on {subject}: {cause}")]
    Decode { subject: String, cause: String },
    /// No connection could be made.
    #[error("cannot connect to {urls}: {cause}")]
    Connect { urls: String, cause: ConnectFailure },
    /// The creds file could not be read or is not a creds file.
    #[error("cannot use creds {}: {cause}", path.display())]
    Creds { path: std::path::PathBuf, cause: String },
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoAnswer {
    /// Nothing listens on the subject: the service is not running on this server.
    #[error("no responders (is `nats-authd serve` running against this server?)")]
    NoResponders,
    /// Something listens but did not answer in time.
    #[error("timed out")]
    TimedOut,
    /// Anything else async-nats reports.
    #[error("{0}")]
    Other(String),
}

/// Why a connection failed, in one line (async-nats's own errors repeat their cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// The server refused the creds.
    #[error("authorization violation (the server does not accept these creds)")]
    NotAuthorized,
    /// The TLS handshake or TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// No server answered in time.
    #[error("timed out")]
    TimedOut,
    /// A URL does not parse.
    #[error("bad server URL: {0}")]
    BadUrl(String),
    /// The network said no (refused, unreachable, DNS).
    #[error("{0}")]
    Unreachable(String),
}

impl ConnectFailure {
    /// One-line reason for an async-nats connect error: its kind, and the innermost cause
    /// once (its `Display` already includes the source, which `{:#}` would print again).
    fn of(e: &async_nats::ConnectError) -> ConnectFailure {
        use async_nats::ConnectErrorKind as K;
        let mut root: &dyn std::error::Error = e;
        while let Some(next) = root.source() {
            root = next;
        }
        let cause = root.to_string();
        match e.kind() {
            K::AuthorizationViolation | K::Authentication => ConnectFailure::NotAuthorized,
            // A failed handshake reaches us as an I/O error around rustls's own.
            K::Tls | K::Io if from_rustls(e) => ConnectFailure::Tls(cause),
            K::Tls => ConnectFailure::Tls(cause),
            K::TimedOut => ConnectFailure::TimedOut,
            K::ServerParse => ConnectFailure::BadUrl(cause),
            K::Dns | K::Io | K::MaxReconnects => ConnectFailure::Unreachable(cause),
        }
    }
}

/// Whether rustls (the TLS handshake: an unknown CA, a certificate refused) is behind `e`.
/// std's `io::Error` hides the error it wraps from `source()`, so each is opened.
fn from_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let inner = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if e.is::<async_nats::rustls::Error>()
            || inner.is_some_and(|i| i.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        next = e.source();
    }
    false
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

/// The subject a server's `-ERR 'Permissions Violation for Publish to "subj"'` names.
/// async-nats hands this protocol error over as text only (`ServerError::Other`), so the
/// server's wording is what there is to recognise.
fn denied_publish(error: &async_nats::ServerError) -> Option<String> {
    let async_nats::ServerError::Other(text) = error else { return None };
    let rest = text.strip_prefix("Permissions Violation for Publish to ")?;
    Some(rest.trim().trim_matches('"').to_string())
}

/// Where and as whom an admin connects.
#[derive(Debug, Clone, Default)]
pub struct ConnectSpec {
    /// Server URLs, tried in order.
    pub urls: Vec<String>,
    /// Creds file.
    pub creds: std::path::PathBuf,
    /// CA file to trust for the server's certificate.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key, for servers that verify clients (mTLS).
    pub tls_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Time-out of the connect.
    pub connect_timeout: Option<Duration>,
}

impl ConnectSpec {
    /// Connects and returns a client for the API under `prefix` whose requests fail at once
    /// with [`ClientError::NotAllowed`] when the server denies their publish, instead of
    /// waiting out the time-out.
    ///
    /// # Errors
    /// [`ClientError::Creds`] for an unreadable creds file, [`ClientError::Connect`] when no
    /// server can be reached or the server refuses the creds.
    pub async fn connect(
        &self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<AdminClient, ClientError> {
        let creds_error = |cause: String| ClientError::Creds { path: self.creds.clone(), cause };
        let text = std::fs::read_to_string(&self.creds).map_err(|e| creds_error(e.to_string()))?;
        crate::claims::creds::parse(&text).map_err(|e| creds_error(e.to_string()))?;
        let urls = self.urls.join(",");
        let connect_error = |cause| ClientError::Connect { urls: urls.clone(), cause };
        let addrs = self
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| connect_error(ConnectFailure::BadUrl(e.to_string())))?;
        let (denied, _) = tokio::sync::broadcast::channel(16);
        let events = denied.clone();
        let mut options = async_nats::ConnectOptions::with_credentials(&text)
            .map_err(|e| creds_error(e.to_string()))?
            .retain_servers_order()
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        if let Some(subject) = denied_publish(&e) {
                            let _ = events.send(subject);
                        }
                    }
                }
            });
        if let Some(timeout) = self.connect_timeout {
            options = options.connection_timeout(timeout);
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.tls_cert {
            options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
        }
        let client =
            options.connect(addrs).await.map_err(|e| connect_error(ConnectFailure::of(&e)))?;
        let mut api = AdminClient::new(client, prefix, timeout);
        api.denied = Some(denied);
        Ok(api)
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
    /// Subjects the server denied a publish to, if the connection reports them
    /// ([`ConnectSpec::connect`]).
    denied: Option<tokio::sync::broadcast::Sender<String>>,
}

impl AdminClient {
    /// A client for the API under `prefix` (default `authd`).
    pub fn new(client: Client, prefix: &str, timeout: Duration) -> Self {
        AdminClient { client, prefix: prefix.to_string(), timeout, denied: None }
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
        // Subscribed before the first publish, so a denial of it cannot be missed.
        let mut denials = self.denied.as_ref().map(|d| d.subscribe());
        let reply = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(REQUEST_ID_HEADER, id.as_str());
            let request = async_nats::Request::new()
                .payload(body.clone())
                .headers(headers)
                .timeout(Some(left.min(ATTEMPT_TIMEOUT)));
            let sent = self.client.send_request(subject.clone(), request);
            let sent = match denials.as_mut() {
                Some(denials) => tokio::select! {
                    sent = sent => sent,
                    () = denial_of(denials, &subject) => {
                        return Err(ClientError::NotAllowed { subject });
                    }
                },
                None => sent.await,
            };
            match sent {
                Ok(reply) => break reply,
                Err(e) if retryable(&e) && left > ATTEMPT_TIMEOUT => {
                    tracing::debug!(subject, error = %e, "no answer yet; asking again");
                    if e.kind() == async_nats::RequestErrorKind::NoResponders {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    let cause = match e.kind() {
                        async_nats::RequestErrorKind::NoResponders => NoAnswer::NoResponders,
                        async_nats::RequestErrorKind::TimedOut => NoAnswer::TimedOut,
                        _ => NoAnswer::Other(e.to_string()),
                    };
                    return Err(ClientError::Request { subject, cause });
                }
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
            // The body says the kind; the headers (the micro protocol) only code and message.
            let kind = serde_json::from_slice::<Value>(&reply.payload)
                .ok()
                .and_then(|body| body["error"]["kind"].as_str().map(str::to_string))
                .unwrap_or_else(|| kind_of(code).to_string());
            return Err(ClientError::Service { code, kind, message });
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

/// Completes when the server reports a denied publish to `subject`.
async fn denial_of(denials: &mut tokio::sync::broadcast::Receiver<String>, subject: &str) {
    loop {
        match denials.recv().await {
            Ok(denied) if denied == subject => return,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            // The sender lives in the client: closed means never.
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await
            }
        }
    }
}

/// A kind for an error answer that carried none.
fn kind_of(code: u16) -> &'static str {
    match code {
        400 => "invalid",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        _ => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_permissions_violation_names_its_subject() {
        let e = async_nats::ServerError::Other(
            "Permissions Violation for Publish to \"authd.account.list\"".into(),
        );
        assert_eq!(denied_publish(&e).as_deref(), Some("authd.account.list"));
        let sub = async_nats::ServerError::Other(
            "Permissions Violation for Subscription to \"x\"".into(),
        );
        assert_eq!(denied_publish(&sub), None);
        assert_eq!(denied_publish(&async_nats::ServerError::AuthorizationViolation), None);
    }
}
