//! The service's one NATS connection: as the service user of AUTH, signed from the store.
//!
//! Bootstrap mode: until a server answers, nothing is served and the service keeps trying with
//! capped exponential backoff, saying so in the log. Once connected, async-nats reconnects on
//! its own (without limit) and the state changes are logged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::watch;

use crate::authority::{Authority, AuthorityError, AUTH_ACCOUNT};
use crate::bootstrap::SERVICE_USER;
use crate::model::{AccountName, UserName};
use crate::policy;
use crate::trust;

/// How the service connects.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Server URLs, primary first.
    pub urls: Vec<String>,
    /// Time-out of one connect attempt.
    pub connect_timeout: Duration,
    /// Time-out of requests the service makes.
    pub request_timeout: Duration,
    /// First delay between connect attempts.
    pub initial_backoff: Duration,
    /// Longest delay between connect attempts.
    pub max_backoff: Duration,
    /// Exit on the first failed connect instead of waiting for a server.
    pub require_nats: bool,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            urls: vec!["nats://127.0.0.1:4222".into()],
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            require_nats: false,
        }
    }
}

/// The service's connection and whether it is up right now.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client; async-nats reconnects it by itself.
    pub client: Client,
    /// `true` while connected; the publisher's circuit breaker watches it.
    pub state: watch::Receiver<bool>,
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// `--require-nats` and the first attempt failed.
    #[error("cannot connect to NATS at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// Shut down before a server answered.
    #[error("shut down while waiting for NATS")]
    Cancelled,
}

/// Connects as the service user, waiting for a server unless `require_nats` is set.
///
/// # Errors
/// [`ConnectionError::Unreachable`] in fail-fast mode, [`ConnectionError::Cancelled`] if
/// `shutdown` completes first, key or store errors.
pub async fn connect(
    authority: &Authority,
    settings: &ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<Connection, ConnectionError> {
    let (state_tx, state) = watch::channel(false);
    let state_tx = Arc::new(state_tx);
    let auth = AccountName::new(AUTH_ACCOUNT).expect("valid");
    let account = authority.account(&auth).await?;
    let user = authority.user(&auth, &UserName::new(SERVICE_USER).expect("valid")).await?;
    let now = crate::model::now();
    let jwt = trust::user_jwt(
        &account,
        &user.identity.public,
        user.name.as_str(),
        policy::user_permissions(&user, None),
        None,
        authority.master(),
        now,
    )
    .map_err(AuthorityError::from)?;
    let key_pair = Arc::new(user.identity.key_pair(authority.master())?);
    let urls = settings.urls.join(", ");

    tokio::pin!(shutdown);
    let mut backoff = settings.initial_backoff;
    let mut announced = false;
    loop {
        let key_pair = Arc::clone(&key_pair);
        let options = ConnectOptions::with_jwt(jwt.clone(), move |nonce| {
            let key_pair = Arc::clone(&key_pair);
            async move { key_pair.sign(&nonce).map_err(async_nats::AuthError::new) }
        })
        .name("nats-authd")
        .connection_timeout(settings.connect_timeout)
        .request_timeout(Some(settings.request_timeout))
        .max_reconnects(None)
        .event_callback({
            let state_tx = Arc::clone(&state_tx);
            move |event| {
                let state_tx = Arc::clone(&state_tx);
                async move {
                    match event {
                        Event::Connected => state_tx.send_replace(true),
                        Event::Disconnected | Event::Closed => state_tx.send_replace(false),
                        _ => false,
                    };
                    log_event(event);
                }
            }
        });
        let attempt = options.connect(settings.urls.as_slice());
        let result = tokio::select! {
            r = attempt => r,
            () = &mut shutdown => return Err(ConnectionError::Cancelled),
        };
        match result {
            Ok(client) => {
                let info = client.server_info();
                tracing::info!(server = %info.server_name, url = %urls, "connected to NATS");
                state_tx.send_replace(true);
                return Ok(Connection { client, state });
            }
            Err(e) if settings.require_nats => {
                return Err(ConnectionError::Unreachable { url: urls, cause: e.to_string() });
            }
            Err(e) => {
                if !announced {
                    tracing::warn!(url = %urls, cause = %e, "waiting for NATS");
                    announced = true;
                } else {
                    tracing::debug!(url = %urls, cause = %e, "still waiting for NATS");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut shutdown => return Err(ConnectionError::Cancelled),
        }
        backoff = (backoff * 2).min(settings.max_backoff);
    }
}

fn log_event(event: Event) {
    match event {
        Event::Connected => tracing::info!("NATS connection up"),
        Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
        Event::LameDuckMode => tracing::warn!("NATS server entering lame duck mode"),
        Event::Draining | Event::Closed => {
            tracing::info!(event = %event, "NATS connection closing")
        }
        other => tracing::warn!(event = %other, "NATS connection event"),
    }
}
