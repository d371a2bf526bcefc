//! `serve`: the running service. Owns every task it starts and waits for them on the way out.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api_gate::ApiGate;
use crate::authority::Authority;
use crate::callout::authorize::{Authorizer, LoginSettings};
use crate::callout::directory::StoreDirectory;
use crate::callout::sealing::Sealing;
use crate::callout::{Callout, CalloutStats};
use crate::connection::{self, ConnectionError, ConnectionSettings};
use crate::instance::InstanceId;
use crate::lease::{Lease, LeaseSettings};
use crate::manage::{Manager, PUSH_WAIT};
use crate::model::AccountName;
use crate::names::{API_PREFIX, AUTH_ACCOUNT};
use crate::password::PasswordHasher;
use crate::publisher::{Publisher, PublisherSettings, PublisherStats};
use crate::server_api::ServerApi;
use crate::service::dedup::Dedup;
use crate::service::{self, reply, Context};
use crate::shared::{self, SharedStoreError};
use crate::store::choice::StoreChoice;
use crate::store::StoreError;

/// How often the lease holder removes expired request records (see `service::dedup`).
const DEDUP_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long shutdown waits for requests already being handled.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

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
    /// The shared (JetStream) store cannot be used.
    #[error(transparent)]
    Shared(#[from] SharedStoreError),
}

/// Everything `run` needs besides the store.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub connection: ConnectionSettings,
    pub publisher: PublisherSettings,
    pub callout: LoginSettings,
    /// The store to serve from: sled (the data dir's own) or the shared JetStream stream.
    pub store: StoreChoice,
    /// The publisher lease among instances sharing the store.
    pub lease: LeaseSettings,
}

/// Runs the service until `shutdown` completes; then stops taking requests, finishes the ones
/// in flight (bounded by [`IN_FLIGHT_GRACE`]), stops the publisher, drains the connection and
/// flushes the store.
///
/// `seed` is the data dir's own store and key: the service connects with it, and serves from
/// it (sled) or from the shared stream it seeds (JetStream, [`Settings::store`]).
///
/// # Errors
/// [`AppError::Connection`] in fail-fast mode when no server answers, service or store errors.
pub async fn run(
    seed: Authority,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    tokio::pin!(shutdown);
    let connection = match connection::connect(&seed, &settings.connection, &mut shutdown).await {
        Ok(connection) => connection,
        Err(ConnectionError::Cancelled) => {
            seed.db().store().flush().await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let client = connection.client.clone();
    let stop = CancellationToken::new();
    // Every task started below watches `stop`; an early error return cancels it too.
    let _stop_on_exit = stop.clone().drop_guard();
    // The seed stays open in JetStream mode too: its lock keeps a second process off this
    // data dir.
    let (authority, follower) = if settings.store.is_jetstream() {
        let Some(shared) = open_shared(&seed, &client, &settings.store, &mut shutdown).await?
        else {
            connection.close().await;
            seed.db().store().flush().await?;
            return Ok(());
        };
        let follower = tokio::spawn({
            let (db, client, link) =
                (shared.db().clone(), client.clone(), connection.state.clone());
            let stop = stop.clone();
            async move {
                if let Err(e) = shared::follow(db, client, link, stop).await {
                    tracing::error!(error = %e, "cannot follow the shared store's changes");
                }
            }
        });
        (shared, Some(follower))
    } else {
        (seed.clone(), None)
    };
    let hasher = PasswordHasher::default();
    let manager = Manager::new(authority.clone(), hasher.clone()).with_push_wait(PUSH_WAIT);
    let stats = Arc::new(PublisherStats::default());
    let gate = Arc::new(ApiGate::default());

    // Multi-instance: this process's id, and the lease that lets one instance publish.
    let instance = InstanceId::generate();
    tracing::info!(%instance, "instance");
    let (lease, lease_held) =
        Lease::new(authority.db().clone(), instance.clone(), settings.lease.clone());
    let lease = tokio::spawn({
        let stop = stop.clone();
        async move { lease.run(stop.cancelled_owned()).await }
    });

    // Retried requests are answered once across the instances sharing the store; the lease
    // holder removes expired records. A store only this process opens needs no records: the
    // in-memory cache sees every retry, and two writes per change would cost sled a third of
    // its create rate (measured with examples/scale.rs).
    let dedup = if authority.db().store().is_shared() {
        Dedup::with_store(authority.clone(), instance.clone())
    } else {
        Dedup::default()
    };
    let pruner = tokio::spawn(dedup.clone().run_pruner(
        lease_held.clone(),
        DEDUP_PRUNE_EVERY,
        stop.clone().cancelled_owned(),
    ));

    let publisher = Publisher::new(
        authority.clone(),
        ServerApi::new(client.clone()),
        connection.state.clone(),
        settings.publisher.clone(),
        Arc::clone(&stats),
        Arc::clone(&gate),
    )
    .with_lease(lease_held.clone());
    let publisher = tokio::spawn({
        let stop = stop.clone();
        async move { publisher.run(stop.cancelled_owned()).await }
    });

    let callout_stats = Arc::new(CalloutStats::default());
    let (mut callout, limits) = {
        let directory = Arc::new(StoreDirectory::new(authority.clone()));
        let authorizer = Authorizer::new(directory, hasher, settings.callout.clone())
            .await
            .map_err(|e| AppError::Service(e.to_string()))?;
        let auth = authority
            .account(&AccountName::new(AUTH_ACCOUNT).expect("valid"))
            .await
            .map_err(|e| AppError::Service(e.to_string()))?;
        let signer = auth
            .user_signer()
            .key_pair(authority.master())
            .map_err(|e| AppError::Service(e.to_string()))?;
        let sealing = auth
            .xkey
            .as_ref()
            .map(|k| {
                let xkey = k.xkey(authority.master()).map_err(|e| e.to_string())?;
                Sealing::new(&xkey).map_err(|e| e.to_string())
            })
            .transpose()
            .map_err(AppError::Service)?;
        let authorizer = Arc::new(authorizer);
        // The brute-force limits hold across instances: outcomes are shared over NATS.
        let limits = tokio::spawn(crate::callout::shared_limits::run(
            client.clone(),
            instance.clone(),
            Arc::clone(&authorizer),
            stop.clone().cancelled_owned(),
        ));
        let callout = Callout::new(
            authorizer,
            authority.clone(),
            client.clone(),
            signer,
            sealing,
            Arc::clone(&callout_stats),
        )
        .with_early_subscription(connection.dialer());
        let (revocations, stop) = (manager.revocations(), stop.clone());
        let callout =
            tokio::spawn(async move { callout.run(revocations, stop.cancelled_owned()).await });
        (callout, limits)
    };

    let mut api =
        service::start_as(&client, API_PREFIX, Some(&instance)).await.map_err(AppError::Service)?;
    let ctx = Context {
        callout: callout_stats,
        manager,
        client: client.clone(),
        connected: connection.state.clone(),
        link: connection.status_handle(),
        stats,
        errors: Arc::default(),
        started: Instant::now(),
        instance: instance.clone(),
    };
    tracing::info!(prefix = API_PREFIX, "serving");

    let mut in_flight = JoinSet::new();
    let mut failure = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            ended = &mut callout => {
                // Without its responder every callout login would time out: stop loudly.
                let why = match ended {
                    Ok(Ok(())) => "the callout responder stopped".to_string(),
                    Ok(Err(e)) => format!("the callout responder could not subscribe: {e}"),
                    Err(e) => format!("the callout responder failed: {e}"),
                };
                tracing::error!(%why, "stopping the service");
                failure = Some(AppError::Service(why));
                break;
            }
            next = api.requests.next() => {
                let Some((endpoint, request)) = next else { break };
                let ctx = ctx.clone();
                let gate = Arc::clone(&gate);
                let dedup = dedup.clone();
                in_flight.spawn(async move {
                    let _serving = gate.request().await;
                    let reply = service::serve(&ctx, &dedup, endpoint, &request.message).await;
                    reply::respond(&ctx.client, request, endpoint.subject(), &reply).await;
                });
            }
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a request handler failed");
                }
            }
        }
    }

    tracing::info!(in_flight = in_flight.len(), "shutting down");
    // No new requests: unsubscribe the endpoints first, then let the running ones finish.
    drop(api.requests);
    if let Err(e) = api.service.stop().await {
        tracing::warn!(error = %e, "stopping the NATS service failed");
    }
    let finished = tokio::time::timeout(IN_FLIGHT_GRACE, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            abandoned = in_flight.len(),
            "requests still running after the grace period"
        );
        in_flight.shutdown().await;
    }
    stop.cancel();
    if let Err(e) = publisher.await {
        tracing::error!(error = %e, "the claims publisher failed");
    }
    match limits.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "sharing brute-force limits could not subscribe"),
        Err(e) => tracing::error!(error = %e, "sharing brute-force limits failed"),
    }
    if let Err(e) = pruner.await {
        tracing::error!(error = %e, "the request record pruner failed");
    }
    // After the publisher: the lease is released only once nothing here pushes any more.
    if let Err(e) = lease.await {
        tracing::error!(error = %e, "the publisher lease task failed");
    }
    if failure.is_none() {
        match callout.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the callout responder could not subscribe"),
            Err(e) => tracing::error!(error = %e, "the callout responder failed"),
        }
    }
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    connection.close().await;
    authority.db().store().flush().await?;
    seed.db().store().flush().await?;
    failure.map_or(Ok(()), Err)
}

/// An error with its causes, `a: b: c` (a backend error's own text is in its source).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Opens the shared store, retrying while JetStream is not ready (a cluster still electing
/// its meta leader, the AUTH account's JetStream limits not yet applied) until `shutdown`.
/// `None` when shut down first.
async fn open_shared(
    seed: &Authority,
    client: &async_nats::Client,
    choice: &StoreChoice,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Option<Authority>, AppError> {
    let options = choice.jetstream_options();
    let mut delay = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            () = &mut *shutdown => return Ok(None),
            attempt = shared::open(seed, client.clone(), &options) => attempt,
        };
        match attempt {
            Ok(authority) => return Ok(Some(authority)),
            Err(e) if e.is_transient() => {
                failures += 1;
                // Once, then every 10th: a cluster coming up fails a few times.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %causes(&e), stream = %options.stream, failures, "the shared store is not available yet; retrying");
                }
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            () = &mut *shutdown => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
