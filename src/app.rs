//! `serve`: the running service. Owns every task it starts and waits for them on the way out.

use std::future::Future;

use async_nats::service::ServiceExt;
use futures::StreamExt;
use serde::Serialize;

use crate::authority::Authority;
use crate::bootstrap::API_PREFIX;
use crate::connection::{self, ConnectionError, ConnectionSettings};
use crate::model::{AccountRecord, PendingUpdate, UserRecord};
use crate::store::StoreError;

/// Name of the micro service, as `$SRV.PING` shows it.
pub const SERVICE_NAME: &str = "nats-authd";

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Registering the micro service failed.
    #[error("cannot start the NATS service: {0}")]
    Service(String),
}

/// The `authd.status` reply.
#[derive(Debug, Serialize)]
struct Status {
    version: &'static str,
    server_name: String,
    accounts: usize,
    users: usize,
    queue_depth: usize,
}

/// Runs the service until `shutdown` completes, then stops taking requests, drains the
/// connection and flushes the store.
///
/// # Errors
/// [`AppError::Connection`] in fail-fast mode when no server answers, service or store errors.
pub async fn run(
    authority: Authority,
    settings: ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    tokio::pin!(shutdown);
    let client = match connection::connect(&authority, &settings, &mut shutdown).await {
        Ok(client) => client,
        Err(ConnectionError::Cancelled) => {
            authority.db().store().flush().await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };

    let service = client
        .service_builder()
        .description("nats-authd: accounts, users and auth callout for NATS")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| AppError::Service(e.to_string()))?;
    let mut status = service
        .group(API_PREFIX)
        .endpoint("status")
        .await
        .map_err(|e| AppError::Service(e.to_string()))?;
    tracing::info!(prefix = API_PREFIX, "serving");

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            request = status.next() => {
                let Some(request) = request else { break };
                let reply = status_reply(&authority, &client).await;
                if let Err(e) = request.respond(reply).await {
                    tracing::warn!(error = %e, "could not answer a status request");
                }
            }
        }
    }

    tracing::info!("shutting down");
    let _ = status.stop().await;
    let _ = service.stop().await;
    if let Err(e) = client.drain().await {
        tracing::warn!(error = %e, "draining the NATS connection failed");
    }
    authority.db().store().flush().await?;
    Ok(())
}

async fn status_reply(
    authority: &Authority,
    client: &async_nats::Client,
) -> Result<bytes::Bytes, async_nats::service::error::Error> {
    let counts = async {
        let accounts = authority.db().list::<AccountRecord>("").await?.len();
        let users = authority.db().list::<UserRecord>("").await?.len();
        let queue_depth = authority.db().list::<PendingUpdate>("").await?.len();
        Ok::<_, StoreError>((accounts, users, queue_depth))
    };
    match counts.await {
        Ok((accounts, users, queue_depth)) => {
            let status = Status {
                version: env!("CARGO_PKG_VERSION"),
                server_name: client.server_info().server_name,
                accounts,
                users,
                queue_depth,
            };
            Ok(serde_json::to_vec(&status)
                .expect("status serializes")
                .into())
        }
        Err(e) => {
            tracing::error!(error = %e, "status: store read failed");
            Err(async_nats::service::error::Error {
                status: "store unavailable".into(),
                code: 500,
            })
        }
    }
}
