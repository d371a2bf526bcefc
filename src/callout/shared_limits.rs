//! Brute-force limits across instances: every instance publishes the outcomes its limiter
//! counts ([`Limiter::share`]: charged failures, and successes that clear a count) on
//! [`LIMITER_SUBJECT`] in AUTH, and applies the other instances' ([`Limiter::apply`]),
//! ignoring its own by instance id. So six wrong passwords for one login, spread over two
//! instances by the callout queue group, are limited as if one instance saw them all.
//!
//! What remains open:
//! - **Attempts in flight at once on several instances**: each instance checks its own
//!   counters before hashing, and an attempt is told to the others only once it failed. So
//!   attempts that start on different instances within one argon2 verify (~20 ms) of each
//!   other (or within the broadcast's delivery, usually well under a millisecond on one
//!   server) are not yet counted by each other: at most about `instances - 1` extra attempts
//!   per limit per such burst, bounded further by the per-instance limit of each.
//! - **Core NATS is at most once**: an outcome published while the connection is down, or
//!   beyond [`super::limiter::SHARE_BACKLOG`] waiting, is lost; an instance that starts
//!   (or restarts) begins with empty counters, as a lone instance does after a restart.

use std::future::Future;
use std::sync::Arc;

use async_nats::Client;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::limiter::{Limiter, Outcome};
use crate::instance::InstanceId;
use crate::names::LIMITER_SUBJECT;

/// One outcome on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Shared {
    /// The instance that counted it.
    from: InstanceId,
    #[serde(flatten)]
    outcome: Outcome,
}

/// Publishes `limiter`'s outcomes as instance `instance` and applies the other instances'
/// until `shutdown`.
///
/// # Errors
/// If the subscription cannot be made.
pub async fn run<L>(
    client: Client,
    instance: InstanceId,
    limiter: Arc<L>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), async_nats::SubscribeError>
where
    L: AsRef<Limiter> + Send + Sync + 'static,
{
    tokio::pin!(shutdown);
    let mut incoming = client.subscribe(LIMITER_SUBJECT).await?;
    let mut outgoing = limiter.as_ref().as_ref().share();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            outcome = outgoing.recv() => {
                let Some(outcome) = outcome else { break };
                let body = serde_json::to_vec(&Shared { from: instance.clone(), outcome })
                    .expect("outcome serializes");
                if let Err(e) = client.publish(LIMITER_SUBJECT, body.into()).await {
                    tracing::debug!(error = %e, "sharing a limiter outcome failed");
                }
            }
            msg = incoming.next() => {
                let Some(msg) = msg else { break };
                match serde_json::from_slice::<Shared>(&msg.payload) {
                    Ok(shared) if shared.from == instance => {}
                    Ok(shared) => limiter.as_ref().as_ref().apply(&shared.outcome),
                    Err(_) => tracing::debug!("ignoring an unreadable limiter outcome"),
                }
            }
        }
    }
    let _ = incoming.unsubscribe().await;
    Ok(())
}
