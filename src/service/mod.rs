//! The management API as NATS micro-service endpoints under `<prefix>.<noun>.<verb>`.
//!
//! Handlers are thin: decode the JSON body, call [`Manager`], encode the answer. Errors become
//! wire errors in [`reply`] only.

pub mod dedup;
pub mod reply;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_nats::service::{Request, Service, ServiceExt};
use async_nats::Client;
use bytes::Bytes;
use futures::stream::{SelectAll, StreamExt};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::callout::{CalloutCounts, CalloutStats};
use crate::connection::{Link, StatusHandle};
use crate::manage::{self, ManageError, Manager};
use crate::model::{self, AccountRecord, RoleRecord, UserRecord};
use crate::publisher::PublisherStats;
use dedup::Dedup;
use reply::Reply;

/// Name of the micro service, as `$SRV.PING` shows it.
pub const SERVICE_NAME: &str = "nats-authd";

/// Every endpoint, by the subject it answers under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    AccountCreate,
    AccountGet,
    AccountList,
    AccountUpdate,
    AccountDelete,
    UserCreate,
    UserGet,
    UserList,
    UserUpdate,
    UserDelete,
    UserRegenerate,
    UserCreds,
    RoleCreate,
    RoleGet,
    RoleList,
    RoleUpdate,
    RoleDelete,
    OperatorGet,
    Status,
    PendingList,
    PendingRetry,
    TokenCreate,
    TokenList,
    TokenRevoke,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 24] = [
        Endpoint::AccountCreate,
        Endpoint::AccountGet,
        Endpoint::AccountList,
        Endpoint::AccountUpdate,
        Endpoint::AccountDelete,
        Endpoint::UserCreate,
        Endpoint::UserGet,
        Endpoint::UserList,
        Endpoint::UserUpdate,
        Endpoint::UserDelete,
        Endpoint::UserRegenerate,
        Endpoint::UserCreds,
        Endpoint::RoleCreate,
        Endpoint::RoleGet,
        Endpoint::RoleList,
        Endpoint::RoleUpdate,
        Endpoint::RoleDelete,
        Endpoint::OperatorGet,
        Endpoint::Status,
        Endpoint::PendingList,
        Endpoint::PendingRetry,
        Endpoint::TokenCreate,
        Endpoint::TokenList,
        Endpoint::TokenRevoke,
    ];

    /// Whether it changes state (and so must not be applied twice on a retry).
    pub fn is_change(self) -> bool {
        !matches!(
            self,
            Endpoint::AccountGet
                | Endpoint::AccountList
                | Endpoint::UserGet
                | Endpoint::UserList
                | Endpoint::UserCreds
                | Endpoint::RoleGet
                | Endpoint::RoleList
                | Endpoint::OperatorGet
                | Endpoint::Status
                | Endpoint::PendingList
                | Endpoint::TokenList
        )
    }

    /// The subject below the prefix, e.g. `account.create`.
    pub fn subject(self) -> &'static str {
        match self {
            Endpoint::AccountCreate => "account.create",
            Endpoint::AccountGet => "account.get",
            Endpoint::AccountList => "account.list",
            Endpoint::AccountUpdate => "account.update",
            Endpoint::AccountDelete => "account.delete",
            Endpoint::UserCreate => "user.create",
            Endpoint::UserGet => "user.get",
            Endpoint::UserList => "user.list",
            Endpoint::UserUpdate => "user.update",
            Endpoint::UserDelete => "user.delete",
            Endpoint::UserRegenerate => "user.regenerate",
            Endpoint::UserCreds => "user.creds",
            Endpoint::RoleCreate => "role.create",
            Endpoint::RoleGet => "role.get",
            Endpoint::RoleList => "role.list",
            Endpoint::RoleUpdate => "role.update",
            Endpoint::RoleDelete => "role.delete",
            Endpoint::OperatorGet => "operator.get",
            Endpoint::Status => "status",
            Endpoint::PendingList => "pending.list",
            Endpoint::PendingRetry => "pending.retry",
            Endpoint::TokenCreate => "token.create",
            Endpoint::TokenList => "token.list",
            Endpoint::TokenRevoke => "token.revoke",
        }
    }
}

/// What handlers need besides the request.
#[derive(Clone)]
pub struct Context {
    pub manager: Manager,
    pub client: Client,
    pub connected: watch::Receiver<Link>,
    pub link: StatusHandle,
    pub stats: Arc<PublisherStats>,
    pub callout: Arc<CalloutStats>,
    pub started: Instant,
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
    let service = client
        .service_builder()
        .description("nats-authd: accounts, users, roles and auth callout for NATS")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| e.to_string())?;
    let group = service.group(prefix);
    let mut requests = SelectAll::new();
    for endpoint in Endpoint::ALL {
        let stream = group
            .endpoint_builder()
            .name(endpoint.subject().replace('.', "-"))
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

/// `pending.retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    #[serde(default)]
    account: Option<String>,
}

/// An empty request body: list endpoints take no input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `operator.get`: what another server needs to trust this operator.
#[derive(Debug, Serialize)]
struct OperatorView {
    name: String,
    public_key: String,
    signing_keys: Vec<String>,
    system_account: String,
    jwt: String,
}

/// `status`.
#[derive(Debug, Serialize, Deserialize)]
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
}

/// Handles one request: changes carrying a request id are applied once across retries.
pub async fn serve(
    ctx: &Context,
    dedup: &Dedup,
    endpoint: Endpoint,
    message: &async_nats::Message,
) -> Reply {
    let run = || async {
        Reply::from_result(endpoint.subject(), handle(ctx, endpoint, &message.payload).await)
    };
    if !endpoint.is_change() {
        return run().await;
    }
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(dedup::REQUEST_ID_HEADER))
        .map(|v| v.as_str().to_string());
    dedup.run(id.as_deref(), run).await
}

/// Handles one request body for `endpoint`.
///
/// # Errors
/// The [`ManageError`] to send back.
pub async fn handle(ctx: &Context, endpoint: Endpoint, body: &[u8]) -> Result<Bytes, ManageError> {
    let m = &ctx.manager;
    let now = model::now();
    match endpoint {
        Endpoint::AccountCreate => json(&m.create_account(manage::parse(body)?, now).await?),
        Endpoint::AccountGet => json(&m.get_account(manage::parse(body)?).await?),
        Endpoint::AccountList => {
            manage::parse::<Empty>(body)?;
            json(&m.list_accounts().await?)
        }
        Endpoint::AccountUpdate => json(&m.update_account(manage::parse(body)?, now).await?),
        Endpoint::AccountDelete => json(&m.delete_account(manage::parse(body)?, now).await?),
        Endpoint::UserCreate => json(&m.create_user(manage::parse(body)?, now).await?),
        Endpoint::UserGet => json(&m.get_user(manage::parse(body)?).await?),
        Endpoint::UserList => json(&m.list_users(manage::parse(body)?).await?),
        Endpoint::UserUpdate => json(&m.update_user(manage::parse(body)?, now).await?),
        Endpoint::UserDelete => json(&m.delete_user(manage::parse(body)?, now).await?),
        Endpoint::UserRegenerate => json(&m.regenerate_user(manage::parse(body)?, now).await?),
        Endpoint::UserCreds => json(&m.user_creds(manage::parse(body)?, now).await?),
        Endpoint::RoleCreate => json(&m.create_role(manage::parse(body)?, now).await?),
        Endpoint::RoleGet => json(&m.get_role(manage::parse(body)?).await?),
        Endpoint::RoleList => json(&m.list_roles(manage::parse(body)?).await?),
        Endpoint::RoleUpdate => json(&m.update_role(manage::parse(body)?, now).await?),
        Endpoint::RoleDelete => json(&m.delete_role(manage::parse(body)?, now).await?),
        Endpoint::OperatorGet => {
            manage::parse::<Empty>(body)?;
            let authority = m.authority();
            let op = authority.operator().await.map_err(ManageError::from)?;
            json(&OperatorView {
                name: op.name.clone(),
                public_key: op.identity.public.clone(),
                signing_keys: vec![op.signing_key.public.clone()],
                system_account: op.system_account.clone(),
                jwt: authority.operator_jwt(now).await.map_err(ManageError::from)?,
            })
        }
        Endpoint::Status => {
            manage::parse::<Empty>(body)?;
            json(&status(ctx).await?)
        }
        Endpoint::PendingList => {
            manage::parse::<Empty>(body)?;
            json(&m.pending().await?)
        }
        Endpoint::TokenCreate => json(&m.create_token(manage::parse(body)?, now).await?),
        Endpoint::TokenList => json(&m.list_tokens(manage::parse(body)?).await?),
        Endpoint::TokenRevoke => json(&m.revoke_token(manage::parse(body)?).await?),
        Endpoint::PendingRetry => {
            let req: RetryRequest = manage::parse(body)?;
            let retried = m.retry_failed(req.account.as_deref(), now).await?;
            json(&serde_json::json!({ "retried": retried }))
        }
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
    })
}
