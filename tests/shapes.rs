//! One shape per record, in and out: what `get` answers, sent back to `update` unchanged,
//! is accepted and changes nothing; and lists of any size, in pages. Against a real
//! nats-server.

mod common;

use common::{account_name, drained, user_name, Stack};
use nats_authd::api::account::{CreateAccount, ListAccounts};
use nats_authd::api::user::{CreateUser, UserListRef, UserView};
use nats_authd::api::Page;
use nats_authd::client::AdminClient;
use serde_json::{json, Value};

/// `exporter` offering `svc.>`, and `acme` with every field set: limits, exports, an import
/// from `exporter`, a default role with deny lists, response permission, role limits,
/// self-service rights and a description, and a user with tags, ttl and bearer.
async fn everything_set(admin: &AdminClient) {
    let call = |endpoint: &'static str, body: Value| async move {
        admin.call(endpoint, &body).await.unwrap_or_else(|e| panic!("{endpoint}: {e}"))
    };
    call(
        "account.create",
        json!({"name": "exporter", "exports": [{"subject": "svc.>", "type": "service"}]}),
    )
    .await;
    call(
        "account.create",
        json!({
            "name": "acme",
            "description": "Acme Corp",
            "limits": {
                "connections": 10, "subscriptions": 100, "data": 1_000_000, "payload": 4096,
                "imports": 5, "exports": 6, "leaf_nodes": 2, "mem_storage": 0,
                "disk_storage": 0, "streams": 0, "consumers": 0
            },
            "exports": [{"subject": "acme.events.>", "type": "stream", "name": "events"}],
            "imports": [{
                "account": "exporter", "subject": "svc.orders", "type": "service",
                "local_subject": "orders", "name": "orders"
            }]
        }),
    )
    .await;
    call(
        "role.create",
        json!({
            "account": "acme", "name": "sensor", "description": "telemetry writers",
            "publish": {"allow": ["sensors.>"], "deny": ["sensors.secret"]},
            "subscribe": {"allow": ["_INBOX.>"], "deny": ["_INBOX.admin"]},
            "response": {"max": 3, "ttl_ms": 1500},
            "limits": {"subs": 10, "data": 2048, "payload": 512},
            "default": true,
            "self_service": {"whoami": true, "creds": true, "regenerate": true,
                             "password": true, "tokens": true, "admin": false}
        }),
    )
    .await;
    call(
        "user.create",
        json!({
            "account": "acme", "name": "dev1", "role": "sensor", "description": "first device",
            "jwt_ttl_secs": 3600, "bearer_token": true, "tags": {"site": "berlin"}
        }),
    )
    .await;
}

/// Sends what `get` answers to `update` and checks the answer and the store are unchanged.
async fn round_trip(stack: &Stack, admin: &AdminClient, noun: &str, key: Value) {
    let got = admin.call(&format!("{noun}.get"), &key).await.unwrap();
    let before = stack.authority().db().export().await.unwrap();
    let updated = admin
        .call(&format!("{noun}.update"), &got)
        .await
        .unwrap_or_else(|e| panic!("{noun}.update refused its own get: {e}\n{got:#}"));
    assert_eq!(updated, got, "{noun}.update of its own get answered something else");
    let after = stack.authority().db().export().await.unwrap();
    assert!(after == before, "{noun}.update of its own get changed the store");
}

#[tokio::test]
async fn what_get_answers_is_an_update_that_changes_nothing() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    everything_set(&admin).await;
    drained(&admin).await;

    round_trip(&stack, &admin, "account", json!({"name": "acme"})).await;
    round_trip(&stack, &admin, "role", json!({"account": "acme", "name": "sensor"})).await;
    round_trip(&stack, &admin, "user", json!({"account": "acme", "name": "dev1"})).await;
}

#[tokio::test]
async fn views_use_the_names_and_units_requests_use() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    everything_set(&admin).await;

    let account = admin.call("account.get", &json!({"name": "acme"})).await.unwrap();
    assert_eq!(account["limits"]["connections"], 10);
    assert_eq!(account["limits"]["leaf_nodes"], 2);
    assert!(account["limits"].get("conn").is_none(), "JWT names leak: {account:#}");
    assert_eq!(
        account["imports"],
        json!([{"account": "exporter", "subject": "svc.orders", "type": "service",
                "local_subject": "orders", "name": "orders"}])
    );
    assert_eq!(account["default_role"], "sensor");

    let role = admin.call("role.get", &json!({"account": "acme", "name": "sensor"})).await.unwrap();
    assert_eq!(role["response"], json!({"max": 3, "ttl_ms": 1500}));
    assert_eq!(role["limits"], json!({"subs": 10, "data": 2048, "payload": 512}));
    assert!(role.get("subs").is_none(), "role limits are flat: {role:#}");
}

#[tokio::test]
async fn an_edited_get_is_a_valid_update() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    everything_set(&admin).await;

    let mut role =
        admin.call("role.get", &json!({"account": "acme", "name": "sensor"})).await.unwrap();
    role["limits"]["subs"] = json!(20);
    role["response"]["ttl_ms"] = json!(250);
    let updated = admin.call("role.update", &role).await.unwrap();
    assert_eq!(updated["limits"]["subs"], 20);
    assert_eq!(updated["response"], json!({"max": 3, "ttl_ms": 250}));

    let mut account = admin.call("account.get", &json!({"name": "acme"})).await.unwrap();
    account["limits"]["connections"] = json!(7);
    let updated = admin.call("account.update", &account).await.unwrap();
    assert_eq!(updated["limits"]["connections"], 7);
    assert_eq!(updated["imports"], account["imports"]);
}

/// Users a page test makes: more than two full pages.
const MANY: usize = 2_500;

#[tokio::test]
async fn thousands_of_users_are_listed_through_pages_each_within_its_limit_and_max_payload() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    admin.send(&CreateAccount::new(account_name("acme"))).await.unwrap();
    // Straight through the domain (no NATS round trip, no password hash): fast. Long
    // descriptions make a page of 1000 larger than the server's 1 MiB max payload.
    let manager = stack.manager();
    let description = "d".repeat(1000);
    for i in 0..MANY {
        let request = CreateUser {
            description: Some(description.clone()),
            ..CreateUser::new(account_name("acme"), user_name(&format!("user{i:05}")))
        };
        manager.create_user(request, nats_authd::model::now()).await.unwrap();
    }

    let max_payload = admin.nats().server_info().max_payload;
    let mut request = UserListRef { limit: Some(1000), ..UserListRef::new(account_name("acme")) };
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let raw = admin.call("user.list", &serde_json::to_value(&request).unwrap()).await.unwrap();
        assert!(raw.to_string().len() <= max_payload, "a page exceeds the max payload");
        let page: Page<UserView> = serde_json::from_value(raw).unwrap();
        assert!(page.items.len() <= 1000, "a page holds more than its limit");
        pages += 1;
        names.extend(page.items.into_iter().map(|u| u.name));
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => break,
        }
    }
    let want: Vec<String> = (0..MANY).map(|i| format!("user{i:05}")).collect();
    assert_eq!(names, want, "pages skipped or repeated users");
    assert!(pages > 3, "pages of 1000 users of 1 KiB each were not cut to fit ({pages} pages)");

    // The client's helper follows the pages too; small pages keep to their limit.
    let small = UserListRef { limit: Some(7), ..UserListRef::new(account_name("acme")) };
    let first = admin.send(&small).await.unwrap();
    assert_eq!(first.items.len(), 7);
    assert_eq!(admin.list_all(&UserListRef::new(account_name("acme"))).await.unwrap().len(), MANY);
}

#[tokio::test]
async fn a_bad_limit_or_a_foreign_cursor_is_refused_with_a_clear_error() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    admin.send(&CreateAccount::new(account_name("acme"))).await.unwrap();
    for (body, says) in [
        (json!({"account": "acme", "limit": 0}), "limit 0 is out of range"),
        (json!({"account": "acme", "limit": 1001}), "limit 1001 is out of range"),
        (json!({"account": "acme", "cursor": "other/u1"}), "is not from this list"),
    ] {
        let err = admin.call("user.list", &body).await.unwrap_err();
        assert_eq!(err.code(), Some(400), "{body}: {err}");
        assert!(err.to_string().contains(says), "{body}: {err}");
    }
    let accounts = admin.list_all(&ListAccounts::default()).await.unwrap();
    assert!(accounts.iter().any(|a| a.name == "acme"));
}
