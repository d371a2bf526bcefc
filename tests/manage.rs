//! The management API over NATS against a real nats-server: what an admin does, what users
//! then get, and what bad input gets back.

mod common;

use std::time::Duration;

use common::{
    account_name, allow, creds, disconnected_within, drained, tenant, user_name, violation, Stack,
};
use futures::StreamExt;
use nats_authd::api::account::{
    AccountRef, CreateAccount, DeleteAccount, ListAccounts, UpdateAccount,
};
use nats_authd::api::ops::GetStatus;
use nats_authd::api::role::UpdateRole;
use nats_authd::api::user::{CreateUser, DeleteUser, GetCreds, RegenerateUser, UserRef};
use nats_authd::api::Endpoint;
use nats_authd::client::{AdminClient, ClientError};
use nats_authd::service::Status;
use serde_json::Value;

async fn status(admin: &AdminClient) -> Status {
    admin.send(&GetStatus {}).await.unwrap()
}

/// acme's user dev1.
fn dev1() -> UserRef {
    UserRef::new(account_name("acme"), user_name("dev1"))
}

/// acme with roles `sensor` (pub sensors.*.telemetry, sub _INBOX.>) and `monitor` (sub >),
/// users dev1 (sensor) and mon (monitor), all pushed.
async fn acme(admin: &AdminClient) {
    let acme = tenant(admin, "acme").await;
    acme.role("sensor", &["sensors.*.telemetry"], &["_INBOX.>"]).await;
    acme.role("monitor", &[], &[">"]).await;
    acme.user("dev1", "sensor", None).await;
    acme.user("mon", "monitor", None).await;
    drained(admin).await;
}

/// `account` with role `all` (everything) and its user `u`.
async fn open_tenant(admin: &AdminClient, account: &str) {
    let tenant = tenant(admin, account).await;
    tenant.open_role("all").await;
    tenant.user("u", "all", None).await;
}

async fn next_payload(sub: &mut async_nats::Subscriber, within: Duration) -> Option<String> {
    let msg = tokio::time::timeout(within, sub.next()).await.ok().flatten()?;
    Some(String::from_utf8_lossy(&msg.payload).into_owned())
}

#[tokio::test]
async fn a_user_made_over_nats_lands_in_its_account_with_its_role() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    acme(&admin).await;

    let (mon, _) = stack.connect_creds(&creds(&admin, "acme", "mon").await).await;
    let mut seen = mon.subscribe(">").await.unwrap();
    mon.flush().await.unwrap();

    let dev1_creds = creds(&admin, "acme", "dev1").await;
    assert!(dev1_creds.starts_with("-----BEGIN NATS USER JWT-----"));
    let (dev1, mut events) = stack.connect_creds(&dev1_creds).await;
    dev1.publish("sensors.s1.telemetry", "21.5".into()).await.unwrap();
    dev1.flush().await.unwrap();
    // mon is in acme only, so seeing dev1's message proves dev1 landed in acme.
    assert_eq!(next_payload(&mut seen, Duration::from_secs(5)).await.as_deref(), Some("21.5"));

    dev1.publish("alerts.fire", "x".into()).await.unwrap();
    dev1.flush().await.unwrap();
    violation(&mut events, "alerts.fire").await;
    assert_eq!(
        next_payload(&mut seen, Duration::from_millis(300)).await,
        None,
        "denied publish was delivered"
    );
}

#[tokio::test]
async fn accounts_made_over_nats_do_not_see_each_other() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    for account in ["acme", "globex"] {
        open_tenant(&admin, account).await;
    }
    drained(&admin).await;
    let (acme, _) = stack.connect_creds(&creds(&admin, "acme", "u").await).await;
    let (globex, _) = stack.connect_creds(&creds(&admin, "globex", "u").await).await;
    let mut globex_sub = globex.subscribe("orders.>").await.unwrap();
    let mut acme_sub = acme.subscribe("orders.>").await.unwrap();
    globex.flush().await.unwrap();
    acme.flush().await.unwrap();
    acme.publish("orders.new", "acme-order".into()).await.unwrap();
    acme.flush().await.unwrap();
    assert_eq!(
        next_payload(&mut acme_sub, Duration::from_secs(5)).await.as_deref(),
        Some("acme-order")
    );
    assert_eq!(next_payload(&mut globex_sub, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn role_changes_reach_new_jwts_and_deleting_a_user_cuts_it_off() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    acme(&admin).await;
    let (mon, _) = stack.connect_creds(&creds(&admin, "acme", "mon").await).await;
    let mut alerts = mon.subscribe("alerts.>").await.unwrap();
    mon.flush().await.unwrap();

    let (old, mut old_events) = stack.connect_creds(&creds(&admin, "acme", "dev1").await).await;
    let widened = UpdateRole {
        publish: Some(allow(&["sensors.*.telemetry", "alerts.>"])),
        ..UpdateRole::new(account_name("acme"), common::role_name("sensor"))
    };
    admin.send(&widened).await.unwrap();

    // The JWT already out keeps the old permissions...
    old.publish("alerts.x", "old".into()).await.unwrap();
    old.flush().await.unwrap();
    violation(&mut old_events, "alerts.x").await;

    // ...a regenerated one, or a fresh creds fetch, carries the new role. No server restart.
    let regenerated = admin.send(&RegenerateUser(dev1())).await.unwrap();
    drained(&admin).await;
    let (new, _) = stack.connect_creds(&regenerated.creds).await;
    new.publish("alerts.x", "new".into()).await.unwrap();
    new.flush().await.unwrap();
    assert_eq!(next_payload(&mut alerts, Duration::from_secs(5)).await.as_deref(), Some("new"));
    let (fetched, _) = stack.connect_creds(&creds(&admin, "acme", "dev1").await).await;
    fetched.publish("alerts.y", "fetched".into()).await.unwrap();
    fetched.flush().await.unwrap();
    assert_eq!(next_payload(&mut alerts, Duration::from_secs(5)).await.as_deref(), Some("fetched"));

    // Deleting dev1 revokes its key: the live connection is closed by the server.
    let (live, mut live_events) = stack.connect_creds(&creds(&admin, "acme", "dev1").await).await;
    admin.send(&DeleteUser(dev1())).await.unwrap();
    disconnected_within(&mut live_events, Duration::from_secs(10)).await;
    assert!(matches!(admin.send(&dev1()).await, Err(ClientError::Service { code: 404, .. })));
    drop(live);
}

/// What lets a revocation leave the account JWT once the creds it covers have expired.
#[tokio::test]
async fn creds_with_a_lifetime_stop_working_when_it_ends() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    tenant(&admin, "acme").await.open_role("all").await;
    let brief = CreateUser {
        role: Some("all".into()),
        jwt_ttl_secs: Some(2),
        ..CreateUser::new(account_name("acme"), user_name("brief"))
    };
    admin.send(&brief).await.unwrap();
    drained(&admin).await;
    let brief = creds(&admin, "acme", "brief").await;
    let (live, mut events) = stack.connect_creds(&brief).await;
    live.flush().await.unwrap();
    disconnected_within(&mut events, Duration::from_secs(6)).await;
    // The server closes the connection at `exp` but takes the JWT for the rest of that
    // second (it is expired once `exp < now`, in whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = async_nats::ConnectOptions::with_credentials(&brief).unwrap();
    assert!(again.connect(stack.url()).await.is_err(), "expired creds connected");
    drop(live);
}

#[tokio::test]
async fn deactivated_accounts_refuse_users_and_deleted_ones_leave_the_server() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    acme(&admin).await;
    let dev1_creds = creds(&admin, "acme", "dev1").await;
    stack.connect_creds(&dev1_creds).await;

    let active =
        |active| UpdateAccount { active: Some(active), ..UpdateAccount::new(account_name("acme")) };
    admin.send(&active(false)).await.unwrap();
    drained(&admin).await;
    let refused = async_nats::ConnectOptions::with_credentials(&dev1_creds)
        .unwrap()
        .connect(stack.url())
        .await;
    assert!(refused.is_err(), "a user of an inactive account connected");
    assert!(matches!(
        admin.send(&GetCreds(dev1())).await,
        Err(ClientError::Service { code: 409, .. })
    ));

    admin.send(&active(true)).await.unwrap();
    drained(&admin).await;
    stack.connect_creds(&dev1_creds).await;

    let key = admin.send(&AccountRef { name: account_name("acme") }).await.unwrap().public_key;
    let deleted =
        admin.send(&DeleteAccount { name: account_name("acme"), cascade: true }).await.unwrap();
    assert_eq!(deleted.users, 2);
    drained(&admin).await;
    let service = stack.service_client().await;
    assert_eq!(
        common::held_jwt(&service, &key).await,
        None,
        "the server still holds the deleted account"
    );
}

#[tokio::test]
async fn changes_made_while_the_server_is_down_reach_it_when_it_starts() {
    let mut stack = Stack::start().await;
    let _service = stack.serve();
    stack.admin().await;
    stack.server.take().unwrap().stop(Duration::from_secs(5)).await;

    // Acknowledged by the store while no server is there.
    let manager = stack.manager();
    let now = nats_authd::model::now();
    let offline = CreateAccount::new(account_name("offline"));
    let view = manager.create_account(offline, now).await.unwrap();
    assert!(manager
        .pending(Default::default(), 1 << 20)
        .await
        .unwrap()
        .items
        .iter()
        .any(|p| p.account_key == view.public_key));

    stack.start_server().await;
    let service = stack.service_client().await;
    common::await_held(&service, &view.public_key, true, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_burst_of_updates_to_one_account_is_a_handful_of_pushes() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    tenant(&admin, "acme").await;
    drained(&admin).await;
    let before = status(&admin).await.pushes;
    for i in 0..100 {
        let describe = UpdateAccount {
            description: Some(format!("v{i}")),
            ..UpdateAccount::new(account_name("acme"))
        };
        admin.send(&describe).await.unwrap();
    }
    drained(&admin).await;
    // Each push is an update plus its confirming lookup... counted as one request here.
    let pushes = status(&admin).await.pushes - before;
    assert!((1..=5).contains(&pushes), "100 updates became {pushes} pushes");
    let account = admin.send(&AccountRef { name: account_name("acme") }).await.unwrap();
    assert_eq!(account.description, "v99");
}

#[tokio::test]
async fn discovery_from_admin_lists_every_endpoint() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    let nats = admin.nats();
    let ping = nats.request("$SRV.PING", "".into()).await.unwrap();
    let ping: Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "nats-authd");
    assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));

    let info = nats.request("$SRV.INFO.nats-authd", "".into()).await.unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    for endpoint in Endpoint::ALL {
        let subject = format!("authd.{}", endpoint.subject());
        assert!(subjects.contains(&subject.as_str()), "{subject} missing from {subjects:?}");
    }
    assert_eq!(subjects.len(), Endpoint::ALL.len());
}

#[tokio::test]
async fn tenant_users_cannot_reach_the_management_api() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    open_tenant(&admin, "acme").await;
    drained(&admin).await;
    let (tenant, _) = stack.connect_creds(&creds(&admin, "acme", "u").await).await;
    let sneaky = AdminClient::new(tenant, "authd", Duration::from_millis(500));
    let err = sneaky.send(&ListAccounts::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::Request { .. }), "a tenant reached the API: {err}");
}
