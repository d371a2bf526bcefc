//! The management API as NATS micro-service endpoints under `<prefix>.<noun>.<verb>`.
//!
//! Handlers are thin: decode the JSON body, call [`Manager`], encode the answer. Errors become
//! wire errors in [`reply`] only.

pub mod dedup;
pub mod reply;
pub mod selfservice;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::service::{Request, Service, ServiceExt};
use async_nats::Client;
use bytes::Bytes;
use futures::stream::{SelectAll, StreamExt};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::api::Endpoint;
use crate::callout::{CalloutCounts, CalloutStats};
use crate::connection::{Link, StatusHandle};
use crate::instance::InstanceId;
use crate::lease;
use crate::manage::{parse, ManageError, Manager};
use crate::model::{self, AccountRecord, RoleRecord, UserRecord};
use crate::publisher::PublisherStats;
use dedup::Dedup;
use reply::Reply;

/// Name of the micro service, as `$SRV.PING` shows it.
pub const SERVICE_NAME: &str = "nats-authd";
/// The service metadata key holding the instance id.
pub const INSTANCE_METADATA: &str = "instance";
/// `status` gathers `$SRV.PING` answers until none came for this long...
const PING_QUIET: Duration = Duration::from_millis(100);
/// ...or for this long in all.
const PING_MAX: Duration = Duration::from_millis(750);

/// What handlers need besides the request.
#[derive(Clone)]
pub struct Context {
    pub manager: Manager,
    pub client: Client,
    pub connected: watch::Receiver<Link>,
    pub link: StatusHandle,
    pub stats: Arc<PublisherStats>,
    pub callout: Arc<CalloutStats>,
    /// Error replies per endpoint, for `status`.
    pub errors: Arc<ErrorCounts>,
    pub started: Instant,
    /// This process among the instances sharing the store.
    pub instance: InstanceId,
}

/// Error replies counted per endpoint subject (`$SRV.STATS` counts them too, per service
/// instance; this is what `status` shows).
#[derive(Debug, Default)]
pub struct ErrorCounts(std::sync::Mutex<BTreeMap<&'static str, u64>>);

impl ErrorCounts {
    /// Counts one error reply of `endpoint`.
    pub fn add(&self, endpoint: Endpoint) {
        *self.0.lock().expect("error counts lock").entry(endpoint.subject()).or_default() += 1;
    }

    /// Every endpoint that answered an error, with how many.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let counts = self.0.lock().expect("error counts lock");
        counts.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}

/// The requests of one endpoint, tagged with it.
pub type Requests = std::pin::Pin<Box<dyn Stream<Item = (Endpoint, Request)> + Send>>;

/// The registered service and one merged stream of its requests.
pub struct Api {
    pub service: Service,
    pub requests: SelectAll<Requests>,
}

/// Registers the micro service and every endpoint under `prefix` on `client`.
///
/// # Errors
/// The registration error, as text.
pub async fn start(client: &Client, prefix: &str) -> Result<Api, String> {
    start_as(client, prefix, None).await
}

/// As [`start`], with this process's instance id in the service metadata
/// ([`INSTANCE_METADATA`]), where `$SRV.PING` and `status` show it.
///
/// # Errors
/// The registration error, as text.
pub async fn start_as(
    client: &Client,
    prefix: &str,
    instance: Option<&InstanceId>,
) -> Result<Api, String> {
    let mut builder = client
        .service_builder()
        .description("nats-authd: accounts, users, roles and auth callout for NATS");
    if let Some(instance) = instance {
        builder = builder
            .metadata(HashMap::from([(INSTANCE_METADATA.to_string(), instance.to_string())]));
    }
    let service =
        builder.start(SERVICE_NAME, env!("CARGO_PKG_VERSION")).await.map_err(|e| e.to_string())?;
    let group = service.group(prefix);
    let mut requests = SelectAll::new();
    for endpoint in Endpoint::ALL {
        let info = endpoint.info();
        let metadata = HashMap::from([
            ("description".to_string(), info.description.to_string()),
            ("request".to_string(), info.request.to_string()),
            ("reply".to_string(), info.reply.to_string()),
            ("changes".to_string(), info.changes.to_string()),
        ]);
        let stream = group
            .endpoint_builder()
            .name(endpoint.subject().replace('.', "-"))
            .metadata(metadata)
            .add(endpoint.subject())
            .await
            .map_err(|e| e.to_string())?;
        let tagged: Requests = Box::pin(stream.map(move |r| (endpoint, r)));
        requests.push(tagged);
    }
    Ok(Api { service, requests })
}

fn json<T: Serialize>(value: &T) -> Result<Bytes, ManageError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(ManageError::internal)
}

impl crate::api::ApiRequest for crate::api::ops::GetStatus {
    const ENDPOINT: Endpoint = Endpoint::Status;
    type Reply = Status;
}

/// `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub uptime_secs: u64,
    pub connected: bool,
    /// bootstrapping, connected, reconnecting, failed_over or closed.
    pub state: String,
    pub server_name: String,
    pub server_url: Option<String>,
    pub last_failover_at: Option<i64>,
    pub last_failback_at: Option<i64>,
    pub reconnects: u64,
    pub disconnects: u64,
    pub accounts: usize,
    pub users: usize,
    pub roles: usize,
    pub queue_depth: usize,
    pub failed_pushes: usize,
    pub pushes: u64,
    pub push_failures: u64,
    pub reconciliations: u64,
    pub callout: CalloutCounts,
    /// Error replies since start, by endpoint subject.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// The instance that answered.
    #[serde(default)]
    pub instance: String,
    /// The instance holding the publisher lease (the one pushing account JWTs), if any
    /// holds an unexpired one.
    #[serde(default)]
    pub publisher: Option<String>,
    /// Every instance answering `$SRV.PING.nats-authd` within a short window.
    #[serde(default)]
    pub instances: Vec<InstanceView>,
}

/// One running instance as `$SRV.PING` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// Its instance id (host and random suffix); empty for a build that does not say.
    pub id: String,
    /// Its micro-service id.
    pub service_id: String,
    pub version: String,
}

/// Handles one request: changes carrying a request id are applied once across retries.
#[tracing::instrument(name = "request", skip_all, fields(endpoint = endpoint.subject(), request_id))]
pub async fn serve(
    ctx: &Context,
    dedup: &Dedup,
    endpoint: Endpoint,
    message: &async_nats::Message,
) -> Reply {
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(dedup::REQUEST_ID_HEADER))
        .map(|v| v.as_str().to_string());
    if let Some(id) = &id {
        tracing::Span::current().record("request_id", id.as_str());
    }
    let run = || async {
        Reply::from_result(endpoint.subject(), handle(ctx, endpoint, &message.payload).await)
    };
    let reply = if endpoint.is_self_service() {
        // Self-service requests identify their caller by a header: they take another path.
        selfservice::serve(ctx, dedup, endpoint, message).await
    } else if endpoint.is_change() {
        dedup.run(id.as_deref(), run).await
    } else {
        run().await
    };
    if reply.error.is_some() {
        ctx.errors.add(endpoint);
    }
    reply
}

/// Handles one request body for `endpoint`: decode the typed request, call the domain,
/// encode the typed reply.
///
/// # Errors
/// The [`ManageError`] to send back.
pub async fn handle(ctx: &Context, endpoint: Endpoint, body: &[u8]) -> Result<Bytes, ManageError> {
    use crate::api::{account as a, ops, role as r, token as t, user as u};
    let m = &ctx.manager;
    let now = model::now();
    // Lists page their replies to fit the payload the server takes.
    let max_payload = ctx.client.server_info().max_payload;
    match endpoint {
        Endpoint::AccountCreate => {
            json(&m.create_account(parse::<a::CreateAccount>(body)?, now).await?)
        }
        Endpoint::AccountGet => json(&m.get_account(parse::<a::AccountRef>(body)?).await?),
        Endpoint::AccountList => {
            json(&m.list_accounts(parse::<a::ListAccounts>(body)?, max_payload).await?)
        }
        Endpoint::AccountUpdate => {
            json(&m.update_account(parse::<a::UpdateAccount>(body)?, now).await?)
        }
        Endpoint::AccountDelete => {
            json(&m.delete_account(parse::<a::DeleteAccount>(body)?, now).await?)
        }
        Endpoint::UserCreate => json(&m.create_user(parse::<u::CreateUser>(body)?, now).await?),
        Endpoint::UserGet => json(&m.get_user(parse::<u::UserRef>(body)?).await?),
        Endpoint::UserList => {
            json(&m.list_users(parse::<u::UserListRef>(body)?, max_payload).await?)
        }
        Endpoint::UserUpdate => json(&m.update_user(parse::<u::UpdateUser>(body)?, now).await?),
        Endpoint::UserDelete => json(&m.delete_user(parse::<u::DeleteUser>(body)?.0, now).await?),
        Endpoint::UserRegenerate => {
            json(&m.regenerate_user(parse::<u::RegenerateUser>(body)?.0, now).await?)
        }
        Endpoint::UserCreds => json(&m.user_creds(parse::<u::GetCreds>(body)?.0, now).await?),
        Endpoint::RoleCreate => json(&m.create_role(parse::<r::CreateRole>(body)?, now).await?),
        Endpoint::RoleGet => json(&m.get_role(parse::<r::RoleRef>(body)?).await?),
        Endpoint::RoleList => {
            json(&m.list_roles(parse::<r::RoleListRef>(body)?, max_payload).await?)
        }
        Endpoint::RoleUpdate => json(&m.update_role(parse::<r::UpdateRole>(body)?, now).await?),
        Endpoint::RoleDelete => json(&m.delete_role(parse::<r::DeleteRole>(body)?.0, now).await?),
        Endpoint::OperatorGet => {
            parse::<ops::GetOperator>(body)?;
            let authority = m.authority();
            let op = authority.operator().await?;
            json(&ops::OperatorView {
                name: op.name.clone(),
                public_key: op.identity.public.clone(),
                signing_keys: vec![op.signing_key.public.clone()],
                system_account: op.system_account.clone(),
                jwt: authority.operator_jwt(now).await?,
            })
        }
        Endpoint::OperatorSysCreds => {
            json(&m.sys_creds(parse::<ops::SysCreds>(body)?.name, now).await?)
        }
        Endpoint::Status => {
            parse::<ops::GetStatus>(body)?;
            json(&status(ctx).await?)
        }
        Endpoint::PendingList => {
            json(&m.pending(parse::<ops::ListPending>(body)?, max_payload).await?)
        }
        Endpoint::PendingRetry => {
            let req = parse::<ops::RetryPending>(body)?;
            let retried = m.retry_failed(req.account.as_ref(), now).await?;
            json(&ops::Retried { retried })
        }
        Endpoint::TokenCreate => json(&m.create_token(parse::<t::CreateToken>(body)?, now).await?),
        Endpoint::TokenList => {
            json(&m.list_tokens(parse::<t::ListTokens>(body)?, max_payload).await?)
        }
        Endpoint::TokenRevoke => json(&m.revoke_token(parse::<t::RevokeToken>(body)?).await?),
        // Without the message there is no caller: `serve` routes these to `selfservice`.
        e if e.is_self_service() => {
            Err(ManageError::Forbidden("self-service is for users of tenant accounts only".into()))
        }
        _ => Err(ManageError::internal(format!("{endpoint:?} has no handler"))),
    }
}

async fn status(ctx: &Context) -> Result<Status, ManageError> {
    let connected = ctx.connected.borrow().up;
    let link = ctx.link.get();
    let db = ctx.manager.authority().db();
    let queue = ctx.manager.queue().counts().await?;
    Ok(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: ctx.started.elapsed().as_secs(),
        connected,
        state: serde_json::to_value(link.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        server_url: link.url,
        last_failover_at: link.last_failover_at,
        last_failback_at: link.last_failback_at,
        reconnects: link.reconnects,
        disconnects: link.disconnects,
        server_name: ctx.client.server_info().server_name,
        accounts: db.count::<AccountRecord>().await?,
        users: db.count::<UserRecord>().await?,
        roles: db.count::<RoleRecord>().await?,
        queue_depth: queue.pending,
        failed_pushes: queue.failed,
        pushes: ctx.stats.pushes.load(Ordering::Relaxed),
        push_failures: ctx.stats.failures.load(Ordering::Relaxed),
        reconciliations: ctx.stats.reconciliations.load(Ordering::Relaxed),
        callout: ctx.callout.counts(),
        errors: ctx.errors.snapshot(),
        instance: ctx.instance.to_string(),
        publisher: lease::current(db)
            .await?
            .filter(|l| l.expires_at_ms >= lease::now_ms())
            .map(|l| l.holder.to_string()),
        instances: instances(&ctx.client).await,
    })
}

/// The instances answering `$SRV.PING.nats-authd` (each instance's service answers; the
/// number is not known in advance, hence the quiet window). Chosen over heartbeat records
/// in the store: it shows what serves on NATS right now, at no cost between status calls.
async fn instances(client: &Client) -> Vec<InstanceView> {
    let inbox = client.new_inbox();
    let Ok(mut answers) = client.subscribe(inbox.clone()).await else { return Vec::new() };
    let subject = format!("$SRV.PING.{SERVICE_NAME}");
    if client.publish_with_reply(subject, inbox, Bytes::new()).await.is_err() {
        return Vec::new();
    }
    let end = tokio::time::Instant::now() + PING_MAX;
    let mut out = Vec::new();
    loop {
        let until = end.min(tokio::time::Instant::now() + PING_QUIET);
        match tokio::time::timeout_at(until, answers.next()).await {
            Ok(Some(msg)) => {
                if let Ok(ping) =
                    serde_json::from_slice::<async_nats::service::PingResponse>(&msg.payload)
                {
                    out.push(InstanceView {
                        id: ping.metadata.get(INSTANCE_METADATA).cloned().unwrap_or_default(),
                        service_id: ping.id,
                        version: ping.version,
                    });
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = answers.unsubscribe().await;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
