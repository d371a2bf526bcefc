//! Audit events of login decisions, published on `authd.events.auth.<allowed|refused>` by one
//! owned task: handlers queue an event and move on; the task stops (after publishing what is
//! queued) once every [`Audit`] handle is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use async_nats::{Client, Subject};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::model::UnixTime;
use crate::names::API_PREFIX;

/// Events waiting to be published; beyond that new ones are dropped (and counted).
pub const QUEUE: usize = 4096;

/// The two subjects, built once: a login costs no subject formatting.
static ALLOWED: LazyLock<Subject> =
    LazyLock::new(|| Subject::from(format!("{API_PREFIX}.events.auth.allowed")));
static REFUSED: LazyLock<Subject> =
    LazyLock::new(|| Subject::from(format!("{API_PREFIX}.events.auth.refused")));

/// One audit event. No secrets.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    pub decision: &'a str,
    pub category: Option<&'a str>,
    pub login: &'a str,
    pub account: Option<&'a str>,
    pub user: Option<&'a str>,
    pub client_host: &'a str,
    pub client_id: u64,
    pub server_name: &'a str,
    pub latency_ms: f64,
    pub cached: bool,
    pub at: UnixTime,
}

/// Queues events for the publisher; cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    events: mpsc::Sender<(Subject, Bytes)>,
    dropped: Arc<AtomicU64>,
}

/// Publishes queued events; runs until every [`Audit`] handle is dropped.
#[derive(Debug)]
pub struct AuditPublisher {
    client: Client,
    events: mpsc::Receiver<(Subject, Bytes)>,
}

impl Audit {
    /// A queue publishing through `client`, and the publisher task's body (the caller runs
    /// and owns it).
    pub fn new(client: Client) -> (Audit, AuditPublisher) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Audit { events: tx, dropped: Arc::default() }, AuditPublisher { client, events: rx })
    }

    /// Queues `event`; dropped if the queue is full (a login never waits for its audit).
    pub fn send(&self, event: &AuditEvent<'_>) {
        let subject = match event.decision {
            "allowed" => ALLOWED.clone(),
            "refused" => REFUSED.clone(),
            other => Subject::from(format!("{API_PREFIX}.events.auth.{other}")),
        };
        // Sized for a typical event: one allocation, no regrowth.
        let mut payload = Vec::with_capacity(256);
        serde_json::to_writer(&mut payload, event).expect("events serialize");
        let payload = Bytes::from(payload);
        if self.events.try_send((subject, payload)).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit queue full; events dropped");
            }
        }
    }
}

impl AuditPublisher {
    /// Publishes until every [`Audit`] handle is gone and the queue is empty.
    pub async fn run(mut self) {
        while let Some((subject, payload)) = self.events.recv().await {
            if let Err(e) = self.client.publish(subject, payload).await {
                tracing::debug!(error = %e, "cannot publish an audit event");
            }
        }
    }
}
